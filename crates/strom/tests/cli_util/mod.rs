//! Running the real `strom` binary from tests: every run has a deadline (a hung command
//! fails the test with what it printed), stdout and stderr are captured in full, and the
//! broker address goes in through `STROM_BOOTSTRAP_SERVERS`, as a user would set it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any single CLI command may take in a test.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// What a finished command printed.
#[derive(Debug)]
pub struct Run {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

impl Run {
    /// Panics with the command's output unless it exited 0.
    pub fn ok(self, what: &str) -> Run {
        assert!(
            self.status.success(),
            "`strom {what}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless it exited non-zero; returns stderr.
    pub fn failed(self, what: &str) -> String {
        assert!(
            !self.status.success(),
            "`strom {what}` should have failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self.stderr
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// stdout parsed as one JSON object per line.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line is not JSON ({e}): {l}")))
            .collect()
    }
}

/// The `strom` binary pointed at one broker.
#[derive(Debug, Clone)]
pub struct Strom {
    bootstrap: String,
}

impl Strom {
    /// Commands against `bootstrap` (`127.0.0.1:PORT`).
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self { bootstrap: bootstrap.into() }
    }

    /// A `strom` command with the bootstrap servers in the environment and quiet logs.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strom"));
        cmd.args(args)
            .env("STROM_BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `strom args...` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_input(args, None)
    }

    /// Runs `strom args...` with `input` on stdin.
    pub fn run_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Run {
        let mut cmd = self.command(args);
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawning strom");
        if let Some(bytes) = input {
            let mut stdin = child.stdin.take().expect("stdin is piped");
            stdin.write_all(bytes).expect("writing stdin");
        }
        let out = reader(child.stdout.take());
        let err = reader(child.stderr.take());
        let status = wait_with_deadline(&mut child, DEADLINE, &args.join(" "));
        Run {
            status,
            stdout: out.join().expect("stdout reader"),
            stderr: err.join().expect("stderr reader"),
            elapsed: started.elapsed(),
        }
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.run(args).ok(&args.join(" ")).stdout
    }

    /// Runs with `--output json` and asserts success; returns the parsed document.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        self.run(&all).ok(&all.join(" ")).json()
    }
}

/// Reads a pipe to the end on its own thread, so a chatty child never blocks on it.
pub fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let mut bytes = Vec::new();
            let _ = p.read_to_end(&mut bytes);
            s = String::from_utf8_lossy(&bytes).into_owned();
        }
        s
    })
}

/// Waits for `child` to exit, killing it and failing the test after `deadline`.
pub fn wait_with_deadline(child: &mut Child, deadline: Duration, what: &str) -> ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for strom") {
            return status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`strom {what}` did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A broker whose groups rebalance 300 ms after the first member joins (Kafka's default
/// wait is 3 s), so group tests stay fast. The directory holds the config file.
pub fn group_broker() -> (super::common::TestBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("strom.toml");
    std::fs::write(&path, "[groups]\ninitial_rebalance_delay_ms = 300\n").expect("writing the config");
    let broker = super::common::TestBroker::start_with(&["--config", path.to_str().expect("utf-8 path")]);
    (broker, dir)
}
