//! [`ClusterState`]: the cluster metadata every node holds, built only by applying committed
//! [`Command`]s in log order. Applying is deterministic and does no I/O: the same commands
//! give the same state on every node (the Raft state machine is this, plus a snapshot file).
//!
//! Modelled on Kafka's KRaft metadata records (`RegisterBrokerRecord`, `FenceBrokerRecord`,
//! `TopicRecord`, `PartitionRecord`, `PartitionChangeRecord`, `ConfigRecord`,
//! `ProducerIdsRecord`): every decision (which brokers get a partition, the new topic id, who
//! leads) is made by the controller before it proposes the command, so a command carries its
//! outcome and applying it needs no clock, no randomness and no view of who is alive.

mod apply;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use self::apply::{Applied, Command, Rejected};

/// A registered broker as the metadata log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    /// The node id (`node_id` in its config); also its Raft node id.
    pub node_id: i32,
    /// Random per process start: a registration with another incarnation is a restart (or a
    /// second process claiming the same id, which the controller refuses while the first lives).
    pub incarnation: Uuid,
    /// The broker epoch: the Raft log index of its latest registration. Heartbeats and
    /// requests from an older registration carry an older epoch and are refused.
    pub epoch: u64,
    /// Host clients connect to.
    pub host: String,
    /// Port clients connect to.
    pub port: i32,
    /// Rack, for rack-aware placement.
    pub rack: Option<String>,
    /// The address of its internal listener (Raft RPCs, forwarding, heartbeats).
    pub internal_address: String,
    /// A fenced broker is left out of Metadata and of every ISR, and leads nothing. Brokers
    /// register fenced and are unfenced once they heartbeat having caught up with the log.
    pub fenced: bool,
    /// Its data directory's id (see [`Command::RegisterBroker`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_id: Option<Uuid>,
    /// Most replicas placement may give it (`[cluster] max_replicas`); `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<u32>,
}

/// One partition's replicas and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// The replica set, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas: a subset of `replicas`. Never emptied by fencing: the last member
    /// stays, so the replica known to hold every acknowledged record is not forgotten.
    pub isr: Vec<i32>,
    /// The leader, `None` while no ISR member is alive (the partition is offline).
    pub leader: Option<i32>,
    /// Raised at every leader change (including to and from `None`).
    pub leader_epoch: i32,
    /// Raised at every change of this record (leader or ISR), as Kafka's partition epoch.
    pub partition_epoch: i32,
    /// Its last in-sync replica came back without its data (KIP-903): it stays offline
    /// rather than be led from an empty log.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last_replica_lost: bool,
    /// While a reassignment runs (KIP-455): the replicas being added. They are in
    /// `replicas` (so they fetch) but count toward nothing until they join the ISR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    /// While a reassignment runs: the replicas leaving once every added one is in sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl PartitionRecord {
    /// This partition (index `partition`) as the broker's metadata seam describes it.
    pub fn to_meta(&self, partition: i32) -> strom_meta::PartitionMeta {
        strom_meta::PartitionMeta {
            partition,
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            replicas: self.replicas.clone(),
            isr: self.isr.clone(),
            partition_epoch: self.partition_epoch,
            adding: self.adding.clone(),
            removing: self.removing.clone(),
        }
    }

    /// Whether a reassignment of this partition is under way.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas before the running reassignment (all of them when none runs).
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas.iter().copied().filter(|r| !self.adding.contains(r)).collect()
    }

    /// The replicas the running reassignment ends with (all of them when none runs).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas.iter().copied().filter(|r| !self.removing.contains(r)).collect()
    }
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// Topic id, chosen by the controller, never reused.
    pub id: Uuid,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
    /// Partitions by index.
    pub partitions: Vec<PartitionRecord>,
}

/// The whole cluster metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Registered brokers by node id.
    pub brokers: BTreeMap<i32, BrokerRecord>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicRecord>,
    /// The next producer id no broker has been given: blocks are handed out from here and
    /// it only grows, so no id is handed out twice.
    pub next_producer_id: i64,
    /// Dynamic broker configs: resource (`""` for the cluster-wide default, or a node id)
    /// -> name -> value. Validated by the broker that proposed them. (Absent from snapshots
    /// written before they existed.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
}

impl ClusterState {
    /// The brokers clients may use: registered and not fenced, by node id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRecord> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Whether `node_id` is registered and unfenced.
    pub fn is_live(&self, node_id: i32) -> bool {
        self.brokers.get(&node_id).is_some_and(|b| !b.fenced)
    }

    /// How many replicas each registered broker holds, over all topics.
    pub fn replica_load(&self) -> BTreeMap<i32, u32> {
        let mut load: BTreeMap<i32, u32> = self.brokers.keys().map(|id| (*id, 0)).collect();
        for t in self.topics.values() {
            for p in &t.partitions {
                for r in &p.replicas {
                    *load.entry(*r).or_default() += 1;
                }
            }
        }
        load
    }

    /// Checks the invariants every applied state holds; tests call it after every step.
    /// Returns the first violation found.
    pub fn validate(&self) -> Result<(), String> {
        for (id, b) in &self.brokers {
            if *id != b.node_id {
                return Err(format!("broker keyed {id} records node id {}", b.node_id));
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for (name, t) in &self.topics {
            if !ids.insert(t.id) {
                return Err(format!("topic {name}: id {} is used twice", t.id));
            }
            if t.partitions.is_empty() {
                return Err(format!("topic {name} has no partitions"));
            }
            for (i, p) in t.partitions.iter().enumerate() {
                let at = format!("{name}-{i}");
                if p.replicas.is_empty() {
                    return Err(format!("{at}: no replicas"));
                }
                let mut seen = std::collections::BTreeSet::new();
                if !p.replicas.iter().all(|r| seen.insert(*r)) {
                    return Err(format!("{at}: a replica listed twice in {:?}", p.replicas));
                }
                if p.isr.is_empty() || !p.isr.iter().all(|r| p.replicas.contains(r)) {
                    return Err(format!("{at}: ISR {:?} is empty or not within replicas {:?}", p.isr, p.replicas));
                }
                if !p.adding.iter().chain(&p.removing).all(|r| p.replicas.contains(r))
                    || p.adding.iter().any(|r| p.removing.contains(r))
                {
                    return Err(format!(
                        "{at}: adding {:?} / removing {:?} overlap or are not within replicas {:?}",
                        p.adding, p.removing, p.replicas
                    ));
                }
                if let Some(l) = p.leader {
                    if !p.isr.contains(&l) {
                        return Err(format!("{at}: leader {l} is not in the ISR {:?}", p.isr));
                    }
                    if !self.is_live(l) {
                        return Err(format!("{at}: leader {l} is not a live broker"));
                    }
                }
            }
        }
        Ok(())
    }
}
