//! `strom group`: list, describe, reset-offsets, delete consumer groups — through librdkafka,
//! so it works against any Kafka-compatible broker.
//!
//! Which librdkafka call does what, and why:
//! - list and the members of `describe`: `fetch_group_list` (ListGroups + DescribeGroups);
//! - committed offsets: a consumer with `group.id` set that never subscribes (so it never
//!   joins) reads them with `committed` (OffsetFetch). The Rust crate has no "all partitions
//!   of the group" form, so we ask for every partition of every topic and keep the ones with
//!   an offset;
//! - log end offsets: `fetch_watermarks` (ListOffsets); `--to-datetime`: `offsets_for_times`;
//! - reset: the same non-joining consumer `commit`s (OffsetCommit outside group management,
//!   which the broker accepts only while the group has no members);
//! - delete: the admin API's `delete_groups`.
//!
//! Assignments are decoded with `kafka-protocol`'s `ConsumerProtocolAssignment`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use bytes::Buf;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::client::{ClientArgs, Output, QuietContext, print_json, print_table, runtime, short_error};

/// `strom group ...`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  strom group list
  strom group describe billing --output json
  strom group reset-offsets billing --topic orders --to-earliest
  strom group delete billing")]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GroupCommand {
    /// List consumer groups with their state and member count.
    List,
    /// Show a group's members and assignments, and per partition the committed offset, the
    /// log end offset and the lag.
    #[command(after_help = "Example:\n  strom group describe billing --output json")]
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets. Only for a group with no members: stop its
    /// consumers first.
    #[command(after_help = "Examples:
  strom group reset-offsets billing --topic orders --to-earliest
  strom group reset-offsets billing --topic orders --partitions 0,2 --to-offset 1000
  strom group reset-offsets billing --topic orders --to-datetime 2024-05-01T12:00:00Z --dry-run")]
    ResetOffsets {
        /// Group id.
        group: String,
        /// Topic whose offsets move (repeatable).
        #[arg(long, required = true)]
        topic: Vec<String>,
        /// Only these partitions (comma-separated); default: all.
        #[arg(long, value_delimiter = ',')]
        partitions: Vec<i32>,
        #[command(flatten)]
        target: ResetTarget,
        /// Print the plan without committing it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a group and its committed offsets. Only for a group with no members.
    #[command(after_help = "Example:\n  strom group delete billing")]
    Delete {
        /// Group id.
        group: String,
    },
}

/// Where `reset-offsets` moves the offsets (exactly one).
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct ResetTarget {
    /// The first offset still in the log.
    #[arg(long)]
    to_earliest: bool,
    /// The log end: skip everything present now.
    #[arg(long)]
    to_latest: bool,
    /// This offset (clamped to the partition's earliest..latest range).
    #[arg(long, value_name = "N")]
    to_offset: Option<i64>,
    /// The first record at or after this time (RFC 3339, e.g. 2024-05-01T12:00:00Z).
    #[arg(long, value_name = "TIME")]
    to_datetime: Option<String>,
}

