//! [`ClusterNode`]: one node of the metadata quorum: its Raft instance over the durable
//! stores, its internal listener, its controller, and its broker's registration and
//! heartbeats.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::{BasicNode, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use crate::controller::{Controller, ControllerConfig, ControllerError, ControllerReply, ControllerRequest};
use crate::error::ClusterError;
use crate::network::client::{CallError, Network, Peer};
use crate::network::server::{Handler, serve};
use crate::network::wire::{Reply, Request};
use crate::placement::Strategy;
use crate::state::{Applied, Rejected};
use crate::storage::{self, SharedState};
use crate::types::{NodeId, Raft};

/// Name of the file holding the cluster id in the Raft directory.
pub const CLUSTER_ID_FILE: &str = "cluster-id";

/// How one node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The cluster id every node must share (refused otherwise). Recorded in the Raft
    /// directory at first start; a later start with another id is refused.
    pub cluster_id: String,
    /// This node's id (its broker's `node_id`).
    pub node_id: NodeId,
    /// The Raft directory (`<data_dir>/raft`).
    pub dir: PathBuf,
    /// Address the internal listener binds (port 0 picks one).
    pub internal_listener: SocketAddr,
    /// Address other nodes reach this one's internal listener at; `None`: the bound address.
    pub internal_advertised: Option<String>,
    /// The voters of the metadata quorum (node id -> internal address). A node not listed
    /// joins as a learner: it receives the log, votes in nothing, and is a broker only.
    pub voters: BTreeMap<NodeId, String>,
    /// How often brokers heartbeat the controller.
    pub heartbeat_interval: Duration,
    /// A broker silent for longer is fenced.
    pub session_timeout: Duration,
    /// Raft's election timeout range (a follower that hears no leader for a random time in
    /// it starts an election).
    pub election_timeout: (Duration, Duration),
    /// Raft leader heartbeat interval.
    pub raft_heartbeat: Duration,
    /// Take a snapshot (and purge the log before it) every this many entries.
    pub snapshot_every: u64,
    /// How new replicas are placed.
    pub placement: Strategy,
    /// Replicas per partition for a topic created without a replication factor.
    pub default_replication_factor: i16,
    /// Whether the controller moves leaderships back to preferred replicas by itself.
    pub auto_leader_rebalance: bool,
    /// How often it checks for leader imbalance.
    pub leader_imbalance_check_interval: Duration,
    /// The per-broker imbalance (percent of its preferred partitions it does not lead) above
    /// which it acts.
    pub leader_imbalance_per_broker_percentage: u32,
    /// Automatic replica rebalancing; `None` turns it off.
    pub auto_rebalance: Option<crate::controller::AutoRebalance>,
}

impl ClusterConfig {
    /// A config with the documented defaults: heartbeats every 250 ms, a 1.5 s session
    /// timeout, election timeouts of 300–600 ms (an election starts 0.9–1.2 s after the leader
    /// was last heard: openraft adds its leader lease, the upper bound), Raft heartbeats every 100 ms, a
    /// snapshot every 1,000 entries, round-robin placement, one replica per partition unless
    /// a create asks for more (Kafka's `default.replication.factor=1`), and Kafka's automatic
    /// leader rebalance (`auto.leader.rebalance.enable=true`, checked every 300 s, acting above
    /// a 10% imbalance per broker), and automatic replica rebalancing every 300 s at a spread of
    /// 2 replicas, or for a broker fenced for 300 s.
    pub fn new(cluster_id: &str, node_id: NodeId, dir: PathBuf, voters: BTreeMap<NodeId, String>) -> ClusterConfig {
        ClusterConfig {
            cluster_id: cluster_id.to_string(),
            node_id,
            dir,
            internal_listener: SocketAddr::from(([127, 0, 0, 1], 0)),
            internal_advertised: None,
            voters,
            heartbeat_interval: Duration::from_millis(250),
            session_timeout: Duration::from_millis(1500),
            election_timeout: (Duration::from_millis(300), Duration::from_millis(600)),
            raft_heartbeat: Duration::from_millis(100),
            snapshot_every: 1000,
            placement: Strategy::RoundRobin,
            default_replication_factor: 1,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval: Duration::from_secs(300),
            leader_imbalance_per_broker_percentage: 10,
            auto_rebalance: Some(crate::controller::AutoRebalance {
                interval: Duration::from_secs(300),
                threshold: 2,
                fenced_delay: Duration::from_secs(300),
            }),
        }
    }
}

