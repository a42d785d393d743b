//! The async shell around one [`Group`]: a task that owns the group's state machine and its
//! committed offsets, takes [`Event`]s from a channel in arrival order, sleeps until the
//! group's next deadline (tokio's clock, so tests can pause time), writes records to the
//! internal topic and answers requests once what they changed is durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::engine::{
    Group, GroupDescription, GroupState, JoinRequest, JoinResult, LeaveMember, Now, Outputs, Persist, PersistKind,
    Reply, SyncRequest, SyncResult, WaiterId,
};
use super::offsets::{GroupOffsets, TopicPartition};
use super::records::{self, OffsetValue};

/// The coordinator's clock: monotonic milliseconds from tokio's clock (pausable in tests) for
/// deadlines, and the wall clock for timestamps that are stored.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: tokio::time::Instant,
}

impl Clock {
    /// A clock whose monotonic zero is now.
    pub fn new() -> Clock {
        Clock { base: tokio::time::Instant::now() }
    }

    /// The current time.
    pub fn now(&self) -> Now {
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        Now { mono_ms: self.base.elapsed().as_millis() as i64, wall_ms }
    }

    fn instant(&self, mono_ms: i64) -> tokio::time::Instant {
        self.base + Duration::from_millis(mono_ms.max(0) as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Result of a LeaveGroup: per-member results, or a group-level error.
pub type LeaveResult = Result<Vec<Result<(), ResponseError>>, ResponseError>;
/// Result of an OffsetDelete: per-partition results, or a group-level error.
pub type DeleteOffsetsResult = Result<Vec<(TopicPartition, Result<(), ResponseError>)>, ResponseError>;
/// Called once a write is durable (or failed), after the change is applied in memory.
type Done = Box<dyn FnOnce(Result<(), ResponseError>) + Send>;

/// What a group's task is asked to do.
pub enum Event {
    /// JoinGroup.
    Join(JoinRequest, oneshot::Sender<JoinResult>),
    /// SyncGroup.
    Sync(SyncRequest, oneshot::Sender<SyncResult>),
    /// Heartbeat: member id, instance id, generation.
    Heartbeat(String, Option<String>, i32, oneshot::Sender<Result<(), ResponseError>>),
    /// LeaveGroup.
    Leave(Vec<LeaveMember>, oneshot::Sender<LeaveResult>),
    /// OffsetCommit of already validated partitions: generation, member id, instance id.
    Commit {
        /// Generation sent.
        generation: i32,
        /// Member id sent.
        member_id: String,
        /// Instance id sent.
        instance: Option<String>,
        /// The offsets.
        entries: Vec<(TopicPartition, OffsetValue)>,
        /// Answered once durable.
        reply: oneshot::Sender<Result<(), ResponseError>>,
    },
    /// OffsetFetch: `None` asks for every committed partition.
    Fetch(Option<Vec<TopicPartition>>, oneshot::Sender<Vec<(TopicPartition, Option<OffsetValue>)>>),
    /// DescribeGroups.
    Describe(oneshot::Sender<GroupDescription>),
    /// DeleteGroups.
    Delete(oneshot::Sender<Result<(), ResponseError>>),
    /// OffsetDelete.
    DeleteOffsets(Vec<TopicPartition>, oneshot::Sender<DeleteOffsetsResult>),
    /// Expire offsets older than the retention at this wall-clock time.
    Expire(i64),
    /// A topic was deleted: drop this group's committed offsets of it (answered once the
    /// tombstones are durable).
    TopicDeleted(String, oneshot::Sender<()>),
    /// Write this group's whole live state (its last group record and every committed offset)
    /// again, so everything older in the internal topic can be deleted. Waits until no write
    /// of the group is in flight (one in flight could otherwise be rewritten with its old
    /// value); answers `true` once the rewrite is durable, `false` if it could not be done.
    Checkpoint(oneshot::Sender<bool>),
    /// A group record write finished.
    Persisted(PersistKind, Result<(), ResponseError>),
    /// An offsets write finished: the changes, the log offset of each record, the result.
    Durable(Vec<(TopicPartition, Option<OffsetValue>)>, Vec<i64>, Result<(), ResponseError>, Done),
}

/// What ListGroups reads without asking the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Current state.
    pub state: GroupState,
    /// Protocol type (empty for offset-only groups).
    pub protocol_type: String,
}

/// A group's task's address.
#[derive(Debug, Clone)]
pub struct Handle {
    /// Distinguishes successive tasks of the same group id.
    pub id: u64,
    /// The event channel.
    pub tx: mpsc::Sender<Event>,
    /// Updated after every event.
    pub summary: Arc<Mutex<Summary>>,
}

/// Events a group's channel buffers before senders wait (backpressure).
const CHANNEL_CAPACITY: usize = 1024;

/// The storage error a client gets when the internal topic cannot be written: retriable, so
/// clients retry (and find the coordinator again) rather than give up.
fn storage_error(e: &crate::Error) -> ResponseError {
    tracing::error!(error = %e, "writing the internal offsets topic failed");
    ResponseError::CoordinatorNotAvailable
}

/// Valid commits collected for one write.
#[derive(Default)]
struct CommitBatch {
    /// Commit requests looked at (valid or not).
    requests: usize,
    /// Offsets of the valid ones, in arrival order.
    changes: Vec<(TopicPartition, Option<OffsetValue>)>,
    /// Their reply channels.
    replies: Vec<oneshot::Sender<Result<(), ResponseError>>>,
}

struct Actor {
    group: Group,
    offsets: GroupOffsets,
    shared: Arc<Shared>,
    handle_id: u64,
    self_tx: mpsc::Sender<Event>,
    summary: Arc<Mutex<Summary>>,
    join_waiters: HashMap<WaiterId, oneshot::Sender<JoinResult>>,
    sync_waiters: HashMap<WaiterId, oneshot::Sender<SyncResult>>,
    next_waiter: WaiterId,
    /// Writes whose durability has not been reported yet; the task never exits while > 0.
    in_flight: usize,
    /// The value of the last group record written (or replayed), for checkpoints; `None`
    /// when there is none or the group was deleted.
    last_group_record: Option<Bytes>,
    /// A checkpoint waiting for `in_flight` to reach 0.
    pending_checkpoint: Option<oneshot::Sender<bool>>,
    /// The group's tombstone could not be appended (a full disk): it is Dead here but its
    /// records are still in the log, so its task stays and refuses checkpoints, which keeps
    /// the internal topic from being pruned under those records until a restart reloads it.
    delete_failed: bool,
}

/// What an offsets write also does with the group's own record (written last in the batch,
/// after the offset changes).
enum GroupWrite {
    /// Nothing.
    Untouched,
    /// Deletes the group (a tombstone).
    Tombstone,
    /// Writes this group record value again (a checkpoint).
    Record(Bytes),
}

/// Starts the task of `group` and returns its handle. `id` must be unique per coordinator.
pub(super) fn spawn(
    shared: Arc<Shared>,
    id: u64,
    group: Group,
    offsets: GroupOffsets,
    record: Option<Bytes>,
) -> Handle {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let summary = Arc::new(Mutex::new(summary_of(&group, &offsets)));
    let actor = Actor {
        group,
        offsets,
        shared,
        handle_id: id,
        self_tx: tx.clone(),
        summary: summary.clone(),
        join_waiters: HashMap::new(),
        sync_waiters: HashMap::new(),
        next_waiter: 1,
        in_flight: 0,
        last_group_record: record,
        pending_checkpoint: None,
        delete_failed: false,
    };
    tokio::spawn(actor.run(rx));
    Handle { id, tx, summary }
}

fn summary_of(group: &Group, offsets: &GroupOffsets) -> Summary {
    let _ = offsets;
    Summary { state: group.state(), protocol_type: group.protocol_type().unwrap_or_default().to_string() }
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Event>) {
        // Ends with the broker, or when this broker stops coordinating the group's partition.
        let shutdown = self.shared.group_token(self.group.group_id());
        loop {
            let deadline = self.group.next_deadline().map(|d| self.shared.clock.instant(d));
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev @ Event::Commit { .. }) => self.handle_commits(ev, &mut rx),
                    Some(ev) => self.handle(ev),
                    None => return,
                },
                () = sleep_until(deadline) => {
                    let mut out = Outputs::default();
                    self.group.tick(self.shared.clock.now(), &mut out);
                    self.dispatch(out);
                }
                () = shutdown.cancelled() => return,
            }
            self.publish();
            if self.finished() {
                break;
            }
        }
        // Deregister first so new requests start a fresh task, then hand anything already
        // queued here to that task: no event is lost to the race.
        self.shared.deregister(self.group.group_id(), self.handle_id);
        rx.close();
        while let Some(ev) = rx.recv().await {
            self.shared.reroute(self.group.group_id().to_string(), ev);
        }
        tracing::debug!(group = %self.group.group_id(), "group task finished");
    }

    /// Nothing left to keep: a deleted group, or one that never got past its first request.
    fn finished(&self) -> bool {
        if self.in_flight > 0 || self.delete_failed || !self.join_waiters.is_empty() || !self.sync_waiters.is_empty() {
            return false;
        }
        match self.group.state() {
            GroupState::Dead => true,
            GroupState::Empty => self.offsets.is_empty() && self.group.is_pristine(),
            _ => false,
        }
    }

    fn publish(&self) {
        let s = summary_of(&self.group, &self.offsets);
        if let Ok(mut guard) = self.summary.lock() {
            *guard = s;
        }
    }

    fn waiter(&mut self) -> WaiterId {
        let w = self.next_waiter;
        self.next_waiter += 1;
        w
    }

    fn handle(&mut self, ev: Event) {
        let now = self.shared.clock.now();
        let mut out = Outputs::default();
        match ev {
            Event::Join(req, reply) => {
                let w = self.waiter();
                self.join_waiters.insert(w, reply);
                self.group.join(now, w, req, &mut out);
            }
            Event::Sync(req, reply) => {
                let w = self.waiter();
                self.sync_waiters.insert(w, reply);
                self.group.sync(now, w, req, &mut out);
            }
            Event::Heartbeat(member, instance, generation, reply) => {
                let _ = reply.send(self.group.heartbeat(now, &member, instance.as_deref(), generation));
            }
            Event::Leave(members, reply) => {
                let _ = reply.send(self.group.leave(now, &members, &mut out));
            }
            Event::Commit { .. } => {
                let mut batch = CommitBatch::default();
                self.add_commit(now, ev, &mut batch);
                self.write_commits(now, batch);
            }
            Event::Fetch(wanted, reply) => {
                let result = match wanted {
                    None => self.offsets.iter().map(|(tp, c)| (tp.clone(), Some(c.value.clone()))).collect(),
                    Some(tps) => tps
                        .into_iter()
                        .map(|tp| {
                            let v = self.offsets.get(&tp.0, tp.1).map(|c| c.value.clone());
                            (tp, v)
                        })
                        .collect(),
                };
                let _ = reply.send(result);
            }
            Event::Describe(reply) => {
                let _ = reply.send(self.group.describe());
            }
            Event::Delete(reply) => match self.group.delete(now) {
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
                Ok(()) => {
                    tracing::info!(group = %self.group.group_id(), "deleting group and its committed offsets");
                    let changes = self.offsets.iter().map(|(tp, _)| (tp.clone(), None)).collect();
                    self.write_offsets(
                        now,
                        changes,
                        GroupWrite::Tombstone,
                        Box::new(move |r| {
                            let _ = reply.send(r);
                        }),
                    );
                }
            },
            Event::DeleteOffsets(tps, reply) => self.delete_offsets(now, tps, reply),
            Event::Expire(now_wall) => self.expire(now, now_wall),
            Event::TopicDeleted(topic, done) => self.topic_deleted(now, &topic, done),
            Event::Checkpoint(reply) => {
                if self.in_flight == 0 {
                    self.checkpoint(now, reply);
                } else if let Some(older) = self.pending_checkpoint.replace(reply) {
                    let _ = older.send(false);
                }
            }
            Event::Persisted(kind, result) => {
                self.in_flight -= 1;
                self.group.on_persisted(now, kind, result, &mut out);
                self.run_pending_checkpoint(now);
            }
            Event::Durable(changes, log_offsets, result, done) => {
                self.in_flight -= 1;
                if result.is_ok() {
                    // `changes` may end with the group's own record, which has no offset change.
                    for ((tp, v), at) in changes.into_iter().zip(log_offsets) {
                        self.offsets.apply(tp, v, at);
                    }
                }
                done(result);
                self.run_pending_checkpoint(now);
            }
        }
        self.dispatch(out);
    }

    /// Handles a commit and every commit queued right behind it as one write: one batch, one
    /// append and one durability wait for all of them (a group's own group commit). Events
    /// are still handled strictly in arrival order: the first non-commit ends the run.
    fn handle_commits(&mut self, first: Event, rx: &mut mpsc::Receiver<Event>) {
        const MAX_COALESCED: usize = 512;
        let now = self.shared.clock.now();
        let mut batch = CommitBatch::default();
        self.add_commit(now, first, &mut batch);
        let mut next = None;
        while batch.requests < MAX_COALESCED {
            match rx.try_recv() {
                Ok(ev @ Event::Commit { .. }) => self.add_commit(now, ev, &mut batch),
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        self.write_commits(now, batch);
        if let Some(ev) = next {
            self.handle(ev);
        }
    }

    /// Validates one commit; a valid one joins `batch`, an invalid one is answered at once.
    fn add_commit(&mut self, now: Now, ev: Event, batch: &mut CommitBatch) {
        let Event::Commit { generation, member_id, instance, entries, reply } = ev else { return };
        batch.requests += 1;
        match self.group.validate_commit(now, generation, &member_id, instance.as_deref()) {
            Err(e) => {
                let _ = reply.send(Err(e));
            }
            Ok(()) => {
                batch.changes.extend(entries.into_iter().map(|(tp, v)| (tp, Some(v))));
                batch.replies.push(reply);
            }
        }
    }

    fn write_commits(&mut self, now: Now, batch: CommitBatch) {
        if batch.replies.is_empty() {
            return;
        }
        let replies = batch.replies;
        self.write_offsets(
            now,
            batch.changes,
            GroupWrite::Untouched,
            Box::new(move |r| {
                for reply in replies {
                    let _ = reply.send(r);
                }
            }),
        );
    }

    fn dispatch(&mut self, out: Outputs) {
        for r in out.replies {
            match r {
                Reply::Join(w, res) => {
                    if let Some(tx) = self.join_waiters.remove(&w) {
                        let _ = tx.send(res);
                    }
                }
                Reply::Sync(w, res) => {
                    if let Some(tx) = self.sync_waiters.remove(&w) {
                        let _ = tx.send(res);
                    }
                }
            }
        }
        for p in out.persist {
            self.persist(p);
        }
    }

    /// Once no write is in flight: deletion marks are no longer needed (see
    /// [`GroupOffsets::forget_deletions`]), and a checkpoint that waited runs.
    fn run_pending_checkpoint(&mut self, now: Now) {
        if self.in_flight > 0 {
            return;
        }
        self.offsets.forget_deletions();
        if let Some(reply) = self.pending_checkpoint.take() {
            self.checkpoint(now, reply);
        }
    }

    /// Writes the group's live state again (see [`Event::Checkpoint`]). Called with nothing
    /// in flight, so the offsets in memory are exactly the newest ones written.
    fn checkpoint(&mut self, now: Now, reply: oneshot::Sender<bool>) {
        if self.delete_failed {
            let _ = reply.send(false);
            return;
        }
        if self.group.state() == GroupState::Dead {
            // Deleted, and the tombstone is durable (nothing is in flight): nothing is live.
            let _ = reply.send(true);
            return;
        }
        let changes: Vec<_> = self.offsets.iter().map(|(tp, c)| (tp.clone(), Some(c.value.clone()))).collect();
        let group = match &self.last_group_record {
            None => GroupWrite::Untouched,
            Some(v) => GroupWrite::Record(v.clone()),
        };
        if changes.is_empty() && matches!(group, GroupWrite::Untouched) {
            let _ = reply.send(true);
            return;
        }
        self.write_offsets(
            now,
            changes,
            group,
            Box::new(move |r| {
                let _ = reply.send(r.is_ok());
            }),
        );
    }

    /// Writes the group record; the engine hears back through [`Event::Persisted`].
    fn persist(&mut self, p: Persist) {
        let now = self.shared.clock.now();
        let value = records::group_value(&p.record);
        let record = [(records::group_key(self.group.group_id()), Some(value.clone()))];
        match self.shared.log().and_then(|log| log.append(self.group.group_id(), &record, now.wall_ms)) {
            Ok(appended) => {
                self.last_group_record = Some(value);
                self.in_flight += 1;
                let tx = self.self_tx.clone();
                tokio::spawn(async move {
                    let result = appended.wait().await.map_err(|e| storage_error(&e));
                    let _ = tx.send(Event::Persisted(p.kind, result)).await;
                });
            }
            Err(e) => {
                let mut out = Outputs::default();
                self.group.on_persisted(now, p.kind, Err(storage_error(&e)), &mut out);
                self.dispatch(out);
            }
        }
    }

    /// Writes offset changes (and what `group` says about the group's own record) as one
    /// batch; `done` runs once they are durable and applied in memory.
    fn write_offsets(
        &mut self,
        now: Now,
        changes: Vec<(TopicPartition, Option<OffsetValue>)>,
        group: GroupWrite,
        done: Done,
    ) {
        let group_id = self.group.group_id().to_string();
        let mut batch: Vec<(Bytes, Option<Bytes>)> = changes
            .iter()
            .map(|((t, p), v)| (records::offset_key(&group_id, t, *p), v.as_ref().map(records::offset_value)))
            .collect();
        let tombstone = matches!(group, GroupWrite::Tombstone);
        match group {
            GroupWrite::Untouched => {}
            GroupWrite::Tombstone => batch.push((records::group_key(&group_id), None)),
            GroupWrite::Record(v) => batch.push((records::group_key(&group_id), Some(v))),
        }
        if batch.is_empty() {
            return done(Ok(()));
        }
        match self.shared.log().and_then(|log| log.append(&group_id, &batch, now.wall_ms)) {
            Ok(appended) => {
                if tombstone {
                    self.last_group_record = None;
                }
                self.in_flight += 1;
                let tx = self.self_tx.clone();
                tokio::spawn(async move {
                    let result = appended.wait().await.map_err(|e| storage_error(&e));
                    let _ = tx.send(Event::Durable(changes, appended.offsets, result, done)).await;
                });
            }
            Err(e) => {
                self.delete_failed |= tombstone;
                done(Err(storage_error(&e)));
            }
        }
    }

    /// Kafka's `handleDeleteOffsets`: an empty group may drop any offsets; a consumer group
    /// with members only those of topics it does not subscribe to.
    fn delete_offsets(&mut self, now: Now, tps: Vec<TopicPartition>, reply: oneshot::Sender<DeleteOffsetsResult>) {
        let subscribed = match self.group.state() {
            GroupState::Dead => {
                let _ = reply.send(Err(ResponseError::GroupIdNotFound));
                return;
            }
            GroupState::Empty => None,
            _ if self.group.protocol_type() == Some("consumer") => Some(self.group.subscribed_topics()),
            _ => {
                let _ = reply.send(Err(ResponseError::NonEmptyGroup));
                return;
            }
        };
        let mut results = Vec::with_capacity(tps.len());
        let mut changes = Vec::new();
        for tp in tps {
            // Unknown subscriptions (undecodable metadata) count as subscribed to everything.
            let in_use = subscribed.as_ref().is_some_and(|s| s.as_ref().is_none_or(|s| s.contains(&tp.0)));
            if in_use {
                results.push((tp, Err(ResponseError::GroupSubscribedToTopic)));
            } else {
                if self.offsets.get(&tp.0, tp.1).is_some() {
                    changes.push((tp.clone(), None));
                }
                results.push((tp, Ok(())));
            }
        }
        self.write_offsets(
            now,
            changes,
            GroupWrite::Untouched,
            Box::new(move |r| {
                let _ = reply.send(r.map(|()| results));
            }),
        );
    }

    /// Kafka's `handleDeletedPartitions`: a deleted topic's committed offsets go with it, so a
    /// topic created again under the same name does not inherit positions from the old one.
    fn topic_deleted(&mut self, now: Now, topic: &str, done: oneshot::Sender<()>) {
        let changes: Vec<_> =
            self.offsets.iter().filter(|(tp, _)| tp.0 == topic).map(|(tp, _)| (tp.clone(), None)).collect();
        if changes.is_empty() || self.group.state() == GroupState::Dead {
            let _ = done.send(());
            return;
        }
        tracing::info!(group = %self.group.group_id(), topic, partitions = changes.len(), "dropping committed offsets of a deleted topic");
        self.write_offsets(now, changes, GroupWrite::Untouched, Box::new(move |r| {
            if let Err(e) = r {
                tracing::warn!(error = %e, "writing the offsets of a deleted topic off failed; they stay until they expire");
            }
            let _ = done.send(());
        }));
    }

    fn expire(&mut self, now: Now, now_wall: i64) {
        if self.in_flight > 0 {
            // A commit (or group write) is appended but not yet durable: a tombstone written now
            // could land after it and delete an offset just acknowledged. Kafka likewise skips
            // partitions with pending commits; the next check catches up.
            return;
        }
        let state = self.group.state();
        let (empty_since, subscribed) = match state {
            GroupState::Dead => return,
            GroupState::Empty => (Some(self.group.state_timestamp()), None),
            _ => (None, self.group.subscribed_topics()),
        };
        let retention = self.shared.config.offsets_retention_ms();
        let expired = self.offsets.expired(now_wall, retention, empty_since, subscribed.as_ref());
        let delete_group =
            state == GroupState::Empty && expired.len() == self.offsets.len() && !self.group.has_pending_members();
        if expired.is_empty() && !delete_group {
            return;
        }
        tracing::info!(group = %self.group.group_id(), expired = expired.len(), delete_group, "expiring committed offsets");
        if delete_group && self.group.delete(now).is_err() {
            return;
        }
        let changes = expired.into_iter().map(|tp| (tp, None)).collect();
        let group = if delete_group { GroupWrite::Tombstone } else { GroupWrite::Untouched };
        self.write_offsets(
            now,
            changes,
            group,
            Box::new(|r| {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "writing expired offsets failed; will retry at the next check");
                }
            }),
        );
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
