//! The sink's main loop: the consumer-group member that feeds the flush workers.
//!
//! * On start it checks the database (the sink's tables, each route's table and columns) and
//!   the broker, so a bad URL, a missing table or a broker that is down is a clear error
//!   before anything is consumed.
//! * On every assignment (in the rebalance callback, before the partitions are assigned) it
//!   reads each partition's position from the database and assigns the partition **at that
//!   offset**: the group's committed offsets on the broker are only informative (the sink
//!   commits them after the database did, for tools that show lag).
//! * On revocation it asks the workers to flush those partitions first (bounded by
//!   [`REVOKE_FLUSH_TIMEOUT`]); whatever they cannot write in time is read again by the next
//!   owner, and the position check in the database keeps it from being written twice.
//! * It pauses its partitions while the buffer budget is full and resumes them when it has
//!   room again.
//! * On shutdown (the flag set by SIGTERM/SIGINT) it stops consuming, lets the workers write
//!   everything buffered, commits the informative offsets, and leaves the group.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use crate::SinkError;
use crate::budget::Budget;
use crate::config::SinkConfig;
use crate::db::{self, Connection, DbError};
use crate::mapping::TableSchema;
use crate::metrics as m;
use crate::record::Record;
use crate::retry::Backoff;
use crate::worker::{PartitionKey, Worker, WorkerEvent, WorkerMsg};

/// How long a revocation waits for the workers to flush the revoked partitions.
pub const REVOKE_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the start-up check waits for the broker.
pub const BROKER_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What a run wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Rows committed to the routes' tables.
    pub rows: u64,
}

/// The consumer's context: the rebalance callback needs the database and the workers.
struct SinkContext {
    config: Arc<SinkConfig>,
    schemas: HashMap<String, Arc<TableSchema>>,
    db: Mutex<Option<Box<dyn Connection>>>,
    workers: Vec<Sender<WorkerMsg>>,
    shutdown: Arc<AtomicBool>,
    /// The main loop's pause state (buffer full), applied by the rebalance callback to the
    /// partitions it assigns: librdkafka keeps a partition's pause across unassign/assign, so
    /// every assignment states it explicitly.
    paused: AtomicBool,
    total_lag: AtomicI64,
}

impl ClientContext for SinkContext {
    fn stats(&self, stats: Statistics) {
        let mut total = 0;
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                total += p.consumer_lag;
                metrics::gauge!(m::CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(p.consumer_lag as f64);
            }
        }
        self.total_lag.store(total, Ordering::Relaxed);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(brokers = %self.config.bootstrap_servers, %error, "Kafka client: {reason}");
    }
}

impl ConsumerContext for SinkContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let keys: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
                let Some(positions) = self.positions_with_retry(&keys) else {
                    let _ = consumer.unassign();
                    return;
                };
                for (topic, partition) in &keys {
                    let position = positions.get(&(topic.clone(), *partition)).copied();
                    let offset = position.map_or(self.reset_offset(), Offset::Offset);
                    if let Err(e) = tpl.set_partition_offset(topic, *partition, offset) {
                        tracing::error!(%topic, partition, error = %e, "cannot set the start offset");
                    }
                    self.send_assign((Arc::from(topic.as_str()), *partition), position);
                }
                tracing::info!(partitions = ?keys, "assigned; resuming from the database's positions");
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "assigning partitions failed");
                }
                let state =
                    if self.paused.load(Ordering::Relaxed) { consumer.pause(tpl) } else { consumer.resume(tpl) };
                if let Err(e) = state {
                    tracing::warn!(error = %e, "setting the new partitions' pause state failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let keys: Vec<PartitionKey> =
                    tpl.elements().iter().map(|e| (Arc::from(e.topic()), e.partition())).collect();
                tracing::info!(partitions = keys.len(), "revoked; flushing them first");
                let mut waits = Vec::new();
                for (i, w) in self.workers.iter().enumerate() {
                    let mine: Vec<PartitionKey> = keys
                        .iter()
                        .filter(|k| worker_index(&self.config, k, self.workers.len()) == i)
                        .cloned()
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    let (done, wait) = mpsc::channel();
                    if w.send(WorkerMsg::Revoke { keys: mine, done }).is_ok() {
                        waits.push(wait);
                    }
                }
                let deadline = Instant::now() + REVOKE_FLUSH_TIMEOUT;
                for wait in waits {
                    if wait.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
                        tracing::warn!("revoked partitions not flushed in time; their next owner reads them again");
                    }
                }
                // Clear the pause of what leaves, so a later assignment starts it afresh.
                let _ = consumer.resume(tpl);
                let _ = consumer.unassign();
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; dropping the assignment");
                let _ = consumer.unassign();
            }
        }
    }
}

