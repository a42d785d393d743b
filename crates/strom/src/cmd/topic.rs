//! `strom topic`: create, list, describe, delete, alter-config, add-partitions — through
//! librdkafka's admin API, so it works against any Kafka-compatible broker.

mod alter;

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use rdkafka::admin::{
    AdminClient, ConfigEntry, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::metadata::{Metadata, MetadataTopic};
use serde::Serialize;

use self::alter::Op;
use super::client::{
    ClientArgs, Output, QuietContext, describe_code, parse_key_value, print_json, print_table, runtime,
};

/// `strom topic ...`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  strom topic create orders --partitions 3 --config retention.ms=86400000
  strom topic list --output json
  strom topic describe orders")]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TopicCommand {
    /// Create a topic.
    #[command(
        after_help = "Example:\n  strom topic create orders --partitions 3 --config retention.ms=86400000 --config compression.type=zstd\n\nEvery topic config of Kafka 4.x is accepted (docs/TOPIC-CONFIGS.md says what each does in Strom)."
    )]
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, short = 'p', default_value_t = 1, allow_negative_numbers = true)]
        partitions: i32,
        /// Number of replicas of each partition.
        #[arg(long, short = 'r', default_value_t = 1, allow_negative_numbers = true)]
        replication_factor: i32,
        /// A topic config `key=value` (repeatable).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// List topics with their partition count and replication factor.
    #[command(after_help = "Example:\n  strom topic list --output json")]
    List {
        /// Also list internal topics (names starting with `__`).
        #[arg(long)]
        internal: bool,
    },
    /// Show partitions (leader, replicas, ISR, log start and end offsets) and the
    /// configs that differ from the defaults.
    #[command(after_help = "Example:\n  strom topic describe orders --output json")]
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and all its records.
    #[command(after_help = "Example:\n  strom topic delete orders")]
    Delete {
        /// Topic name.
        name: String,
    },
    /// Set or remove topic config overrides; other overrides are kept.
    #[command(
        after_help = "Example:\n  strom topic alter-config orders --set retention.ms=3600000 --delete cleanup.policy"
    )]
    AlterConfig {
        /// Topic name.
        name: String,
        /// Set `key=value` (repeatable).
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// Remove the override of `key`, back to the default (repeatable).
        #[arg(long, value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Grow a topic to a total number of partitions.
    #[command(after_help = "Example:\n  strom topic add-partitions orders --total 6")]
    AddPartitions {
        /// Topic name.
        name: String,
        /// The new total partition count (must be larger than the current one).
        #[arg(long, allow_negative_numbers = true)]
        total: i32,
    },
}

/// Runs `strom topic ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let c = &args.client;
    let admin = c.admin()?;
    match args.command {
        TopicCommand::Create { name, partitions, replication_factor, configs } => {
            create(c, &admin, &name, partitions, replication_factor, &configs)
        }
        TopicCommand::List { internal } => list(c, &admin, internal),
        TopicCommand::Describe { name } => describe(c, &admin, &name),
        TopicCommand::Delete { name } => delete(c, &admin, &name),
        TopicCommand::AlterConfig { name, set, delete } => alter_config(c, &admin, &name, &set, &delete),
        TopicCommand::AddPartitions { name, total } => add_partitions(c, &admin, &name, total),
    }?;
    Ok(ExitCode::SUCCESS)
}

type Admin = AdminClient<QuietContext>;

/// Finds `name` in fresh metadata, or fails with "topic ... does not exist".
fn existing<'m>(md: &'m Metadata, name: &str) -> anyhow::Result<&'m MetadataTopic> {
    md.topics()
        .iter()
        .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| anyhow!("topic {name:?} does not exist"))
}

fn replication_factor(t: &MetadataTopic) -> usize {
    t.partitions().first().map_or(0, |p| p.replicas().len())
}

