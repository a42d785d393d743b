//! [`PartitionLog`]: one partition's write-ahead log. The module is split by job:
//! - `state`: [`State`], the mutable state behind the partition's mutex, and its invariants;
//! - `append`: validating and writing batches, rolling segments;
//! - `read`: reads and timestamp lookups;
//! - `flush`: the per-partition fsync (group commit without the journal, and the background
//!   flushes of `interval`/`never`);
//! - `prealloc`: zero-filling space ahead of a busy active segment.
//!
//! Truncation, retention and closing live in `maintenance.rs`; opening and recovery in
//! `recovery.rs`.
//!
//! Concurrency: all mutable state sits in one `Mutex<State>` held only for short,
//! non-blocking sections (the append's `writev` into the page cache, index updates). Batch
//! validation (CRC) runs before taking the lock; fsyncs run on the flusher thread without
//! the lock; reads take a snapshot (file handle, size, start position) under the lock and
//! do their `pread`s after releasing it.

mod append;
mod flush;
mod prealloc;
mod read;
mod state;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;

use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::fd_cache::FdCache;
use crate::flusher::Flusher;
use crate::segment::Segment;

pub(crate) use append::seek_to;
pub(crate) use flush::FlushState;
pub(crate) use read::{ensure_indexes, needs_unlocked_load};
pub(crate) use state::State;

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
    /// The node journal's round thread: flush policy `always` hands its appends to it.
    /// `None` when the journal is off (each partition then fsyncs its own segment).
    pub(crate) committer: Option<Arc<crate::journal::Committer>>,
}

/// Durability progress published to waiters ([`PartitionLog::watch_durable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    /// Every offset below this is acknowledged-able under the flush policy (fsynced, for
    /// `always`).
    pub end: i64,
    /// The log latched into the failed state.
    pub failed: bool,
}

