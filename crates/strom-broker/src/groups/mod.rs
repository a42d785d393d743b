//! The group coordinator (classic group protocol) and committed offsets.
//!
//! This single broker coordinates every group. Each group is a task ([`actor`]) that owns the
//! group's state machine ([`engine`], pure and unit-tested) and its committed offsets
//! ([`offsets`]), and writes both to the internal topic `__consumer_offsets` ([`store`],
//! [`records`]) in the same log engine as the data, so they get the same fsync and recovery.
//! A commit is acknowledged only once its record is durable; at startup the topic is replayed
//! from its start to rebuild every group and offset.
//!
//! Module map:
//! - [`config`]: [`GroupConfig`], Kafka's `group.*` and `offsets.*` settings.
//! - [`engine`]: one group as a pure state machine (events in, replies and writes out).
//! - [`actor`]: the task around one group: channel, timers, writes, reply channels.
//! - [`offsets`]: one group's committed offsets and their expiry.
//! - [`records`]: the internal topic's key/value layout (Kafka's) and batches.
//! - [`store`]: the internal topic's partitions: append, replay.

pub mod actor;
pub mod config;
pub mod engine;
pub mod offsets;
pub mod records;
pub mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::mpsc::error::SendError;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

pub use self::config::GroupConfig;
pub use self::store::{OFFSETS_TOPIC, is_internal_topic, partition_for};

use self::actor::{Clock, DeleteOffsetsResult, Event, Handle, LeaveResult, Summary};
use self::engine::{
    EngineConfig, Group, GroupDescription, GroupRecord, GroupState, JoinRequest, JoinResult, LeaveMember, Now,
    SyncRequest, SyncResult,
};
use self::offsets::{GroupOffsets, TopicPartition};
use self::records::{InternalRecord, OffsetValue};
use self::store::OffsetsLog;
use crate::error::{Error, Result};
use crate::state::BrokerState;
use crate::topic_config::{self, TopicConfigs};

/// The group coordinator: a cheap handle (`Arc` inside) shared by every connection.
#[derive(Debug, Clone)]
pub struct GroupCoordinator {
    shared: Arc<Shared>,
}

