//! [`BrokerState`]: the shared context every request handler gets, and the topic operations
//! (create, delete, add partitions, alter configs) that keep the registry and the partition
//! logs in step.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use strom_cluster::{BrokerEndpoint, ClusterNode, RaftMetadataStore};

use strom_log::{LogManager, ManagerConfig, PartitionLog};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, parse_host_port};
use crate::error::{Error, Result};
use crate::groups::GroupCoordinator;
use crate::metadata::{BrokerInfo, LocalMetadataStore, MetadataStore, TopicMeta, validate_topic_name};
use crate::partition::{Partition, ReplicaManager};
use crate::producer_ids::ProducerIdAllocator;
use crate::topic_config::{self, TopicConfigs};

mod sync;

/// Most partitions one topic may have; a guard against typos creating millions of directories.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// Everything handlers share. Built once per broker and passed around as `Arc<BrokerState>`.
pub struct BrokerState {
    /// The validated configuration.
    pub config: Config,
    /// The partition logs.
    pub logs: LogManager,
    /// The partition layer: every partition's log with its leadership. Handlers go through
    /// it, never to the logs directly.
    pub partitions: ReplicaManager,
    /// The cluster metadata (local today, Raft-replicated later), given to [`BrokerState::open`].
    pub metadata: Arc<dyn MetadataStore>,
    /// InitProducerId allocation.
    pub producer_ids: ProducerIdAllocator,
    /// Host clients are told to connect to (Metadata, DescribeCluster, FindCoordinator).
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: i32,
    /// Cancelled when the broker shuts down; long waits (fetch long-polls) end early on it.
    pub shutdown: CancellationToken,
    /// The group coordinator: consumer groups and committed offsets.
    pub groups: GroupCoordinator,
    /// The cluster node, when this broker is one of a Strom cluster (`[cluster]`); `None`
    /// for a cluster of one.
    pub cluster: Option<Arc<ClusterNode>>,
    /// The follower side of replication: one fetch loop per leader this broker follows.
    pub fetchers: crate::replication::ReplicaFetchers,
    /// Serializes topic operations so the registry and the logs change together.
    admin: tokio::sync::Mutex<()>,
    /// The id of each topic whose partitions are held, to tell a topic deleted and created
    /// again under its name (another id) from the one whose logs are here.
    held_ids: Mutex<HashMap<String, uuid::Uuid>>,
    /// Set while a single-node registry (`topics.json`) in the data directory waits to be
    /// adopted into the cluster: its topics' logs are not leftovers to delete meanwhile.
    adoption_pending: std::sync::atomic::AtomicBool,
    /// Whether this broker already asked for `__consumer_offsets` to be created.
    offsets_topic_requested: std::sync::atomic::AtomicBool,
    /// The settings in force: the config file with the dynamic broker configs applied.
    dynamic: Mutex<Arc<crate::broker_config::Effective>>,
}

impl std::fmt::Debug for BrokerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerState")
            .field("node_id", &self.config.node_id)
            .field("advertised", &format_args!("{}:{}", self.advertised_host, self.advertised_port))
            .finish_non_exhaustive()
    }
}

/// The metadata store a broker is given, and whether it was just created empty.
pub struct MetadataSource {
    /// The store: the broker reads brokers, topics, leaders and epochs from it.
    pub store: Arc<dyn MetadataStore>,
    /// Whether partition logs found in the data directory but unknown to the store should be
    /// adopted as topics (a store created empty next to an older data directory) rather than
    /// deleted as leftovers of an interrupted create.
    pub adopt_found_logs: bool,
    /// The cluster node behind the store, for a broker of a Strom cluster.
    pub cluster: Option<Arc<ClusterNode>>,
}

impl MetadataSource {
    /// The single-node store in `config.data_dir` (created durably if missing), where `me` is
    /// this broker as clients reach it.
    pub fn local(config: &Config, me: BrokerInfo) -> Result<MetadataSource> {
        strom_log::create_dir_durable(&config.data_dir)?;
        let (store, created) = LocalMetadataStore::open(&config.data_dir, me)?;
        Ok(MetadataSource { store: Arc::new(store), adopt_found_logs: created, cluster: None })
    }