/// Shared core of a partition log.
pub(crate) struct Shared {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) dir: PathBuf,
    pub(crate) state: Mutex<State>,
    pub(crate) hw: watch::Sender<i64>,
    pub(crate) durable: watch::Sender<Durable>,
    /// The log end, for followers' fetches long-polling at the leader.
    pub(crate) end: watch::Sender<i64>,
    /// The high watermark is set by the partition's replication (the lowest durable end
    /// over the in-sync replicas), not by this log's own durability.
    pub(crate) replicated: AtomicBool,
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
            end: watch::Sender::new(leo),
            replicated: AtomicBool::new(false),
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

    /// Every offset below this is durable under the flush policy: what this node may report
    /// to a leader as replicated, and what a leader counts for itself.
    pub fn durable_end(&self) -> i64 {
        self.inner.durable.borrow().end
    }

    /// A receiver that changes whenever the durable end moves or the log fails.
    pub fn watch_durable(&self) -> watch::Receiver<Durable> {
        self.inner.durable.subscribe()
    }

    /// A receiver that changes whenever the log end moves (appends, truncation, close):
    /// followers' fetches long-poll on it, since they read past the high watermark.
    pub fn watch_log_end(&self) -> watch::Receiver<i64> {
        self.inner.end.subscribe()
    }

    /// Whether the high watermark is set from outside ([`PartitionLog::set_high_watermark`],
    /// by replication) instead of following this log's durable end. Turning it off moves the
    /// high watermark up to the durable end at once.
    pub fn set_replicated(&self, replicated: bool) {
        let was = self.inner.replicated.swap(replicated, Ordering::AcqRel);
        if was && !replicated && self.inner.env.auto_high_watermark {
            self.set_high_watermark(self.durable_end());
        }
    }

    /// Whether [`PartitionLog::set_replicated`] is on.
    pub fn is_replicated(&self) -> bool {
        self.inner.replicated.load(Ordering::Acquire)
    }

    /// Puts the high watermark back to `hw` (clamped to the log), lower or not. Only for a
    /// replicated partition that no consumer has read yet: a log opened after a restart has
    /// its high watermark at the log end, which for a replicated partition may be beyond
    /// what the in-sync replicas hold; its leader starts it low and lets replication raise it.
    pub fn reset_high_watermark(&self, hw: i64) {
        let hw = hw.clamp(self.log_start_offset(), self.log_end_offset());
        self.inner.hw.send_replace(hw);
    }

    /// Whether the log was closed (deleted, or the manager shut down): it takes no appends
    /// and answers no reads.
    pub fn is_closed(&self) -> bool {
        self.lock().map_or(true, |st| st.closed)
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

    /// Checks the log's invariants: those of its state (see `State::validate`) and
    /// `log_start <= high watermark <= log end`, with what is published as durable never
    /// beyond the log end. For tests, which call it after every step; `Err` says what broke.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let st = self.lock().map_err(|e| e.to_string())?;
        st.validate()?;
        let (hw, durable) = (self.high_watermark(), self.inner.durable.borrow().end);
        if hw < st.log_start || hw > st.next_offset {
            return Err(format!("high watermark {hw} outside [{}, {}]", st.log_start, st.next_offset));
        }
        if durable > st.next_offset {
            return Err(format!("durable end {durable} beyond the log end {}", st.next_offset));
        }
        if self.log_end_offset() != st.next_offset || self.log_start_offset() != st.log_start {
            return Err("the lock-free mirrors of log start/end disagree with the state".into());
        }
        Ok(())
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, State>> {
        // A panic while the state was locked may have left it half-updated; refuse to go on
        // with this log rather than guess (other partitions are unaffected).
        self.inner.state.lock().map_err(|_| Error::StorageFailed { path: self.inner.dir.clone() })
    }

    /// Resolves once `last_offset` is acknowledged-able under the flush policy: after the
    /// group-commit fsync for `always`, at once for `interval`/`never`.
    /// Fails with [`Error::StorageFailed`] if the log latched into the failed state first.
    pub async fn wait_durable(&self, last_offset: i64) -> Result<()> {
        let mut rx = self.inner.durable.subscribe();
        let d = *rx.wait_for(|d| d.failed || d.end > last_offset).await.map_err(|_| self.closed_error())?;
        if d.end > last_offset { Ok(()) } else { Err(Error::StorageFailed { path: self.inner.dir.clone() }) }
    }

    /// The error for a log that was closed or deleted.
    pub(crate) fn closed_error(&self) -> Error {
        Error::Closed(format!("{}-{}", self.inner.topic, self.inner.partition))
    }

    /// After a journal round covering appends of this log made in truncation `generation`
    /// became durable: publishes `end` as durable unless the log was truncated or failed
    /// meanwhile (a truncation publishes what it kept itself).
    pub(crate) fn publish_journaled(&self, generation: u64, end: i64) {
        if let Ok(st) = self.lock() {
            if !st.failed && st.generation == generation {
                self.publish_durable(end);
            }
        }
    }

    /// Fsyncs the active segment for a journal checkpoint: afterwards every byte appended
    /// before the call is durable in the segments (rolled segments were fsynced when they
    /// rolled). A closed log was fsynced by its close, or deleted. A failed fsync latches
    /// the log, as any other.
    pub(crate) fn sync_for_checkpoint(&self) -> Result<()> {
        self.sync_active(false)
    }

    /// Fsyncs the active segment (see [`PartitionLog::sync_for_checkpoint`]); a closed log is
    /// skipped unless `even_closed` (a deletion closes the log first, then makes it durable).
    pub(crate) fn sync_active(&self, even_closed: bool) -> Result<()> {
        let (file, path) = {
            let mut st = self.lock()?;
            if st.closed && !even_closed {
                return Ok(());
            }
            if st.failed {
                return Err(Error::StorageFailed { path: self.inner.dir.clone() });
            }
            let active = st.active();
            match &active.file {
                Some(f) => (f.clone(), active.path.clone()),
                None => return Err(Error::StorageFailed { path: active.path.clone() }),
            }
        };
        if let Err(e) = file.sync_data() {
            tracing::error!(path = %path.display(), error = %e, "fsync failed at a journal checkpoint; log is now failed");
            metrics::counter!("strom_log_fsync_failures_total").increment(1);
            if let Ok(mut st) = self.lock() {
                self.latch_failed(&mut st);
            }
            return Err(Error::io(path, e));
        }
        Ok(())
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
        if self.inner.env.auto_high_watermark && !self.inner.replicated.load(Ordering::Acquire) {
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

    /// The open file of a segment: the active one's own handle, or a cached read handle.
    pub(crate) fn segment_file(&self, seg: &Segment) -> Result<Arc<File>> {
        match &seg.file {
            Some(f) => Ok(f.clone()),
            None => self.inner.env.fd_cache.get(&seg.path),
        }
    }
}
