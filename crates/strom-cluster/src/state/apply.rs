//! The metadata log's commands and how each changes a [`ClusterState`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{BrokerRecord, ClusterState, PartitionRecord, TopicRecord};

/// One entry of the metadata log. Each carries the controller's decision, so applying it is
/// deterministic (see the module docs of [`super`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker started (or restarted): records it, fenced, with broker epoch = this entry's
    /// log index.
    RegisterBroker {
        /// Node id.
        node_id: i32,
        /// This process start's random id.
        incarnation: Uuid,
        /// Host clients connect to.
        host: String,
        /// Port clients connect to.
        port: i32,
        /// Rack.
        rack: Option<String>,
        /// Internal listener address.
        internal_address: String,
        /// The id of its data directory, made when the directory was first initialised: a
        /// registration with another one than before is a broker that lost its disk
        /// (KIP-903). `None` from a log written before storage ids.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        storage_id: Option<Uuid>,
        /// Most replicas placement may give it (`None`: no limit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_replicas: Option<u32>,
    },
    /// Removes a broker from the registry (decommissioning). Refused while it holds replicas.
    UnregisterBroker {
        /// Node id.
        node_id: i32,
    },
    /// The broker's heartbeats stopped: it leaves every ISR (but an ISR's last member) and
    /// its leaderships move to another live ISR member, or the partition goes offline.
    FenceBroker {
        /// Node id.
        node_id: i32,
        /// The registration this fences; a newer registration is not touched.
        epoch: u64,
    },
    /// The broker heartbeats and has caught up: it serves again, and leads the offline
    /// partitions whose ISR it is in.
    UnfenceBroker {
        /// Node id.
        node_id: i32,
        /// The registration this unfences.
        epoch: u64,
    },
    /// A new topic with its replica assignment (index = partition, preferred leader first).
    /// Each partition's leader is its first live replica.
    CreateTopic {
        /// Name.
        name: String,
        /// Id chosen by the controller.
        id: Uuid,
        /// Config overrides.
        configs: BTreeMap<String, String>,
        /// Replicas of each partition.
        assignment: Vec<Vec<i32>>,
        /// Starting leader epochs where not 0 (a topic adopted from a single-node data
        /// directory keeps the epochs its batches carry).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        leader_epochs: BTreeMap<i32, i32>,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// Appends partitions to a topic (`assignment[i]` is partition `current + i`).
    CreatePartitions {
        /// Name.
        name: String,
        /// Replicas of each new partition.
        assignment: Vec<Vec<i32>>,
    },
    /// Replaces a topic's config overrides.
    AlterConfigs {
        /// Name.
        name: String,
        /// The new overrides.
        configs: BTreeMap<String, String>,
    },
    /// Changes one partition's leader and ISR (a leader election, an ISR shrink or
    /// expansion). The leader epoch is raised if the leader changes; the partition epoch
    /// always is. Refused unless `partition_epoch` is the current one (a stale proposal).
    ChangePartition {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The partition epoch the proposer saw.
        partition_epoch: i32,
        /// The new leader.
        leader: Option<i32>,
        /// The new ISR.
        isr: Vec<i32>,
    },
    /// Starts, replaces or (with `target: None`) cancels a reassignment of one partition
    /// (KIP-455). The replica set becomes the target plus the original replicas not in it;
    /// the target's new members are `adding` (they start fetching, and count toward nothing
    /// until they join the ISR), the originals outside it `removing`. A cancel restores the
    /// original replicas. Refused unless `partition_epoch` is current.
    ReassignPartition {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The partition epoch the proposer saw.
        partition_epoch: i32,
        /// The replicas wanted, preferred leader first; `None` cancels.
        target: Option<Vec<i32>>,
    },
    /// Ends a reassignment whose added replicas are all in the ISR: the removed ones leave
    /// the replica set and the ISR, and if the leader was one of them, leadership moves to
    /// the first live in-sync replica of the target (raising the leader epoch). Refused
    /// unless `partition_epoch` is current and every added replica is in sync.
    CompleteReassignment {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The partition epoch the proposer saw.
        partition_epoch: i32,
    },
    /// Raises the next producer id to at least `floor` (ids a single-node data directory
    /// already handed out, when it is adopted into the cluster).
    RaiseProducerIdFloor {
        /// The lowest id that may still be handed out.
        floor: i64,
    },
    /// Hands `count` producer ids to a broker.
    AllocateProducerIds {
        /// The broker asking.
        node_id: i32,
        /// How many ids.
        count: i64,
    },
    /// Replaces the dynamic configs of one broker resource; an empty map removes them.
    AlterBrokerConfigs {
        /// `""` (cluster-wide default) or a node id.
        resource: String,
        /// The new configs.
        configs: BTreeMap<String, String>,
    },
}