impl SinkContext {
    fn reset_offset(&self) -> Offset {
        match self.config.consumer.get("auto.offset.reset").map(String::as_str) {
            Some("latest" | "largest" | "end") => Offset::End,
            _ => Offset::Beginning,
        }
    }

    fn send_assign(&self, key: PartitionKey, position: Option<i64>) {
        let Some(schema) = self.schemas.get(&*key.0).cloned() else { return };
        let i = worker_index(&self.config, &key, self.workers.len());
        let _ = self.workers[i].send(WorkerMsg::Assign { key, position, schema });
    }

    /// Reads the positions of `keys`, retrying transient errors until it succeeds or the
    /// sink shuts down (`None`).
    fn positions_with_retry(&self, keys: &[(String, i32)]) -> Option<HashMap<(String, i32), i64>> {
        let mut backoff = Backoff::new(self.config.retry_backoff, self.config.max_retry_backoff);
        loop {
            match self.positions(keys) {
                Ok(p) => return Some(p),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, ?delay, "cannot read the partitions' positions from the database; retrying");
                    metrics::counter!(m::RETRIES).increment(1);
                    let until = Instant::now() + delay;
                    while Instant::now() < until {
                        if self.shutdown.load(Ordering::Relaxed) {
                            return None;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
    }

    fn positions(&self, keys: &[(String, i32)]) -> Result<HashMap<(String, i32), i64>, DbError> {
        let mut guard = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(db::connect(&self.config.database)?);
        }
        let Some(conn) = guard.as_mut() else { return Err(DbError::Failed("no connection".into())) };
        let mut topics: Vec<&str> = keys.iter().map(|(t, _)| t.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        let mut out = HashMap::new();
        for topic in topics {
            match conn.positions(&self.config.group, topic) {
                Ok(map) => out.extend(map.into_iter().map(|(p, o)| ((topic.to_string(), p), o))),
                Err(e) => {
                    *guard = None;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }
}

/// The worker that owns `key`: stable for the process's life, and consecutive partitions
/// (what the range assignor hands out) go to different workers, so they share the load.
fn worker_index(config: &SinkConfig, key: &PartitionKey, workers: usize) -> usize {
    let route = config.routes.iter().position(|r| *r.topic == *key.0).unwrap_or(0);
    (route + key.1.unsigned_abs() as usize) % workers
}

/// Runs the sink until `shutdown` is set (then flushes and returns) or a fatal error.
/// `progress` draws a status line on a terminal.
pub fn run(config: SinkConfig, shutdown: Arc<AtomicBool>, progress: bool) -> Result<RunSummary, SinkError> {
    m::describe();
    let config = Arc::new(config);
    tracing::info!(database = %config.database.redacted(), brokers = %config.bootstrap_servers, group = %config.group,
        routes = config.routes.len(), "strom sink starting");

    // The database first: every route's table must fit before anything is consumed.
    let mut conn = db::connect(&config.database).map_err(|e| match e {
        DbError::Unavailable { db, reason } => {
            DbError::Schema(format!("cannot connect to the database {db}: {reason}"))
        }
        other => other,
    })?;
    let mut schemas = HashMap::new();
    for route in &config.routes {
        let schema = conn.prepare(route)?;
        tracing::info!(topic = %route.topic, table = %schema.table, mapping = ?schema.mapping,
            columns = ?schema.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), "route ready");
        schemas.insert(route.topic.clone(), Arc::new(schema));
    }

    let budget = Arc::new(Budget::new(config.max_buffered_records, config.max_buffered_bytes));
    let abandon = Arc::new(AtomicBool::new(false));
    let (events_tx, events) = mpsc::channel();
    let mut senders = Vec::new();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    for i in 0..config.workers {
        let (tx, rx) = mpsc::channel();
        senders.push(tx);
        let worker = Worker::new(config.clone(), rx, events_tx.clone(), budget.clone(), abandon.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("sink-flush-{i}"))
                .spawn(move || worker.run())
                .map_err(|e| SinkError::Config(format!("cannot start a flush thread: {e}")))?,
        );
    }
    drop(events_tx);

    let context = SinkContext {
        config: config.clone(),
        schemas,
        db: Mutex::new(Some(conn)),
        workers: senders.clone(),
        shutdown: shutdown.clone(),
        paused: AtomicBool::new(false),
        total_lag: AtomicI64::new(-1),
    };
    check_consumer_properties(&config)?;
    let consumer: BaseConsumer<SinkContext> = client_config(&config).create_with_context(context)?;
    check_broker(&consumer, &config)?;
    let topics: Vec<&str> = config.routes.iter().map(|r| r.topic.as_str()).collect();
    consumer.subscribe(&topics)?;

    let result = main_loop(&consumer, &config, &budget, &senders, &events, &shutdown, progress);

    // Shutdown: write what is buffered, then leave the group.
    let drained = drain(&senders, config.shutdown_timeout);
    abandon.store(true, Ordering::Relaxed);
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %e, "final informative offset commit failed");
    }
    consumer.unsubscribe();
    drop(consumer);
    drop(senders);
    // A worker stuck in a database call that never returns is left behind (the process exits).
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for t in threads.into_iter().filter(|t| t.is_finished()) {
        let _ = t.join();
    }
    let mut summary = result?;
    // Rows the drain committed.
    for ev in events.try_iter() {
        match ev {
            WorkerEvent::Committed { rows, .. } => summary.rows += rows as u64,
            WorkerEvent::Fatal(e) => return Err(e),
            WorkerEvent::Conflict(_) => {}
        }
    }
    if drained > 0 {
        return Err(SinkError::ShutdownIncomplete { unflushed: drained });
    }
    tracing::info!(rows = summary.rows, "strom sink stopped; everything consumed is written");
    Ok(summary)
}

fn client_config(config: &SinkConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    // librdkafka's prefetch queue is bounded by a quarter of the sink's own byte budget.
    let queued_kb = (config.max_buffered_bytes / 4 / 1024).clamp(1024, 1 << 20);
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", &config.group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", queued_kb.to_string())
        // librdkafka waits fetch.queue.backoff.ms (1 s by default) before fetching again once
        // that queue is full; the sink empties it in well under that, then sat idle: draining
        // a backlog into SQLite went from 106-112k to 117-148k rows/s with 10 ms.
        .set("fetch.queue.backoff.ms", "10")
        .set("statistics.interval.ms", "1000")
        .set("client.id", "strom-sink");
    for (k, v) in &config.consumer {
        c.set(k, v);
    }
    c
}

/// The sink's rebalance callback assigns and revokes whole assignments (the eager protocol);
/// an incremental one would need `incremental_assign`, so it is refused up front.
pub(crate) fn check_consumer_properties(config: &SinkConfig) -> Result<(), SinkError> {
    let cooperative = config.consumer.get("partition.assignment.strategy").is_some_and(|v| v.contains("cooperative"));
    let kip848 = config.consumer.get("group.protocol").is_some_and(|v| v.eq_ignore_ascii_case("consumer"));
    if cooperative || kip848 {
        return Err(SinkError::Config(
            "the sink uses an eager rebalance protocol: remove the cooperative partition.assignment.strategy / group.protocol=consumer setting".into(),
        ));
    }
    Ok(())
}

/// Fails with a clear message when no broker answers within [`BROKER_CHECK_TIMEOUT`].
fn check_broker(consumer: &BaseConsumer<SinkContext>, config: &SinkConfig) -> Result<(), SinkError> {
    let md = consumer.fetch_metadata(None, BROKER_CHECK_TIMEOUT).map_err(|e| {
        SinkError::Config(format!(
            "cannot reach the Kafka broker(s) at {} within {BROKER_CHECK_TIMEOUT:?}: {e}",
            config.bootstrap_servers
        ))
    })?;
    for route in &config.routes {
        if !md.topics().iter().any(|t| t.name() == route.topic && t.error().is_none()) {
            tracing::warn!(topic = %route.topic, "the topic does not exist (yet); the sink waits for it");
        }
    }
    Ok(())
}

fn main_loop(
    consumer: &BaseConsumer<SinkContext>,
    config: &SinkConfig,
    budget: &Budget,
    workers: &[Sender<WorkerMsg>],
    events: &Receiver<WorkerEvent>,
    shutdown: &AtomicBool,
    progress: bool,
) -> Result<RunSummary, SinkError> {
    let topics: HashMap<&str, Arc<str>> =
        config.routes.iter().map(|r| (r.topic.as_str(), Arc::from(r.topic.as_str()))).collect();
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let mut summary = RunSummary::default();
    let mut paused = false;
    let mut last_tick = Instant::now();
    let mut rows_at_tick = 0u64;
    let mut last_kafka_error: Option<Instant> = None;
    let mut polls = 0u32;
    while !shutdown.load(Ordering::Relaxed) {
        for ev in events.try_iter() {
            match ev {
                WorkerEvent::Committed { key, next, rows } => {
                    summary.rows += rows as u64;
                    // Informative only: the database's positions are the truth.
                    let _ = consumer.store_offset(&key.0, key.1, next);
                }
                WorkerEvent::Conflict(key) => reseek(consumer, &key)?,
                WorkerEvent::Fatal(e) => return Err(e),
            }
        }
        if budget.is_full() && !paused {
            paused = true;
            consumer.context().paused.store(true, Ordering::Relaxed);
            if let Ok(assignment) = consumer.assignment() {
                let _ = consumer.pause(&assignment);
            }
            tracing::info!(records = budget.records(), bytes = budget.bytes(), "buffer full; consumption paused");
            metrics::gauge!(m::PAUSED).set(1.0);
        } else if paused && budget.has_room() {
            paused = false;
            consumer.context().paused.store(false, Ordering::Relaxed);
            if let Ok(assignment) = consumer.assignment() {
                let _ = consumer.resume(&assignment);
            }
            metrics::gauge!(m::PAUSED).set(0.0);
        }
        let mut busy = false;
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                busy = true;
                let Some(topic) = topics.get(msg.topic()).cloned() else { continue };
                let record = Record::from_message(&msg, topic);
                budget.add(record.size());
                let key = (record.topic.clone(), record.partition);
                let _ = workers[worker_index(config, &key, workers.len())].send(WorkerMsg::Record(record));
            }
            Some(Err(e)) if last_kafka_error.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) => {
                tracing::warn!(error = %e, "consuming");
                last_kafka_error = Some(Instant::now());
            }
            Some(Err(_)) => {}
            None => {}
        }
        polls = polls.wrapping_add(1);
        // While records flow the clock is read every 256 of them, not per record.
        if (!busy || polls % 256 == 0) && last_tick.elapsed() >= Duration::from_secs(1) {
            let secs = last_tick.elapsed().as_secs_f64();
            metrics::gauge!(m::BUFFERED_RECORDS).set(budget.records() as f64);
            metrics::gauge!(m::BUFFERED_BYTES).set(budget.bytes() as f64);
            metrics::gauge!(m::BUFFER_FILL).set(budget.fill());
            if let Some(bar) = &bar {
                let lag = consumer.context().total_lag.load(Ordering::Relaxed);
                bar.set_message(format!(
                    "{} rows written ({:.0}/s), lag {}, buffered {} ({:.0}%){}",
                    summary.rows,
                    (summary.rows - rows_at_tick) as f64 / secs,
                    if lag < 0 { "?".to_string() } else { lag.to_string() },
                    budget.records(),
                    budget.fill() * 100.0,
                    if paused { ", paused: buffer full" } else { "" }
                ));
                bar.tick();
            }
            rows_at_tick = summary.rows;
            last_tick = Instant::now();
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(summary)
}

