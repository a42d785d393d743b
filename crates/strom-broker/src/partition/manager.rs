//! [`ReplicaManager`]: every partition this broker holds, found by topic and index.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::Partition;

/// The one map from `(topic, partition)` to [`Partition`]. Lookups take a read lock for a
/// hash probe and an `Arc` clone; topic operations replace a topic's whole list at once. In a
/// cluster a broker holds only the partitions it is a replica of: the others are `None`.
#[derive(Debug, Default)]
pub struct ReplicaManager {
    topics: RwLock<HashMap<String, Vec<Option<Arc<Partition>>>>>,
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
        topics.get(topic)?.get(index)?.clone()
    }

    /// The partitions of `topic` this broker holds, by index (`None` where it holds none).
    pub fn topic(&self, topic: &str) -> Vec<Option<Arc<Partition>>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.get(topic).cloned().unwrap_or_default()
    }

    /// Whether this broker holds any partition of `topic`.
    pub fn holds(&self, topic: &str) -> bool {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.get(topic).is_some_and(|l| l.iter().any(Option::is_some))
    }

    /// The topics this broker has partitions of.
    pub fn topic_names(&self) -> Vec<String> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.keys().cloned().collect()
    }

    /// Sets `topic`'s partitions (index `i` of the list is partition `i`; `None` where this
    /// broker holds no replica), replacing what was there.
    pub fn set_topic(&self, topic: &str, partitions: Vec<Option<Arc<Partition>>>) {
        debug_assert!(
            partitions
                .iter()
                .enumerate()
                .all(|(i, p)| p.as_ref().is_none_or(|p| p.index() == i as i32 && p.topic() == topic))
        );
        self.topics.write().unwrap_or_else(|p| p.into_inner()).insert(topic.to_string(), partitions);
    }

    /// Forgets `topic`; its partitions stay usable by requests already holding them.
    pub fn remove_topic(&self, topic: &str) {
        self.topics.write().unwrap_or_else(|p| p.into_inner()).remove(topic);
    }
}
