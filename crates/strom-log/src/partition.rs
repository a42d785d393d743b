//! [`PartitionLog`]: one partition's write-ahead log — append, durable waits, reads.
//! Truncation, retention and closing live in `maintenance.rs`; opening and recovery in
//! `recovery.rs`.
//!
//! Concurrency: all mutable state sits in one `Mutex<State>` held only for short,
//! non-blocking sections (the append's `writev` into the page cache, index updates). Batch
//! validation (CRC) runs before taking the lock; fsyncs run on the flusher thread without
//! the lock; reads take a snapshot (file handle, size, start position) under the lock and
//! do their `pread`s after releasing it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;

use crate::batch::{
    BatchHeader, HEADER_LEN, LOG_OVERHEAD, REWRITTEN_PREFIX_LEN, check_batch, rewritten_prefix, validate_batches,
};
use crate::config::{BACKGROUND_FLUSH_BYTES, FlushPolicy, LogConfig, PREALLOCATE_MAX_FLUSH_BYTES};
use crate::error::{Error, Result};
use crate::fd_cache::FdCache;
use crate::flusher::{Flusher, Job};
use crate::producer_state::{ProducerStates, SeqCheck};
use crate::segment::{Indexes, Segment, find_batch, read_bytes, read_header, scan_validate, segment_file};

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset assigned to the last record.
    pub last_offset: i64,
    /// Largest record timestamp among the appended batches.
    pub max_timestamp: i64,
    /// Records appended.
    pub record_count: u32,
    /// True when this was a retry of an idempotent batch already stored: the offsets are
    /// the original ones and nothing was written.
    pub duplicate: bool,
}

/// Upper bound of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBound {
    /// Up to the high watermark: what consumers may see (never data that could vanish).
    HighWatermark,
    /// Up to the log end: for replication followers.
    LogEnd,
}

/// Result of a read.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches, as stored; the first one contains the requested offset.
    pub records: Bytes,
    /// High watermark at the time of the read.
    pub high_watermark: i64,
    /// First offset still held.
    pub log_start_offset: i64,
    /// Next offset to be assigned.
    pub log_end_offset: i64,
}

/// Services shared by all partitions of a manager.
#[derive(Debug)]
pub(crate) struct Env {
    pub(crate) flusher: Flusher,
    /// One thread that zero-fills space ahead of busy active segments.
    pub(crate) preallocator: Flusher,
    /// [`crate::ManagerConfig::preallocate_bytes`].
    pub(crate) preallocate_bytes: u64,
    /// [`crate::ManagerConfig::preallocate_after_bytes`].
    pub(crate) preallocate_after_bytes: u64,
    /// [`crate::ManagerConfig::producer_id_expiration_ms`].
    pub(crate) producer_id_expiration_ms: u64,
    pub(crate) fd_cache: FdCache,
    pub(crate) auto_high_watermark: bool,
}

/// Durability progress published to waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Durable {
    /// Every offset below this is acknowledged-able under the flush policy.
    pub(crate) end: i64,
    /// The log latched into the failed state.
    pub(crate) failed: bool,
}

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
    pub(crate) failed: bool,
    pub(crate) closed: bool,
}

impl State {
    pub(crate) fn active(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a partition always has an active segment")
    }
}

/// Shared core of a partition log.
pub(crate) struct Shared {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) dir: PathBuf,
    pub(crate) state: Mutex<State>,
    pub(crate) hw: watch::Sender<i64>,
    pub(crate) durable: watch::Sender<Durable>,
    /// Mirrors of state fields for lock-free getters.
    pub(crate) leo: AtomicI64,
    pub(crate) start: AtomicI64,
    pub(crate) flush_queued: AtomicBool,
    /// A background flush (see [`crate::BACKGROUND_FLUSH_BYTES`]) is queued and not yet
    /// started; kept apart from `flush_queued`, which a timed `interval` flush may hold.
    pub(crate) background_queued: AtomicBool,
    /// Data fsyncs the flusher has completed successfully (what tests observe).
    pub(crate) fsyncs_done: AtomicU64,
    /// At most one fsync of this partition runs at a time: a flush requested while one runs
    /// sets `again`, and the running one queues the partition again when its fsync is done,
    /// so every append made meanwhile is covered by one next fsync (group commit) instead
    /// of a second, overlapping one.
    pub(crate) flushing: Mutex<FlushState>,
    pub(crate) env: Arc<Env>,
    pub(crate) me: Weak<Shared>,
}

