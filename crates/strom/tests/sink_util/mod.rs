//! Harness for the `strom sink` tests: a real PostgreSQL server on a temporary directory and a
//! free port (Debian's `postgresql` package; run as the `postgres` user when the tests run as
//! root, since PostgreSQL refuses root), and `strom sink` child processes.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long PostgreSQL or a sink may take to start or stop.
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

/// The directory holding `initdb` and `postgres` (the newest installed major version).
fn pg_bin_dir() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (/usr/lib/postgresql missing): scripts/compat/install.sh installs it")
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("no /usr/lib/postgresql/<version>/bin/postgres").1
}

/// uid and gid of `user` from /etc/passwd.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user)).then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
    })
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// A free TCP port on 127.0.0.1 (bound and released; PostgreSQL binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binding port 0").port()
}

/// A PostgreSQL server of the test's own.
pub struct PgServer {
    root: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    ids: Option<(u32, u32)>,
}

impl PgServer {
    /// initdb + start; returns when it accepts connections. `fsync` off unless `durable`
    /// (a test that kills processes, not the machine, does not need it).
    pub fn start() -> PgServer {
        PgServer::start_with(false)
    }

    /// As [`PgServer::start`], with `fsync=on` when `durable` (the benchmark).
    pub fn start_with(durable: bool) -> PgServer {
        let root = tempfile::Builder::new().prefix("strom-pg-").tempdir().expect("temp dir");
        let ids = if running_as_root() {
            Some(
                user_ids("postgres")
                    .or_else(|| user_ids("nobody"))
                    .expect("a postgres or nobody user to run PostgreSQL as"),
            )
        } else {
            None
        };
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(root.path(), Some(uid), Some(gid)).expect("chown the PostgreSQL dir");
        }
        let data = root.path().join("data");
        let out = Command::new(pg_bin_dir().join("initdb"))
            .args(["-D", data.to_str().expect("utf-8 path"), "-U", "strom", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .env("LC_ALL", "C")
            .current_dir(root.path())
            .as_user(ids)
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let settings = format!(
            "listen_addresses = '127.0.0.1'\nfsync = {}\nmax_connections = 100\nshared_buffers = 64MB\nunix_socket_directories = '{}'\n",
            if durable { "on" } else { "off" },
            root.path().display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, settings.as_bytes()))
            .expect("writing postgresql.conf");
        let mut pg = PgServer { root, port: free_port(), child: None, ids };
        pg.spawn();
        pg
    }

    /// `postgres://strom@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://strom@127.0.0.1:{}/postgres", self.port)
    }

    /// A client connection.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connecting to the test PostgreSQL")
    }

    /// Fast shutdown (SIGINT: abort sessions, checkpoint, exit), waiting for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        let deadline = Instant::now() + DEADLINE;
        while child.try_wait().expect("waiting for postgres").is_none() {
            assert!(Instant::now() < deadline, "PostgreSQL did not stop; log:\n{}", self.log());
            std::thread::sleep(POLL);
        }
    }

    /// Starts it again on the same directory and port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The server log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("postgres.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log =
            OpenOptions::new().create(true).append(true).open(self.root.path().join("postgres.log")).expect("log");
        if let Some((uid, gid)) = self.ids {
            let _ = std::os::unix::fs::chown(self.root.path().join("postgres.log"), Some(uid), Some(gid));
        }
        let err = log.try_clone().expect("log");
        let child = Command::new(pg_bin_dir().join("postgres"))
            .args(["-D", self.root.path().join("data").to_str().expect("utf-8"), "-p", &self.port.to_string()])
            .env("LC_ALL", "C")
            .current_dir(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .as_user(self.ids)
            .spawn()
            .expect("starting postgres");
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if postgres::Client::connect(&self.url(), postgres::NoTls).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("postgres exited during startup ({status}); log:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "PostgreSQL not ready in {DEADLINE:?}; log:\n{}", self.log());
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the directory is removed next.
            let _ = Command::new("kill").args(["-QUIT", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

trait AsUser {
    fn as_user(&mut self, ids: Option<(u32, u32)>) -> &mut Self;
}

impl AsUser for Command {
    fn as_user(&mut self, ids: Option<(u32, u32)>) -> &mut Self {
        if let Some((uid, gid)) = ids {
            self.uid(uid).gid(gid);
        }
        self
    }
}

/// A `strom sink` child process; its log goes to a file of its own.
pub struct Sink {
    child: Option<Child>,
    dir: tempfile::TempDir,
    args: Vec<String>,
    runs: usize,
    /// The metrics address of the current run.
    pub metrics: Option<String>,
}

impl Sink {
    /// Starts `strom sink ARGS` (metrics on an ephemeral port, no progress line) and waits
    /// until it has written its ready file.
    pub fn start(args: &[&str]) -> Sink {
        let mut s = Sink {
            child: None,
            dir: tempfile::Builder::new().prefix("strom-sink-").tempdir().expect("temp dir"),
            args: args.iter().map(|a| a.to_string()).collect(),
            runs: 0,
            metrics: None,
        };
        s.spawn();
        s
    }

    /// Runs `strom sink ARGS` to completion (for the error cases): status and log.
    pub fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_strom"))
            .arg("sink")
            .args(args)
            .args(["--metrics-listen", "", "--no-progress"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("running strom sink");
        (out.status, format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    fn spawn(&mut self) {
        self.runs += 1;
        let ready = self.dir.path().join(format!("ready-{}", self.runs));
        let log = OpenOptions::new().create(true).append(true).open(self.log_path()).expect("sink log");
        let err = log.try_clone().expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_strom"))
            .arg("sink")
            .args(&self.args)
            .args(["--metrics-listen", "127.0.0.1:0", "--no-progress", "--ready-file"])
            .arg(&ready)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawning strom sink");
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                self.metrics = text.lines().find_map(|l| l.strip_prefix("metrics=")).map(str::to_string);
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("strom sink exited during startup ({status}); log:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "strom sink not ready; log:\n{}", self.log());
            std::thread::sleep(POLL);
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sink.log")
    }

    /// Everything every run logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the process is still running (panics with the log if it exited).
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            panic!("strom sink exited ({status}); log:\n{}", self.log());
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again with the same arguments.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("the sink is not running");
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = c.try_wait().expect("waiting for the sink") {
                return status;
            }
            assert!(Instant::now() < deadline, "strom sink did not stop on SIGTERM; log:\n{}", self.log());
            std::thread::sleep(POLL);
        }
    }

    /// GET /metrics of the current run.
    pub fn scrape(&self) -> String {
        use std::io::{Read, Write};
        let addr = self.metrics.clone().expect("metrics address");
        let mut s = std::net::TcpStream::connect(&addr).expect("connecting to /metrics");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("request");
        let mut body = String::new();
        s.read_to_string(&mut body).expect("response");
        body
    }

    /// The value of an unlabelled counter or gauge in the scrape (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        metric_value(&self.scrape(), name)
    }
}

/// The sum of the samples of `name` (any labels) in a Prometheus text exposition.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `f` until it returns true, or panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Count of rows in an SQLite table (0 if it does not exist yet).
pub fn sqlite_count(path: &Path, table: &str) -> i64 {
    let Ok(c) = rusqlite::Connection::open(path) else { return 0 };
    c.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| r.get(0)).unwrap_or(0)
}

/// Count of rows in a PostgreSQL table (0 if it does not exist yet).
pub fn pg_count(client: &mut postgres::Client, table: &str) -> i64 {
    client.query_one(&format!("SELECT count(*) FROM \"{table}\""), &[]).map(|r| r.get(0)).unwrap_or(0)
}
