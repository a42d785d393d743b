//! The [`Committer`]: one thread per data directory that turns everything appended since its
//! last round into one durability round (see the module docs of `journal`).

use std::collections::{HashMap, HashSet};
use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;

use super::checkpoint::Checkpointer;
use super::files::Writer;
use super::format::{self, RECORD_FIXED_LEN, RecordBody};
use crate::batch::REWRITTEN_PREFIX_LEN;
use crate::error::{Error, Result};
use crate::partition::{PartitionLog, Shared as Partition};

/// Rounds of at least this many bytes fsync their partitions' segments instead of going
/// through the journal (measured in docs/PERFORMANCE.md: 16 KiB messages to 64 partitions).
const DIRECT_ROUND_BYTES: u64 = 1024 * 1024;

/// One append waiting for a durability round: its stored bytes, by reference (the 16-byte
/// prefix the log rewrote, then the batch as received from its 16th byte on).
pub(crate) struct Pending {
    pub(crate) log: Arc<Partition>,
    /// The partition's truncation generation when it appended.
    pub(crate) generation: u64,
    /// The offset after the append's last record: what becomes durable with it.
    pub(crate) end: i64,
    pub(crate) batches: Vec<([u8; REWRITTEN_PREFIX_LEN], Bytes)>,
}

impl Pending {
    fn payload_len(&self) -> usize {
        self.batches.iter().map(|(_, b)| b.len()).sum()
    }
}

/// A truncation or deletion waiting to be journaled; `done` hears when it is durable.
struct Control {
    topic: String,
    partition: i32,
    body: RecordBody,
    done: SyncSender<Result<()>>,
}

#[derive(Default)]
struct Queue {
    appends: Vec<Pending>,
    controls: Vec<Control>,
    /// The thread waits for work (so a submission must wake it).
    sleeping: bool,
    /// Callers appending several partitions as one request (see [`Committer::hold`]): a
    /// sleeping thread is woken when the last of them is done, so their appends make one
    /// round rather than a first one with a single partition.
    holds: usize,
    running: bool,
    stop: bool,
}

struct Inner {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Rounds made durable by one fdatasync of the journal, and rounds that fell back to
    /// fsyncing their partitions' segments after the journal failed.
    journal_rounds: AtomicU64,
    fallback_rounds: AtomicU64,
    /// Rounds large enough to fsync their partitions' segments directly.
    direct_rounds: AtomicU64,
    /// Batches the replay at startup put back into segments.
    replayed_batches: AtomicU64,
    /// The jsn the next record gets, as of the last round (for the final checkpoint).
    next_jsn: AtomicU64,
}

fn lock(q: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // Queue updates are single pushes and swaps; a poisoned lock leaves nothing half-done.
    q.lock().unwrap_or_else(|p| p.into_inner())
}

/// Handle to the round thread. Submissions made before [`Committer::start`] wait for it.
pub(crate) struct Committer {
    inner: Arc<Inner>,
    checkpointer: Arc<Checkpointer>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").field("next_jsn", &self.inner.next_jsn.load(Ordering::Relaxed)).finish()
    }
}

