//! `strom sink`: topics into PostgreSQL or SQLite tables, batched, exactly once (the
//! `strom-sink` crate does the work; this module reads flags and the TOML file, serves the
//! metrics and turns SIGTERM/SIGINT into a graceful stop).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use strom_sink::{FileConfig, Mapping, OnError, Route, SinkConfig};
use tokio_util::sync::CancellationToken;

/// Arguments of `strom sink`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  strom sink --topic events --to postgres://app@127.0.0.1:5432/app --create-table
  strom sink --topic orders --to sqlite:///var/lib/app/orders.db --mapping json --table orders
  strom sink --config sink.toml      (several routes; see docs/SINK.md)

Each batch and the partitions' positions are written in one database transaction (table
strom_sink_offsets), so a crash or a rebalance neither loses nor duplicates a row. SIGTERM
writes what is buffered, then exits 0.")]
pub struct Args {
    /// TOML file with the settings below and one or more [[route]] tables; flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Topic(s) to write, comma-separated (each a route with the flags below).
    #[arg(long, value_name = "T[,T2]", value_delimiter = ',')]
    topic: Vec<String>,
    /// Database: postgres://user[:password]@host:port/db or sqlite:///path/to/file.db.
    #[arg(long, value_name = "URL")]
    to: Option<String>,
    /// Table [default: the topic name, with characters other than letters, digits and _ as _].
    /// Only with a single --topic.
    #[arg(long, value_name = "NAME")]
    table: Option<String>,
    /// raw: topic, partition, offset, timestamp, key, value, headers; json: the value's fields
    /// into the existing table's columns of the same names.
    #[arg(long, value_name = "raw|json", default_value = "raw")]
    mapping: Mapping,
    /// Create the table with the raw layout if it does not exist.
    #[arg(long)]
    create_table: bool,
    /// Kafka broker(s) [default: 127.0.0.1:9092].
    #[arg(long, short = 'b', value_name = "HOST:PORT")]
    bootstrap_server: Option<String>,
    /// Consumer group; sinks in one group share the partitions [default: strom-sink].
    #[arg(long, short = 'g', value_name = "GROUP")]
    group: Option<String>,
    /// A record that cannot be written: stop, skip, or dead-letter (into
    /// strom_sink_dead_letters with the reason) [default: dead-letter].
    #[arg(long, value_name = "POLICY")]
    on_error: Option<OnError>,
    /// Pause consuming when this many records are buffered [default: 100000].
    #[arg(long, value_name = "N")]
    max_buffered_records: Option<usize>,
    /// Pause consuming when this many bytes are buffered [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    max_buffered_bytes: Option<usize>,
    /// Write a batch when its oldest record is this old [default: 1s].
    #[arg(long, value_name = "DURATION")]
    flush_interval: Option<String>,
    /// Rows per database transaction [default: 10000].
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Flush workers, each with its own database connection [default: 2].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Give up after this many retries of a transient database error; 0 retries forever
    /// [default: 0].
    #[arg(long, value_name = "N")]
    max_retries: Option<u32>,
    /// First retry delay; doubles per retry with jitter [default: 100ms].
    #[arg(long, value_name = "DURATION")]
    retry_backoff: Option<String>,
    /// Retry delay cap [default: 30s].
    #[arg(long, value_name = "DURATION")]
    max_retry_backoff: Option<String>,
    /// A librdkafka consumer property, KEY=VALUE (repeatable).
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE")]
    property: Vec<String>,
    /// Address of the Prometheus /metrics endpoint; "" turns it off [default: 127.0.0.1:9645].
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:9645")]
    metrics_listen: String,
    /// Draw a status line (rows/s, lag, buffer) [default: when stderr is a terminal].
    #[arg(long, overrides_with = "no_progress")]
    progress: bool,
    /// Never draw the status line.
    #[arg(long)]
    no_progress: bool,
    /// Once running, write `metrics=<addr>` to this file. For tests and scripts.
    #[arg(long, value_name = "FILE", hide = true)]
    ready_file: Option<PathBuf>,
}

/// Builds the configuration from the file and the flags.
fn resolve(args: &Args) -> anyhow::Result<SinkConfig> {
    let mut file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    if args.table.is_some() && args.topic.len() != 1 {
        anyhow::bail!("--table names the table of a single --topic; use a config file for several routes");
    }
    for topic in &args.topic {
        file.routes.retain(|r| &r.topic != topic);
        file.routes.push(Route {
            topic: topic.clone(),
            table: args.table.clone(),
            mapping: Some(args.mapping),
            create_table: args.create_table,
        });
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = args.$field.clone() { file.$field = Some(v); } )* };
    }
    set!(
        to,
        group,
        on_error,
        max_buffered_records,
        max_buffered_bytes,
        flush_interval,
        batch_size,
        workers,
        max_retries,
        retry_backoff,
        max_retry_backoff
    );
    if let Some(b) = &args.bootstrap_server {
        file.bootstrap_servers = Some(b.clone());
    }
    for p in &args.property {
        let (k, v) = p.split_once('=').with_context(|| format!("-X {p:?}: expected KEY=VALUE"))?;
        file.consumer.insert(k.to_string(), v.to_string());
    }
    Ok(SinkConfig::resolve(file)?)
}

/// Runs `strom sink`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = resolve(&args)?;
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.clone()).context("installing the signal handler")?;
    }
    let metrics_stop = CancellationToken::new();
    let mut ready = String::new();
    let _metrics_thread = if args.metrics_listen.is_empty() {
        None
    } else {
        let (thread, addr) = serve_metrics(&args.metrics_listen, metrics_stop.clone())?;
        ready.push_str(&format!("metrics={addr}\n"));
        Some(thread)
    };
    if let Some(path) = &args.ready_file {
        super::serve::write_ready_file(path, &ready)?;
    }
    let progress = !args.no_progress && (args.progress || std::io::stderr().is_terminal());
    let result = strom_sink::run(config, shutdown.clone(), progress);
    metrics_stop.cancel();
    let summary = result?;
    if shutdown.load(Ordering::Relaxed) {
        eprintln!("strom sink: stopped; {} rows written this run", summary.rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// Serves /metrics and /health on a thread of its own (a small tokio runtime); returns the
/// bound address.
fn serve_metrics(
    listen: &str,
    stop: CancellationToken,
) -> anyhow::Result<(std::thread::JoinHandle<()>, std::net::SocketAddr)> {
    let addr: std::net::SocketAddr = listen.parse().with_context(|| format!("metrics address {listen:?}"))?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the metrics runtime")?;
    let listener = runtime.block_on(strom_broker::metrics::bind(addr)).with_context(|| {
        format!("binding the metrics endpoint {addr} (pass --metrics-listen with another address, or \"\")")
    })?;
    let bound = listener.local_addr().context("reading the metrics address")?;
    let handle = strom_broker::metrics::install();
    let hook: strom_broker::metrics::ScrapeHook = Arc::new(|| Box::pin(async {}));
    let ready = Arc::new(AtomicBool::new(true));
    let thread = std::thread::Builder::new()
        .name("sink-metrics".into())
        .spawn(move || runtime.block_on(strom_broker::metrics::serve_http(listener, handle, ready, hook, stop)))
        .context("starting the metrics thread")?;
    tracing::info!(addr = %bound, "metrics at /metrics");
    Ok((thread, bound))
}