/// State shared by the coordinator handle and every group task.
pub(crate) struct Shared {
    config: GroupConfig,
    engine: EngineConfig,
    clock: Clock,
    shutdown: CancellationToken,
    /// Set once the internal topic has been replayed; until then requests get
    /// `COORDINATOR_LOAD_IN_PROGRESS`.
    log: OnceLock<OffsetsLog>,
    registry: Mutex<Registry>,
    /// Per partition of the internal topic, the token its group tasks stop on (a child of
    /// `shutdown`), cancelled when this broker stops coordinating that partition.
    partition_tokens: Mutex<HashMap<usize, CancellationToken>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Registry {
    groups: HashMap<String, Handle>,
    next_id: u64,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Nothing under this lock can panic (map operations only), so poisoning means a bug
        // elsewhere; keep serving with the data as it is.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token the task of `group_id` stops on: the broker's shutdown, or its partition
    /// being handed to another coordinator.
    pub(crate) fn group_token(&self, group_id: &str) -> CancellationToken {
        let Some(log) = self.log.get() else { return self.shutdown.clone() };
        let p = log.partition_for(group_id);
        let mut tokens = self.partition_tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.entry(p).or_insert_with(|| self.shutdown.child_token()).clone()
    }

    /// Stops coordinating partition `p`: its group tasks stop (their queued requests are
    /// answered as the coordinator being unavailable, so clients look it up again) and are
    /// forgotten.
    fn unload_partition(&self, log: &OffsetsLog, p: usize) {
        log.set_coordinated(p, false);
        if let Some(token) = self.partition_tokens.lock().unwrap_or_else(|e| e.into_inner()).remove(&p) {
            token.cancel();
        }
        let mut reg = self.registry();
        let before = reg.groups.len();
        reg.groups.retain(|id, _| log.partition_for(id) != p);
        tracing::info!(
            partition = p,
            groups = before - reg.groups.len(),
            "no longer coordinating the groups of an offsets partition (another broker leads it)"
        );
    }

    pub(crate) fn log(&self) -> Result<&OffsetsLog> {
        self.log.get().ok_or_else(|| Error::InvalidRequest("the group coordinator is still loading".into()))
    }

    fn spawn_group(
        self: &Arc<Self>,
        reg: &mut Registry,
        group_id: &str,
        group: Group,
        offsets: GroupOffsets,
        record: Option<bytes::Bytes>,
    ) -> Handle {
        reg.next_id += 1;
        let handle = actor::spawn(self.clone(), reg.next_id, group, offsets, record);
        reg.groups.insert(group_id.to_string(), handle.clone());
        handle
    }

    /// The task of `group_id`, started (as a new empty group) when `create` is set.
    fn handle(self: &Arc<Self>, group_id: &str, create: bool) -> Option<Handle> {
        let mut reg = self.registry();
        if let Some(h) = reg.groups.get(group_id) {
            return Some(h.clone());
        }
        if !create {
            return None;
        }
        // A group created by a commit alone counts as empty since the epoch, so its offsets
        // expire by their commit time (as Kafka's do for groups without metadata).
        let now = Now { wall_ms: 0, ..self.clock.now() };
        let group = Group::new(group_id, self.engine, now);
        Some(self.spawn_group(&mut reg, group_id, group, GroupOffsets::default(), None))
    }

    /// Called by a task that is about to exit.
    pub(crate) fn deregister(&self, group_id: &str, id: u64) {
        let mut reg = self.registry();
        if reg.groups.get(group_id).is_some_and(|h| h.id == id) {
            reg.groups.remove(group_id);
        }
    }

    /// Hands an event queued at an exiting task to the group's next task.
    pub(crate) fn reroute(self: &Arc<Self>, group_id: String, ev: Event) {
        let shared = self.clone();
        tokio::spawn(async move {
            let _ = shared.send(&group_id, true, ev).await;
        });
    }

    /// Sends `ev` to the group's task; `Err` gives the event back when the group does not exist
    /// (and `create` is not set).
    async fn send(self: &Arc<Self>, group_id: &str, create: bool, mut ev: Event) -> std::result::Result<(), Event> {
        for _ in 0..4 {
            let Some(h) = self.handle(group_id, create) else { return Err(ev) };
            match h.tx.send(ev).await {
                Ok(()) => return Ok(()),
                Err(SendError(back)) => {
                    // The task exited between lookup and send: forget it and retry.
                    self.deregister(group_id, h.id);
                    ev = back;
                }
            }
        }
        Err(ev)
    }
}

/// A delayed answer: resolves to the coordinator's reply, or to `fallback` if the group's task
/// went away before answering (shutdown).
async fn answer<T>(rx: oneshot::Receiver<T>, fallback: T) -> T {
    rx.await.unwrap_or(fallback)
}

impl GroupCoordinator {
    /// A coordinator that answers `COORDINATOR_LOAD_IN_PROGRESS` until [`load`](Self::load)
    /// has run. Group tasks stop when `shutdown` is cancelled.
    pub fn new(config: GroupConfig, shutdown: CancellationToken) -> GroupCoordinator {
        let engine = EngineConfig::from(&config);
        GroupCoordinator {
            shared: Arc::new(Shared {
                config,
                engine,
                clock: Clock::new(),
                shutdown,
                log: OnceLock::new(),
                registry: Mutex::new(Registry::default()),
                partition_tokens: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GroupConfig {
        &self.shared.config
    }

    /// Creates the internal topic if the registry lacks it, then replays the partitions of
    /// it this broker leads (all of them on a single node; in a cluster, those led here:
    /// this broker coordinates the groups stored in them). Runs once, after the broker has
    /// reconciled its logs; [`Self::sync_coordination`] follows later leadership changes.
    pub async fn load(&self, state: &BrokerState) -> Result<()> {
        let partitions = match state.metadata.topic(OFFSETS_TOPIC) {
            Some(t) => t.partitions,
            None => {
                let configs = internal_topic_configs(&self.shared.config);
                match state
                    .create_topic(OFFSETS_TOPIC, self.shared.config.offsets_topic_partitions, 1, configs, false)
                    .await
                {
                    Ok(meta) => {
                        tracing::info!(partitions = meta.partitions, "created the internal offsets topic");
                        meta.partitions
                    }
                    // Another node of the cluster created it first.
                    Err(Error::TopicExists(_)) => state
                        .metadata
                        .topic(OFFSETS_TOPIC)
                        .map(|t| t.partitions)
                        .ok_or_else(|| Error::UnknownTopic(OFFSETS_TOPIC.to_string()))?,
                    Err(e) => return Err(e),
                }
            }
        };
        if partitions != self.shared.config.offsets_topic_partitions {
            tracing::warn!(
                existing = partitions,
                configured = self.shared.config.offsets_topic_partitions,
                "the internal offsets topic keeps the partition count it was created with"
            );
        }
        let clustered = state.cluster.is_some();
        let mut held = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let partition = state.partition(OFFSETS_TOPIC, p);
            if partition.is_none() && !clustered {
                return Err(Error::UnknownTopic(format!("{OFFSETS_TOPIC}-{p}")));
            }
            held.push(partition);
        }
        self.load_from(OffsetsLog::new(held))
    }

    /// Follows the internal topic's partitions as the cluster moves them: takes partitions
    /// newly held here, replays and starts coordinating those this broker now leads, and
    /// stops coordinating those it no longer leads. Nothing before [`Self::load`] ran (it
    /// picks them up itself).
    pub fn sync_coordination(&self, state: &BrokerState) -> Result<()> {
        let Some(log) = self.shared.log.get() else { return Ok(()) };
        for p in 0..log.partition_count() {
            let Some(current) = i32::try_from(p).ok().and_then(|i| state.partition(OFFSETS_TOPIC, i)) else { continue };
            if log.partition(p).is_none_or(|held| !Arc::ptr_eq(&held, &current)) {
                log.adopt(p, current);
            }
        }
        let (led, coordinated) = (log.led(), log.coordinated());
        for p in coordinated.difference(&led) {
            self.shared.unload_partition(log, *p);
        }
        let new: Vec<usize> = led.difference(&coordinated).copied().collect();
        if !new.is_empty() {
            self.replay_into(log, Some(&new))?;
            for p in &new {
                log.set_coordinated(*p, true);
            }
            tracing::info!(partitions = ?new, "coordinating the groups of offsets partitions this broker now leads");
        }
        Ok(())
    }

    /// Replays the partitions of `log` this broker leads, starts a task per group found and
    /// the periodic offset expiry. Groups resume in the state their last record describes: a
    /// Stable group keeps its generation and members, who must heartbeat within their
    /// session timeouts.
    pub fn load_from(&self, log: OffsetsLog) -> Result<()> {
        let led: Vec<usize> = log.led().into_iter().collect();
        if self.shared.log.set(log).is_err() {
            return Err(Error::InvalidRequest("the group coordinator was loaded twice".into()));
        }
        let log = self.shared.log()?;
        self.replay_into(log, Some(&led))?;
        for p in led {
            log.set_coordinated(p, true);
        }
        self.start_expiry();
        Ok(())
    }

    /// Replays `only` (or every held) partition of `log` and starts a task per group found.
    fn replay_into(&self, log: &OffsetsLog, only: Option<&[usize]>) -> Result<()> {
        let started = std::time::Instant::now();
        let mut found: HashMap<String, (Option<GroupRecord>, GroupOffsets)> = HashMap::new();
        let stats = log.replay(only, |_, offset, record| match record {
            InternalRecord::Offset { group, topic, partition, value } => {
                found.entry(group).or_default().1.apply((topic, partition), value, offset);
            }
            InternalRecord::Group { group, value } => {
                let entry = found.entry(group).or_default();
                entry.0 = value;
            }
        })?;
        for (_, offsets) in found.values_mut() {
            offsets.forget_deletions();
        }
        let now = self.shared.clock.now();
        let mut reg = self.shared.registry();
        let mut groups = 0;
        for (id, (record, offsets)) in found {
            let group = match &record {
                Some(r) => Group::from_record(&id, self.shared.engine, r, now),
                None if offsets.is_empty() => continue,
                None => Group::new(&id, self.shared.engine, Now { wall_ms: 0, ..now }),
            };
            groups += 1;
            let record = record.as_ref().map(records::group_value);
            self.shared.spawn_group(&mut reg, &id, group, offsets, record);
        }
        drop(reg);
        tracing::info!(
            groups,
            records = stats.records,
            skipped = stats.skipped,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "group coordinator loaded"
        );
        Ok(())
    }

    fn start_expiry(&self) {
        let every = Duration::from_millis(self.shared.config.offsets_retention_check_interval_ms);
        let weak = Arc::downgrade(&self.shared);
        let shutdown = self.shared.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let Some(shared) = weak.upgrade() else { return };
                let coordinator = GroupCoordinator { shared };
                coordinator.expire_offsets(Clock::new().now().wall_ms);
                coordinator.prune_offsets_topic().await;
            }
        });
    }

