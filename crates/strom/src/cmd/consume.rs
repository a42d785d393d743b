//! `strom consume`: print a topic's records, through librdkafka's consumer.
//!
//! Without `--group` the partitions are assigned directly at the requested start
//! (`--from-beginning`, `--offset`, `--from-timestamp`; default: the end) and nothing is
//! committed. With `--group` the consumer joins the group, starts at the group's
//! committed offsets, and commits what it has printed as it goes: each record's offset is
//! stored after it is written, and stdout is flushed before every commit, so a commit
//! never covers a record that was not printed (at-least-once). Without `--follow` it
//! stops when every partition it reads has reached the end of the log (the high
//! watermark when it got there). Ctrl-C stops it cleanly, committing what was printed.

mod format;

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use self::format::{Record, Template};
use super::client::{ClientArgs, Output, QuietContext, describe_code, short_error};

/// `strom consume <topic>`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  strom consume greetings --from-beginning
  strom consume orders --group billing --follow
  strom consume orders --from-timestamp 2024-05-01T12:00:00Z --format '%p:%o %k=%v'
  strom consume orders --from-beginning --count 10 --output json")]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,

    /// Topic to read.
    topic: String,

    /// Start at the oldest record (with --group: when the group has no committed offset).
    #[arg(long, conflicts_with_all = ["offset", "from_timestamp"])]
    from_beginning: bool,

    /// Start at this offset; a negative N starts N records before the end.
    #[arg(long, allow_negative_numbers = true, conflicts_with_all = ["from_timestamp", "group"])]
    offset: Option<i64>,

    /// Start at the first record at or after this time: RFC 3339
    /// (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00+02:00`) or milliseconds since the epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_timestamp, conflicts_with = "group")]
    from_timestamp: Option<i64>,

    /// Read only this partition.
    #[arg(long, short = 'p', conflicts_with = "group")]
    partition: Option<i32>,

    /// Consume as a member of this consumer group, committing as it goes.
    #[arg(long, short = 'g')]
    group: Option<String>,

    /// Stop after this many records.
    #[arg(long, short = 'n')]
    count: Option<u64>,

    /// Keep waiting for new records instead of stopping at the end of the log.
    #[arg(long, short = 'f')]
    follow: bool,

    /// Print each record with this template (kcat style): %t topic, %p partition,
    /// %o offset, %k key, %v value, %T timestamp (ms), %h headers, %K/%S key/value
    /// length, \n \t escapes. Default: the value alone.
    #[arg(long, conflicts_with = "output")]
    format: Option<String>,
}

/// Parses RFC 3339 (with `Z` or a `±HH:MM` offset) or integer milliseconds.
fn parse_timestamp(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = |why: &str| {
        format!("invalid time {s:?}: {why} (use RFC 3339, e.g. 2024-05-01T12:00:00Z, or ms since the epoch)")
    };
    // humantime reads UTC (`Z`) only; apply an explicit offset ourselves.
    let (base, offset_secs) = match s.len().checked_sub(6).and_then(|i| s.get(i..).map(|tail| (i, tail))) {
        Some((i, tail)) if (tail.starts_with('+') || tail.starts_with('-')) && tail.as_bytes()[3] == b':' => {
            let hours: i64 = tail[1..3].parse().map_err(|_| bad("bad offset hours"))?;
            let mins: i64 = tail[4..6].parse().map_err(|_| bad("bad offset minutes"))?;
            let sign = if tail.starts_with('-') { -1 } else { 1 };
            (format!("{}Z", &s[..i]), sign * (hours * 3600 + mins * 60))
        }
        _ => (s.to_owned(), 0),
    };
    let t = humantime::parse_rfc3339_weak(&base).map_err(|e| bad(&e.to_string()))?;
    let since_epoch = t.duration_since(UNIX_EPOCH).map_err(|_| bad("before 1970"))?;
    let ms = i64::try_from(since_epoch.as_millis()).map_err(|_| bad("too far in the future"))?;
    Ok(ms - offset_secs * 1000)
}

