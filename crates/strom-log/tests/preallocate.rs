//! Segment preallocation: a busy partition's active segment gets zero-filled space ahead of
//! its last batch (so an fsync after an append has no block allocation to commit). Those
//! zeros must never be read as data, must be gone from sealed segments and after a clean
//! close, and a crash that leaves them behind must recover every acknowledged batch. (With
//! the node journal off: preallocation serves partitions that fsync their own segments.)

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_log::{FlushPolicy, LogConfig, LogManager, ManagerConfig, PartitionLog, ReadBound};

use common::{assert_same_batch, batch_layout, data_end, make_batch, partition_dir, read_all, segment_files};

const TOPIC: &str = "prealloc";
const CHUNK: u64 = 64 * 1024;

fn log_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: None,
        retention_ms: None,
        flush_policy: FlushPolicy::Always,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, segment_bytes: u64) -> LogManager {
    open_with_chunk(dir, segment_bytes, CHUNK)
}

fn open_with_chunk(dir: &Path, segment_bytes: u64, chunk: u64) -> LogManager {
    let mut m = ManagerConfig::new(dir);
    m.default_log = log_config(segment_bytes);
    m.preallocate_bytes = chunk;
    m.preallocate_after_bytes = 0;
    // Preallocation serves partitions that fsync their own segment to acknowledge: with the
    // journal on, these small `always` appends would be made durable by the journal instead.
    m.journal = false;
    LogManager::open(m).expect("open")
}

/// Appends `count` batches of ~1 KiB, each acknowledged (durable) before the next.
fn append_acked(rt: &tokio::runtime::Runtime, log: &PartitionLog, seed: u64, count: u64) -> Vec<Bytes> {
    (0..count)
        .map(|i| {
            let batch = make_batch(seed + i, 4, 250, 1_000 + i as i64, None);
            let info = log.append(batch.clone(), 0).expect("append");
            rt.block_on(log.wait_durable(info.last_offset)).expect("durable");
            batch
        })
        .collect()
}

fn active_segment(dir: &Path) -> PathBuf {
    segment_files(&partition_dir(dir, TOPIC, 0)).pop().expect("an active segment")
}

/// Waits until the active segment file holds zero-filled space after its batches.
fn wait_for_preallocation(dir: &Path) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bytes = std::fs::read(active_segment(dir)).expect("read segment");
        let end = data_end(&bytes);
        if bytes.len() > end {
            return (end, bytes.len());
        }
        assert!(Instant::now() < deadline, "no preallocated space after 10 s ({} bytes of batches)", end);
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn assert_log_holds(log: &PartitionLog, batches: &[Bytes]) {
    let stored = read_all(log, ReadBound::HighWatermark, 64 * 1024);
    assert_eq!(stored.len(), batches.len(), "batches stored");
    let mut base = 0;
    for (i, (s, original)) in stored.iter().zip(batches).enumerate() {
        assert_same_batch(&s.bytes, original, base, 0, &format!("batch {i}"));
        base = s.header.last_offset() + 1;
    }
    assert_eq!(log.log_end_offset(), base, "log end");
}

#[test]
fn zero_filled_space_is_used_by_appends_and_never_read_as_data() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mgr = open(dir.path(), 8 * 1024 * 1024);
    let log = mgr.create(TOPIC, 0, log_config(8 * 1024 * 1024)).expect("create");
    let mut batches = append_acked(&rt, &log, 1, 10);
    let (end, file_len) = wait_for_preallocation(dir.path());
    assert_eq!(end as u64, log.size_bytes(), "the log's size counts batches, not preallocated space");
    assert!(
        file_len as u64 >= end as u64 + CHUNK / 2,
        "at least half a chunk ahead: {file_len} for {end} bytes of batches"
    );

    // Appends now land in the zero-filled space; reads stop at the last batch.
    batches.extend(append_acked(&rt, &log, 100, 200));
    assert_log_holds(&log, &batches);
    let bytes = std::fs::read(active_segment(dir.path())).expect("read");
    let layout = batch_layout(&bytes);
    assert_eq!(layout.len(), batches.len(), "every batch on disk, in order, nothing else but zeros");

    // A clean close gives the space back; a restart finds exactly the batches.
    mgr.shutdown().expect("shutdown");
    drop((log, mgr));
    let bytes = std::fs::read(active_segment(dir.path())).expect("read");
    assert_eq!(bytes.len(), data_end(&bytes), "a cleanly closed segment holds only its batches");
    let mgr = open(dir.path(), 8 * 1024 * 1024);
    let log = mgr.get(TOPIC, 0).expect("partition");
    assert_log_holds(&log, &batches);
    let info = log.append(make_batch(9_999, 1, 10, 5, None), 0).expect("append after restart");
    assert_eq!(info.base_offset, batches.len() as i64 * 4);
    mgr.shutdown().expect("shutdown");
}