/// What a command did, returned to whoever proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// A broker registered with this epoch.
    Registered {
        /// The broker epoch.
        epoch: u64,
    },
    /// A topic was created, deleted, or changed; this is it afterwards (before, for a delete).
    Topic {
        /// Name.
        name: String,
        /// The record.
        record: TopicRecord,
    },
    /// A producer-id block `[first, first + count)`.
    ProducerIds {
        /// First id of the block.
        first: i64,
        /// Size of the block.
        count: i64,
    },
    /// Done; nothing to report (fence, unfence, unregister, partition change).
    Done,
}

/// Why a command changed nothing. Applying it is still deterministic: every node rejects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejected {
    /// The topic exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// The topic does not exist.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// The broker is not registered.
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    /// A fence or unfence for a registration that has since been replaced.
    #[error("broker {node_id}: epoch {epoch} is stale (current {current})")]
    StaleBrokerEpoch {
        /// Node id.
        node_id: i32,
        /// The epoch in the command.
        epoch: u64,
        /// The registered epoch.
        current: u64,
    },
    /// A partition change proposed against an older partition epoch.
    #[error("{topic}-{partition}: partition epoch {epoch} is stale (current {current})")]
    StalePartitionEpoch {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The epoch in the command.
        epoch: i32,
        /// The current epoch.
        current: i32,
    },
    /// The topic has no such partition.
    #[error("{topic} has no partition {partition}")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A cancel of a partition with no reassignment under way.
    #[error("{topic}-{partition}: no reassignment is in progress")]
    NoReassignment {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// An assignment, ISR or count that breaks the state's rules.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl ClusterState {
    /// Applies `command`, the metadata log's entry at `index`. Deterministic; a rejected
    /// command leaves the state unchanged.
    pub fn apply(&mut self, index: u64, command: &Command) -> Result<Applied, Rejected> {
        match command {
            Command::RegisterBroker {
                node_id,
                incarnation,
                host,
                port,
                rack,
                internal_address,
                storage_id,
                max_replicas,
            } => {
                let lost_disk = self
                    .brokers
                    .get(node_id)
                    .and_then(|b| b.storage_id)
                    .is_some_and(|before| storage_id.is_some_and(|now| now != before));
                let record = BrokerRecord {
                    node_id: *node_id,
                    incarnation: *incarnation,
                    epoch: index,
                    host: host.clone(),
                    port: *port,
                    rack: rack.clone(),
                    internal_address: internal_address.clone(),
                    fenced: true,
                    storage_id: *storage_id,
                    max_replicas: *max_replicas,
                };
                // A re-registration replaces the old one; until the broker is unfenced it is
                // out of every ISR and leads nothing, as if its old registration were fenced.
                if self.brokers.contains_key(node_id) {
                    self.fence_replica(*node_id);
                }
                if lost_disk {
                    self.lose_replicas(*node_id);
                }
                self.brokers.insert(*node_id, record);
                Ok(Applied::Registered { epoch: index })
            }
            Command::UnregisterBroker { node_id } => {
                if !self.brokers.contains_key(node_id) {
                    return Err(Rejected::UnknownBroker(*node_id));
                }
                if self.replica_load().get(node_id).copied().unwrap_or(0) > 0 {
                    return Err(Rejected::Invalid(format!("broker {node_id} still holds replicas")));
                }
                self.brokers.remove(node_id);
                Ok(Applied::Done)
            }
            Command::FenceBroker { node_id, epoch } => {
                self.check_epoch(*node_id, *epoch)?;
                if let Some(b) = self.brokers.get_mut(node_id) {
                    b.fenced = true;
                }
                self.fence_replica(*node_id);
                Ok(Applied::Done)
            }
            Command::UnfenceBroker { node_id, epoch } => {
                self.check_epoch(*node_id, *epoch)?;
                if let Some(b) = self.brokers.get_mut(node_id) {
                    b.fenced = false;
                }
                self.unfence_replica(*node_id);
                Ok(Applied::Done)
            }
            Command::CreateTopic { name, id, configs, assignment, leader_epochs } => {
                if self.topics.contains_key(name) {
                    return Err(Rejected::TopicExists(name.clone()));
                }
                if self.topics.values().any(|t| t.id == *id) || id.is_nil() {
                    return Err(Rejected::Invalid(format!("topic id {id} is nil or in use")));
                }
                if assignment.is_empty() {
                    return Err(Rejected::Invalid(format!("topic {name:?} needs at least one partition")));
                }
                let mut partitions = self.new_partitions(assignment)?;
                for (p, epoch) in leader_epochs {
                    match usize::try_from(*p).ok().and_then(|i| partitions.get_mut(i)) {
                        Some(rec) if *epoch >= 0 => rec.leader_epoch = *epoch,
                        _ => return Err(Rejected::Invalid(format!("leader epoch {epoch} for partition {p}"))),
                    }
                }
                let record = TopicRecord { id: *id, configs: configs.clone(), partitions };
                self.topics.insert(name.clone(), record.clone());
                Ok(Applied::Topic { name: name.clone(), record })
            }
            Command::DeleteTopic { name } => {
                let record = self.topics.remove(name).ok_or_else(|| Rejected::UnknownTopic(name.clone()))?;
                Ok(Applied::Topic { name: name.clone(), record })
            }
            Command::CreatePartitions { name, assignment } => {
                if !self.topics.contains_key(name) {
                    return Err(Rejected::UnknownTopic(name.clone()));
                }
                if assignment.is_empty() {
                    return Err(Rejected::Invalid(format!("no partitions to add to {name:?}")));
                }
                let added = self.new_partitions(assignment)?;
                let topic = self.topics.get_mut(name).ok_or_else(|| Rejected::UnknownTopic(name.clone()))?;
                topic.partitions.extend(added);
                Ok(Applied::Topic { name: name.clone(), record: topic.clone() })
            }
            Command::AlterConfigs { name, configs } => {
                let topic = self.topics.get_mut(name).ok_or_else(|| Rejected::UnknownTopic(name.clone()))?;
                topic.configs = configs.clone();
                Ok(Applied::Topic { name: name.clone(), record: topic.clone() })
            }
            Command::ChangePartition { topic, partition, partition_epoch, leader, isr } => {
                self.change_partition(topic, *partition, *partition_epoch, *leader, isr)
            }
            Command::ReassignPartition { topic, partition, partition_epoch, target } => {
                self.reassign_partition(topic, *partition, *partition_epoch, target.as_deref())
            }
            Command::CompleteReassignment { topic, partition, partition_epoch } => {
                self.complete_reassignment(topic, *partition, *partition_epoch)
            }
            Command::AlterBrokerConfigs { resource, configs } => {
                if !resource.is_empty() && resource.parse::<i32>().is_err() {
                    return Err(Rejected::Invalid(format!(
                        "broker resource {resource:?} is neither \"\" nor a node id"
                    )));
                }
                if configs.is_empty() {
                    self.broker_configs.remove(resource);
                } else {
                    self.broker_configs.insert(resource.clone(), configs.clone());
                }
                Ok(Applied::Done)
            }
            Command::RaiseProducerIdFloor { floor } => {
                if *floor < 0 {
                    return Err(Rejected::Invalid(format!("producer-id floor {floor} is negative")));
                }
                self.next_producer_id = self.next_producer_id.max(*floor);
                Ok(Applied::Done)
            }
            Command::AllocateProducerIds { node_id, count } => {
                if !self.brokers.contains_key(node_id) {
                    return Err(Rejected::UnknownBroker(*node_id));
                }
                if !(1..=1_000_000).contains(count) {
                    return Err(Rejected::Invalid(format!("producer-id block size {count} is outside 1..=1000000")));
                }
                let first = self.next_producer_id;
                self.next_producer_id = first
                    .checked_add(*count)
                    .ok_or_else(|| Rejected::Invalid("producer ids are exhausted".to_string()))?;
                Ok(Applied::ProducerIds { first, count: *count })
            }
        }
    }

    fn check_epoch(&self, node_id: i32, epoch: u64) -> Result<(), Rejected> {
        let b = self.brokers.get(&node_id).ok_or(Rejected::UnknownBroker(node_id))?;
        if b.epoch != epoch {
            return Err(Rejected::StaleBrokerEpoch { node_id, epoch, current: b.epoch });
        }
        Ok(())
    }

    /// Builds the records of new partitions from their replica lists: ISR = every replica,
    /// leader = the first live one.
    fn new_partitions(&self, assignment: &[Vec<i32>]) -> Result<Vec<PartitionRecord>, Rejected> {
        let mut out = Vec::with_capacity(assignment.len());
        for (i, replicas) in assignment.iter().enumerate() {
            let mut seen = std::collections::BTreeSet::new();
            if replicas.is_empty() || !replicas.iter().all(|r| seen.insert(*r)) {
                return Err(Rejected::Invalid(format!("partition {i}: replicas {replicas:?} are empty or repeat")));
            }
            if let Some(r) = replicas.iter().find(|r| !self.brokers.contains_key(r)) {
                return Err(Rejected::UnknownBroker(*r));
            }
            let leader = replicas.iter().copied().find(|r| self.is_live(*r));
            out.push(PartitionRecord {
                replicas: replicas.clone(),
                isr: replicas.clone(),
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
                last_replica_lost: false,
                adding: Vec::new(),
                removing: Vec::new(),
            });
        }
        Ok(out)
    }

    /// Takes a fenced broker out of every ISR it is in (except as the last member) and moves
    /// its leaderships to the next live ISR member, or leaves the partition offline.
    fn fence_replica(&mut self, node_id: i32) {
        let live: std::collections::BTreeSet<i32> =
            self.brokers.values().filter(|b| !b.fenced && b.node_id != node_id).map(|b| b.node_id).collect();
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                let mut changed = false;
                if p.isr.len() > 1 && p.isr.contains(&node_id) {
                    p.isr.retain(|r| *r != node_id);
                    changed = true;
                }
                if p.leader == Some(node_id) {
                    p.leader = p.isr.iter().copied().find(|r| live.contains(r));
                    p.leader_epoch += 1;
                    changed = true;
                }
                if changed {
                    p.partition_epoch += 1;
                }
            }
        }
    }

    /// A broker came back with another data directory (an empty disk, KIP-903): where it was
    /// the last in-sync replica (fencing keeps the last one), that replica's records are
    /// gone, so it must never lead the partition back: the partition is marked and stays
    /// offline (no unclean election) rather than making other replicas truncate to nothing.
    fn lose_replicas(&mut self, node_id: i32) {
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if p.isr == [node_id] && !p.last_replica_lost {
                    p.last_replica_lost = true;
                    p.partition_epoch += 1;
                }
            }
        }
    }

    /// Gives a broker that came back the leadership of every offline partition whose ISR
    /// holds it (it may hold records no other replica has), unless it came back without the
    /// records ([`Self::lose_replicas`]). Rejoining the ISR of led partitions is the leader's
    /// decision (it must have caught up), not this one's.
    fn unfence_replica(&mut self, node_id: i32) {
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if p.leader.is_none() && p.isr.contains(&node_id) && !p.last_replica_lost {
                    p.leader = Some(node_id);
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                }
            }
        }
    }

    fn change_partition(
        &mut self,
        topic: &str,
        partition: i32,
        partition_epoch: i32,
        leader: Option<i32>,
        isr: &[i32],
    ) -> Result<Applied, Rejected> {
        let leader_live = leader.is_none_or(|l| self.is_live(l));
        let p = self.partition_for_change(topic, partition, partition_epoch)?;
        if isr.is_empty() || !isr.iter().all(|r| p.replicas.contains(r)) {
            return Err(Rejected::Invalid(format!("ISR {isr:?} is empty or not within replicas {:?}", p.replicas)));
        }
        if let Some(l) = leader {
            if !isr.contains(&l) || !leader_live {
                return Err(Rejected::Invalid(format!("leader {l} is not a live member of the ISR {isr:?}")));
            }
        }
        if p.leader != leader {
            p.leader_epoch += 1;
        }
        p.leader = leader;
        p.isr = isr.to_vec();
        p.partition_epoch += 1;
        Ok(Applied::Done)
    }

    /// The partition record at `(topic, partition)` for a change proposed at
    /// `partition_epoch`, or why not.
    fn partition_for_change(
        &mut self,
        topic: &str,
        partition: i32,
        partition_epoch: i32,
    ) -> Result<&mut PartitionRecord, Rejected> {
        let t = self.topics.get_mut(topic).ok_or_else(|| Rejected::UnknownTopic(topic.to_string()))?;
        let p = usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get_mut(i))
            .ok_or_else(|| Rejected::UnknownPartition { topic: topic.to_string(), partition })?;
        if p.partition_epoch != partition_epoch {
            return Err(Rejected::StalePartitionEpoch {
                topic: topic.to_string(),
                partition,
                epoch: partition_epoch,
                current: p.partition_epoch,
            });
        }
        Ok(p)
    }

    fn reassign_partition(
        &mut self,
        topic: &str,
        partition: i32,
        partition_epoch: i32,
        target: Option<&[i32]>,
    ) -> Result<Applied, Rejected> {
        if let Some(target) = target {
            let mut seen = std::collections::BTreeSet::new();
            if target.is_empty() || !target.iter().all(|r| seen.insert(*r)) {
                return Err(Rejected::Invalid(format!("target replicas {target:?} are empty or repeat")));
            }
            if let Some(r) = target.iter().find(|r| !self.brokers.contains_key(r)) {
                return Err(Rejected::UnknownBroker(*r));
            }
        }
        let live: std::collections::BTreeSet<i32> = self.live_brokers().map(|b| b.node_id).collect();
        let p = self.partition_for_change(topic, partition, partition_epoch)?;
        let original = p.original_replicas();
        let (replicas, adding, removing) = match target {
            None if !p.reassigning() => {
                return Err(Rejected::NoReassignment { topic: topic.to_string(), partition });
            }
            None => (original.clone(), Vec::new(), Vec::new()),
            Some(target) => {
                let mut replicas = target.to_vec();
                replicas.extend(original.iter().copied().filter(|r| !target.contains(r)));
                let adding: Vec<i32> = target.iter().copied().filter(|r| !original.contains(r)).collect();
                let removing: Vec<i32> = original.iter().copied().filter(|r| !target.contains(r)).collect();
                (replicas, adding, removing)
            }
        };
        // Added replicas of a replaced or cancelled reassignment leave the ISR too.
        let isr: Vec<i32> = p.isr.iter().copied().filter(|r| replicas.contains(r)).collect();
        if isr.is_empty() {
            return Err(Rejected::Invalid(format!(
                "{topic}-{partition}: no in-sync replica would remain (ISR {:?}, replicas {replicas:?})",
                p.isr
            )));
        }
        let leader = match p.leader {
            Some(l) if isr.contains(&l) => Some(l),
            _ => isr.iter().copied().find(|r| live.contains(r)),
        };
        if leader != p.leader {
            p.leader_epoch += 1;
        }
        p.leader = leader;
        p.replicas = replicas;
        p.isr = isr;
        p.adding = adding;
        p.removing = removing;
        p.partition_epoch += 1;
        Ok(Applied::Done)
    }

    fn complete_reassignment(
        &mut self,
        topic: &str,
        partition: i32,
        partition_epoch: i32,
    ) -> Result<Applied, Rejected> {
        let live: std::collections::BTreeSet<i32> = self.live_brokers().map(|b| b.node_id).collect();
        let p = self.partition_for_change(topic, partition, partition_epoch)?;
        if !p.reassigning() {
            return Err(Rejected::NoReassignment { topic: topic.to_string(), partition });
        }
        if let Some(r) = p.adding.iter().find(|r| !p.isr.contains(r)) {
            return Err(Rejected::Invalid(format!("{topic}-{partition}: added replica {r} is not in sync yet")));
        }
        let target = p.target_replicas();
        let isr: Vec<i32> = p.isr.iter().copied().filter(|r| target.contains(r)).collect();
        if isr.is_empty() {
            return Err(Rejected::Invalid(format!("{topic}-{partition}: no in-sync replica of the target {target:?}")));
        }
        let leader = match p.leader {
            Some(l) if target.contains(&l) => Some(l),
            _ => target.iter().copied().find(|r| isr.contains(r) && live.contains(r)),
        };
        if leader != p.leader {
            p.leader_epoch += 1;
        }
        p.leader = leader;
        p.replicas = target;
        p.isr = isr;
        p.adding.clear();
        p.removing.clear();
        p.partition_epoch += 1;
        Ok(Applied::Done)
    }
}
