//! [`ReplicaManager`]: every partition this broker holds, found by topic and index.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::Partition;

/// The one map from `(topic, partition)` to [`Partition`]. Lookups take a read lock for a
/// hash probe and an `Arc` clone; topic operations replace a topic's whole list at once.
#[derive(Debug, Default)]
pub struct ReplicaManager {
    topics: RwLock<HashMap<String, Vec<Arc<Partition>>>>,
}

impl ReplicaManager {
    /// An empty manager.
    pub fn new() -> ReplicaManager {
        ReplicaManager::default()
    }

    /// The partition, if this broker holds it.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        let index = usize::try_from(partition).ok()?;
        topics.get(topic)?.get(index).cloned()
    }

    /// Every partition of `topic`, by index.
    pub fn topic(&self, topic: &str) -> Vec<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.get(topic).cloned().unwrap_or_default()
    }

    /// Sets `topic`'s partitions (indexes `0..n`, in order), replacing what was there.
    pub fn set_topic(&self, topic: &str, partitions: Vec<Arc<Partition>>) {
        debug_assert!(partitions.iter().enumerate().all(|(i, p)| p.index() == i as i32 && p.topic() == topic));
        self.topics.write().unwrap_or_else(|p| p.into_inner()).insert(topic.to_string(), partitions);
    }

    /// Forgets `topic`; its partitions stay usable by requests already holding them.
    pub fn remove_topic(&self, topic: &str) {
        self.topics.write().unwrap_or_else(|p| p.into_inner()).remove(topic);
    }
}
