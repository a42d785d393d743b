//! [`Controller`]: what the Raft leader does with requests that change the cluster, and the
//! leader's failure detector.
//!
//! Every node runs one; only the leader's answers anything but
//! [`ControllerError::NotController`]. The controller turns a request into a [`Command`] with
//! its decisions made (a fresh topic id, the replica placement, who is fenced), proposes it,
//! and answers once it is committed and applied on the leader. Broker sessions (when each
//! broker last heartbeat) are the leader's memory, not the log: a new leader starts every
//! session afresh, so a leader change never fences a live broker.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::placement::{self, BrokerSlot, PlacementRequest, Strategy};
use crate::state::{Applied, Command, Rejected};
use crate::storage::SharedState;
use crate::types::{NodeId, Raft};

/// A request for the controller, sent to whichever node leads (forwarded if need be).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// A broker starts: register it (fenced) and return its broker epoch.
    Register {
        /// Node id.
        node_id: i32,
        /// This process start's id.
        incarnation: Uuid,
        /// Host clients connect to.
        host: String,
        /// Port clients connect to.
        port: i32,
        /// Rack.
        rack: Option<String>,
        /// Internal listener address.
        internal_address: String,
        /// Its data directory's id.
        #[serde(default)]
        storage_id: Option<Uuid>,
        /// Most replicas placement may give it.
        #[serde(default)]
        max_replicas: Option<u32>,
    },
    /// A broker is alive; `applied_index` is how far it has applied the metadata log.
    Heartbeat {
        /// Node id.
        node_id: i32,
        /// Its broker epoch.
        epoch: u64,
        /// Its last applied metadata log index.
        applied_index: u64,
    },
    /// Create a topic, placing its replicas.
    CreateTopic {
        /// Name.
        name: String,
        /// Partition count.
        partitions: i32,
        /// Replication factor (-1: the default).
        replication_factor: i16,
        /// Config overrides.
        configs: BTreeMap<String, String>,
    },
    /// Delete a topic.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// Raise a topic's partition count, placing the new replicas.
    CreatePartitions {
        /// Name.
        name: String,
        /// The new count.
        count: i32,
    },
    /// Replace a topic's config overrides.
    AlterConfigs {
        /// Name.
        name: String,
        /// The overrides.
        configs: BTreeMap<String, String>,
    },
    /// Take over a topic of a single-node data directory being adopted into the cluster:
    /// same id, configs and epochs, every partition on `node_id` (where its logs are).
    AdoptTopic {
        /// The broker holding the logs.
        node_id: i32,
        /// Name.
        name: String,
        /// The id it had.
        id: Uuid,
        /// Partition count.
        partitions: i32,
        /// Config overrides.
        configs: BTreeMap<String, String>,
        /// Leader epochs where not 0.
        leader_epochs: BTreeMap<i32, i32>,
    },
    /// Replace the dynamic configs of a broker resource (`""` or a node id).
    AlterBrokerConfigs {
        /// The resource.
        resource: String,
        /// The configs.
        configs: BTreeMap<String, String>,
    },
    /// Never hand out producer ids below `floor` (those a single-node data directory used).
    RaiseProducerIdFloor {
        /// The floor.
        floor: i64,
    },
    /// Hand out a producer-id block.
    AllocateProducerIds {
        /// The broker asking.
        node_id: i32,
        /// Block size.
        count: i64,
    },
    /// A partition leader changes its ISR (Kafka's AlterPartition): shrinks it by followers
    /// that fell behind, grows it by followers that caught up. Refused unless `leader` leads
    /// at `leader_epoch` and `partition_epoch` is current; a member added must be live.
    AlterPartition {
        /// The leader asking.
        leader: i32,
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The leader epoch it leads in.
        leader_epoch: i32,
        /// The partition epoch its view has.
        partition_epoch: i32,
        /// The ISR it wants (itself included).
        isr: Vec<i32>,
    },
    /// A broker is shutting down cleanly: fence it now (its leaderships move, it leaves
    /// every ISR) rather than after its session times out, and forget its session so its
    /// next start registers at once.
    ControlledShutdown {
        /// Node id.
        node_id: i32,
        /// Its broker epoch.
        epoch: u64,
    },
    /// Start, replace or (with `target: None`) cancel a reassignment of one partition (Kafka's
    /// AlterPartitionReassignments). The controller completes it once the added replicas are
    /// in sync ([`Command::CompleteReassignment`]).
    Reassign {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The replicas wanted, preferred leader first; `None` cancels.
        target: Option<Vec<i32>>,
    },
    /// Elect a leader for one partition (Kafka's ElectLeaders): the preferred replica (the
    /// first one) if it is live and in sync, or, with `unclean`, any live replica of an
    /// offline partition (it may lack acknowledged records: documented as losing data).
    ElectLeader {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Unclean election (Kafka's election type 1) instead of preferred (type 0).
        unclean: bool,
    },
    /// A node that is not a voter joins as a learner: it receives the metadata log.
    Join {
        /// Node id.
        node_id: NodeId,
        /// Internal listener address.
        internal_address: String,
    },
}

