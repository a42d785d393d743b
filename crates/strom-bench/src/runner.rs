//! [`Runner`]: one benchmark run from setup to verified [`Report`].
//!
//! Order of a run: reach the broker and make sure the topic has leaders; read the high
//! watermarks; start consumers, the pacer (fixed rate) and the producer slots; wait for
//! every delivery report; let consumers drain; read the high watermarks again and
//! compare their growth with the acknowledged count.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use rdkafka::Offset;
use rdkafka::producer::Producer;

use crate::client::producer_config;
use crate::consume::{self, ConsumeShared, ConsumerOutcome};
use crate::produce::{BenchProducer, ProduceShared, ProducerCtx, ProducerOutcome};
use crate::report::{Hardware, LatencySummary, PartitionWatermarks, Report, Throughput, Verification};
use crate::topic::{ensure_topic, high_watermarks};
use crate::{BenchConfig, Error, Limit, Mode};

/// Counters updated as the run goes, for a live progress line. Relaxed atomics: they are
/// for display; the report is computed from each worker's own tallies.
#[derive(Debug, Default)]
pub struct Live {
    /// Messages handed to librdkafka.
    pub sent: AtomicU64,
    /// Successful delivery reports.
    pub acked: AtomicU64,
    /// Failed deliveries and consumer errors.
    pub errors: AtomicU64,
    /// Messages received by consumers.
    pub consumed: AtomicU64,
}

/// The run's clock: when it started, when measuring starts, when sending stops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub start: Instant,
    pub warmup_end: Instant,
    /// `None` with a message limit.
    pub deadline: Option<Instant>,
}

/// A histogram of microsecond samples that grows as needed, so no sample is ever
/// dropped or clamped.
pub(crate) fn new_histogram() -> Histogram<u64> {
    // Three significant digits; `new` only fails for sigfig > 5.
    Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
}

/// How many distinct error messages a report keeps.
const MAX_ERROR_SAMPLES: usize = 5;

/// Keeps `msg` as an error sample unless it is already there or there are enough.
pub(crate) fn keep_sample(samples: &mut Vec<String>, msg: &str) {
    if samples.len() < MAX_ERROR_SAMPLES && !samples.iter().any(|s| s == msg) {
        samples.push(msg.to_owned());
    }
}

/// Records `d` in microseconds (at least 1, the histogram's lowest value).
pub(crate) fn record_micros(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    if h.record(us).is_err() {
        // Only reachable if auto-resize could not grow further (values near u64::MAX).
        h.saturating_record(us);
    }
}

/// One benchmark run. Create it, hand [`live`](Self::live) to a progress display, then
/// call [`run`](Self::run).
#[derive(Debug)]
pub struct Runner {
    cfg: Arc<BenchConfig>,
    live: Arc<Live>,
}

impl Runner {
    /// Validates the configuration.
    pub fn new(cfg: BenchConfig) -> Result<Self, Error> {
        cfg.validate()?;
        Ok(Self { cfg: Arc::new(cfg), live: Arc::new(Live::default()) })
    }

