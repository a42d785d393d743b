//! Torn and corrupt tails: the active segment is cut at random byte positions, has random
//! bytes flipped, or has garbage (zeros, random bytes, half a batch) written past its end,
//! and the log is reopened without a clean-shutdown marker. Recovery must truncate to the
//! last valid batch: every batch before the damage is intact byte for byte, `log_end_offset`
//! is the first offset of the damaged batch, nothing at or after the damage is served, the
//! file is physically cut there, and appends continue at that offset.
//!
//! Flips avoid the partition-leader-epoch field (bytes 12..16 of a batch): the RecordBatch v2
//! format leaves it outside the CRC (as the base offset and length are), so a flip there is
//! undetectable by design. Flips in the base offset must be caught by the offset-continuity
//! check, flips in the length, magic and CRC fields and in the records by the CRC.
//!
//! Corrupt *sealed* segments are never repaired at startup; reading them must answer
//! `Error::Corrupted` naming the file, never serve the bytes and never panic.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use strom_log::{Error, LogConfig, LogManager, ManagerConfig, PartitionLog, ReadBound};

use common::{Rng, assert_same_batch, batch_layout, make_batch, partition_dir, read_all, segment_files};

const TOPIC: &str = "torn";

/// How the active segment is damaged.
#[derive(Debug, Clone)]
enum Damage {
    /// Truncate the file to this length.
    Cut(usize),
    /// XOR these (position, mask) pairs into the file.
    Flip(Vec<(usize, u8)>),
    /// Truncate to `cut`, then flip one byte before it.
    CutAndFlip(usize, usize, u8),
    /// Append these bytes after the last batch.
    Garbage(Vec<u8>),
}

/// One log with `originals` appended (all durable), closed without a clean shutdown.
struct Written {
    dir: tempfile::TempDir,
    cfg: LogConfig,
    originals: Vec<Bytes>,
    /// (base, last) offset of each original.
    offsets: Vec<(i64, i64)>,
}

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig { segment_bytes, segment_ms: None, retention_ms: None, ..LogConfig::default() }
}

