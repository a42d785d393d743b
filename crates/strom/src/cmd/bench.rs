//! `strom bench`: a Kafka load generator (crate `strom-bench`) with a live progress line
//! on a terminal and a summary, or the full report as JSON with `--json`. Exits non-zero
//! when a delivery failed or the broker does not hold exactly what it acknowledged.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use strom_bench::{BenchConfig, Limit, Live, Mode, Report, Runner};

use super::client::{ClientArgs, Output};

/// `strom bench`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  strom bench --create-topic --partitions 4 --concurrency 128 --duration 30s
  strom bench --mode roundtrip --rate 20000 --warmup 5s --duration 60s --json
  strom bench --message-size 16384 --acks 1 --compression lz4 --messages 100000")]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,

    /// Topic to use.
    #[arg(long, short = 't', default_value = "strom-bench")]
    topic: String,

    /// Create the topic if it does not exist.
    #[arg(long)]
    create_topic: bool,

    /// Partitions of a topic created by --create-topic.
    #[arg(long, default_value_t = 1)]
    partitions: i32,

    /// Replication factor of a topic created by --create-topic.
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,

    /// What to measure: produce (send to delivery report), consume (read the topic from
    /// the beginning), roundtrip (produce and consume at once: end-to-end latency).
    #[arg(long, value_enum, default_value_t = ModeArg::Produce)]
    mode: ModeArg,

    /// Sends in flight at once across all producers (closed loop: each awaits its
    /// delivery report before the next send).
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: u32,

    /// Number of producer client instances.
    #[arg(long, default_value_t = 1)]
    producers: u32,

    /// Number of consumer client instances (partitions are spread over them).
    #[arg(long, default_value_t = 1)]
    consumers: u32,

    /// How long to measure (after the warmup).
    #[arg(long, short = 'd', value_parser = humantime::parse_duration, conflicts_with = "messages")]
    duration: Option<Duration>,

    /// Measure this many messages instead of a duration.
    #[arg(long, short = 'n')]
    messages: Option<u64>,

    /// Payload size in bytes (random, incompressible).
    #[arg(long, short = 's', default_value_t = 256)]
    message_size: usize,

    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    acks: String,

    /// Compression codec.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: String,

    /// Client batching delay in ms; fractions such as 0.05 are allowed. Default 0: with
    /// librdkafka's own default (5 ms) a closed loop turns into stop-and-wait (all in-flight
    /// sends ride in one request, then wait for the linger again), which measures the
    /// linger, not the broker. See docs/PERFORMANCE.md for sub-millisecond values.
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    linger_ms: f64,

    /// Maximum batch size in bytes (librdkafka's default: 1000000).
    #[arg(long, value_name = "BYTES")]
    batch_size: Option<u64>,

    /// Use the idempotent producer.
    #[arg(long)]
    idempotent: bool,

    /// Any other librdkafka setting for the bench's clients, as KEY=VALUE (repeatable, like
    /// kcat's -X), e.g. `-X socket.nagle.disable=true`. Applied after the options above.
    #[arg(long = "client-config", short = 'X', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    client_config: Vec<(String, String)>,

    /// Fixed target rate in messages/s (latency then counts from each message's
    /// intended send time, so stalls are not hidden).
    #[arg(long, value_name = "MSG/S")]
    rate: Option<f64>,

    /// Run this long before measuring.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    warmup: Duration,

    /// Print the full result as JSON on stdout (same as --output json).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Produce,
    Consume,
    Roundtrip,
}

/// `KEY=VALUE` with a non-empty key.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

impl Args {
    fn to_config(&self) -> BenchConfig {
        let mut cfg = BenchConfig::new(&self.client.bootstrap_servers);
        cfg.topic = self.topic.clone();
        cfg.create_topic = self.create_topic;
        cfg.partitions = self.partitions;
        cfg.replication_factor = self.replication_factor;
        cfg.mode = match self.mode {
            ModeArg::Produce => Mode::Produce,
            ModeArg::Consume => Mode::Consume,
            ModeArg::Roundtrip => Mode::Roundtrip,
        };
        cfg.concurrency = self.concurrency;
        cfg.producers = self.producers;
        cfg.consumers = self.consumers;
        cfg.limit = match (self.messages, self.duration) {
            (Some(n), _) => Limit::Messages(n),
            (None, Some(d)) => Limit::Duration(d),
            (None, None) => Limit::Duration(Duration::from_secs(10)),
        };
        cfg.message_size = self.message_size;
        cfg.acks = self.acks.clone();
        cfg.compression = self.compression.clone();
        cfg.linger_ms = Some(self.linger_ms);
        cfg.batch_size = self.batch_size;
        cfg.idempotent = self.idempotent;
        cfg.client_config = self.client_config.clone();
        cfg.rate = self.rate;
        cfg.warmup = self.warmup;
        cfg.timeout = self.client.timeout;
        cfg
    }
}

/// Runs `strom bench`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let json = args.json || args.client.output == Output::Json;
    let config = args.to_config();
    let mode = config.mode;
    let runner = Runner::new(config)?;
    let live = runner.live();
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .name("bench".into())
        .spawn(move || {
            // The receiver outlives this thread unless the main thread died first.
            let _ = tx.send(runner.run());
        })
        .context("cannot start the benchmark thread")?;
    let result = show_progress(mode, &live, &rx);
    worker.join().map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))?;
    let report = result?;
    if json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    check(&report)?;
    Ok(ExitCode::SUCCESS)
}

/// Updates a progress line on a terminal until the run's result arrives.
fn show_progress(
    mode: Mode,
    live: &Live,
    rx: &mpsc::Receiver<Result<Report, strom_bench::Error>>,
) -> anyhow::Result<Report> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut last = (Instant::now(), 0u64, 0u64);
    loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(result) => {
                bar.finish_and_clear();
                return Ok(result?);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                let acked = live.acked.load(Ordering::Relaxed);
                let consumed = live.consumed.load(Ordering::Relaxed);
                let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
                let rate = |now: u64, then: u64| (now - then) as f64 / secs;
                let produced = format!("produced {acked} ({:.0} msg/s)", rate(acked, last.1));
                let read = format!("consumed {consumed} ({:.0} msg/s)", rate(consumed, last.2));
                let errors = live.errors.load(Ordering::Relaxed);
                bar.set_message(match mode {
                    Mode::Produce => format!("{produced}  errors {errors}"),
                    Mode::Consume => format!("{read}  errors {errors}"),
                    Mode::Roundtrip => format!("{produced}  {read}  errors {errors}"),
                });
                bar.tick();
                last = (now, acked, consumed);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bar.finish_and_clear();
                bail!("the benchmark stopped without a result");
            }
        }
    }
}

/// Fails the command when the run had errors or the broker lost or invented records.
fn check(report: &Report) -> anyhow::Result<()> {
    if let Some(v) = &report.verification
        && !v.consistent
    {
        bail!(
            "the broker holds {} records but acknowledged {} (sum of high-watermark growth over {} partitions)",
            v.stored,
            v.acknowledged,
            v.partitions.len()
        );
    }
    if report.errors > 0 {
        bail!("{} errors during the run: {}", report.errors, report.error_samples.join("; "));
    }
    Ok(())
}