impl Committer {
    /// A committer whose thread is not started yet.
    pub(crate) fn new(checkpointer: Arc<Checkpointer>) -> Committer {
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            journal_rounds: AtomicU64::new(0),
            fallback_rounds: AtomicU64::new(0),
            direct_rounds: AtomicU64::new(0),
            replayed_batches: AtomicU64::new(0),
            next_jsn: AtomicU64::new(0),
        });
        Committer { inner, checkpointer, thread: Mutex::new(None) }
    }

    /// Starts the round thread, writing through `writer`, after a recovery that replayed
    /// `replayed_batches`.
    pub(crate) fn start(&self, writer: Writer, replayed_batches: u64) -> std::io::Result<()> {
        self.inner.replayed_batches.store(replayed_batches, Ordering::Relaxed);
        self.inner.next_jsn.store(writer.next_jsn(), Ordering::Release);
        lock(&self.inner.queue).running = true;
        let inner = self.inner.clone();
        let ck = self.checkpointer.clone();
        let t = std::thread::Builder::new().name("strom-commit".into()).spawn(move || run(&inner, writer, &ck))?;
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
        Ok(())
    }

    /// Queues an append for the next round. Called under the partition's lock.
    pub(crate) fn submit(&self, p: Pending) {
        let mut q = lock(&self.inner.queue);
        if q.stop {
            // Shut down: the log's close fsyncs it and completes its waiters.
            return;
        }
        q.appends.push(p);
        if q.holds == 0 && std::mem::take(&mut q.sleeping) {
            drop(q);
            self.inner.wake.notify_one();
        }
    }

    /// Defers waking the round thread until the returned guard is dropped: a produce request
    /// appends to each of its partitions under one hold, so an idle round thread takes them
    /// all in one round. A busy thread is not held back: it takes whatever is queued when it
    /// finishes its round.
    pub(crate) fn hold(self: &Arc<Self>) -> CommitHold {
        lock(&self.inner.queue).holds += 1;
        CommitHold(self.clone())
    }

    /// Journals a truncation or deletion of a partition and waits until it is durable.
    /// Without a running round thread (recovery, or after shutdown) there is nothing a
    /// replay could put back, so this returns at once.
    pub(crate) fn control(&self, topic: &str, partition: i32, body: RecordBody) -> Result<()> {
        let (done, heard) = sync_channel(1);
        {
            let mut q = lock(&self.inner.queue);
            if !q.running || q.stop {
                return Ok(());
            }
            q.controls.push(Control { topic: topic.to_string(), partition, body, done });
            if std::mem::take(&mut q.sleeping) {
                self.inner.wake.notify_one();
            }
        }
        heard.recv().unwrap_or_else(|_| Err(Error::Closed("the journal's round thread has stopped".into())))
    }

    /// Runs the rounds still queued, stops the thread and the checkpointer, and returns the
    /// jsn the next record would have had: a checkpoint there covers everything once every
    /// log is closed (fsynced).
    pub(crate) fn stop(&self) -> u64 {
        {
            let mut q = lock(&self.inner.queue);
            q.stop = true;
            q.sleeping = false;
        }
        self.inner.wake.notify_all();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if t.join().is_err() {
                tracing::error!("journal round thread panicked");
            }
        }
        self.checkpointer.stop();
        self.inner.next_jsn.load(Ordering::Acquire)
    }

    /// Whether a checkpoint failed, so the journal keeps every file until a restart.
    pub(crate) fn is_pinned(&self) -> bool {
        self.checkpointer.is_pinned()
    }

    /// What the journal has done so far.
    pub(crate) fn stats(&self) -> crate::JournalStats {
        crate::JournalStats {
            journal_rounds: self.inner.journal_rounds.load(Ordering::Relaxed),
            fallback_rounds: self.inner.fallback_rounds.load(Ordering::Relaxed),
            direct_rounds: self.inner.direct_rounds.load(Ordering::Relaxed),
            checkpoints: self.checkpointer.completed_count(),
            replayed_batches: self.inner.replayed_batches.load(Ordering::Relaxed),
            pinned: self.is_pinned(),
        }
    }
}

/// See [`Committer::hold`].
pub struct CommitHold(Arc<Committer>);

impl std::fmt::Debug for CommitHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitHold")
    }
}

impl Drop for CommitHold {
    fn drop(&mut self) {
        let mut q = lock(&self.0.inner.queue);
        q.holds -= 1;
        let wake = q.holds == 0 && !q.appends.is_empty() && std::mem::take(&mut q.sleeping);
        drop(q);
        if wake {
            self.0.inner.wake.notify_one();
        }
    }
}

