//! [`BrokerState`]: the shared context every request handler gets, and the topic operations
//! (create, delete, add partitions, alter configs) that keep the registry and the partition
//! logs in step.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use strom_log::{LogManager, ManagerConfig, PartitionLog};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, parse_host_port};
use crate::error::{Error, Result};
use crate::groups::GroupCoordinator;
use crate::metadata::{LocalMetadataStore, MetadataStore, TopicMeta, validate_topic_name};
use crate::producer_ids::ProducerIdAllocator;
use crate::topic_config::{self, TopicConfigs};

/// Most partitions one topic may have; a guard against typos creating millions of directories.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// Everything handlers share. Built once per broker and passed around as `Arc<BrokerState>`.
pub struct BrokerState {
    /// The validated configuration.
    pub config: Config,
    /// The partition logs.
    pub logs: LogManager,
    /// The topic registry (local today, Raft-replicated later).
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
    /// Serializes topic operations so the registry and the logs change together.
    admin: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for BrokerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerState")
            .field("node_id", &self.config.node_id)
            .field("advertised", &format_args!("{}:{}", self.advertised_host, self.advertised_port))
            .finish_non_exhaustive()
    }
}

impl BrokerState {
    /// Opens the data directory: the logs, the registry and the producer-id block, and brings
    /// the logs in line with the registry. `bound` is the listener's actual address, which is
    /// advertised unless the config names another.
    pub async fn open(config: Config, bound: SocketAddr, shutdown: CancellationToken) -> Result<BrokerState> {
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
        let (store, created) = LocalMetadataStore::open(&data_dir)?;
        let producer_ids = ProducerIdAllocator::open(&data_dir)?;
        let (advertised_host, advertised_port) = match &config.advertised_address {
            Some(a) => parse_host_port(a).ok_or_else(|| Error::Config {
                field: "advertised_address",
                reason: format!("{a:?} is not host:port"),
            })?,
            None => {
                if bound.ip().is_unspecified() {
                    warn!(%bound, "listening on an unspecified address without advertised_address; clients are told 127.0.0.1");
                    ("127.0.0.1".to_string(), i32::from(bound.port()))
                } else {
                    (bound.ip().to_string(), i32::from(bound.port()))
                }
            }
        };
        let groups = GroupCoordinator::new(config.groups.clone(), shutdown.clone());
        let state = BrokerState {
            config,
            logs,
            metadata: Arc::new(store),
            producer_ids,
            advertised_host,
            advertised_port,
            groups,
            shutdown,
            admin: tokio::sync::Mutex::new(()),
        };
        state.reconcile(created).await?;
        state.groups.load(&state).await?;
        Ok(state)
    }

    /// Makes the logs on disk match the registry. A new registry adopts the logs it finds (a
    /// data directory written by an older build or by `strom log-bench`).
    async fn reconcile(&self, registry_is_new: bool) -> Result<()> {
        let found = self.logs.list();
        if registry_is_new && !found.is_empty() {
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
            let cfg = topic_config::log_config(&self.config.log, &t.configs)?;
            for p in 0..t.partitions {
                wanted.insert((t.name.clone(), p));
                match self.logs.get(&t.name, p) {
                    Some(log) => log.set_config(cfg.clone())?,
                    None => {
                        warn!(topic = %t.name, partition = p, "registry lists a partition with no log; creating it empty");
                        self.logs.create(&t.name, p, cfg.clone())?;
                    }
                }
            }
        }
        for log in self.logs.list() {
            if !wanted.contains(&(log.topic().to_string(), log.partition())) {
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

    /// The log of one partition, if the topic and partition exist.
    pub fn partition_log(&self, topic: &str, partition: i32) -> Option<PartitionLog> {
        self.logs.get(topic, partition)
    }

    /// This broker's id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Creates a topic (or with `validate_only`, checks that it could be created). A partition
    /// count of -1 means the broker default; the replication factor must be 1 or -1.
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
        let partitions = if partitions == -1 { self.config.num_partitions } else { partitions };
        check_partition_count(name, partitions)?;
        if replication_factor != -1 && replication_factor != 1 {
            return Err(Error::InvalidReplicationFactor(replication_factor));
        }
        let cfg = topic_config::log_config(&self.config.log, &configs)?;
        if validate_only {
            return Ok(TopicMeta { name: name.to_string(), id: uuid::Uuid::nil(), partitions, configs });
        }
        // Logs first, registry second: a crash in between leaves logs the registry does not
        // list, which the next startup deletes.
        for p in 0..partitions {
            if let Err(e) = self.create_log(name, p, cfg.clone()) {
                self.drop_logs(name, 0..p);
                return Err(e);
            }
        }
        match self.metadata.create_topic(name, partitions, configs).await {
            Ok(meta) => {
                info!(topic = name, partitions, "created topic");
                Ok(meta)
            }
            Err(e) => {
                self.drop_logs(name, 0..partitions);
                Err(e)
            }
        }
    }

    fn create_log(&self, topic: &str, partition: i32, cfg: strom_log::LogConfig) -> Result<PartitionLog> {
        if self.logs.get(topic, partition).is_some() {
            // A leftover of an earlier failed attempt in this run.
            self.logs.delete(topic, partition)?;
        }
        Ok(self.logs.create(topic, partition, cfg)?)
    }

    fn drop_logs(&self, topic: &str, partitions: std::ops::Range<i32>) {
        for p in partitions {
            if let Err(e) = self.logs.delete(topic, p) {
                warn!(topic, partition = p, error = %e, "could not remove a partition log while undoing a failed topic operation");
            }
        }
    }

    /// Deletes a topic and its partition logs.
    pub async fn delete_topic(&self, name: &str) -> Result<TopicMeta> {
        let _admin = self.admin.lock().await;
        // Registry first, logs second: a crash in between leaves unlisted logs, deleted at
        // the next startup.
        let meta = self.metadata.delete_topic(name).await?;
        for p in 0..meta.partitions {
            if let Err(e) = self.logs.delete(name, p) {
                warn!(topic = name, partition = p, error = %e, "deleting partition log failed; it will be removed at the next startup");
            }
        }
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
        let cfg = topic_config::log_config(&self.config.log, &meta.configs)?;
        for p in meta.partitions..count {
            if let Err(e) = self.create_log(name, p, cfg.clone()) {
                self.drop_logs(name, meta.partitions..p);
                return Err(e);
            }
        }
        match self.metadata.set_partitions(name, count).await {
            Ok(m) => {
                info!(topic = name, from = meta.partitions, to = count, "added partitions");
                Ok(m)
            }
            Err(e) => {
                self.drop_logs(name, meta.partitions..count);
                Err(e)
            }
        }
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
        let cfg = topic_config::log_config(&self.config.log, &configs)?;
        if validate_only {
            return Ok(TopicMeta { configs, ..meta });
        }
        let meta = self.metadata.set_configs(name, configs).await?;
        for p in 0..meta.partitions {
            if let Some(log) = self.logs.get(name, p) {
                log.set_config(cfg.clone())?;
            }
        }
        info!(topic = name, configs = ?meta.configs, "altered topic configs");
        Ok(meta)
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