/// One partition's log. Cheap to clone; all clones share the same log.
#[derive(Clone)]
pub struct PartitionLog {
    pub(crate) inner: Arc<Shared>,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PartitionLog({}-{})", self.inner.topic, self.inner.partition)
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl PartitionLog {
    pub(crate) fn from_state(topic: &str, partition: i32, dir: PathBuf, state: State, env: Arc<Env>) -> PartitionLog {
        let leo = state.next_offset;
        let start = state.log_start;
        let inner = Arc::new_cyclic(|me| Shared {
            topic: topic.to_string(),
            partition,
            dir,
            state: Mutex::new(state),
            // Recovery fsynced the active segment, so everything on disk is durable.
            hw: watch::Sender::new(leo),
            durable: watch::Sender::new(Durable { end: leo, failed: false }),
            leo: AtomicI64::new(leo),
            start: AtomicI64::new(start),
            flush_queued: AtomicBool::new(false),
            background_queued: AtomicBool::new(false),
            fsyncs_done: AtomicU64::new(0),
            flushing: Mutex::new(FlushState::default()),
            env,
            me: me.clone(),
        });
        PartitionLog { inner }
    }

    /// Topic name.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// Partition number.
    pub fn partition(&self) -> i32 {
        self.inner.partition
    }

    /// Directory holding this partition's files.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The log's current configuration.
    pub fn config(&self) -> LogConfig {
        self.lock().map(|s| s.config.clone()).unwrap_or_default()
    }

    /// Replaces the configuration; takes effect from the next append / retention run.
    pub fn set_config(&self, config: LogConfig) -> Result<()> {
        let config = config.validate()?;
        self.lock()?.config = config;
        Ok(())
    }

    /// First offset still held (moves forward with retention).
    pub fn log_start_offset(&self) -> i64 {
        self.inner.start.load(Ordering::Acquire)
    }

    /// Next offset to be assigned.
    pub fn log_end_offset(&self) -> i64 {
        self.inner.leo.load(Ordering::Acquire)
    }

    /// Offsets below this are visible to consumers.
    pub fn high_watermark(&self) -> i64 {
        *self.inner.hw.borrow()
    }

    /// Sets the high watermark (replication). Clamped to `[log_start, log_end]`; never moves
    /// backwards except through truncation.
    pub fn set_high_watermark(&self, hw: i64) {
        let hw = hw.clamp(self.log_start_offset(), self.log_end_offset());
        self.inner.hw.send_if_modified(|cur| {
            let advance = hw > *cur;
            if advance {
                *cur = hw;
            }
            advance
        });
    }

    /// A receiver that changes whenever the high watermark moves; long-polling fetches wait
    /// on it.
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.inner.hw.subscribe()
    }

    /// True once an fsync or write failed: the log refuses writes until restarted.
    pub fn is_failed(&self) -> bool {
        self.inner.durable.borrow().failed
    }

    /// Bytes held in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.lock().map(|s| s.segments.values().map(|s| s.size).sum()).unwrap_or(0)
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.lock().map(|s| s.segments.len()).unwrap_or(0)
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, State>> {
        // A panic while the state was locked may have left it half-updated; refuse to go on
        // with this log rather than guess (other partitions are unaffected).
        self.inner.state.lock().map_err(|_| Error::StorageFailed { path: self.inner.dir.clone() })
    }

