//! One segment: a `<base-offset:020>.log` file of RecordBatch v2 bytes, its indexes, and the
//! scans over it (validation during recovery, locating a batch during reads).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD, check_batch};
use crate::error::{Error, Result};
use crate::index::{OffsetIndex, TimeIndex};

/// File name of the segment starting at `base_offset` with the given extension.
pub(crate) fn segment_file(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// The in-memory indexes of a segment.
#[derive(Debug, Default, Clone)]
pub(crate) struct Indexes {
    pub(crate) offset: OffsetIndex,
    pub(crate) time: TimeIndex,
    /// Bytes appended since the last index entry.
    pub(crate) bytes_since_entry: u64,
}

impl Indexes {
    /// Records a batch at `position`; indexes it when `interval` bytes passed since the last
    /// entry (the first batch of a segment is always indexed).
    pub(crate) fn on_batch(&mut self, base: i64, h: &BatchHeader, position: u64, running_max_ts: i64, interval: u64) {
        let rel = (h.base_offset - base) as u32;
        if self.offset.len() == 0 || self.bytes_since_entry >= interval {
            self.offset.push(rel, position as u32);
            self.time.push(running_max_ts, rel, position as u32);
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += h.total_len() as u64;
    }
}

/// Metadata and state of one segment. Sealed segments are immutable (until truncation or
/// deletion); their indexes are loaded on first use.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the first batch this segment holds or will hold.
    pub(crate) base_offset: i64,
    /// Path of the `.log` file.
    pub(crate) path: PathBuf,
    /// Bytes of valid batches in the file.
    pub(crate) size: u64,
    /// Bytes the file holds: `size` plus, for a preallocated active segment, the zeros
    /// written ahead of it. Sealed segments are cut to `size` before they are sealed.
    pub(crate) file_len: u64,
    /// Offset after the last batch (== base_offset when empty).
    pub(crate) next_offset: i64,
    /// Largest batch max-timestamp, when known (-1 if empty or not loaded yet).
    pub(crate) max_timestamp: i64,
    /// Indexes, `None` for a sealed segment not loaded yet.
    pub(crate) indexes: Option<Indexes>,
    /// Open file of the active segment; sealed segments go through the fd cache.
    pub(crate) file: Option<Arc<File>>,
    /// Wall-clock ms of the first append, for `segment.ms` rolling (-1 when empty).
    pub(crate) first_append_ms: i64,
}

impl Segment {
    /// A copy of what describes this segment on disk (base, path, sizes, offsets), without
    /// its indexes or writable file: for file work done with the partition's lock released.
    pub(crate) fn detached_copy(&self) -> Segment {
        Segment {
            base_offset: self.base_offset,
            path: self.path.clone(),
            size: self.size,
            file_len: self.file_len,
            next_offset: self.next_offset,
            max_timestamp: -1,
            indexes: None,
            file: None,
            first_append_ms: self.first_append_ms,
        }
    }

    /// Removes the index files (best effort: a missing one is what this wants).
    pub(crate) fn remove_index_files(&self) {
        let (oi, ti) = self.index_paths();
        let _ = std::fs::remove_file(oi);
        let _ = std::fs::remove_file(ti);
    }

    /// Paths of the index files beside the log file.
    pub(crate) fn index_paths(&self) -> (PathBuf, PathBuf) {
        (self.path.with_extension("index"), self.path.with_extension("timeindex"))
    }

    /// Writes the in-memory indexes to their files (atomically), fsyncing them when `sync`.
    pub(crate) fn write_indexes(&self, sync: bool) -> Result<()> {
        if let Some(ix) = &self.indexes {
            let (oi, ti) = self.index_paths();
            crate::index::write_file_atomic(&oi, &ix.offset.encode(), sync)?;
            crate::index::write_file_atomic(&ti, &ix.time.encode(), sync)?;
        }
        Ok(())
    }

    /// Loads index files if both are present and intact.
    pub(crate) fn read_index_files(&self) -> Option<Indexes> {
        let (oi, ti) = self.index_paths();
        let offset = OffsetIndex::decode(&std::fs::read(oi).ok()?)?;
        let time = TimeIndex::decode(&std::fs::read(ti).ok()?)?;
        if offset.last_position() as u64 > self.size {
            return None;
        }
        Some(Indexes { offset, time, bytes_since_entry: 0 })
    }
}

/// What a validating scan found.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    /// Byte position just after the last valid batch.
    pub(crate) valid_end: u64,
    /// Offset after the last valid batch.
    pub(crate) next_offset: i64,
    /// Why the scan stopped before the end of the range, if it did.
    pub(crate) stopped: Option<String>,
}