fn manager(dir: &Path, cfg: &LogConfig) -> LogManager {
    let mut m = ManagerConfig::new(dir);
    m.default_log = cfg.clone();
    // The segment's own recovery, alone: with the node journal on, a replay would put the
    // cut batches back (tests/journal.rs shows that repair).
    m.journal = false;
    LogManager::open(m).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

fn write_log(rng: &mut Rng, segment_bytes: u64, batches: usize, clean: bool) -> Written {
    write_log_sized(rng, segment_bytes, batches, 10, 400, clean)
}

/// Appends `batches` random batches of up to `max_records` values of up to `max_value` bytes.
fn write_log_sized(
    rng: &mut Rng,
    segment_bytes: u64,
    batches: usize,
    max_records: u64,
    max_value: u64,
    clean: bool,
) -> Written {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(segment_bytes);
    let mut originals = Vec::new();
    let mut offsets = Vec::new();
    common::runtime().block_on(async {
        let mgr = manager(dir.path(), &cfg);
        let log = mgr.create(TOPIC, 0, cfg.clone()).expect("create");
        let mut last = 0;
        for i in 0..batches {
            let b = make_batch(
                rng.next_u64(),
                rng.range(1, max_records + 1) as usize,
                rng.range(0, max_value + 1) as usize,
                1_000 + i as i64,
                None,
            );
            let info = log.append(b.clone(), 7).expect("append");
            offsets.push((info.base_offset, info.last_offset));
            originals.push(b);
            last = info.last_offset;
        }
        log.wait_durable(last).await.expect("wait_durable");
        if clean {
            mgr.shutdown().expect("shutdown");
        }
        // Without shutdown this is the crash: the marker is missing and recovery must scan.
    });
    Written { dir, cfg, originals, offsets }
}

fn reopen(w: &Written) -> (LogManager, PartitionLog) {
    let mgr = manager(w.dir.path(), &w.cfg);
    let log = mgr.get(TOPIC, 0).expect("partition log after reopen");
    (mgr, log)
}

/// What recovery must leave after some damage: the log end, and the damaged segment's path
/// and length.
struct Expected {
    end: i64,
    segment: PathBuf,
    len: u64,
}

/// Applies `damage` to the last segment and returns what recovery must leave.
fn damage_active(w: &Written, damage: &Damage) -> Expected {
    let seg = segment_files(&partition_dir(w.dir.path(), TOPIC, 0)).pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("read segment");
    let layout = batch_layout(&bytes);
    let intact_len = bytes.len() as u64;
    let full_end = w.offsets.last().map_or(0, |o| o.1 + 1);
    // Recovery must cut at the start of the batch that holds byte `pos`.
    let cut_at = |pos: usize| -> (i64, u64) {
        match layout.iter().find(|(_, end, _, _)| *end > pos) {
            Some((start, _, base, _)) => (*base, *start as u64),
            None => (full_end, intact_len),
        }
    };
    let (end, len) = match damage {
        Damage::Cut(p) => {
            bytes.truncate(*p);
            cut_at(*p)
        }
        Damage::Flip(flips) => {
            for (p, mask) in flips {
                bytes[*p] ^= mask;
            }
            cut_at(flips.iter().map(|f| f.0).min().expect("a flip"))
        }
        Damage::CutAndFlip(cut, p, mask) => {
            bytes.truncate(*cut);
            bytes[*p] ^= mask;
            cut_at((*p).min(*cut))
        }
        Damage::Garbage(g) => {
            bytes.extend_from_slice(g);
            (full_end, intact_len)
        }
    };
    assert!(end >= segment_base(&seg), "damage outside the active segment");
    std::fs::write(&seg, &bytes).expect("write damaged segment");
    Expected { end, segment: seg, len }
}

/// A position in the file that is not inside a batch's leader-epoch field; half the time in
/// a batch header, where the fields not covered by the CRC live.
fn flip_position(rng: &mut Rng, layout: &[(usize, usize, i64, i64)], len: usize) -> usize {
    loop {
        let p = if rng.range(0, 2) == 0 {
            let (start, end, ..) = layout[rng.range(0, layout.len() as u64) as usize];
            (start + rng.range(0, 61) as usize).min(end - 1)
        } else {
            rng.range(0, len as u64) as usize
        };
        if p >= len {
            continue;
        }
        let (start, ..) = layout.iter().find(|(_, end, _, _)| *end > p).expect("position inside a batch");
        if !(12..16).contains(&(p - start)) {
            return p;
        }
    }
}

fn random_damage(rng: &mut Rng, w: &Written, next_batch: &Bytes) -> Damage {
    let seg = segment_files(&partition_dir(w.dir.path(), TOPIC, 0)).pop().expect("a segment");
    let bytes = std::fs::read(&seg).expect("read segment");
    let layout = batch_layout(&bytes);
    let len = bytes.len();
    if len == 0 {
        let n = rng.range(1, 200) as usize;
        return Damage::Garbage(rng.bytes(n));
    }
    match rng.range(0, 6) {
        0 | 1 => {
            // Cuts near batch boundaries are the interesting ones: exactly on, one short, one over.
            let (s, e, ..) = layout[rng.range(0, layout.len() as u64) as usize];
            let p = match rng.range(0, 5) {
                0 => s,
                1 => s + 1,
                2 => e - 1,
                3 => s + 12 + rng.range(0, 61) as usize,
                _ => rng.range(0, len as u64) as usize,
            };
            Damage::Cut(p.min(len - 1))
        }
        2 | 3 => {
            let n = rng.range(1, 4);
            Damage::Flip((0..n).map(|_| (flip_position(rng, &layout, len), rng.range(1, 256) as u8)).collect())
        }
        4 => {
            let cut = rng.range(1, len as u64) as usize;
            let p = flip_position(rng, &layout, cut);
            Damage::CutAndFlip(cut, p, rng.range(1, 256) as u8)
        }
        _ => match rng.range(0, 3) {
            0 => Damage::Garbage(vec![0; rng.range(1, 5000) as usize]),
            1 => {
                let n = rng.range(1, 300) as usize;
                Damage::Garbage(rng.bytes(n))
            }
            _ => {
                // A torn write of a real next batch with the right base offset.
                let mut b = next_batch.to_vec();
                let base = w.offsets.last().map_or(0, |o| o.1 + 1);
                b[0..8].copy_from_slice(&base.to_be_bytes());
                b.truncate(rng.range(1, b.len() as u64) as usize);
                Damage::Garbage(b)
            }
        },
    }
}

/// Reopens a damaged log and checks everything the module doc promises.
fn check_recovery(w: &Written, expected: &Expected, what: &str) {
    let expected_end = expected.end;
    let (mgr, log) = reopen(w);
    assert_eq!(log.log_end_offset(), expected_end, "{what}: log end after recovery");
    assert_eq!(log.high_watermark(), expected_end, "{what}: high watermark after recovery");
    let kept = w.offsets.iter().take_while(|o| o.1 < expected_end).count();
    check_batches(&log, w, kept, what);
    match log.read(expected_end, 1 << 20, ReadBound::LogEnd) {
        Ok(r) => assert!(r.records.is_empty(), "{what}: data served at the recovered log end"),
        Err(e) => panic!("{what}: read at the log end: {e}"),
    }
    assert!(
        matches!(log.read(expected_end + 1, 1 << 20, ReadBound::LogEnd), Err(Error::OffsetOutOfRange { .. })),
        "{what}: read past the recovered end must be out of range"
    );
    // The cut is physical, at the first bad byte's batch: later appends must not land behind garbage.
    match std::fs::metadata(&expected.segment) {
        Ok(m) => assert_eq!(m.len(), expected.len, "{what}: active segment length after recovery"),
        // An emptied segment may be removed altogether.
        Err(_) => assert_eq!(expected.len, 0, "{what}: damaged segment {} vanished", expected.segment.display()),
    }

    // Appends continue at the recovered end, and survive another crash.
    let mut rng = Rng(expected_end as u64 + 99);
    let extra: Vec<Bytes> = (0..2).map(|i| make_batch(rng.next_u64(), 3, 100, 5_000 + i, None)).collect();
    let mut next = expected_end;
    common::runtime().block_on(async {
        for b in &extra {
            let info = log.append(b.clone(), 8).expect("append after recovery");
            assert_eq!(info.base_offset, next, "{what}: append after recovery");
            next = info.last_offset + 1;
            log.wait_durable(info.last_offset).await.expect("wait_durable");
        }
    });
    drop((mgr, log));
    let (mgr, log) = reopen(w);
    assert_eq!(log.log_end_offset(), next, "{what}: log end after appending and crashing again");
    check_batches(&log, w, kept, what);
    let got = read_all(&log, ReadBound::LogEnd, 1 << 20);
    let tail = &got[got.len() - 2..];
    let mut base = expected_end;
    for (g, e) in tail.iter().zip(&extra) {
        assert_same_batch(&g.bytes, e, base, 8, &format!("{what}: appended after recovery"));
        base += 3;
    }
    mgr.shutdown().expect("shutdown");
}

/// The first `kept` original batches are in the log, byte for byte.
fn check_batches(log: &PartitionLog, w: &Written, kept: usize, what: &str) {
    let got = read_all(log, ReadBound::LogEnd, 1 << 20);
    assert!(got.len() >= kept, "{what}: {} batches read back, {kept} expected", got.len());
    for (i, (g, e)) in got.iter().zip(&w.originals[..kept]).enumerate() {
        assert_same_batch(&g.bytes, e, w.offsets[i].0, 7, &format!("{what}: batch {i}"));
    }
}

fn segment_base(seg: &Path) -> i64 {
    seg.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).expect("segment name")
}

