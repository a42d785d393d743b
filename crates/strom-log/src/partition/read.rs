//! Reads: whole stored batches by offset, and lookups by timestamp.

use std::fs::File;

use bytes::Bytes;

use super::{PartitionLog, ReadBound, ReadResult};
use crate::batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD, check_batch};
use crate::error::{Error, Result};
use crate::segment::{Indexes, Segment, find_batch, read_bytes, read_header, scan_validate};

impl PartitionLog {
    /// Reads whole batches starting with the one containing `offset`, up to `max_bytes`
    /// (at least one batch), never past `bound`.
    pub fn read(&self, offset: i64, max_bytes: usize, bound: ReadBound) -> Result<ReadResult> {
        // Under the lock: where to read. A sealed segment whose indexes are not loaded yet is
        // loaded with the lock released (reading index files, or scanning up to a whole
        // segment), then the lookup starts over: appends never wait for it.
        let (mut result, limit, file, start, start_base, path, seg_size) = loop {
            let mut st = self.lock()?;
            if st.closed {
                return Err(self.closed_error());
            }
            let high_watermark = self.high_watermark();
            let (log_start_offset, log_end_offset) = (st.log_start, st.next_offset);
            let result = ReadResult { records: Bytes::new(), high_watermark, log_start_offset, log_end_offset };
            if offset < log_start_offset || offset > log_end_offset {
                return Err(Error::OffsetOutOfRange {
                    requested: offset,
                    log_start: log_start_offset,
                    log_end: log_end_offset,
                });
            }
            let limit = match bound {
                ReadBound::HighWatermark => high_watermark.min(log_end_offset),
                ReadBound::LogEnd => log_end_offset,
            };
            if offset >= limit {
                return Ok(result);
            }
            let interval = st.config.index_interval_bytes;
            let Some((_, seg)) = st.segments.range_mut(..=offset).next_back() else {
                return Ok(result);
            };
            if needs_unlocked_load(seg) {
                let base = seg.base_offset;
                drop(st);
                self.load_sealed_indexes(base)?;
                continue;
            }
            let file = self.segment_file(seg)?;
            ensure_indexes(seg, &file, interval)?;
            let (start_rel, start) =
                seg.indexes.as_ref().map_or((0, 0), |ix| ix.offset.lookup_entry((offset - seg.base_offset) as u32));
            let (start, start_base) = (u64::from(start), seg.base_offset + i64::from(start_rel));
            break (result, limit, file, start, start_base, seg.path.clone(), seg.size);
        };

        let Some((pos, first)) = find_batch(&file, &path, start, seg_size, start_base, offset)? else {
            return Ok(result);
        };
        if first.last_offset() >= limit {
            return Ok(result);
        }
        let want = (first.total_len()).max(max_bytes.min((seg_size - pos) as usize));
        let buf = read_bytes(&file, &path, pos, want)?;
        // Keep whole, valid batches below the bound. Stored bytes are checked (CRC32C, counts,
        // offset continuity) on the way out: sealed segments are not scanned at startup and a
        // clean open trusts most of the active one, so this is where corruption is caught.
        let mut end = 0usize;
        let mut expected = first.base_offset;
        while end + HEADER_LEN <= buf.len() {
            let Some(h) = BatchHeader::parse(&buf[end..]) else { break };
            let sane = h.magic == 2 && h.batch_length >= (HEADER_LEN - LOG_OVERHEAD) as i32;
            if sane && (end + h.total_len() > buf.len() || h.last_offset() >= limit) {
                break; // the next batch is beyond max_bytes or the bound
            }
            let checked = if !sane {
                Err(format!("invalid batch header (magic {}, length {})", h.magic, h.batch_length))
            } else if h.base_offset != expected {
                Err(format!("offset discontinuity: batch base {} where {expected} was expected", h.base_offset))
            } else {
                check_batch(&buf[end..end + h.total_len()], &h, 0).map_err(|e| e.to_string())
            };
            if let Err(reason) = checked {
                if end == 0 {
                    tracing::error!(path = %path.display(), position = pos, %reason, "corrupt batch in segment");
                    return Err(Error::Corrupted { path, position: pos, reason });
                }
                break; // a damaged later batch is reported when a read starts there
            }
            expected = h.last_offset() + 1;
            end += h.total_len();
        }
        result.records = buf.slice(..end);
        Ok(result)
    }

    /// The first stored batch (below the high watermark) whose max timestamp is >= `ts`.
    pub fn find_batch_by_timestamp(&self, ts: i64) -> Result<Option<Bytes>> {
        let limit = self.high_watermark();
        // As in `read`: unloaded sealed segments are loaded with the lock released, one at a
        // time, and the search starts over.
        let found = 'search: loop {
            let mut st = self.lock()?;
            if st.closed {
                return Err(self.closed_error());
            }
            let interval = st.config.index_interval_bytes;
            let mut unloaded = None;
            for seg in st.segments.values_mut() {
                if needs_unlocked_load(seg) {
                    unloaded = Some(seg.base_offset);
                    break;
                }
                let file = self.segment_file(seg)?;
                ensure_indexes(seg, &file, interval)?;
                if seg.max_timestamp >= ts {
                    let start = seg.indexes.as_ref().map_or(0, |ix| u64::from(ix.time.scan_start(ts)));
                    break 'search Some((file, seg.path.clone(), seg.size, start));
                }
            }
            let Some(base) = unloaded else { break None };
            drop(st);
            self.load_sealed_indexes(base)?;
        };
        let Some((file, path, size, start)) = found else { return Ok(None) };
        match crate::segment::find_batch_by_time(&file, &path, start, size, ts)? {
            Some((pos, h)) if h.base_offset < limit => Ok(Some(read_bytes(&file, &path, pos, h.total_len())?)),
            _ => Ok(None),
        }
    }
}

