//! Property test of the partition log against an in-memory model.
//!
//! Random sequences of operations — appends of random batches (waited for or not), appends by
//! an idempotent producer (in order, retried, out of order, new and fenced epochs), clean
//! reopens, reopens after a simulated crash (the manager dropped without `shutdown`),
//! truncations, segment-size changes that make segments roll, and size-based retention — run
//! against a real log in a temp dir and against a plain `Vec` of the batches that should be
//! there. After every operation the whole log is read back and compared with the model:
//! reads return exactly what was appended (byte for byte, apart from the rewritten base
//! offset and leader epoch), offsets are dense, nothing that was durable is lost, and nothing
//! torn or corrupt is returned.
//!
//! `PROPTEST_CASES=500 cargo test -p strom-log --test model` runs a longer search.
//! Failing cases are saved in `proptest-regressions/model.txt` and replayed first.

mod common;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use strom_log::{Error, FlushPolicy, LogConfig, LogManager, ManagerConfig, PartitionLog, ReadBound};

use common::{assert_same_batch, make_batch, read_all, split_read};

const TOPIC: &str = "model";

/// What an idempotent-producer append tries.
#[derive(Debug, Clone, Copy)]
enum Produce {
    /// The next sequence number: accepted.
    Next,
    /// The last batch again, byte for byte: a duplicate, answered with its original offsets.
    Retry,
    /// A sequence number with a gap: OutOfOrderSequence, nothing written.
    Gap,
    /// Epoch + 1 with sequence 0: accepted.
    NewEpoch,
    /// Epoch - 1: InvalidProducerEpoch, nothing written.
    Fenced,
}

#[derive(Debug, Clone)]
enum Op {
    /// Append one record set of `batches` (records, value length) and maybe wait until durable.
    Append { batches: Vec<(u8, u16)>, seed: u64, wait: bool, bump_leader_epoch: bool },
    /// One idempotent-producer batch of `records` values of `len` bytes.
    Produce { kind: Produce, records: u8, len: u16, seed: u64 },
    /// Shut down cleanly (`clean`) or drop everything without shutdown, then reopen.
    Reopen { clean: bool },
    /// Drop everything without shutdown and cut the active segment file somewhere after its
    /// last durable byte (picked by the index), as a power loss may leave it; then reopen.
    PowerLoss(Index),
    /// Truncate to a batch boundary (or the log end) picked by the index.
    Truncate(Index),
    /// Run retention once with `retention_bytes` set to this value.
    Retention(u32),
    /// Read from an offset picked by the index with this `max_bytes`.
    Read(Index, u32),
    /// Change `segment_bytes`.
    SegmentBytes(u32),
}

/// One batch the model expects in the log.
#[derive(Debug, Clone)]
struct MBatch {
    /// The bytes as appended (base offset 0, leader epoch -1).
    original: Bytes,
    base: i64,
    last: i64,
    leader_epoch: i32,
    /// (producer id, producer epoch, base sequence, last sequence).
    producer: Option<(i64, i16, i32, i32)>,
}

struct Model {
    start: i64,
    end: i64,
    /// Everything below this must survive a crash.
    durable_end: i64,
    /// The high watermark must be at least this.
    hw_floor: i64,
    batches: Vec<MBatch>,
    leader_epoch: i32,
    /// The current idempotent producer id.
    pid: i64,
    next_ts: i64,
    always: bool,
}

impl Model {
    /// The producer state the log must hold for the current producer id, derived from the
    /// batches still in the log: (epoch, last sequence, index of its last batch).
    fn producer_state(&self) -> Option<(i16, i32, usize)> {
        self.batches.iter().enumerate().rev().find_map(|(i, b)| match b.producer {
            Some((pid, epoch, _, last_seq)) if pid == self.pid => Some((epoch, last_seq, i)),
            _ => None,
        })
    }

    /// Offsets a truncation may target: batch boundaries and the end.
    fn boundaries(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.batches.iter().map(|b| b.base).collect();
        v.push(self.end);
        v
    }