/// This node's broker as clients reach it.
#[derive(Debug, Clone)]
pub struct BrokerEndpoint {
    /// Host clients connect to.
    pub host: String,
    /// Port clients connect to.
    pub port: i32,
    /// Rack.
    pub rack: Option<String>,
    /// The id of the broker's data directory (see [`crate::state::Command::RegisterBroker`]).
    pub storage_id: Option<Uuid>,
    /// Most replicas placement may give this broker (`None`: no limit).
    pub max_replicas: Option<u32>,
}

/// Where this node's broker registration stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerStatus {
    /// The broker epoch, once registered.
    pub epoch: Option<u64>,
    /// Whether the controller has it fenced.
    pub fenced: bool,
    /// The last registration or heartbeat error, cleared by the next success.
    pub last_error: Option<String>,
}

/// One running node. Dropping it does not stop it: call [`ClusterNode::shutdown`].
pub struct ClusterNode {
    config: ClusterConfig,
    raft: Raft,
    shared: Arc<SharedState>,
    controller: Arc<Controller>,
    internal_addr: SocketAddr,
    status: watch::Sender<BrokerStatus>,
    shutdown: CancellationToken,
    /// Cancelled by [`ClusterNode::controlled_shutdown`]: the broker stops heartbeating.
    leaving: CancellationToken,
    /// Held across each heartbeat, so a controlled shutdown knows none is in flight.
    heartbeat_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("node_id", &self.config.node_id)
            .field("internal_addr", &self.internal_addr)
            .finish_non_exhaustive()
    }
}

impl ClusterNode {
    /// Starts the node: checks the cluster id, opens the stores, binds the internal listener,
    /// starts Raft (initializing the quorum from `voters` on a pristine voter, joining as a
    /// learner otherwise), the failure detector, and the broker's registration and
    /// heartbeats. Returns without waiting for a quorum: an unreachable quorum shows as
    /// [`ControllerError::Unavailable`] on writes and in [`ClusterNode::broker_status`].
    pub async fn start(config: ClusterConfig, broker: BrokerEndpoint) -> Result<Arc<ClusterNode>, ClusterError> {
        let listener = TcpListener::bind(config.internal_listener)
            .await
            .map_err(|e| ClusterError::io(format!("binding the internal listener {}", config.internal_listener), e))?;
        ClusterNode::start_with_listener(config, listener, broker).await
    }

    /// [`ClusterNode::start`] on an internal listener already bound (tests bind port 0 for
    /// every node first, so each knows the others' addresses); `internal_listener` is ignored.
    pub async fn start_with_listener(
        config: ClusterConfig,
        listener: TcpListener,
        broker: BrokerEndpoint,
    ) -> Result<Arc<ClusterNode>, ClusterError> {
        if config.cluster_id.is_empty() {
            return Err(ClusterError::Config("cluster id is empty".to_string()));
        }
        if config.voters.is_empty() {
            return Err(ClusterError::Config("no voters are configured".to_string()));
        }
        if i32::try_from(config.node_id).is_err() {
            return Err(ClusterError::Config(format!("node id {} is out of range", config.node_id)));
        }
        check_cluster_id(&config)?;
        let (log, sm) = storage::open(&config.dir).map_err(|e| ClusterError::io("opening the raft stores", e))?;
        let shared = sm.shared();
        let raft_config = openraft::Config {
            cluster_name: config.cluster_id.clone(),
            heartbeat_interval: config.raft_heartbeat.as_millis() as u64,
            election_timeout_min: config.election_timeout.0.as_millis() as u64,
            election_timeout_max: config.election_timeout.1.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.snapshot_every / 2,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Config(e.to_string()))?;
        let network = Network { cluster_id: config.cluster_id.clone(), me: config.node_id };
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let internal_addr = listener.local_addr().map_err(|e| ClusterError::io("reading the internal address", e))?;
        let controller = Arc::new(Controller::new(
            config.node_id,
            raft.clone(),
            shared.clone(),
            ControllerConfig {
                heartbeat_interval: config.heartbeat_interval,
                session_timeout: config.session_timeout,
                placement: config.placement,
                default_replication_factor: config.default_replication_factor,
                auto_leader_rebalance: config.auto_leader_rebalance,
                leader_imbalance_check_interval: config.leader_imbalance_check_interval,
                leader_imbalance_per_broker_percentage: config.leader_imbalance_per_broker_percentage,
                auto_rebalance: config.auto_rebalance,
            },
        ));
        let shutdown = CancellationToken::new();
        let handler = Handler {
            cluster_id: config.cluster_id.clone(),
            me: config.node_id,
            raft: raft.clone(),
            controller: controller.clone(),
        };
        tokio::spawn(serve(listener, handler, shutdown.clone()));
        let (status, _) = watch::channel(BrokerStatus::default());
        let node = Arc::new(ClusterNode {
            config,
            raft,
            shared,
            controller,
            internal_addr,
            status,
            shutdown,
            leaving: CancellationToken::new(),
            heartbeat_lock: tokio::sync::Mutex::new(()),
        });
        node.join_quorum().await?;
        tokio::spawn(node.controller.clone().run_failure_detector(node.shutdown.clone()));
        tokio::spawn(node.clone().run_broker(broker));
        info!(node_id = node.config.node_id, internal = %node.internal_addr, cluster_id = %node.config.cluster_id, "cluster node started");
        Ok(node)
    }

