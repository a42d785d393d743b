//! The checkpoint thread: fsyncs the segments of every partition journaled since the last
//! checkpoint, then records the new checkpoint, so the journal files below it can be reused.
//! It runs beside the round thread, so acknowledgements never wait for these fsyncs.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use super::files::write_checkpoint;
use crate::partition::{PartitionLog, Shared as Partition};

#[derive(Default)]
struct State {
    /// A checkpoint to take: its jsn, and the partitions journaled below it.
    request: Option<(u64, Vec<Weak<Partition>>)>,
    busy: bool,
    /// The last checkpoint written and not yet reported to the round thread.
    completed: Option<u64>,
    /// A partition's fsync failed at a checkpoint: its acknowledged records may exist only in
    /// the journal, so no checkpoint is written (and no journal file freed) until a restart.
    pinned: bool,
    stop: bool,
    /// Checkpoints written since the start.
    written: u64,
}

/// Handle to the checkpoint thread.
pub(crate) struct Checkpointer {
    dir: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Checkpointer {
    /// Starts the thread; checkpoints are written to `<journal dir>/checkpoint`.
    pub(crate) fn start(dir: PathBuf) -> std::io::Result<Arc<Checkpointer>> {
        let ck = Arc::new(Checkpointer {
            dir,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            thread: Mutex::new(None),
        });
        let weak = Arc::downgrade(&ck);
        let t = std::thread::Builder::new().name("strom-checkpoint".into()).spawn(move || run(&weak))?;
        *ck.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
        Ok(ck)
    }

    /// Whether a checkpoint could start now (none running, not pinned, not stopping). Only
    /// the round thread starts checkpoints, so this stays true until it does.
    pub(crate) fn is_idle(&self) -> bool {
        let st = lock(&self.state);
        !(st.busy || st.pinned || st.stop)
    }

    /// Starts a checkpoint at `jsn` covering `partitions`, unless one is running (or the
    /// journal is pinned or stopping); returns whether it started. A checkpoint that does not
    /// start drops `partitions`: ask [`Checkpointer::is_idle`] first.
    pub(crate) fn try_start(&self, jsn: u64, partitions: Vec<Weak<Partition>>) -> bool {
        let mut st = lock(&self.state);
        if st.busy || st.pinned || st.stop {
            return false;
        }
        st.busy = true;
        st.request = Some((jsn, partitions));
        drop(st);
        self.wake.notify_all();
        true
    }

    /// The jsn of a checkpoint completed since the last call.
    pub(crate) fn take_completed(&self) -> Option<u64> {
        lock(&self.state).completed.take()
    }

    /// Checkpoints written since the start.
    pub(crate) fn completed_count(&self) -> u64 {
        lock(&self.state).written
    }

    /// Whether a failed fsync pinned the journal.
    pub(crate) fn is_pinned(&self) -> bool {
        lock(&self.state).pinned
    }

    /// Asks the thread to end after a running checkpoint, without waiting for it.
    pub(crate) fn request_stop(&self) {
        lock(&self.state).stop = true;
        self.wake.notify_all();
    }

    /// Lets a running checkpoint finish, then stops the thread.
    pub(crate) fn stop(&self) {
        self.request_stop();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if t.join().is_err() {
                tracing::error!("journal checkpoint thread panicked");
            }
        }
    }
}

fn run(weak: &Weak<Checkpointer>) {
    loop {
        let Some(ck) = weak.upgrade() else { return };
        let (jsn, partitions) = {
            let mut st = lock(&ck.state);
            loop {
                if let Some(r) = st.request.take() {
                    break r;
                }
                if st.stop {
                    return;
                }
                st = ck.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let started = Instant::now();
        let mut failed = 0usize;
        let mut synced = 0usize;
        let mut gone = 0usize;
        for p in partitions {
            // Deleted partitions left the set when their deletion was journaled, so a handle
            // that is gone means the logs were dropped without a shutdown: this checkpoint
            // cannot vouch for what they held and is not written.
            let Some(inner) = p.upgrade() else {
                gone += 1;
                continue;
            };
            let log = PartitionLog { inner };
            match log.sync_for_checkpoint() {
                Ok(()) => synced += 1,
                Err(e) => {
                    failed += 1;
                    tracing::error!(topic = log.topic(), partition = log.partition(), error = %e, "journal checkpoint: segment fsync failed");
                }
            }
        }
        let written = if failed == 0 && gone == 0 {
            write_checkpoint(&ck.dir, jsn)
                .map_err(|e| tracing::error!(error = %e, "journal checkpoint: cannot write the checkpoint file"))
                .is_ok()
        } else {
            false
        };
        let mut st = lock(&ck.state);
        st.busy = false;
        if written {
            st.completed = Some(jsn);
            st.written += 1;
            metrics::counter!("strom_log_journal_checkpoints_total").increment(1);
            metrics::histogram!("strom_log_journal_checkpoint_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            tracing::debug!(
                jsn,
                partitions = synced,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "journal checkpoint"
            );
        } else if failed > 0 {
            st.pinned = true;
            tracing::error!(failed, "journal pinned: no journal file is freed until a restart replays it");
        }
    }
}