/// Runs `strom consume`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let c = &args.client;
    let template = args.format.as_deref().map(Template::parse).transpose().map_err(anyhow::Error::msg)?;
    let group = args.group.clone();
    let mut config = c.config();
    config
        // librdkafka's `assign` needs a group id even though it never joins the group.
        .set("group.id", group.clone().unwrap_or_else(|| format!("strom-cli-{}", std::process::id())))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", if args.from_beginning { "earliest" } else { "latest" })
        .set("fetch.wait.max.ms", if args.follow { "500" } else { "100" });
    let consumer: BaseConsumer<QuietContext> =
        config.create_with_context(QuietContext).context("cannot create the Kafka consumer")?;

    let md = c.metadata(consumer.client(), Some(&args.topic))?;
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == args.topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
        .filter(|p| !p.is_empty())
        .with_context(|| format!("topic {:?} does not exist", args.topic))?;

    let assigned: Option<HashSet<i32>> = if group.is_some() {
        consumer.subscribe(&[&args.topic]).context("cannot subscribe")?;
        None
    } else {
        let chosen = match args.partition {
            Some(p) if !partitions.contains(&p) => {
                bail!("partition {p} does not exist: topic {:?} has {} partitions", args.topic, partitions.len())
            }
            Some(p) => vec![p],
            None => partitions,
        };
        let tpl = start_offsets(&args, &consumer, &chosen)?;
        consumer.assign(&tpl).context("cannot assign partitions")?;
        Some(chosen.into_iter().collect())
    };

    let stop = stop_on_ctrl_c();
    let printer = Printer { template, json: c.output == Output::Json && args.format.is_none() };
    let mut out = BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let result = consume_loop(&args, &consumer, assigned, &printer, &mut out, &stop);
    // Commit only what reached stdout.
    let flushed = out.flush();
    if group.is_some() && flushed.is_ok() {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => eprintln!("warning: cannot commit offsets: {}", short_error(&e)),
        }
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The start position of each chosen partition (no group).
fn start_offsets(
    args: &Args,
    consumer: &BaseConsumer<QuietContext>,
    partitions: &[i32],
) -> anyhow::Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    let start = match (args.from_beginning, args.offset, args.from_timestamp) {
        (true, _, _) => Offset::Beginning,
        (_, Some(n), _) if n >= 0 => Offset::Offset(n),
        (_, Some(n), _) => Offset::OffsetTail(n.saturating_neg()),
        (_, None, Some(ts)) => {
            // ListOffsets by timestamp; -1 (nothing at or after it) means the end.
            let mut query = TopicPartitionList::new();
            for &p in partitions {
                query.add_partition_offset(&args.topic, p, Offset::Offset(ts))?;
            }
            let found =
                consumer.offsets_for_times(query, args.client.timeout).map_err(|e| args.client.unreachable(e))?;
            for e in found.elements() {
                let offset = match e.offset() {
                    Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                    _ => Offset::End,
                };
                tpl.add_partition_offset(&args.topic, e.partition(), offset)?;
            }
            return Ok(tpl);
        }
        _ => Offset::End,
    };
    for &p in partitions {
        tpl.add_partition_offset(&args.topic, p, start)?;
    }
    Ok(tpl)
}

/// A flag set by Ctrl-C (SIGINT), so the loop can stop, flush and commit.
fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let spawned = std::thread::Builder::new().name("ctrl-c".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    if let Err(e) = spawned {
        tracing::debug!(%e, "no Ctrl-C handler; Ctrl-C will end the process without a commit");
    }
    stop
}

/// How records are printed.
struct Printer {
    template: Option<Template>,
    json: bool,
}