    /// Keeps the internal topic from growing with every commit (it is not compacted): for
    /// each of its partitions with at least two sealed segments (so each rewrite frees more
    /// than one segment's worth), every group stored there writes its
    /// live state again (its last group record and every committed offset), and once all of
    /// those writes are durable the sealed segments wholly below the point where they started
    /// are deleted. Only superseded records go: every live key has a newer copy, and a group
    /// whose task has ended has nothing live. Runs with each offset expiry check; returns the
    /// number of segments deleted.
    pub async fn prune_offsets_topic(&self) -> usize {
        const PRUNE_ROUND_TIMEOUT: Duration = Duration::from_secs(30);
        let Ok(log) = self.shared.log() else { return 0 };
        let mut deleted = 0;
        for p in 0..log.partition_count() {
            let Some(part) = log.partition(p).filter(|_| log.coordinated().contains(&p)) else { continue };
            let part = part.log().clone();
            if part.segment_count() < 3 {
                continue;
            }
            let from = part.log_end_offset();
            // A task that has ended (a dead or never-used group) has nothing live to keep.
            let answers = self.ask_groups(|id| log.partition_for(id) == p, Event::Checkpoint).await;
            // A group that keeps a write in flight all the time would hold the checkpoint (and
            // the expiry loop this runs in) forever: a round has a time limit.
            let deadline = tokio::time::Instant::now() + PRUNE_ROUND_TIMEOUT;
            let mut rewritten = true;
            for rx in answers {
                rewritten &= matches!(tokio::time::timeout_at(deadline, rx).await, Ok(Ok(true)));
            }
            if !rewritten {
                tracing::warn!(
                    partition = p,
                    "a group could not write its state again; the internal topic is pruned at the next check"
                );
                continue;
            }
            match part.delete_segments_before(from) {
                Ok(n) => deleted += n,
                Err(e) => tracing::warn!(partition = p, error = %e, "pruning the internal topic failed"),
            }
        }
        deleted
    }

