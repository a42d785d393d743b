//! Helpers shared by the `strom-log` integration tests: deterministic incompressible
//! payloads, splitting what a read returns into validated batches, comparing a stored batch
//! with the bytes that were appended, and reading a whole log back.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use strom_log::batch::{REWRITTEN_PREFIX_LEN, ValidBatch, validate_batches};
use strom_log::{PartitionLog, ReadBound, build_batch};

/// A multi-thread runtime for tests that need `wait_durable` (and whatever the manager spawns).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

/// SplitMix64: a tiny deterministic generator, so a failing case can be rebuilt from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    /// `len` random (incompressible) bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// A valid RecordBatch v2 of `records` records of `value_len` random bytes each, fully
/// determined by `seed` (so a parent process can rebuild what a child appended).
pub fn make_batch(seed: u64, records: usize, value_len: usize, ts: i64, producer: Option<(i64, i16, i32)>) -> Bytes {
    let mut rng = Rng(seed);
    let values: Vec<Vec<u8>> = (0..records).map(|_| rng.bytes(value_len)).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    build_batch(ts, producer, &refs)
}

/// Number of records in a batch built by `build_batch`.
pub fn record_count(batch: &[u8]) -> i64 {
    i64::from(i32::from_be_bytes(batch[57..61].try_into().unwrap()))
}

/// Base offset field of a stored batch.
pub fn base_offset(batch: &[u8]) -> i64 {
    i64::from_be_bytes(batch[0..8].try_into().unwrap())
}

/// Partition leader epoch field of a stored batch.
pub fn leader_epoch(batch: &[u8]) -> i32 {
    i32::from_be_bytes(batch[12..16].try_into().unwrap())
}

/// Splits bytes returned by a read into batches, asserting they are whole, valid batches
/// (length, magic, CRC32C, counts): a read must never hand out a torn or corrupt batch.
pub fn split_read(records: &Bytes) -> Vec<ValidBatch> {
    if records.is_empty() {
        return Vec::new();
    }
    match validate_batches(records) {
        Ok(v) => v,
        Err(e) => panic!("read returned bytes that are not whole valid batches: {e}"),
    }
}

/// Asserts a stored batch is the appended one byte for byte, apart from the two fields the
/// log rewrites (base offset and partition leader epoch).
pub fn assert_same_batch(stored: &[u8], original: &[u8], base: i64, epoch: i32, what: &str) {
    assert_eq!(stored.len(), original.len(), "{what}: stored batch length differs");
    assert_eq!(base_offset(stored), base, "{what}: stored base offset");
    assert_eq!(leader_epoch(stored), epoch, "{what}: stored leader epoch");
    assert_eq!(&stored[8..12], &original[8..12], "{what}: stored length field");
    assert!(
        stored[REWRITTEN_PREFIX_LEN..] == original[REWRITTEN_PREFIX_LEN..],
        "{what}: stored bytes after the rewritten prefix differ from what was appended"
    );
}

/// Reads the whole log from its start up to `bound`, checking on the way that every read
/// returns whole valid batches, that offsets are dense, and that the first batch of each read
/// contains the requested offset. Returns the stored batches in order.
pub fn read_all(log: &PartitionLog, bound: ReadBound, max_bytes: usize) -> Vec<ValidBatch> {
    let start = log.log_start_offset();
    let mut offset = start;
    let mut out: Vec<ValidBatch> = Vec::new();
    loop {
        let r = log.read(offset, max_bytes, bound).unwrap_or_else(|e| panic!("read({offset}) failed: {e}"));
        let limit = match bound {
            ReadBound::HighWatermark => r.high_watermark,
            ReadBound::LogEnd => r.log_end_offset,
        };
        let batches = split_read(&r.records);
        if batches.is_empty() {
            assert!(offset >= limit, "read({offset}) returned nothing below the bound {limit}");
            break;
        }
        let first = &batches[0].header;
        assert!(
            first.base_offset <= offset && offset <= first.last_offset(),
            "read({offset}) started with batch {}..={}",
            first.base_offset,
            first.last_offset()
        );
        if batches.len() > 1 {
            let total: usize = batches.iter().map(|b| b.bytes.len()).sum();
            assert!(
                total <= max_bytes.max(batches[0].bytes.len()),
                "read({offset}, {max_bytes}) returned {total} bytes"
            );
        }
        for b in batches {
            let expected = out.last().map_or(b.header.base_offset, |p| p.header.last_offset() + 1);
            assert_eq!(b.header.base_offset, expected, "offsets are not dense");
            assert!(
                b.header.last_offset() < limit,
                "read returned offset {} past the bound {limit}",
                b.header.last_offset()
            );
            offset = b.header.last_offset() + 1;
            out.push(b);
        }
    }
    if let Some(first) = out.first() {
        assert!(
            first.header.base_offset <= start,
            "first batch {} does not cover log start {start}",
            first.header.base_offset
        );
    }
    out
}

/// `<data>/<topic>-<partition>`.
pub fn partition_dir(data: &Path, topic: &str, partition: i32) -> PathBuf {
    data.join(format!("{topic}-{partition}"))
}

/// The `.log` files of a partition directory, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

/// Byte ranges and base offsets of the batches in an intact segment file, found by walking
/// the length fields. An active segment may end in preallocated zeros after its last batch;
/// they are not part of the layout (see [`data_end`]).
pub fn batch_layout(file: &[u8]) -> Vec<(usize, usize, i64, i64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 61 <= file.len() {
        let len = i32::from_be_bytes(file[pos + 8..pos + 12].try_into().unwrap());
        if len == 0 && file[pos..].iter().all(|b| *b == 0) {
            return out; // preallocated space
        }
        assert!(len > 0, "unexpected batch length {len} at {pos}");
        let end = pos + 12 + len as usize;
        assert!(end <= file.len(), "batch at {pos} runs past the file end");
        let base = base_offset(&file[pos..]);
        let delta = i64::from(i32::from_be_bytes(file[pos + 23..pos + 27].try_into().unwrap()));
        out.push((pos, end, base, base + delta));
        pos = end;
    }
    assert!(file[pos..].iter().all(|b| *b == 0), "segment file does not end on a batch boundary (or in zeros)");
    out
}

/// Where the batches of a segment file end (before any preallocated zeros).
pub fn data_end(file: &[u8]) -> usize {
    batch_layout(file).last().map_or(0, |b| b.1)
}

/// FNV-1a 64: an independent hash of payload bytes (the batch CRC is what we are testing).
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