    /// Joins (or forms) the Strom cluster that `config.cluster` describes: starts this
    /// node's metadata quorum member in `<data_dir>/raft` and its internal listener, and
    /// registers `me` as a broker. Does not wait for a quorum.
    pub async fn cluster(config: &Config, me: BrokerInfo) -> Result<MetadataSource> {
        let settings = config
            .cluster
            .as_ref()
            .ok_or_else(|| Error::Config { field: "cluster", reason: "no [cluster] section".to_string() })?;
        strom_log::create_dir_durable(&config.data_dir)?;
        let node_config = settings.node_config(config.node_id, &config.data_dir)?;
        let storage_id = storage_id(&config.data_dir)?;
        let endpoint = BrokerEndpoint {
            host: me.host,
            port: me.port,
            rack: settings.rack.clone(),
            storage_id: Some(storage_id),
            max_replicas: settings.max_replicas,
        };
        let node = ClusterNode::start(node_config, endpoint)
            .await
            .map_err(|e| Error::Config { field: "cluster", reason: e.to_string() })?;
        let store = RaftMetadataStore::new(node.clone());
        Ok(MetadataSource { store: Arc::new(store), adopt_found_logs: false, cluster: Some(node) })
    }
}

/// The file holding the data directory's id.
pub const STORAGE_ID_FILE: &str = "storage-id";