fn create(
    c: &ClientArgs,
    admin: &Admin,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    if partitions < 1 {
        bail!("invalid partition count {partitions}: a topic needs at least 1 partition");
    }
    if replication_factor < 1 {
        bail!("invalid replication factor {replication_factor}: must be at least 1");
    }
    // Fail fast, in one line, when no broker answers.
    c.metadata(admin.inner(), None)?;
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication_factor));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results =
        runtime()?.block_on(admin.create_topics([&topic], &c.admin_options())).map_err(|e| c.unreachable(e))?;
    for r in results {
        if let Err((_, code)) = r {
            let given = if configs.is_empty() {
                String::new()
            } else {
                let list: Vec<_> = configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(" (configs given: {})", list.join(", "))
            };
            bail!("cannot create topic {name:?}: {}{given}", describe_code(code));
        }
    }
    #[derive(Serialize)]
    struct Created<'a> {
        topic: &'a str,
        partitions: i32,
        replication_factor: i32,
        configs: BTreeMap<&'a str, &'a str>,
    }
    let configs = configs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let created = Created { topic: name, partitions, replication_factor, configs };
    match c.output {
        Output::Json => print_json(&created),
        Output::Table => {
            println!("created topic {name} ({partitions} partitions, replication factor {replication_factor})");
            Ok(())
        }
    }
}

/// One row of `topic list`.
#[derive(Debug, Serialize)]
struct Listed {
    name: String,
    partitions: usize,
    replication_factor: usize,
}

fn list(c: &ClientArgs, admin: &Admin, internal: bool) -> anyhow::Result<()> {
    let md = c.metadata(admin.inner(), None)?;
    let mut topics: Vec<Listed> = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && (internal || !t.name().starts_with("__")))
        .map(|t| Listed {
            name: t.name().to_owned(),
            partitions: t.partitions().len(),
            replication_factor: replication_factor(t),
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    match c.output {
        Output::Json => print_json(&topics),
        Output::Table => print_table(
            &["name", "partitions", "replicas"],
            topics
                .iter()
                .map(|t| vec![t.name.clone(), t.partitions.to_string(), t.replication_factor.to_string()])
                .collect(),
        ),
    }
}

/// `topic describe` output.
#[derive(Debug, Serialize)]
struct Described {
    name: String,
    replication_factor: usize,
    partitions: Vec<DescribedPartition>,
    /// Configs whose value differs from the default.
    configs: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct DescribedPartition {
    partition: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    log_start_offset: i64,
    log_end_offset: i64,
    /// Each follower's log end behind the leader's, in offsets (replicated partitions only;
    /// a follower that did not answer is left out).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    replica_lag: BTreeMap<i32, i64>,
    /// For each follower that lacks committed records: how old the oldest of them is, in ms
    /// (now minus its timestamp): how far behind in time the follower is. The leader's
    /// `/metrics` has Kafka's other measure, the time since it was last caught up
    /// (`strom_replica_lag_seconds`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    replica_lag_ms: BTreeMap<i32, i64>,
}

/// The timestamp of the record at `offset` of `topic`-`partition`, read from its leader at
/// `addr` as a consumer would (so only below the high watermark); `None` if it cannot be read.
async fn record_timestamp(c: &ClientArgs, addr: &str, topic: &str, partition: i32, offset: i64) -> Option<i64> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1)
        .with_topics(vec![FetchTopic::default().with_topic(TopicName(topic.to_string().into())).with_partitions(
            vec![
                FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1),
            ],
        )]);
    let mut conn =
        tokio::time::timeout(c.timeout, strom_broker::replication::BrokerClient::connect(addr, "strom-cli", 64 << 20))
            .await
            .ok()?
            .ok()?;
    let response = tokio::time::timeout(c.timeout, conn.call(&request, 4)).await.ok()?.ok()?;
    let data = response.responses.first()?.partitions.first()?;
    let mut records = data.records.clone()?;
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut records).ok()?;
    set.records.iter().find(|r| r.offset >= offset).map(|r| r.timestamp)
}

