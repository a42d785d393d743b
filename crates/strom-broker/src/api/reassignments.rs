//! Moving replicas and leaders: AlterPartitionReassignments, ListPartitionReassignments
//! (KIP-455) and ElectLeaders (KIP-460). Any broker answers: each change goes to the
//! controller through the metadata store, and is answered once it is applied here. A
//! reassignment's answer means "started": the controller completes it once the new replicas
//! are in sync, and ListPartitionReassignments shows it until then.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId, ElectLeadersRequest,
    ElectLeadersResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::{message, topic_name};
use crate::dispatch::RequestContext;
use crate::error::Error;

/// Kafka's election type for an unclean election (0 is preferred).
const ELECTION_UNCLEAN: i8 = 1;

/// Starts, replaces or cancels (null replicas) each listed partition's reassignment.
pub async fn alter_partition_reassignments(
    ctx: &RequestContext,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let state = &ctx.state;
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = t.name.0.to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let target: Option<Vec<i32>> = p.replicas.map(|r| r.into_iter().map(|b| b.0).collect());
            let outcome = async {
                let current = state
                    .metadata
                    .partitions(&topic)
                    .into_iter()
                    .find(|m| m.partition == p.partition_index)
                    .ok_or_else(|| Error::UnknownTopic(format!("{topic}-{}", p.partition_index)))?;
                if let Some(target) = &target {
                    // KIP-860: a reassignment that changes the replica count needs the
                    // client's consent (v1's flag; v0 clients never change it by accident).
                    let original = current.replicas.len() - current.adding.len();
                    if target.len() != original && !req.allow_replication_factor_change {
                        return Err(Error::InvalidReplicationFactor(i16::try_from(target.len()).unwrap_or(i16::MAX)));
                    }
                }
                state.metadata.reassign_partition(&topic, p.partition_index, target.clone()).await.map_err(Error::from)
            }
            .await;
            let r = ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(match outcome {
                Ok(()) => {
                    tracing::info!(%topic, partition = p.partition_index, ?target, "partition reassignment requested");
                    r
                }
                Err(e) => r.with_error_code(e.code()).with_error_message(message(&e)),
            });
        }
        responses.push(ReassignableTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(req.allow_replication_factor_change)
        .with_responses(responses)
}

/// The reassignments under way: of the listed partitions, or of every partition (null).
pub async fn list_partition_reassignments(
    ctx: &RequestContext,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let state = &ctx.state;
    let wanted: Vec<(String, Option<Vec<i32>>)> = match req.topics {
        Some(topics) => topics.into_iter().map(|t| (t.name.0.to_string(), Some(t.partition_indexes))).collect(),
        None => state.metadata.topics().into_iter().map(|t| (t.name, None)).collect(),
    };
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for (name, only) in wanted {
        let partitions: Vec<OngoingPartitionReassignment> = state
            .metadata
            .partitions(&name)
            .into_iter()
            .filter(|p| !p.adding.is_empty() || !p.removing.is_empty())
            .filter(|p| only.as_ref().is_none_or(|o| o.contains(&p.partition)))
            .map(|p| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(p.partition)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding))
                    .with_removing_replicas(ids(&p.removing))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(OngoingTopicReassignment::default().with_name(topic_name(&name)).with_partitions(partitions));
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

/// Elects the preferred (or, for an unclean election, any live) replica of each listed
/// partition, or of every partition (null).
pub async fn elect_leaders(ctx: &RequestContext, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let state = &ctx.state;
    let unclean = ctx.version >= 1 && req.election_type == ELECTION_UNCLEAN;
    let wanted: Vec<(String, Vec<i32>)> = match req.topic_partitions {
        Some(list) => list.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect(),
        None => state
            .metadata
            .topics()
            .into_iter()
            .map(|t| {
                let n = t.partitions;
                (t.name, (0..n).collect())
            })
            .collect(),
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (topic, partitions) in wanted {
        let mut out = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let outcome = state.metadata.elect_leader(&topic, partition, unclean).await.map_err(Error::from);
            let r = PartitionResult::default().with_partition_id(partition);
            out.push(match outcome {
                Ok(()) => {
                    tracing::info!(%topic, partition, unclean, "leader elected on request");
                    r
                }
                Err(e) => r.with_error_code(e.code()).with_error_message(message(&e)),
            });
        }
        results.push(ReplicaElectionResult::default().with_topic(topic_name(&topic)).with_partition_result(out));
    }
    // v0 has no top-level error; from v1 it is NONE when the per-partition results say it all.
    ElectLeadersResponse::default().with_error_code(0).with_replica_election_results(results)
}