    /// Forgets everything at or after `offset` (a batch boundary).
    fn cut(&mut self, offset: i64) {
        self.batches.retain(|b| b.base < offset);
        if let Some(last) = self.batches.last() {
            assert_eq!(last.last + 1, offset, "model cut at {offset} is not a batch boundary");
        }
        self.end = offset;
        self.durable_end = self.durable_end.min(offset);
        self.hw_floor = self.hw_floor.min(offset);
    }

    fn ts(&mut self) -> i64 {
        self.next_ts += 1;
        self.next_ts
    }
}

struct Harness {
    dir: tempfile::TempDir,
    cfg: LogConfig,
    /// `None` only while reopening.
    open: Option<(LogManager, PartitionLog)>,
}

impl Harness {
    fn mgr(&self) -> &LogManager {
        &self.open.as_ref().expect("log is open").0
    }

    fn log(&self) -> &PartitionLog {
        &self.open.as_ref().expect("log is open").1
    }
}

fn manager_config(dir: &std::path::Path, cfg: &LogConfig) -> ManagerConfig {
    let mut m = ManagerConfig::new(dir);
    m.default_log = cfg.clone();
    // Preallocate from the first append, in small steps, so rolls, truncation, crashes and
    // power losses also meet segments that end in zero-filled space.
    m.preallocate_bytes = 8 * 1024;
    m.preallocate_after_bytes = 0;
    // Retention runs at a "now" far past every timestamp, which would expire every producer
    // by age; that rule has its own tests, and here the model's producer must survive it.
    m.producer_id_expiration_ms = u64::MAX;
    m
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        4 => Just(Produce::Next),
        2 => Just(Produce::Retry),
        1 => Just(Produce::Gap),
        1 => Just(Produce::NewEpoch),
        1 => Just(Produce::Fenced),
    ];
    prop_oneof![
        8 => (
            prop::collection::vec((1u8..=20, 0u16..=600), 1..=3),
            any::<u64>(),
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(batches, seed, wait, bump_leader_epoch)| Op::Append { batches, seed, wait, bump_leader_epoch }),
        4 => (kind, 1u8..=10, 0u16..=300, any::<u64>())
            .prop_map(|(kind, records, len, seed)| Op::Produce { kind, records, len, seed }),
        1 => Just(Op::Reopen { clean: true }),
        1 => Just(Op::Reopen { clean: false }),
        1 => any::<Index>().prop_map(Op::PowerLoss),
        1 => any::<Index>().prop_map(Op::Truncate),
        1 => prop_oneof![Just(0u32), 0u32..2_000, 0u32..24_000].prop_map(Op::Retention),
        2 => (any::<Index>(), 1u32..16_000).prop_map(|(i, m)| Op::Read(i, m)),
        1 => (1024u32..=8192).prop_map(Op::SegmentBytes),
    ]
}

/// How often the generated cases reach the states worth testing; printed after each case
/// with `STROM_MODEL_STATS=1` (a check that the generator still covers them).
mod stats {
    use std::sync::atomic::{AtomicU64, Ordering};