    /// Live counters of this run.
    pub fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live)
    }

    /// Runs the benchmark to completion on its own multi-threaded tokio runtime (do not
    /// call from inside another runtime). Delivery errors do not fail the run: they are
    /// counted in the report, see [`Report::is_success`].
    pub fn run(self) -> Result<Report, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("strom-bench")
            .build()
            .map_err(|e| Error::Worker(format!("cannot start the tokio runtime: {e}")))?;
        rt.block_on(self.run_async())
    }

    async fn run_async(self) -> Result<Report, Error> {
        let cfg = Arc::clone(&self.cfg);
        let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let partitions = ensure_topic(&cfg).await?;

        let producers = if cfg.mode.produces() {
            (0..cfg.producers)
                .map(|_| {
                    producer_config(&cfg)
                        .create_with_context::<_, BenchProducer>(ProducerCtx::new(cfg.message_size))
                        .map(Arc::new)
                        .map_err(Error::kafka("cannot create a producer"))
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        let before = match producers.first() {
            Some(p) => Some(tokio::task::block_in_place(|| high_watermarks(p.client(), &cfg, partitions))?),
            None => None,
        };

        // Consumers get partitions round-robin; a consumer left without any is not made.
        let mut consumers = Vec::new();
        if cfg.mode.consumes() {
            let n = i32::try_from(cfg.consumers).unwrap_or(i32::MAX).min(partitions);
            for i in 0..n {
                let starts: Vec<(i32, Offset)> = (i..partitions)
                    .step_by(usize::try_from(n).unwrap_or(1))
                    .map(|p| {
                        let offset = match &before {
                            Some(hw) => Offset::Offset(hw[usize::try_from(p).unwrap_or(0)]),
                            None => Offset::Beginning,
                        };
                        (p, offset)
                    })
                    .collect();
                consumers.push((consume::assigned_consumer(&cfg, &starts)?, starts.len()));
            }
        }

        let start = Instant::now();
        let warmup_end = start + cfg.warmup;
        let deadline = match cfg.limit {
            Limit::Duration(d) => Some(warmup_end + d),
            Limit::Messages(_) => None,
        };
        let window = Window { start, warmup_end, deadline };

        let consume_shared = Arc::new(ConsumeShared::new(Arc::clone(&cfg), window, self.live()));
        let consumer_tasks: Vec<_> = consumers
            .into_iter()
            .map(|(c, n)| {
                let shared = Arc::clone(&consume_shared);
                tokio::task::spawn_blocking(move || consume::consume(c, n, shared))
            })
            .collect();

        let produce_shared = Arc::new(ProduceShared::new(Arc::clone(&cfg), window, self.live()));
        for (i, p) in (0u32..).zip(&producers) {
            // The concurrency is spread over the producers, the first ones taking the rest.
            let slots = cfg.concurrency / cfg.producers + u32::from(i < cfg.concurrency % cfg.producers);
            ProducerCtx::start(p, Arc::clone(&produce_shared), u64::from(i), slots)
                .map_err(|e| Error::Worker(format!("cannot start producer {i}: {e}")))?;
        }
        // Every delivery report arrives within librdkafka's message.timeout.ms (the run's
        // timeout) of its send; this bound only guards against a client that never reports.
        let waiting = producers.clone();
        let give_up_after = cfg.timeout * 2 + Duration::from_secs(5);
        let slots = tokio::task::spawn_blocking(move || {
            waiting
                .iter()
                .map(|p| {
                    let give_up = window.deadline.map_or(Instant::now(), |d| d.max(Instant::now())) + give_up_after;
                    p.context().finish(give_up)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Error::Worker(e.to_string()))?;
        let unsent: u64 = slots.iter().map(|s| s.unsent).sum();
        let acknowledged: u64 = slots.iter().map(|s| s.measured + s.warmup).sum();
        consume_shared.producers_done(acknowledged, cfg.timeout);

        let mut outs = Vec::with_capacity(consumer_tasks.len());
        for t in consumer_tasks {
            outs.push(t.await.map_err(|e| Error::Worker(e.to_string()))?);
        }

        let verification = match (producers.first(), before) {
            (Some(p), Some(before)) => Some(verify(p, &cfg, partitions, before, acknowledged).await?),
            _ => None,
        };
        let run = RunFacts { started_at, window, partitions, acknowledged, unsent };
        Ok(build_report(cfg, run, &slots, &outs, &consume_shared, verification))
    }
}

/// Reads the high watermarks again until their growth equals the acknowledged count or
/// the timeout passes (with `acks=1` on a replicated topic the watermark may trail).
async fn verify(
    producer: &BenchProducer,
    cfg: &BenchConfig,
    partitions: i32,
    before: Vec<i64>,
    acknowledged: u64,
) -> Result<Verification, Error> {
    let deadline = Instant::now() + cfg.timeout;
    loop {
        let after = tokio::task::block_in_place(|| high_watermarks(producer.client(), cfg, partitions))?;
        let stored: i64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
        let stored = u64::try_from(stored).unwrap_or(0);
        if stored == acknowledged || Instant::now() >= deadline {
            let partitions = (0..partitions)
                .zip(before.iter().zip(&after))
                .map(|(partition, (&before, &after))| PartitionWatermarks { partition, before, after })
                .collect();
            return Ok(Verification { acknowledged, stored, consistent: stored == acknowledged, partitions });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the report needs to know about the run besides the workers' tallies.
struct RunFacts {
    started_at: String,
    window: Window,
    partitions: i32,
    acknowledged: u64,
    /// Fixed rate: messages that fell due but were never sent (broker stalled).
    unsent: u64,
}

fn build_report(
    cfg: Arc<BenchConfig>,
    run: RunFacts,
    slots: &[ProducerOutcome],
    outs: &[ConsumerOutcome],
    consume_shared: &ConsumeShared,
    verification: Option<Verification>,
) -> Report {
    let RunFacts { started_at, window, partitions, acknowledged, unsent } = run;
    let mut produce_latency = new_histogram();
    let mut e2e = new_histogram();
    let mut errors = 0;
    let mut samples: Vec<String> = Vec::new();
    for s in slots {
        // Both histograms auto-resize, so adding cannot fail for lack of range.
        let _ = produce_latency.add(&s.latency);
        errors += s.errors;
        s.error_samples.iter().for_each(|e| keep_sample(&mut samples, e));
    }
    for o in outs {
        let _ = e2e.add(&o.end_to_end);
        errors += o.errors;
        o.error_samples.iter().for_each(|e| keep_sample(&mut samples, e));
    }
    let since_warmup =
        |last: Option<Instant>| last.map_or(Duration::ZERO, |l| l.saturating_duration_since(window.warmup_end));
    let size = cfg.message_size as u64;
    let produce = cfg.mode.produces().then(|| {
        let measured: u64 = slots.iter().map(|s| s.measured).sum();
        let last = slots.iter().filter_map(|s| s.last_ack).max();
        Throughput::new(measured, measured * size, since_warmup(last))
    });
    let consume = cfg.mode.consumes().then(|| {
        let measured: u64 = outs.iter().map(|o| o.measured).sum();
        let bytes: u64 = outs.iter().map(|o| o.measured_bytes).sum();
        let last = outs.iter().filter_map(|o| o.last_receive).max();
        Throughput::new(measured, bytes, since_warmup(last))
    });
    if unsent > 0 {
        errors += unsent;
        samples.push(format!(
            "{unsent} messages due at the fixed rate were never sent: the broker stalled for over {}",
            humantime::format_duration(cfg.timeout)
        ));
    }
    if cfg.mode == Mode::Roundtrip {
        let received = consume_shared.received();
        if received < acknowledged {
            errors += acknowledged - received;
            samples.push(format!(
                "consumers received {received} of {acknowledged} acknowledged messages within {}",
                humantime::format_duration(cfg.timeout)
            ));
        }
    }
    Report {
        tool: format!("strom-bench {}", env!("CARGO_PKG_VERSION")),
        started_at,
        hardware: Hardware::detect(),
        produce,
        consume,
        produce_latency: LatencySummary::from_micros(&produce_latency),
        end_to_end_latency: LatencySummary::from_micros(&e2e),
        warmup_messages: slots.iter().map(|s| s.warmup).sum(),
        acknowledged,
        errors,
        error_samples: samples,
        verification,
        params: Arc::unwrap_or_clone(cfg),
        topic_partitions: partitions,
    }
}
