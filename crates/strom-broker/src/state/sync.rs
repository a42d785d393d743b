//! How a broker of a cluster follows the committed metadata: [`BrokerState::sync_with_store`]
//! (run after every change the store reports, and after this broker's own topic operations),
//! the background loading of the group coordinator, and the removal of logs of topics the
//! cluster no longer has.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::{info, warn};

use super::BrokerState;
use crate::error::Result;
use crate::metadata::MetadataStore;
use crate::topic_config;

impl BrokerState {
    /// Brings this broker in line with the committed cluster metadata, whoever changed it:
    /// creates the logs of partitions newly assigned here, deletes those of topics that are
    /// gone (or were deleted and created again under the same name), applies config changes,
    /// and republishes leadership (leaders, epochs, ISR). Idempotent; runs after every change
    /// the store reports ([`MetadataStore::changes`]) and after this broker's own topic
    /// operations.
    pub async fn sync_with_store(&self) -> Result<()> {
        let _admin = self.admin.lock().await;
        self.sync_locked().await
    }

    pub(super) async fn sync_locked(&self) -> Result<()> {
        self.refresh_dynamic();
        let defaults = self.log_defaults();
        let topics = self.metadata.topics();
        let current: HashMap<&str, uuid::Uuid> = topics.iter().map(|t| (t.name.as_str(), t.id)).collect();
        // Topics gone, or replaced by a new topic of the same name.
        let held: Vec<(String, uuid::Uuid)> = self.held_ids().iter().map(|(n, id)| (n.clone(), *id)).collect();
        for (name, id) in held {
            if current.get(name.as_str()) != Some(&id) {
                self.forget_topic(&name).await;
            }
        }
        for t in &topics {
            let cfg = topic_config::log_config(&defaults, &t.configs)?;
            let mine = self.my_partitions(&t.name);
            let missing: Vec<i32> = mine.iter().copied().filter(|p| self.logs.get(&t.name, *p).is_none()).collect();
            if !missing.is_empty() {
                self.create_logs_list(&t.name, missing.clone(), cfg.clone()).await?;
                info!(topic = %t.name, partitions = ?missing, "created the logs of partitions assigned to this broker");
            }
            for p in &mine {
                if let Some(log) = self.logs.get(&t.name, *p) {
                    if log.config() != cfg {
                        log.set_config(cfg.clone())?;
                    }
                }
            }
            self.publish_partitions(&t.name);
        }
        // The coordinator follows the offsets topic's leaders.
        self.groups.sync_coordination(self)?;
        self.remove_leftover_logs(&current).await;
        self.remove_moved_replicas(&current).await;
        self.refresh_fetchers();
        Ok(())
    }