    pub static CASES: AtomicU64 = AtomicU64::new(0);
    pub static MULTI_SEGMENT: AtomicU64 = AtomicU64::new(0);
    pub static RETENTION_DELETED: AtomicU64 = AtomicU64::new(0);
    pub static TRUNCATED_SEGMENTS: AtomicU64 = AtomicU64::new(0);
    pub static CRASH_CUT: AtomicU64 = AtomicU64::new(0);
    pub static DUPLICATES: AtomicU64 = AtomicU64::new(0);
    pub static REJECTED: AtomicU64 = AtomicU64::new(0);

    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn print() {
        if std::env::var_os("STROM_MODEL_STATS").is_some() {
            let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
            eprintln!(
                "cases {} | multi-segment {} | retention deleted {} | truncation removed segments {} | crash lost unacked {} | duplicates {} | producer rejects {}",
                g(&CASES),
                g(&MULTI_SEGMENT),
                g(&RETENTION_DELETED),
                g(&TRUNCATED_SEGMENTS),
                g(&CRASH_CUT),
                g(&DUPLICATES),
                g(&REJECTED)
            );
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(40)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 400,
        // Relative to the package root (cargo test's working directory); the default
        // `SourceParallel` cannot place files for integration tests.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/model.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_model(
        always in prop::bool::weighted(0.8),
        segment_bytes in 1024u64..=8192,
        ops in prop::collection::vec(op_strategy(), 1..40),
    ) {
        run_case(always, segment_bytes, &ops);
    }
}

fn run_case(always: bool, segment_bytes: u64, ops: &[Op]) {
    let rt = common::runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            segment_bytes,
            segment_ms: None,
            retention_ms: None,
            retention_bytes: None,
            flush_policy: if always { FlushPolicy::Always } else { FlushPolicy::Never },
            ..LogConfig::default()
        };
        let mgr = LogManager::open(manager_config(dir.path(), &cfg)).expect("open");
        let log = mgr.create(TOPIC, 0, cfg.clone()).expect("create");
        let mut h = Harness { dir, cfg, open: Some((mgr, log)) };
        let mut m = Model {
            start: 0,
            end: 0,
            durable_end: 0,
            hw_floor: 0,
            batches: Vec::new(),
            leader_epoch: 0,
            pid: 1000,
            next_ts: 1_700_000_000_000,
            always,
        };
        let mut multi = false;
        for (step, op) in ops.iter().enumerate() {
            apply(&mut h, &mut m, op).await;
            verify(h.log(), &m, &format!("after step {step} ({op:?})"));
            multi |= h.log().segment_count() > 1;
        }
        h.mgr().shutdown().expect("shutdown");
        stats::bump(&stats::CASES);
        if multi {
            stats::bump(&stats::MULTI_SEGMENT);
        }
        stats::print();
    });
}

async fn apply(h: &mut Harness, m: &mut Model, op: &Op) {
    match op {
        Op::Append { batches, seed, wait, bump_leader_epoch } => {
            if *bump_leader_epoch {
                m.leader_epoch += 1;
            }
            let mut set = BytesMut::new();
            let mut parts = Vec::new();
            for (i, (records, len)) in batches.iter().enumerate() {
                let ts = m.ts();
                let b = make_batch(seed.wrapping_add(i as u64), *records as usize, *len as usize, ts, None);
                set.extend_from_slice(&b);
                parts.push(b);
            }
            append_and_check(h, m, set.freeze(), parts, None, *wait).await;
        }
        Op::Produce { kind, records, len, seed } => produce(h, m, *kind, *records, *len, *seed).await,
        Op::Reopen { clean } => reopen(h, m, *clean, None),
        Op::PowerLoss(cut) => reopen(h, m, false, Some(cut)),
        Op::Truncate(idx) => {
            let candidates = m.boundaries();
            let target = candidates[idx.index(candidates.len())];
            let segments = h.log().segment_count();
            h.log().truncate_to(target).unwrap_or_else(|e| panic!("truncate_to({target}): {e}"));
            if h.log().segment_count() < segments {
                stats::bump(&stats::TRUNCATED_SEGMENTS);
            }
            m.cut(target);
        }
        Op::Retention(keep) => retention(h, m, u64::from(*keep)),
        Op::Read(idx, max_bytes) => check_read(h.log(), m, idx, *max_bytes as usize),
        Op::SegmentBytes(n) => {
            h.cfg.segment_bytes = u64::from(*n);
            h.log().set_config(h.cfg.clone()).expect("set_config");
        }
    }
}

/// Appends `set` (made of `parts`) and checks the assigned offsets against the model.
async fn append_and_check(
    h: &mut Harness,
    m: &mut Model,
    set: Bytes,
    parts: Vec<Bytes>,
    producer: Option<(i64, i16, i32, i32)>,
    wait: bool,
) {
    let info = h.log().append(set, m.leader_epoch).unwrap_or_else(|e| panic!("append at {}: {e}", m.end));
    let total: i64 = parts.iter().map(|b| common::record_count(b)).sum();
    assert!(!info.duplicate, "fresh append reported as duplicate");
    assert_eq!(info.base_offset, m.end, "base offset of a fresh append");
    assert_eq!(info.last_offset, m.end + total - 1, "last offset of a fresh append");
    assert_eq!(i64::from(info.record_count), total, "record count");
    assert_eq!(info.max_timestamp, m.next_ts, "max timestamp");
    for b in parts {
        let n = common::record_count(&b);
        m.batches.push(MBatch {
            original: b,
            base: m.end,
            last: m.end + n - 1,
            leader_epoch: m.leader_epoch,
            producer,
        });
        m.end += n;
    }
    if wait {
        h.log()
            .wait_durable(info.last_offset)
            .await
            .unwrap_or_else(|e| panic!("wait_durable({}): {e}", info.last_offset));
        if m.always {
            m.durable_end = m.durable_end.max(info.last_offset + 1);
        }
        m.hw_floor = m.hw_floor.max(info.last_offset + 1);
        let hw = h.log().high_watermark();
        assert!(hw > info.last_offset, "high watermark {hw} is not past {} after wait_durable", info.last_offset);
    }
}

