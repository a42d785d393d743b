//! The per-partition fsync: the group commit of a partition on the flusher pool (flush
//! policy `always` without the node journal, timed flushes of `interval`) and the background
//! flushes of `interval`/`never`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{PartitionLog, Shared};
use crate::flusher::Job;

impl PartitionLog {
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

    pub(crate) fn request_flush(&self, after: Option<Duration>) {
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
    pub(super) fn request_background_flush(&self) {
        if self.join_running_flush() || self.inner.background_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.env.flusher.request(Arc::new(BackgroundFlush(self.inner.me.clone())));
    }
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
    pub(crate) fn flush_once(&self) {
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
