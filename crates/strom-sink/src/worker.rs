//! A flush worker: owns a share of the partitions (the consumer sends every record of a
//! partition to the same worker, so that partition's batches commit in order), buffers their
//! records, and writes them in batches of up to `batch_size` rows when the oldest buffered
//! record is `flush_interval` old or a full batch is waiting.
//!
//! A transient database error keeps the batch and retries it on a new connection with
//! backoff; meanwhile the worker reads no new records, so the budget fills and the consumer
//! pauses. A conflict (another sink wrote a partition) drops that partition's records and asks
//! the consumer to re-read its position from the database and seek there.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::SinkError;
use crate::budget::Budget;
use crate::config::SinkConfig;
use crate::db::{self, Connection, DbError, Outcome, PartitionBatch, Row};
use crate::mapping::{TableSchema, map_record};
use crate::metrics as m;
use crate::record::Record;
use crate::retry::Backoff;

/// A partition: topic and partition number.
pub type PartitionKey = (Arc<str>, i32);

/// What the consumer tells a worker, in order.
#[derive(Debug)]
pub enum WorkerMsg {
    /// The partition (re)starts at `position`, read from the database (`None`: no row yet);
    /// anything buffered for it is dropped.
    Assign {
        /// The partition.
        key: PartitionKey,
        /// The database's position.
        position: Option<i64>,
        /// Its route's table.
        schema: Arc<TableSchema>,
    },
    /// A consumed record of an assigned partition.
    Record(Record),
    /// Flush these partitions, then forget them; `done` when finished.
    Revoke {
        /// The partitions.
        keys: Vec<PartitionKey>,
        /// Signalled when they are flushed (or the flush failed).
        done: Sender<()>,
    },
    /// Flush everything; `done` gets the number of records left unwritten (0 on success).
    Drain {
        /// Signalled with the records left.
        done: Sender<usize>,
    },
}

/// What a worker tells the consumer.
#[derive(Debug)]
pub enum WorkerEvent {
    /// The database now holds `next` as the partition's position.
    Committed {
        /// The partition.
        key: PartitionKey,
        /// Next offset to write.
        next: i64,
        /// Rows written for it in this batch.
        rows: usize,
    },
    /// Another sink wrote the partition: its position must be read again.
    Conflict(PartitionKey),
    /// The worker stopped on an error the sink cannot continue past.
    Fatal(SinkError),
}

struct Part {
    position: Option<i64>,
    schema: Arc<TableSchema>,
    rows: VecDeque<(Row, usize)>,
    /// The lowest offset accepted next: a redelivered record below it is already buffered or
    /// written.
    next: Option<i64>,
    oldest: Option<Instant>,
    /// False from a conflict until the consumer re-assigns the partition.
    active: bool,
}

/// A flush worker's state; run it with [`Worker::run`] on its own thread.
pub struct Worker {
    config: Arc<SinkConfig>,
    rx: Receiver<WorkerMsg>,
    events: Sender<WorkerEvent>,
    budget: Arc<Budget>,
    abandon: Arc<AtomicBool>,
    conn: Option<Box<dyn Connection>>,
    parts: HashMap<PartitionKey, Part>,
    buffered: usize,
}

impl Worker {
    /// A worker reading `rx`; `abandon` makes it stop retrying (shutdown past its deadline).
    pub fn new(
        config: Arc<SinkConfig>,
        rx: Receiver<WorkerMsg>,
        events: Sender<WorkerEvent>,
        budget: Arc<Budget>,
        abandon: Arc<AtomicBool>,
    ) -> Worker {
        Worker { config, rx, events, budget, abandon, conn: None, parts: HashMap::new(), buffered: 0 }
    }

    /// Runs until the consumer hangs up or a fatal error (reported as [`WorkerEvent::Fatal`]).
    pub fn run(mut self) {
        if let Err(e) = self.serve() {
            let _ = self.events.send(WorkerEvent::Fatal(e));
        }
    }