async fn produce(h: &mut Harness, m: &mut Model, kind: Produce, records: u8, len: u16, seed: u64) {
    let state = m.producer_state();
    let (kind, state) = match (kind, state) {
        (Produce::Fenced, Some((0, ..))) | (_, None) => (Produce::Next, state),
        (k, s) => (k, s),
    };
    let ts = m.ts();
    let before_end = m.end;
    let pid = m.pid;
    let make = |epoch: i16, seq: i32| make_batch(seed, records as usize, len as usize, ts, Some((pid, epoch, seq)));
    let last_seq = |seq: i32| seq + i32::from(records) - 1;
    match (kind, state) {
        (Produce::Next, s) => {
            let (epoch, seq) = s.map_or((0, 0), |(e, last, _)| (e, last + 1));
            let b = make(epoch, seq);
            append_and_check(h, m, b.clone(), vec![b], Some((pid, epoch, seq, last_seq(seq))), true).await;
        }
        (Produce::NewEpoch, Some((epoch, ..))) => {
            let b = make(epoch + 1, 0);
            append_and_check(h, m, b.clone(), vec![b], Some((pid, epoch + 1, 0, last_seq(0))), true).await;
        }
        (Produce::Retry, Some((_, _, i))) => {
            let orig = m.batches[i].clone();
            let info = h.log().append(orig.original.clone(), m.leader_epoch).expect("retried idempotent batch");
            assert!(
                info.duplicate,
                "retry of the producer's last batch (offset {}) was not detected as a duplicate",
                orig.base
            );
            assert_eq!(
                (info.base_offset, info.last_offset),
                (orig.base, orig.last),
                "duplicate must carry the original offsets"
            );
            assert_eq!(h.log().log_end_offset(), before_end, "a duplicate must not be written");
            stats::bump(&stats::DUPLICATES);
        }
        (Produce::Gap, Some((epoch, last, _))) => {
            let b = make(epoch, last + 3);
            match h.log().append(b, m.leader_epoch) {
                Err(Error::OutOfOrderSequence { producer_id, expected, received }) => {
                    assert_eq!((producer_id, expected, received), (pid, last + 1, last + 3));
                }
                other => panic!("sequence gap: expected OutOfOrderSequence, got {other:?}"),
            }
            assert_eq!(h.log().log_end_offset(), before_end, "a rejected batch must not be written");
            stats::bump(&stats::REJECTED);
        }
        (Produce::Fenced, Some((epoch, last, _))) => {
            let b = make(epoch - 1, last + 1);
            match h.log().append(b, m.leader_epoch) {
                Err(Error::InvalidProducerEpoch { producer_id, received, current }) => {
                    assert_eq!((producer_id, received, current), (pid, epoch - 1, epoch));
                }
                other => panic!("old producer epoch: expected InvalidProducerEpoch, got {other:?}"),
            }
            assert_eq!(h.log().log_end_offset(), before_end, "a rejected batch must not be written");
            stats::bump(&stats::REJECTED);
        }
        (k, None) => unreachable!("{k:?} without producer state was mapped to Next"),
    }
}

