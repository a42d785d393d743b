//! Appending: validation, offsets, the `writev` into the active segment, segment rolls.

use std::fs::File;
use std::io::{IoSlice, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::prealloc::Preallocate;
use super::{AppendInfo, PartitionLog, State, now_ms};
use crate::batch::{BatchHeader, REWRITTEN_PREFIX_LEN, rewritten_prefix, validate_batches};
use crate::config::{BACKGROUND_FLUSH_BYTES, FlushPolicy};
use crate::error::{Error, Result};
use crate::journal::Pending;
use crate::producer_state::{ProducerStates, SeqCheck};
use crate::segment::{Indexes, Segment, segment_file};

impl PartitionLog {
    /// Validates and appends `records` (one or more RecordBatch v2), assigning offsets.
    ///
    /// Either every batch is written or none is. The returned offsets are readable by
    /// `ReadBound::LogEnd` at once; await [`PartitionLog::wait_durable`] before
    /// acknowledging, and the high watermark follows durability.
    pub fn append(&self, records: Bytes, leader_epoch: i32) -> Result<AppendInfo> {
        let batches = validate_batches(&records)?;
        let now = now_ms();
        let mut st = self.lock()?;
        self.check_writable(&st)?;
        let max = st.config.max_message_bytes;
        if let Some(b) = batches.iter().find(|b| b.bytes.len() > max) {
            return Err(Error::MessageTooLarge { size: b.bytes.len(), max });
        }
        if let Some(dup) = check_sequences(&st.producers, &batches)? {
            let max_timestamp = batches.iter().map(|b| b.header.max_timestamp).max().unwrap_or(-1);
            let count = (dup.last_offset - dup.first_offset + 1) as u32;
            return Ok(AppendInfo {
                base_offset: dup.first_offset,
                last_offset: dup.last_offset,
                max_timestamp,
                record_count: count,
                duplicate: true,
            });
        }
        let total: u64 = batches.iter().map(|b| b.bytes.len() as u64).sum();
        self.maybe_roll(&mut st, total, now)?;

        // Assign offsets and write [rewritten prefix | rest of the batch as received].
        let base_offset = st.next_offset;
        let mut headers = Vec::with_capacity(batches.len());
        let mut prefixes = Vec::with_capacity(batches.len());
        let mut next = base_offset;
        for b in &batches {
            prefixes.push(rewritten_prefix(&b.bytes, next, leader_epoch));
            let mut h = b.header;
            h.base_offset = next;
            h.partition_leader_epoch = leader_epoch;
            next = h.last_offset() + 1;
            headers.push(h);
        }
        let mut slices = Vec::with_capacity(batches.len() * 2);
        for (p, b) in prefixes.iter().zip(&batches) {
            slices.push(IoSlice::new(p));
            slices.push(IoSlice::new(&b.bytes[REWRITTEN_PREFIX_LEN..]));
        }
        self.write_active(&mut st, &mut slices, total)?;
        let max_timestamp = self.record_appended(&mut st, &headers, total, now);
        let record_count = (next - base_offset) as u32;
        let stored = prefixes.into_iter().zip(batches.into_iter().map(|b| b.bytes)).collect();
        self.make_durable(st, stored, next)?;
        Ok(AppendInfo { base_offset, last_offset: next - 1, max_timestamp, record_count, duplicate: false })
    }

    /// Hands an append that ends at `next` to its flush policy: to the journal's round (or
    /// this partition's own fsync) for `always`, published as durable at once for
    /// `interval`/`never`. Called with the state locked, so the journal gets this
    /// partition's appends in offset order; `stored` is each batch as written (prefix, then
    /// the batch from its 16th byte on).
    fn make_durable(
        &self,
        st: std::sync::MutexGuard<'_, State>,
        stored: Vec<([u8; REWRITTEN_PREFIX_LEN], Bytes)>,
        next: i64,
    ) -> Result<()> {
        match st.config.flush_policy {
            FlushPolicy::Always => match &self.inner.env.committer {
                Some(committer) => {
                    let Some(me) = self.inner.me.upgrade() else { return Err(self.closed_error()) };
                    committer.submit(Pending { log: me, generation: st.generation, end: next, batches: stored });
                }
                None => {
                    drop(st);
                    self.request_flush(None);
                }
            },
            FlushPolicy::Interval(every) => {
                self.publish_durable(next);
                let background = st.bytes_since_flush >= BACKGROUND_FLUSH_BYTES;
                drop(st);
                self.request_flush(Some(every));
                if background {
                    self.request_background_flush();
                }
            }
            FlushPolicy::Never => {
                self.publish_durable(next);
                if st.bytes_since_flush >= BACKGROUND_FLUSH_BYTES {
                    drop(st);
                    self.request_background_flush();
                }
            }
        }
        Ok(())
    }

    /// Appends a leader's batches as a follower: exactly as the leader stored them (its
    /// offsets and leader epochs; the bytes are not rewritten), under this log's flush
    /// policy, so [`PartitionLog::wait_durable`] says when they are on this node's disk.
    /// Batches that end below the log end are skipped (a fetch that overlapped what is
    /// held); the first one kept must start exactly at the log end. Producer state is built
    /// from the batches as on the leader, so an idempotent retry after a failover is
    /// recognised here. Returns the new log end (the old one when nothing was new).
    pub fn append_replicated(&self, records: &Bytes) -> Result<i64> {
        let now = now_ms();
        let st = self.lock()?;
        self.check_writable(&st)?;
        let end = st.next_offset;
        let skip = held_prefix(records, end);
        if skip >= records.len() {
            return Ok(end);
        }
        drop(st);
        // The CRC check runs without the lock, as for a producer's append.
        let batches = validate_batches(&records.slice(skip..))?;
        let mut st = self.lock()?;
        self.check_writable(&st)?;
        if st.next_offset != end {
            return Err(Error::Truncating(format!(
                "{}-{}: the log end moved from {end} to {} during a replicated append",
                self.inner.topic, self.inner.partition, st.next_offset
            )));
        }
        let mut expected = end;
        for b in &batches {
            if b.header.base_offset != expected {
                return Err(Error::NotContiguous { expected, found: b.header.base_offset });
            }
            expected = b.header.last_offset() + 1;
        }
        self.write_as_stored(&mut st, &batches, now)?;
        let stored = batches
            .into_iter()
            .map(|b| {
                let mut prefix = [0u8; REWRITTEN_PREFIX_LEN];
                prefix.copy_from_slice(&b.bytes[..REWRITTEN_PREFIX_LEN]);
                (prefix, b.bytes)
            })
            .collect();
        self.make_durable(st, stored, expected)?;
        Ok(expected)
    }

    /// Appends batches exactly as they were stored (offsets and leader epochs already set),
    /// from the journal at startup: the batches the segment already holds are skipped, the
    /// rest must continue at the log end. Nothing is queued for a flush; the caller fsyncs.
    /// Returns how many batches were appended.
    pub(crate) fn replay_stored(&self, records: &Bytes) -> Result<usize> {
        let now = now_ms();
        let mut st = self.lock()?;
        self.check_writable(&st)?;
        let end = st.next_offset;
        let skip = held_prefix(records, end);
        if skip == records.len() {
            return Ok(0);
        }
        let batches = validate_batches(&records.slice(skip..))?;
        let mut expected = end;
        for b in &batches {
            if b.header.base_offset != expected {
                return Err(Error::Corrupted {
                    path: self.inner.dir.clone(),
                    position: 0,
                    reason: format!(
                        "journal batch at offset {} does not continue the log at {expected}",
                        b.header.base_offset
                    ),
                });
            }
            expected = b.header.last_offset() + 1;
        }
        self.write_as_stored(&mut st, &batches, now)?;
        Ok(batches.len())
    }

    /// Writes batches whose offsets and epochs are already set (a replay, a replicated
    /// append) byte for byte at the log end, rolling first if need be, and books them.
    fn write_as_stored(&self, st: &mut State, batches: &[crate::batch::ValidBatch], now: i64) -> Result<()> {
        let total: u64 = batches.iter().map(|b| b.bytes.len() as u64).sum();
        self.maybe_roll(st, total, now)?;
        let mut slices: Vec<IoSlice<'_>> = batches.iter().map(|b| IoSlice::new(&b.bytes)).collect();
        self.write_active(st, &mut slices, total)?;
        let headers: Vec<_> = batches.iter().map(|b| b.header).collect();
        self.record_appended(st, &headers, total, now);
        Ok(())
    }

    /// Refuses writes to a failed, closed or truncating log.
    fn check_writable(&self, st: &State) -> Result<()> {
        if st.failed {
            return Err(Error::StorageFailed { path: self.inner.dir.clone() });
        }
        if st.closed {
            return Err(self.closed_error());
        }
        if st.truncating {
            return Err(Error::Truncating(format!("{}-{}", self.inner.topic, self.inner.partition)));
        }
        Ok(())
    }

    /// The bookkeeping after batches with `headers` (`total` bytes) were written at the end of
    /// the active segment: indexes, producer state, offsets, flush counters, preallocation.
    /// Returns the largest timestamp among them.
    fn record_appended(&self, st: &mut State, headers: &[BatchHeader], total: u64, now: i64) -> i64 {
        let interval = st.config.index_interval_bytes;
        let State { segments, producers, .. } = &mut *st;
        let seg = segments.values_mut().next_back().expect("active segment");
        let mut pos = seg.size;
        let mut max_timestamp = -1;
        for h in headers {
            seg.max_timestamp = seg.max_timestamp.max(h.max_timestamp);
            max_timestamp = max_timestamp.max(h.max_timestamp);
            if let Some(ix) = seg.indexes.as_mut() {
                ix.on_batch(seg.base_offset, h, pos, seg.max_timestamp, interval);
            }
            producers.record(h);
            pos += h.total_len() as u64;
        }
        let next = headers.last().map_or(st.next_offset, |h| h.last_offset() + 1);
        let seg = st.active();
        seg.size = pos;
        seg.file_len = seg.file_len.max(pos);
        seg.next_offset = next;
        if seg.first_append_ms < 0 {
            seg.first_append_ms = now;
        }
        st.next_offset = next;
        st.dirty = true;
        st.appends_since_flush += 1;
        st.bytes_since_flush += total;
        st.appended_since_open = st.appended_since_open.saturating_add(total);
        self.inner.leo.store(next, Ordering::Release);
        self.inner.end.send_replace(next);
        if self.claim_preallocation(st) {
            self.inner.env.preallocator.request(Arc::new(Preallocate(self.inner.me.clone())));
        }
        max_timestamp
    }

    /// Writes all slices at the end of the active segment. On failure, cuts the file back to
    /// its previous size so no partial batch is left; if even that fails, latches the log.
    fn write_active(&self, st: &mut State, slices: &mut [IoSlice<'_>], total: u64) -> Result<()> {
        let seg = st.active();
        let Some(file) = seg.file.clone() else {
            return Err(Error::StorageFailed { path: seg.path.clone() });
        };
        let (path, old_size) = (seg.path.clone(), seg.size);
        if old_size + total > u64::from(u32::MAX) {
            return Err(Error::InvalidConfig(format!("segment {} would exceed 4 GiB", path.display())));
        }
        match write_all_vectored(&file, slices) {
            Ok(()) => Ok(()),
            Err(e) => {
                let undo = file.set_len(old_size).and_then(|()| seek_to(&file, old_size));
                if undo.is_ok() {
                    st.active().file_len = old_size;
                }
                if let Err(undo_err) = undo {
                    tracing::error!(path = %path.display(), error = %undo_err, "cannot undo a failed write; log is now failed");
                    self.latch_failed(st);
                }
                Err(Error::io(path, e))
            }
        }
    }

    /// Rolls the active segment when the incoming bytes would overflow `segment.bytes` or the
    /// segment is older than `segment.ms`. The old segment is fsynced (whatever the flush
    /// policy) before the new one takes writes, so recovery only ever repairs the active one.
    fn maybe_roll(&self, st: &mut State, incoming: u64, now: i64) -> Result<()> {
        let (segment_bytes, segment_ms) = (st.config.segment_bytes, st.config.segment_ms);
        let active = st.active();
        if active.size == 0 {
            return Ok(());
        }
        let too_big = active.size + incoming > segment_bytes || active.size + incoming > u64::from(u32::MAX);
        let too_old =
            segment_ms.is_some_and(|ms| active.first_append_ms >= 0 && now - active.first_append_ms >= ms as i64);
        if too_big || too_old { self.roll(st) } else { Ok(()) }
    }

    pub(crate) fn roll(&self, st: &mut State) -> Result<()> {
        let next = st.next_offset;
        let dir = self.inner.dir.clone();
        let active = st.active();
        let Some(file) = active.file.clone() else {
            return Err(Error::StorageFailed { path: dir });
        };
        // A sealed segment's file holds exactly its batches: readers and a restart take its
        // length from the file. If the cut fails the segment simply stays active.
        if active.file_len > active.size {
            file.set_len(active.size).map_err(|e| Error::io(&active.path, e))?;
            active.file_len = active.size;
        }
        if let Err(e) = file.sync_data() {
            tracing::error!(path = %active.path.display(), error = %e, "fsync failed while rolling; log is now failed");
            self.latch_failed(st);
            return Err(Error::io(dir, e));
        }
        // Everything written so far is on disk now: complete its waiters whatever happens
        // next (an appended batch whose flush snapshot had not been taken yet is covered here).
        self.publish_durable(next);
        if let Err(e) = active.write_indexes(false) {
            tracing::warn!(error = %e, "could not write index files of a sealed segment; they will be rebuilt on demand");
        }
        let snapshot = segment_file(&dir, next, "snapshot");
        if let Err(e) = crate::index::write_file_atomic(&snapshot, &st.producers.encode(), false) {
            tracing::warn!(error = %e, "could not write producer snapshot; recovery will replay further");
        }
        // Create the next segment before retiring the current one: if this fails (too many
        // open files, a full disk) the current segment simply stays active and the next
        // append tries the roll again.
        let path = segment_file(&dir, next, "log");
        let new_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        if new_file.metadata().map_err(|e| Error::io(&path, e))?.len() != 0 {
            // A leftover of an earlier failed roll would be empty; anything else is not ours to
            // overwrite.
            return Err(Error::Corrupted { path, position: 0, reason: "next segment file already holds data".into() });
        }
        if let Err(e) = crate::manager::sync_dir(&dir) {
            tracing::error!(dir = %dir.display(), error = %e, "directory fsync failed while rolling; log is now failed");
            self.latch_failed(st);
            return Err(e);
        }
        st.active().file = None;
        st.segments.insert(
            next,
            Segment {
                base_offset: next,
                path,
                size: 0,
                file_len: 0,
                next_offset: next,
                max_timestamp: -1,
                indexes: Some(Indexes::default()),
                file: Some(Arc::new(new_file)),
                first_append_ms: -1,
            },
        );
        // The roll's fsync covered everything unflushed: the background threshold and the
        // preallocation's flush-size average start again from the new segment.
        st.bytes_since_flush = 0;
        tracing::debug!(topic = %self.inner.topic, partition = self.inner.partition, base_offset = next, "rolled segment");
        Ok(())
    }
}

/// Checks idempotent-producer sequences for all batches. `Some(meta)` means the (single)
/// batch is a retry of a stored one.
fn check_sequences(
    producers: &ProducerStates,
    batches: &[crate::batch::ValidBatch],
) -> Result<Option<crate::producer_state::BatchMeta>> {
    if batches.len() == 1 {
        return match producers.check(&batches[0].header)? {
            SeqCheck::Append => Ok(None),
            SeqCheck::Duplicate(meta) => Ok(Some(meta)),
        };
    }
    if batches.iter().all(|b| b.header.producer_id < 0) {
        return Ok(None);
    }
    // Several idempotent batches in one request (rare): check each against the state as it
    // would be after the previous ones. A duplicate among several is refused as out of order.
    let mut scratch = producers.clone();
    for b in batches {
        match scratch.check(&b.header)? {
            SeqCheck::Append => scratch.record(&b.header),
            SeqCheck::Duplicate(_) => {
                return Err(Error::OutOfOrderSequence {
                    producer_id: b.header.producer_id,
                    expected: -1,
                    received: b.header.base_sequence,
                });
            }
        }
    }
    Ok(None)
}

/// Bytes at the start of `records` taken by whole batches that end below `end` (the log
/// already holds them): what a replay or a replicated append skips.
fn held_prefix(records: &[u8], end: i64) -> usize {
    let mut skip = 0;
    while let Some(h) = BatchHeader::parse(&records[skip..]) {
        if h.last_offset() >= end || skip + h.total_len() > records.len() {
            break;
        }
        skip += h.total_len();
    }
    skip
}

fn write_all_vectored(file: &File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    let mut f = file;
    while !slices.is_empty() {
        match f.write_vectored(slices) {
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(crate) fn seek_to(file: &File, pos: u64) -> std::io::Result<()> {
    use std::io::Seek;
    let mut f = file;
    f.seek(std::io::SeekFrom::Start(pos)).map(|_| ())
}