fn rounds() -> u64 {
    std::env::var("STROM_TORN_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60)
}

#[test]
fn random_damage_to_the_active_segment_is_cut_off() {
    for round in 0..rounds() {
        let mut rng = Rng(0x7042_0000 + round);
        // Every other round uses small segments, so the damaged segment is not the first one.
        let segment_bytes = if round % 2 == 0 { 128 * 1024 * 1024 } else { 2048 };
        let batches = rng.range(1, 16) as usize;
        let w = write_log(&mut rng, segment_bytes, batches, false);
        let next_batch = make_batch(rng.next_u64(), 4, 50, 9_999, None);
        let damage = random_damage(&mut rng, &w, &next_batch);
        let expected = damage_active(&w, &damage);
        check_recovery(&w, &expected, &format!("round {round}, {batches} batches, damage {damage:?}"));
    }
}

/// One byte flipped in each header field of a middle batch, and in its records: each is
/// caught (by the CRC, the magic and length checks, or offset continuity) and cut there.
#[test]
fn a_flip_in_any_header_field_is_caught() {
    let fields = [
        ("base offset, low byte", 7),
        ("base offset, high byte", 0),
        ("length", 11),
        ("magic", 16),
        ("crc", 18),
        ("attributes", 22),
        ("last offset delta", 26),
        ("base timestamp", 30),
        ("producer id", 50),
        ("record count", 60),
        ("first record", 61),
    ];
    for (i, (field, at)) in fields.iter().enumerate() {
        let mut rng = Rng(500 + i as u64);
        let w = write_log(&mut rng, 128 * 1024 * 1024, 6, false);
        let seg = segment_files(&partition_dir(w.dir.path(), TOPIC, 0)).pop().expect("a segment");
        let layout = batch_layout(&std::fs::read(&seg).expect("read"));
        let (start, ..) = layout[3];
        let expected = damage_active(&w, &Damage::Flip(vec![(start + at, 0x01)]));
        assert_eq!(expected.end, w.offsets[3].0);
        check_recovery(&w, &expected, &format!("flip in {field} of batch 3"));
    }
}

#[test]
fn every_cut_position_of_a_small_log() {
    let mut rng = Rng(42);
    let w = write_log_sized(&mut rng, 128 * 1024 * 1024, 3, 3, 20, false);
    let seg = segment_files(&partition_dir(w.dir.path(), TOPIC, 0)).pop().expect("a segment");
    let full_len = std::fs::metadata(&seg).expect("stat").len() as usize;
    for p in 0..full_len {
        // Each position starts from a fresh copy of the intact directory.
        let copy = tempfile::tempdir().expect("tempdir");
        copy_dir(w.dir.path(), copy.path());
        let wc = Written { dir: copy, cfg: w.cfg.clone(), originals: w.originals.clone(), offsets: w.offsets.clone() };
        let expected = damage_active(&wc, &Damage::Cut(p));
        let (mgr, log) = reopen(&wc);
        assert_eq!(log.log_end_offset(), expected.end, "cut at byte {p}");
        let kept = wc.offsets.iter().take_while(|o| o.1 < expected.end).count();
        check_batches(&log, &wc, kept, &format!("cut at byte {p}"));
        let len = std::fs::metadata(&expected.segment).expect("stat").len();
        assert_eq!(len, expected.len, "cut at byte {p}: file length after recovery");
        mgr.shutdown().expect("shutdown");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// A clean-shutdown marker lets startup skip the scan, but it must not let corrupt bytes out:
/// a damaged batch (here well before the active segment's last index entry, so a tail scan
/// does not see it) is either cut or reported as `Corrupted`, never served.
#[test]
fn clean_marker_does_not_hide_a_corrupt_batch() {
    const DAMAGED: usize = 5;
    let mut rng = Rng(7);
    let w = write_log(&mut rng, 128 * 1024 * 1024, 40, true);
    let seg = segment_files(&partition_dir(w.dir.path(), TOPIC, 0)).pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    let layout = batch_layout(&bytes);
    let (start, end, base, _) = layout[DAMAGED];
    bytes[start + 30 + (end - start - 30) / 2] ^= 0x5a;
    std::fs::write(&seg, &bytes).expect("write");
    let (mgr, log) = reopen(&w);
    for (i, (b, _)) in w.offsets.iter().enumerate() {
        match log.read(*b, 1, ReadBound::LogEnd) {
            Ok(r) => {
                // split_read panics if the bytes are not whole valid batches.
                let got = common::split_read(&r.records);
                match got.first() {
                    Some(g) => assert_same_batch(&g.bytes, &w.originals[i], *b, 7, &format!("batch {i}")),
                    None => assert!(i >= DAMAGED && *b >= log.log_end_offset(), "batch {i} missing"),
                }
            }
            Err(Error::Corrupted { path, .. }) if i >= DAMAGED => assert_eq!(path, seg, "Corrupted names the segment"),
            Err(Error::OffsetOutOfRange { .. }) if i >= DAMAGED => {}
            Err(e) => panic!("batch {i}: unexpected error {e}"),
        }
    }
    // Reading across the damage stops before it (or reports it).
    if let Ok(r) = log.read(w.offsets[0].0, 1 << 20, ReadBound::LogEnd) {
        assert!(common::split_read(&r.records).iter().all(|b| b.header.base_offset < base));
    }
    mgr.shutdown().expect("shutdown");
}

/// Damage in a sealed segment: startup does not scan it, reads report it.
#[test]
fn sealed_segment_with_a_flipped_payload_byte_is_reported() {
    sealed_damage(0, "payload byte");
}

#[test]
fn sealed_segment_with_a_damaged_base_offset_is_reported() {
    sealed_damage(3, "base offset 0");
    sealed_damage(4, "base offset far ahead");
    sealed_damage(5, "base offset i64::MAX");
}

#[test]
fn sealed_segment_with_a_bad_length_field_is_reported() {
    sealed_damage(1, "length field");
}

#[test]
fn sealed_segment_cut_short_is_reported() {
    sealed_damage(2, "cut short");
}

fn sealed_damage(case: u64, how: &str) {
    {
        let mut rng = Rng(1000 + case);
        let w = write_log_sized(&mut rng, 2048, 30, 3, 100, case % 2 == 0);
        let segs = segment_files(&partition_dir(w.dir.path(), TOPIC, 0));
        assert!(segs.len() >= 3, "expected several segments, got {}", segs.len());
        let sealed = &segs[0];
        let mut bytes = std::fs::read(sealed).expect("read");
        let layout = batch_layout(&bytes);
        assert!(layout.len() >= 2, "first segment should hold several batches");
        let (start, end, bad_base, _) = layout[1];
        match how {
            "payload byte" => bytes[end - 1] ^= 0xff,
            "length field" => bytes[start + 8..start + 12].copy_from_slice(&0x7fff_0000i32.to_be_bytes()),
            // The base offset is outside the CRC: a damaged one must be reported, not used to
            // skip records (0), stall a consumer (far ahead) or overflow (i64::MAX).
            "base offset 0" => bytes[start..start + 8].copy_from_slice(&0i64.to_be_bytes()),
            "base offset far ahead" => bytes[start..start + 8].copy_from_slice(&1_000_000i64.to_be_bytes()),
            "base offset i64::MAX" => bytes[start..start + 8].copy_from_slice(&i64::MAX.to_be_bytes()),
            _ => bytes.truncate(start + (end - start) / 2),
        }
        std::fs::write(sealed, &bytes).expect("write");

        let (mgr, log) = reopen(&w);
        assert_eq!(
            log.log_end_offset(),
            w.offsets.last().map_or(0, |o| o.1 + 1),
            "{how}: sealed damage must not cut the log"
        );
        // The intact batch before the damage is still served on its own.
        let r = log.read(w.offsets[0].0, 1, ReadBound::LogEnd).expect("read intact batch");
        assert_same_batch(&common::split_read(&r.records)[0].bytes, &w.originals[0], 0, 7, how);
        // Reads into the damage: Corrupted with the file's path, or whole valid batches that stop before it.
        for from in [w.offsets[0].0, bad_base] {
            match log.read(from, 1 << 20, ReadBound::LogEnd) {
                Err(Error::Corrupted { path, position, reason }) => {
                    assert_eq!(&path, sealed, "{how}: Corrupted names the segment ({reason})");
                    assert!(
                        position as usize >= start,
                        "{how}: reported position {position} is before the bad batch at {start}"
                    );
                }
                Ok(r) => {
                    let got = common::split_read(&r.records);
                    assert!(
                        from < bad_base && got.iter().all(|b| b.header.base_offset < bad_base),
                        "{how}: read({from}) served the damaged batch at {bad_base}"
                    );
                }
                Err(e) => panic!("{how}: read({from}): expected Corrupted, got {e}"),
            }
        }
        // Later segments still read fine, and the log still takes appends.
        let later = segment_base(&segs[1]);
        let r = log.read(later, 1, ReadBound::LogEnd).expect("read a later segment");
        let i = w.offsets.iter().position(|o| o.0 == later).expect("segment starts on a batch");
        assert_same_batch(&common::split_read(&r.records)[0].bytes, &w.originals[i], later, 7, how);
        let b = make_batch(5, 2, 10, 1, None);
        common::runtime().block_on(async {
            let info = log.append(b, 7).expect("append");
            log.wait_durable(info.last_offset).await.expect("durable");
        });
        mgr.shutdown().expect("shutdown");
    }
}
