//! The Kafka admin calls librdkafka does not offer, sent with `kafka-protocol` over one
//! connection to a bootstrap broker (any broker forwards them to the controller):
//! AlterPartitionReassignments and ListPartitionReassignments, used by `strom cluster
//! rebalance` to execute its plan and wait for it, and ElectLeaders, used by `strom cluster
//! elect-leaders`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ElectLeadersRequest, ListPartitionReassignmentsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;
use strom_broker::replication::BrokerClient;

use super::client::{ClientArgs, Output, print_json, print_table};

/// Largest admin response this tool reads.
const MAX_RESPONSE: usize = 64 << 20;

async fn connect(c: &ClientArgs) -> anyhow::Result<BrokerClient> {
    let addr = c.bootstrap_servers.split(',').next().unwrap_or_default().trim().to_string();
    tokio::time::timeout(c.timeout, BrokerClient::connect(&addr, "strom-cli", MAX_RESPONSE))
        .await
        .map_err(|_| anyhow::anyhow!("no broker answered at {addr} within {:?}", c.timeout))?
        .with_context(|| format!("cannot reach a broker at {addr}"))
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn error_name(code: i16) -> String {
    kafka_protocol::ResponseError::try_from_code(code).map_or_else(|| format!("error {code}"), |e| format!("{e:?}"))
}

/// The live brokers (with their racks, which librdkafka's metadata does not carry) and
/// every topic's replica assignment, `__consumer_offsets` included (listings leave it out,
/// so it is asked for by name: its partitions choose where groups are coordinated, and are
/// placed like any other), from Metadata requests to the bootstrap broker.
pub async fn cluster_layout(
    c: &ClientArgs,
) -> anyhow::Result<(Vec<strom_cluster::placement::BrokerSlot>, BTreeMap<String, Vec<Vec<i32>>>)> {
    use kafka_protocol::messages::MetadataRequest;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let mut conn = connect(c).await?;
    let all = MetadataRequest::default().with_topics(None).with_allow_auto_topic_creation(false);
    let internal = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name("__consumer_offsets")))]))
        .with_allow_auto_topic_creation(false);
    let md = conn.call(&all, 9).await.context("Metadata failed")?;
    let offsets = conn.call(&internal, 9).await.context("Metadata failed")?;
    let brokers = md
        .brokers
        .iter()
        .map(|b| strom_cluster::placement::BrokerSlot {
            id: b.node_id.0,
            rack: b.rack.as_ref().map(|r| r.to_string()),
            capacity: None,
        })
        .collect();
    let mut topics = BTreeMap::new();
    for t in md.topics.iter().chain(&offsets.topics).filter(|t| t.error_code == 0 && !t.partitions.is_empty()) {
        let Some(topic) = &t.name else { continue };
        let mut parts: Vec<(i32, Vec<i32>)> =
            t.partitions.iter().map(|p| (p.partition_index, p.replica_nodes.iter().map(|b| b.0).collect())).collect();
        parts.sort_by_key(|(id, _)| *id);
        topics.insert(topic.0.to_string(), parts.into_iter().map(|(_, r)| r).collect());
    }
    Ok((brokers, topics))
}

/// Per topic, each partition to move and its target replicas (`None`: cancel its move).
pub type Targets = BTreeMap<String, Vec<(i32, Option<Vec<i32>>)>>;

/// Asks the cluster to move each listed partition to its target replicas (preferred leader
/// first; `None` cancels its reassignment) and returns the refusals, as
/// `topic-partition: reason`.
pub async fn reassign(c: &ClientArgs, targets: &Targets) -> anyhow::Result<Vec<String>> {
    let mut conn = connect(c).await?;
    let topics = targets
        .iter()
        .map(|(topic, parts)| {
            ReassignableTopic::default().with_name(name(topic)).with_partitions(
                parts
                    .iter()
                    .map(|(p, replicas)| {
                        ReassignablePartition::default()
                            .with_partition_index(*p)
                            .with_replicas(replicas.as_ref().map(|r| r.iter().map(|b| BrokerId(*b)).collect()))
                    })
                    .collect(),
            )
        })
        .collect();
    let timeout_ms = i32::try_from(c.timeout.as_millis()).unwrap_or(i32::MAX);
    let request = AlterPartitionReassignmentsRequest::default().with_timeout_ms(timeout_ms).with_topics(topics);
    let response = conn.call(&request, 0).await.context("AlterPartitionReassignments failed")?;
    if response.error_code != 0 {
        bail!("the cluster refused the reassignment: {}", error_name(response.error_code));
    }
    Ok(response
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().filter(|p| p.error_code != 0).map(move |p| {
                let why = p.error_message.as_ref().map_or_else(|| error_name(p.error_code), |m| m.to_string());
                format!("{}-{}: {why}", t.name.0, p.partition_index)
            })
        })
        .collect())
}

/// How many partitions still have a reassignment under way.
pub async fn reassignments_in_progress(c: &ClientArgs) -> anyhow::Result<usize> {
    let mut conn = connect(c).await?;
    let timeout_ms = i32::try_from(c.timeout.as_millis()).unwrap_or(i32::MAX);
    let request = ListPartitionReassignmentsRequest::default().with_timeout_ms(timeout_ms).with_topics(None);
    let response = conn.call(&request, 0).await.context("ListPartitionReassignments failed")?;
    if response.error_code != 0 {
        bail!("listing reassignments failed: {}", error_name(response.error_code));
    }
    Ok(response.topics.iter().map(|t| t.partitions.len()).sum())
}