#[test]
fn sealed_segments_hold_exactly_their_batches() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let segment_bytes = 96 * 1024;
    let mgr = open(dir.path(), segment_bytes);
    let log = mgr.create(TOPIC, 0, log_config(segment_bytes)).expect("create");
    let mut batches = Vec::new();
    // ~1 KiB per batch: several rolls, with fills in flight around them.
    for round in 0..5 {
        batches.extend(append_acked(&rt, &log, round * 1_000, 90));
        wait_for_preallocation(dir.path());
    }
    let files = segment_files(&partition_dir(dir.path(), TOPIC, 0));
    assert!(files.len() >= 4, "expected several segments, got {}", files.len());
    for sealed in &files[..files.len() - 1] {
        let bytes = std::fs::read(sealed).expect("read");
        assert_eq!(bytes.len(), data_end(&bytes), "{} ends in zeros", sealed.display());
        assert!(bytes.len() as u64 <= segment_bytes, "{} is larger than segment.bytes", sealed.display());
    }
    assert_log_holds(&log, &batches);
    mgr.shutdown().expect("shutdown");
    drop((log, mgr));
    let mgr = open(dir.path(), segment_bytes);
    assert_log_holds(&mgr.get(TOPIC, 0).expect("partition"), &batches);
    mgr.shutdown().expect("shutdown");
}

#[test]
fn crash_with_zero_filled_tail_keeps_every_acknowledged_batch() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mgr = open(dir.path(), 8 * 1024 * 1024);
    let log = mgr.create(TOPIC, 0, log_config(8 * 1024 * 1024)).expect("create");
    let batches = append_acked(&rt, &log, 7, 30);
    wait_for_preallocation(dir.path());
    // A crash: no shutdown, every handle dropped; the zeros stay in the file.
    drop((log, mgr));
    let bytes = std::fs::read(active_segment(dir.path())).expect("read");
    assert!(bytes.len() > data_end(&bytes), "the crash left the preallocated space behind");

    let mgr = open(dir.path(), 8 * 1024 * 1024);
    let log = mgr.get(TOPIC, 0).expect("partition");
    assert_log_holds(&log, &batches);
    let bytes = std::fs::read(active_segment(dir.path())).expect("read");
    assert_eq!(bytes.len(), data_end(&bytes), "recovery cut the zeros off");
    let info = log.append(make_batch(5_000, 2, 10, 5, None), 0).expect("append after recovery");
    assert_eq!(info.base_offset, 30 * 4, "offsets continue after the recovered end");
    mgr.shutdown().expect("shutdown");
}

/// A preallocation step far beyond any segment (a careless config) neither overflows nor
/// grows the file past `segment.bytes`.
#[test]
fn an_absurd_step_is_capped_by_the_segment_size() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let segment_bytes = 256 * 1024;
    let mgr = open_with_chunk(dir.path(), segment_bytes, u64::MAX);
    let log = mgr.create(TOPIC, 0, log_config(segment_bytes)).expect("create");
    let batches = append_acked(&rt, &log, 3, 10);
    let (_, file_len) = wait_for_preallocation(dir.path());
    assert_eq!(file_len as u64, segment_bytes, "filled up to segment.bytes, no further");
    assert_log_holds(&log, &batches);
    mgr.shutdown().expect("shutdown");
}
