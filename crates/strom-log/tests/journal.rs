//! The node journal, without a power-loss filesystem: one fdatasync round covers appends to
//! many partitions; a replay after a crash never undoes a truncation or gives a deleted
//! partition's records to its successor; a journal torn in its tail still opens.
//! (tests/power_loss.rs cuts the power under it for real.)

mod common;

use std::time::Duration;

use strom_log::{FlushPolicy, LogConfig, LogManager, ManagerConfig, ReadBound};

use common::{make_batch, read_all, runtime};

fn config(dir: &std::path::Path) -> ManagerConfig {
    let mut m = ManagerConfig::new(dir);
    m.default_log = LogConfig { flush_policy: FlushPolicy::Always, ..LogConfig::default() };
    m
}

/// 64 partitions each get a batch before anyone waits: a handful of rounds make all of them
/// durable (each round one fdatasync of the journal), not 64 fsyncs.
#[test]
fn one_round_covers_appends_to_many_partitions() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mgr = LogManager::open(config(dir.path())).expect("open");
    let logs: Vec<_> = (0..64).map(|p| mgr.create("t", p, LogConfig::default()).expect("create")).collect();
    let before = mgr.journal_stats().expect("journal on by default");
    let acked: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(i, log)| log.append(make_batch(i as u64, 3, 200, 1, None), 0).expect("append").last_offset)
        .collect();
    for (log, last) in logs.iter().zip(&acked) {
        rt.block_on(log.wait_durable(*last)).expect("durable");
        assert_eq!(log.high_watermark(), last + 1);
    }
    let after = mgr.journal_stats().expect("stats");
    let rounds = after.journal_rounds - before.journal_rounds;
    assert!((1..=4).contains(&rounds), "64 partitions took {rounds} durability rounds ({after:?})");
    mgr.shutdown().expect("shutdown");
}

/// Appends to two partitions (so the rounds go through the journal), then a truncation of
/// one and a deletion and re-creation of the other, then a crash: the replay must keep the
/// cut where it was and give the new partition only its own records.
#[test]
fn replay_never_undoes_a_truncation_or_a_deletion() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mgr = LogManager::open(config(dir.path())).expect("open");
    let a = mgr.create("a", 0, LogConfig::default()).expect("create a");
    let b = mgr.create("b", 0, LogConfig::default()).expect("create b");
    let mut cut_at = 0;
    for i in 0..20u64 {
        let la = a.append(make_batch(i, 2, 100, 1, None), 0).expect("append a");
        let lb = b.append(make_batch(100 + i, 2, 100, 1, None), 0).expect("append b");
        rt.block_on(a.wait_durable(la.last_offset)).expect("a durable");
        rt.block_on(b.wait_durable(lb.last_offset)).expect("b durable");
        if i == 9 {
            cut_at = la.last_offset + 1;
        }
    }
    assert!(mgr.journal_stats().expect("stats").journal_rounds > 0, "the appends went through the journal");
    a.truncate_to(cut_at).expect("truncate");
    mgr.delete("b", 0).expect("delete");
    let b = mgr.create("b", 0, LogConfig::default()).expect("re-create b");
    let nb = b.append(make_batch(5000, 1, 50, 1, None), 0).expect("append to the new b");
    let other = mgr.create("c", 0, LogConfig::default()).expect("create c");
    let nc = other.append(make_batch(6000, 1, 50, 1, None), 0).expect("append c");
    rt.block_on(b.wait_durable(nb.last_offset)).expect("durable");
    rt.block_on(other.wait_durable(nc.last_offset)).expect("durable");
    drop((a, b, other, mgr)); // a crash: no shutdown, no checkpoint

    let mgr = LogManager::open(config(dir.path())).expect("reopen");
    let a = mgr.get("a", 0).expect("a");
    assert_eq!(a.log_end_offset(), cut_at, "the replay put back records the truncation cut");
    assert_eq!(read_all(&a, ReadBound::LogEnd, 1 << 20).len(), 10, "the ten batches below the cut stay");
    let b = mgr.get("b", 0).expect("b");
    assert_eq!(b.log_end_offset(), 1, "the re-created partition has only its own record");
    mgr.shutdown().expect("shutdown");
}