impl Drop for Committer {
    /// Without [`Committer::stop`] (a manager dropped without shutdown) the thread still ends
    /// after the rounds queued. No join: the last reference may be dropped on that thread.
    fn drop(&mut self) {
        lock(&self.inner.queue).stop = true;
        self.inner.wake.notify_all();
        self.checkpointer.request_stop();
    }
}

/// The round thread.
fn run(inner: &Inner, mut writer: Writer, ck: &Checkpointer) {
    // Partitions with journaled records that no checkpoint covers yet, by name: a deletion
    // voids a partition's records, so it takes the partition out of the set by name, and the
    // partition created again under it comes back in as itself.
    let mut since_checkpoint: HashMap<(String, i32), Weak<Partition>> = HashMap::new();
    let mut want_checkpoint = false;
    loop {
        let (appends, controls) = {
            let mut q = lock(&inner.queue);
            loop {
                if !q.appends.is_empty() || !q.controls.is_empty() {
                    break (std::mem::take(&mut q.appends), std::mem::take(&mut q.controls));
                }
                if q.stop {
                    return;
                }
                q.sleeping = true;
                q = inner.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let switched = round(inner, &mut writer, appends, controls, &mut since_checkpoint);
        want_checkpoint |= switched;
        if let Some(done) = ck.take_completed() {
            if let Err(e) = writer.release_below(done) {
                tracing::warn!(error = %e, "journal: could not free files below a checkpoint");
            }
        }
        if want_checkpoint && ck.is_idle() {
            // Every record below this jsn belongs to a partition in the set handed over: its
            // bytes were in the segment before the record was written.
            let covered = since_checkpoint.drain().map(|(_, w)| w).collect();
            want_checkpoint = !ck.try_start(writer.next_jsn(), covered);
        }
        inner.next_jsn.store(writer.next_jsn(), Ordering::Release);
    }
}

/// One durability round; returns whether the journal switched files (a checkpoint is due).
fn round(
    inner: &Inner,
    writer: &mut Writer,
    appends: Vec<Pending>,
    controls: Vec<Control>,
    since_checkpoint: &mut HashMap<(String, i32), Weak<Partition>>,
) -> bool {
    let started = Instant::now();
    // Even a round of one partition goes through the journal: an fsync of a segment that
    // grew commits the filesystem's metadata transaction, and on ext4 (data=ordered) that
    // writes back every other segment's newly allocated data with it, while the journal's
    // own fdatasync over allocated blocks is a data flush only. Measured: one partition
    // 156K msg/s direct and 163K through the journal, 16 partitions 86K and 121K
    // (docs/PERFORMANCE.md).
    let partitions: HashSet<usize> = appends.iter().map(|p| Arc::as_ptr(&p.log) as usize).collect();
    metrics::histogram!("strom_log_partitions_per_flush").record(partitions.len() as f64);
    let records = appends.len() + controls.len();
    let len: u64 = appends
        .iter()
        .map(|p| RECORD_FIXED_LEN + p.log.topic.len() + p.payload_len())
        .chain(controls.iter().map(|c| RECORD_FIXED_LEN + c.topic.len() + c.body.payload_len()))
        .map(|n| n as u64)
        .sum();
    if controls.is_empty() && len >= DIRECT_ROUND_BYTES {
        // A large round is bandwidth, not flushes: writing it twice (journal, then segments)
        // would halve what the disk can take. Its partitions go to the flusher pool, which
        // fsyncs each segment on its own (several at once, each publishing when done), as
        // without the journal; this thread goes on with the next round.
        let mut seen = HashSet::with_capacity(partitions.len());
        for p in &appends {
            if seen.insert(Arc::as_ptr(&p.log) as usize) {
                PartitionLog { inner: p.log.clone() }.request_flush(None);
            }
        }
        inner.direct_rounds.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    let switched = match writer.prepare(len) {
        Ok(s) => s.is_some(),
        Err(e) => {
            tracing::error!(error = %e, "journal: cannot open a file for the round; fsyncing its partitions directly");
            inner.fallback_rounds.fetch_add(1, Ordering::Relaxed);
            fall_back(&appends, controls, writer.dir());
            return false;
        }
    };
    let first = writer.take_jsns(records as u64);
    let mut heads = Vec::with_capacity(appends.len());
    for (i, p) in appends.iter().enumerate() {
        let body = RecordBody::Batches(Bytes::new());
        let mut head = format::encode_head(first + i as u64, &p.log.topic, p.log.partition, &body, p.payload_len());
        let mut crc = crc32c::crc32c(&head[8..]);
        for (prefix, batch) in &p.batches {
            crc = crc32c::crc32c_append(crc, prefix);
            crc = crc32c::crc32c_append(crc, &batch[REWRITTEN_PREFIX_LEN..]);
        }
        format::finish_crc(&mut head, crc);
        heads.push(head);
    }
    let control_records: Vec<Vec<u8>> = controls
        .iter()
        .enumerate()
        .map(|(i, c)| format::encode_record(first + (appends.len() + i) as u64, &c.topic, c.partition, &c.body))
        .collect();
    let mut slices = Vec::with_capacity(appends.len() * 3 + controls.len());
    for (head, p) in heads.iter().zip(&appends) {
        slices.push(IoSlice::new(head));
        for (prefix, batch) in &p.batches {
            slices.push(IoSlice::new(prefix));
            slices.push(IoSlice::new(&batch[REWRITTEN_PREFIX_LEN..]));
        }
    }
    slices.extend(control_records.iter().map(|r| IoSlice::new(r)));
    let result = writer.write(&mut slices, len).and_then(|()| {
        let synced = Instant::now();
        let r = writer.sync();
        metrics::histogram!("strom_log_flush_duration_seconds").record(synced.elapsed().as_secs_f64());
        r
    });
    metrics::counter!("strom_log_flushes_total").increment(1);
    if let Err(e) = result {
        tracing::error!(error = %e, "journal round failed; fsyncing its partitions directly");
        metrics::counter!("strom_log_journal_failures_total").increment(1);
        writer.abandon_active();
        inner.fallback_rounds.fetch_add(1, Ordering::Relaxed);
        fall_back(&appends, controls, writer.dir());
        return false;
    }
    metrics::counter!("strom_log_journal_rounds_total").increment(1);
    inner.journal_rounds.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("strom_log_journal_bytes_total").increment(len);
    metrics::histogram!("strom_log_appends_per_flush").record(appends.len() as f64);
    // Publish each partition's last append of the round (its earlier ones end below it).
    let mut last: HashMap<usize, &Pending> = HashMap::with_capacity(partitions.len());
    for p in &appends {
        last.insert(Arc::as_ptr(&p.log) as usize, p);
    }
    for p in last.into_values() {
        since_checkpoint.insert((p.log.topic.clone(), p.log.partition), Arc::downgrade(&p.log));
        PartitionLog { inner: p.log.clone() }.publish_journaled(p.generation, p.end);
    }
    for c in controls {
        if c.body == RecordBody::Delete {
            // Its records are void now; its segment needs no checkpoint.
            since_checkpoint.remove(&(c.topic.clone(), c.partition));
        }
        let _ = c.done.send(Ok(()));
    }
    metrics::histogram!("strom_log_round_duration_seconds").record(started.elapsed().as_secs_f64());
    switched
}

/// A round the journal could not make durable: each partition fsyncs its own segment (what
/// that covers is acknowledged; a failed fsync latches the partition), and the truncations
/// and deletions waiting in it fail.
fn fall_back(appends: &[Pending], controls: Vec<Control>, journal_dir: &std::path::Path) {
    let mut seen = HashSet::new();
    for p in appends {
        if seen.insert(Arc::as_ptr(&p.log) as usize) {
            p.log.flush_once();
        }
    }
    for c in controls {
        let _ = c.done.send(Err(Error::StorageFailed { path: journal_dir.to_path_buf() }));
    }
}
