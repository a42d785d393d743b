//! Slow file work on a partition is done with the partition's lock released: the first read
//! of a sealed segment whose index files are gone rebuilds them by a validating scan of the
//! whole segment, and appends to the same partition meanwhile do not wait for that scan.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strom_log::{LogConfig, LogManager, ManagerConfig, ReadBound};

use common::make_batch;

#[test]
fn rebuilding_a_sealed_segments_index_does_not_block_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 600 batches of 64 KiB in 32 MiB segments: one sealed segment of 32 MiB and more.
    let cfg = LogConfig { segment_bytes: 32 << 20, segment_ms: None, retention_ms: None, ..LogConfig::default() };
    let mut mcfg = ManagerConfig::new(dir.path());
    mcfg.default_log = cfg.clone();
    let rt = common::runtime();
    let _enter = rt.enter();
    {
        let mgr = LogManager::open(mcfg.clone()).expect("open");
        let log = mgr.create("t", 0, cfg.clone()).expect("create");
        let mut last = 0;
        for j in 0..600u64 {
            last = log.append(make_batch(j, 16, 4096, 1_000 + j as i64, None), 0).expect("append").last_offset;
        }
        rt.block_on(log.wait_durable(last)).expect("durable");
        assert!(log.segment_count() >= 2, "a sealed segment exists");
        mgr.shutdown().expect("shutdown");
    }
    // Without index files the first read of the sealed segment must scan all of it.
    let part = common::partition_dir(dir.path(), "t", 0);
    let mut removed = 0;
    for entry in std::fs::read_dir(&part).expect("partition dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "index" || e == "timeindex") {
            std::fs::remove_file(&path).expect("remove index");
            removed += 1;
        }
    }
    assert!(removed >= 2, "index files were there to remove");

    // Many rounds, so a read that loads under the lock would overlap appends every time; one
    // scan per round (each round reopens the log, so the indexes start unloaded again).
    let mut overlapped = 0;
    let mut worst_append = Duration::ZERO;
    let mut scans = Duration::ZERO;
    for round in 0..5u64 {
        let mgr = LogManager::open(mcfg.clone()).expect("reopen");
        let log = mgr.get("t", 0).expect("log");
        let reading = Arc::new(AtomicBool::new(true));
        let reader = {
            let (log, reading) = (log.clone(), reading.clone());
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = log.read(0, 1 << 20, ReadBound::HighWatermark).expect("read offset 0");
                reading.store(false, Ordering::SeqCst);
                assert!(!r.records.is_empty());
                t.elapsed()
            })
        };
        let mut appends = 0;
        while reading.load(Ordering::SeqCst) {
            let t = Instant::now();
            log.append(make_batch(1_000 + round * 1_000 + appends, 1, 100, 5_000, None), 0).expect("append");
            worst_append = worst_append.max(t.elapsed());
            appends += 1;
        }
        let scan = reader.join().expect("reader");
        scans += scan;
        if appends > 1 {
            overlapped += 1;
        }
        mgr.shutdown().expect("shutdown");
        // Drop the rebuilt index files again for the next round.
        for entry in std::fs::read_dir(&part).expect("partition dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "index" || e == "timeindex") {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    eprintln!("5 index rebuilds took {scans:?} in all; worst append meanwhile {worst_append:?}");
    assert!(overlapped >= 3, "appends overlapped only {overlapped} of 5 scans");
    let mean_scan = scans / 5;
    assert!(
        worst_append < mean_scan / 2 || worst_append < Duration::from_millis(2),
        "an append waited {worst_append:?} while index rebuilds took {mean_scan:?} each"
    );
}
