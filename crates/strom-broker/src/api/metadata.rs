//! Metadata (brokers, topics, partitions with their leaders, epochs, replicas and ISR, all as
//! the metadata store says; topic auto-creation) and DescribeCluster.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
};
use tracing::debug;

use super::{str_bytes, topic_name};
use crate::dispatch::RequestContext;
use crate::error::Error;
use crate::metadata::TopicMeta;
use crate::state::BrokerState;

/// Answers Metadata; creates requested topics that do not exist when both the request and the
/// broker config allow it.
pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    let state = &ctx.state;
    let version = ctx.version;
    // Before v4 there is no flag and Kafka always allowed auto-creation.
    let may_create = state.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let topics = match req.topics {
        // All topics: a null list, or (v0 only) an empty one.
        // Internal topics (`__consumer_offsets`) are left out of listings; asked by name, they
        // are answered like any other topic.
        None => listed_topics(state),
        Some(list) if version == 0 && list.is_empty() => listed_topics(state),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                out.push(match t.name {
                    Some(name) => named_topic(state, &name.0, may_create).await,
                    None => match state.metadata.topic_by_id(t.topic_id) {
                        Some(meta) => topic_entry(state, &meta),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(t.topic_id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    },
                });
            }
            out
        }
    };
    let brokers = listed_brokers(state)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(str_bytes(&b.host))
                .with_port(b.port)
                .with_rack(b.rack.as_deref().map(str_bytes))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(&state.metadata.cluster_id())))
        .with_controller_id(BrokerId(state.metadata.controller_id().unwrap_or(-1)))
        .with_topics(topics)
}

/// The brokers Metadata lists: the live (unfenced) ones, and this broker even while it is
/// not yet (or no longer) one of them. A client that bootstrapped here must keep a broker to
/// ask again: a cluster just starting has no live broker at all, and librdkafka treats a
/// Metadata response without brokers as an error ("Partial response"). Listing this broker
/// routes nothing to it: it leads no partition while fenced, and partitions name their real
/// leaders.
fn listed_brokers(state: &BrokerState) -> Vec<crate::metadata::BrokerInfo> {
    let mut brokers = state.metadata.brokers();
    let me = state.node_id();
    if !brokers.iter().any(|b| b.node_id == me) {
        brokers.push(crate::metadata::BrokerInfo {
            node_id: me,
            host: state.advertised_host.clone(),
            port: state.advertised_port,
            rack: state.config.cluster.as_ref().and_then(|c| c.rack.clone()),
        });
        brokers.sort_by_key(|b| b.node_id);
    }
    brokers
}

async fn named_topic(state: &BrokerState, name: &str, may_create: bool) -> MetadataResponseTopic {
    if let Some(meta) = state.metadata.topic(name) {
        return topic_entry(state, &meta);
    }
    let error =
        |e: &Error| MetadataResponseTopic::default().with_name(Some(topic_name(name))).with_error_code(e.code());
    // A name no topic can have is INVALID_TOPIC_EXCEPTION whether or not it would be created
    // (Kafka validates first), so clients fail at once instead of retrying an unknown topic.
    if let Err(e) = crate::metadata::validate_topic_name(name) {
        return error(&e);
    }
    // Internal topics are created by their subsystem, never by a client's Metadata request.
    if !may_create || crate::groups::is_internal_topic(name) {
        return error(&Error::UnknownTopic(name.to_string()));
    }
    match state.create_topic(name, -1, -1, Default::default(), false).await {
        Ok(meta) => {
            debug!(topic = name, "auto-created topic");
            topic_entry(state, &meta)
        }
        // Another request created it between our lookup and the create.
        Err(Error::TopicExists(_)) => match state.metadata.topic(name) {
            Some(meta) => topic_entry(state, &meta),
            None => error(&Error::UnknownTopic(name.to_string())),
        },
        Err(e) => error(&e),
    }
}

/// Every topic but the internal ones.
fn listed_topics(state: &BrokerState) -> Vec<MetadataResponseTopic> {
    let topics = state.metadata.topics();
    topics.iter().filter(|t| !crate::groups::is_internal_topic(&t.name)).map(|t| topic_entry(state, t)).collect()
}

fn topic_entry(state: &BrokerState, t: &TopicMeta) -> MetadataResponseTopic {
    let ids = |v: &[i32]| v.iter().map(|&id| BrokerId(id)).collect::<Vec<_>>();
    let partitions = state
        .metadata
        .partitions(&t.name)
        .iter()
        .map(|p| {
            let entry = MetadataResponsePartition::default()
                .with_partition_index(p.partition)
                .with_leader_id(BrokerId(p.leader.unwrap_or(-1)))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr));
            // No live leader: clients back off and refresh, as Kafka tells them.
            if p.leader.is_none() { entry.with_error_code(ResponseError::LeaderNotAvailable.code()) } else { entry }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.id)
        .with_is_internal(crate::groups::is_internal_topic(&t.name))
        .with_partitions(partitions)
}

/// Answers DescribeCluster: the brokers and controller the metadata store knows.
pub async fn describe_cluster(ctx: &RequestContext, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let state = &ctx.state;
    let brokers = listed_brokers(state)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(str_bytes(&b.host))
                .with_port(b.port)
                .with_rack(b.rack.as_deref().map(str_bytes))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&state.metadata.cluster_id()))
        .with_controller_id(BrokerId(state.metadata.controller_id().unwrap_or(-1)))
        .with_brokers(brokers)
}