fn reopen(h: &mut Harness, m: &mut Model, clean: bool, power_loss: Option<&Index>) {
    if clean {
        h.mgr().shutdown().expect("shutdown");
    }
    // Drop every handle: after this nothing of the old instance may touch the files.
    drop(h.open.take());
    if let Some(cut) = power_loss {
        lose_unsynced_tail(h, m, cut);
    }
    let mgr = LogManager::open(manager_config(h.dir.path(), &h.cfg))
        .unwrap_or_else(|e| panic!("reopen (clean: {clean}): {e}"));
    let log = mgr.get(TOPIC, 0).expect("partition log found on disk after reopen");
    h.open = Some((mgr, log));
    let log = h.log();
    assert_eq!(log.log_start_offset(), m.start, "log start after reopen");
    let end = log.log_end_offset();
    if clean {
        assert_eq!(end, m.end, "log end after a clean reopen");
    } else {
        assert!(
            m.durable_end <= end && end <= m.end,
            "log end {end} after a crash must lie in [durable {}, appended {}]",
            m.durable_end,
            m.end
        );
        assert!(m.boundaries().contains(&end), "recovered log end {end} is not a batch boundary");
        if end < m.end {
            stats::bump(&stats::CRASH_CUT);
        }
        m.cut(end);
    }
    assert_eq!(log.high_watermark(), end, "after reopen everything on disk is durable and visible");
    m.durable_end = end;
    m.hw_floor = end;
}