/// A successful controller answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerReply {
    /// The command is committed at `index` (applied on the leader); the asker waits until
    /// its own state machine reaches `index` before answering its client.
    Committed {
        /// The log index of the command.
        index: u64,
        /// What it did.
        applied: Applied,
    },
    /// A heartbeat's answer.
    Heartbeat {
        /// Whether the broker is (still) fenced.
        fenced: bool,
        /// The log index to wait for if the heartbeat unfenced it (0 if not).
        index: u64,
    },
}

/// Why the controller did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ControllerError {
    /// This node does not lead; `leader` is who does, if known. Retriable.
    #[error("not the controller (the leader is {leader:?})")]
    NotController {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// No controller answered within the deadline (no quorum). Retriable.
    #[error("no controller is available: {0}")]
    Unavailable(String),
    /// The state machine refused the command.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// Another live process holds this node id.
    #[error("node id {node_id} is already registered by a live broker (incarnation {live}); refusing a second one")]
    DuplicateBroker {
        /// The node id.
        node_id: i32,
        /// The live registration's incarnation.
        live: Uuid,
    },
    /// The replication factor cannot be met.
    #[error("replication factor {requested}: {reason}")]
    InvalidReplicationFactor {
        /// What was asked.
        requested: i16,
        /// Why it cannot be.
        reason: String,
    },
    /// A partition count out of range, or no room to place the replicas.
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    /// A topic name that Kafka does not allow.
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    /// The partition already has the leader an election would give it.
    #[error("{0}: election not needed")]
    ElectionNotNeeded(String),
    /// The preferred replica is fenced or out of sync.
    #[error("{0}: the preferred leader is not available")]
    PreferredLeaderNotAvailable(String),
    /// No live replica could lead (an unclean election of a partition that has a leader,
    /// or none of its replicas is live).
    #[error("{0}: no eligible leader is available")]
    EligibleLeadersNotAvailable(String),
    /// Raft failed (storage error, shutting down).
    #[error("raft: {0}")]
    Raft(String),
}

/// Timing and placement knobs of the controller.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How often brokers heartbeat (and the leader checks sessions).
    pub heartbeat_interval: Duration,
    /// A broker whose last heartbeat is older than this is fenced.
    pub session_timeout: Duration,
    /// How new replicas are placed.
    pub placement: Strategy,
    /// Replicas per partition of a topic created without a replication factor (Kafka's
    /// `default.replication.factor`); capped at the registered brokers.
    pub default_replication_factor: i16,
    /// Whether the controller moves leadership back to preferred replicas by itself (Kafka's
    /// `auto.leader.rebalance.enable`).
    pub auto_leader_rebalance: bool,
    /// How often it checks (`leader.imbalance.check.interval.seconds`).
    pub leader_imbalance_check_interval: Duration,
    /// A broker whose share of its preferred partitions it does not lead exceeds this
    /// percentage gets them back (`leader.imbalance.per.broker.percentage`).
    pub leader_imbalance_per_broker_percentage: u32,
    /// Automatic replica rebalancing (see [`Controller::auto_rebalance`]).
    pub auto_rebalance: Option<AutoRebalance>,
}

/// When the controller moves replicas by itself: at most every `interval`, if the live
/// brokers' replica counts differ by `threshold` or more (a broker joined), or a broker has
/// been fenced for `fenced_delay` (its replicas move to live brokers). Never while a
/// reassignment runs or while a broker has been fenced for less than `fenced_delay` (a
/// restart should not move data).
#[derive(Debug, Clone, Copy)]
pub struct AutoRebalance {
    /// Least time between two checks.
    pub interval: Duration,
    /// Replica-count spread over the live brokers that triggers a rebalance.
    pub threshold: u32,
    /// How long a broker stays fenced before its replicas are moved away.
    pub fenced_delay: Duration,
}

/// The topic config that allows unclean leader election (Kafka's name).
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

#[derive(Debug, Default)]
struct Sessions {
    /// When this node last became leader (`None` while it is not).
    leader_since: Option<Instant>,
    /// The last other node this node saw leading, while it did not lead itself.
    previous_leader: Option<NodeId>,
    last_seen: HashMap<i32, Instant>,
}

/// Most partitions one topic may have (as the broker's own limit).
pub const MAX_PARTITIONS: i32 = 10_000;

/// The controller of one node.
pub struct Controller {
    me: NodeId,
    raft: Raft,
    shared: Arc<SharedState>,
    config: ControllerConfig,
    sessions: Mutex<Sessions>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").field("node_id", &self.me).finish_non_exhaustive()
    }
}

