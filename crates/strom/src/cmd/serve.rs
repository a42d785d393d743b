//! `strom serve`: run a Kafka-compatible broker: a cluster of one, or (with `[cluster]` or
//! `--cluster-id`/`--voters`) a node of a Strom cluster.
//!
//! With no arguments it listens on 127.0.0.1:9092 with data in ./strom-data. A TOML file
//! (`--config`, see `config/strom.example.toml`) sets any field of [`strom_broker::Config`];
//! the flags below override the file. SIGINT or SIGTERM shut down gracefully: stop accepting,
//! finish in-flight requests, final flush, clean-shutdown marker, exit 0.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use strom_broker::{Broker, Config};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Arguments of `strom serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// TOML config file; flags override its values. Every field is optional (see
    /// config/strom.example.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9092]. Port 0 picks a free port.
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<String>,
    /// host:port clients are told to connect to [default: the bound address].
    #[arg(long, value_name = "HOST:PORT")]
    advertised_address: Option<String>,
    /// Data directory [default: ./strom-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Broker id [default: 1].
    #[arg(long, value_name = "ID")]
    node_id: Option<i32>,
    /// Address of the Prometheus `/metrics` and `/health` endpoint [default: 127.0.0.1:9644];
    /// "" turns it off.
    #[arg(long, value_name = "IP:PORT")]
    metrics_listen: Option<String>,
    /// Join a Strom cluster with this id (every node names the same one); with --voters.
    /// Overrides `[cluster] id`.
    #[arg(long, value_name = "ID")]
    cluster_id: Option<String>,
    /// The cluster's metadata voters, `node_id@host:port` of their internal listeners,
    /// comma-separated (1, 3 or 5). Overrides `[cluster] voters`.
    #[arg(long, value_name = "ID@HOST:PORT,...", value_delimiter = ',')]
    voters: Option<Vec<String>>,
    /// Address of this node's internal listener (Raft, forwarding, heartbeats)
    /// [default: 127.0.0.1:9093]. Overrides `[cluster] internal_listen`.
    #[arg(long, value_name = "IP:PORT")]
    internal_listen: Option<String>,
    /// This broker's rack, for rack-aware placement. Overrides `[cluster] rack`.
    #[arg(long, value_name = "RACK")]
    rack: Option<String>,
    /// Once listening, write the bound address to this file (atomically). Used by tests and
    /// scripts to wait for readiness without sleeping.
    #[arg(long, value_name = "FILE", hide = true)]
    ready_file: Option<PathBuf>,
}

/// Runs the broker until SIGINT/SIGTERM.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.advertised_address {
        config.advertised_address = Some(v);
    }
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.node_id {
        config.node_id = v;
    }
    if let Some(v) = args.metrics_listen {
        config.metrics_listen = v;
    }
    if args.cluster_id.is_some() || args.voters.is_some() || args.internal_listen.is_some() || args.rack.is_some() {
        let c = config.cluster.get_or_insert_with(Default::default);
        if let Some(v) = args.cluster_id {
            c.id = v;
        }
        if let Some(v) = args.voters {
            c.voters = v;
        }
        if let Some(v) = args.internal_listen {
            c.internal_listen = v;
        }
        if let Some(v) = args.rack {
            c.rack = Some(v);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strom-broker")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, args.ready_file))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    raise_open_file_limit();
    let shutdown = CancellationToken::new();
    let data_dir = config.data_dir.clone();
    let metrics_listen = config.metrics_listen.clone();
    let handle = strom_broker::metrics::install();
    let broker = Broker::bind(config, shutdown.clone()).await?;
    info!(addr = %broker.local_addr(), data_dir = %data_dir.display(), "strom serve: listening");
    let mut ready_contents = broker.local_addr().to_string();
    if let Some(node) = &broker.state().cluster {
        ready_contents.push_str(&format!("\ninternal={}", node.internal_addr()));
    }
    let ready = Arc::new(AtomicBool::new(false));
    if !metrics_listen.is_empty() {
        let addr: std::net::SocketAddr =
            metrics_listen.parse().with_context(|| format!("metrics address {metrics_listen:?}"))?;
        let listener =
            strom_broker::metrics::bind(addr).await.with_context(|| format!("binding the metrics endpoint {addr}"))?;
        let bound = listener.local_addr().context("reading the metrics address")?;
        info!(addr = %bound, "metrics endpoint at /metrics, readiness at /health");
        ready_contents.push_str(&format!("\nmetrics={bound}"));
        let hook = strom_broker::metrics::broker_scrape_hook(broker.state().clone());
        tokio::spawn(strom_broker::metrics::serve_http(listener, handle, ready.clone(), hook, shutdown.clone()));
    }
    if let Some(path) = ready_file {
        write_ready_file(&path, &ready_contents)?;
    }
    ready.store(true, Ordering::Release);
    tokio::spawn(wait_for_signal(broker.state().clone(), shutdown));
    broker.run().await?;
    Ok(())
}

/// Raises the soft open-file limit to the hard one, as Go's runtime and most servers do: each
/// partition keeps its active segment open, so the common soft default of 1,024 would cap a
/// broker near a thousand partitions while the hard limit (often 524,288) allows far more.
/// Failure is only logged: the broker still runs, and an exhausted limit is reported when hit.
#[allow(unsafe_code)] // libc's rlimit calls; no crate in the tree wraps them
fn raise_open_file_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let from = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            info!(from, to = lim.rlim_max, "raised the open-file limit");
        } else {
            tracing::warn!(limit = from, error = %std::io::Error::last_os_error(), "could not raise the open-file limit");
        }
    }
}

/// On the first SIGINT or SIGTERM: a controlled shutdown (see
/// [`strom_broker::BrokerState::controlled_shutdown`]), then cancels `shutdown`.
async fn wait_for_signal(state: std::sync::Arc<strom_broker::BrokerState>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers; stop the broker with SIGKILL");
            return;
        }
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    info!(signal = name, "shutting down");
    // In a cluster, hand leadership over first (a second signal stops at once).
    tokio::select! {
        _ = state.controlled_shutdown(CONTROLLED_SHUTDOWN_DEADLINE) => {}
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    shutdown.cancel();
}

/// How long a clean stop may spend moving leadership away before it stops anyway: a commit
/// takes milliseconds on a healthy cluster; without a quorum (the whole cluster stopping at
/// once) nothing can move, and the wait only delays the stop.
const CONTROLLED_SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// Writes `contents` to `path` via a temporary file and a rename, so a reader never sees a
/// partial address. Not fsynced: the file describes this run only, and a power cut ends the run.
pub(crate) fn write_ready_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
