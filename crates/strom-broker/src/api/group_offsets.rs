//! Committed offsets: OffsetCommit (answered once durable), OffsetFetch (v8+ asks for several
//! groups at once; a null topic list means every committed partition) and OffsetDelete.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse,
};

use super::{str_bytes, topic_name};
use crate::dispatch::{Handled, RequestContext};
use crate::groups::offsets::TopicPartition;
use crate::groups::records::OffsetValue;

/// A partition of an OffsetCommit and its own error (`None`: it goes to the group).
type PartitionCheck = (i32, Option<ResponseError>);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// OffsetCommit: partitions of unknown topics and oversized metadata fail on their own; the
/// rest are checked against the group (generation, member) and acknowledged once durable.
pub async fn offset_commit(ctx: &RequestContext, req: OffsetCommitRequest) -> Handled<OffsetCommitResponse> {
    let state = &ctx.state;
    let coordinator = &state.groups;
    let group_error = coordinator.check_group_id(&req.group_id.0, true).err();
    let max_metadata = coordinator.config().offset_metadata_max_bytes;
    let now = now_ms();
    // Each partition's own error, or None if it goes to the group.
    let mut checked: Vec<(kafka_protocol::messages::TopicName, Vec<PartitionCheck>)> = Vec::new();
    let mut entries: Vec<(TopicPartition, OffsetValue)> = Vec::new();
    for t in req.topics {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let metadata = p.committed_metadata.as_deref().unwrap_or("");
            let error = if group_error.is_some() {
                group_error
            } else if !state.partition_exists(&t.name.0, p.partition_index) {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > max_metadata {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                let value = OffsetValue {
                    offset: p.committed_offset,
                    leader_epoch: if ctx.version >= 6 { p.committed_leader_epoch } else { -1 },
                    metadata: metadata.to_string(),
                    commit_timestamp: now,
                };
                entries.push(((t.name.0.to_string(), p.partition_index), value));
                None
            };
            parts.push((p.partition_index, error));
        }
        checked.push((t.name, parts));
    }
    let respond = move |group_result: Result<(), ResponseError>| {
        let topics = checked
            .into_iter()
            .map(|(name, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|(index, error)| {
                        let e = error.or(group_result.err());
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(e.map_or(0, |e| e.code()))
                    })
                    .collect();
                OffsetCommitResponseTopic::default().with_name(name).with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    };
    if entries.is_empty() {
        return Handled::Now(respond(Ok(())));
    }
    let instance = if ctx.version >= 7 { req.group_instance_id.as_ref().map(|s| s.to_string()) } else { None };
    let durable = coordinator
        .commit(&req.group_id.0, req.generation_id_or_member_epoch, req.member_id.to_string(), instance, entries)
        .await;
    Handled::Later(Box::pin(async move { respond(durable.await) }))
}

/// One group's part of an OffsetFetch: the group-level error, or per topic the partitions
/// with their committed offset (`None`: nothing committed).
type Fetched = Result<Vec<(String, Vec<(i32, Option<OffsetValue>)>)>, ResponseError>;

async fn fetch_group(ctx: &RequestContext, group_id: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> Fetched {
    let coordinator = &ctx.state.groups;
    coordinator.check_group_id(group_id, true)?;
    let asked: Option<Vec<TopicPartition>> =
        topics.map(|ts| ts.into_iter().flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p))).collect());
    let found = coordinator.fetch_offsets(group_id, asked).await?;
    // Group by topic, keeping the order asked (or topic order for "all").
    let mut order: Vec<String> = Vec::new();
    let mut by_topic: BTreeMap<String, Vec<(i32, Option<OffsetValue>)>> = BTreeMap::new();
    for ((topic, partition), value) in found {
        if !by_topic.contains_key(&topic) {
            order.push(topic.clone());
        }
        by_topic.entry(topic).or_default().push((partition, value));
    }
    Ok(order
        .into_iter()
        .map(|t| {
            let parts = by_topic.remove(&t).unwrap_or_default();
            (t, parts)
        })
        .collect())
}

