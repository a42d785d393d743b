//! [`RaftMetadataStore`]: the broker's [`MetadataStore`] over a [`ClusterNode`].
//!
//! Reads answer from this node's applied state (memory, a read lock for a copy). Writes go to
//! the controller wherever it is ([`ClusterNode::submit`]) and resolve once this node has
//! applied them, so the broker reads its own writes.

use std::sync::Arc;
use std::time::Duration;

use strom_meta::{
    BrokerInfo, IsrChange, MetaError, MetadataStore, PartitionMeta, StoreFuture, TopicConfigs, TopicMeta,
    validate_topic_name,
};
use uuid::Uuid;

use crate::controller::{ControllerError, ControllerReply, ControllerRequest};
use crate::node::ClusterNode;
use crate::state::{Applied, Rejected, TopicRecord};

/// How long a metadata write waits for the controller before failing as unavailable
/// (retriable): long enough for an election, short of clients' request timeouts.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The cluster's metadata as one broker uses it.
#[derive(Debug, Clone)]
pub struct RaftMetadataStore {
    node: Arc<ClusterNode>,
}

impl RaftMetadataStore {
    /// The store of `node`.
    pub fn new(node: Arc<ClusterNode>) -> RaftMetadataStore {
        RaftMetadataStore { node }
    }

    /// The node underneath.
    pub fn node(&self) -> &Arc<ClusterNode> {
        &self.node
    }

    async fn write(&self, topic: &str, request: ControllerRequest) -> Result<TopicMeta, MetaError> {
        match self.node.submit(request, WRITE_TIMEOUT).await {
            Ok(ControllerReply::Committed { applied: Applied::Topic { name, record }, .. }) => {
                Ok(topic_meta(&name, &record))
            }
            Ok(other) => Err(MetaError::Unavailable(format!("unexpected controller reply {other:?}"))),
            Err(e) => Err(meta_error(topic, e)),
        }
    }
}

/// A topic record as the broker sees it.
pub fn topic_meta(name: &str, t: &TopicRecord) -> TopicMeta {
    TopicMeta {
        name: name.to_string(),
        id: t.id,
        partitions: t.partitions.len() as i32,
        configs: t.configs.clone(),
        leader_epochs: t
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.leader_epoch != 0)
            .map(|(i, p)| (i as i32, p.leader_epoch))
            .collect(),
    }
}

fn meta_error(topic: &str, e: ControllerError) -> MetaError {
    match e {
        ControllerError::Rejected(Rejected::TopicExists(t)) => MetaError::TopicExists(t),
        ControllerError::Rejected(Rejected::UnknownTopic(t)) => MetaError::UnknownTopic(t),
        ControllerError::InvalidPartitions(reason) => MetaError::InvalidPartitions { topic: topic.to_string(), reason },
        ControllerError::InvalidTopic(_) => {
            MetaError::InvalidTopic { name: topic.to_string(), reason: "refused by the controller" }
        }
        ControllerError::InvalidReplicationFactor { requested, reason } => {
            MetaError::InvalidReplicationFactor { requested, reason }
        }
        e => MetaError::Unavailable(e.to_string()),
    }
}

/// A controller refusal of a reassignment or election, as the broker reports it.
fn partition_error(topic: &str, e: ControllerError) -> MetaError {
    use strom_meta::PartitionRefusal as K;
    let reason = e.to_string();
    let kind = match e {
        ControllerError::Rejected(Rejected::UnknownTopic(_) | Rejected::UnknownPartition { .. }) => K::UnknownPartition,
        ControllerError::Rejected(Rejected::Invalid(_) | Rejected::UnknownBroker(_)) => K::InvalidReplicaAssignment,
        ControllerError::Rejected(Rejected::NoReassignment { .. }) => K::NoReassignmentInProgress,
        ControllerError::ElectionNotNeeded(_) => K::ElectionNotNeeded,
        ControllerError::PreferredLeaderNotAvailable(_) => K::PreferredLeaderNotAvailable,
        ControllerError::EligibleLeadersNotAvailable(_) => K::EligibleLeadersNotAvailable,
        e => return meta_error(topic, e),
    };
    MetaError::PartitionRefused { kind, reason }
}

impl MetadataStore for RaftMetadataStore {
    fn cluster_id(&self) -> String {
        self.node.cluster_id().to_string()
    }

    fn brokers(&self) -> Vec<BrokerInfo> {
        let s = self.node.shared().read();
        s.cluster
            .live_brokers()
            .map(|b| BrokerInfo { node_id: b.node_id, host: b.host.clone(), port: b.port, rack: b.rack.clone() })
            .collect()
    }

    fn controller_id(&self) -> Option<i32> {
        self.node.controller_id().and_then(|id| i32::try_from(id).ok())
    }