/// Each replica's own log end offset, asked of the broker holding it with Kafka's debugging
/// replica id (any replica answers from its own log): `(topic partition, broker) -> end`.
/// Brokers that do not answer are left out.
fn replica_log_ends(
    c: &ClientArgs,
    md: &rdkafka::metadata::Metadata,
    topic: &str,
) -> anyhow::Result<BTreeMap<(i32, i32), i64>> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return Ok(BTreeMap::new()) };
    let mut by_broker: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in t.partitions().iter().filter(|p| p.replicas().len() > 1) {
        for r in p.replicas() {
            by_broker.entry(*r).or_default().push(p.id());
        }
    }
    let addresses: BTreeMap<i32, String> =
        md.brokers().iter().map(|b| (b.id(), format!("{}:{}", b.host(), b.port()))).collect();
    let rt = runtime()?;
    let mut out = BTreeMap::new();
    for (broker, partitions) in by_broker {
        let Some(addr) = addresses.get(&broker) else { continue };
        let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-2)).with_topics(vec![
            ListOffsetsTopic::default().with_name(TopicName(topic.to_string().into())).with_partitions(
                partitions
                    .iter()
                    .map(|p| ListOffsetsPartition::default().with_partition_index(*p).with_timestamp(-1))
                    .collect(),
            ),
        ]);
        let answer = rt.block_on(async {
            let mut conn = tokio::time::timeout(
                c.timeout,
                strom_broker::replication::BrokerClient::connect(addr, "strom-cli", 16 << 20),
            )
            .await
            .ok()?
            .ok()?;
            tokio::time::timeout(c.timeout, conn.call(&request, 4)).await.ok()?.ok()
        });
        let Some(answer) = answer else { continue };
        for p in answer.topics.iter().flat_map(|t| &t.partitions).filter(|p| p.error_code == 0) {
            out.insert((p.partition_index, broker), p.offset);
        }
    }
    Ok(out)
}

fn describe(c: &ClientArgs, admin: &Admin, name: &str) -> anyhow::Result<()> {
    let md = c.metadata(admin.inner(), Some(name))?;
    let topic = existing(&md, name)?;
    let mut partitions = Vec::new();
    for p in topic.partitions() {
        let (low, high) = admin
            .inner()
            .fetch_watermarks(name, p.id(), c.timeout)
            .with_context(|| format!("cannot read the offsets of {name}/{}", p.id()))?;
        partitions.push(DescribedPartition {
            partition: p.id(),
            leader: p.leader(),
            replicas: p.replicas().to_vec(),
            isr: p.isr().to_vec(),
            log_start_offset: low,
            log_end_offset: high,
            replica_lag: BTreeMap::new(),
            replica_lag_ms: BTreeMap::new(),
        });
    }
    partitions.sort_by_key(|p| p.partition);
    let ends = replica_log_ends(c, &md, name)?;
    let addresses: BTreeMap<i32, String> =
        md.brokers().iter().map(|b| (b.id(), format!("{}:{}", b.host(), b.port()))).collect();
    let rt = runtime()?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    for p in &mut partitions {
        let Some(leader_end) = ends.get(&(p.partition, p.leader)) else { continue };
        for r in p.replicas.iter().filter(|r| **r != p.leader) {
            let Some(end) = ends.get(&(p.partition, *r)) else { continue };
            p.replica_lag.insert(*r, (leader_end - end).max(0));
            let Some(addr) = addresses.get(&p.leader).filter(|_| *end < p.log_end_offset) else { continue };
            if let Some(ts) = rt.block_on(record_timestamp(c, addr, name, p.partition, *end)) {
                p.replica_lag_ms.insert(*r, (now_ms - ts).max(0));
            }
        }
    }
    let configs = non_default_configs(c, admin, name)?;
    let d = Described { name: name.to_owned(), replication_factor: replication_factor(topic), partitions, configs };
    match c.output {
        Output::Json => print_json(&d),
        Output::Table => {
            println!(
                "topic {}: {} partitions, replication factor {}",
                d.name,
                d.partitions.len(),
                d.replication_factor
            );
            let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
            print_table(
                &["partition", "leader", "replicas", "isr", "log-start", "log-end", "follower-lag"],
                d.partitions
                    .iter()
                    .map(|p| {
                        vec![
                            p.partition.to_string(),
                            p.leader.to_string(),
                            ids(&p.replicas),
                            ids(&p.isr),
                            p.log_start_offset.to_string(),
                            p.log_end_offset.to_string(),
                            p.replica_lag
                                .iter()
                                .map(|(r, lag)| match p.replica_lag_ms.get(r) {
                                    Some(ms) => format!("{r}:{lag} ({:.1}s)", *ms as f64 / 1000.0),
                                    None => format!("{r}:{lag}"),
                                })
                                .collect::<Vec<_>>()
                                .join(","),
                        ]
                    })
                    .collect(),
            )?;
            if !d.configs.is_empty() {
                println!();
                print_table(&["config", "value"], d.configs.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect())?;
            }
            Ok(())
        }
    }
}