    /// A voter initializes the quorum if its log is pristine (every voter does so with the
    /// same membership, which openraft allows); a non-voter asks to join as a learner.
    async fn join_quorum(self: &Arc<Self>) -> Result<(), ClusterError> {
        let me = self.config.node_id;
        if self.config.voters.contains_key(&me) {
            if !self.raft.is_initialized().await.map_err(|e| ClusterError::Raft(e.to_string()))? {
                let members: BTreeMap<NodeId, BasicNode> =
                    self.config.voters.iter().map(|(id, addr)| (*id, BasicNode::new(addr.clone()))).collect();
                match self.raft.initialize(members).await {
                    Ok(()) => info!(node_id = me, voters = ?self.config.voters, "initialized the metadata quorum"),
                    Err(e) => info!(node_id = me, reason = %e, "the metadata quorum was already initialized"),
                }
            }
            return Ok(());
        }
        let node = self.clone();
        tokio::spawn(async move {
            let request = ControllerRequest::Join { node_id: me, internal_address: node.internal_address() };
            loop {
                if node.shutdown.is_cancelled() {
                    return;
                }
                if node.is_member() {
                    return;
                }
                match node.submit(request.clone(), Duration::from_secs(10)).await {
                    Ok(_) => return,
                    Err(e) => warn!(node_id = me, error = %e, "joining the cluster as a learner; retrying"),
                }
            }
        });
        Ok(())
    }

    fn is_member(&self) -> bool {
        self.shared.read().membership.membership().get_node(&self.config.node_id).is_some()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.config.cluster_id
    }

