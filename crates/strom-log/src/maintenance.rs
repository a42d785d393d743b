//! Truncation, retention and closing of a [`PartitionLog`].

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::partition::{PartitionLog, ensure_indexes, needs_unlocked_load, seek_to};
use crate::recovery::{rebuild_producer_state, remove_snapshots_above};
use crate::segment::{find_batch, segment_file};

impl PartitionLog {
    /// Removes every batch from the one containing `offset` onwards, so the log ends at a
    /// batch boundary at or below `offset` (as Kafka truncates: whole batches). Used by a
    /// follower that diverged from its leader. The cut is fsynced before this returns.
    pub fn truncate_to(&self, offset: i64) -> Result<()> {
        // With the journal: the segment is fsynced (so it holds every journaled record of this
        // log), then a record voiding them is made durable, and only then is the segment cut,
        // so a replay can neither put back what this cuts nor lose what it keeps. Done before
        // taking the lock: the round that writes the record may need it for an earlier append.
        if let Some(c) = &self.inner.env.committer {
            if offset < self.log_end_offset() && offset >= self.log_start_offset() {
                self.sync_for_checkpoint()?;
                c.control(self.topic(), self.partition(), crate::journal::RecordBody::Truncate(offset))?;
            }
        }
        // Under the lock: the checks, the target segment's indexes (loaded with the lock
        // released if it is an unloaded sealed one, then start over), and the partition taken
        // out of service for appends, retention and a clean close (`truncating`); the
        // generation moves so no fsync snapshot or zero-fill from before is trusted after.
        let (file, path, size, start, start_base, target_base) = loop {
            let mut st = self.lock()?;
            if st.failed {
                return Err(Error::StorageFailed { path: self.dir().to_path_buf() });
            }
            if offset >= st.next_offset {
                return Ok(());
            }
            if offset < st.log_start {
                return Err(Error::OffsetOutOfRange {
                    requested: offset,
                    log_start: st.log_start,
                    log_end: st.next_offset,
                });
            }
            if st.truncating {
                return Err(Error::Truncating(format!("{}-{}", self.topic(), self.partition())));
            }
            let interval = st.config.index_interval_bytes;
            let target_base =
                *st.segments.range(..=offset).next_back().map(|(b, _)| b).expect("offset >= log start has a segment");
            let seg = st.segments.get_mut(&target_base).expect("target segment");
            if needs_unlocked_load(seg) {
                drop(st);
                self.load_sealed_indexes(target_base)?;
                continue;
            }
            let file = match seg.file.clone() {
                Some(f) => f,
                None => {
                    let f = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&seg.path)
                        .map_err(|e| Error::io(&seg.path, e))?;
                    self.inner.env.fd_cache.remove(&seg.path);
                    std::sync::Arc::new(f)
                }
            };
            ensure_indexes(seg, &file, interval)?;
            let (start_rel, start) =
                seg.indexes.as_ref().map_or((0, 0), |ix| ix.offset.lookup_entry((offset - seg.base_offset) as u32));
            let found = (file, seg.path.clone(), seg.size, u64::from(start), seg.base_offset + i64::from(start_rel));
            st.truncating = true;
            st.generation += 1;
            break (found.0, found.1, found.2, found.3, found.4, target_base);
        };
        // The cut: the batch containing `offset`, found by reading from the index entry below
        // it (the segment's bytes cannot change while `truncating` holds appends off).
        let found = match find_batch(&file, &path, start, size, start_base, offset) {
            Ok(found) => found.map(|(pos, h)| (pos, h.base_offset)),
            Err(e) => {
                if let Ok(mut st) = self.lock() {
                    st.truncating = false;
                }
                return Err(e);
            }
        };
        match self.truncate_unlocked(file, &path, found, target_base) {
            Ok(new_next) => {
                tracing::info!(topic = %self.topic(), partition = self.partition(), offset, log_end = new_next, "truncated log");
                Ok(())
            }
            Err(e) => {
                if let Ok(mut st) = self.lock() {
                    st.truncating = false;
                    self.latch_failed(&mut st);
                }
                Err(e)
            }
        }
    }

    /// The rest of [`PartitionLog::truncate_to`], entered with `truncating` set and the cut
    /// found (`(position, new log end)` in the target segment, or `None` to keep all of it):
    /// publishes the shortened log in memory under the lock, does the file work (unlink,
    /// cut, fsync, directory fsync, producer-state rebuild) with the lock released, and
    /// finishes under the lock. Returns the new log end. An error leaves the caller to latch
    /// the log failed: memory may already show a cut the disk lacks.
    fn truncate_unlocked(
        &self,
        file: std::sync::Arc<std::fs::File>,
        path: &std::path::Path,
        found: Option<(u64, i64)>,
        target_base: i64,
    ) -> Result<i64> {
        // Publish the shortened log: readers see it at once; the bytes past the cut stay in
        // the file (beyond the segment's size, so unread) until it is cut below.
        let (doomed, copies, cut_pos, new_next) = {
            let mut st = self.lock()?;
            let doomed: Vec<std::path::PathBuf> = st
                .segments
                .split_off(&(target_base + 1))
                .into_values()
                .map(|seg| {
                    self.inner.env.fd_cache.remove(&seg.path);
                    seg.path
                })
                .collect();
            let seg = st.segments.get_mut(&target_base).expect("appends and retention keep off while truncating");
            let (cut_pos, new_next) = found.unwrap_or((seg.size, seg.next_offset));
            seg.size = cut_pos;
            seg.next_offset = new_next;
            if let Some(ix) = seg.indexes.as_mut() {
                ix.offset.truncate_to_position(cut_pos as u32);
                ix.time.truncate_to_position(cut_pos as u32);
                ix.bytes_since_entry = u64::MAX / 2; // index the next batch
            }
            seg.max_timestamp = seg.indexes.as_ref().and_then(|ix| ix.time.max_timestamp()).unwrap_or(-1);
            seg.file = Some(file.clone());
            st.next_offset = new_next;
            self.inner.leo.store(new_next, Ordering::Release);
            self.inner.end.send_replace(new_next);
            self.inner.hw.send_if_modified(|hw| {
                let lower = *hw > new_next;
                if lower {
                    *hw = new_next;
                }
                lower
            });
            self.inner.durable.send_if_modified(|d| {
                let lower = d.end > new_next;
                if lower {
                    d.end = new_next;
                }
                lower
            });
            let copies: std::collections::BTreeMap<i64, crate::segment::Segment> =
                st.segments.iter().map(|(b, s)| (*b, s.detached_copy())).collect();
            (doomed, copies, cut_pos, new_next)
        };
        for p in &doomed {
            remove_segment_files(p);
        }
        file.set_len(cut_pos).map_err(|e| Error::io(path, e))?;
        seek_to(&file, cut_pos).map_err(|e| Error::io(path, e))?;
        if let Err(e) = file.sync_all() {
            tracing::error!(path = %path.display(), error = %e, "fsync failed after truncation; log is now failed");
            return Err(Error::io(self.dir().to_path_buf(), e));
        }
        copies.get(&target_base).expect("the target is kept").remove_index_files();
        // Before the directory fsync, so that a snapshot of producer state past the cut cannot
        // come back after a power loss.
        remove_snapshots_above(self.dir(), new_next);
        crate::manager::sync_dir(self.dir())?;
        let mut copies = copies;
        if let Some(target) = copies.get_mut(&target_base) {
            // The producer-state replay reads the target through the open file.
            target.file = Some(file.clone());
        }
        let producers = rebuild_producer_state(self.dir(), &mut copies, new_next, &self.inner.env.fd_cache)?;
        let mut st = self.lock()?;
        if let Some(seg) = st.segments.get_mut(&target_base) {
            seg.file_len = cut_pos;
        }
        st.producers = producers;
        st.dirty = false;
        st.truncating = false;
        drop(st);
        // Everything kept was fsynced above and the dirty flag is cleared (so the flusher skips
        // this log): complete the waiters for kept offsets now, not at some later append.
        self.publish_durable(new_next);
        Ok(new_next)
    }

    /// Empties the log and makes it start at `offset`, past its current end: what a follower
    /// does when its leader no longer holds anything it could fetch next (the leader's
    /// retention deleted past this log's end, or this replica is new to a partition whose
    /// log no longer starts at 0): Kafka's `truncateFullyAndStartAt`. Every batch is removed
    /// (first by a fsynced, journaled truncation), the old segment's files are deleted and
    /// the directory fsynced, and only then is the segment at `offset` created, so a crash
    /// in between leaves an empty log at 0, never a log with a gap. Producer state is
    /// forgotten (it is rebuilt from the batches that follow).
    pub fn restart_at(&self, offset: i64) -> Result<()> {
        if offset <= self.log_end_offset() {
            return Err(Error::InvalidConfig(format!(
                "{}-{}: a log ending at {} cannot restart at {offset}",
                self.topic(),
                self.partition(),
                self.log_end_offset()
            )));
        }
        if self.log_end_offset() > self.log_start_offset() {
            self.truncate_to(self.log_start_offset())?;
        }
        let old = {
            let mut st = self.lock()?;
            if st.failed {
                return Err(Error::StorageFailed { path: self.dir().to_path_buf() });
            }
            if st.truncating {
                return Err(Error::Truncating(format!("{}-{}", self.topic(), self.partition())));
            }
            if st.next_offset != st.log_start || offset <= st.next_offset {
                return Err(Error::Truncating(format!(
                    "{}-{}: the log changed while restarting at {offset}",
                    self.topic(),
                    self.partition()
                )));
            }
            st.truncating = true;
            st.generation += 1;
            let old: Vec<std::path::PathBuf> = st.segments.values().map(|s| s.path.clone()).collect();
            for p in &old {
                self.inner.env.fd_cache.remove(p);
            }
            old
        };
        let created = (|| -> Result<std::fs::File> {
            for p in &old {
                remove_segment_files(p);
            }
            for o in crate::recovery::snapshot_offsets(self.dir()) {
                let _ = std::fs::remove_file(segment_file(self.dir(), o, "snapshot"));
            }
            crate::manager::sync_dir(self.dir())?;
            let path = segment_file(self.dir(), offset, "log");
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            crate::manager::sync_dir(self.dir())?;
            Ok(file)
        })();
        let mut st = self.lock()?;
        st.truncating = false;
        let file = match created {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(topic = %self.topic(), partition = self.partition(), error = %e, "restarting the log failed; log is now failed");
                self.latch_failed(&mut st);
                return Err(e);
            }
        };
        st.segments.clear();
        st.segments.insert(
            offset,
            crate::segment::Segment {
                base_offset: offset,
                path: segment_file(self.dir(), offset, "log"),
                size: 0,
                file_len: 0,
                next_offset: offset,
                max_timestamp: -1,
                indexes: Some(crate::segment::Indexes::default()),
                file: Some(std::sync::Arc::new(file)),
                first_append_ms: -1,
            },
        );
        st.log_start = offset;
        st.next_offset = offset;
        st.producers = Default::default();
        st.dirty = false;
        self.inner.start.store(offset, Ordering::Release);
        self.inner.leo.store(offset, Ordering::Release);
        self.inner.end.send_replace(offset);
        self.inner.hw.send_replace(offset);
        self.inner.durable.send_modify(|d| d.end = offset);
        drop(st);
        tracing::info!(topic = %self.topic(), partition = self.partition(), offset, "log emptied to restart at its leader's log start");
        Ok(())
    }

    /// Deletes the sealed segments that hold only offsets below `offset` (and below the high
    /// watermark); the log start offset moves to the first remaining segment. For a caller
    /// that has written everything it still needs at or after `offset` (the group coordinator
    /// pruning its internal topic). Never deletes the active segment. Returns the number of
    /// segments deleted.
    pub fn delete_segments_before(&self, offset: i64) -> Result<usize> {
        let mut st = self.lock()?;
        if st.truncating {
            return Ok(0); // the next call prunes
        }
        let limit = offset.min(self.high_watermark());
        let mut deleted = 0;
        while st.segments.len() > 1 {
            let (_, seg) = st.segments.first_key_value().expect("non-empty");
            if seg.next_offset > limit {
                break;
            }
            self.remove_oldest_segment(&mut st);
            deleted += 1;
            // One by one, oldest first: a crash must never keep an older segment while losing
            // a newer one that superseded it.
            crate::manager::sync_dir(self.dir())?;
        }
        if deleted > 0 {
            let start = st.log_start;
            remove_snapshots_below(self.dir(), start);
            tracing::info!(topic = %self.topic(), partition = self.partition(), deleted, log_start = start, "deleted segments below a caller's checkpoint");
        }
        Ok(deleted)
    }

    /// Drops the state of idempotent producers whose last batch is older than
    /// `producer_id_expiration_ms` (by its timestamp) or was deleted by retention, as Kafka
    /// does; returns how many. A producer that writes again afterwards starts afresh.
    pub fn expire_producers(&self, now_ms: i64) -> Result<usize> {
        let mut st = self.lock()?;
        let log_start = st.log_start;
        let expired = st.producers.expire(now_ms, self.inner.env.producer_id_expiration_ms, log_start);
        if expired > 0 {
            tracing::debug!(topic = %self.topic(), partition = self.partition(), expired, remaining = st.producers.len(), "expired idempotent producer state");
        }
        Ok(expired)
    }

    /// Deletes whole sealed segments past `retention.ms` (by their newest timestamp) or beyond
    /// `retention.bytes`; the log start offset moves to the first remaining segment. The
    /// active segment is never deleted. Returns the number of segments deleted.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        let mut deleted = 0;
        // A segment whose largest timestamp is not known yet (its indexes are not loaded)
        // is loaded with the lock released, then the pass goes on from there.
        while let Some(unloaded) = self.apply_retention_locked(now_ms, &mut deleted)? {
            self.load_sealed_indexes(unloaded)?;
        }
        Ok(deleted)
    }

    /// One pass of [`PartitionLog::apply_retention`] under the lock, counting deletions in
    /// `deleted`; `Some(base)` when it stopped at a sealed segment whose indexes must be
    /// loaded first.
    fn apply_retention_locked(&self, now_ms: i64, deleted_total: &mut usize) -> Result<Option<i64>> {
        let mut st = self.lock()?;
        if st.truncating {
            return Ok(None); // the next pass applies it
        }
        let (retention_ms, retention_bytes, interval) =
            (st.config.retention_ms, st.config.retention_bytes, st.config.index_interval_bytes);
        if retention_ms.is_none() && retention_bytes.is_none() {
            return Ok(None);
        }
        let hw = self.high_watermark();
        let mut total: u64 = st.segments.values().map(|s| s.size).sum();
        let mut deleted = 0;
        let mut unloaded = None;
        while st.segments.len() > 1 {
            let (&base, _) = st.segments.iter().next().expect("non-empty");
            let seg = st.segments.get_mut(&base).expect("first segment");
            if seg.next_offset > hw {
                break; // never delete what consumers have not been allowed to see yet
            }
            let by_size = retention_bytes.is_some_and(|limit| total - seg.size >= limit);
            let by_time = match retention_ms {
                Some(_) if !by_size && needs_unlocked_load(seg) => {
                    unloaded = Some(base);
                    break;
                }
                Some(ms) => {
                    let file = self.segment_file(seg)?;
                    ensure_indexes(seg, &file, interval)?;
                    seg.max_timestamp < now_ms - ms
                }
                None => false,
            };
            if !(by_size || by_time) {
                break;
            }
            total -= self.remove_oldest_segment(&mut st);
            deleted += 1;
            tracing::info!(topic = %self.topic(), partition = self.partition(), base_offset = base, by_size, by_time, "retention deleted segment");
        }
        if deleted > 0 {
            crate::manager::sync_dir(self.dir())?;
            remove_snapshots_below(self.dir(), st.log_start);
        }
        *deleted_total += deleted;
        Ok(unloaded)
    }

    /// Removes the oldest segment (the caller keeps at least one) with its files, and moves
    /// the log start to the next one. Returns the removed segment's size. The directory is
    /// the caller's to fsync.
    fn remove_oldest_segment(&self, st: &mut crate::partition::State) -> u64 {
        let (_, seg) = st.segments.pop_first().expect("a segment to remove");
        self.inner.env.fd_cache.remove(&seg.path);
        remove_segment_files(&seg.path);
        st.log_start = *st.segments.keys().next().expect("active segment remains");
        self.inner.start.store(st.log_start, Ordering::Release);
        seg.size
    }

    /// Closes the log for good: refuses further appends, fsyncs the active segment, and
    /// writes its indexes and a producer snapshot so a clean restart needs no scan.
    pub(crate) fn close(&self) -> Result<()> {
        let mut st = self.lock()?;
        if st.closed {
            return Ok(());
        }
        st.closed = true;
        if st.failed {
            return Err(Error::StorageFailed { path: self.dir().to_path_buf() });
        }
        if st.truncating {
            // Its producer state is being rebuilt: no snapshot of it, and no clean-shutdown
            // marker (the caller sees the error), so the next start rebuilds by replay.
            return Err(Error::Truncating(format!("{}-{}", self.topic(), self.partition())));
        }
        let next = st.next_offset;
        let active = st.active();
        if let Some(f) = &active.file {
            if active.file_len > active.size {
                match f.set_len(active.size) {
                    Ok(()) => active.file_len = active.size,
                    // Harmless: the next start cuts the zeros off as it validates the tail.
                    Err(e) => {
                        tracing::warn!(path = %active.path.display(), error = %e, "could not release preallocated space at close")
                    }
                }
            }
            if let Err(e) = f.sync_data() {
                tracing::error!(path = %active.path.display(), error = %e, "fsync failed while closing; log is now failed");
                self.latch_failed(&mut st);
                return Err(Error::io(self.dir().to_path_buf(), e));
            }
        }
        active.write_indexes(true)?;
        let snapshot = segment_file(self.dir(), next, "snapshot");
        crate::index::write_file_atomic(&snapshot, &st.producers.encode(), true)?;
        // The renames above must be durable before the clean-shutdown marker says to trust them.
        crate::manager::sync_dir(self.dir())?;
        self.publish_durable(next);
        Ok(())
    }

    /// Marks the log closed without flushing (the partition is being deleted), and wakes the
    /// fetches long-polling on it: their next read says the partition is gone.
    pub(crate) fn mark_closed(&self) {
        if let Ok(mut st) = self.lock() {
            st.closed = true;
        }
        self.inner.hw.send_modify(|_| {});
        self.inner.end.send_modify(|_| {});
    }
}

/// Removes a segment's log and index files (best effort: a leftover index is harmless).
///
/// Retention does not fsync the directory after it: if a power cut brings a removed oldest
/// segment back, it holds exactly the batches it held (offsets are never reused), the log
/// start is simply lower, and the next retention pass removes it again. Truncation, where a
/// resurrected segment would bring back cut batches, fsyncs the directory before it returns.
fn remove_segment_files(log_path: &std::path::Path) {
    for ext in ["log", "index", "timeindex"] {
        let p = log_path.with_extension(ext);
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %p.display(), error = %e, "could not remove segment file");
            }
        }
    }
}

/// Removes producer snapshots for offsets below `start`, keeping the newest of them (the
/// replay starting point for the first remaining segment).
fn remove_snapshots_below(dir: &std::path::Path, start: i64) {
    let mut below: Vec<i64> = crate::recovery::snapshot_offsets(dir).into_iter().filter(|o| *o < start).collect();
    below.sort_unstable();
    below.pop();
    for o in below {
        let _ = std::fs::remove_file(segment_file(dir, o, "snapshot"));
    }
}
