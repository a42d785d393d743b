//! [`MetadataStore`]: the one way the broker reads and changes cluster metadata.

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::error::MetaError;
use crate::error::Result;
use crate::types::{BrokerConfigs, BrokerInfo, IsrChange, PartitionMeta, TopicConfigs, TopicMeta};

/// A boxed future returned by the store's mutating operations: a replicated store must wait
/// for its log to commit a change, so these are asynchronous even when the local store is not.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The cluster metadata as brokers use it.
///
/// Implementors guarantee:
/// - reads return the state after every mutation whose future has resolved `Ok`
///   (read-your-writes on this broker), and never a state that was not committed;
/// - a mutation that resolves `Ok` is durable: it survives a crash of this process (and, for
///   a replicated store, of a minority of the voters);
/// - a mutation that resolves `Err` changed nothing, unless its outcome is unknown (the
///   change was written but making it durable failed): then reads already show it, so what
///   this broker serves never disagrees with what the store holds;
/// - topic ids are unique and never reused, and a topic keeps its id until deleted;
/// - a partition's leader epoch never decreases while its topic exists;
/// - reads do not wait for I/O: they answer from memory (they are called on async threads).
///
/// Callers serialize mutations of the same topic (the broker holds one admin lock), so
/// implementors need not handle racing creates of one name beyond returning `TopicExists`.
pub trait MetadataStore: Send + Sync + 'static {
    /// The cluster id, stable for the life of the cluster.
    fn cluster_id(&self) -> String;
    /// The brokers clients may connect to, ordered by node id.
    fn brokers(&self) -> Vec<BrokerInfo>;
    /// The node id of the active controller, if one is known.
    fn controller_id(&self) -> Option<i32>;
    /// Every topic, ordered by name.
    fn topics(&self) -> Vec<TopicMeta>;
    /// One topic by name.
    fn topic(&self, name: &str) -> Option<TopicMeta>;
    /// One topic by id.
    fn topic_by_id(&self, id: Uuid) -> Option<TopicMeta>;
    /// Every partition of a topic, ordered by index; empty if the topic does not exist.
    fn partitions(&self, topic: &str) -> Vec<PartitionMeta>;
    /// Records a new topic. `Err(TopicExists)` if the name is taken.
    fn create_topic(&self, name: &str, partitions: i32, configs: TopicConfigs) -> StoreFuture<'_, TopicMeta>;
    /// [`MetadataStore::create_topic`] with `replication_factor` replicas per partition (-1:
    /// the store's default). A store that does not replicate takes only 1 and -1.
    fn create_replicated_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: TopicConfigs,
    ) -> StoreFuture<'_, TopicMeta> {
        if matches!(replication_factor, -1 | 1) {
            return self.create_topic(name, partitions, configs);
        }
        Box::pin(async move {
            Err(MetaError::InvalidReplicationFactor {
                requested: replication_factor,
                reason: "a single-node broker holds one replica of each partition; use 1 or -1".to_string(),
            })
        })
    }
    /// Changes a partition's ISR as its leader asks ([`IsrChange`]); resolves once the change
    /// is applied here. A store without replication has nothing to change.
    fn alter_partition(&self, change: IsrChange) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            Err(MetaError::Unavailable(format!(
                "{}-{}: this store does not replicate partitions",
                change.topic, change.partition
            )))
        })
    }
    /// Starts, replaces or (with `target: None`) cancels the reassignment of one partition to
    /// `target` (preferred leader first); resolves once the change is applied here, not
    /// when the data has moved (the cluster finishes it once the new replicas are in sync).
    /// A store without replication has one broker and nothing to move.
    fn reassign_partition(&self, topic: &str, partition: i32, target: Option<Vec<i32>>) -> StoreFuture<'_, ()> {
        let _ = target;
        let at = format!("{topic}-{partition}");
        Box::pin(async move {
            Err(MetaError::PartitionRefused {
                kind: crate::PartitionRefusal::InvalidReplicaAssignment,
                reason: format!("{at}: a single-node broker has no other broker to move replicas to"),
            })
        })
    }
    /// Elects a leader for one partition: its preferred replica, or with `unclean` any live
    /// replica of an offline partition. Resolves once applied here. A single-node store's
    /// partitions are always led by their one replica.
    fn elect_leader(&self, topic: &str, partition: i32, unclean: bool) -> StoreFuture<'_, ()> {
        let _ = unclean;
        let at = format!("{topic}-{partition}");
        Box::pin(async move {
            Err(MetaError::PartitionRefused {
                kind: crate::PartitionRefusal::ElectionNotNeeded,
                reason: format!("{at}: led by its only replica"),
            })
        })
    }
    /// Removes a topic and returns what it was. `Err(UnknownTopic)` if absent.
    fn delete_topic(&self, name: &str) -> StoreFuture<'_, TopicMeta>;
    /// Raises a topic's partition count. `Err(InvalidPartitions)` unless `count` is larger.
    fn set_partitions(&self, name: &str, count: i32) -> StoreFuture<'_, TopicMeta>;
    /// Replaces a topic's config overrides.
    fn set_configs(&self, name: &str, configs: TopicConfigs) -> StoreFuture<'_, TopicMeta>;
    /// The dynamic broker configs, by resource (`""`: the cluster-wide default; a node id:
    /// that broker's own). Empty for a store without them.
    fn broker_configs(&self) -> BrokerConfigs {
        BrokerConfigs::new()
    }
    /// Replaces the dynamic configs of one broker resource (`""` or a node id); an empty map
    /// removes them. A store without dynamic configs refuses.
    fn set_broker_configs(&self, resource: &str, configs: TopicConfigs) -> StoreFuture<'_, ()> {
        let _ = (resource, configs);
        Box::pin(async { Err(MetaError::Unavailable("this metadata store keeps no dynamic broker configs".into())) })
    }
    /// A watch that changes whenever the metadata changes for a reason other than this
    /// broker's own mutations (another node's admin request, a leader change, a fenced
    /// broker); the broker then brings its partitions in line. `None` for a store that only
    /// changes through this broker (the single-node store).
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}
