//! Producer side of a run: `concurrency` messages kept in flight across `producers`
//! librdkafka clients.
//!
//! Each producer is a librdkafka `ThreadedProducer`. Its delivery callback (on the client's
//! polling thread) records the message's latency, frees its slot and sends the next message
//! right there. There is no task, future or channel per message: on a small machine the load
//! generator shares the cores with the broker it measures, and the earlier design (one tokio
//! task per slot awaiting a `FutureProducer` delivery: a oneshot, a task wake-up and a
//! worker-thread hop per message) cost the client more CPU per message than the broker spent
//! on it, which capped what a run could show (see docs/PERFORMANCE.md).
//!
//! With a fixed `rate`, a pacer thread per producer releases send permits on schedule:
//! permit `k` of producer `i` out of `P` is due at `start + (k·P + i) / rate`. A released
//! permit is sent at once when its producer has a free slot, otherwise by the delivery
//! callback that frees one, and its latency counts from the intended time: when the broker
//! stalls and permits queue up, the wait shows in every delayed message (no coordinated
//! omission). The pacer sleeps on an OS thread because tokio's timer only has millisecond
//! resolution.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::client::LogContext;
use crate::payload::PayloadGen;
use crate::runner::{Live, Window, keep_sample, new_histogram, record_micros};
use crate::{BenchConfig, Limit, Mode};

/// A producer of a run.
pub(crate) type BenchProducer = ThreadedProducer<ProducerCtx>;

/// State shared by all producers of a run.
pub(crate) struct ProduceShared {
    pub cfg: Arc<BenchConfig>,
    pub window: Window,
    pub live: Arc<Live>,
    /// Measured sends started so far (for a message limit).
    started: AtomicU64,
    /// Set when a producer reaches the message limit: every producer stops sending.
    stop: AtomicBool,
}

impl ProduceShared {
    pub(crate) fn new(cfg: Arc<BenchConfig>, window: Window, live: Arc<Live>) -> Self {
        Self { cfg, window, live, started: AtomicU64::new(0), stop: AtomicBool::new(false) }
    }
}

/// What one producer measured.
#[derive(Debug)]
pub(crate) struct ProducerOutcome {
    pub latency: Histogram<u64>,
    /// Acknowledged messages sent after the warmup.
    pub measured: u64,
    /// Acknowledged messages sent during the warmup.
    pub warmup: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// When the last measured delivery report arrived.
    pub last_ack: Option<Instant>,
    /// Fixed rate: messages that fell due but were never sent (the broker stalled).
    pub unsent: u64,
}

impl ProducerOutcome {
    fn new() -> Self {
        Self {
            latency: new_histogram(),
            measured: 0,
            warmup: 0,
            errors: 0,
            error_samples: Vec::new(),
            last_ack: None,
            unsent: 0,
        }
    }

    fn error(&mut self, msg: String) {
        self.errors += 1;
        keep_sample(&mut self.error_samples, &msg);
    }
}

/// One producer's slots, under one mutex.
#[derive(Debug, Default)]
struct Flow {
    /// Messages sent and not yet reported.
    inflight: u32,
    /// Fixed rate: permits the pacer released / that were sent.
    released: u64,
    taken: u64,
    /// Nothing more is sent: the deadline or message limit was reached, or a send failed.
    stopped: bool,
}

/// What to send next in a freed or new slot.
#[derive(Debug, Clone, Copy)]
enum Send {
    /// Closed loop: a message intended now.
    Now,
    /// Fixed rate: this producer's permit `k`.
    Permit(u64),
}

/// The run a producer serves, attached when it starts sending.
struct Attached {
    shared: Arc<ProduceShared>,
    /// This producer's index among `producers` (its share of the permit schedule).
    index: u64,
    /// Messages this producer keeps in flight.
    slots: u32,
    /// The producer itself, for sending from the delivery callback (weak: the producer owns
    /// this context).
    me: Weak<BenchProducer>,
}

/// The context of one producer: its slots, its tallies and the run it belongs to. The
/// delivery callback lives here.
pub(crate) struct ProducerCtx {
    /// Set once by [`ProducerCtx::start`], before the first send: the run's clock starts
    /// only after every client is set up, and a producer's context is fixed at creation.
    run: OnceLock<Attached>,
    flow: Mutex<Flow>,
    /// Signalled when the producer stops with nothing in flight.
    idle: Condvar,
    payloads: Mutex<PayloadGen>,
    tally: Mutex<ProducerOutcome>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a few counter updates; a panic cannot leave them half-done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Client logs and errors go where every other client of the run sends them.
impl ClientContext for ProducerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        LogContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        LogContext.error(error, reason);
    }
}

