//! Sparse offset and time indexes of one segment.
//!
//! Entries are kept in memory (a segment of 128 MiB with an entry every 4 KiB is 32 Ki
//! entries) and written to `<base>.index` / `<base>.timeindex` when the segment is sealed or
//! the log closes cleanly. Each file ends with a CRC32C of its entries, so a stale or torn
//! index is detected and rebuilt by scanning the segment instead of being trusted.
//!
//! File layout, big-endian: offset index entries are `rel_offset u32, position u32`; time
//! index entries are `max_timestamp i64, rel_offset u32, position u32`; then `crc32c u32`.

use std::path::Path;

use crate::error::{Error, Result};

/// Offset index: relative offset of a batch's base offset → its byte position.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Adds an entry; entries must be added in increasing offset and position order.
    pub(crate) fn push(&mut self, rel_offset: u32, position: u32) {
        debug_assert!(self.entries.last().is_none_or(|&(o, p)| o < rel_offset && p < position));
        self.entries.push((rel_offset, position));
    }

    /// `(relative base offset, position)` of the last indexed batch whose base offset is
    /// <= `rel_offset`, or `(0, 0)`: the segment's first batch.
    pub(crate) fn lookup_entry(&self, rel_offset: u32) -> (u32, u32) {
        let idx = self.entries.partition_point(|&(o, _)| o <= rel_offset);
        if idx == 0 { (0, 0) } else { self.entries[idx - 1] }
    }

    /// Position of the last entry (where a tail scan can start), 0 if empty.
    pub(crate) fn last_position(&self) -> u32 {
        self.entries.last().map_or(0, |e| e.1)
    }

    /// Drops every entry at or after byte `position`.
    pub(crate) fn truncate_to_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|&(_, p)| p < position);
        self.entries.truncate(keep);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 8 + 4);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a file written by [`OffsetIndex::encode`]; `None` if it is torn or corrupt.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let body = checked_body(bytes, 8)?;
        let entries = body.chunks_exact(8).map(|c| (u32_at(c, 0), u32_at(c, 4))).collect::<Vec<_>>();
        let sorted = entries.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        sorted.then_some(OffsetIndex { entries })
    }
}

/// Time index: running maximum timestamp → the batch at which it was reached.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    entries: Vec<(i64, u32, u32)>,
}

impl TimeIndex {
    /// Adds an entry if `max_timestamp` is larger than the last one.
    pub(crate) fn push(&mut self, max_timestamp: i64, rel_offset: u32, position: u32) {
        if self.entries.last().is_none_or(|&(t, _, _)| max_timestamp > t) {
            self.entries.push((max_timestamp, rel_offset, position));
        }
    }

    /// Position from which a scan finds the first batch with max timestamp >= `ts`: the batch
    /// of the last entry whose running maximum is still below `ts` (every batch up to it is
    /// older than `ts`), or 0.
    pub(crate) fn scan_start(&self, ts: i64) -> u32 {
        let idx = self.entries.partition_point(|&(t, _, _)| t < ts);
        if idx == 0 { 0 } else { self.entries[idx - 1].2 }
    }

    /// Largest timestamp indexed, if any.
    pub(crate) fn max_timestamp(&self) -> Option<i64> {
        self.entries.last().map(|e| e.0)
    }

    pub(crate) fn truncate_to_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|&(_, _, p)| p < position);
        self.entries.truncate(keep);
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 16 + 4);
        for &(t, o, p) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let body = checked_body(bytes, 16)?;
        let entries = body
            .chunks_exact(16)
            .map(|c| {
                let mut t = [0u8; 8];
                t.copy_from_slice(&c[0..8]);
                (i64::from_be_bytes(t), u32_at(c, 8), u32_at(c, 12))
            })
            .collect::<Vec<_>>();
        let sorted = entries.windows(2).all(|w| w[0].0 < w[1].0 && w[0].2 < w[1].2);
        sorted.then_some(TimeIndex { entries })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

/// Returns the entries of an index file after checking its size and trailing CRC.
fn checked_body(bytes: &[u8], entry_len: usize) -> Option<&[u8]> {
    if bytes.len() < 4 || (bytes.len() - 4) % entry_len != 0 {
        return None;
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    (crc32c::crc32c(body) == u32_at(crc, 0)).then_some(body)
}

/// Writes `bytes` to `path` atomically (temp file + rename); the caller decides whether to
/// fsync the directory. Index files are derived data: losing one only costs a rebuild scan.
pub(crate) fn write_file_atomic(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    if sync {
        f.sync_data().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_is_floor() {
        let mut i = OffsetIndex::default();
        i.push(0, 0);
        i.push(10, 4096);
        i.push(20, 8192);
        assert_eq!(i.lookup_entry(0).1, 0);
        assert_eq!(i.lookup_entry(9).1, 0);
        assert_eq!(i.lookup_entry(10), (10, 4096));
        assert_eq!(i.lookup_entry(25), (20, 8192));
        let decoded = OffsetIndex::decode(&i.encode()).unwrap();
        assert_eq!(decoded, i);
        let mut torn = i.encode();
        torn.pop();
        assert!(OffsetIndex::decode(&torn).is_none());
        i.truncate_to_position(8192);
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn time_index_scan_start() {
        let mut t = TimeIndex::default();
        t.push(100, 0, 0);
        t.push(90, 5, 100); // not larger: ignored
        t.push(200, 10, 4096);
        assert_eq!(t.scan_start(50), 0);
        assert_eq!(t.scan_start(150), 0);
        assert_eq!(t.scan_start(201), 4096);
        assert_eq!(TimeIndex::decode(&t.encode()).unwrap(), t);
    }
}