impl Printer {
    fn print(&self, out: &mut impl Write, m: &BorrowedMessage<'_>) -> std::io::Result<()> {
        let headers: Vec<(&str, Option<&[u8]>)> =
            m.headers().map(|h| h.iter().map(|h| (h.key, h.value)).collect()).unwrap_or_default();
        let r = Record {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            key: m.key(),
            value: m.payload(),
            headers: &headers,
        };
        match (&self.template, self.json) {
            (Some(t), _) => t.write(out, &r),
            (None, true) => format::write_json(out, &r),
            (None, false) => format::write_value(out, &r),
        }
    }
}

/// How often printed offsets are committed (after a flush) while consuming in a group.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

fn consume_loop(
    args: &Args,
    consumer: &BaseConsumer<QuietContext>,
    assigned: Option<HashSet<i32>>,
    printer: &Printer,
    out: &mut impl Write,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let in_group = args.group.is_some();
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut printed: u64 = 0;
    let mut last_commit = Instant::now();
    let mut uncommitted = false;
    let started = Instant::now();
    // Joining a group can take a few seconds (the coordinator's initial rebalance delay).
    let assign_wait = args.client.timeout.max(Duration::from_secs(30));
    if args.count == Some(0) {
        return Ok(());
    }
    while !stop.load(Ordering::Relaxed) {
        // Poll without waiting first; when nothing is ready, flush and wait a little.
        let polled = match consumer.poll(Duration::ZERO) {
            Some(r) => Some(r),
            None => {
                out.flush().context("cannot write to stdout")?;
                if in_group && uncommitted && last_commit.elapsed() >= COMMIT_EVERY {
                    commit_async(consumer);
                    uncommitted = false;
                    last_commit = Instant::now();
                }
                consumer.poll(Duration::from_millis(100))
            }
        };
        match polled {
            Some(Ok(m)) => {
                match printer.print(out, &m) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e).context("cannot write to stdout"),
                }
                at_end.remove(&m.partition());
                printed += 1;
                if in_group {
                    consumer.store_offset_from_message(&m).context("cannot store the offset")?;
                    uncommitted = true;
                }
                if args.count.is_some_and(|n| printed >= n) {
                    return Ok(());
                }
                if in_group && last_commit.elapsed() >= COMMIT_EVERY {
                    out.flush().context("cannot write to stdout")?;
                    commit_async(consumer);
                    uncommitted = false;
                    last_commit = Instant::now();
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(KafkaError::MessageConsumption(
                code @ (RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownPartition),
            ))) => bail!("cannot read topic {:?}: {}", args.topic, describe_code(code)),
            Some(Err(e)) => tracing::debug!(%e, "consumer error (retried by the client)"),
            None => {}
        }
        if !args.follow {
            let current: HashSet<i32> = match &assigned {
                Some(a) => a.clone(),
                None => consumer
                    .assignment()
                    .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default(),
            };
            if !current.is_empty() && current.is_subset(&at_end) {
                return Ok(());
            }
            if current.is_empty() && started.elapsed() >= assign_wait {
                bail!(
                    "no partition of {:?} was assigned to this consumer within {}",
                    args.topic,
                    humantime::format_duration(assign_wait)
                );
            }
        }
    }
    Ok(())
}

fn commit_async(consumer: &BaseConsumer<QuietContext>) {
    match consumer.commit_consumer_state(CommitMode::Async) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::debug!(%e, "commit failed; retried at the next one"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_rfc3339_and_ms() {
        assert_eq!(parse_timestamp("1700000000123"), Ok(1_700_000_000_123));
        assert_eq!(parse_timestamp("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(parse_timestamp("2023-11-14T22:13:20.5Z"), Ok(1_700_000_000_500));
        assert_eq!(parse_timestamp("2023-11-15T00:13:20+02:00"), Ok(1_700_000_000_000));
        assert_eq!(parse_timestamp("2023-11-14T20:13:20-02:00"), Ok(1_700_000_000_000));
        assert!(parse_timestamp("yesterday").is_err());
    }
}
