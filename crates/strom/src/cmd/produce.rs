//! `strom produce`: one record per line from stdin or a file, through librdkafka's
//! producer. Every failed record is reported on stderr with its line number; the command
//! waits for every delivery report and exits non-zero if any record failed.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use super::client::{ClientArgs, Output, QuietContext, parse_key_value, print_json, short_error};

/// `strom produce <topic>`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  printf 'hello\\nworld\\n' | strom produce greetings
  strom produce orders --file orders.txt --key-separator : --header source=import --acks all")]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,

    /// Topic to write to.
    topic: String,

    /// Read records from this file instead of stdin (one record per line).
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,

    /// Split each line at the first occurrence of this separator into key and value
    /// (a line without it becomes a record without a key).
    #[arg(long, short = 'K', value_name = "SEP")]
    key_separator: Option<String>,

    /// Add a header `key=value` to every record (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    headers: Vec<(String, String)>,

    /// Write every record to this partition (default: the client's partitioner, by key).
    #[arg(long, short = 'p')]
    partition: Option<i32>,

    /// Acknowledgements to wait for: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    acks: String,

    /// Compression codec.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: String,

    /// Use the idempotent producer (no duplicates on retry; needs --acks all).
    #[arg(long)]
    idempotent: bool,

    /// How long the client waits to fill a batch, in ms; fractions allowed (librdkafka's
    /// default: 5).
    #[arg(long, value_name = "MS")]
    linger_ms: Option<f64>,

    /// Give up on a record not acknowledged within this time.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    delivery_timeout: Duration,
}

/// Counts delivery reports and prints each failure with its line number.
#[derive(Debug, Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        QuietContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        QuietContext.error(error, reason);
    }
}

impl ProducerContext for Deliveries {
    /// The record's line number (1-based).
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, line: Self::DeliveryOpaque) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("record at line {line} failed: {}", short_error(e));
            }
        }
    }
}

/// Runs `strom produce`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let c = &args.client;
    if args.idempotent && !matches!(args.acks.as_str(), "all" | "-1") {
        bail!("--idempotent needs --acks all (got --acks {})", args.acks);
    }
    let mut config = c.config();
    config
        .set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("enable.idempotence", args.idempotent.to_string())
        .set("message.timeout.ms", args.delivery_timeout.as_millis().max(1).to_string());
    if let Some(linger) = args.linger_ms {
        config.set("linger.ms", linger.to_string());
    }
    let producer: BaseProducer<Deliveries> =
        config.create_with_context(Deliveries::default()).context("cannot create the Kafka producer")?;

    // Check the broker and the topic first: one clear line instead of a failure per record.
    let md = c.metadata(producer.client(), Some(&args.topic))?;
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == args.topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|&n| n > 0)
        .with_context(|| format!("topic {:?} does not exist", args.topic))?;
    if let Some(p) = args.partition
        && usize::try_from(p).map_or(true, |p| p >= partitions)
    {
        bail!("partition {p} does not exist: topic {:?} has partitions 0..{}", args.topic, partitions - 1);
    }

    let (input, size): (Box<dyn Read>, Option<u64>) = match &args.file {
        Some(path) => {
            let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(f), size)
        }
        None => (Box::new(std::io::stdin().lock()), None),
    };
    let progress = progress_bar(size);
    let sent = send_lines(&args, &producer, BufReader::with_capacity(1 << 20, input), &progress)?;
    progress.finish_and_clear();

    // Wait for every delivery report (each record times out on its own after
    // --delivery-timeout, so this ends).
    let flush_limit = args.delivery_timeout + Duration::from_secs(5);
    if let Err(e) = producer.flush(flush_limit) {
        tracing::debug!(%e, "flush did not complete");
    }
    let ctx = producer.context();
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    let failed = sent.failed + ctx.failed.load(Ordering::Relaxed);
    let unknown = u64::try_from(producer.in_flight_count()).unwrap_or(0);
    let total = sent.records;
    if c.output == Output::Json {
        print_json(&serde_json::json!({
            "topic": args.topic, "records": total, "delivered": delivered,
            "failed": failed + unknown, "bytes": sent.bytes,
        }))?;
    } else if std::io::stderr().is_terminal() {
        eprintln!("produced {delivered} of {total} records to {}", args.topic);
    }
    if failed + unknown > 0 {
        bail!("{} of {total} records failed", failed + unknown);
    }
    Ok(ExitCode::SUCCESS)
}