    /// Validates and appends `records` (one or more RecordBatch v2), assigning offsets.
    ///
    /// Either every batch is written or none is. The returned offsets are readable by
    /// `ReadBound::LogEnd` at once; await [`PartitionLog::wait_durable`] before
    /// acknowledging, and the high watermark follows durability.
    pub fn append(&self, records: Bytes, leader_epoch: i32) -> Result<AppendInfo> {
        let batches = validate_batches(&records)?;
        let now = now_ms();
        let mut st = self.lock()?;
        if st.failed {
            return Err(Error::StorageFailed { path: self.inner.dir.clone() });
        }
        if st.closed {
            return Err(Error::Closed(format!("{}-{}", self.inner.topic, self.inner.partition)));
        }
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

        // Bookkeeping.
        let interval = st.config.index_interval_bytes;
        let policy = st.config.flush_policy;
        let State { segments, producers, .. } = &mut *st;
        let seg = segments.values_mut().next_back().expect("active segment");
        let mut pos = seg.size;
        let mut max_timestamp = -1;
        for h in &headers {
            seg.max_timestamp = seg.max_timestamp.max(h.max_timestamp);
            max_timestamp = max_timestamp.max(h.max_timestamp);
            if let Some(ix) = seg.indexes.as_mut() {
                ix.on_batch(seg.base_offset, h, pos, seg.max_timestamp, interval);
            }
            producers.record(h);
            pos += h.total_len() as u64;
        }
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
        let record_count = (next - base_offset) as u32;
        if self.claim_preallocation(&mut st) {
            self.inner.env.preallocator.request(Arc::new(Preallocate(self.inner.me.clone())));
        }
        match policy {
            FlushPolicy::Always => {
                drop(st);
                self.request_flush(None);
            }
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
        Ok(AppendInfo { base_offset, last_offset: next - 1, max_timestamp, record_count, duplicate: false })
    }

    /// Resolves once `last_offset` is acknowledged-able under the flush policy: after the
    /// group-commit fsync for `always`, at once for `interval`/`never`.
    /// Fails with [`Error::StorageFailed`] if the log latched into the failed state first.
    pub async fn wait_durable(&self, last_offset: i64) -> Result<()> {
        let mut rx = self.inner.durable.subscribe();
        let d = *rx
            .wait_for(|d| d.failed || d.end > last_offset)
            .await
            .map_err(|_| Error::Closed(format!("{}-{}", self.inner.topic, self.inner.partition)))?;
        if d.end > last_offset { Ok(()) } else { Err(Error::StorageFailed { path: self.inner.dir.clone() }) }
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

    /// Marks the log failed and fails every waiter. Caller holds the state lock.
    pub(crate) fn latch_failed(&self, st: &mut State) {
        st.failed = true;
        self.inner.durable.send_modify(|d| d.failed = true);
    }

    /// Publishes that every offset below `end` is durable; in single-node mode the high
    /// watermark follows.
    pub(crate) fn publish_durable(&self, end: i64) {
        // The high watermark moves first, so an acknowledged record is already visible to
        // consumers when its producer hears back.
        if self.inner.env.auto_high_watermark {
            self.set_high_watermark(end);
        }
        self.inner.durable.send_if_modified(|d| {
            let advance = end > d.end;
            if advance {
                d.end = end;
            }
            advance
        });
    }

    /// If an fsync of this partition is running, tells it to go round again once done and
    /// returns true: no queue entry, no thread to wake (under load most appends arrive during
    /// an fsync, and each wake-up was a context switch on a busy core).
    fn join_running_flush(&self) -> bool {
        let mut f = self.inner.flushing.lock().unwrap_or_else(|p| p.into_inner());
        if f.running {
            f.again = true;
        }
        f.running
    }

    fn request_flush(&self, after: Option<Duration>) {
        if after.is_none() && self.join_running_flush() {
            return;
        }
        if self.inner.flush_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(me) = self.inner.me.upgrade() else { return };
        match after {
            None => self.inner.env.flusher.request(me),
            Some(d) => self.inner.env.flusher.request_at(me, Instant::now() + d),
        }
    }

    /// Queues an fsync that no acknowledgement waits for (see [`BACKGROUND_FLUSH_BYTES`]); at
    /// most one is queued at a time, and one that meets a running fsync just makes it go round
    /// again.
    fn request_background_flush(&self) {
        if self.join_running_flush() || self.inner.background_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.env.flusher.request(Arc::new(BackgroundFlush(self.inner.me.clone())));
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

    /// Reads whole batches starting with the one containing `offset`, up to `max_bytes`
    /// (at least one batch), never past `bound`.
    pub fn read(&self, offset: i64, max_bytes: usize, bound: ReadBound) -> Result<ReadResult> {
        let mut st = self.lock()?;
        if st.closed {
            return Err(Error::Closed(format!("{}-{}", self.inner.topic, self.inner.partition)));
        }
        let high_watermark = self.high_watermark();
        let (log_start_offset, log_end_offset) = (st.log_start, st.next_offset);
        let mut result = ReadResult { records: Bytes::new(), high_watermark, log_start_offset, log_end_offset };
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
        let file = self.segment_file(seg)?;
        ensure_indexes(seg, &file, interval)?;
        let (start_rel, start) =
            seg.indexes.as_ref().map_or((0, 0), |ix| ix.offset.lookup_entry((offset - seg.base_offset) as u32));
        let (start, start_base) = (u64::from(start), seg.base_offset + i64::from(start_rel));
        let (path, seg_size) = (seg.path.clone(), seg.size);
        drop(st);

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
        let mut st = self.lock()?;
        if st.closed {
            return Err(Error::Closed(format!("{}-{}", self.inner.topic, self.inner.partition)));
        }
        let interval = st.config.index_interval_bytes;
        let mut found = None;
        for seg in st.segments.values_mut() {
            let file = self.segment_file(seg)?;
            ensure_indexes(seg, &file, interval)?;
            if seg.max_timestamp >= ts {
                let start = seg.indexes.as_ref().map_or(0, |ix| u64::from(ix.time.scan_start(ts)));
                found = Some((file, seg.path.clone(), seg.size, start));
                break;
            }
        }
        drop(st);
        let Some((file, path, size, start)) = found else { return Ok(None) };
        match crate::segment::find_batch_by_time(&file, &path, start, size, ts)? {
            Some((pos, h)) if h.base_offset < limit => Ok(Some(read_bytes(&file, &path, pos, h.total_len())?)),
            _ => Ok(None),
        }
    }

    /// The open file of a segment: the active one's own handle, or a cached read handle.
    pub(crate) fn segment_file(&self, seg: &Segment) -> Result<Arc<File>> {
        match &seg.file {
            Some(f) => Ok(f.clone()),
            None => self.inner.env.fd_cache.get(&seg.path),
        }
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
        seg.max_timestamp = max_ts;
        seg.indexes = Some(ix);
        return Ok(());
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
    seg.max_timestamp = max_ts;
    seg.indexes = Some(ix);
    if let Err(e) = seg.write_indexes(false) {
        tracing::warn!(error = %e, "could not write rebuilt index files");
    }
    Ok(())
}

/// Whether an fsync of a partition is running, and whether another was asked for meanwhile
/// (by an append made during it, which then waits for the next fsync: the group commit).
#[derive(Debug, Default)]
pub(crate) struct FlushState {
    running: bool,
    again: bool,
}

impl Job for Shared {
    /// One flush of this partition (see [`FlushState`]).
    fn run(&self) {
        self.flush_queued.store(false, Ordering::Release);
        self.flush_loop();
    }
}

/// A queued background flush of one partition (see [`BACKGROUND_FLUSH_BYTES`]). A job of its
/// own, so that running it leaves `flush_queued` alone: under `interval` that flag stands for
/// a timed request still waiting in the flusher, and clearing it would let the next append
/// queue another.
struct BackgroundFlush(Weak<Shared>);

impl Job for BackgroundFlush {
    fn run(&self) {
        if let Some(inner) = self.0.upgrade() {
            inner.background_queued.store(false, Ordering::Release);
            inner.flush_loop();
        }
    }
}

impl Shared {
    /// Runs fsyncs of this partition until no append asks for another, unless one already
    /// runs (which is then told to go round again).
    fn flush_loop(&self) {
        {
            let mut f = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
            if f.running {
                // The running flush queues the partition again once its fsync is done.
                f.again = true;
                return;
            }
            f.running = true;
        }
        loop {
            self.flush_once();
            let mut f = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
            if !std::mem::take(&mut f.again) {
                f.running = false;
                return;
            }
            if self.env.flusher.has_waiting() {
                // Other partitions are waiting for a thread: go to the back of the queue
                // rather than round again here, so every partition gets its turn.
                f.running = false;
                drop(f);
                if let Some(me) = self.me.upgrade() {
                    PartitionLog { inner: me }.request_flush(None);
                }
                return;
            }
            // Nobody else is waiting: the next fsync starts on this thread at once, still
            // marked running, so appends meanwhile keep joining it.
        }
    }

    /// One group commit: snapshot what is written, fsync it without the state lock, publish.
    fn flush_once(&self) {
        let log = PartitionLog {
            inner: match self.me.upgrade() {
                Some(me) => me,
                None => return,
            },
        };
        let snapshot = {
            let Ok(mut st) = log.lock() else { return };
            if !st.dirty || st.failed {
                return;
            }
            st.dirty = false;
            let covered = std::mem::take(&mut st.appends_since_flush);
            let bytes = std::mem::take(&mut st.bytes_since_flush);
            st.flush_bytes_avg = if st.flush_bytes_avg == 0 { bytes } else { (st.flush_bytes_avg * 7 + bytes) / 8 };
            let (end, generation) = (st.next_offset, st.generation);
            let active = st.active();
            (active.file.clone(), active.path.clone(), end, generation, covered)
        };
        let (Some(file), path, end, generation, covered) = snapshot else { return };
        let started = Instant::now();
        let result = file.sync_data();
        if result.is_ok() {
            self.fsyncs_done.fetch_add(1, Ordering::Relaxed);
        }
        metrics::counter!("strom_log_flushes_total").increment(1);
        metrics::histogram!("strom_log_flush_duration_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("strom_log_appends_per_flush").record(covered as f64);
        let Ok(mut st) = log.lock() else { return };
        match result {
            // A failed log publishes nothing more: another fsync of this file (a roll, a
            // preallocation) may have heard of lost pages that this one was not told about.
            Ok(()) if st.failed => {}
            Ok(()) if st.generation == generation => log.publish_durable(end),
            Ok(()) => {} // truncated meanwhile: the snapshot says nothing about the new tail
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "fsync failed; log is now failed and refuses writes");
                metrics::counter!("strom_log_fsync_failures_total").increment(1);
                log.latch_failed(&mut st);
            }
        }
    }
}

/// Zeros for preallocation, written in pieces of this size (one short hold of the state
/// lock each). A static, so it costs no allocation and no space in the binary (`.bss`).
static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];

/// A queued zero-fill of one partition's active segment.
struct Preallocate(Weak<Shared>);

impl Job for Preallocate {
    fn run(&self) {
        if let Some(inner) = self.0.upgrade() {
            PartitionLog { inner }.preallocate();
        }
    }
}

impl PartitionLog {
    /// Decides, under the state lock after an append, whether the active segment needs more
    /// zero-filled space ahead of it, and if so marks a fill as queued (at most one at a
    /// time per partition). See [`crate::ManagerConfig::preallocate_bytes`].
    fn claim_preallocation(&self, st: &mut State) -> bool {
        let chunk = self.inner.env.preallocate_bytes;
        if chunk == 0
            || st.preallocating
            || st.appended_since_open < self.inner.env.preallocate_after_bytes
            // No fsync measured yet, or large ones (under `never` and `interval` the
            // background flushes average megabytes: those partitions are not preallocated).
            || !(1..=PREALLOCATE_MAX_FLUSH_BYTES).contains(&st.flush_bytes_avg)
        {
            return false;
        }
        let limit = st.config.segment_bytes;
        let failed_here = st.prealloc_failed_segment;
        let seg = st.active();
        if failed_here == Some(seg.base_offset)
            || seg.file_len >= limit
            || seg.file_len.saturating_sub(seg.size) >= chunk / 2
        {
            return false;
        }
        st.preallocating = true;
        true
    }

    /// Runs on the preallocator thread: writes zeros after the end of the active segment's
    /// file (up to `preallocate_bytes` more, never past `segment.bytes`), then fsyncs them so
    /// the block allocation is committed before appends reach it.
    ///
    /// The zeros are written in pieces, each under the state lock and only past what the file
    /// already holds, so an append (which writes at the logical end, also under the lock) can
    /// never be overwritten by them: appends that outrun the fill simply extend the file as
    /// they would without preallocation. The fill stops if the segment rolls, the log is
    /// truncated, closed or failed.
    fn preallocate(&self) {
        let chunk = self.inner.env.preallocate_bytes;
        let failed_base = self.zero_fill(chunk).err();
        if let Ok(mut st) = self.lock() {
            st.preallocating = false;
            if failed_base.is_some() {
                st.prealloc_failed_segment = failed_base;
            }
        }
    }

    /// The fill itself; `Err(base)` when writing zeros failed for the segment at `base`.
    fn zero_fill(&self, chunk: u64) -> std::result::Result<(), i64> {
        use std::os::unix::fs::FileExt;
        let Ok(mut st) = self.lock() else { return Ok(()) };
        if st.failed || st.closed {
            return Ok(());
        }
        let (limit, generation) = (st.config.segment_bytes, st.generation);
        let seg = st.active();
        if seg.file.is_none() {
            return Ok(());
        }
        let (base, path) = (seg.base_offset, seg.path.clone());
        // Any configured step is capped by the segment size (and cannot overflow).
        let target = seg.file_len.saturating_add(chunk).min(limit.max(seg.file_len));
        drop(st);
        // Its own open file, not the flusher's: the kernel reports a writeback error once per
        // open file, and this fsync also writes back appended data. Through a shared file, an
        // error on those pages could be reported here only, and the flusher's fsync would then
        // succeed and acknowledge the lost data. Through separate ones both fsyncs see it.
        let file = match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "preallocation skipped: cannot open the segment");
                return Err(base);
            }
        };
        let mut written = 0u64;
        loop {
            let Ok(mut st) = self.lock() else { return Ok(()) };
            if st.failed || st.closed || st.generation != generation {
                return Ok(());
            }
            let seg = st.active();
            if seg.base_offset != base {
                return Ok(()); // rolled meanwhile
            }
            let from = seg.file_len;
            if from >= target {
                break;
            }
            let n = (target - from).min(ZEROS.len() as u64) as usize;
            match file.write_at(&ZEROS[..n], from) {
                Ok(w) if w > 0 => {
                    seg.file_len = from + w as u64;
                    written += w as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => {
                    // A full disk or a file-size limit: appends will report it when they
                    // reach it; preallocation just stops for this segment.
                    let error = other.err().map_or_else(|| "write returned 0".to_string(), |e| e.to_string());
                    tracing::debug!(path = %path.display(), position = from, %error, "preallocation stopped");
                    return Err(base);
                }
            }
        }
        if written == 0 {
            return Ok(()); // appends outran the fill: nothing of ours to make durable
        }
        if let Err(e) = file.sync_data() {
            // This fsync also wrote back appended data, and may have been told first that some
            // of it was lost (the flusher's own fsync hears it too, see above): treat it as a
            // failed data fsync.
            tracing::error!(path = %path.display(), error = %e, "fsync of preallocated space failed; log is now failed and refuses writes");
            metrics::counter!("strom_log_fsync_failures_total").increment(1);
            if let Ok(mut st) = self.lock() {
                self.latch_failed(&mut st);
            }
            return Ok(());
        }
        metrics::counter!("strom_log_preallocated_bytes_total").increment(written);
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogManager, ManagerConfig};

