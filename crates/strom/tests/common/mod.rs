//! The shared end-to-end test harness: a real `strom serve` child process on 127.0.0.1 with an
//! ephemeral port and a temporary data directory.
//!
//! ```ignore
//! mod common;
//! let mut broker = common::TestBroker::start();
//! let bootstrap = broker.bootstrap();      // "127.0.0.1:PORT"
//! broker.kill9();                          // crash it
//! broker.restart();                        // same data dir, same port
//! ```
//!
//! Readiness is a poll with a deadline: the broker writes its bound address to a file passed
//! with the hidden `--ready-file` flag. If the child exits while starting, the harness panics
//! with the broker's log (stdout and stderr go to `<tempdir>/broker.log`). `RUST_LOG` is passed
//! through (default `info`).
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a broker may take to become ready.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a graceful stop may take.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between readiness / exit polls.
const POLL: Duration = Duration::from_millis(10);

/// A `strom serve` child process with its own data directory.
pub struct TestBroker {
    child: Option<Child>,
    root: tempfile::TempDir,
    data_dir: PathBuf,
    port: u16,
    extra_args: Vec<String>,
    metrics_addr: Option<String>,
}

impl TestBroker {
    /// Starts a broker with a fresh data directory.
    pub fn start() -> TestBroker {
        TestBroker::start_with(&[])
    }

    /// Starts a broker with a fresh data directory and extra `strom serve` arguments.
    pub fn start_with(extra_args: &[&str]) -> TestBroker {
        let root = tempfile::Builder::new().prefix("strom-test-").tempdir().expect("creating a temp dir");
        let data_dir = root.path().join("data");
        let mut broker = TestBroker {
            child: None,
            root,
            data_dir,
            port: 0,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            metrics_addr: None,
        };
        broker.spawn();
        broker
    }

    /// Starts a broker whose data directory is `data_dir`, which need not exist yet (say, a
    /// path inside a power-loss filesystem the test mounted); logs stay in a temp dir.
    pub fn start_at(data_dir: PathBuf, extra_args: &[&str]) -> TestBroker {
        let root = tempfile::Builder::new().prefix("strom-test-").tempdir().expect("creating a temp dir");
        let mut broker = TestBroker {
            child: None,
            root,
            data_dir,
            port: 0,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            metrics_addr: None,
        };
        broker.spawn();
        broker
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    /// `ip:port` of the broker's metrics endpoint (`/metrics`, `/health`).
    #[allow(dead_code)]
    pub fn metrics_addr(&self) -> String {
        self.metrics_addr.clone().expect("the broker reported no metrics address")
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's data directory (survives restarts; removed on drop).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The broker process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the broker logged so far (all runs).
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// SIGKILL the broker and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM the broker and wait (with a deadline) for it to exit; returns its status.
    pub fn stop(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("stop(): the broker is not running");
        };
        let status =
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("running kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the broker") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the broker did not stop within {STOP_DEADLINE:?} of SIGTERM; log:\n{}", self.logs());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Starts the broker again on the same data directory and port (stopping it first with
    /// SIGTERM if it is still running).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("broker.log")
    }

    fn ready_path(&self) -> PathBuf {
        self.root.path().join("ready")
    }

    fn spawn(&mut self) {
        let ready = self.ready_path();
        let _ = std::fs::remove_file(&ready);
        let mut log = OpenOptions::new().create(true).append(true).open(self.log_path()).expect("opening broker.log");
        let start_of_run = log.seek(SeekFrom::End(0)).unwrap_or(0);
        let log_err = log.try_clone().expect("cloning the log handle");
        let listen = format!("127.0.0.1:{}", self.port);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strom"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(&listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--ready-file")
            .arg(&ready)
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .args(&self.extra_args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let mut child = cmd.spawn().expect("spawning strom serve");
        let deadline = Instant::now() + START_DEADLINE;
        let addr = loop {
            if let Ok(contents) = std::fs::read_to_string(&ready) {
                // Line 1: the Kafka listener; line 2 (if on): `metrics=<addr>`.
                let mut lines = contents.lines();
                let addr = lines.next().unwrap_or_default().to_string();
                self.metrics_addr = lines.find_map(|l| l.strip_prefix("metrics=")).map(str::to_string);
                break addr;
            }
            if let Some(status) = child.try_wait().expect("polling the broker") {
                panic!("strom serve exited during startup ({status}); log:\n{}", self.run_log(start_of_run));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("strom serve not ready within {START_DEADLINE:?}; log:\n{}", self.run_log(start_of_run));
            }
            std::thread::sleep(POLL);
        };
        let port: u16 = addr
            .trim()
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("ready file holds {addr:?}, not ip:port"));
        assert!(self.port == 0 || self.port == port, "restarted on port {port}, expected {}", self.port);
        self.port = port;
        self.child = Some(child);
    }

    fn run_log(&self, from: u64) -> String {
        let all = self.logs();
        all.get(from as usize..).unwrap_or(&all).to_string()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill9();
    }
}