    /// Asks every group to expire offsets past `offsets.retention.minutes` at `now_wall_ms`
    /// (the periodic check calls this; tests call it with a future time).
    pub fn expire_offsets(&self, now_wall_ms: i64) {
        let handles: Vec<Handle> = self.shared.registry().groups.values().cloned().collect();
        for h in handles {
            let _ = h.tx.try_send(Event::Expire(now_wall_ms));
        }
    }

    /// Drops every group's committed offsets of a deleted topic, and returns once the
    /// tombstones are durable (or a group could not be told: it is shutting down).
    pub async fn topic_deleted(&self, topic: &str) {
        for rx in self.ask_groups(|_| true, |tx| Event::TopicDeleted(topic.to_string(), tx)).await {
            let _ = rx.await;
        }
    }

    /// Sends an event made by `event` to every running group task whose id passes `which`,
    /// and returns the receivers of their answers. A task that has ended is skipped: it has
    /// nothing to answer for.
    async fn ask_groups<T>(
        &self,
        which: impl Fn(&str) -> bool,
        event: impl Fn(oneshot::Sender<T>) -> Event,
    ) -> Vec<oneshot::Receiver<T>> {
        let handles: Vec<Handle> =
            self.shared.registry().groups.iter().filter(|(id, _)| which(id)).map(|(_, h)| h.clone()).collect();
        let mut answers = Vec::with_capacity(handles.len());
        for h in handles {
            let (tx, rx) = oneshot::channel();
            if h.tx.send(event(tx)).await.is_ok() {
                answers.push(rx);
            }
        }
        answers
    }