    /// Group commits of more than `PREALLOCATE_MAX_FLUSH_BYTES` are not preallocated (the
    /// zeros would double the bytes written where bandwidth, not the journal, is the cost);
    /// small ones are.
    #[test]
    fn preallocation_follows_the_size_of_group_commits() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for (value_len, expect_fill) in [(150 * 1024, false), (1024, true)] {
            let dir = tempfile::tempdir().unwrap();
            let mut m = ManagerConfig::new(dir.path());
            m.preallocate_after_bytes = 0;
            m.preallocate_bytes = 1024 * 1024;
            let mgr = LogManager::open(m).unwrap();
            let log =
                mgr.create("t", 0, LogConfig { flush_policy: FlushPolicy::Always, ..LogConfig::default() }).unwrap();
            let value = vec![7u8; value_len];
            let mut claimed = false;
            for _ in 0..20 {
                let info = log.append(crate::build_batch(0, None, &[&value]), 0).unwrap();
                // Whether this append queued a fill is decided under the lock, in `append`.
                claimed |= log.lock().unwrap().preallocating;
                rt.block_on(log.wait_durable(info.last_offset)).unwrap();
            }
            let mut st = log.lock().unwrap();
            let active = st.active();
            let filled = active.file_len > active.size;
            assert_eq!(
                claimed || filled,
                expect_fill,
                "{value_len}-byte appends (average {} bytes per fsync)",
                st.flush_bytes_avg
            );
            drop(st);
            mgr.shutdown().unwrap();
        }
    }
}