/// Garbage after the last round (a torn round that was never acknowledged) is cut off at
/// startup with a warning; everything acknowledged is there.
#[test]
fn a_torn_journal_tail_opens() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mgr = LogManager::open(config(dir.path())).expect("open");
    let logs: Vec<_> = (0..4).map(|p| mgr.create("t", p, LogConfig::default()).expect("create")).collect();
    let mut ends = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        ends.push(log.append(make_batch(i as u64, 1, 100, 1, None), 0).expect("append").last_offset + 1);
    }
    for (log, end) in logs.iter().zip(&ends) {
        rt.block_on(log.wait_durable(end - 1)).expect("durable");
    }
    drop((logs, mgr));
    let journal = dir.path().join(".journal");
    for entry in std::fs::read_dir(&journal).expect("journal dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "wal") {
            let mut bytes = std::fs::read(&path).expect("read");
            bytes.extend_from_slice(&[0x5a; 300]);
            std::fs::write(&path, bytes).expect("tear");
        }
    }
    let mgr = LogManager::open(config(dir.path())).expect("reopen with a torn journal");
    for (p, end) in ends.iter().enumerate() {
        assert_eq!(mgr.get("t", p as i32).expect("log").log_end_offset(), *end);
    }
    let log = mgr.get("t", 0).expect("log");
    let more = log.append(make_batch(77, 1, 10, 1, None), 0).expect("append after reopen");
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), log.wait_durable(more.last_offset)).await })
        .expect("in time")
        .expect("durable");
    mgr.shutdown().expect("shutdown");
}

/// Damage in an active segment after a crash (a torn write, a flipped byte): the segment's
/// recovery cuts it at the first bad batch, and the journal's replay puts every batch after
/// the last checkpoint back, byte for byte.
#[test]
fn a_damaged_active_segment_is_repaired_from_the_journal() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mgr = LogManager::open(config(dir.path())).expect("open");
    let logs: Vec<_> = (0..3).map(|p| mgr.create("t", p, LogConfig::default()).expect("create")).collect();
    let mut appended: Vec<Vec<bytes::Bytes>> = vec![Vec::new(); 3];
    for i in 0..30u64 {
        let mut waits = Vec::new();
        for (p, log) in logs.iter().enumerate() {
            let b = make_batch(i * 10 + p as u64, 2, 300, 1, None);
            waits.push(log.append(b.clone(), 0).expect("append").last_offset);
            appended[p].push(b);
        }
        for (log, last) in logs.iter().zip(waits) {
            rt.block_on(log.wait_durable(last)).expect("durable");
        }
    }
    drop((logs, mgr));
    let seg = common::segment_files(&common::partition_dir(dir.path(), "t", 1)).pop().expect("segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&seg, &bytes).expect("damage");

    let mgr = LogManager::open(config(dir.path())).expect("reopen");
    assert!(mgr.journal_stats().expect("stats").replayed_batches > 0, "the replay put batches back");
    for (p, originals) in appended.iter().enumerate() {
        let log = mgr.get("t", p as i32).expect("log");
        let got = read_all(&log, ReadBound::HighWatermark, 1 << 20);
        assert_eq!(got.len(), originals.len(), "partition {p}: every batch is back");
        for (i, (g, o)) in got.iter().zip(originals).enumerate() {
            common::assert_same_batch(&g.bytes, o, i as i64 * 2, 0, &format!("partition {p}, batch {i}"));
        }
    }
    mgr.shutdown().expect("shutdown");
}

/// A follower whose leader no longer holds its next offset empties its log and restarts at
/// the leader's log start (Kafka's truncateFullyAndStartAt): the records it had are gone, the
/// leader's batches from there append, and a crash afterwards brings back neither the old
/// records nor a gap.
#[test]
fn a_log_restarted_at_a_later_offset_takes_batches_from_there_and_survives_a_crash() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mgr = LogManager::open(config(dir.path())).expect("open");
    let leader = mgr.create("leader", 0, LogConfig::default()).expect("create leader");
    let follower = mgr.create("follower", 0, LogConfig::default()).expect("create follower");
    for i in 0..50u64 {
        leader.append(make_batch(i, 2, 100, 1, None), 0).expect("append to the leader");
    }
    let l = follower.append(make_batch(900, 3, 100, 1, None), 0).expect("append to the follower");
    rt.block_on(follower.wait_durable(l.last_offset)).expect("durable");
    assert!(follower.restart_at(2).is_err(), "not past the log end");
    follower.restart_at(60).expect("restart at 60");
    assert_eq!((follower.log_start_offset(), follower.log_end_offset()), (60, 60));
    assert!(read_all(&follower, ReadBound::LogEnd, 1 << 20).is_empty(), "the old records are gone");
    // The leader's batches from offset 60 on, appended unchanged.
    let from_60 = leader.read(60, 1 << 20, ReadBound::LogEnd).expect("read the leader").records;
    let end = follower.append_replicated(&from_60).expect("replicated append at 60");
    assert_eq!(end, 100);
    rt.block_on(follower.wait_durable(end - 1)).expect("durable");
    drop((leader, follower, mgr)); // a crash

    let mgr = LogManager::open(config(dir.path())).expect("reopen");
    let follower = mgr.get("follower", 0).expect("follower");
    assert_eq!((follower.log_start_offset(), follower.log_end_offset()), (60, 100));
    let batches = read_all(&follower, ReadBound::LogEnd, 1 << 20);
    assert_eq!(batches.first().map(|b| b.header.base_offset), Some(60));
    assert_eq!(batches.len(), 20);
    follower.validate().expect("valid");
    mgr.shutdown().expect("shutdown");
}
