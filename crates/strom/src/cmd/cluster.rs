//! `strom cluster info`: brokers, controller, cluster id, topic and partition counts;
//! `strom cluster status`: the same per broker (leaders and replicas held) with the offline
//! and under-replicated partitions; both from Metadata requests made by librdkafka.
//! `strom cluster up` ([`super::cluster_up`]) runs a local cluster.

use std::process::ExitCode;

use rdkafka::client::{Client, ClientContext};
use serde::Serialize;

use super::client::{ClientArgs, Output, print_json, print_table};

/// `strom cluster ...`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  strom cluster up --nodes 3\n  strom cluster status -b 127.0.0.1:9092\n  strom cluster info --output json"
)]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClusterCommand {
    /// Show the brokers, the controller, and how many topics and partitions there are.
    #[command(after_help = "Example:\n  strom cluster info -b 127.0.0.1:9092")]
    Info,
    /// Show every broker with the partitions it leads and holds, the controller, and the
    /// offline (no leader) and under-replicated (ISR smaller than the replicas) partitions.
    #[command(after_help = "Example:\n  strom cluster status -b 127.0.0.1:9092")]
    Status,
    /// Move replicas so every topic is balanced over the live brokers (for a broker that
    /// joined, left, or is --exclude'd), then wait until the moves are done. Each move adds the
    /// new replica, waits until it is in sync, moves leadership if need be, and only then drops
    /// the old one. --dry-run prints the plan with a reason for each move.
    #[command(
        after_help = "Examples:\n  strom cluster rebalance --dry-run --exclude 3\n  strom cluster rebalance --exclude 3"
    )]
    Rebalance(super::cluster_rebalance::RebalanceArgs),
    /// Move one partition to the given brokers (preferred leader first) and wait until it is
    /// done: the new replicas catch up and join the ISR before the old ones are dropped.
    #[command(
        after_help = "Examples:\n  strom cluster reassign --topic orders --partition 0 --replicas 2,3\n  strom cluster reassign --topic orders --partition 0 --cancel"
    )]
    Reassign(super::cluster_reassign::ReassignArgs),
    /// Move each partition's leadership to its preferred replica (the first listed) where
    /// that replica is live and in sync, or with --unclean give offline partitions to any
    /// live replica (losing what it lacks).
    #[command(after_help = "Examples:\n  strom cluster elect-leaders\n  strom cluster elect-leaders --topic orders")]
    ElectLeaders(super::cluster_reassign::ElectArgs),
    /// Run a local cluster of N nodes on 127.0.0.1 (separate data directories and ports)
    /// until Ctrl-C, and print its bootstrap servers.
    #[command(after_help = "Example:\n  strom cluster up --nodes 3\n  kcat -b 127.0.0.1:9092 -L")]
    Up(super::cluster_up::UpArgs),
}

#[derive(Debug, Serialize)]
struct Info {
    cluster_id: Option<String>,
    /// `None` when the broker did not say.
    controller: Option<i32>,
    brokers: Vec<Broker>,
    /// User topics (internal `__*` topics are counted apart).
    topics: usize,
    partitions: usize,
    internal_topics: usize,
}

#[derive(Debug, Serialize)]
struct Broker {
    id: i32,
    host: String,
    port: i32,
}

/// Runs `strom cluster ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        ClusterCommand::Info => info(&args.client),
        ClusterCommand::Status => status(&args.client),
        ClusterCommand::Up(up) => super::cluster_up::run(up),
        ClusterCommand::Rebalance(r) => super::cluster_rebalance::run(&args.client, r),
        ClusterCommand::Reassign(r) => super::cluster_reassign::reassign_one(&args.client, r),
        ClusterCommand::ElectLeaders(e) => super::cluster_reassign::elect_leaders(&args.client, e),
    }
}

#[derive(Debug, Serialize)]
struct Status {
    cluster_id: Option<String>,
    controller: Option<i32>,
    brokers: Vec<BrokerLoad>,
    partitions: usize,
    offline: Vec<String>,
    under_replicated: Vec<String>,
    /// Brokers that hold replicas but are not live (fenced: dead, cut off, or restarting),
    /// with how many replicas each holds.
    unavailable_brokers: Vec<UnavailableBroker>,
    /// Partitions whose replicas are moving (a reassignment under way).
    reassigning: usize,
}

#[derive(Debug, Serialize)]
struct UnavailableBroker {
    id: i32,
    replicas: usize,
}

#[derive(Debug, Serialize)]
struct BrokerLoad {
    id: i32,
    host: String,
    port: i32,
    leaders: usize,
    replicas: usize,
}

