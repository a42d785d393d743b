//! Power cuts under the log engine, on the FUSE power-loss filesystem (`strom-faultfs`):
//! `kill -9` keeps the page cache, so only a filesystem that really drops unsynced writes can
//! show that the node journal (one fdatasync for many partitions, segments synced lazily at
//! checkpoints) loses nothing it acknowledged.
//!
//! Each round opens the data directory (created by the first round inside the fresh mount,
//! so the directory's own entry must have been made durable), appends to many partitions
//! with flush policy `always`, waits for some appends, truncates, deletes and re-creates a
//! partition now and then, then drops everything without a shutdown and cuts the power:
//! every unsynced write is dropped, or a seeded random prefix of them is kept with the last
//! one torn. After the restart every acknowledged batch must be at its offset with its bytes;
//! anything after the acknowledged end must be a batch that was appended there (unacknowledged
//! writes may survive, never in a changed form); no offset is ever assigned twice.
//!
//! Seeded: `STROM_POWER_SEED` picks the run, `STROM_POWER_ROUNDS` (default 3) its length.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_faultfs::{CutMode, FaultFs};
use strom_log::{FlushPolicy, JournalStats, LogConfig, LogManager, ManagerConfig, PartitionLog, ReadBound};

use common::{Rng, assert_same_batch, make_batch, read_all, runtime};

const TOPIC: &str = "p";
const PARTITIONS: i32 = 12;