/// The topic's config entries as the broker describes them (`DescribeConfigs`).
fn config_entries(c: &ClientArgs, admin: &Admin, name: &str) -> anyhow::Result<Vec<ConfigEntry>> {
    let results = runtime()?
        .block_on(admin.describe_configs([&ResourceSpecifier::Topic(name)], &c.admin_options()))
        .map_err(|e| c.unreachable(e))?;
    let mut entries = Vec::new();
    for r in results {
        let resource =
            r.map_err(|code| anyhow!("cannot read the configs of topic {name:?}: {}", describe_code(code)))?;
        entries.extend(resource.entries);
    }
    Ok(entries)
}

/// The topic's configs whose value is not the default.
fn non_default_configs(c: &ClientArgs, admin: &Admin, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(config_entries(c, admin, name)?
        .into_iter()
        .filter(|e| !e.is_default && e.source != ConfigSource::Default && !e.is_sensitive)
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect())
}

/// The overrides set on the topic itself.
fn topic_overrides(c: &ClientArgs, admin: &Admin, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(config_entries(c, admin, name)?
        .into_iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic || (e.source == ConfigSource::Unknown && !e.is_default))
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect())
}

fn delete(c: &ClientArgs, admin: &Admin, name: &str) -> anyhow::Result<()> {
    let md = c.metadata(admin.inner(), Some(name))?;
    existing(&md, name)?;
    let results =
        runtime()?.block_on(admin.delete_topics(&[name], &c.admin_options())).map_err(|e| c.unreachable(e))?;
    for r in results {
        if let Err((_, code)) = r {
            bail!("cannot delete topic {name:?}: {}", describe_code(code));
        }
    }
    match c.output {
        Output::Json => print_json(&serde_json::json!({ "topic": name, "deleted": true })),
        Output::Table => {
            println!("deleted topic {name}");
            Ok(())
        }
    }
}

fn alter_config(
    c: &ClientArgs,
    admin: &Admin,
    name: &str,
    set: &[(String, String)],
    delete: &[String],
) -> anyhow::Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set key=value and/or --delete key");
    }
    let md = c.metadata(admin.inner(), Some(name))?;
    existing(&md, name)?;
    let ops: Vec<Op<'_>> = set.iter().map(|(k, v)| Op::Set(k, v)).chain(delete.iter().map(|k| Op::Delete(k))).collect();
    alter::incremental_alter_topic(admin.inner(), name, &ops, c.timeout)
        .map_err(|reason| anyhow!("cannot alter configs of topic {name:?}: {reason}"))?;
    let configs = topic_overrides(c, admin, name)?;
    match c.output {
        Output::Json => print_json(&serde_json::json!({ "topic": name, "configs": configs })),
        Output::Table => {
            println!("altered topic {name}; its config overrides are now:");
            print_table(&["config", "value"], configs.into_iter().map(|(k, v)| vec![k, v]).collect())
        }
    }
}

fn add_partitions(c: &ClientArgs, admin: &Admin, name: &str, total: i32) -> anyhow::Result<()> {
    let md = c.metadata(admin.inner(), Some(name))?;
    let current = existing(&md, name)?.partitions().len();
    let wanted = usize::try_from(total).unwrap_or(0);
    if wanted <= current {
        bail!(
            "invalid partition count {total}: topic {name:?} already has {current} partitions and --total must be larger"
        );
    }
    let grow = NewPartitions::new(name, wanted);
    let results =
        runtime()?.block_on(admin.create_partitions([&grow], &c.admin_options())).map_err(|e| c.unreachable(e))?;
    for r in results {
        if let Err((_, code)) = r {
            bail!("cannot add partitions to topic {name:?}: {}", describe_code(code));
        }
    }
    match c.output {
        Output::Json => {
            print_json(&serde_json::json!({ "topic": name, "partitions": wanted, "previous_partitions": current }))
        }
        Output::Table => {
            println!("topic {name} now has {wanted} partitions (was {current})");
            Ok(())
        }
    }
}
