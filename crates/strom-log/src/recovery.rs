//! Opening a partition directory: finding segments, validating the active segment's tail,
//! cutting a torn or corrupt tail, and rebuilding producer state.
//!
//! After a clean shutdown (the manager's marker is present) the active segment's index
//! files are trusted and only the bytes after the last index entry are validated. Otherwise
//! the whole active segment is validated batch by batch (length, magic, CRC32C, counts,
//! offset continuity) and cut at the first bad byte. Sealed segments were fsynced before
//! the next segment took writes, so they are not scanned at startup; a corrupt one is
//! reported when it is first read.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Arc;

use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::fd_cache::FdCache;
use crate::partition::{State, seek_to};
use crate::producer_state::ProducerStates;
use crate::segment::{Indexes, Segment, read_header, scan_validate, segment_file};

/// Parses a `<20 digits>.<ext>` file name.
fn parse_name(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok()).flatten()
}

fn list_offsets(dir: &Path, ext: &str) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            // An interrupted atomic write: the target still holds the previous version.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        if let Some(o) = parse_name(name, ext) {
            out.push(o);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Offsets of the producer snapshots in `dir`, ascending.
pub(crate) fn snapshot_offsets(dir: &Path) -> Vec<i64> {
    list_offsets(dir, "snapshot").unwrap_or_default()
}

/// Removes snapshots taken at offsets above `end` (they describe batches no longer stored).
pub(crate) fn remove_snapshots_above(dir: &Path, end: i64) {
    for o in snapshot_offsets(dir).into_iter().filter(|o| *o > end) {
        let _ = std::fs::remove_file(segment_file(dir, o, "snapshot"));
    }
}

fn open_rw(path: &Path, create: bool) -> Result<File> {
    OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path).map_err(|e| Error::io(path, e))
}

/// Opens (or initialises) the partition in `dir`. `clean` says the previous run shut down
/// cleanly, so index files of the active segment may be trusted.
pub(crate) fn load_partition(dir: &Path, config: LogConfig, clean: bool, fd_cache: &FdCache) -> Result<State> {
    let mut bases = list_offsets(dir, "log")?;
    if bases.is_empty() {
        let path = segment_file(dir, 0, "log");
        open_rw(&path, true)?;
        crate::manager::sync_dir(dir)?;
        bases.push(0);
    }
    let mut segments = BTreeMap::new();
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_file(dir, base, "log");
        let size = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        let next_offset = bases.get(i + 1).copied().unwrap_or(base);
        segments.insert(
            base,
            Segment {
                base_offset: base,
                path,
                size,
                file_len: size,
                next_offset,
                max_timestamp: -1,
                indexes: None,
                file: None,
                first_append_ms: -1,
            },
        );
    }
    let active_base = *bases.last().expect("at least one segment");
    let active = segments.get_mut(&active_base).expect("active segment");
    let file = open_rw(&active.path, false)?;
    recover_active(active, &file, clean, config.index_interval_bytes)?;
    seek_to(&file, active.size).map_err(|e| Error::io(&active.path, e))?;
    // After a crash, whatever survived in the page cache is made durable before anything is
    // acknowledged on top of it. A clean close already fsynced the segment.
    if !clean {
        file.sync_all().map_err(|e| Error::io(&active.path, e))?;
    }
    active.file = Some(Arc::new(file));
    let next_offset = active.next_offset;
    let log_start = *segments.keys().next().expect("non-empty");
    remove_snapshots_above(dir, next_offset);
    let producers = rebuild_producer_state(dir, &mut segments, next_offset, fd_cache)?;
    Ok(State {
        config,
        segments,
        log_start,
        next_offset,
        producers,
        dirty: false,
        appends_since_flush: 0,
        bytes_since_flush: 0,
        flush_bytes_avg: 0,
        appended_since_open: 0,
        preallocating: false,
        truncating: false,
        prealloc_failed_segment: None,
        generation: 0,
        failed: false,
        closed: false,
    })
}