    /// Deletes the logs of topics the cluster no longer has (deleted while this broker was
    /// away), once this broker has caught up: it is unfenced, so it has applied the metadata
    /// log at least up to its own registration, and a topic it does not see is really gone.
    async fn remove_leftover_logs(&self, current: &HashMap<&str, uuid::Uuid>) {
        let Some(node) = &self.cluster else { return };
        if self.adoption_pending.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let status = node.broker_status().borrow().clone();
        if status.epoch.is_none() || status.fenced {
            return;
        }
        let leftovers: Vec<String> = self
            .logs
            .list()
            .iter()
            .filter(|l| !current.contains_key(l.topic()))
            .map(|l| l.topic().to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for topic in leftovers {
            warn!(%topic, "deleting the logs of a topic the cluster no longer has (deleted while this broker was away)");
            self.forget_topic(&topic).await;
        }
    }

    /// Deletes the logs of partitions of existing topics that no longer list this broker as a
    /// replica (a reassignment moved them away; it completes only once the new replicas are
    /// in sync). Only once caught up, as [`Self::remove_leftover_logs`]. The partition layer
    /// already dropped them (`publish_partitions`), so their fetchers stop.
    async fn remove_moved_replicas(&self, current: &HashMap<&str, uuid::Uuid>) {
        let Some(node) = &self.cluster else { return };
        let status = node.broker_status().borrow().clone();
        if status.epoch.is_none() || status.fenced || self.adoption_pending.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut moved: HashMap<String, Vec<i32>> = HashMap::new();
        for log in self.logs.list() {
            if !current.contains_key(log.topic()) || self.partition(log.topic(), log.partition()).is_some() {
                continue;
            }
            if !self.my_partitions(log.topic()).contains(&log.partition()) {
                moved.entry(log.topic().to_string()).or_default().push(log.partition());
            }
        }
        for (topic, partitions) in moved {
            info!(%topic, ?partitions, "deleting the logs of partitions reassigned away from this broker");
            self.drop_logs(&topic, partitions).await;
        }
    }

    /// In a cluster: loads the group coordinator in the background once `__consumer_offsets`
    /// exists, retrying until it succeeds; until then group requests get
    /// `COORDINATOR_LOAD_IN_PROGRESS` or `COORDINATOR_NOT_AVAILABLE` and clients retry. The
    /// topic is not created here but at the first FindCoordinator
    /// ([`BrokerState::request_offsets_topic`]), as Kafka does, so its partitions are placed
    /// over the brokers that are up by then rather than over the first one to start.
    pub fn start_group_loading(self: &Arc<Self>) {
        if self.cluster.is_none() {
            return;
        }
        let state = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let Some(s) = state.upgrade() else { return };
                if let Err(e) = s.adopt_single_node_data().await {
                    warn!(error = %e, "adopting the single-node data directory into the cluster failed; retrying");
                    drop(s);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                    }
                    continue;
                }
                // Subscribe before looking, so a topic created in between is not missed.
                let mut changes = s.metadata.changes();
                if s.metadata.topic(crate::groups::OFFSETS_TOPIC).is_none() {
                    drop(s);
                    match changes.as_mut() {
                        Some(rx) => tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = rx.changed() => {}
                        },
                        None => return,
                    }
                    continue;
                }
                match s.groups.load(&s).await {
                    Ok(()) => return,
                    Err(e) => warn!(error = %e, "the group coordinator could not load yet; retrying"),
                }
                drop(s);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                }
            }
        });
    }

    pub(super) fn held_ids(&self) -> std::sync::MutexGuard<'_, HashMap<String, uuid::Uuid>> {
        self.held_ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops a topic this broker held: its partitions leave the partition layer, its logs
    /// are deleted, and its committed offsets are forgotten.
    pub(super) async fn forget_topic(&self, name: &str) {
        self.partitions.remove_topic(name);
        self.held_ids().remove(name);
        let local: Vec<i32> = self.logs.list().iter().filter(|l| l.topic() == name).map(|l| l.partition()).collect();
        self.drop_logs(name, local).await;
        self.groups.topic_deleted(name).await;
        info!(topic = name, "removed a deleted topic's partitions from this broker");
    }

    /// Starts the task that runs [`BrokerState::sync_with_store`] after every change the
    /// store reports (a cluster's committed metadata); nothing for the single-node store.
    pub fn start_metadata_watch(self: &Arc<Self>) {
        let Some(mut changes) = self.metadata.changes() else { return };
        // This broker's own registration matters too: it leads and follows only once its
        // registration is in and unfenced (see `publish_partitions`).
        let mut status = self.cluster.as_ref().map(|node| node.broker_status());
        let state = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            // Once at the start: changes applied between startup's reconciliation and this
            // subscription would otherwise wait for the next change.
            let mut first = true;
            loop {
                if !first {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        changed = changes.changed() => if changed.is_err() { return },
                        changed = async {
                            match status.as_mut() {
                                Some(s) => s.changed().await,
                                None => std::future::pending().await,
                            }
                        } => if changed.is_err() { status = None },
                    }
                }
                first = false;
                let Some(state) = state.upgrade() else { return };
                if let Err(e) = state.sync_with_store().await {
                    warn!(error = %e, "applying the cluster metadata to this broker failed; retrying at the next change");
                }
            }
        });
    }

    /// Adopts a single-node data directory into the cluster this broker just joined: every
    /// topic of its `topics.json` is proposed with its id, configs and leader epochs, all its
    /// partitions on this broker (where their logs, offsets and producer state are); producer
    /// ids never go below what the single node handed out; then `topics.json` is renamed to
    /// `topics.json.adopted`. Runs before the group coordinator loads (its offsets topic is
    /// one of the adopted topics). A topic whose name the cluster already uses under another
    /// id is refused: its logs are not served as the other topic's.
    async fn adopt_single_node_data(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let Some(node) = &self.cluster else { return Ok(()) };
        if !self.adoption_pending.load(Ordering::SeqCst) {
            return Ok(());
        }
        let data_dir = self.config.data_dir.clone();
        // The assignment names this broker, which must be registered first.
        let mut status = node.broker_status();
        if status.wait_for(|s| s.epoch.is_some()).await.is_err() {
            return Err(crate::Error::MetadataUnavailable("the cluster node stopped".into()));
        }
        let me = crate::metadata::BrokerInfo {
            node_id: self.node_id(),
            host: self.advertised_host.clone(),
            port: self.advertised_port,
            rack: None,
        };
        let (local, _) = crate::metadata::LocalMetadataStore::open(&data_dir, me)?;
        let mut adopted = 0;
        for t in local.topics() {
            match self.metadata.topic(&t.name) {
                Some(existing) if existing.id == t.id => continue,
                Some(existing) => {
                    return Err(crate::Error::CorruptMetadata {
                        path: data_dir.join(crate::metadata::TOPICS_FILE),
                        reason: format!(
                            "topic {:?} (id {}) cannot be adopted: the cluster has a topic of that name with id {}",
                            t.name, t.id, existing.id
                        ),
                    });
                }
                None => {}
            }
            let request = strom_cluster::ControllerRequest::AdoptTopic {
                node_id: self.node_id(),
                name: t.name.clone(),
                id: t.id,
                partitions: t.partitions,
                configs: t.configs.clone(),
                leader_epochs: t.leader_epochs.clone(),
            };
            node.submit(request, strom_cluster::metadata::WRITE_TIMEOUT)
                .await
                .map_err(|e| crate::Error::MetadataUnavailable(format!("adopting topic {:?}: {e}", t.name)))?;
            adopted += 1;
        }
        let floor = crate::producer_ids::persisted_floor(&data_dir)?;
        node.submit(
            strom_cluster::ControllerRequest::RaiseProducerIdFloor { floor },
            strom_cluster::metadata::WRITE_TIMEOUT,
        )
        .await
        .map_err(|e| crate::Error::MetadataUnavailable(format!("carrying producer ids over: {e}")))?;
        let from = data_dir.join(crate::metadata::TOPICS_FILE);
        let to = data_dir.join(format!("{}.adopted", crate::metadata::TOPICS_FILE));
        std::fs::rename(&from, &to).map_err(|e| crate::Error::io(format!("renaming {}", from.display()), e))?;
        strom_log::sync_dir(&data_dir)?;
        self.adoption_pending.store(false, Ordering::SeqCst);
        info!(topics = adopted, producer_id_floor = floor, "adopted the single-node data directory into the cluster");
        self.sync_with_store().await
    }

    /// Asks the controller (once, in the background) to create `__consumer_offsets` if the
    /// cluster has none yet: what the first FindCoordinator does. Placed like any topic, over
    /// the brokers live at that moment, with `groups.offsets_topic_replication_factor`
    /// replicas (at most the live brokers).
    pub fn request_offsets_topic(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.cluster.is_none()
            || self.metadata.topic(crate::groups::OFFSETS_TOPIC).is_some()
            || self.offsets_topic_requested.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let state = self.clone();
        tokio::spawn(async move {
            let partitions = state.groups.config().offsets_topic_partitions;
            let live = i16::try_from(state.metadata.brokers().len()).unwrap_or(i16::MAX).max(1);
            let replicas = state.groups.config().offsets_topic_replication_factor.min(live);
            let configs = crate::groups::internal_topic_configs(state.groups.config());
            match state.create_topic(crate::groups::OFFSETS_TOPIC, partitions, replicas, configs, false).await {
                Ok(_) | Err(crate::Error::TopicExists(_)) => {
                    info!(
                        partitions,
                        replicas, "the internal offsets topic exists; group coordinators load on its leaders"
                    )
                }
                Err(e) => {
                    warn!(error = %e, "could not create the internal offsets topic; the next FindCoordinator retries");
                    state.offsets_topic_requested.store(false, Ordering::SeqCst);
                }
            }
        });
    }
}