    /// Checks a group id: at most `max_group_id_bytes` long, and not empty unless `allow_empty`
    /// (Kafka accepts the empty group id for offset commits and fetches only).
    pub fn check_group_id(&self, group_id: &str, allow_empty: bool) -> std::result::Result<(), ResponseError> {
        if (group_id.is_empty() && !allow_empty) || group_id.len() > self.shared.config.max_group_id_bytes {
            return Err(ResponseError::InvalidGroupId);
        }
        match self.shared.log.get() {
            None => Err(ResponseError::CoordinatorLoadInProgress),
            // In a cluster, another broker holds the offsets partition of this group.
            Some(log) if !log.is_local(group_id) => Err(ResponseError::NotCoordinator),
            Some(_) => Ok(()),
        }
    }

    /// JoinGroup: returns the (possibly delayed) answer.
    pub async fn join(&self, group_id: &str, req: JoinRequest) -> impl Future<Output = JoinResult> + Send + 'static {
        let member_id = req.member_id.clone();
        let (tx, rx) = oneshot::channel();
        // A known member id for a group that does not exist is an error, not a new group.
        let create = req.member_id.is_empty();
        let sent = self.shared.send(group_id, create, Event::Join(req, tx)).await;
        let fallback = JoinResult::error(member_id.clone(), ResponseError::CoordinatorNotAvailable);
        let early = sent.err().map(|_| JoinResult::error(member_id, ResponseError::UnknownMemberId));
        async move {
            match early {
                Some(r) => r,
                None => answer(rx, fallback).await,
            }
        }
    }