impl ProducerContext for ProducerCtx {
    /// The message's intended send time, in nanoseconds since the run's start.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, intended_ns: usize) {
        let done = Instant::now();
        // Only messages sent after `start` get here, so the run is attached.
        let Some(run) = self.run.get() else { return };
        let intended = run.shared.window.start + Duration::from_nanos(intended_ns as u64);
        self.record(run, result.as_ref().map(|_| ()).map_err(|(e, _)| e), intended, done);
        let next = {
            let mut f = lock(&self.flow);
            f.inflight -= 1;
            let next = Self::claim(run, &mut f);
            if next.is_none() && f.stopped && f.inflight == 0 {
                self.idle.notify_all();
            }
            next
        };
        if let Some(next) = next {
            self.send(run, next);
        }
    }
}

impl ProducerCtx {
    /// A context for a producer of `message_size`-byte payloads.
    pub(crate) fn new(message_size: usize) -> Self {
        Self {
            run: OnceLock::new(),
            flow: Mutex::new(Flow::default()),
            idle: Condvar::new(),
            payloads: Mutex::new(PayloadGen::new(message_size)),
            tally: Mutex::new(ProducerOutcome::new()),
        }
    }

    /// Starts sending through `producer` (whose context this is) as producer `index` of the
    /// run, keeping `slots` messages in flight: fills every slot in a closed loop, or starts
    /// the pacer thread at a fixed rate. Call once.
    pub(crate) fn start(
        producer: &Arc<BenchProducer>,
        shared: Arc<ProduceShared>,
        index: u64,
        slots: u32,
    ) -> std::io::Result<()> {
        let ctx = producer.context();
        let attached = Attached { shared, index, slots, me: Arc::downgrade(producer) };
        if ctx.run.set(attached).is_err() {
            return Err(std::io::Error::other("a producer can serve only one run"));
        }
        let Some(run) = ctx.run.get() else { return Ok(()) };
        if run.shared.cfg.rate.is_some() {
            let p = Arc::clone(producer);
            std::thread::Builder::new().name("strom-bench-pacer".into()).spawn(move || {
                if let Some(run) = p.context().run.get() {
                    p.context().run_pacer(run);
                }
            })?;
        } else {
            loop {
                let next = {
                    let mut f = lock(&ctx.flow);
                    Self::claim(run, &mut f)
                };
                match next {
                    Some(next) => ctx.send(run, next),
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// Takes a slot for the next message, if one is free and there is something to send.
    fn claim(run: &Attached, f: &mut Flow) -> Option<Send> {
        if run.shared.stop.load(Ordering::Relaxed) {
            f.stopped = true;
        }
        if f.stopped || f.inflight >= run.slots {
            return None;
        }
        let next = match run.shared.cfg.rate {
            Some(_) if f.taken < f.released => {
                f.taken += 1;
                Send::Permit(f.taken - 1)
            }
            Some(_) => return None,
            None => Send::Now,
        };
        f.inflight += 1;
        Some(next)
    }

    /// Gives a claimed slot back without a delivery to come, stopping this producer.
    fn release_slot_and_stop(&self) {
        let mut f = lock(&self.flow);
        f.inflight -= 1;
        f.stopped = true;
        if f.inflight == 0 {
            self.idle.notify_all();
        }
    }

    /// Sends one message in a claimed slot, unless the run is over.
    fn send(&self, run: &Attached, next: Send) {
        let shared = &*run.shared;
        let (cfg, w) = (&*shared.cfg, &shared.window);
        let intended = match (next, cfg.rate) {
            (Send::Permit(k), Some(rate)) => run.permit_time(k, rate),
            _ => Instant::now(),
        };
        if let Some(deadline) = w.deadline
            && intended >= deadline
        {
            return self.release_slot_and_stop();
        }
        if intended >= w.warmup_end
            && let Limit::Messages(n) = cfg.limit
            && shared.started.fetch_add(1, Ordering::Relaxed) >= n
        {
            shared.stop.store(true, Ordering::Relaxed);
            return self.release_slot_and_stop();
        }
        let Some(producer) = run.me.upgrade() else {
            return self.release_slot_and_stop();
        };
        let intended_ns = usize::try_from(intended.saturating_duration_since(w.start).as_nanos()).unwrap_or(usize::MAX);
        let mut payloads = lock(&self.payloads);
        let payload = if cfg.mode == Mode::Roundtrip { payloads.stamped(w.start, intended) } else { payloads.fresh() };
        let record = BaseRecord::<(), [u8], usize>::with_opaque_to(&cfg.topic, intended_ns).payload(payload);
        shared.live.sent.fetch_add(1, Ordering::Relaxed);
        let sent = producer.send(record).map_err(|(e, _)| e);
        drop(payloads);
        if let Err(e) = sent {
            // Refused before it left the client (queue full, message too large for the
            // client's limits): retrying would only spin, so this producer stops.
            shared.live.errors.fetch_add(1, Ordering::Relaxed);
            lock(&self.tally).error(format!("cannot send: {}", crate::error::describe(&e)));
            self.release_slot_and_stop();
        }
    }

    /// Tallies one delivery report.
    fn record(&self, run: &Attached, result: Result<(), &KafkaError>, intended: Instant, done: Instant) {
        let live = &run.shared.live;
        let mut t = lock(&self.tally);
        match result {
            Ok(()) => {
                live.acked.fetch_add(1, Ordering::Relaxed);
                if intended >= run.shared.window.warmup_end {
                    record_micros(&mut t.latency, done.saturating_duration_since(intended));
                    t.measured += 1;
                    t.last_ack = Some(done);
                } else {
                    t.warmup += 1;
                }
            }
            Err(e) => {
                live.errors.fetch_add(1, Ordering::Relaxed);
                t.error(format!("delivery failed: {}", crate::error::describe(e)));
            }
        }
    }

    /// Fixed rate: releases permits as they fall due until the deadline (or the message
    /// limit); then waits up to the run's timeout for the released ones to be sent, since
    /// messages already due must still be sent and measured or their latency would be
    /// omitted, and stops. Permits never sent are reported as `unsent`.
    fn run_pacer(&self, run: &Attached) {
        let Some(rate) = run.shared.cfg.rate else { return };
        let deadline = run.shared.window.deadline;
        let mut next_permit: u64 = 0;
        loop {
            if run.shared.stop.load(Ordering::Relaxed) || lock(&self.flow).stopped {
                break;
            }
            let due = run.permit_time(next_permit, rate);
            if deadline.is_some_and(|d| due >= d) {
                self.drain_due_permits(run);
                break;
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).clamp(Duration::from_micros(50), Duration::from_millis(1)));
                continue;
            }
            // Release every permit due by now, then send as many as slots allow.
            let mut to_send = Vec::new();
            {
                let mut f = lock(&self.flow);
                while run.permit_time(next_permit, rate) <= now
                    && deadline.is_none_or(|d| run.permit_time(next_permit, rate) < d)
                {
                    f.released += 1;
                    next_permit += 1;
                }
                while let Some(next) = Self::claim(run, &mut f) {
                    to_send.push(next);
                }
            }
            for next in to_send {
                self.send(run, next);
            }
        }
        let mut f = lock(&self.flow);
        f.stopped = true;
        if f.inflight == 0 {
            self.idle.notify_all();
        }
    }

    /// At the deadline: waits (up to the run's timeout) until every released permit has been
    /// sent, then records the rest as unsent.
    fn drain_due_permits(&self, run: &Attached) {
        let give_up = Instant::now() + run.shared.cfg.timeout;
        let mut f = lock(&self.flow);
        while f.taken < f.released && !f.stopped && Instant::now() < give_up {
            f = self.idle.wait_timeout(f, Duration::from_millis(1)).map_or_else(|p| p.into_inner().0, |r| r.0);
        }
        let unsent = f.released - f.taken;
        f.released = f.taken;
        f.stopped = true;
        drop(f);
        lock(&self.tally).unsent = unsent;
    }

    /// Blocks until this producer has stopped and every message it sent has a delivery
    /// report, or `give_up` passes (the rest are counted as errors). In a closed loop it
    /// also stops the producer at the deadline if no delivery report has done so.
    pub(crate) fn finish(&self, give_up: Instant) -> ProducerOutcome {
        let deadline = self.run.get().and_then(|r| r.shared.window.deadline);
        let mut f = lock(&self.flow);
        loop {
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                f.stopped = true;
            }
            if f.stopped && f.inflight == 0 {
                break;
            }
            if Instant::now() >= give_up {
                let missing = f.inflight;
                drop(f);
                let mut t = lock(&self.tally);
                for _ in 0..missing {
                    t.error("no delivery report before the run's timeout".into());
                }
                break;
            }
            f = self.idle.wait_timeout(f, Duration::from_millis(100)).map_or_else(|p| p.into_inner().0, |r| r.0);
        }
        std::mem::replace(&mut *lock(&self.tally), ProducerOutcome::new())
    }
}

impl Attached {
    /// Intended send time of this producer's permit `k` at the fixed `rate`.
    fn permit_time(&self, k: u64, rate: f64) -> Instant {
        let producers = u64::from(self.shared.cfg.producers);
        self.shared.window.start + Duration::from_secs_f64((k * producers + self.index) as f64 / rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The permits of all producers interleave into one exact schedule at the total rate.
    #[test]
    fn permits_of_all_producers_interleave_at_the_total_rate() {
        let producers = 3;
        let mut cfg = BenchConfig::new("127.0.0.1:1");
        cfg.rate = Some(1000.0);
        cfg.producers = producers;
        let start = Instant::now();
        let window = Window { start, warmup_end: start, deadline: None };
        let shared = Arc::new(ProduceShared::new(Arc::new(cfg), window, Arc::new(Live::default())));
        let mut times: Vec<Instant> = (0..producers)
            .flat_map(|i| {
                let run = Attached { shared: Arc::clone(&shared), index: u64::from(i), slots: 4, me: Weak::new() };
                (0..10).map(move |k| run.permit_time(k, 1000.0))
            })
            .collect();
        times.sort();
        for (n, t) in times.iter().enumerate() {
            assert_eq!(*t, start + Duration::from_secs_f64(n as f64 / 1000.0), "message {n}");
        }
    }
}