fn status(c: &ClientArgs) -> anyhow::Result<ExitCode> {
    let admin = c.admin()?;
    let md = c.metadata(admin.inner(), None)?;
    // Listings leave internal topics out; the group coordinator's is asked for by name.
    let internal = c.metadata(admin.inner(), Some("__consumer_offsets")).ok();
    let mut brokers: Vec<BrokerLoad> = md
        .brokers()
        .iter()
        .map(|b| BrokerLoad { id: b.id(), host: b.host().to_owned(), port: b.port(), leaders: 0, replicas: 0 })
        .collect();
    brokers.sort_by_key(|b| b.id);
    let (mut partitions, mut offline, mut under) = (0, Vec::new(), Vec::new());
    let mut away: std::collections::BTreeMap<i32, usize> = std::collections::BTreeMap::new();
    let topics = md.topics().iter().chain(internal.iter().flat_map(|m| m.topics().iter()));
    for t in topics.filter(|t| t.error().is_none()) {
        for p in t.partitions() {
            partitions += 1;
            let name = format!("{}-{}", t.name(), p.id());
            if p.leader() < 0 {
                offline.push(name.clone());
            }
            if p.isr().len() < p.replicas().len() {
                under.push(name);
            }
            for b in brokers.iter_mut() {
                b.leaders += usize::from(b.id == p.leader());
                b.replicas += usize::from(p.replicas().contains(&b.id));
            }
            for r in p.replicas().iter().filter(|r| !brokers.iter().any(|b| b.id == **r)) {
                *away.entry(*r).or_insert(0) += 1;
            }
        }
    }
    let reassigning =
        super::client::runtime()?.block_on(super::cluster_reassign::reassignments_in_progress(c)).unwrap_or_default();
    let status = Status {
        cluster_id: admin.inner().fetch_cluster_id(c.timeout),
        controller: controller_id(admin.inner(), c.timeout),
        brokers,
        partitions,
        offline,
        under_replicated: under,
        unavailable_brokers: away.into_iter().map(|(id, replicas)| UnavailableBroker { id, replicas }).collect(),
        reassigning,
    };
    match c.output {
        Output::Json => print_json(&status)?,
        Output::Table => {
            let show = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
            println!("cluster id:  {}", show(status.cluster_id.clone()));
            println!("controller:  {}", show(status.controller.map(|c| c.to_string())));
            println!(
                "partitions:  {} ({} offline, {} under-replicated)",
                status.partitions,
                status.offline.len(),
                status.under_replicated.len()
            );
            println!();
            print_table(
                &["id", "host", "port", "leaders", "replicas", "controller"],
                status
                    .brokers
                    .iter()
                    .map(|b| {
                        let ctl = if Some(b.id) == status.controller { "*" } else { "" };
                        vec![
                            b.id.to_string(),
                            b.host.clone(),
                            b.port.to_string(),
                            b.leaders.to_string(),
                            b.replicas.to_string(),
                            ctl.to_owned(),
                        ]
                    })
                    .collect(),
            )?;
            if !status.offline.is_empty() {
                println!("\noffline (no live leader): {}", status.offline.join(", "));
            }
            if !status.under_replicated.is_empty() {
                println!("under-replicated: {}", status.under_replicated.join(", "));
            }
            if !status.unavailable_brokers.is_empty() {
                let list: Vec<String> =
                    status.unavailable_brokers.iter().map(|b| format!("{} ({} replicas)", b.id, b.replicas)).collect();
                println!("not live (fenced), holding replicas: {}", list.join(", "));
            }
            if status.reassigning > 0 {
                println!("reassignments under way: {} partition(s)", status.reassigning);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn info(c: &ClientArgs) -> anyhow::Result<ExitCode> {
    let admin = c.admin()?;
    let md = c.metadata(admin.inner(), None)?;
    let mut brokers: Vec<Broker> =
        md.brokers().iter().map(|b| Broker { id: b.id(), host: b.host().to_owned(), port: b.port() }).collect();
    brokers.sort_by_key(|b| b.id);
    let (internal, user): (Vec<_>, Vec<_>) =
        md.topics().iter().filter(|t| t.error().is_none()).partition(|t| t.name().starts_with("__"));
    let info = Info {
        cluster_id: admin.inner().fetch_cluster_id(c.timeout),
        controller: controller_id(admin.inner(), c.timeout),
        topics: user.len(),
        partitions: user.iter().map(|t| t.partitions().len()).sum(),
        internal_topics: internal.len(),
        brokers,
    };
    match c.output {
        Output::Json => print_json(&info)?,
        Output::Table => {
            let show = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
            println!("cluster id: {}", show(info.cluster_id.clone()));
            println!("controller: {}", show(info.controller.map(|c| c.to_string())));
            println!("topics:     {} ({} partitions)", info.topics, info.partitions);
            println!();
            print_table(
                &["id", "host", "port", "controller"],
                info.brokers
                    .iter()
                    .map(|b| {
                        let is_controller = if Some(b.id) == info.controller { "*" } else { "" };
                        vec![b.id.to_string(), b.host.clone(), b.port.to_string(), is_controller.to_owned()]
                    })
                    .collect(),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The controller's broker id from the client's last metadata, if the broker reported one.
///
/// The `rdkafka` crate does not wrap `rd_kafka_controllerid`, so call it directly.
#[allow(unsafe_code)]
fn controller_id<C: ClientContext>(client: &Client<C>, timeout: std::time::Duration) -> Option<i32> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `native_ptr` is the live `rd_kafka_t` owned by `client`, which outlives this
    // call; `rd_kafka_controllerid` only reads the handle's cached metadata (waiting up to
    // `ms` for it) and returns a plain integer.
    let id = unsafe { rdkafka::bindings::rd_kafka_controllerid(client.native_ptr(), ms) };
    (id >= 0).then_some(id)
}
