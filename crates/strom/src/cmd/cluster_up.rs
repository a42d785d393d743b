//! `strom cluster up`: a local Strom cluster for trying things out: N `strom serve` child
//! processes on 127.0.0.1, each with its own data directory, Kafka port, internal port and
//! log file under `--dir`, all voters of the metadata quorum (up to 5; an even count leaves
//! the last node a broker only). Each node gets a small `node-N.toml` that spreads the group
//! coordinators (`groups.offsets_topic_partitions`, four per node; a single node's default is
//! one). The cluster id is made at the first `up` and kept in
//! `<dir>/cluster-id`, so `up` again restarts the same cluster with its data. Ctrl-C (or
//! SIGTERM) stops every node gracefully.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Arguments of `strom cluster up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    nodes: u16,
    /// Directory holding every node's data directory (`node-N/`) and log (`node-N.log`).
    #[arg(long, default_value = "./strom-cluster", value_name = "DIR")]
    dir: PathBuf,
    /// Kafka port of node 1; node N listens on this + N - 1.
    #[arg(long, default_value_t = 9092)]
    base_port: u16,
    /// Internal (Raft, forwarding, heartbeats) port of node 1; node N uses this + N - 1.
    #[arg(long, default_value_t = 19092)]
    internal_base_port: u16,
    /// Metrics port of node 1; node N uses this + N - 1.
    #[arg(long, default_value_t = 9644)]
    metrics_base_port: u16,
}

/// How long every node has to become ready.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a node has to stop after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

struct Node {
    id: u16,
    child: Child,
    kafka: String,
    log: PathBuf,
    exited: bool,
}

/// Runs `strom cluster up` until Ctrl-C or SIGTERM.
pub fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let n = args.nodes;
    let port = |base: u16, id: u16| -> anyhow::Result<u16> {
        base.checked_add(id - 1).with_context(|| format!("port {base} + {} overflows", id - 1))
    };
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let cluster_id = cluster_id(&args.dir)?;
    let voter_count = if n <= 5 { if n % 2 == 1 { n } else { n - 1 } } else { 5 };
    let mut voters = Vec::new();
    for id in 1..=voter_count {
        voters.push(format!("{id}@127.0.0.1:{}", port(args.internal_base_port, id)?));
    }
    let voters = voters.join(",");
    let exe = std::env::current_exe().context("finding the strom executable")?;
    let mut nodes = Vec::new();
    for id in 1..=n {
        let data = args.dir.join(format!("node-{id}"));
        let log = args.dir.join(format!("node-{id}.log"));
        let ready = args.dir.join(format!("node-{id}.ready"));
        let _ = std::fs::remove_file(&ready);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone().context("cloning the log handle")?;
        let kafka = format!("127.0.0.1:{}", port(args.base_port, id)?);
        // Group coordinators spread over the nodes: one __consumer_offsets partition per
        // coordinator slot, four per node (a single node's default is one partition).
        let config = args.dir.join(format!("node-{id}.toml"));
        let toml = format!("[groups]\noffsets_topic_partitions = {}\n", 4 * u32::from(n));
        std::fs::write(&config, toml).with_context(|| format!("writing {}", config.display()))?;
        let child = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--node-id", &id.to_string(), "--listen", &kafka])
            .arg("--data-dir")
            .arg(&data)
            .args(["--metrics-listen", &format!("127.0.0.1:{}", port(args.metrics_base_port, id)?)])
            .args(["--cluster-id", &cluster_id, "--voters", &voters])
            .args(["--internal-listen", &format!("127.0.0.1:{}", port(args.internal_base_port, id)?)])
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        nodes.push((Node { id, child, kafka, log, exited: false }, ready));
    }
    let started = Instant::now();
    let mut failure = None;
    'wait: for (node, ready) in &mut nodes {
        while !ready.exists() {
            if let Some(status) = node.child.try_wait().context("polling a node")? {
                node.exited = true;
                failure =
                    Some(format!("node {} exited during startup ({status}); see {}", node.id, node.log.display()));
                break 'wait;
            }
            if started.elapsed() > START_DEADLINE {
                failure = Some(format!(
                    "node {} was not ready within {START_DEADLINE:?}; see {}",
                    node.id,
                    node.log.display()
                ));
                break 'wait;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut nodes: Vec<Node> = nodes.into_iter().map(|(n, _)| n).collect();
    if let Some(why) = failure {
        stop_all(&mut nodes.iter_mut().collect::<Vec<_>>());
        bail!(why);
    }
    println!("strom cluster {cluster_id}: {n} node(s), {voter_count} voter(s), data in {}", args.dir.display());
    for node in &nodes {
        println!("  node {}: {}  (log {})", node.id, node.kafka, node.log.display());
    }
    let bootstrap: Vec<&str> = nodes.iter().map(|n| n.kafka.as_str()).collect();
    println!("bootstrap servers: {}", bootstrap.join(","));
    println!("status: strom cluster status -b {}", nodes[0].kafka);
    println!("Ctrl-C stops every node.");
    wait_for_signal_or_exits(&mut nodes)?;
    let clean = stop_all(&mut nodes.iter_mut().collect::<Vec<_>>());
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The cluster id kept in `<dir>/cluster-id`, made on first use.
fn cluster_id(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("cluster-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            // Random enough to tell clusters apart (std's per-process random hasher keys).
            let random = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), std::process::id());
            let id = format!("strom-{random:016x}");
            std::fs::write(&path, format!("{id}\n")).with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
    }
}

/// Waits for Ctrl-C or SIGTERM, reporting nodes that exit meanwhile (the rest keep running).
fn wait_for_signal_or_exits(nodes: &mut [Node]) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = term.recv() => return Ok(()),
                _ = tick.tick() => {}
            }
            for node in nodes.iter_mut().filter(|n| !n.exited) {
                if let Ok(Some(status)) = node.child.try_wait() {
                    node.exited = true;
                    eprintln!(
                        "node {} exited ({status}); the others keep running. Log: {}",
                        node.id,
                        node.log.display()
                    );
                }
            }
            if nodes.iter().all(|n| n.exited) {
                return Ok(());
            }
        }
    })
}

/// SIGTERM to every running node, then waits; kills any still running after the deadline.
/// Returns whether every node exited 0.
fn stop_all(nodes: &mut [&mut Node]) -> bool {
    for node in nodes.iter_mut().filter(|n| !n.exited) {
        terminate(node.child.id());
    }
    let deadline = Instant::now() + STOP_DEADLINE;
    let mut clean = true;
    for node in nodes.iter_mut().filter(|n| !n.exited) {
        loop {
            match node.child.try_wait() {
                Ok(Some(status)) => {
                    clean &= status.success();
                    node.exited = true;
                    break;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    eprintln!("node {} did not stop within {STOP_DEADLINE:?}; killing it", node.id);
                    let _ = node.child.kill();
                    let _ = node.child.wait();
                    node.exited = true;
                    clean = false;
                    break;
                }
            }
        }
    }
    clean
}

#[allow(unsafe_code)] // libc's kill(2); std only sends SIGKILL
fn terminate(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) with a pid of a child this process started and has not reaped yet, and
    // a valid signal number; it touches no memory.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}