/// Loads a sealed segment's indexes on first use: from its index files when intact,
/// otherwise by a validating scan (a sealed segment that fails validation is corrupt and is
/// reported, never cut).
///
/// The index files sample one batch per `index.interval.bytes`, so the batches after the last
/// entry are not in them; their headers are read to complete the segment's largest
/// timestamp, which timestamp lookups and time-based retention go by.
pub(crate) fn ensure_indexes(seg: &mut Segment, file: &File, interval: u64) -> Result<()> {
    if seg.indexes.is_some() {
        return Ok(());
    }
    let (indexes, max_timestamp, rebuilt) = load_indexes(seg, file, interval)?;
    seg.max_timestamp = max_timestamp;
    seg.indexes = Some(indexes);
    if rebuilt {
        write_rebuilt_indexes(seg);
    }
    Ok(())
}

/// Whether a segment's indexes should be loaded with the partition's lock released: a sealed
/// segment (immutable, so what is read outside the lock stays true) not loaded yet.
pub(crate) fn needs_unlocked_load(seg: &Segment) -> bool {
    seg.indexes.is_none() && seg.file.is_none()
}

impl PartitionLog {
    /// Loads the indexes of the sealed segment at `base` without holding the partition's lock
    /// during the I/O: what is needed is copied under the lock, the files are read (or the
    /// segment scanned) outside it, and the result is installed under the lock again unless
    /// the segment went away or was loaded meanwhile.
    pub(crate) fn load_sealed_indexes(&self, base: i64) -> Result<()> {
        let (copy, file, interval, generation) = {
            let mut st = self.lock()?;
            let (interval, generation) = (st.config.index_interval_bytes, st.generation);
            let Some(seg) = st.segments.get_mut(&base) else { return Ok(()) };
            if !needs_unlocked_load(seg) {
                return Ok(());
            }
            let file = self.segment_file(seg)?;
            let copy = seg.detached_copy();
            (copy, file, interval, generation)
        };
        let (indexes, max_timestamp, rebuilt) = load_indexes(&copy, &file, interval)?;
        let mut copy = copy;
        copy.indexes = Some(indexes);
        if rebuilt {
            write_rebuilt_indexes(&copy);
        }
        let mut st = self.lock()?;
        let same = st.generation == generation;
        match st.segments.get_mut(&base) {
            Some(seg) if same && seg.size == copy.size => {
                if needs_unlocked_load(seg) {
                    seg.max_timestamp = max_timestamp;
                    seg.indexes = copy.indexes.take();
                }
            }
            _ => {
                // Truncated or removed meanwhile: index files written above could describe
                // bytes that are gone (a segment made again at this base must not trust them).
                if rebuilt {
                    copy.remove_index_files();
                }
            }
        }
        Ok(())
    }
}

/// Writes a segment's rebuilt indexes to their files, best effort (they only save the next
/// open a scan).
fn write_rebuilt_indexes(seg: &Segment) {
    if let Err(e) = seg.write_indexes(false) {
        tracing::warn!(error = %e, "could not write rebuilt index files");
    }
}

/// Reads a sealed segment's indexes from its files, or rebuilds them by a validating scan:
/// the reading of [`ensure_indexes`], with no state changed. Returns the indexes, the
/// segment's largest timestamp, and whether they were rebuilt (their files are then the
/// caller's to write).
fn load_indexes(seg: &Segment, file: &File, interval: u64) -> Result<(Indexes, i64, bool)> {
    if let Some(ix) = seg.read_index_files() {
        let mut pos = u64::from(ix.offset.last_position());
        let mut max_ts = ix.time.max_timestamp().unwrap_or(-1);
        while pos < seg.size {
            match read_header(file, &seg.path, pos, seg.size) {
                Ok(h) => {
                    max_ts = max_ts.max(h.max_timestamp);
                    pos += h.total_len() as u64;
                }
                Err(e) => {
                    // The batches before the damage stay readable; reads that reach it
                    // report it. The maximum counts what could be read.
                    tracing::warn!(error = %e, "damaged batch header after the last index entry; the segment's max timestamp counts only the batches before it");
                    break;
                }
            }
        }
        return Ok((ix, max_ts, false));
    }
    let mut ix = Indexes::default();
    let mut max_ts = -1i64;
    let base = seg.base_offset;
    let out = scan_validate(file, &seg.path, 0, seg.size, base, |pos, h| {
        max_ts = max_ts.max(h.max_timestamp);
        ix.on_batch(base, h, pos, max_ts, interval);
    })?;
    if let Some(reason) = out.stopped {
        tracing::error!(path = %seg.path.display(), position = out.valid_end, %reason, "sealed segment is corrupt");
        return Err(Error::Corrupted { path: seg.path.clone(), position: out.valid_end, reason });
    }
    Ok((ix, max_ts, true))
}