    /// The address the internal listener is bound to.
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_addr
    }

    /// The address other nodes use for this one.
    pub fn internal_address(&self) -> String {
        self.config.internal_advertised.clone().unwrap_or_else(|| self.internal_addr.to_string())
    }

    /// The Raft handle (metrics, tests).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The applied metadata.
    pub fn shared(&self) -> &Arc<SharedState> {
        &self.shared
    }

    /// The node id of the controller (the Raft leader), if known.
    pub fn controller_id(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// This node's broker registration, watched.
    pub fn broker_status(&self) -> watch::Receiver<BrokerStatus> {
        self.status.subscribe()
    }

    /// Controlled shutdown (Kafka's): stops this broker's heartbeats and has the controller
    /// fence it now, which moves its leaderships to live in-sync replicas and takes it out of
    /// every ISR while it still serves, so clients and followers move over before it exits
    /// instead of after a session timeout. Returns once this node has applied the fence.
    pub async fn controlled_shutdown(&self, deadline: Duration) -> Result<(), ControllerError> {
        self.leaving.cancel();
        // No heartbeat may land after the fence: it would unfence the broker again.
        let _no_heartbeat = self.heartbeat_lock.lock().await;
        let Some(epoch) = self.status.borrow().epoch else { return Ok(()) };
        let node_id = self.config.node_id as i32;
        self.submit(ControllerRequest::ControlledShutdown { node_id, epoch }, deadline).await.map(|_| ())
    }

    /// Stops the node's tasks and Raft.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        if let Err(e) = self.raft.shutdown().await {
            warn!(error = %e, "raft did not shut down cleanly");
        }
    }

    /// Waits until this node has applied the log up to `index`.
    pub async fn wait_applied(&self, index: u64, deadline: Duration) -> Result<(), ControllerError> {
        let mut applied = self.shared.applied_index();
        match tokio::time::timeout(deadline, applied.wait_for(|i| *i >= index)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ControllerError::Raft("the state machine stopped".to_string())),
            Err(_) => {
                Err(ControllerError::Unavailable(format!("entry {index} was not applied here within {deadline:?}")))
            }
        }
    }

    /// Sends `request` to the controller, wherever it is, retrying while no leader is known
    /// or the leader moves, until `deadline`; then waits until this node has applied the
    /// result, so reads here see it.
    pub async fn submit(
        &self,
        request: ControllerRequest,
        deadline: Duration,
    ) -> Result<ControllerReply, ControllerError> {
        self.submit_with(request, deadline, &mut HashMap::new()).await
    }

    async fn submit_with(
        &self,
        request: ControllerRequest,
        deadline: Duration,
        peers: &mut HashMap<NodeId, Peer>,
    ) -> Result<ControllerReply, ControllerError> {
        let started = Instant::now();
        let mut hint: Option<NodeId> = None;
        let mut rotation = 0usize;
        let mut last_error = String::from("no leader is known");
        loop {
            let Some(left) = deadline.checked_sub(started.elapsed()).filter(|d| !d.is_zero()) else {
                return Err(ControllerError::Unavailable(format!(
                    "no controller answered within {deadline:?}: {last_error}"
                )));
            };
            let target = hint.take().or_else(|| self.controller_id()).unwrap_or_else(|| {
                // No leader known (a learner before its first entry): ask the voters in turn.
                let voters: Vec<NodeId> = self.config.voters.keys().copied().collect();
                rotation += 1;
                voters[rotation % voters.len()]
            });
            let result = if target == self.config.node_id {
                // A leader that lost its quorum never finishes a write: bound the wait.
                match tokio::time::timeout(left, self.controller.handle(request.clone())).await {
                    Ok(r) => r,
                    Err(_) => {
                        Err(ControllerError::Unavailable(format!("no quorum committed the write within {left:?}")))
                    }
                }
            } else {
                self.forward(target, &request, left, peers).await
            };
            match result {
                Ok(reply) => {
                    let index = match &reply {
                        ControllerReply::Committed { index, .. } => *index,
                        ControllerReply::Heartbeat { index, .. } => *index,
                    };
                    let left = deadline.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
                    self.wait_applied(index, left).await?;
                    return Ok(reply);
                }
                Err(ControllerError::NotController { leader }) => {
                    last_error = format!("node {target} is not the controller");
                    if leader.is_some() && leader != Some(target) {
                        hint = leader;
                        continue;
                    }
                }
                Err(ControllerError::Unavailable(e)) => last_error = e,
                Err(e) => return Err(e),
            }
            // A leader is being elected: wait for a change of leader or a short while.
            let mut metrics = self.raft.metrics();
            let wait = left.min(Duration::from_millis(100));
            let _ = tokio::time::timeout(wait, metrics.changed()).await;
        }
    }

    async fn forward(
        &self,
        target: NodeId,
        request: &ControllerRequest,
        left: Duration,
        peers: &mut HashMap<NodeId, Peer>,
    ) -> Result<ControllerReply, ControllerError> {
        let Some(addr) = self.address_of(target) else {
            return Err(ControllerError::Unavailable(format!("the address of node {target} is not known")));
        };
        let peer = peers
            .entry(target)
            .or_insert_with(|| Peer::new(&self.config.cluster_id, self.config.node_id, target, &addr));
        match peer.call(&Request::Controller(request.clone()), left).await {
            Ok(Reply::Controller(r)) => r,
            Ok(_) => {
                Err(ControllerError::Raft(format!("node {target} answered a controller request with another reply")))
            }
            Err(e @ CallError::Refused { .. }) => {
                warn!(error = %e, "a peer refused this node");
                Err(ControllerError::Unavailable(e.to_string()))
            }
            Err(e) => Err(ControllerError::Unavailable(e.to_string())),
        }
    }

    fn address_of(&self, node: NodeId) -> Option<String> {
        let from_membership = self.shared.read().membership.membership().get_node(&node).map(|n| n.addr.clone());
        from_membership.or_else(|| self.config.voters.get(&node).cloned())
    }

    /// Registers this node's broker, then heartbeats; registers again when the controller
    /// no longer knows the registration. Runs until shutdown.
    async fn run_broker(self: Arc<Self>, broker: BrokerEndpoint) {
        let node_id = self.config.node_id as i32;
        let incarnation = Uuid::new_v4();
        let mut peers = HashMap::new();
        let interval = self.config.heartbeat_interval;
        'register: loop {
            let register = ControllerRequest::Register {
                node_id,
                incarnation,
                host: broker.host.clone(),
                port: broker.port,
                rack: broker.rack.clone(),
                internal_address: self.internal_address(),
                storage_id: broker.storage_id,
                max_replicas: broker.max_replicas,
            };
            let epoch = loop {
                if self.shutdown.is_cancelled() {
                    return;
                }
                match self.submit_with(register.clone(), Duration::from_secs(5), &mut peers).await {
                    Ok(ControllerReply::Committed { applied: Applied::Registered { epoch }, .. }) => break epoch,
                    Ok(other) => self.set_error(format!("unexpected registration reply {other:?}")),
                    Err(e) => {
                        warn!(node_id, error = %e, "broker registration failed; retrying");
                        self.set_error(e.to_string());
                        self.pause(interval).await;
                    }
                }
            };
            self.status.send_replace(BrokerStatus { epoch: Some(epoch), fenced: true, last_error: None });
            loop {
                let _heartbeat = self.heartbeat_lock.lock().await;
                if self.shutdown.is_cancelled() || self.leaving.is_cancelled() {
                    return;
                }
                let applied_index = self.shared.read().last_applied.map(|l| l.index).unwrap_or(0);
                let heartbeat = ControllerRequest::Heartbeat { node_id, epoch, applied_index };
                match self.submit_with(heartbeat, interval * 4, &mut peers).await {
                    Ok(ControllerReply::Heartbeat { fenced, .. }) => {
                        self.status.send_if_modified(|s| {
                            let changed = s.fenced != fenced || s.last_error.is_some();
                            s.fenced = fenced;
                            s.last_error = None;
                            changed
                        });
                    }
                    Ok(other) => self.set_error(format!("unexpected heartbeat reply {other:?}")),
                    Err(ControllerError::Rejected(Rejected::StaleBrokerEpoch { .. } | Rejected::UnknownBroker(_))) => {
                        warn!(node_id, epoch, "the controller no longer knows this registration; registering again");
                        continue 'register;
                    }
                    Err(e) => self.set_error(e.to_string()),
                }
                drop(_heartbeat);
                self.pause(interval).await;
            }
        }
    }

    fn set_error(&self, error: String) {
        self.status.send_modify(|s| s.last_error = Some(error));
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = tokio::time::sleep(d) => {}
        }
    }
}

/// Records the cluster id at first start; refuses a different one later.
fn check_cluster_id(config: &ClusterConfig) -> Result<(), ClusterError> {
    let path = config.dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(found) if found.trim() == config.cluster_id => Ok(()),
        Ok(found) => Err(ClusterError::ClusterIdMismatch {
            found: found.trim().to_string(),
            configured: config.cluster_id.clone(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&config.dir)
                .map_err(|e| ClusterError::io(format!("creating {}", config.dir.display()), e))?;
            // The new directory's entry, durably (the data directory holding it already is).
            strom_meta::fs::sync_parent(&config.dir).map_err(|e| ClusterError::Config(e.to_string()))?;
            strom_meta::fs::write_file_atomically(&path, config.cluster_id.as_bytes())
                .map_err(|e| ClusterError::Config(e.to_string()))
        }
        Err(e) => Err(ClusterError::io(format!("reading {}", path.display()), e)),
    }
}