/// What the reading loop handed to the client.
struct Sent {
    records: u64,
    bytes: u64,
    /// Records librdkafka refused outright (no delivery report will come).
    failed: u64,
}

fn send_lines(
    args: &Args,
    producer: &BaseProducer<Deliveries>,
    mut input: impl BufRead,
    progress: &ProgressBar,
) -> anyhow::Result<Sent> {
    let mut headers = OwnedHeaders::new_with_capacity(args.headers.len());
    for (k, v) in &args.headers {
        headers = headers.insert(Header { key: k, value: Some(v.as_bytes()) });
    }
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let mut line = Vec::new();
    let mut sent = Sent { records: 0, bytes: 0, failed: 0 };
    let started = Instant::now();
    let mut last_tick = started;
    loop {
        line.clear();
        let n = input.read_until(b'\n', &mut line).context("cannot read input")?;
        if n == 0 {
            break;
        }
        sent.bytes += n as u64;
        let text = strip_newline(&line);
        sent.records += 1;
        let (key, value) = split_key(text, separator);
        let mut record = BaseRecord::with_opaque_to(&args.topic, Box::new(sent.records)).payload(value);
        if !args.headers.is_empty() {
            record = record.headers(headers.clone());
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = args.partition {
            record = record.partition(p);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // The client's queue is full: serve delivery reports until it drains.
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => {
                    sent.failed += 1;
                    eprintln!("record at line {} failed: {}", sent.records, short_error(&e));
                    break;
                }
            }
        }
        producer.poll(Duration::ZERO);
        if last_tick.elapsed() >= Duration::from_millis(100) {
            progress.set_position(sent.bytes);
            let rate = sent.records as f64 / started.elapsed().as_secs_f64().max(1e-3);
            progress.set_message(format!("{} records ({rate:.0} records/s)", sent.records));
            last_tick = Instant::now();
        }
    }
    Ok(sent)
}

/// Drops the trailing `\n` (and a `\r` before it).
fn strip_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits at the first `separator`; without one (or without a separator in the line)
/// the whole line is the value.
fn split_key<'a>(line: &'a [u8], separator: Option<&[u8]>) -> (Option<&'a [u8]>, &'a [u8]) {
    let Some(sep) = separator.filter(|s| !s.is_empty()) else {
        return (None, line);
    };
    match line.windows(sep.len()).position(|w| w == sep) {
        Some(i) => (Some(&line[..i]), &line[i + sep.len()..]),
        None => (None, line),
    }
}

/// A bar (bytes, records, rate) for a file when stderr is a terminal; hidden otherwise.
fn progress_bar(size: Option<u64>) -> ProgressBar {
    let Some(size) = size.filter(|_| std::io::stderr().is_terminal()) else {
        return ProgressBar::hidden();
    };
    let style = ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} ({binary_bytes_per_sec}) {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(size).with_style(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_split_at_first_separator() {
        assert_eq!(split_key(b"k:v:w", Some(b":")), (Some(&b"k"[..]), &b"v:w"[..]));
        assert_eq!(split_key(b"novalue", Some(b":")), (None, &b"novalue"[..]));
        assert_eq!(split_key(b"k::v", Some(b"::")), (Some(&b"k"[..]), &b"v"[..]));
        assert_eq!(split_key(b":v", Some(b":")), (Some(&b""[..]), &b"v"[..]));
        assert_eq!(split_key(b"k:v", None), (None, &b"k:v"[..]));
    }

    #[test]
    fn newline_stripping() {
        assert_eq!(strip_newline(b"a\r\n"), b"a");
        assert_eq!(strip_newline(b"a\n"), b"a");
        assert_eq!(strip_newline(b"a"), b"a");
        assert_eq!(strip_newline(b"\n"), b"");
    }
}