/// After a conflict: reads the partition's position from the database again, seeks there and
/// re-assigns it to its worker (if the partition is still ours).
fn reseek(consumer: &BaseConsumer<SinkContext>, key: &PartitionKey) -> Result<(), SinkError> {
    let assigned = consumer
        .assignment()
        .map(|a| a.elements().iter().any(|e| e.topic() == &*key.0 && e.partition() == key.1))
        .unwrap_or(false);
    if !assigned {
        return Ok(());
    }
    let ctx = consumer.context();
    let Some(positions) = ctx.positions_with_retry(&[(key.0.to_string(), key.1)]) else { return Ok(()) };
    let position = positions.get(&(key.0.to_string(), key.1)).copied();
    let offset = position.map_or(ctx.reset_offset(), Offset::Offset);
    // Without the seek the consumer would go on from where it was, past records the other
    // sink has not written: never re-assign the partition to its worker unsought.
    let mut last = None;
    for _ in 0..3 {
        match consumer.seek(&key.0, key.1, offset, Duration::from_secs(10)) {
            Ok(()) => {
                ctx.send_assign(key.clone(), position);
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(topic = %key.0, partition = key.1, error = %e, "seek after a conflict failed; retrying");
                last = Some(e);
            }
        }
    }
    Err(SinkError::Kafka(last.unwrap_or(KafkaError::Seek("seek failed".into()))))
}

/// Asks every worker to write what it holds; returns the records left unwritten when
/// `timeout` passed (0 when all were written).
fn drain(workers: &[Sender<WorkerMsg>], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut waits = Vec::new();
    for w in workers {
        let (done, wait) = mpsc::channel();
        if w.send(WorkerMsg::Drain { done }).is_ok() {
            waits.push(wait);
        }
    }
    let mut left = 0;
    for wait in waits {
        match wait.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(n) => left += n,
            // Timed out, or the worker stopped on an error: count it as not written.
            Err(_) => left += 1,
        }
    }
    left
}
