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
    // 1,600 batches of 64 KiB in 96 MiB segments: one sealed segment of 96 MiB and more, so a
    // rebuild takes tens of milliseconds, well above scheduling noise on two shared cores.
    let cfg = LogConfig { segment_bytes: 96 << 20, segment_ms: None, retention_ms: None, ..LogConfig::default() };
    let mut mcfg = ManagerConfig::new(dir.path());
    mcfg.default_log = cfg.clone();
    let rt = common::runtime();
    let _enter = rt.enter();
    {
        let mgr = LogManager::open(mcfg.clone()).expect("open");
        let log = mgr.create("t", 0, cfg.clone()).expect("create");
        let mut last = 0;
        for j in 0..1_600u64 {
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
        worst_append < mean_scan / 2 || worst_append < Duration::from_millis(10),
        "an append waited {worst_append:?} while index rebuilds took {mean_scan:?} each"
    );
}

/// A truncation's file work (cutting and fsyncing the segment, the directory fsync, and the
/// producer-state rebuild, which reads every batch header since the last snapshot) runs with
/// the lock released: reads of the partition meanwhile see the shortened log at once and do
/// not wait for it; appends are refused (`Truncating`) rather than queued behind it.
#[test]
fn truncation_does_its_file_work_without_the_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 1 << 30, segment_ms: None, retention_ms: None, ..LogConfig::default() };
    let mut mcfg = ManagerConfig::new(dir.path());
    mcfg.default_log = cfg.clone();
    let rt = common::runtime();
    let _enter = rt.enter();
    let mgr = LogManager::open(mcfg).expect("open");
    let log = mgr.create("t", 0, cfg).expect("create");
    // Many small idempotent batches and no snapshot: the rebuild reads all their headers.
    let mut last = 0;
    for i in 0..40_000i32 {
        let batch = make_batch(i as u64, 1, 16, 1_000, Some((7, 0, i)));
        last = log.append(batch, 0).expect("append").last_offset;
    }
    rt.block_on(log.wait_durable(last)).expect("durable");

    let cut = last / 2;
    let truncating = Arc::new(AtomicBool::new(true));
    let truncator = {
        let (log, truncating) = (log.clone(), truncating.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            log.truncate_to(cut).expect("truncate");
            truncating.store(false, Ordering::SeqCst);
            t.elapsed()
        })
    };
    let mut reads = 0u32;
    let mut refused = 0u32;
    let mut extra = 0i64;
    let mut worst_read = Duration::ZERO;
    while truncating.load(Ordering::SeqCst) {
        let t = Instant::now();
        let r = log.read(0, 4096, ReadBound::LogEnd).expect("read during truncation");
        worst_read = worst_read.max(t.elapsed());
        assert!(!r.records.is_empty());
        reads += 1;
        if log.log_end_offset() == cut {
            match log.append(make_batch(99, 1, 16, 1_000, None), 0) {
                Err(strom_log::Error::Truncating(_)) => refused += 1,
                Ok(_) => {
                    // Taken only once `truncating` is off again: the truncation has finished.
                    extra = 1;
                    break;
                }
                Err(e) => panic!("unexpected append error: {e}"),
            }
        }
    }
    let took = truncator.join().expect("truncator");
    eprintln!("truncation took {took:?}; {reads} reads meanwhile, worst {worst_read:?}; {refused} appends refused");
    assert_eq!(log.log_end_offset(), cut + extra);
    assert!(reads >= 3, "the truncation ({took:?}) overlapped only {reads} reads");
    assert!(
        worst_read < took / 2 || worst_read < Duration::from_millis(2),
        "a read waited {worst_read:?} of a {took:?} truncation"
    );
    // Afterwards the log takes appends again, and its producer state is the rebuilt one:
    // the producer's next sequence is the one after the last kept batch.
    let next_seq = i32::try_from(cut).expect("fits");
    let info = log.append(make_batch(1, 1, 16, 1_000, Some((7, 0, next_seq))), 0).expect("append after truncation");
    assert_eq!(info.base_offset, cut + extra);
    log.validate().expect("invariants hold");
    mgr.shutdown().expect("shutdown");
}

/// Time-based retention needs a sealed segment's largest timestamp; after a restart its
/// indexes are not loaded yet, and retention loads them with the lock released, then deletes.
#[test]
fn retention_loads_an_unloaded_segment_outside_the_lock_and_deletes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_bytes: 1024, segment_ms: None, retention_ms: Some(1_000), ..LogConfig::default() };
    let mut mcfg = ManagerConfig::new(dir.path());
    mcfg.default_log = cfg.clone();
    let rt = common::runtime();
    let _enter = rt.enter();
    {
        let mgr = LogManager::open(mcfg.clone()).expect("open");
        let log = mgr.create("t", 0, cfg).expect("create");
        let mut last = 0;
        for j in 0..3u64 {
            last = log.append(make_batch(j, 2, 300, 1_000 + j as i64, None), 0).expect("append").last_offset;
        }
        rt.block_on(log.wait_durable(last)).expect("durable");
        assert!(log.segment_count() >= 2);
        mgr.shutdown().expect("shutdown");
    }
    let mgr = LogManager::open(mcfg).expect("reopen");
    let log = mgr.get("t", 0).expect("log");
    let before = log.segment_count();
    let deleted = log.apply_retention(1_000_000).expect("retention");
    assert_eq!(deleted, before - 1, "every sealed segment is past retention");
    assert_eq!(log.segment_count(), 1);
    assert!(log.log_start_offset() > 0);
    log.validate().expect("invariants hold");
    mgr.shutdown().expect("shutdown");
}