fn rounds() -> u64 {
    std::env::var("STROM_POWER_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

fn seed() -> u64 {
    std::env::var("STROM_POWER_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_0001)
}

fn log_config() -> LogConfig {
    // Small segments roll often; no time-based retention or rolls.
    LogConfig {
        segment_bytes: 24 * 1024,
        segment_ms: None,
        retention_ms: None,
        flush_policy: FlushPolicy::Always,
        ..LogConfig::default()
    }
}

fn manager_config(data: &Path) -> ManagerConfig {
    let mut m = ManagerConfig::new(data);
    m.default_log = log_config();
    // Small journal files: rounds switch files, checkpoints run and files are reused.
    m.journal_file_bytes = 48 * 1024;
    m.preallocate_after_bytes = 32 * 1024;
    m.preallocate_bytes = 16 * 1024;
    m
}

/// What the test knows of one partition: the batches in the log, in order, and how far the
/// log acknowledged them.
#[derive(Default)]
struct Part {
    batches: Vec<(i64, Bytes)>,
    acked_end: i64,
}

impl Part {
    fn end(&self) -> i64 {
        self.batches.last().map_or(0, |(base, b)| base + common::record_count(b))
    }
}

/// Opens the directory and checks every partition against the model; adopts what survived
/// beyond the acknowledged end.
fn reopen_and_check(data: &Path, parts: &mut [Part], round: u64) -> (LogManager, Vec<PartitionLog>) {
    let mgr = LogManager::open(manager_config(data)).unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
    let mut logs = Vec::new();
    for (p, part) in parts.iter_mut().enumerate() {
        let what = format!("round {round}, partition {p}");
        let log = mgr.get(TOPIC, p as i32).unwrap_or_else(|| panic!("{what}: the partition is gone after a power cut"));
        log.validate().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(log.high_watermark(), log.log_end_offset(), "{what}: everything recovered is visible");
        let got = read_all(&log, ReadBound::LogEnd, 1 << 20);
        let acked = part.batches.iter().filter(|(base, b)| base + common::record_count(b) <= part.acked_end).count();
        assert!(
            got.len() >= acked,
            "{what}: {} batches after the cut, {acked} were acknowledged (log end {}, acknowledged end {})",
            got.len(),
            log.log_end_offset(),
            part.acked_end
        );
        assert!(got.len() <= part.batches.len(), "{what}: more batches than were ever appended");
        for (i, g) in got.iter().enumerate() {
            let (base, original) = &part.batches[i];
            assert_same_batch(&g.bytes, original, *base, 0, &format!("{what}: batch {i}"));
        }
        part.batches.truncate(got.len());
        part.acked_end = log.log_end_offset();
        assert_eq!(part.acked_end, part.end(), "{what}: log end after the check");
        logs.push(log);
    }
    (mgr, logs)
}

/// Appends from one producer thread to the partitions it owns, in bursts that arrive while
/// rounds run (so rounds cover several partitions and go through the journal), waiting for
/// some; leaves the last ones unacknowledged now and then.
fn produce(rt: &tokio::runtime::Handle, logs: &[PartitionLog], parts: &mut [(usize, &mut Part)], rng: &mut Rng) {
    let mut waiting: Vec<(usize, i64)> = Vec::new();
    for step in 0..rng.range(20, 60) {
        if rng.range(0, 4) == 0 || step % 16 == 15 {
            for (i, last) in waiting.drain(..) {
                rt.block_on(logs[parts[i].0].wait_durable(last)).expect("durable");
                parts[i].1.acked_end = parts[i].1.acked_end.max(last + 1);
            }
        }
        // Now and then a burst of large batches: a round of a megabyte or more fsyncs the
        // segments instead of writing everything twice through the journal.
        let large = step == 3 || rng.range(0, 40) == 0;
        for _ in 0..if large { 8 } else { rng.range(1, 12) } {
            let i = rng.range(0, parts.len() as u64) as usize;
            let (p, part) = &mut parts[i];
            let (records, value_len) =
                if large { (1, rng.range(250_000, 300_000)) } else { (rng.range(1, 5), rng.range(20, 600)) };
            let b = make_batch(rng.next_u64(), records as usize, value_len as usize, 1_000, None);
            let info = logs[*p].append(b.clone(), 0).expect("append");
            assert_eq!(info.base_offset, part.end(), "an offset assigned twice");
            part.batches.push((info.base_offset, b));
            waiting.push((i, info.last_offset));
        }
    }
    let keep_unacked = rng.range(0, waiting.len() as u64 + 1) as usize;
    for (i, last) in waiting.split_off(keep_unacked) {
        rt.block_on(logs[parts[i].0].wait_durable(last)).expect("durable");
        parts[i].1.acked_end = parts[i].1.acked_end.max(last + 1);
    }
}

/// One round of work: three producer threads, each on its own partitions; between two such
/// phases a truncation or a deletion and re-creation now and then.
fn work(rt: &tokio::runtime::Runtime, mgr: &LogManager, logs: &mut [PartitionLog], parts: &mut [Part], rng: &mut Rng) {
    const PRODUCERS: usize = 3;
    for phase in 0..2 {
        let seeds: Vec<u64> = (0..PRODUCERS).map(|_| rng.next_u64()).collect();
        let mut owned: Vec<Vec<(usize, &mut Part)>> = (0..PRODUCERS).map(|_| Vec::new()).collect();
        for (p, part) in parts.iter_mut().enumerate() {
            owned[p % PRODUCERS].push((p, part));
        }
        let logs_ref: &[PartitionLog] = logs;
        std::thread::scope(|scope| {
            for (mine, seed) in owned.into_iter().zip(seeds) {
                let handle = rt.handle().clone();
                scope.spawn(move || {
                    let mut mine = mine;
                    produce(&handle, logs_ref, &mut mine, &mut Rng(seed));
                });
            }
        });
        if phase == 1 {
            break;
        }
        for _ in 0..rng.range(0, 3) {
            let p = rng.range(0, PARTITIONS as u64) as usize;
            if rng.range(0, 3) == 0 {
                mgr.delete(TOPIC, p as i32).expect("delete");
                logs[p] = mgr.create(TOPIC, p as i32, log_config()).expect("re-create");
                parts[p] = Part::default();
            } else if !parts[p].batches.is_empty() {
                // Truncate at one of its batch boundaries (acknowledged or not).
                let keep = rng.range(0, parts[p].batches.len() as u64 + 1) as usize;
                let at = parts[p].batches.get(keep).map_or(parts[p].end(), |(base, _)| *base);
                logs[p].truncate_to(at).expect("truncate");
                parts[p].batches.truncate(keep);
                parts[p].acked_end = parts[p].acked_end.min(at);
            }
        }
    }
}

/// Cuts the power once every file of the dropped manager is closed (its threads end after
/// the drop; a busy mount refuses the cut).
fn cut(fs: &mut FaultFs, mode: CutMode) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match fs.power_cut(mode) {
            Ok(report) => {
                eprintln!("power cut ({mode:?}): {report:?}");
                return;
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("power cut failed: {e}"),
        }
    }
}

#[test]
fn acknowledged_records_survive_power_cuts() {
    if let Err(why) = strom_faultfs::available() {
        panic!("the power-loss filesystem cannot run here ({why}); it needs /dev/fuse and root");
    }
    let rt = runtime();
    let root = tempfile::tempdir().expect("tempdir");
    let mnt = root.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mountpoint");
    let mut fs = FaultFs::mount(&root.path().join("backing"), &mnt).expect("mount");
    // The data directory does not exist yet: the first open creates it (and its parent
    // entries must be made durable, or the first cut takes everything).
    let data = fs.mountpoint().join("strom").join("data");
    let mut rng = Rng(seed());
    let mut parts: Vec<Part> = (0..PARTITIONS).map(|_| Part::default()).collect();
    let mut totals = JournalStats::default();
    {
        let mgr = LogManager::open(manager_config(&data)).expect("first open");
        let mut logs: Vec<_> = (0..PARTITIONS).map(|p| mgr.create(TOPIC, p, log_config()).expect("create")).collect();
        work(&rt, &mgr, &mut logs, &mut parts, &mut rng);
        add(&mut totals, mgr.journal_stats());
    }
    for round in 0..rounds() {
        let mode = if round % 2 == 0 { CutMode::DropAll } else { CutMode::KeepPrefix { seed: rng.next_u64() } };
        cut(&mut fs, mode);
        let (mgr, mut logs) = reopen_and_check(&data, &mut parts, round);
        totals.replayed_batches += mgr.journal_stats().map_or(0, |s| s.replayed_batches);
        work(&rt, &mgr, &mut logs, &mut parts, &mut rng);
        add(&mut totals, mgr.journal_stats());
    }
    eprintln!("journal over the run: {totals:?}");
    assert!(totals.journal_rounds > 0, "no round went through the journal");
    assert!(totals.checkpoints > 0, "no checkpoint ran: the journal files never filled");
    assert!(totals.replayed_batches > 0, "no replay put anything back: the cuts never took journaled data");
    assert!(totals.direct_rounds > 0, "no round was large enough to fsync the segments directly");
    assert!(!totals.pinned);
}

fn add(totals: &mut JournalStats, s: Option<JournalStats>) {
    let s = s.expect("the journal is on");
    totals.journal_rounds += s.journal_rounds;
    totals.fallback_rounds += s.fallback_rounds;
    totals.direct_rounds += s.direct_rounds;
    totals.checkpoints += s.checkpoints;
    totals.pinned |= s.pinned;
}
