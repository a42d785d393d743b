//! A full disk, simulated with a file-size limit (RLIMIT_FSIZE) in a child process: appends
//! that do not fit fail with an I/O error (mapped to KAFKA_STORAGE_ERROR by the broker), leave
//! no partial batch behind, never panic, and every acknowledged batch stays readable — now and
//! after reopening.
//!
//! The limit applies to the whole process, so the test re-executes its own binary as a child
//! (`disk_full_child` does nothing unless `STROM_DISK_FULL_CHILD` names a data directory).

#![allow(unsafe_code)]

use std::path::Path;
use std::process::Command;

use strom_log::{Error, FlushPolicy, LogConfig, LogManager, ManagerConfig, ReadBound, build_batch};

const CHILD_ENV: &str = "STROM_DISK_FULL_CHILD";
/// Set (to anything) for a child that preallocates from its first append.
const PREALLOC_ENV: &str = "STROM_DISK_FULL_PREALLOC";
/// The file-size limit: room for some batches, not for the test's whole load.
const LIMIT: u64 = 256 * 1024;

fn config() -> LogConfig {
    // One segment larger than the limit, so the limit (not a roll) is what stops appends.
    LogConfig { segment_bytes: 64 * 1024 * 1024, flush_policy: FlushPolicy::Always, ..LogConfig::default() }
}

/// The child's manager: with `prealloc`, zero-fills start at once and run into the limit
/// before the appends do.
fn manager_config(dir: &Path, prealloc: bool) -> ManagerConfig {
    let mut m = ManagerConfig::new(dir);
    if prealloc {
        m.preallocate_bytes = 64 * 1024;
        m.preallocate_after_bytes = 0;
    }
    m
}

#[test]
fn disk_full_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    // SAFETY: plain libc calls with valid arguments, made before any other thread of this
    // child runs test code; SIGXFSZ is ignored so an oversized write fails with EFBIG instead
    // of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit { rlim_cur: LIMIT, rlim_max: LIMIT };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0, "setrlimit");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let prealloc = std::env::var_os(PREALLOC_ENV).is_some();
        let mgr = LogManager::open(manager_config(Path::new(&dir), prealloc)).expect("open");
        let log = mgr.create("full", 0, config()).expect("create");
        let value = vec![0xabu8; 10_000];
        let mut acked = Vec::new();
        let mut failures = 0;
        for i in 0..100i64 {
            let batch = build_batch(i, None, &[&value, &value]);
            match log.append(batch.clone(), 0) {
                Ok(info) => {
                    log.wait_durable(info.last_offset).await.expect("durable");
                    acked.push((info.base_offset, batch));
                }
                Err(Error::Io { .. }) => {
                    failures += 1;
                    // Nothing half-written: the log end is where the last good batch ended.
                    assert_eq!(log.log_end_offset(), acked.len() as i64 * 2, "no partial append after a failed write");
                }
                Err(e) => panic!("unexpected error on a full disk: {e}"),
            }
        }
        assert!(
            !acked.is_empty() && failures > 0,
            "the limit must stop some appends: {} acked, {failures} failed",
            acked.len()
        );
        // Everything acknowledged reads back byte for byte (apart from the rewritten prefix).
        for (base, original) in &acked {
            let r = log.read(*base, 1, ReadBound::HighWatermark).expect("read");
            assert_eq!(&r.records[16..original.len()], &original[16..], "batch at {base}");
        }
        println!("ACKED {} FAILED {failures}", acked.len());
    });
}

#[test]
fn a_full_disk_rejects_appends_cleanly_and_keeps_what_was_acknowledged() {
    full_disk_run(false);
}

/// The same with preallocation: the zero-fill meets the limit first, stops, and the appends
/// that still fit use the space it did write.
#[test]
fn a_full_disk_with_preallocation_rejects_appends_cleanly_too() {
    full_disk_run(true);
}

fn full_disk_run(prealloc: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("current exe"));
    child.args(["--exact", "disk_full_child", "--nocapture", "--test-threads=1"]).env(CHILD_ENV, dir.path());
    if prealloc {
        child.env(PREALLOC_ENV, "1");
    }
    let out = child.output().expect("running the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // The test harness prints "test disk_full_child ... " before the child's own line.
    let said = stdout.split("ACKED ").nth(1).unwrap_or_else(|| panic!("child said nothing: {stdout}"));
    let acked: i64 = said.split_whitespace().next().and_then(|n| n.parse().ok()).expect("acked count");

    // Reopen without the limit (the child crashed out without a clean shutdown): every
    // acknowledged batch is there, nothing after, and appends work again.
    let mgr = LogManager::open(ManagerConfig::new(dir.path())).expect("reopen");
    let log = mgr.get("full", 0).expect("partition");
    assert_eq!(log.log_end_offset(), acked * 2);
    let info = log.append(build_batch(0, None, &[b"after"]), 0).expect("append after space is back");
    assert_eq!(info.base_offset, acked * 2);
    mgr.shutdown().expect("shutdown");
}
