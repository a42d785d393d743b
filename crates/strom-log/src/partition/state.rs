//! [`State`]: the mutable state of a partition, behind its mutex.

use std::collections::BTreeMap;

use crate::config::LogConfig;
use crate::producer_state::ProducerStates;
use crate::segment::Segment;

/// Mutable state of a partition, behind its mutex.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) config: LogConfig,
    /// Segments by base offset; the last one is the active segment.
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) log_start: i64,
    pub(crate) next_offset: i64,
    pub(crate) producers: ProducerStates,
    /// Appends since the last fsync.
    pub(crate) dirty: bool,
    /// Appends (produce requests) since the flusher last took a snapshot: how many one
    /// fsync covers, the measure of group-commit efficiency.
    pub(crate) appends_since_flush: u64,
    /// Bytes appended since the flusher last took a snapshot.
    pub(crate) bytes_since_flush: u64,
    /// Moving average of the bytes one fsync covers (0 until the first one).
    pub(crate) flush_bytes_avg: u64,
    /// Bytes appended since the log was opened (saturating): preallocation starts once a
    /// partition has shown it is busy.
    pub(crate) appended_since_open: u64,
    /// A zero-fill of the active segment is queued or running.
    pub(crate) preallocating: bool,
    /// Base offset of an active segment whose zero-fill failed (a full disk): not retried
    /// until the next segment.
    pub(crate) prealloc_failed_segment: Option<i64>,
    /// Bumped by truncation so an fsync snapshot taken before it is not trusted after it.
    pub(crate) generation: u64,
    /// A truncation is doing its file work with the lock released: appends, retention and
    /// a clean close keep off until it is done.
    pub(crate) truncating: bool,
    pub(crate) failed: bool,
    pub(crate) closed: bool,
}

impl State {
    pub(crate) fn active(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a partition always has an active segment")
    }

    /// Checks the invariants every step must keep (as openraft's `RaftState::validate`);
    /// tests call it after each operation. `Err` names the first one broken.
    ///
    /// - at least one segment, each keyed by its base offset;
    /// - offsets are dense: each segment ends where the next one begins, and the last one
    ///   ends at `next_offset`;
    /// - the log starts at the first segment's base, and never after its end;
    /// - only the active (last) segment holds its own writable file, and only it may have
    ///   preallocated space after its batches (a sealed segment's file is exactly its batches).
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        let Some((&first, _)) = self.segments.first_key_value() else {
            return Err("no segment".into());
        };
        if self.log_start != first {
            return Err(format!("log start {} is not the first segment's base {first}", self.log_start));
        }
        if self.log_start > self.next_offset {
            return Err(format!("log start {} after the log end {}", self.log_start, self.next_offset));
        }
        let last = self.segments.len() - 1;
        let mut expected_base = first;
        for (i, (&base, seg)) in self.segments.iter().enumerate() {
            if seg.base_offset != base || base != expected_base {
                return Err(format!("segment keyed {base} has base {}, expected {expected_base}", seg.base_offset));
            }
            if seg.next_offset < seg.base_offset {
                return Err(format!("segment {base} ends at {} before it begins", seg.next_offset));
            }
            if seg.size > seg.file_len {
                return Err(format!("segment {base} holds {} bytes in a {}-byte file", seg.size, seg.file_len));
            }
            if i < last && (seg.file.is_some() || seg.file_len != seg.size) {
                return Err(format!("sealed segment {base} keeps a writable file or preallocated space"));
            }
            expected_base = seg.next_offset;
        }
        if expected_base != self.next_offset {
            return Err(format!("the last segment ends at {expected_base}, the log at {}", self.next_offset));
        }
        Ok(())
    }
}