/// Runs `strom group`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let c = &args.client;
    match args.command {
        GroupCommand::List => list(c)?,
        GroupCommand::Describe { group } => describe(c, &group)?,
        GroupCommand::ResetOffsets { group, topic, partitions, target, dry_run } => {
            reset(c, &group, &topic, &partitions, &target, dry_run)?
        }
        GroupCommand::Delete { group } => delete(c, &group)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A consumer that reads and commits `group`'s offsets without ever joining it.
fn group_consumer(c: &ClientArgs, group: &str) -> anyhow::Result<BaseConsumer<QuietContext>> {
    let mut cfg = c.config();
    cfg.set("group.id", group).set("enable.auto.commit", "false").set("enable.auto.offset.store", "false");
    cfg.create_with_context(QuietContext).context("cannot create the Kafka consumer")
}

/// Any consumer (for group listing and watermarks).
fn plain_consumer(c: &ClientArgs) -> anyhow::Result<BaseConsumer<QuietContext>> {
    group_consumer(c, "strom-cli")
}

#[derive(Debug, Serialize)]
struct GroupRow {
    group: String,
    state: String,
    protocol_type: String,
    protocol: String,
    members: usize,
}

fn list(c: &ClientArgs) -> anyhow::Result<()> {
    let consumer = plain_consumer(c)?;
    let groups = consumer.fetch_group_list(None, c.timeout).map_err(|e| c.unreachable(e))?;
    let mut rows: Vec<GroupRow> = groups
        .groups()
        .iter()
        .map(|g| GroupRow {
            group: g.name().to_string(),
            state: g.state().to_string(),
            protocol_type: g.protocol_type().to_string(),
            protocol: g.protocol().to_string(),
            members: g.members().len(),
        })
        .collect();
    rows.sort_by(|a, b| a.group.cmp(&b.group));
    match c.output {
        Output::Json => print_json(&rows),
        Output::Table => print_table(
            &["group", "state", "protocol type", "members"],
            rows.into_iter().map(|r| vec![r.group, r.state, r.protocol_type, r.members.to_string()]).collect(),
        ),
    }
}

#[derive(Debug, Serialize)]
struct MemberRow {
    member_id: String,
    client_id: String,
    client_host: String,
    /// Topic -> partitions.
    assignment: BTreeMap<String, Vec<i32>>,
}

#[derive(Debug, Serialize)]
struct OffsetRow {
    topic: String,
    partition: i32,
    /// `None`: nothing committed.
    committed: Option<i64>,
    log_end: Option<i64>,
    lag: Option<i64>,
    member_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct Description {
    group: String,
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberRow>,
    offsets: Vec<OffsetRow>,
}

/// Decodes a consumer-protocol assignment (topic -> partitions); empty if it is not one.
fn decode_assignment(bytes: &[u8]) -> BTreeMap<String, Vec<i32>> {
    let mut out = BTreeMap::new();
    if bytes.len() < 2 {
        return out;
    }
    let mut buf = bytes::Bytes::copy_from_slice(bytes);
    let version = buf.get_i16();
    if let Ok(a) = ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)) {
        for tp in a.assigned_partitions {
            out.entry(tp.topic.0.to_string()).or_insert_with(Vec::new).extend(tp.partitions);
        }
    }
    out
}

/// A group as DescribeGroups reports it.
struct GroupSnapshot {
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberRow>,
}

/// The group, or `None` if it has no metadata on the broker (it may still have offsets).
fn describe_group(
    c: &ClientArgs,
    consumer: &BaseConsumer<QuietContext>,
    group: &str,
) -> anyhow::Result<Option<GroupSnapshot>> {
    let list = consumer.fetch_group_list(Some(group), c.timeout).map_err(|e| c.unreachable(e))?;
    let Some(g) = list.groups().iter().find(|g| g.name() == group && g.state() != "Dead") else { return Ok(None) };
    let members = g
        .members()
        .iter()
        .map(|m| MemberRow {
            member_id: m.id().to_string(),
            client_id: m.client_id().to_string(),
            client_host: m.client_host().to_string(),
            assignment: decode_assignment(m.assignment().unwrap_or_default()),
        })
        .collect();
    Ok(Some(GroupSnapshot {
        state: g.state().to_string(),
        protocol_type: g.protocol_type().to_string(),
        protocol: g.protocol().to_string(),
        members,
    }))
}