/// Validates batches in `file[start..end)` (length, magic, CRC32C, counts, and offset
/// continuity from `expected_next`), calling `on_batch(position, header)` for each valid one.
/// Stops at the first invalid byte and reports why; I/O errors are returned, never tolerated.
pub(crate) fn scan_validate(
    file: &File,
    path: &Path,
    start: u64,
    end: u64,
    mut expected_next: i64,
    mut on_batch: impl FnMut(u64, &BatchHeader),
) -> Result<ScanOutcome> {
    const CHUNK: usize = 1 << 20;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = start; // file position of buf[0]
    let mut pos = start;
    let stop =
        |pos: u64, next: i64, reason: String| ScanOutcome { valid_end: pos, next_offset: next, stopped: Some(reason) };
    while pos < end {
        // Make sure the header is in the buffer.
        let need_header = (pos - buf_start) as usize + HEADER_LEN;
        if buf.len() < need_header {
            let want = (end - pos).min(CHUNK as u64).max(HEADER_LEN as u64) as usize;
            buf = read_up_to(file, path, pos, want, end)?;
            buf_start = pos;
            if buf.len() < HEADER_LEN {
                return Ok(stop(pos, expected_next, format!("torn batch header: {} bytes left", buf.len())));
            }
        }
        let at = (pos - buf_start) as usize;
        let Some(h) = BatchHeader::parse(&buf[at..]) else {
            return Ok(stop(pos, expected_next, "torn batch header".into()));
        };
        if h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Ok(stop(pos, expected_next, format!("invalid batch length {}", h.batch_length)));
        }
        let total = h.total_len() as u64;
        if pos + total > end {
            return Ok(stop(pos, expected_next, format!("torn batch: needs {total} bytes, {} left", end - pos)));
        }
        if at + total as usize > buf.len() {
            buf = read_up_to(file, path, pos, (total as usize).max(CHUNK.min((end - pos) as usize)), end)?;
            buf_start = pos;
        }
        let at = (pos - buf_start) as usize;
        let batch = &buf[at..at + total as usize];
        if let Err(e) = check_batch(batch, &h, 0) {
            return Ok(stop(pos, expected_next, e.to_string()));
        }
        if h.base_offset != expected_next {
            return Ok(stop(
                pos,
                expected_next,
                format!("offset discontinuity: batch base {} where {} was expected", h.base_offset, expected_next),
            ));
        }
        on_batch(pos, &h);
        expected_next = h.last_offset() + 1;
        pos += total;
    }
    Ok(ScanOutcome { valid_end: pos, next_offset: expected_next, stopped: None })
}

/// Reads up to `want` bytes at `pos`, never past `end`.
fn read_up_to(file: &File, path: &Path, pos: u64, want: usize, end: u64) -> Result<Vec<u8>> {
    let len = (want as u64).min(end - pos) as usize;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, pos).map_err(|e| Error::io(path, e))?;
    Ok(buf)
}

/// Reads exactly `len` bytes at `pos` into a fresh buffer handed out as `Bytes` (one copy
/// out of the page cache; the result is shared into responses without further copies).
pub(crate) fn read_bytes(file: &File, path: &Path, pos: u64, len: usize) -> Result<Bytes> {
    let mut buf = BytesMut::zeroed(len);
    file.read_exact_at(&mut buf, pos).map_err(|e| Error::io(path, e))?;
    Ok(buf.freeze())
}

/// Reads the batch header at `pos`, checking it is sane (not its CRC: the bytes were
/// validated when written or recovered). A bad header in a stored segment is corruption.
pub(crate) fn read_header(file: &File, path: &Path, pos: u64, seg_size: u64) -> Result<BatchHeader> {
    let mut b = [0u8; HEADER_LEN];
    if pos + HEADER_LEN as u64 > seg_size {
        return Err(corrupt(path, pos, "batch header runs past the segment end"));
    }
    file.read_exact_at(&mut b, pos).map_err(|e| Error::io(path, e))?;
    let h = BatchHeader::parse(&b).ok_or_else(|| corrupt(path, pos, "short batch header"))?;
    if h.magic != 2 || h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 || pos + h.total_len() as u64 > seg_size {
        return Err(corrupt(
            path,
            pos,
            &format!("invalid batch header (magic {}, length {})", h.magic, h.batch_length),
        ));
    }
    Ok(h)
}

fn corrupt(path: &Path, pos: u64, reason: &str) -> Error {
    Error::Corrupted { path: path.to_path_buf(), position: pos, reason: reason.to_string() }
}

/// Starting at `pos`, a batch boundary whose batch has base offset `expected` (from the
/// index), walks batch headers until the batch whose last offset is >= `offset`; returns its
/// position and header, or `None` when the segment ends first. The base offset is not covered
/// by the CRC, so each one is checked against the running offset: a damaged one is reported,
/// never used to skip or stall.
pub(crate) fn find_batch(
    file: &File,
    path: &Path,
    mut pos: u64,
    seg_size: u64,
    mut expected: i64,
    offset: i64,
) -> Result<Option<(u64, BatchHeader)>> {
    while pos < seg_size {
        let h = read_header(file, path, pos, seg_size)?;
        if h.base_offset != expected {
            return Err(corrupt(
                path,
                pos,
                &format!("batch base offset {} where {expected} was expected", h.base_offset),
            ));
        }
        if h.last_offset() >= offset {
            return Ok(Some((pos, h)));
        }
        expected = h.last_offset() + 1;
        pos += h.total_len() as u64;
    }
    Ok(None)
}

/// Walks batch headers from `pos` to find the first batch whose max timestamp is >= `ts`.
pub(crate) fn find_batch_by_time(
    file: &File,
    path: &Path,
    mut pos: u64,
    seg_size: u64,
    ts: i64,
) -> Result<Option<(u64, BatchHeader)>> {
    while pos < seg_size {
        let h = read_header(file, path, pos, seg_size)?;
        if h.max_timestamp >= ts {
            return Ok(Some((pos, h)));
        }
        pos += h.total_len() as u64;
    }
    Ok(None)
}