    /// SyncGroup: returns the (possibly delayed) answer.
    pub async fn sync(&self, group_id: &str, req: SyncRequest) -> impl Future<Output = SyncResult> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self.shared.send(group_id, false, Event::Sync(req, tx)).await;
        async move {
            match sent {
                Err(_) => SyncResult::error(ResponseError::UnknownMemberId),
                Ok(()) => answer(rx, SyncResult::error(ResponseError::CoordinatorNotAvailable)).await,
            }
        }
    }

    /// Heartbeat.
    pub async fn heartbeat(
        &self,
        group_id: &str,
        member_id: String,
        instance: Option<String>,
        generation: i32,
    ) -> std::result::Result<(), ResponseError> {
        let (tx, rx) = oneshot::channel();
        match self.shared.send(group_id, false, Event::Heartbeat(member_id, instance, generation, tx)).await {
            Err(_) => Err(ResponseError::UnknownMemberId),
            Ok(()) => answer(rx, Err(ResponseError::CoordinatorNotAvailable)).await,
        }
    }

    /// LeaveGroup.
    pub async fn leave(&self, group_id: &str, members: Vec<LeaveMember>) -> LeaveResult {
        let n = members.len();
        let (tx, rx) = oneshot::channel();
        match self.shared.send(group_id, false, Event::Leave(members, tx)).await {
            Err(_) => Ok(vec![Err(ResponseError::UnknownMemberId); n]),
            Ok(()) => answer(rx, Err(ResponseError::CoordinatorNotAvailable)).await,
        }
    }

    /// OffsetCommit of partitions the caller has already checked (topic exists, metadata not
    /// too large). Resolves once the offsets are durable, or with the group-level error that
    /// applies to all of them.
    pub async fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: String,
        instance: Option<String>,
        entries: Vec<(TopicPartition, OffsetValue)>,
    ) -> impl Future<Output = std::result::Result<(), ResponseError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        // A group that does not exist accepts commits only from outside group management.
        let create = generation < 0;
        let ev = Event::Commit { generation, member_id, instance, entries, reply: tx };
        let sent = self.shared.send(group_id, create, ev).await;
        async move {
            match sent {
                Err(_) => Err(ResponseError::IllegalGeneration),
                Ok(()) => answer(rx, Err(ResponseError::CoordinatorNotAvailable)).await,
            }
        }
    }

    /// OffsetFetch: the committed offset of each asked partition (`None`: not committed), or
    /// with `None`, every committed partition of the group.
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<TopicPartition>>,
    ) -> std::result::Result<Vec<(TopicPartition, Option<OffsetValue>)>, ResponseError> {
        let asked = partitions.clone();
        let (tx, rx) = oneshot::channel();
        match self.shared.send(group_id, false, Event::Fetch(partitions, tx)).await {
            Err(_) => Ok(asked.unwrap_or_default().into_iter().map(|tp| (tp, None)).collect()),
            Ok(()) => rx.await.map_err(|_| ResponseError::CoordinatorNotAvailable),
        }
    }

    /// Every group with its state and protocol type (ListGroups).
    pub fn list(&self) -> Vec<(String, Summary)> {
        let reg = self.shared.registry();
        let mut v: Vec<(String, Summary)> = reg
            .groups
            .iter()
            .filter_map(|(id, h)| {
                let s = h.summary.lock().map(|s| s.clone()).ok()?;
                (s.state != GroupState::Dead).then(|| (id.clone(), s))
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// DescribeGroups: `None` for a group that does not exist.
    pub async fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let (tx, rx) = oneshot::channel();
        self.shared.send(group_id, false, Event::Describe(tx)).await.ok()?;
        rx.await.ok().filter(|d| d.state != GroupState::Dead)
    }

    /// DeleteGroups: deletes an empty group and its offsets, durably.
    pub async fn delete_group(&self, group_id: &str) -> std::result::Result<(), ResponseError> {
        let (tx, rx) = oneshot::channel();
        match self.shared.send(group_id, false, Event::Delete(tx)).await {
            Err(_) => Err(ResponseError::GroupIdNotFound),
            Ok(()) => answer(rx, Err(ResponseError::CoordinatorNotAvailable)).await,
        }
    }

    /// OffsetDelete.
    pub async fn delete_offsets(&self, group_id: &str, partitions: Vec<TopicPartition>) -> DeleteOffsetsResult {
        let (tx, rx) = oneshot::channel();
        match self.shared.send(group_id, false, Event::DeleteOffsets(partitions, tx)).await {
            Err(_) => Err(ResponseError::GroupIdNotFound),
            Ok(()) => answer(rx, Err(ResponseError::CoordinatorNotAvailable)).await,
        }
    }
}

/// Topic configs of the internal topic: never deleted by retention (compaction does not exist
/// yet; [`GroupCoordinator::prune_offsets_topic`] keeps it from growing with every commit),
/// always fsynced before a commit is acknowledged.
pub fn internal_topic_configs(config: &GroupConfig) -> TopicConfigs {
    let mut c = TopicConfigs::new();
    c.insert(topic_config::RETENTION_MS.into(), "-1".into());
    c.insert(topic_config::RETENTION_BYTES.into(), "-1".into());
    c.insert(topic_config::SEGMENT_BYTES.into(), config.offsets_topic_segment_bytes.to_string());
    c.insert(topic_config::FLUSH_POLICY.into(), "always".into());
    c
}