fn describe(c: &ClientArgs, group: &str) -> anyhow::Result<()> {
    let consumer = group_consumer(c, group)?;
    let info = describe_group(c, &consumer, group)?;
    let (state, protocol_type, protocol, members) = match info {
        Some(g) => (g.state, g.protocol_type, g.protocol, g.members),
        None => (String::new(), String::new(), String::new(), Vec::new()),
    };
    let exists = !state.is_empty();
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &members {
        for (t, ps) in &m.assignment {
            for p in ps {
                owner.insert((t.clone(), *p), m.member_id.clone());
            }
        }
    }
    // Every partition of every topic, so offsets of unassigned partitions show too.
    let metadata = c.metadata(consumer.client(), None)?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    let committed = consumer
        .committed_offsets(tpl, c.timeout)
        .map_err(|e| anyhow!("cannot read the committed offsets of {group:?}: {}", short_error(&e)))?;
    let mut offsets = Vec::new();
    for e in committed.elements() {
        let key = (e.topic().to_string(), e.partition());
        let committed = e.offset().to_raw().filter(|o| *o >= 0);
        if committed.is_none() && !owner.contains_key(&key) {
            continue;
        }
        let log_end = consumer.fetch_watermarks(e.topic(), e.partition(), c.timeout).ok().map(|(_, high)| high);
        let lag = match (committed, log_end) {
            (Some(c), Some(h)) => Some((h - c).max(0)),
            _ => None,
        };
        let member_id = owner.get(&key).cloned();
        offsets.push(OffsetRow { topic: key.0, partition: key.1, committed, log_end, lag, member_id });
    }
    if !exists && offsets.is_empty() {
        bail!("no consumer group named {group:?}");
    }
    let d = Description {
        group: group.to_string(),
        state: if exists { state } else { "Empty".to_string() },
        protocol_type,
        protocol,
        members,
        offsets,
    };
    match c.output {
        Output::Json => print_json(&d),
        Output::Table => print_description(&d),
    }
}

