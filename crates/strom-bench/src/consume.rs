//! Consumer side of a run: `consumers` librdkafka clients, each assigned a share of the
//! partitions at explicit offsets (no group coordinator involved), each polled on its own
//! blocking thread.
//!
//! In consume mode a consumer reads from the beginning and stops at the end of the log
//! (partition EOF on all its partitions), at the message limit or at the deadline. In
//! roundtrip mode it starts at the high watermark taken before the first send, reads
//! the send time carried in each payload, and stops once the consumers together have
//! received everything the producers had acknowledged.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::LogContext;
use crate::payload::read_stamp;
use crate::runner::{Live, Window, keep_sample, new_histogram, record_micros};
use crate::{BenchConfig, Error, Limit, Mode};

/// How long one poll waits before the stop conditions are checked again.
const POLL: Duration = Duration::from_millis(100);

/// State shared by all consumers of a run.
pub(crate) struct ConsumeShared {
    pub cfg: Arc<BenchConfig>,
    pub window: Window,
    pub live: Arc<Live>,
    /// Messages received by all consumers (warmup included).
    received: AtomicU64,
    /// Measured messages received (for a message limit in consume mode).
    measured: AtomicU64,
    /// Roundtrip: how many messages to receive in total; `u64::MAX` while producing.
    target: AtomicU64,
    /// Roundtrip: give up waiting for the target at this many nanoseconds after the
    /// run's start; `u64::MAX` while producing.
    drain_deadline_ns: AtomicU64,
    stop: AtomicBool,
}

impl ConsumeShared {
    pub(crate) fn new(cfg: Arc<BenchConfig>, window: Window, live: Arc<Live>) -> Self {
        Self {
            cfg,
            window,
            live,
            received: AtomicU64::new(0),
            measured: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            drain_deadline_ns: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
        }
    }

    /// Roundtrip: the producers are done; receive `acknowledged` messages in total, or
    /// stop trying after `wait`.
    pub(crate) fn producers_done(&self, acknowledged: u64, wait: Duration) {
        let deadline = self.window.start.elapsed() + wait;
        self.drain_deadline_ns.store(u64::try_from(deadline.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.target.store(acknowledged, Ordering::Relaxed);
    }

    /// Messages received by all consumers so far.
    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn should_stop(&self, now: Instant) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return true;
        }
        match self.cfg.mode {
            Mode::Roundtrip => {
                let since =
                    u64::try_from(now.saturating_duration_since(self.window.start).as_nanos()).unwrap_or(u64::MAX);
                self.received() >= self.target.load(Ordering::Relaxed)
                    || since >= self.drain_deadline_ns.load(Ordering::Relaxed)
            }
            _ => self.window.deadline.is_some_and(|d| now >= d),
        }
    }
}

/// What one consumer measured.
#[derive(Debug)]
pub(crate) struct ConsumerOutcome {
    /// Roundtrip only: intended send time to receipt.
    pub end_to_end: Histogram<u64>,
    pub measured: u64,
    pub measured_bytes: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub last_receive: Option<Instant>,
}

/// Creates a consumer assigned to `partitions`, each starting at the matching offset.
pub(crate) fn assigned_consumer(
    cfg: &BenchConfig,
    starts: &[(i32, Offset)],
) -> Result<BaseConsumer<LogContext>, Error> {
    let consumer: BaseConsumer<LogContext> = crate::client::consumer_config(cfg)
        .create_with_context(LogContext)
        .map_err(Error::kafka("cannot create a consumer"))?;
    let mut tpl = TopicPartitionList::new();
    for &(p, offset) in starts {
        tpl.add_partition_offset(&cfg.topic, p, offset)
            .map_err(Error::kafka(format!("cannot assign {}/{p}", cfg.topic)))?;
    }
    consumer.assign(&tpl).map_err(Error::kafka("cannot assign partitions"))?;
    Ok(consumer)
}

/// Polls until a stop condition holds. Runs on a blocking thread.
pub(crate) fn consume(
    consumer: BaseConsumer<LogContext>,
    partitions: usize,
    shared: Arc<ConsumeShared>,
) -> ConsumerOutcome {
    let cfg = &shared.cfg;
    let w = &shared.window;
    let mut out = ConsumerOutcome {
        end_to_end: new_histogram(),
        measured: 0,
        measured_bytes: 0,
        errors: 0,
        error_samples: Vec::new(),
        last_receive: None,
    };
    let mut at_end: HashSet<i32> = HashSet::new();
    loop {
        let polled = consumer.poll(POLL);
        let now = Instant::now();
        match polled {
            Some(Ok(msg)) => {
                shared.received.fetch_add(1, Ordering::Relaxed);
                shared.live.consumed.fetch_add(1, Ordering::Relaxed);
                at_end.remove(&msg.partition());
                let payload = msg.payload().unwrap_or_default();
                let measured = if cfg.mode == Mode::Roundtrip {
                    match read_stamp(w.start, payload) {
                        Some(sent) => {
                            let m = sent >= w.warmup_end;
                            if m {
                                record_micros(&mut out.end_to_end, now.saturating_duration_since(sent));
                            }
                            m
                        }
                        None => false,
                    }
                } else {
                    now >= w.warmup_end
                };
                if measured {
                    out.measured += 1;
                    out.measured_bytes += payload.len() as u64;
                    out.last_receive = Some(now);
                    if cfg.mode == Mode::Consume
                        && let Limit::Messages(n) = cfg.limit
                        && shared.measured.fetch_add(1, Ordering::Relaxed) + 1 >= n
                    {
                        shared.stop.store(true, Ordering::Relaxed);
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
                if cfg.mode == Mode::Consume && at_end.len() >= partitions {
                    break;
                }
            }
            Some(Err(e)) => {
                shared.live.errors.fetch_add(1, Ordering::Relaxed);
                out.errors += 1;
                keep_sample(&mut out.error_samples, &format!("consumer error: {}", crate::error::describe(&e)));
            }
            None => {}
        }
        if shared.should_stop(now) {
            break;
        }
    }
    out
}