/// Validates the active segment (its tail after a clean shutdown, all of it otherwise),
/// cuts anything after the first bad byte, and rebuilds its indexes.
fn recover_active(seg: &mut Segment, file: &File, clean: bool, interval: u64) -> Result<()> {
    let base = seg.base_offset;
    let trusted = if clean { seg.read_index_files() } else { None };
    // A trusted index must point at a sane batch; if it does not, scan the whole segment.
    let tail = trusted.filter(|ix| ix.offset.len() > 0).and_then(|ix| {
        let pos = u64::from(ix.offset.last_position());
        read_header(file, &seg.path, pos, seg.size).ok().map(|h| (ix, pos, h.base_offset))
    });
    let (mut ix, start, expected) = tail.unwrap_or((Indexes::default(), 0, base));
    let mut max_ts = ix.time.max_timestamp().unwrap_or(-1);
    let mut first = start > 0;
    let out = scan_validate(file, &seg.path, start, seg.size, expected, |pos, h| {
        max_ts = max_ts.max(h.max_timestamp);
        if first {
            // The batch at the last index entry is already indexed; only count its bytes.
            first = false;
            ix.bytes_since_entry = h.total_len() as u64;
        } else {
            ix.on_batch(base, h, pos, max_ts, interval);
        }
    })?;
    if let Some(reason) = &out.stopped {
        let cut_bytes = seg.size - out.valid_end;
        if starts_with_zeros(file, out.valid_end, cut_bytes) {
            // The written data ends where the preallocated zeros begin (a crash, or a close
            // that could not cut them): nothing torn, just space to give back.
            tracing::debug!(path = %seg.path.display(), position = out.valid_end, cut_bytes, "recovery: releasing preallocated space after the last batch");
        } else {
            tracing::warn!(
                path = %seg.path.display(),
                position = out.valid_end,
                cut_bytes,
                %reason,
                "recovery: truncating torn or corrupt tail of the active segment"
            );
        }
        file.set_len(out.valid_end).map_err(|e| Error::io(&seg.path, e))?;
        file.sync_all().map_err(|e| Error::io(&seg.path, e))?;
        ix.offset.truncate_to_position(out.valid_end as u32);
        ix.time.truncate_to_position(out.valid_end as u32);
    }
    seg.size = out.valid_end;
    seg.file_len = out.valid_end;
    seg.next_offset = out.next_offset;
    seg.max_timestamp = max_ts;
    seg.indexes = Some(ix);
    Ok(())
}

/// Whether the (up to) first 4 KiB of the `len` bytes at `pos` are all zeros: the start of
/// preallocated space rather than a torn batch (a torn write leaves non-zero bytes first).
fn starts_with_zeros(file: &File, pos: u64, len: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len.min(4096) as usize];
    !buf.is_empty() && file.read_exact_at(&mut buf, pos).is_ok() && buf.iter().all(|b| *b == 0)
}

/// Rebuilds the idempotent-producer state as of `end`: the newest intact snapshot at or
/// below `end`, then a replay of the batch headers after it.
pub(crate) fn rebuild_producer_state(
    dir: &Path,
    segments: &mut BTreeMap<i64, Segment>,
    end: i64,
    fd_cache: &FdCache,
) -> Result<ProducerStates> {
    let log_start = segments.keys().next().copied().unwrap_or(0);
    let mut state = ProducerStates::default();
    let mut from = log_start;
    for o in snapshot_offsets(dir).into_iter().rev().filter(|o| *o <= end && *o >= log_start) {
        if let Some(s) = std::fs::read(segment_file(dir, o, "snapshot")).ok().and_then(|b| ProducerStates::decode(&b)) {
            state = s;
            from = o;
            break;
        }
    }
    if from >= end {
        return Ok(state);
    }
    for seg in segments.values_mut() {
        if seg.next_offset <= from && seg.next_offset != seg.base_offset {
            continue;
        }
        let file = match &seg.file {
            Some(f) => f.clone(),
            None => fd_cache.get(&seg.path)?,
        };
        let mut pos = 0;
        while pos < seg.size {
            let h = match read_header(&file, &seg.path, pos, seg.size) {
                Ok(h) => h,
                // A damaged sealed segment must not keep the whole partition (or broker) from
                // starting: reads report it where it is; duplicate detection just knows less.
                Err(e @ Error::Corrupted { .. }) => {
                    tracing::error!(error = %e, "producer-state replay stopped at a corrupt batch; idempotent retries of older batches may not be recognised");
                    return Ok(state);
                }
                Err(e) => return Err(e),
            };
            if h.base_offset >= end {
                break;
            }
            if h.base_offset >= from {
                state.record(&h);
            }
            pos += h.total_len() as u64;
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_segment_names() {
        assert_eq!(parse_name("00000000000000000042.log", "log"), Some(42));
        assert_eq!(parse_name("42.log", "log"), None);
        assert_eq!(parse_name("00000000000000000042.index", "log"), None);
    }
}