    fn topics(&self) -> Vec<TopicMeta> {
        let s = self.node.shared().read();
        s.cluster.topics.iter().map(|(name, t)| topic_meta(name, t)).collect()
    }

    fn topic(&self, name: &str) -> Option<TopicMeta> {
        let s = self.node.shared().read();
        s.cluster.topics.get(name).map(|t| topic_meta(name, t))
    }

    fn topic_by_id(&self, id: Uuid) -> Option<TopicMeta> {
        let s = self.node.shared().read();
        s.cluster.topics.iter().find(|(_, t)| t.id == id).map(|(name, t)| topic_meta(name, t))
    }

    fn partitions(&self, topic: &str) -> Vec<PartitionMeta> {
        let s = self.node.shared().read();
        let Some(t) = s.cluster.topics.get(topic) else { return Vec::new() };
        t.partitions.iter().enumerate().map(|(i, p)| p.to_meta(i as i32)).collect()
    }

    fn create_topic(&self, name: &str, partitions: i32, configs: TopicConfigs) -> StoreFuture<'_, TopicMeta> {
        let name = name.to_string();
        Box::pin(async move {
            validate_topic_name(&name)?;
            let request =
                ControllerRequest::CreateTopic { name: name.clone(), partitions, replication_factor: -1, configs };
            self.write(&name, request).await
        })
    }

    fn create_replicated_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: TopicConfigs,
    ) -> StoreFuture<'_, TopicMeta> {
        let name = name.to_string();
        Box::pin(async move {
            validate_topic_name(&name)?;
            let request =
                ControllerRequest::CreateTopic { name: name.clone(), partitions, replication_factor, configs };
            self.write(&name, request).await
        })
    }

    fn alter_partition(&self, change: IsrChange) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let IsrChange { topic, partition, leader, leader_epoch, partition_epoch, isr } = change;
            let request = ControllerRequest::AlterPartition {
                leader,
                topic: topic.clone(),
                partition,
                leader_epoch,
                partition_epoch,
                isr,
            };
            match self.node.submit(request, WRITE_TIMEOUT).await {
                Ok(_) => Ok(()),
                Err(ControllerError::Rejected(
                    r @ (Rejected::StalePartitionEpoch { .. }
                    | Rejected::Invalid(_)
                    | Rejected::UnknownTopic(_)
                    | Rejected::UnknownPartition { .. }),
                )) => Err(MetaError::StaleChange(r.to_string())),
                Err(e) => Err(meta_error(&topic, e)),
            }
        })
    }

    fn reassign_partition(&self, topic: &str, partition: i32, target: Option<Vec<i32>>) -> StoreFuture<'_, ()> {
        let topic = topic.to_string();
        Box::pin(async move {
            let request = ControllerRequest::Reassign { topic: topic.clone(), partition, target };
            self.node.submit(request, WRITE_TIMEOUT).await.map(|_| ()).map_err(|e| partition_error(&topic, e))
        })
    }

    fn elect_leader(&self, topic: &str, partition: i32, unclean: bool) -> StoreFuture<'_, ()> {
        let topic = topic.to_string();
        Box::pin(async move {
            let request = ControllerRequest::ElectLeader { topic: topic.clone(), partition, unclean };
            self.node.submit(request, WRITE_TIMEOUT).await.map(|_| ()).map_err(|e| partition_error(&topic, e))
        })
    }

    fn delete_topic(&self, name: &str) -> StoreFuture<'_, TopicMeta> {
        let name = name.to_string();
        Box::pin(async move { self.write(&name, ControllerRequest::DeleteTopic { name: name.clone() }).await })
    }

    fn set_partitions(&self, name: &str, count: i32) -> StoreFuture<'_, TopicMeta> {
        let name = name.to_string();
        Box::pin(
            async move { self.write(&name, ControllerRequest::CreatePartitions { name: name.clone(), count }).await },
        )
    }

    fn set_configs(&self, name: &str, configs: TopicConfigs) -> StoreFuture<'_, TopicMeta> {
        let name = name.to_string();
        Box::pin(
            async move { self.write(&name, ControllerRequest::AlterConfigs { name: name.clone(), configs }).await },
        )
    }

    fn broker_configs(&self) -> strom_meta::BrokerConfigs {
        self.node.shared().read().cluster.broker_configs.clone()
    }

    fn set_broker_configs(&self, resource: &str, configs: TopicConfigs) -> StoreFuture<'_, ()> {
        let request = ControllerRequest::AlterBrokerConfigs { resource: resource.to_string(), configs };
        Box::pin(async move {
            self.node.submit(request, WRITE_TIMEOUT).await.map(|_| ()).map_err(|e| meta_error("(broker configs)", e))
        })
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.node.shared().applied_index())
    }
}