/// The data directory's id: read from [`STORAGE_ID_FILE`], or made (randomly, written
/// durably) the first time. A broker registers with it, so the controller can tell a restart
/// from a broker that came back on an empty disk (KIP-903): the latter's records are gone.
pub fn storage_id(data_dir: &std::path::Path) -> Result<uuid::Uuid> {
    let path = data_dir.join(STORAGE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => uuid::Uuid::parse_str(text.trim())
            .map_err(|e| Error::Config { field: "data_dir", reason: format!("{} is damaged: {e}", path.display()) }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4();
            strom_meta::fs::write_file_atomically(&path, id.to_string().as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// This broker as clients must reach it: the configured `advertised_address`, else the bound
/// listener address (127.0.0.1 in place of an unspecified one).
pub fn advertised_broker(config: &Config, bound: SocketAddr) -> Result<BrokerInfo> {
    let (host, port) = match &config.advertised_address {
        Some(a) => parse_host_port(a)
            .ok_or_else(|| Error::Config { field: "advertised_address", reason: format!("{a:?} is not host:port") })?,
        None => {
            if bound.ip().is_unspecified() {
                warn!(%bound, "listening on an unspecified address without advertised_address; clients are told 127.0.0.1");
                ("127.0.0.1".to_string(), i32::from(bound.port()))
            } else {
                (bound.ip().to_string(), i32::from(bound.port()))
            }
        }
    };
    Ok(BrokerInfo { node_id: config.node_id, host, port, rack: None })
}

impl BrokerState {
    /// Opens the data directory (the logs and the producer-id block) and brings the logs in
    /// line with what `metadata`'s store lists. `me` is this broker as clients reach it.
    pub async fn open(
        config: Config,
        me: BrokerInfo,
        metadata: MetadataSource,
        shutdown: CancellationToken,
    ) -> Result<BrokerState> {
        let data_dir = config.data_dir.clone();
        // Durably: a data directory whose own entry is lost at a power cut takes every
        // acknowledged record with it.
        strom_log::create_dir_durable(&data_dir)?;
        let mut mcfg = ManagerConfig::new(&data_dir);
        mcfg.default_log = config.log.to_log_config()?;
        mcfg.flush_threads = config.flush_threads;
        mcfg.journal = config.journal;
        mcfg.journal_file_bytes = config.journal_file_bytes;
        mcfg.preallocate_bytes = config.preallocate_bytes;
        mcfg.max_open_sealed_segments = config.max_open_sealed_segments;
        mcfg.producer_id_expiration_ms = config.producer_id_expiration_ms;
        let logs = LogManager::open(mcfg)?;
        logs.start_retention(std::time::Duration::from_millis(config.retention_check_interval_ms));
        let producer_ids = match &metadata.cluster {
            Some(node) => ProducerIdAllocator::cluster(node.clone()),
            None => ProducerIdAllocator::open(&data_dir)?,
        };
        let groups = GroupCoordinator::new(config.groups.clone(), shutdown.clone());
        let fetchers = crate::replication::ReplicaFetchers::new(
            crate::replication::FetcherConfig {
                me: config.node_id,
                max_wait: std::time::Duration::from_millis(500),
                partition_max_bytes: config.replica_fetch_max_bytes,
                response_max_bytes: config.fetch_max_bytes,
                reassignment_throttle_bytes_per_sec: config
                    .cluster
                    .as_ref()
                    .map_or(0, |c| c.reassignment_throttle_bytes_per_sec),
            },
            logs.clone(),
            shutdown.clone(),
        );
        let dynamic = crate::broker_config::effective(&config, &metadata.store.broker_configs(), config.node_id)?;
        let state = BrokerState {
            dynamic: Mutex::new(Arc::new(dynamic)),
            config,
            logs,
            partitions: ReplicaManager::new(),
            metadata: metadata.store,
            producer_ids,
            advertised_host: me.host,
            advertised_port: me.port,
            groups,
            shutdown,
            cluster: metadata.cluster,
            fetchers,
            admin: tokio::sync::Mutex::new(()),
            held_ids: Mutex::new(HashMap::new()),
            adoption_pending: std::sync::atomic::AtomicBool::new(false),
            offsets_topic_requested: std::sync::atomic::AtomicBool::new(false),
        };
        if state.cluster.is_some() && data_dir.join(crate::metadata::TOPICS_FILE).exists() {
            state.adoption_pending.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        state.reconcile(metadata.adopt_found_logs).await?;
        // In a cluster the coordinator loads in the background (it may need the quorum to
        // create its topic): see `start_group_loading`.
        if state.cluster.is_none() {
            state.groups.load(&state).await?;
        }
        Ok(state)
    }

    /// Makes the logs on disk match the store, and builds the partition layer over them. A
    /// new store adopts the logs it finds (a data directory written by an older build or by
    /// `strom log-bench`).
    async fn reconcile(&self, adopt_found_logs: bool) -> Result<()> {
        let found = self.logs.list();
        if adopt_found_logs && !found.is_empty() {
            let mut counts = std::collections::BTreeMap::<String, i32>::new();
            for log in &found {
                let c = counts.entry(log.topic().to_string()).or_insert(0);
                *c = (*c).max(log.partition() + 1);
            }
            for (topic, partitions) in counts {
                if validate_topic_name(&topic).is_ok() {
                    info!(%topic, partitions, "adopting partition logs found in the data directory");
                    self.metadata.create_topic(&topic, partitions, TopicConfigs::new()).await?;
                }
            }
        }
        let topics = self.metadata.topics();
        let mut wanted = HashSet::new();
        for t in &topics {
            let cfg = topic_config::log_config(&self.log_defaults(), &t.configs)?;
            for p in self.my_partitions(&t.name) {
                wanted.insert((t.name.clone(), p));
                match self.logs.get(&t.name, p) {
                    Some(log) => log.set_config(cfg.clone())?,
                    None if self.cluster.is_some() => {
                        // The normal way a cluster replica appears: assigned while this
                        // broker was away (or between commit and creation).
                        info!(topic = %t.name, partition = p, "creating the log of a partition assigned to this broker");
                        self.logs.create(&t.name, p, cfg.clone())?;
                    }
                    None => {
                        warn!(topic = %t.name, partition = p, "registry lists a partition with no log; creating it empty");
                        self.logs.create(&t.name, p, cfg.clone())?;
                    }
                }
            }
            self.publish_partitions(&t.name);
        }
        for log in self.logs.list() {
            // In a cluster the applied metadata may still be catching up at startup: a log it
            // does not list yet is kept (see `sync_locked` for when leftovers go).
            if self.cluster.is_none() && !wanted.contains(&(log.topic().to_string(), log.partition())) {
                warn!(
                    topic = log.topic(),
                    partition = log.partition(),
                    "deleting a partition log the registry does not list (left by an interrupted create or delete)"
                );
                self.logs.delete(log.topic(), log.partition())?;
            }
        }
        info!(topics = topics.len(), cluster_id = %self.metadata.cluster_id(), "topic registry loaded");
        Ok(())
    }

    /// Brings every partition's leadership (leader, epoch, replicas, ISR) in line with what
    /// the metadata store says now: what a store calls after it changed them (a cluster's
    /// leader election). Topics themselves change only through the topic operations.
    pub async fn apply_metadata(&self) -> Result<()> {
        let _admin = self.admin.lock().await;
        for t in self.metadata.topics() {
            if self.partitions.holds(&t.name) {
                self.publish_partitions(&t.name);
            }
        }
        self.refresh_fetchers();
        self.groups.sync_coordination(self)?;
        Ok(())
    }

    /// Before a clean stop, in a cluster: has the controller move this broker's leaderships
    /// to other in-sync replicas and take it out of every ISR (Kafka's controlled shutdown),
    /// and applies that here, so producers and followers move over while this broker still
    /// answers. Gives up after `deadline` (a cluster without quorum cannot move anything);
    /// the broker then stops anyway and is fenced after its session timeout.
    pub async fn controlled_shutdown(&self, deadline: std::time::Duration) {
        let Some(node) = &self.cluster else { return };
        let started = std::time::Instant::now();
        match node.controlled_shutdown(deadline).await {
            Ok(()) => {
                if let Err(e) = self.sync_with_store().await {
                    warn!(error = %e, "applying the controlled shutdown's metadata failed");
                }
                info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "controlled shutdown: leaderships moved to other replicas"
                );
            }
            Err(e) => {
                warn!(error = %e, "controlled shutdown failed; stopping anyway (fenced after the session timeout)")
            }
        }
    }

    /// Points the replica fetchers at the current leaders of the partitions this broker
    /// follows (a no-op on a single node, which follows nothing).
    pub(crate) fn refresh_fetchers(&self) {
        let Some(node) = &self.cluster else { return };
        // Not before this process's registration is in: until then the metadata may still
        // count this broker's previous run (and its data) in ISRs.
        if node.broker_status().borrow().epoch.is_none() {
            return;
        }
        let held: Vec<Arc<Partition>> =
            self.partitions.topic_names().iter().flat_map(|t| self.partitions.topic(t)).flatten().collect();
        let addresses: HashMap<i32, String> =
            self.metadata.brokers().into_iter().map(|b| (b.node_id, format!("{}:{}", b.host, b.port))).collect();
        self.fetchers.update(&held, &addresses);
    }

    /// Proposes `change` (an ISR change `partition` decided as leader) to the metadata store
    /// in the background; a refusal or failure lets the partition decide again.
    pub fn propose_isr_change(&self, partition: Arc<Partition>, change: strom_meta::IsrChange) {
        let store = self.metadata.clone();
        tokio::spawn(async move {
            let (topic, index, isr) = (change.topic.clone(), change.partition, change.isr.clone());
            match store.alter_partition(change).await {
                Ok(()) => info!(%topic, partition = index, ?isr, "ISR changed"),
                Err(e) => {
                    warn!(%topic, partition = index, ?isr, error = %e, "ISR change refused");
                    partition.isr_change_failed();
                }
            }
        });
    }

    /// Every `replica.lag.time.max.ms / 4`, asks each partition this broker leads whether a
    /// follower has lagged too long, and proposes the ISR shrink if so. Runs until shutdown;
    /// only in a cluster.
    pub fn start_isr_checks(self: &Arc<Self>) {
        if self.cluster.is_none() {
            return;
        }
        let state = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        let max_lag = std::time::Duration::from_millis(self.config.replica_lag_time_max_ms.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval((max_lag / 4).max(std::time::Duration::from_millis(10)));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                let Some(state) = state.upgrade() else { return };
                let now = std::time::Instant::now();
                for topic in state.partitions.topic_names() {
                    for p in state.partitions.topic(&topic).into_iter().flatten() {
                        if let Some(change) = p.lagging_isr_change(now, max_lag) {
                            warn!(topic = %topic, partition = p.index(), isr = ?change.isr, "followers fell behind; shrinking the ISR");
                            state.propose_isr_change(p.clone(), change);
                        }
                    }
                }
            }
        });
    }

    /// The partitions of `topic` this broker is a replica of.
    fn my_partitions(&self, topic: &str) -> Vec<i32> {
        let me = self.node_id();
        self.metadata.partitions(topic).into_iter().filter(|p| p.replicas.contains(&me)).map(|p| p.partition).collect()
    }

    /// The broker coordinating `group`: the leader of the partition of `__consumer_offsets`
    /// that stores it (Kafka's hash of the group id). `None` while that partition has no
    /// leader or the topic does not exist yet (clients get `COORDINATOR_NOT_AVAILABLE` and
    /// retry).
    pub fn group_coordinator(&self, group: &str) -> Option<BrokerInfo> {
        let topic = self.metadata.topic(crate::groups::OFFSETS_TOPIC)?;
        let n = usize::try_from(topic.partitions).ok().filter(|n| *n > 0)?;
        let p = crate::groups::partition_for(group, n);
        let leader = self.metadata.partitions(crate::groups::OFFSETS_TOPIC).get(p)?.leader?;
        self.metadata.brokers().into_iter().find(|b| b.node_id == leader)
    }

    /// Whether the cluster has this partition (held here or on another broker): what the
    /// group coordinator checks before committing or fetching an offset for it.
    pub fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        self.metadata.topic(topic).is_some_and(|t| (0..t.partitions).contains(&partition))
    }

    /// The error for a partition this broker does not hold: `NOT_LEADER_OR_FOLLOWER` when the
    /// topic has it (another broker does: the client must refresh its metadata),
    /// `UNKNOWN_TOPIC_OR_PARTITION` otherwise.
    pub fn missing_partition_error(&self, topic: &str, partition: i32) -> kafka_protocol::ResponseError {
        match self.metadata.topic(topic) {
            Some(t) if (0..t.partitions).contains(&partition) => kafka_protocol::ResponseError::NotLeaderOrFollower,
            _ => kafka_protocol::ResponseError::UnknownTopicOrPartition,
        }
    }

    /// Makes the partition layer hold `topic`'s partitions as the store describes them, over
    /// their logs. Partitions already held keep their state and take the store's leadership;
    /// new ones are built. Infallible, because it runs after the store committed a change:
    /// a partition without a log (which the topic operations never leave) ends the list
    /// there, logged, so indexes never shift; the next startup's reconciliation creates it.
    fn publish_partitions(&self, topic: &str) {
        let me = self.node_id();
        // Until this process's registration is in and unfenced, the metadata may still show
        // its previous run leading (with data this run may not have: a replaced disk): it
        // leads nothing until then, so no producer writes to it and no follower truncates to it.
        let active = self.cluster.as_ref().is_none_or(|node| {
            let s = node.broker_status().borrow().clone();
            s.epoch.is_some() && !s.fenced
        });
        let held = self.partitions.topic(topic);
        let (min_insync, ingest) = self.metadata.topic(topic).map_or(
            (self.log_defaults().min_insync_replicas, crate::ingest::IngestPolicy::default()),
            |t| {
                (
                    topic_config::min_insync_replicas(&self.log_defaults(), &t.configs),
                    topic_config::ingest_policy(&t.configs),
                )
            },
        );
        let mut list = Vec::new();
        for mut meta in self.metadata.partitions(topic) {
            if !active && meta.leader == Some(me) {
                meta.leader = None;
            }
            let index = meta.partition;
            if !meta.replicas.contains(&me) {
                list.push(None);
                continue;
            }
            let Some(log) = self.logs.get(topic, index) else {
                tracing::error!(
                    topic,
                    partition = index,
                    "the store lists a partition of this broker with no log; not serving it"
                );
                list.push(None);
                continue;
            };
            let partition = match held.get(usize::try_from(index).unwrap_or(usize::MAX)) {
                // Still the live log (a deleted one is closed: a name deleted and created again
                // gets new partitions).
                Some(Some(p)) if !p.log().is_closed() => {
                    p.update(&meta);
                    p.set_min_insync(min_insync);
                    p.clone()
                }
                _ => Partition::open(me, log, &meta, min_insync),
            };
            partition.set_ingest_policy(ingest);
            list.push(Some(partition));
        }
        if let Some(t) = self.metadata.topic(topic) {
            self.held_ids().insert(topic.to_string(), t.id);
        }
        self.partitions.set_topic(topic, list);
    }

    /// One partition (its log and leadership), if this broker holds it.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions.get(topic, partition)
    }

    /// The log of one partition, if the topic and partition exist: for the broker's own
    /// internal topics (the group coordinator's offsets log), which bypass leadership.
    pub fn partition_log(&self, topic: &str, partition: i32) -> Option<PartitionLog> {
        self.logs.get(topic, partition)
    }

    /// This broker's id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Creates a topic (or with `validate_only`, checks that it could be created). A partition
    /// count of -1 means the broker default; the replication factor must be 1 or -1 on a
    /// single node, and at most the live brokers in a cluster (-1: the cluster default).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: TopicConfigs,
        validate_only: bool,
    ) -> Result<TopicMeta> {
        validate_topic_name(name)?;
        let _admin = self.admin.lock().await;
        // Existence first, as Kafka checks it: "create if it does not exist" callers treat
        // TOPIC_ALREADY_EXISTS as success whatever else their request says.
        if self.metadata.topic(name).is_some() {
            return Err(Error::TopicExists(name.to_string()));
        }
        let partitions = if partitions == -1 { self.num_partitions() } else { partitions };
        check_partition_count(name, partitions)?;
        // A cluster's controller checks the replication factor against its live brokers; one
        // node holds one replica.
        if self.cluster.is_none() && replication_factor != -1 && replication_factor != 1 {
            return Err(Error::InvalidReplicationFactor(replication_factor));
        }
        if replication_factor == 0 || replication_factor < -1 {
            return Err(Error::InvalidReplicationFactor(replication_factor));
        }
        let cfg = topic_config::log_config(&self.log_defaults(), &configs)?;
        if validate_only {
            return Ok(TopicMeta {
                name: name.to_string(),
                id: uuid::Uuid::nil(),
                partitions,
                configs,
                leader_epochs: Default::default(),
            });
        }
        if self.cluster.is_some() {
            // The controller places the replicas: commit first, then create the logs of the
            // partitions assigned here (a crash in between: the next start creates them).
            let meta = self.metadata.create_replicated_topic(name, partitions, replication_factor, configs).await?;
            self.sync_locked().await?;
            info!(topic = name, partitions, "created topic");
            return Ok(meta);
        }
        // Logs first, registry second: a crash in between leaves logs the registry does not
        // list, which the next startup deletes.
        self.create_logs(name, 0..partitions, cfg).await?;
        match self.metadata.create_topic(name, partitions, configs).await {
            Ok(meta) => {
                self.publish_partitions(name);
                info!(topic = name, partitions, "created topic");
                Ok(meta)
            }
            Err(e) => {
                self.drop_logs(name, 0..partitions).await;
                Err(e.into())
            }
        }
    }

    /// Creates the logs of `topic`'s `partitions` on a blocking thread (each creation
    /// fsyncs new files and directories: thousands of partitions take seconds, which must
    /// not stall an async worker and the connections it serves). On failure, removes those
    /// it created.
    async fn create_logs(
        &self,
        topic: &str,
        partitions: std::ops::Range<i32>,
        cfg: strom_log::LogConfig,
    ) -> Result<()> {
        self.create_logs_list(topic, partitions.collect(), cfg).await
    }

    /// [`Self::create_logs`] for any set of partition indexes.
    async fn create_logs_list(&self, topic: &str, partitions: Vec<i32>, cfg: strom_log::LogConfig) -> Result<()> {
        let (logs, name) = (self.logs.clone(), topic.to_string());
        let created = tokio::task::spawn_blocking(move || -> Result<()> {
            for (i, p) in partitions.iter().enumerate() {
                let undo = |logs: &LogManager| drop_logs_blocking(logs, &name, partitions[..i].iter().copied());
                if logs.get(&name, *p).is_some() {
                    // A leftover of an earlier failed attempt in this run.
                    if let Err(e) = logs.delete(&name, *p) {
                        undo(&logs);
                        return Err(e.into());
                    }
                }
                if let Err(e) = logs.create(&name, *p, cfg.clone()) {
                    undo(&logs);
                    return Err(e.into());
                }
            }
            Ok(())
        })
        .await;
        created.map_err(|e| Error::io("joining partition log creation", std::io::Error::other(e)))?
    }

    /// Removes `topic`'s `partitions` logs on a blocking thread, logging (not returning)
    /// failures: the next startup removes what is left.
    pub(super) async fn drop_logs(&self, topic: &str, partitions: impl IntoIterator<Item = i32> + Send + 'static) {
        let (logs, name) = (self.logs.clone(), topic.to_string());
        if let Err(e) = tokio::task::spawn_blocking(move || drop_logs_blocking(&logs, &name, partitions)).await {
            warn!(topic, error = %e, "removing partition logs did not finish; the next startup removes what is left");
        }
    }

    /// Deletes a topic and its partition logs.
    pub async fn delete_topic(&self, name: &str) -> Result<TopicMeta> {
        let _admin = self.admin.lock().await;
        // Registry first, logs second: a crash in between leaves unlisted logs, deleted at
        // the next startup.
        let meta = self.metadata.delete_topic(name).await?;
        if self.cluster.is_some() {
            self.forget_topic(name).await;
            return Ok(meta);
        }
        self.partitions.remove_topic(name);
        self.drop_logs(name, 0..meta.partitions).await;
        // Before the admin lock is released, so a topic created again under this name cannot
        // meet the old positions. (A crash before the tombstones are durable leaves them for
        // offset expiry: a known gap.)
        self.groups.topic_deleted(name).await;
        info!(topic = name, "deleted topic");
        Ok(meta)
    }

    /// Raises a topic's partition count to `count`.
    pub async fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<TopicMeta> {
        check_partition_count(name, count)?;
        let _admin = self.admin.lock().await;
        let meta = self.metadata.topic(name).ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
        if count <= meta.partitions {
            return Err(Error::InvalidPartitions {
                topic: name.to_string(),
                reason: format!("topic has {} partitions; the new count {count} must be larger", meta.partitions),
            });
        }
        if validate_only {
            return Ok(TopicMeta { partitions: count, ..meta });
        }
        let cfg = topic_config::log_config(&self.log_defaults(), &meta.configs)?;
        if self.cluster.is_some() {
            let m = self.metadata.set_partitions(name, count).await?;
            self.sync_locked().await?;
            info!(topic = name, from = meta.partitions, to = count, "added partitions");
            return Ok(m);
        }
        self.create_logs(name, meta.partitions..count, cfg).await?;
        match self.metadata.set_partitions(name, count).await {
            Ok(m) => {
                self.publish_partitions(name);
                info!(topic = name, from = meta.partitions, to = count, "added partitions");
                Ok(m)
            }
            Err(e) => {
                self.drop_logs(name, meta.partitions..count).await;
                Err(e.into())
            }
        }
    }

    /// The broker's topic defaults now (the config file's `[log]` with the dynamic broker
    /// configs applied).
    pub fn log_defaults(&self) -> crate::LogDefaults {
        self.effective().log.clone()
    }

    /// How many partitions a topic created without a count gets (`num.partitions`).
    pub fn num_partitions(&self) -> i32 {
        self.effective().num_partitions
    }

    /// The settings in force.
    pub fn effective(&self) -> Arc<crate::broker_config::Effective> {
        self.dynamic.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Recomputes the settings in force from the store's dynamic broker configs; returns
    /// whether they changed. A combination that fails validation keeps the previous settings
    /// (the alter path refuses such combinations before storing them).
    pub(crate) fn refresh_dynamic(&self) -> bool {
        match crate::broker_config::effective(&self.config, &self.metadata.broker_configs(), self.node_id()) {
            Ok(next) => {
                let mut current = self.dynamic.lock().unwrap_or_else(|p| p.into_inner());
                let changed = **current != next;
                if changed {
                    info!(num_partitions = next.num_partitions, log = ?next.log, "broker settings changed");
                    *current = Arc::new(next);
                }
                changed
            }
            Err(e) => {
                warn!(error = %e, "the dynamic broker configs are invalid together; keeping the previous settings");
                false
            }
        }
    }

    /// Changes the dynamic configs of broker resource `resource` (`""` for the cluster-wide
    /// default, or a node id) with `change`, after checking every name and value and the
    /// resulting settings of this broker; then applies them to every topic without its own
    /// overrides. Other brokers apply them when the store reports the change.
    pub async fn alter_broker_configs(
        &self,
        resource: &str,
        validate_only: bool,
        change: impl FnOnce(&mut TopicConfigs) -> Result<()>,
    ) -> Result<()> {
        if !resource.is_empty() && resource.parse::<i32>().is_err() {
            return Err(Error::InvalidRequest(format!("broker resource {resource:?} is neither \"\" nor a node id")));
        }
        let _admin = self.admin.lock().await;
        let mut all = self.metadata.broker_configs();
        let mut configs = all.get(resource).cloned().unwrap_or_default();
        change(&mut configs)?;
        for (name, value) in &configs {
            crate::broker_config::check(name, value)?;
        }
        all.insert(resource.to_string(), configs.clone());
        let next = crate::broker_config::effective(&self.config, &all, self.node_id())?;
        for t in self.metadata.topics() {
            topic_config::log_config(&next.log, &t.configs)?;
        }
        if validate_only {
            return Ok(());
        }
        self.metadata.set_broker_configs(resource, configs.clone()).await?;
        info!(resource, ?configs, "altered dynamic broker configs");
        self.sync_locked().await
    }

    /// Replaces a topic's config overrides with the result of `change` applied to the current
    /// ones, and reconfigures its partition logs.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        validate_only: bool,
        change: impl FnOnce(&mut TopicConfigs) -> Result<()>,
    ) -> Result<TopicMeta> {
        let _admin = self.admin.lock().await;
        let meta = self.metadata.topic(name).ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
        let mut configs = meta.configs.clone();
        change(&mut configs)?;
        let cfg = topic_config::log_config(&self.log_defaults(), &configs)?;
        if validate_only {
            return Ok(TopicMeta { configs, ..meta });
        }
        let meta = self.metadata.set_configs(name, configs).await?;
        for p in 0..meta.partitions {
            if let Some(log) = self.logs.get(name, p) {
                log.set_config(cfg.clone())?;
            }
        }
        // Leadership is unchanged; the partitions take the new min.insync.replicas.
        self.publish_partitions(name);
        info!(topic = name, configs = ?meta.configs, "altered topic configs");
        Ok(meta)
    }
}

fn drop_logs_blocking(logs: &LogManager, topic: &str, partitions: impl IntoIterator<Item = i32>) {
    for p in partitions {
        if let Err(e) = logs.delete(topic, p) {
            warn!(topic, partition = p, error = %e, "could not remove a partition log; the next startup removes it");
        }
    }
}

fn check_partition_count(topic: &str, count: i32) -> Result<()> {
    if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&count) {
        return Err(Error::InvalidPartitions {
            topic: topic.to_string(),
            reason: format!("{count} is outside 1..={MAX_PARTITIONS_PER_TOPIC}"),
        });
    }
    Ok(())
}
