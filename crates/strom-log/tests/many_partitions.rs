//! 1,000 partitions in one data directory: reopening after a clean shutdown must not scan
//! them (the bound here is generous, 5 s, so the test catches something quadratic rather
//! than timing the machine; the real figure is printed and goes in docs/PERFORMANCE.md), and
//! reading from every partition's sealed segments must not open one file per segment: the
//! process's open descriptors (`/proc/self/fd`) stay within `max_open_sealed_segments` of
//! what the active segments need.

mod common;

use std::time::{Duration, Instant};

use strom_log::{LogConfig, LogManager, ManagerConfig, ReadBound};

use common::{assert_same_batch, make_batch, split_read};

const PARTITIONS: i32 = 1000;
const TOPIC: &str = "many";
const MAX_OPEN_SEALED: usize = 64;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).expect("/proc/self/fd")
}

fn batch(p: i32, j: u64) -> bytes::Bytes {
    make_batch((p as u64) << 8 | j, 2, 300, 1_000 + j as i64, None)
}

#[test]
fn thousand_partitions_reopen_fast_with_bounded_file_handles() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two ~700-byte batches per partition with 1 KiB segments: the first batch ends up in a
    // sealed segment, the second in the active one.
    let cfg = LogConfig { segment_bytes: 1024, segment_ms: None, retention_ms: None, ..LogConfig::default() };
    let mut mcfg = ManagerConfig::new(dir.path());
    mcfg.default_log = cfg.clone();
    mcfg.max_open_sealed_segments = MAX_OPEN_SEALED;
    let rt = common::runtime();
    let _enter = rt.enter();

    let started = Instant::now();
    let mgr = LogManager::open(mcfg.clone()).expect("open");
    let mut last = Vec::new();
    for p in 0..PARTITIONS {
        let log = mgr.create(TOPIC, p, cfg.clone()).expect("create");
        let mut info = None;
        for j in 0..2 {
            info = Some(log.append(batch(p, j), 0).expect("append"));
        }
        last.push((log, info.expect("appended").last_offset));
    }
    for (log, l) in &last {
        rt.block_on(log.wait_durable(*l)).expect("durable");
        assert_eq!(log.segment_count(), 2, "each partition should have one sealed and one active segment");
    }
    drop(last);
    let created = started.elapsed();
    let started = Instant::now();
    mgr.shutdown().expect("shutdown");
    drop(mgr);
    eprintln!("{PARTITIONS} partitions: clean shutdown in {:?}", started.elapsed());

    let before_open = open_fds();
    let started = Instant::now();
    let mgr = LogManager::open(mcfg.clone()).expect("reopen");
    let reopened = started.elapsed();
    eprintln!(
        "{PARTITIONS} partitions: created and written in {created:?}; reopened after a clean shutdown in {reopened:?}"
    );
    assert!(reopened < Duration::from_secs(5), "reopening {PARTITIONS} partitions took {reopened:?}");
    assert_eq!(mgr.list().len(), PARTITIONS as usize);

    let after_open = open_fds();
    eprintln!("open descriptors: {before_open} before open, {after_open} after (one active segment per partition)");
    assert!(
        after_open - before_open <= PARTITIONS as usize + 32,
        "opening {PARTITIONS} partitions holds {} descriptors",
        after_open - before_open
    );

    // Read the first batch of every partition: it lives in a sealed segment.
    for p in 0..PARTITIONS {
        let log = mgr.get(TOPIC, p).expect("partition");
        assert_eq!(log.log_end_offset(), 4, "partition {p} log end");
        let r = log.read(0, 1, ReadBound::HighWatermark).expect("read sealed segment");
        let got = split_read(&r.records);
        assert_eq!(got.len(), 1, "partition {p}: one batch");
        assert_same_batch(&got[0].bytes, &batch(p, 0), 0, 0, &format!("partition {p}"));
    }
    let after_reads = open_fds();
    eprintln!("open descriptors after reading {PARTITIONS} sealed segments: {after_reads} (cap {MAX_OPEN_SEALED})");
    assert!(
        after_reads <= after_open + MAX_OPEN_SEALED + 16,
        "reading sealed segments left {} more descriptors open (cap {MAX_OPEN_SEALED})",
        after_reads - after_open
    );
    mgr.shutdown().expect("shutdown");
    drop(mgr);

    // After a crash every active segment is scanned; still no quadratic behaviour.
    let crashed = LogManager::open(mcfg.clone()).expect("open");
    drop(crashed);
    let started = Instant::now();
    let mgr = LogManager::open(mcfg).expect("reopen after crash");
    let recovered = started.elapsed();
    eprintln!("{PARTITIONS} partitions: reopened without a clean-shutdown marker in {recovered:?}");
    assert!(recovered < Duration::from_secs(10), "recovering {PARTITIONS} partitions took {recovered:?}");
    assert_eq!(mgr.list().len(), PARTITIONS as usize);
    mgr.shutdown().expect("shutdown");
}
