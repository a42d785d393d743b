//! What a [`crate::MetadataStore`] answers: brokers, topics and their partitions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{MetaError, Result};

/// A topic's config overrides (`retention.ms` -> `"86400000"`, ...); unset configs take the
/// broker defaults.
pub type TopicConfigs = BTreeMap<String, String>;

/// Dynamic broker configs (Kafka's IncrementalAlterConfigs on a broker resource): resource
/// name (`""` for the cluster-wide default, or a broker's node id) -> config name -> value.
pub type BrokerConfigs = BTreeMap<String, BTreeMap<String, String>>;

/// Longest legal topic name (Kafka's limit).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// One broker of the cluster, as clients are told to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// The broker's node id (`node_id` in its config).
    pub node_id: i32,
    /// Host clients connect to.
    pub host: String,
    /// Port clients connect to.
    pub port: i32,
    /// Rack, for rack-aware placement and clients' `client.rack`; `None` when unset.
    pub rack: Option<String>,
}

/// One topic as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Topic id (Metadata v10+, Fetch v13+, DeleteTopics v6).
    pub id: Uuid,
    /// Number of partitions, numbered `0..partitions`.
    pub partitions: i32,
    /// Config overrides; unset configs take the broker defaults.
    #[serde(default)]
    pub configs: TopicConfigs,
    /// Each partition's leader epoch, where it is not 0. A cluster bumps a partition's epoch
    /// at every leader change; a single node never changes leader, so its partitions stay at
    /// epoch 0 and this is empty (and absent from the file, which keeps older files valid).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub leader_epochs: BTreeMap<i32, i32>,
}

impl TopicMeta {
    /// The leader epoch of `partition` (0 unless recorded otherwise).
    pub fn leader_epoch(&self, partition: i32) -> i32 {
        self.leader_epochs.get(&partition).copied().unwrap_or(0)
    }
}

/// One partition's placement and leadership, as every broker must agree on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    /// Partition index within its topic.
    pub partition: i32,
    /// The leader's node id; `None` while the partition has no live leader.
    pub leader: Option<i32>,
    /// The leader epoch: raised at every leader change. Batches written by a leader carry it,
    /// and clients send the epoch they know so that a stale leader or a stale client is told
    /// (`FENCED_LEADER_EPOCH`, `UNKNOWN_LEADER_EPOCH`) rather than served.
    pub leader_epoch: i32,
    /// The replica set, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas (a subset of `replicas`, the leader included).
    pub isr: Vec<i32>,
    /// Raised at every change of leader or ISR; an ISR change names the epoch it saw, so a
    /// stale one is refused (Kafka's partition epoch).
    pub partition_epoch: i32,
    /// Replicas a running reassignment adds (in `replicas` already); empty when none runs.
    pub adding: Vec<i32>,
    /// Replicas a running reassignment removes once the added ones are in sync.
    pub removing: Vec<i32>,
}

/// A partition leader's request to change its ISR (Kafka's AlterPartition): valid only while
/// `leader_epoch` and `partition_epoch` are still the current ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The leader asking (this broker).
    pub leader: i32,
    /// The leader epoch it leads in.
    pub leader_epoch: i32,
    /// The partition epoch its view has.
    pub partition_epoch: i32,
    /// The ISR it wants.
    pub isr: Vec<i32>,
}

/// Checks a topic name against Kafka's rules: 1..=249 characters of `[a-zA-Z0-9._-]`, and not
/// `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name == "." || name == ".." {
        "'.' and '..' are not allowed"
    } else if name.len() > MAX_TOPIC_NAME_LEN {
        "longer than 249 characters"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        "only ASCII letters, digits, '.', '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(MetaError::InvalidTopic { name: name.to_string(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "a.b_c-D9", &"x".repeat(249)] {
            validate_topic_name(ok).expect(ok);
        }
        for bad in ["", ".", "..", "a b", "ä", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_topic_file_without_leader_epochs_reads_as_epoch_zero() {
        let t: TopicMeta = serde_json::from_str(
            r#"{"name":"a","id":"6f1c2d7e-0000-4000-8000-000000000001","partitions":2,"configs":{}}"#,
        )
        .expect("an older registry entry parses");
        assert_eq!((t.leader_epoch(0), t.leader_epoch(1)), (0, 0));
        let json = serde_json::to_string(&t).expect("encode");
        assert!(!json.contains("leader_epochs"), "epoch 0 everywhere is not written: {json}");
    }
}