impl Controller {
    /// The controller of node `me`.
    pub fn new(me: NodeId, raft: Raft, shared: Arc<SharedState>, config: ControllerConfig) -> Controller {
        Controller { me, raft, shared, config, sessions: Mutex::new(Sessions::default()) }
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    fn ensure_leader(&self) -> Result<(), ControllerError> {
        match self.leader() {
            Some(l) if l == self.me => Ok(()),
            leader => Err(ControllerError::NotController { leader }),
        }
    }

    /// Proposes `command` and waits until it is committed and applied here.
    async fn propose(&self, command: Command) -> Result<ControllerReply, ControllerError> {
        match self.raft.client_write(command).await {
            Ok(resp) => match resp.data {
                Some(Ok(applied)) => Ok(ControllerReply::Committed { index: resp.log_id.index, applied }),
                Some(Err(rejected)) => Err(ControllerError::Rejected(rejected)),
                None => Err(ControllerError::Raft("a command entry applied without an outcome".to_string())),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ControllerError::NotController { leader: f.leader_id })
            }
            Err(e) => Err(ControllerError::Raft(e.to_string())),
        }
    }

    /// Answers one request (see [`ControllerRequest`]).
    pub async fn handle(&self, request: ControllerRequest) -> Result<ControllerReply, ControllerError> {
        self.ensure_leader()?;
        match request {
            ControllerRequest::Register {
                node_id,
                incarnation,
                host,
                port,
                rack,
                internal_address,
                storage_id,
                max_replicas,
            } => {
                self.check_duplicate(node_id, incarnation)?;
                let lost = {
                    let s = self.shared.read();
                    s.cluster
                        .brokers
                        .get(&node_id)
                        .and_then(|b| b.storage_id)
                        .zip(storage_id)
                        .is_some_and(|(a, b)| a != b)
                };
                if lost {
                    warn!(
                        node_id,
                        "broker registers with another data directory than before (a lost disk): it rejoins no ISR until caught up, and leads none of its old last-replica partitions"
                    );
                }
                let reply = self
                    .propose(Command::RegisterBroker {
                        node_id,
                        incarnation,
                        host,
                        port,
                        rack,
                        internal_address,
                        storage_id,
                        max_replicas,
                    })
                    .await?;
                self.sessions().last_seen.insert(node_id, Instant::now());
                info!(node_id, %incarnation, "broker registered");
                metrics::counter!("strom_cluster_broker_registrations_total").increment(1);
                Ok(reply)
            }
            ControllerRequest::Heartbeat { node_id, epoch, applied_index } => {
                self.heartbeat(node_id, epoch, applied_index).await
            }
            ControllerRequest::CreateTopic { name, partitions, replication_factor, configs } => {
                strom_meta::validate_topic_name(&name).map_err(|e| ControllerError::InvalidTopic(e.to_string()))?;
                if self.shared.read().cluster.topics.contains_key(&name) {
                    return Err(Rejected::TopicExists(name).into());
                }
                check_partitions(partitions)?;
                let rf = self.replication_factor_for(replication_factor)?;
                let assignment = self.place(partitions, rf)?;
                let id = Uuid::new_v4();
                self.propose(Command::CreateTopic { name, id, configs, assignment, leader_epochs: BTreeMap::new() })
                    .await
            }
            ControllerRequest::DeleteTopic { name } => self.propose(Command::DeleteTopic { name }).await,
            ControllerRequest::CreatePartitions { name, count } => {
                check_partitions(count)?;
                let (current, rf) = {
                    let s = self.shared.read();
                    let t = s.cluster.topics.get(&name).ok_or_else(|| Rejected::UnknownTopic(name.clone()))?;
                    let rf = t.partitions.first().map(|p| p.replicas.len()).unwrap_or(1);
                    (t.partitions.len() as i32, i16::try_from(rf).unwrap_or(1))
                };
                if count <= current {
                    return Err(ControllerError::InvalidPartitions(format!(
                        "topic {name:?} has {current} partitions; the new count {count} must be larger"
                    )));
                }
                let assignment = self.place(count - current, rf)?;
                self.propose(Command::CreatePartitions { name, assignment }).await
            }
            ControllerRequest::AlterConfigs { name, configs } => {
                self.propose(Command::AlterConfigs { name, configs }).await
            }
            ControllerRequest::AdoptTopic { node_id, name, id, partitions, configs, leader_epochs } => {
                check_partitions(partitions)?;
                let assignment = vec![vec![node_id]; partitions as usize];
                self.propose(Command::CreateTopic { name, id, configs, assignment, leader_epochs }).await
            }
            ControllerRequest::AlterBrokerConfigs { resource, configs } => {
                self.propose(Command::AlterBrokerConfigs { resource, configs }).await
            }
            ControllerRequest::RaiseProducerIdFloor { floor } => {
                self.propose(Command::RaiseProducerIdFloor { floor }).await
            }
            ControllerRequest::AllocateProducerIds { node_id, count } => {
                self.propose(Command::AllocateProducerIds { node_id, count }).await
            }
            ControllerRequest::AlterPartition { leader, topic, partition, leader_epoch, partition_epoch, isr } => {
                self.check_isr_change(leader, &topic, partition, leader_epoch, &isr)?;
                let reply = self
                    .propose(Command::ChangePartition {
                        topic: topic.clone(),
                        partition,
                        partition_epoch,
                        leader: Some(leader),
                        isr,
                    })
                    .await?;
                // An added replica joining the ISR may be the last one a reassignment waited for.
                self.complete_reassignment(&topic, partition).await;
                Ok(reply)
            }
            ControllerRequest::Reassign { topic, partition, target } => self.reassign(&topic, partition, target).await,
            ControllerRequest::ElectLeader { topic, partition, unclean } => {
                self.elect_leader(&topic, partition, unclean).await
            }
            ControllerRequest::ControlledShutdown { node_id, epoch } => {
                let reply = self.propose(Command::FenceBroker { node_id, epoch }).await?;
                self.sessions().last_seen.remove(&node_id);
                info!(node_id, epoch, "broker in controlled shutdown fenced; its partitions moved");
                Ok(reply)
            }
            ControllerRequest::Join { node_id, internal_address } => {
                self.check_duplicate_member(node_id, &internal_address)?;
                let resp =
                    self.raft.add_learner(node_id, BasicNode::new(internal_address.clone()), true).await.map_err(
                        |e| match e {
                            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                                ControllerError::NotController { leader: f.leader_id }
                            }
                            e => ControllerError::Raft(e.to_string()),
                        },
                    )?;
                info!(node_id, %internal_address, "node joined the metadata quorum as a learner");
                Ok(ControllerReply::Committed { index: resp.log_id.index, applied: Applied::Done })
            }
        }
    }

    /// Starts, replaces or cancels one partition's reassignment (see
    /// [`ControllerRequest::Reassign`]).
    async fn reassign(
        &self,
        topic: &str,
        partition: i32,
        target: Option<Vec<i32>>,
    ) -> Result<ControllerReply, ControllerError> {
        // An ISR change may commit between reading the epoch and applying: try again.
        let mut attempts = 0;
        let reply = loop {
            let partition_epoch = {
                let s = self.shared.read();
                let p = partition_record(&s.cluster, topic, partition)?;
                if let Some(target) = &target {
                    if let Some(r) = target.iter().find(|r| !s.cluster.brokers.contains_key(r)) {
                        return Err(Rejected::UnknownBroker(*r).into());
                    }
                }
                p.partition_epoch
            };
            let command = Command::ReassignPartition {
                topic: topic.to_string(),
                partition,
                partition_epoch,
                target: target.clone(),
            };
            attempts += 1;
            match self.propose(command).await {
                Err(ControllerError::Rejected(Rejected::StalePartitionEpoch { .. })) if attempts < 5 => {
                    continue;
                }
                other => break other?,
            }
        };
        info!(%topic, partition, "partition reassignment changed");
        // A target already in sync (a pure removal, or a reordering) completes at once.
        self.complete_reassignment(topic, partition).await;
        Ok(reply)
    }

    /// Proposes the end of `topic`-`partition`'s reassignment if every added replica is in
    /// sync; otherwise (or if none runs) does nothing. A failure is logged: the next tick of
    /// [`Controller::run_failure_detector`] tries again.
    async fn complete_reassignment(&self, topic: &str, partition: i32) {
        let ready = {
            let s = self.shared.read();
            match partition_record(&s.cluster, topic, partition) {
                Ok(p) if p.reassigning() && p.adding.iter().all(|r| p.isr.contains(r)) => Some(p.partition_epoch),
                _ => None,
            }
        };
        let Some(partition_epoch) = ready else { return };
        let command = Command::CompleteReassignment { topic: topic.to_string(), partition, partition_epoch };
        match self.propose(command).await {
            Ok(_) => {
                info!(%topic, partition, "partition reassignment completed");
                metrics::counter!("strom_cluster_reassignments_completed_total").increment(1);
            }
            Err(e) => warn!(%topic, partition, error = %e, "could not complete a partition reassignment yet"),
        }
    }

    /// Every `(topic, partition)` whose record satisfies `wanted`, from one read of the state.
    fn partitions_where(
        &self,
        wanted: impl Fn(&crate::state::ClusterState, &crate::state::TopicRecord, &crate::state::PartitionRecord) -> bool,
    ) -> Vec<(String, i32)> {
        let s = self.shared.read();
        let mut out = Vec::new();
        for (name, t) in &s.cluster.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                if wanted(&s.cluster, t, p) {
                    out.push((name.clone(), i as i32));
                }
            }
        }
        out
    }

    /// Completes every reassignment whose added replicas are all in sync.
    async fn complete_reassignments(&self) {
        let ready = self.partitions_where(|_, _, p| p.reassigning() && p.adding.iter().all(|r| p.isr.contains(r)));
        for (topic, partition) in ready {
            self.complete_reassignment(&topic, partition).await;
        }
    }

    /// One partition's election (see [`ControllerRequest::ElectLeader`]).
    async fn elect_leader(
        &self,
        topic: &str,
        partition: i32,
        unclean: bool,
    ) -> Result<ControllerReply, ControllerError> {
        let at = format!("{topic}-{partition}");
        let (leader, isr, partition_epoch) = {
            let s = self.shared.read();
            let p = partition_record(&s.cluster, topic, partition)?;
            if unclean {
                if p.leader.is_some() {
                    return Err(ControllerError::ElectionNotNeeded(at));
                }
                let Some(r) = p.replicas.iter().copied().find(|r| s.cluster.is_live(*r)) else {
                    return Err(ControllerError::EligibleLeadersNotAvailable(at));
                };
                (r, vec![r], p.partition_epoch)
            } else {
                let preferred = p.replicas[0];
                if p.leader == Some(preferred) {
                    return Err(ControllerError::ElectionNotNeeded(at));
                }
                if !p.isr.contains(&preferred) || !s.cluster.is_live(preferred) {
                    return Err(ControllerError::PreferredLeaderNotAvailable(at));
                }
                (preferred, p.isr.clone(), p.partition_epoch)
            }
        };
        if unclean {
            warn!(%topic, partition, leader, "unclean leader election: the new leader may lack acknowledged records");
            metrics::counter!("strom_cluster_unclean_elections_total").increment(1);
        }
        self.propose(Command::ChangePartition {
            topic: topic.to_string(),
            partition,
            partition_epoch,
            leader: Some(leader),
            isr,
        })
        .await
    }

    /// Kafka's automatic leader rebalance: for every broker leading fewer than
    /// `100 - leader_imbalance_per_broker_percentage` percent of the partitions it is the
    /// preferred replica of, moves those it is live and in sync for back to it.
    async fn balance_leaders(&self) {
        let moves: Vec<(String, i32)> = {
            let s = self.shared.read();
            let mut preferred: BTreeMap<i32, (u32, Vec<(String, i32)>)> = BTreeMap::new();
            for (name, t) in &s.cluster.topics {
                for (i, p) in t.partitions.iter().enumerate() {
                    let first = p.replicas[0];
                    let entry = preferred.entry(first).or_default();
                    entry.0 += 1;
                    if p.leader != Some(first) && p.isr.contains(&first) && s.cluster.is_live(first) {
                        entry.1.push((name.clone(), i as i32));
                    }
                }
            }
            preferred
                .into_values()
                .filter(|(total, off)| {
                    u64::from(*total) > 0
                        && (off.len() as u64) * 100
                            > u64::from(*total) * u64::from(self.config.leader_imbalance_per_broker_percentage)
                })
                .flat_map(|(_, off)| off)
                .collect()
        };
        for (topic, partition) in moves {
            match self.elect_leader(&topic, partition, false).await {
                Ok(_) => info!(%topic, partition, "leadership moved back to the preferred replica"),
                Err(e) => debug!(%topic, partition, error = %e, "preferred leader election skipped"),
            }
        }
    }

    /// Automatic replica rebalancing (see [`AutoRebalance`]): plans every topic with the sticky
    /// strategy over the live brokers (a broker fenced for `fenced_delay` counts as gone) and
    /// starts a reassignment for each changed partition. `fenced_since` is when this
    /// controller first saw each fenced broker fenced.
    async fn auto_rebalance(&self, rules: AutoRebalance, fenced_since: &HashMap<i32, Instant>) {
        let gone = |id: &i32| fenced_since.get(id).is_some_and(|t| t.elapsed() >= rules.fenced_delay);
        // A reassignment waiting for a replica on a broker that has been away that long
        // will not finish: cancel it (its original replicas stay), so a new plan can place
        // that replica elsewhere.
        let stuck = self.partitions_where(|_, _, p| p.adding.iter().any(|r| !p.isr.contains(r) && gone(r)));
        for (topic, partition) in stuck {
            match self.reassign(&topic, partition, None).await {
                Ok(_) => {
                    warn!(%topic, partition, "automatic rebalance: cancelled a reassignment waiting for a broker that stayed away")
                }
                Err(e) => {
                    warn!(%topic, partition, error = %e, "automatic rebalance: could not cancel a stuck reassignment")
                }
            }
        }
        let (topics, brokers) = {
            let s = self.shared.read();
            let c = &s.cluster;
            if c.topics.values().flat_map(|t| &t.partitions).any(|p| p.reassigning()) {
                return;
            }
            let fenced: Vec<i32> = c.brokers.values().filter(|b| b.fenced).map(|b| b.node_id).collect();
            if fenced.iter().any(|id| fenced_since.get(id).is_none_or(|t| t.elapsed() < rules.fenced_delay)) {
                return; // maybe a restart: wait for it to come back or stay away long enough
            }
            let brokers: Vec<BrokerSlot> = c
                .live_brokers()
                .map(|b| BrokerSlot { id: b.node_id, rack: b.rack.clone(), capacity: b.max_replicas })
                .collect();
            let mut counts: BTreeMap<i32, u32> = brokers.iter().map(|b| (b.id, 0)).collect();
            let mut on_gone = false;
            for r in c.topics.values().flat_map(|t| &t.partitions).flat_map(|p| &p.replicas) {
                match counts.get_mut(r) {
                    Some(n) => *n += 1,
                    None => on_gone = true,
                }
            }
            let spread = counts.values().max().zip(counts.values().min()).map_or(0, |(max, min)| max - min);
            if brokers.is_empty() || (spread < rules.threshold && !on_gone) {
                return;
            }
            let topics: BTreeMap<String, placement::Assignment> = c
                .topics
                .iter()
                .map(|(name, t)| (name.clone(), t.partitions.iter().map(|p| p.replicas.clone()).collect()))
                .collect();
            (topics, brokers)
        };
        let plans = placement::plan_cluster(Strategy::Sticky, &topics, &brokers, &BTreeSet::new());
        for (topic, plan) in plans {
            let plan = match plan {
                Ok(plan) => plan,
                Err(e) => {
                    debug!(%topic, error = %e, "automatic rebalance: no valid plan for this topic");
                    continue;
                }
            };
            for (partition, target) in plan.changed_partitions(&topics[&topic]) {
                match self.reassign(&topic, partition, Some(target.clone())).await {
                    Ok(_) => {
                        info!(%topic, partition, ?target, "automatic rebalance: partition reassigned");
                        metrics::counter!("strom_cluster_auto_reassignments_total").increment(1);
                    }
                    Err(e) => warn!(%topic, partition, error = %e, "automatic rebalance: reassignment refused"),
                }
            }
        }
    }

    /// Elects a live replica for every offline partition of a topic with
    /// `unclean.leader.election.enable=true`.
    async fn unclean_elections(&self) {
        let offline = self.partitions_where(|cluster, t, p| {
            t.configs.get(UNCLEAN_LEADER_ELECTION).is_some_and(|v| v.trim() == "true")
                && p.leader.is_none()
                && p.replicas.iter().any(|r| cluster.is_live(*r))
        });
        for (topic, partition) in offline {
            if let Err(e) = self.elect_leader(&topic, partition, true).await {
                warn!(%topic, partition, error = %e, "unclean leader election failed");
            }
        }
    }

    /// The replication factor a create asks for: -1 is the cluster default
    /// ([`ControllerConfig::default_replication_factor`], capped at the live brokers).
    /// Placement refuses more replicas than brokers.
    fn replication_factor_for(&self, requested: i16) -> Result<i16, ControllerError> {
        if requested == -1 {
            let brokers = self.shared.read().cluster.live_brokers().count();
            let cap = i16::try_from(brokers.max(1)).unwrap_or(i16::MAX);
            return Ok(self.config.default_replication_factor.clamp(1, cap));
        }
        check_replication_factor(requested)
    }

    /// Refuses an ISR change from a broker that does not lead the partition at that epoch, or
    /// one that adds a fenced broker (KIP-841: a fenced replica must not join an ISR).
    fn check_isr_change(
        &self,
        leader: i32,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        isr: &[i32],
    ) -> Result<(), ControllerError> {
        let s = self.shared.read();
        let t = s.cluster.topics.get(topic).ok_or_else(|| Rejected::UnknownTopic(topic.to_string()))?;
        let p = usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .ok_or_else(|| Rejected::Invalid(format!("{topic} has no partition {partition}")))?;
        if p.leader != Some(leader) || p.leader_epoch != leader_epoch {
            return Err(ControllerError::Rejected(Rejected::Invalid(format!(
                "{topic}-{partition}: broker {leader} at leader epoch {leader_epoch} does not lead (leader {:?}, epoch {})",
                p.leader, p.leader_epoch
            ))));
        }
        if let Some(r) = isr.iter().find(|r| !p.isr.contains(r) && !s.cluster.is_live(**r)) {
            return Err(ControllerError::Rejected(Rejected::Invalid(format!(
                "{topic}-{partition}: broker {r} is fenced and cannot join the ISR"
            ))));
        }
        Ok(())
    }

    /// Refuses a registration of a node id whose current registration is another live
    /// process (KIP-631's duplicate broker registration).
    fn check_duplicate(&self, node_id: i32, incarnation: Uuid) -> Result<(), ControllerError> {
        let live = {
            let s = self.shared.read();
            match s.cluster.brokers.get(&node_id) {
                Some(b) if b.incarnation != incarnation => Some(b.incarnation),
                _ => None,
            }
        };
        let Some(live) = live else { return Ok(()) };
        if self.session_alive(node_id) {
            warn!(node_id, %live, %incarnation, "refusing a second broker with a live node id");
            return Err(ControllerError::DuplicateBroker { node_id, live });
        }
        Ok(())
    }

    /// Whether broker `node_id` heartbeat this leader within the session timeout.
    fn session_alive(&self, node_id: i32) -> bool {
        self.sessions().last_seen.get(&node_id).is_some_and(|t| t.elapsed() < self.config.session_timeout)
    }

    /// Refuses a join that would re-point a member whose broker is alive to another address.
    fn check_duplicate_member(&self, node_id: NodeId, address: &str) -> Result<(), ControllerError> {
        let (known, live) = {
            let s = self.shared.read();
            let known = s.membership.membership().get_node(&node_id).map(|n| n.addr.clone());
            let live = i32::try_from(node_id).ok().and_then(|id| s.cluster.brokers.get(&id)).map(|b| b.incarnation);
            (known, live)
        };
        let (Some(known), Some(live)) = (known, live) else { return Ok(()) };
        let id = i32::try_from(node_id).unwrap_or(i32::MAX);
        if known != address && self.session_alive(id) {
            warn!(node_id, %known, %address, "refusing a join: the node id is live at another address");
            return Err(ControllerError::DuplicateBroker { node_id: id, live });
        }
        Ok(())
    }

    async fn heartbeat(
        &self,
        node_id: i32,
        epoch: u64,
        applied_index: u64,
    ) -> Result<ControllerReply, ControllerError> {
        let fenced = {
            let s = self.shared.read();
            let b = s.cluster.brokers.get(&node_id).ok_or(Rejected::UnknownBroker(node_id))?;
            if b.epoch != epoch {
                return Err(Rejected::StaleBrokerEpoch { node_id, epoch, current: b.epoch }.into());
            }
            b.fenced
        };
        self.sessions().last_seen.insert(node_id, Instant::now());
        // Unfenced only once it has applied the log up to its own registration: it then
        // knows every topic and assignment that existed when it came back.
        if fenced && applied_index >= epoch {
            let ControllerReply::Committed { index, .. } =
                self.propose(Command::UnfenceBroker { node_id, epoch }).await?
            else {
                return Err(ControllerError::Raft("unfence returned no index".to_string()));
            };
            info!(node_id, epoch, "broker unfenced");
            metrics::counter!("strom_cluster_broker_unfenced_total").increment(1);
            return Ok(ControllerReply::Heartbeat { fenced: false, index });
        }
        Ok(ControllerReply::Heartbeat { fenced, index: 0 })
    }

    fn place(&self, partitions: i32, rf: i16) -> Result<Vec<Vec<i32>>, ControllerError> {
        let (brokers, load) = {
            let s = self.shared.read();
            let brokers: Vec<BrokerSlot> = s
                .cluster
                .live_brokers()
                .map(|b| BrokerSlot { id: b.node_id, rack: b.rack.clone(), capacity: b.max_replicas })
                .collect();
            (brokers, s.cluster.replica_load())
        };
        let excluded = BTreeSet::new();
        let seed = load.values().map(|v| u64::from(*v)).sum::<u64>();
        let request = PlacementRequest {
            brokers: &brokers,
            excluded: &excluded,
            load: &load,
            partitions,
            replication_factor: rf,
            seed,
        };
        placement::assign(self.config.placement, &request).map_err(|e| match e {
            placement::PlacementError::NoBrokers => {
                ControllerError::Unavailable("no live broker to place replicas on".to_string())
            }
            e @ (placement::PlacementError::ReplicationFactorTooLarge { .. }
            | placement::PlacementError::InvalidReplicationFactor(_)) => {
                ControllerError::InvalidReplicationFactor { requested: rf, reason: e.to_string() }
            }
            e => ControllerError::InvalidPartitions(e.to_string()),
        })
    }

    /// Fences the broker of the node that led before this one took over, if it is still
    /// unfenced: this node won an election because a majority stopped hearing from that
    /// leader for an election timeout, which is as good a sign of its death as a session
    /// timeout (a paused or cut-off old controller is fenced too, rightly: its partitions
    /// move to live replicas). If it is alive, its next heartbeat unfences it.
    async fn fence_previous_controller(&self, node_id: i32) {
        let epoch = {
            let s = self.shared.read();
            match s.cluster.brokers.get(&node_id) {
                Some(b) if !b.fenced => b.epoch,
                _ => return,
            }
        };
        match self.propose(Command::FenceBroker { node_id, epoch }).await {
            Ok(_) => {
                warn!(node_id, epoch, "broker of the previous controller fenced: a majority stopped hearing from it");
                metrics::counter!("strom_cluster_broker_fenced_total").increment(1);
            }
            Err(e) => warn!(node_id, error = %e, "could not fence the previous controller's broker"),
        }
    }

    /// How long a new controller waits for a broker's first heartbeat: four heartbeat
    /// intervals, at most the session timeout.
    fn first_contact_timeout(&self) -> Duration {
        (self.config.heartbeat_interval * 4).min(self.config.session_timeout)
    }

    /// The failure detector: while this node leads, fences every unfenced broker whose last
    /// heartbeat is older than the session timeout (or, for a broker not heard from since
    /// this node took over, older than [`Controller::first_contact_timeout`]). Runs until
    /// `shutdown`.
    pub async fn run_failure_detector(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leaders_checked = Instant::now();
        let mut rebalance_checked = Instant::now();
        let mut fenced_since: HashMap<i32, Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let leader = self.leader();
            let leading = leader == Some(self.me);
            let (since, suspect) = {
                let mut sessions = self.sessions();
                match (leading, sessions.leader_since) {
                    (false, _) => {
                        sessions.leader_since = None;
                        if leader.is_some() {
                            sessions.previous_leader = leader;
                        }
                        continue;
                    }
                    (true, Some(t)) => (t, None),
                    (true, None) => {
                        info!(node_id = self.me, "this node is now the controller");
                        metrics::counter!("strom_cluster_controller_elections_total").increment(1);
                        let now = Instant::now();
                        sessions.leader_since = Some(now);
                        sessions.last_seen.clear();
                        (now, sessions.previous_leader.take())
                    }
                }
            };
            if let Some(previous) = suspect.and_then(|p| i32::try_from(p).ok()) {
                self.fence_previous_controller(previous).await;
            }
            let expired: Vec<(i32, u64)> = {
                let s = self.shared.read();
                let sessions = self.sessions();
                s.cluster
                    .live_brokers()
                    .filter(|b| match sessions.last_seen.get(&b.node_id) {
                        Some(last) => last.max(&since).elapsed() > self.config.session_timeout,
                        // Never heard since this node took over: a live broker finds the new
                        // controller within a heartbeat or two (it follows the Raft log), so
                        // it gets a few heartbeat intervals, not a whole session; a broker
                        // that died with the old controller is fenced that much sooner.
                        None => since.elapsed() > self.first_contact_timeout(),
                    })
                    .map(|b| (b.node_id, b.epoch))
                    .collect()
            };
            for (node_id, epoch) in expired {
                match self.propose(Command::FenceBroker { node_id, epoch }).await {
                    Ok(_) => {
                        warn!(node_id, epoch, timeout = ?self.config.session_timeout, "broker fenced: no heartbeat within the session timeout");
                        metrics::counter!("strom_cluster_broker_fenced_total").increment(1);
                    }
                    Err(e) => warn!(node_id, error = %e, "could not fence a broker"),
                }
            }
            self.complete_reassignments().await;
            self.unclean_elections().await;
            {
                let s = self.shared.read();
                fenced_since.retain(|id, _| s.cluster.brokers.get(id).is_some_and(|b| b.fenced));
                for b in s.cluster.brokers.values().filter(|b| b.fenced) {
                    fenced_since.entry(b.node_id).or_insert_with(Instant::now);
                }
            }
            if let Some(rules) = self.config.auto_rebalance {
                if rebalance_checked.elapsed() >= rules.interval && since.elapsed() >= self.config.session_timeout {
                    rebalance_checked = Instant::now();
                    self.auto_rebalance(rules, &fenced_since).await;
                }
            }
            // Not in the first moments of leading: brokers are still reporting in.
            if self.config.auto_leader_rebalance
                && leaders_checked.elapsed() >= self.config.leader_imbalance_check_interval
                && since.elapsed() >= self.config.session_timeout
            {
                leaders_checked = Instant::now();
                self.balance_leaders().await;
            }
        }
    }
}

/// One partition's record, or why there is none.
fn partition_record<'a>(
    cluster: &'a crate::state::ClusterState,
    topic: &str,
    partition: i32,
) -> Result<&'a crate::state::PartitionRecord, ControllerError> {
    let t = cluster.topics.get(topic).ok_or_else(|| Rejected::UnknownTopic(topic.to_string()))?;
    usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
        .ok_or_else(|| ControllerError::Rejected(Rejected::UnknownPartition { topic: topic.to_string(), partition }))
}

fn check_partitions(count: i32) -> Result<(), ControllerError> {
    if !(1..=MAX_PARTITIONS).contains(&count) {
        return Err(ControllerError::InvalidPartitions(format!("{count} is outside 1..={MAX_PARTITIONS}")));
    }
    Ok(())
}

/// Kafka's limit: a replication factor is a positive 16-bit count.
fn check_replication_factor(requested: i16) -> Result<i16, ControllerError> {
    if requested < 1 {
        return Err(ControllerError::InvalidReplicationFactor {
            requested,
            reason: "must be at least 1 (or -1 for the default)".to_string(),
        });
    }
    Ok(requested)
}