/// OffsetFetch. Uncommitted partitions (and unknown topics) read offset -1 without error, as
/// in Kafka.
pub async fn offset_fetch(ctx: &RequestContext, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let version = ctx.version;
    if version >= 8 {
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            let topics =
                g.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
            let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            groups.push(match fetch_group(ctx, &g.group_id.0, topics).await {
                Err(e) => group.with_error_code(e.code()),
                Ok(fetched) => group.with_topics(
                    fetched
                        .into_iter()
                        .map(|(t, parts)| {
                            let partitions = parts
                                .into_iter()
                                .map(|(index, v)| {
                                    let (offset, epoch, metadata) = unpack(v);
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(str_bytes(&metadata)))
                                })
                                .collect();
                            OffsetFetchResponseTopics::default().with_name(topic_name(&t)).with_partitions(partitions)
                        })
                        .collect(),
                ),
            });
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics =
        req.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect::<Vec<_>>());
    let asked = topics.clone();
    match fetch_group(ctx, &req.group_id.0, topics).await {
        Ok(fetched) => {
            let topics = fetched
                .into_iter()
                .map(|(t, parts)| {
                    let partitions = parts
                        .into_iter()
                        .map(|(index, v)| {
                            let (offset, epoch, metadata) = unpack(v);
                            let p = OffsetFetchResponsePartition::default()
                                .with_partition_index(index)
                                .with_committed_offset(offset)
                                .with_metadata(Some(str_bytes(&metadata)));
                            if version >= 5 { p.with_committed_leader_epoch(epoch) } else { p }
                        })
                        .collect();
                    OffsetFetchResponseTopic::default().with_name(topic_name(&t)).with_partitions(partitions)
                })
                .collect();
            OffsetFetchResponse::default().with_topics(topics)
        }
        // v2+ carry a group-level error; v1 only per-partition ones.
        Err(e) if version >= 2 => OffsetFetchResponse::default().with_error_code(e.code()),
        Err(e) => {
            let topics = asked
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    let partitions = ps
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_metadata(Some(str_bytes("")))
                                .with_error_code(e.code())
                        })
                        .collect();
                    OffsetFetchResponseTopic::default().with_name(topic_name(&t)).with_partitions(partitions)
                })
                .collect();
            OffsetFetchResponse::default().with_topics(topics)
        }
    }
}

/// `(offset, leader epoch, metadata)` as OffsetFetch reports them; -1 and "" when nothing is
/// committed.
fn unpack(v: Option<OffsetValue>) -> (i64, i32, String) {
    match v {
        Some(v) => (v.offset, v.leader_epoch, v.metadata),
        None => (-1, -1, String::new()),
    }
}

/// OffsetDelete: an empty group may drop any offsets; a consumer group with members only
/// those of topics it does not subscribe to (`GROUP_SUBSCRIBED_TO_TOPIC` otherwise).
pub async fn offset_delete(ctx: &RequestContext, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let state = &ctx.state;
    let coordinator = &state.groups;
    if let Err(e) = coordinator.check_group_id(&req.group_id.0, true) {
        return OffsetDeleteResponse::default().with_error_code(e.code());
    }
    let mut unknown: Vec<TopicPartition> = Vec::new();
    let mut asked: Vec<TopicPartition> = Vec::new();
    let mut order: Vec<TopicPartition> = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let tp = (t.name.0.to_string(), p.partition_index);
            order.push(tp.clone());
            if !state.partition_exists(&tp.0, tp.1) {
                unknown.push(tp);
            } else {
                asked.push(tp);
            }
        }
    }
    let results = match coordinator.delete_offsets(&req.group_id.0, asked).await {
        Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
        Ok(r) => r,
    };
    let mut codes: BTreeMap<TopicPartition, i16> =
        results.into_iter().map(|(tp, r)| (tp, r.err().map_or(0, |e| e.code()))).collect();
    for tp in unknown {
        codes.insert(tp, ResponseError::UnknownTopicOrPartition.code());
    }
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
    for (topic, partition) in order {
        let code = codes.get(&(topic.clone(), partition)).copied().unwrap_or(0);
        let p = OffsetDeleteResponsePartition::default().with_partition_index(partition).with_error_code(code);
        match topics.last_mut().filter(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(p),
            None => {
                topics.push(OffsetDeleteResponseTopic::default().with_name(topic_name(&topic)).with_partitions(vec![p]))
            }
        }
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