/// Cuts the active segment file at a position between the end of its last durable batch
/// and its end: what a power loss may leave of data that was written but not fsynced.
/// (Sealed segments were fsynced when they rolled, whatever the flush policy.)
fn lose_unsynced_tail(h: &Harness, m: &Model, cut: &Index) {
    let dir = common::partition_dir(h.dir.path(), TOPIC, 0);
    let seg = common::segment_files(&dir).pop().expect("an active segment");
    let bytes = std::fs::read(&seg).expect("read active segment");
    let layout = common::batch_layout(&bytes);
    let data_end = layout.last().map_or(0, |b| b.1);
    let durable_pos = layout.iter().find(|(.., base, _)| *base >= m.durable_end).map_or(data_end, |(start, ..)| *start);
    let pos = durable_pos + cut.index(bytes.len() - durable_pos + 1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .and_then(|f| f.set_len(pos as u64))
        .expect("cut the active segment");
}

fn retention(h: &mut Harness, m: &mut Model, keep: u64) {
    let size_before = h.log().size_bytes();
    let segments_before = h.log().segment_count();
    let mut cfg = h.cfg.clone();
    cfg.retention_bytes = Some(keep);
    h.log().set_config(cfg).expect("set_config");
    let deleted = h.mgr().run_retention(i64::MAX / 2).expect("run_retention");
    h.log().set_config(h.cfg.clone()).expect("set_config");
    let start = h.log().log_start_offset();
    assert_eq!(h.log().log_end_offset(), m.end, "retention must not touch the log end");
    assert!(start >= m.start, "log start went backwards");
    assert_eq!(segments_before - h.log().segment_count(), deleted, "deleted count vs segment count");
    assert!(h.log().segment_count() >= 1, "the active segment must remain");
    if size_before <= keep {
        assert_eq!((deleted, start), (0, m.start), "retention deleted data from a log within retention.bytes");
    }
    assert!(m.boundaries().contains(&start), "log start {start} after retention is not a batch boundary");
    let pid = m.pid;
    let expired_producer_batch = m.batches.iter().any(|b| b.base < start && b.producer.is_some_and(|p| p.0 == pid));
    m.batches.retain(|b| b.base >= start);
    m.start = start;
    if deleted > 0 {
        stats::bump(&stats::RETENTION_DELETED);
    }
    if expired_producer_batch {
        // A producer whose last batch retention deleted is dropped (as in Kafka), one with
        // only older batches deleted is kept: rather than model that split, carry on with a
        // fresh producer id so the model stays unambiguous.
        m.pid += 1;
    }
}

fn check_read(log: &PartitionLog, m: &Model, idx: &Index, max_bytes: usize) {
    let span = (m.end - m.start + 1) as usize;
    let offset = m.start + idx.index(span) as i64;
    let r = log.read(offset, max_bytes, ReadBound::LogEnd).unwrap_or_else(|e| panic!("read({offset}): {e}"));
    assert_eq!((r.log_start_offset, r.log_end_offset), (m.start, m.end), "read result offsets");
    let got = split_read(&r.records);
    if offset == m.end {
        assert!(got.is_empty(), "read at the log end returned data");
    } else {
        assert!(!got.is_empty(), "read({offset}) below the log end returned nothing");
        let first = m.batches.iter().position(|b| b.base <= offset && offset <= b.last).expect("model batch");
        for (i, g) in got.iter().enumerate() {
            let e = &m.batches[first + i];
            assert_same_batch(&g.bytes, &e.original, e.base, e.leader_epoch, &format!("read({offset}) batch {i}"));
        }
        if got.len() > 1 {
            let total: usize = got.iter().map(|g| g.bytes.len()).sum();
            assert!(total <= max_bytes, "read({offset}, {max_bytes}) returned {total} bytes in {} batches", got.len());
        }
    }
    match log.read(m.end + 1, max_bytes, ReadBound::LogEnd) {
        Err(Error::OffsetOutOfRange { .. }) => {}
        other => panic!("read past the log end: expected OffsetOutOfRange, got {other:?}"),
    }
    if m.start > 0 {
        match log.read(m.start - 1, max_bytes, ReadBound::LogEnd) {
            Err(Error::OffsetOutOfRange { .. }) => {}
            other => panic!("read below the log start: expected OffsetOutOfRange, got {other:?}"),
        }
    }
}

/// The whole log against the model.
fn verify(log: &PartitionLog, m: &Model, when: &str) {
    if let Err(broken) = log.validate() {
        panic!("{when}: invariant broken: {broken}");
    }
    assert_eq!(log.log_start_offset(), m.start, "{when}: log start");
    assert_eq!(log.log_end_offset(), m.end, "{when}: log end");
    let hw = log.high_watermark();
    assert!(m.hw_floor <= hw && hw <= m.end, "{when}: high watermark {hw} outside [{}, {}]", m.hw_floor, m.end);
    let got = read_all(log, ReadBound::LogEnd, 4096);
    assert_eq!(got.len(), m.batches.len(), "{when}: number of batches read back");
    for (i, (g, e)) in got.iter().zip(&m.batches).enumerate() {
        assert_same_batch(&g.bytes, &e.original, e.base, e.leader_epoch, &format!("{when}: batch {i}"));
    }
    // read_all checks each read against the high watermark it reports; the flusher may move
    // it on meanwhile, so compare the end with a sample taken afterwards.
    let visible = read_all(log, ReadBound::HighWatermark, 1 << 20);
    let visible_end = visible.last().map_or(m.start, |b| b.header.last_offset() + 1);
    let hw_after = log.high_watermark();
    assert!(visible_end <= hw_after, "{when}: a consumer read returned offsets past the high watermark {hw_after}");
}

/// `truncate_to` fsyncs what it keeps; a `wait_durable` for a kept offset must then resolve
/// even if the flusher had not got to those appends before the truncation (found by
/// reading the code: the truncation clears the dirty flag, the flusher then skips the log,
/// and nothing publishes the new durable end until some later append).
#[test]
fn wait_durable_resolves_after_a_truncation_that_keeps_the_offset() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig { segment_ms: None, ..LogConfig::default() };
    let mgr = LogManager::open(manager_config(dir.path(), &cfg)).expect("open");
    let log = mgr.create(TOPIC, 0, cfg).expect("create");
    for round in 0..200 {
        let a = log.append(make_batch(round, 2, 10, 1, None), 0).expect("append a");
        let b = log.append(make_batch(round + 1000, 2, 10, 1, None), 0).expect("append b");
        log.truncate_to(b.base_offset).expect("truncate");
        let waited = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(2), log.wait_durable(a.last_offset)).await
        });
        match waited {
            Ok(r) => r.expect("wait_durable"),
            Err(_) => panic!(
                "round {round}: wait_durable({}) still pending 2 s after truncate_to({}) (log end {}, high watermark {})",
                a.last_offset,
                b.base_offset,
                log.log_end_offset(),
                log.high_watermark()
            ),
        }
    }
    mgr.shutdown().expect("shutdown");
}