fn print_description(d: &Description) -> anyhow::Result<()> {
    let protocol = if d.protocol.is_empty() { String::new() } else { format!(", protocol {}", d.protocol) };
    println!("Group {} is {} with {} member(s){protocol}.", d.group, d.state, d.members.len());
    if !d.members.is_empty() {
        println!();
        let rows = d
            .members
            .iter()
            .map(|m| {
                let assignment =
                    m.assignment.iter().map(|(t, ps)| format!("{t}:{}", join(ps))).collect::<Vec<_>>().join(" ");
                vec![m.member_id.clone(), m.client_id.clone(), m.client_host.clone(), assignment]
            })
            .collect();
        print_table(&["member id", "client id", "host", "assignment"], rows)?;
    }
    if !d.offsets.is_empty() {
        println!();
        let dash = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let rows = d
            .offsets
            .iter()
            .map(|o| {
                vec![
                    o.topic.clone(),
                    o.partition.to_string(),
                    dash(o.committed),
                    dash(o.log_end),
                    dash(o.lag),
                    o.member_id.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        print_table(&["topic", "partition", "committed", "log end", "lag", "member id"], rows)?;
    }
    Ok(())
}

fn join(ps: &[i32]) -> String {
    ps.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Fails unless the group has no members: a reset under running consumers would be
/// overwritten by their next commit (and the broker refuses it anyway).
fn require_empty(
    c: &ClientArgs,
    consumer: &BaseConsumer<QuietContext>,
    group: &str,
    action: &str,
) -> anyhow::Result<()> {
    if let Some(g) = describe_group(c, consumer, group)? {
        if !g.members.is_empty() || g.state != "Empty" {
            bail!(
                "cannot {action} group {group:?}: it is {} with {} active member(s); stop its consumers first (a group must be empty)",
                g.state,
                g.members.len()
            );
        }
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct ResetRow {
    topic: String,
    partition: i32,
    previous: Option<i64>,
    new: i64,
}

fn reset(
    c: &ClientArgs,
    group: &str,
    topics: &[String],
    partitions: &[i32],
    target: &ResetTarget,
    dry_run: bool,
) -> anyhow::Result<()> {
    let consumer = group_consumer(c, group)?;
    require_empty(c, &consumer, group, "reset the offsets of")?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let md = c.metadata(consumer.client(), Some(topic))?;
        let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| anyhow!("no topic named {topic:?}"))?;
        if t.error().is_some() {
            bail!("no topic named {topic:?}");
        }
        for p in t.partitions() {
            if partitions.is_empty() || partitions.contains(&p.id()) {
                tpl.add_partition(topic, p.id());
            }
        }
        for p in partitions {
            if !t.partitions().iter().any(|q| q.id() == *p) {
                bail!("topic {topic:?} has no partition {p}");
            }
        }
    }
    let previous = consumer
        .committed_offsets(tpl.clone(), c.timeout)
        .map_err(|e| anyhow!("cannot read the committed offsets of {group:?}: {}", short_error(&e)))?;
    let by_time = match &target.to_datetime {
        Some(s) => {
            let t = humantime::parse_rfc3339_weak(s)
                .with_context(|| format!("--to-datetime {s:?} is not an RFC 3339 time"))?;
            let ms = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            let mut q = tpl.clone();
            q.set_all_offsets(Offset::Offset(ms)).map_err(|e| anyhow!("{e}"))?;
            Some(
                consumer
                    .offsets_for_times(q, c.timeout)
                    .map_err(|e| anyhow!("cannot look up offsets by time: {}", short_error(&e)))?,
            )
        }
        None => None,
    };
    let mut plan = Vec::new();
    let mut commit = TopicPartitionList::new();
    for e in tpl.elements() {
        let (topic, partition) = (e.topic(), e.partition());
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, c.timeout)
            .map_err(|err| anyhow!("cannot read the offsets of {topic}-{partition}: {}", short_error(&err)))?;
        let new = if target.to_earliest {
            low
        } else if target.to_latest {
            high
        } else if let Some(n) = target.to_offset {
            n.clamp(low, high)
        } else {
            // No record at or after the time: the end of the log.
            let found =
                by_time.as_ref().and_then(|r| r.find_partition(topic, partition)).and_then(|e| e.offset().to_raw());
            found.filter(|o| *o >= 0).unwrap_or(high)
        };
        let prev = previous.find_partition(topic, partition).and_then(|e| e.offset().to_raw()).filter(|o| *o >= 0);
        plan.push(ResetRow { topic: topic.to_string(), partition, previous: prev, new });
        commit.add_partition_offset(topic, partition, Offset::Offset(new)).map_err(|e| anyhow!("{e}"))?;
    }
    if !dry_run {
        consumer.commit(&commit, CommitMode::Sync).map_err(|e| {
            anyhow!(
                "committing the new offsets of {group:?} failed: {} (is a consumer of the group running?)",
                short_error(&e)
            )
        })?;
    }
    match c.output {
        Output::Json => print_json(&serde_json::json!({ "group": group, "dry_run": dry_run, "offsets": plan })),
        Output::Table => {
            let dash = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            let rows = plan
                .iter()
                .map(|r| vec![r.topic.clone(), r.partition.to_string(), dash(r.previous), r.new.to_string()])
                .collect();
            print_table(&["topic", "partition", "previous", "new"], rows)?;
            if dry_run {
                println!("(dry run: nothing committed)");
            }
            Ok(())
        }
    }
}

fn delete(c: &ClientArgs, group: &str) -> anyhow::Result<()> {
    let admin = c.admin()?;
    let results =
        runtime()?.block_on(admin.delete_groups(&[group], &c.admin_options())).map_err(|e| c.unreachable(e))?;
    for r in results {
        if let Err((name, code)) = r {
            use rdkafka::types::RDKafkaErrorCode as E;
            match code {
                E::NonEmptyGroup => {
                    bail!("cannot delete group {name:?}: it has active members; stop its consumers first")
                }
                E::GroupIdNotFound => bail!("no consumer group named {name:?}"),
                other => bail!("deleting group {name:?} failed: {other}"),
            }
        }
    }
    match c.output {
        Output::Json => print_json(&serde_json::json!({ "deleted": group })),
        Output::Table => {
            println!("Deleted group {group}.");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_decodes_and_garbage_is_empty() {
        use bytes::BufMut;
        use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
        use kafka_protocol::protocol::Encodable;
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_static_str(
                    "t",
                )))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buf = bytes::BytesMut::new();
        buf.put_i16(1);
        a.encode(&mut buf, 1).expect("encodes");
        let got = decode_assignment(&buf);
        assert_eq!(got.get("t"), Some(&vec![0, 2]));
        assert!(decode_assignment(b"\x00").is_empty());
        assert!(decode_assignment(b"\x00\x01\xff\xff\xff").is_empty());
    }
}