    fn serve(&mut self) -> Result<(), SinkError> {
        loop {
            let timeout =
                self.next_due().map_or(Duration::from_millis(200), |due| due.saturating_duration_since(Instant::now()));
            match self.rx.recv_timeout(timeout) {
                Ok(msg) => self.handle(msg)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if self.buffered >= self.config.batch_size {
                self.flush(None, false)?;
            }
            if self.next_due().is_some_and(|due| due <= Instant::now()) {
                self.flush(None, true)?;
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.parts.values().filter_map(|p| p.oldest).min().map(|t| t + self.config.flush_interval)
    }

    fn handle(&mut self, msg: WorkerMsg) -> Result<(), SinkError> {
        match msg {
            WorkerMsg::Assign { key, position, schema } => {
                self.forget(&key);
                self.parts.insert(
                    key,
                    Part { position, schema, rows: VecDeque::new(), next: position, oldest: None, active: true },
                );
            }
            WorkerMsg::Record(record) => {
                let size = record.size();
                let key = (record.topic.clone(), record.partition);
                let part = match self.parts.get_mut(&key) {
                    // Already written (a redelivery after a seek), or a partition in conflict
                    // or no longer ours: drop it.
                    Some(p) if p.active && p.next.is_none_or(|next| record.offset >= next) => p,
                    _ => {
                        self.budget.release(1, size);
                        return Ok(());
                    }
                };
                part.next = Some(record.offset + 1);
                let mapped = map_record(&part.schema, &record);
                part.rows.push_back((Row { record, mapped }, size));
                part.oldest.get_or_insert_with(Instant::now);
                self.buffered += 1;
            }
            WorkerMsg::Revoke { keys, done } => {
                let result = self.flush(Some(&keys), true);
                for key in &keys {
                    self.forget(key);
                    self.parts.remove(key);
                }
                let _ = done.send(());
                result?;
            }
            WorkerMsg::Drain { done } => {
                let result = self.flush(None, true);
                let _ = done.send(self.buffered);
                result?;
            }
        }
        Ok(())
    }

    /// Drops what is buffered for `key`.
    fn forget(&mut self, key: &PartitionKey) {
        if let Some(p) = self.parts.get_mut(key) {
            let bytes: usize = p.rows.iter().map(|(_, s)| s).sum();
            self.budget.release(p.rows.len(), bytes);
            self.buffered -= p.rows.len();
            p.rows.clear();
            p.oldest = None;
            p.next = p.position;
        }
    }

    /// Writes buffered rows of `only` (or every partition) in batches of `batch_size`: all of
    /// them if `all`, else only full batches.
    fn flush(&mut self, only: Option<&[PartitionKey]>, all: bool) -> Result<(), SinkError> {
        loop {
            let eligible: usize = self
                .parts
                .iter()
                .filter(|(k, p)| p.active && only.is_none_or(|o| o.contains(k)))
                .map(|(_, p)| p.rows.len())
                .sum();
            if eligible == 0 || (!all && eligible < self.config.batch_size) {
                return Ok(());
            }
            let batch = self.take_batch(only);
            self.commit(batch)?;
        }
    }

    fn take_batch(&mut self, only: Option<&[PartitionKey]>) -> Vec<(PartitionBatch, usize)> {
        let mut room = self.config.batch_size;
        let mut batch = Vec::new();
        for (key, p) in self.parts.iter_mut() {
            if room == 0 {
                break;
            }
            if !p.active || p.rows.is_empty() || only.is_some_and(|o| !o.contains(key)) {
                continue;
            }
            let n = room.min(p.rows.len());
            room -= n;
            let mut bytes = 0;
            let rows: Vec<Row> = p
                .rows
                .drain(..n)
                .map(|(r, s)| {
                    bytes += s;
                    r
                })
                .collect();
            p.oldest = if p.rows.is_empty() { None } else { Some(Instant::now()) };
            let to = rows.last().map_or(0, |r| r.record.offset + 1);
            batch.push((
                PartitionBatch {
                    topic: key.0.clone(),
                    partition: key.1,
                    from: p.position,
                    to,
                    schema: p.schema.clone(),
                    rows,
                },
                bytes,
            ));
        }
        batch
    }

    /// Commits `batch`, retrying transient errors and dropping conflicting partitions.
    fn commit(&mut self, batch: Vec<(PartitionBatch, usize)>) -> Result<(), SinkError> {
        let (mut batch, mut sizes): (Vec<PartitionBatch>, Vec<usize>) = batch.into_iter().unzip();
        let mut backoff = Backoff::new(self.config.retry_backoff, self.config.max_retry_backoff);
        loop {
            if batch.is_empty() {
                return Ok(());
            }
            let started = Instant::now();
            let config = self.config.clone();
            let result = self.connection().and_then(|c| c.write(&config.group, &batch, config.on_error));
            match result {
                Ok(Outcome::Committed(written)) => {
                    metrics::histogram!(m::FLUSH_SECONDS).record(started.elapsed().as_secs_f64());
                    metrics::counter!(m::FLUSHES, "outcome" => "committed").increment(1);
                    metrics::counter!(m::FLUSHED).increment(written.rows as u64);
                    let failed = written.dead_lettered + written.skipped;
                    metrics::counter!(m::FAILED).increment(failed as u64);
                    metrics::counter!(m::DEAD_LETTERED).increment(written.dead_lettered as u64);
                    metrics::counter!(m::SKIPPED).increment(written.skipped as u64);
                    metrics::gauge!(m::DATABASE_UP).set(1.0);
                    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
                    for (p, bytes) in batch.into_iter().zip(sizes) {
                        // One sample per partition and batch: its oldest record, an upper bound
                        // for the batch.
                        if let Some(ts) = p.rows.iter().filter_map(|r| r.record.timestamp_ms).min() {
                            metrics::histogram!(m::RECORD_LAG_SECONDS).record((now_ms - ts).max(0) as f64 / 1000.0);
                        }
                        self.release(p.rows.len(), bytes);
                        let key = (p.topic.clone(), p.partition);
                        if let Some(part) = self.parts.get_mut(&key) {
                            part.position = Some(p.to);
                        }
                        let _ = self.events.send(WorkerEvent::Committed { key, next: p.to, rows: p.rows.len() });
                    }
                    return Ok(());
                }
                Ok(Outcome::Conflict(indexes)) => {
                    metrics::counter!(m::FLUSHES, "outcome" => "conflict").increment(1);
                    for i in indexes.into_iter().rev() {
                        let (p, bytes) = (batch.remove(i), sizes.remove(i));
                        self.release(p.rows.len(), bytes);
                        let key = (p.topic.clone(), p.partition);
                        tracing::info!(topic = %p.topic, partition = p.partition, from = ?p.from,
                            "another sink wrote this partition since its position was read; re-reading it from the database");
                        self.forget(&key);
                        if let Some(part) = self.parts.get_mut(&key) {
                            part.active = false;
                        }
                        let _ = self.events.send(WorkerEvent::Conflict(key));
                    }
                }
                Err(e) if e.is_transient() => {
                    metrics::counter!(m::FLUSHES, "outcome" => "error").increment(1);
                    metrics::gauge!(m::DATABASE_UP).set(0.0);
                    self.conn = None;
                    if self.config.max_retries.is_some_and(|max| backoff.attempts() >= max) {
                        return Err(SinkError::RetriesExhausted { retries: backoff.attempts(), last: e });
                    }
                    let delay = backoff.next_delay();
                    metrics::counter!(m::RETRIES).increment(1);
                    tracing::warn!(error = %e, retry = backoff.attempts(), ?delay, buffered = self.budget.records(),
                        "flush failed; keeping the batch and retrying");
                    if !self.sleep(delay) {
                        return Err(SinkError::Database(e));
                    }
                }
                Err(DbError::Rejected { topic, partition, offset, reason }) => {
                    metrics::counter!(m::FAILED).increment(1);
                    return Err(SinkError::RecordRejected { topic, partition, offset, reason });
                }
                Err(e) => return Err(SinkError::Database(e)),
            }
        }
    }

    /// Released rows that left the buffer (written or dropped) from the budget; `rows` were
    /// already removed from their partition's queue.
    fn release(&mut self, rows: usize, bytes: usize) {
        self.budget.release(rows, bytes);
        self.buffered -= rows;
    }

    fn connection(&mut self) -> Result<&mut Box<dyn Connection>, DbError> {
        if self.conn.is_none() {
            self.conn = Some(db::connect(&self.config.database)?);
        }
        // Just set when it was None.
        self.conn.as_mut().ok_or_else(|| DbError::Failed("no connection".into()))
    }

    /// Sleeps `d` unless abandoned meanwhile (then returns false).
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.abandon.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        !self.abandon.load(Ordering::Relaxed)
    }
}