/// Polls until no reassignment is under way, printing progress; fails after `deadline`.
pub async fn wait_for_reassignments(c: &ClientArgs, deadline: Duration, quiet: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last = usize::MAX;
    loop {
        let left = reassignments_in_progress(c).await?;
        if left == 0 {
            return Ok(());
        }
        if left != last && !quiet {
            eprintln!("{left} partition(s) still moving (new replicas catching up)...");
            last = left;
        }
        if started.elapsed() > deadline {
            bail!("{left} partition(s) were still moving after {deadline:?}; `strom cluster status` shows them");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Arguments of `strom cluster reassign`.
#[derive(Debug, clap::Args)]
pub struct ReassignArgs {
    /// The topic.
    #[arg(long)]
    topic: String,
    /// The partition.
    #[arg(long)]
    partition: i32,
    /// The broker ids to hold it, preferred leader first.
    #[arg(long, value_delimiter = ',', value_name = "ID,...", required_unless_present = "cancel")]
    replicas: Vec<i32>,
    /// Cancel the partition's running reassignment (its original replicas stay).
    #[arg(long, conflicts_with = "replicas")]
    cancel: bool,
    /// Return once the move has started, without waiting for it to finish.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this long (the move goes on in the cluster).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    wait_timeout: Duration,
}

/// Runs `strom cluster reassign`.
pub fn reassign_one(c: &ClientArgs, args: ReassignArgs) -> anyhow::Result<std::process::ExitCode> {
    let target = (!args.cancel).then(|| args.replicas.clone());
    let targets = BTreeMap::from([(args.topic.clone(), vec![(args.partition, target)])]);
    let rt = super::client::runtime()?;
    rt.block_on(async {
        let started = Instant::now();
        let refused = reassign(c, &targets).await?;
        if let Some(why) = refused.first() {
            bail!("refused: {why}");
        }
        if args.cancel || args.no_wait {
            eprintln!("{}", if args.cancel { "cancelled" } else { "started" });
            return Ok(());
        }
        wait_for_reassignments(c, args.wait_timeout, c.output == Output::Json).await?;
        eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
        Ok(())
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Arguments of `strom cluster elect-leaders`.
#[derive(Debug, clap::Args)]
pub struct ElectArgs {
    /// Only this topic's partitions (default: every partition of every topic).
    #[arg(long)]
    topic: Option<String>,
    /// Unclean election: give each partition without a leader to any live replica, even one
    /// missing acknowledged records (they are lost). Default: preferred-leader election.
    #[arg(long)]
    unclean: bool,
}

#[derive(Debug, Serialize)]
struct Elected {
    topic: String,
    partition: i32,
    result: String,
}

/// Runs `strom cluster elect-leaders`.
pub fn elect_leaders(c: &ClientArgs, args: ElectArgs) -> anyhow::Result<std::process::ExitCode> {
    let rt = super::client::runtime()?;
    let results = rt.block_on(async {
        let mut conn = connect(c).await?;
        let partitions = match &args.topic {
            None => None,
            Some(t) => {
                let md = conn
                    .call(
                        &kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
                            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                                .with_name(Some(name(t))),
                        ])),
                        4,
                    )
                    .await
                    .context("Metadata failed")?;
                let found = md.topics.first().filter(|m| m.error_code == 0);
                let Some(found) = found else { bail!("topic {t:?} does not exist") };
                let ids: Vec<i32> = found.partitions.iter().map(|p| p.partition_index).collect();
                Some(vec![TopicPartitions::default().with_topic(name(t)).with_partitions(ids)])
            }
        };
        let timeout_ms = i32::try_from(c.timeout.as_millis()).unwrap_or(i32::MAX);
        let request = ElectLeadersRequest::default()
            .with_election_type(i8::from(args.unclean))
            .with_topic_partitions(partitions)
            .with_timeout_ms(timeout_ms);
        let response = conn.call(&request, 2).await.context("ElectLeaders failed")?;
        if response.error_code != 0 {
            bail!("the cluster refused the election: {}", error_name(response.error_code));
        }
        let mut out = Vec::new();
        for t in response.replica_election_results {
            for p in t.partition_result {
                let result = match p.error_code {
                    0 => "elected".to_string(),
                    84 => "already led by its preferred replica".to_string(),
                    code => p.error_message.as_ref().map_or_else(|| error_name(code), |m| m.to_string()),
                };
                out.push(Elected { topic: t.topic.0.to_string(), partition: p.partition_id, result });
            }
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        anyhow::Ok(out)
    })?;
    match c.output {
        Output::Json => print_json(&results)?,
        Output::Table => {
            let rows: Vec<Vec<String>> =
                results.iter().map(|r| vec![r.topic.clone(), r.partition.to_string(), r.result.clone()]).collect();
            print_table(&["TOPIC", "PARTITION", "RESULT"], rows)?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
