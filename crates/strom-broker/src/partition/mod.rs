//! The partition layer, between the request handlers and the log (Kafka's `ReplicaManager`
//! -> `Partition` -> `UnifiedLog`; Redpanda's `cluster::partition` -> `storage::log`).
//!
//! A [`Partition`] owns one partition's log together with its leadership: this broker's
//! role, the leader epoch, the replica set and ISR ([`Leadership`]), and the leader-epoch
//! cache ([`LeaderEpochCache`]). Handlers find partitions through [`ReplicaManager`] and ask
//! them to append, to read, or for offsets; the partition decides whether the request's
//! epoch and this broker's role allow it and answers `NOT_LEADER_OR_FOLLOWER`,
//! `FENCED_LEADER_EPOCH` or `UNKNOWN_LEADER_EPOCH` itself, so no handler checks leadership or
//! epochs on its own. The decisions are pure functions in [`leadership`] and [`epochs`].
//!
//! Replication lives here too. A leader of a replicated partition tracks its followers
//! ([`Followers`]): each follower's fetch offset is its durable end, the high watermark is
//! the lowest durable end over the ISR (so `acks=all` means "fsynced on every in-sync
//! replica"), and the ISR shrinks and grows by Kafka's rules through the metadata store
//! ([`IsrChange`]). A follower appends its leader's batches unchanged and truncates where its
//! log diverged, both recorded in the leader-epoch checkpoint.
//!
//! On a single node every partition is led by this broker at the epoch its metadata records,
//! and the high watermark follows the log's own durable end.

pub mod epochs;
pub mod followers;
pub mod leadership;
mod manager;

use crate::ingest::IngestPolicy;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use strom_log::{AppendInfo, BatchHeader, PartitionLog};
use strom_meta::{IsrChange, PartitionMeta};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use epochs::LeaderEpochCache;
pub use followers::Followers;
pub use leadership::{Leadership, NO_EPOCH, Refusal};
pub use manager::ReplicaManager;

/// The leader-epoch checkpoint's file name in a partition's directory (as Kafka's).
pub const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

use crate::error::log_error_code;

/// Why a partition refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// The epoch or role check failed (see [`Refusal`]).
    #[error("{topic}-{partition}: {refusal}")]
    Refused {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
        /// What the check said.
        refusal: Refusal,
    },
    /// An `acks=all` produce while the ISR is smaller than `min.insync.replicas`.
    #[error("{topic}-{partition}: {isr} in-sync replicas, min.insync.replicas is {min}")]
    NotEnoughReplicas {
        /// Topic.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The ISR's size.
        isr: usize,
        /// The topic's `min.insync.replicas`.
        min: i32,
    },
    /// The log failed the operation.
    #[error(transparent)]
    Log(#[from] strom_log::Error),
}

impl PartitionError {
    /// The Kafka error code for this error.
    pub fn code(&self) -> i16 {
        match self {
            PartitionError::Refused { refusal, .. } => refusal_code(refusal),
            PartitionError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas.code(),
            PartitionError::Log(e) => log_error_code(e),
        }
    }
}

/// The Kafka error code of a refusal.
pub fn refusal_code(r: &Refusal) -> i16 {
    match r {
        Refusal::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch.code(),
        Refusal::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch.code(),
        Refusal::NotLeader { .. } => ResponseError::NotLeaderOrFollower.code(),
    }
}

/// What the partition's lock guards: small. Held for writing only to change leadership,
/// the epoch cache or follower progress (no I/O); held for reading across an append's
/// write, so that a leader change cannot slip between stamping a batch's epoch and writing it.
#[derive(Debug)]
struct State {
    leadership: Leadership,
    epochs: LeaderEpochCache,
    followers: Followers,
    /// An ISR change this leader proposed is in flight: propose no other until it is applied
    /// (a new partition epoch arrives) or fails.
    isr_change_pending: bool,
    /// The replicas a running reassignment adds (their catch-up is throttled).
    adding: Vec<i32>,
}

/// What a leader answers a follower's fetch with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaFetch {
    /// The follower's log is a prefix of the leader's: read from its fetch offset.
    Read,
    /// The follower's log diverges from the leader's (KIP-320): it must truncate to
    /// `end_offset` (or to where its own `epoch` ends, if lower) and fetch again.
    Diverging {
        /// The largest epoch the leader has at or below the follower's last fetched one.
        epoch: i32,
        /// Where that epoch ends on the leader.
        end_offset: i64,
    },
}

/// One partition of a topic on this broker: its log and its leadership.
#[derive(Debug)]
pub struct Partition {
    log: PartitionLog,
    state: RwLock<State>,
    /// `min.insync.replicas` of the topic.
    min_insync: AtomicI32,
    /// What the produce path does to the topic's batches (timestamps, recompression).
    ingest: std::sync::RwLock<IngestPolicy>,
    /// The leader epoch, published so that produce waiters learn of a leader change.
    epoch_tx: watch::Sender<i32>,
    /// Serialises writes of the epoch checkpoint file (never held with `state`).
    checkpoint_lock: Mutex<()>,
    /// Whether the task that raises the high watermark as the leader's own log becomes
    /// durable is running (started the first time the partition is replicated).
    hw_task: AtomicBool,
    /// Ends this partition's background task when the partition is dropped.
    cancel: CancellationToken,
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Partition {
    /// A partition over `log` with the leadership `meta` describes, as seen by broker `me`,
    /// needing `min_insync` in-sync replicas for `acks=all`.
    ///
    /// The epoch cache is the partition's checkpoint file where there is one (entries past
    /// the log end are dropped: they began after what a crash kept). Without one (a data
    /// directory from before replication, or a follower whose epochs never changed) it is
    /// rebuilt from the leader epochs the log's batches carry, and written. A replicated
    /// partition's high watermark starts at the log start: only the in-sync replicas'
    /// reports may raise it (after a restart the log end may hold records no other replica
    /// has, which consumers must not see yet).
    pub fn open(me: i32, log: PartitionLog, meta: &PartitionMeta, min_insync: i32) -> Arc<Partition> {
        let leadership = Leadership::from_meta(me, meta);
        let (epochs, scanned) = match read_checkpoint(&checkpoint_path(&log)) {
            Some(mut c) => {
                c.truncate_from(log.log_end_offset() + 1);
                (c, false)
            }
            None => (scan_epochs(&log, leadership.leader_epoch), true),
        };
        if meta.replicas.len() > 1 && !log.is_replicated() {
            log.set_replicated(true);
            log.reset_high_watermark(log.log_start_offset());
        }
        let mut followers = Followers::default();
        followers.reset(&leadership.replicas, me, Instant::now());
        let epoch = leadership.leader_epoch;
        let p = Arc::new(Partition {
            log,
            state: RwLock::new(State {
                leadership,
                epochs,
                followers,
                isr_change_pending: false,
                adding: meta.adding.clone(),
            }),
            min_insync: AtomicI32::new(min_insync.max(1)),
            ingest: std::sync::RwLock::new(IngestPolicy::default()),
            epoch_tx: watch::Sender::new(epoch),
            checkpoint_lock: Mutex::new(()),
            hw_task: AtomicBool::new(false),
            cancel: CancellationToken::new(),
        });
        let became_leader_now = {
            let mut st = p.state_mut();
            st.leadership.is_leader() && st.epochs.latest_epoch().is_none_or(|l| epoch > l) && {
                st.epochs.assign(epoch, p.log.log_end_offset());
                true
            }
        };
        if became_leader_now || scanned {
            p.persist_epochs();
        }
        p.start_hw_task_if_replicated();
        p
    }

    fn state(&self) -> RwLockReadGuard<'_, State> {
        // Every critical section only reads or assigns plain values: a panic cannot leave
        // the state half-changed.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn state_mut(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Topic name.
    pub fn topic(&self) -> &str {
        self.log.topic()
    }

    /// Partition index.
    pub fn index(&self) -> i32 {
        self.log.partition()
    }

    /// The partition's log, for what bypasses leadership by design (metrics, the broker's
    /// own bookkeeping); request handlers use [`Partition::leader_log`].
    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    /// The leadership as this broker knows it now.
    pub fn leadership(&self) -> Leadership {
        self.state().leadership.clone()
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.state().leadership.leader_epoch
    }

    /// Whether this partition has more than one replica.
    pub fn is_replicated(&self) -> bool {
        self.state().leadership.replicas.len() > 1
    }

    /// Sets the topic's `min.insync.replicas`.
    pub fn set_min_insync(&self, min_insync: i32) {
        self.min_insync.store(min_insync.max(1), Ordering::Release);
        self.recompute_high_watermark();
    }

    /// Sets the topic's produce-time rules (from its configs).
    pub fn set_ingest_policy(&self, policy: IngestPolicy) {
        *self.ingest.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// The topic's produce-time rules, applied by the produce handler before
    /// [`Partition::append_as_leader`].
    pub fn ingest_policy(&self) -> IngestPolicy {
        *self.ingest.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes new leadership from the metadata store. An older epoch than the current one is
    /// ignored: epochs never go back. When this broker becomes leader in a new epoch, the
    /// epoch begins at its log end (as in Kafka) and is checkpointed before any batch is
    /// written in it; every follower's progress starts unknown.
    pub fn update(self: &Arc<Self>, meta: &PartitionMeta) {
        let (persist, epoch) = {
            let mut st = self.state_mut();
            if meta.leader_epoch < st.leadership.leader_epoch {
                return;
            }
            let new_epoch = meta.leader_epoch > st.leadership.leader_epoch;
            let was_leader = st.leadership.is_leader();
            if meta.partition_epoch != st.leadership.partition_epoch || new_epoch {
                st.isr_change_pending = false;
            }
            st.leadership = Leadership::from_meta(st.leadership.me, meta);
            st.adding = meta.adding.clone();
            let mut persist = false;
            if st.leadership.is_leader() && st.epochs.latest_epoch().is_none_or(|l| meta.leader_epoch > l) {
                st.epochs.assign(meta.leader_epoch, self.log.log_end_offset());
                persist = true;
            }
            let (replicas, me) = (st.leadership.replicas.clone(), st.leadership.me);
            if new_epoch || (st.leadership.is_leader() && !was_leader) {
                st.followers.reset(&replicas, me, Instant::now());
            } else {
                st.followers.set_replicas(&replicas, me, Instant::now());
            }
            (persist, meta.leader_epoch)
        };
        if meta.replicas.len() > 1 {
            self.log.set_replicated(true);
            self.start_hw_task_if_replicated();
        } else {
            self.log.set_replicated(false);
        }
        if persist {
            self.persist_epochs();
        }
        self.epoch_tx.send_if_modified(|e| {
            let changed = *e != epoch;
            *e = epoch;
            changed
        });
        self.recompute_high_watermark();
    }

    fn refused(&self, refusal: Refusal) -> PartitionError {
        PartitionError::Refused { topic: self.topic().to_string(), partition: self.index(), refusal }
    }

    /// The log, for a request that sent `current_leader_epoch` (or [`NO_EPOCH`]) and needs
    /// this broker to lead: consumer fetches, ListOffsets, OffsetForLeaderEpoch.
    pub fn leader_log(&self, current_leader_epoch: i32) -> Result<&PartitionLog, PartitionError> {
        self.state().leadership.check_leader(current_leader_epoch).map_err(|r| self.refused(r))?;
        Ok(&self.log)
    }

    /// `NOT_ENOUGH_REPLICAS` for an `acks=all` produce while the ISR is smaller than
    /// `min.insync.replicas` (checked before appending, as Kafka does).
    pub fn check_min_insync(&self) -> Result<(), PartitionError> {
        let isr = self.state().leadership.isr.len();
        let min = self.min_insync.load(Ordering::Acquire);
        if (isr as i64) < i64::from(min) {
            return Err(PartitionError::NotEnoughReplicas {
                topic: self.topic().to_string(),
                partition: self.index(),
                isr,
                min,
            });
        }
        Ok(())
    }

    /// Appends a producer's batch as leader, stamping it with the current leader epoch (the
    /// handler never chooses the epoch), which it returns with what the log did. The state
    /// is held for reading across the log's write (a page-cache write; the fsync comes later,
    /// outside), so a leader change waits for it rather than coming between the check and
    /// the write. The epoch cache learns a new epoch's first offset from the first batch
    /// written in it where no leader change recorded it.
    pub fn append_as_leader(&self, records: Bytes) -> Result<(AppendInfo, i32), PartitionError> {
        let (info, epoch, new_epoch) = {
            let st = self.state();
            st.leadership.check_leader(NO_EPOCH).map_err(|r| self.refused(r))?;
            let epoch = st.leadership.leader_epoch;
            let info = self.log.append(records, epoch)?;
            (info, epoch, st.epochs.latest_epoch().is_none_or(|latest| epoch > latest))
        };
        if new_epoch && !info.duplicate {
            self.state_mut().epochs.assign(epoch, info.base_offset);
            self.persist_epochs();
        }
        Ok((info, epoch))
    }

    /// Resolves once `last_offset`, appended as leader in `epoch`, is below the high
    /// watermark: durable on every in-sync replica (`acks=all`). Fails if this broker stops
    /// leading or the epoch moves on first (the producer retries at the new leader, where an
    /// idempotent retry is recognised as a duplicate), or if the log fails or closes.
    pub async fn wait_committed(&self, last_offset: i64, epoch: i32) -> Result<(), PartitionError> {
        let mut hw = self.log.watch_high_watermark();
        let mut epochs = self.epoch_tx.subscribe();
        let mut durable = self.log.watch_durable();
        loop {
            hw.borrow_and_update();
            epochs.borrow_and_update();
            if durable.borrow_and_update().failed {
                return Err(strom_log::Error::StorageFailed { path: self.log.dir().to_path_buf() }.into());
            }
            if self.log.high_watermark() > last_offset {
                return Ok(());
            }
            {
                let st = self.state();
                if !st.leadership.is_leader() || st.leadership.leader_epoch != epoch {
                    return Err(self.refused(Refusal::NotLeader { leader: st.leadership.leader }));
                }
            }
            if self.log.is_closed() {
                return Err(strom_log::Error::Closed(format!("{}-{}", self.topic(), self.index())).into());
            }
            tokio::select! {
                r = hw.changed() => if r.is_err() { return Err(strom_log::Error::Closed(self.topic().to_string()).into()) },
                _ = epochs.changed() => {}
                _ = durable.changed() => {}
            }
        }
    }

    /// The high watermark: what consumers may read.
    pub fn high_watermark(&self) -> i64 {
        self.log.high_watermark()
    }

    /// Raises a replicated partition's high watermark, as its leader, to the lowest durable
    /// end over the ISR (its own included), provided the ISR has at least
    /// `min.insync.replicas` members; unreplicated logs move it themselves.
    pub fn recompute_high_watermark(&self) {
        if !self.log.is_replicated() {
            return;
        }
        let hw = {
            let st = self.state();
            if !st.leadership.is_leader() {
                return;
            }
            if (st.leadership.isr.len() as i64) < i64::from(self.min_insync.load(Ordering::Acquire)) {
                return;
            }
            let (me, own) = (st.leadership.me, self.log.durable_end());
            st.leadership.high_watermark(|id| if id == me { Some(own) } else { st.followers.end_of(id) })
        };
        if let Some(hw) = hw {
            self.log.set_high_watermark(hw);
        }
    }

    /// A follower's fetch, as leader: the epoch and leadership checks, then KIP-320's
    /// divergence check (does the follower's last fetched epoch end, here, at or after its
    /// fetch offset?). A follower whose log is a prefix of ours has its fetch offset recorded
    /// as its durable end, which may raise the high watermark; if that brings it back in
    /// sync, the ISR change to propose is returned with the answer.
    pub fn replica_fetch(
        &self,
        follower: i32,
        current_leader_epoch: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
    ) -> Result<(ReplicaFetch, Option<IsrChange>), PartitionError> {
        let now = Instant::now();
        let change = {
            let mut st = self.state_mut();
            st.leadership.check_leader(current_leader_epoch).map_err(|r| self.refused(r))?;
            if !st.leadership.replicas.contains(&follower) {
                return Err(self.refused(Refusal::NotLeader { leader: st.leadership.leader }));
            }
            let leo = self.log.log_end_offset();
            if last_fetched_epoch >= 0 {
                let (epoch, end_offset) = st.epochs.end_offset_for(last_fetched_epoch, leo);
                if epoch != last_fetched_epoch || end_offset < fetch_offset {
                    return Ok((ReplicaFetch::Diverging { epoch, end_offset }, None));
                }
            }
            // An in-sync follower's durable end never falls below the high watermark (what it
            // reported was fsynced; only an uncommitted tail is ever truncated). One that asks
            // from below it lost committed records (a replaced disk): out of the ISR at once,
            // before anything could elect it.
            let hw = self.log.high_watermark();
            if st.leadership.isr.contains(&follower) && fetch_offset < hw && follower != st.leadership.me {
                let shrunk: Vec<i32> = st.leadership.isr.iter().copied().filter(|r| *r != follower).collect();
                tracing::warn!(
                    topic = self.topic(),
                    partition = self.index(),
                    follower,
                    fetch_offset,
                    high_watermark = hw,
                    "an in-sync follower fetches from below the high watermark (it lost records); removing it from the ISR"
                );
                let change = (!st.isr_change_pending && !shrunk.is_empty()).then(|| {
                    st.isr_change_pending = true;
                    self.isr_change(&st.leadership, shrunk)
                });
                return Ok((ReplicaFetch::Read, change));
            }
            st.followers.record_fetch(follower, fetch_offset, leo, now);
            if st.isr_change_pending {
                None
            } else {
                let epoch_start = st.epochs.latest_start().unwrap_or(0);
                let grown =
                    st.followers.grown_isr(&st.leadership.isr, follower, self.log.high_watermark(), epoch_start);
                grown.map(|isr| {
                    st.isr_change_pending = true;
                    self.isr_change(&st.leadership, isr)
                })
            }
        };
        self.recompute_high_watermark();
        Ok((ReplicaFetch::Read, change))
    }

    fn isr_change(&self, l: &Leadership, isr: Vec<i32>) -> IsrChange {
        IsrChange {
            topic: self.topic().to_string(),
            partition: self.index(),
            leader: l.me,
            leader_epoch: l.leader_epoch,
            partition_epoch: l.partition_epoch,
            isr,
        }
    }

    /// As leader: the ISR change that drops the followers not caught up within `max_lag`
    /// (Kafka's `replica.lag.time.max.ms`), if any and none is in flight.
    pub fn lagging_isr_change(&self, now: Instant, max_lag: Duration) -> Option<IsrChange> {
        let mut st = self.state_mut();
        if !st.leadership.is_leader() || st.isr_change_pending {
            return None;
        }
        let isr = st.followers.shrunk_isr(&st.leadership.isr, st.leadership.me, now, max_lag)?;
        st.isr_change_pending = true;
        Some(self.isr_change(&st.leadership, isr))
    }

    /// An ISR change this partition proposed failed: it may propose again.
    pub fn isr_change_failed(&self) {
        self.state_mut().isr_change_pending = false;
    }

    /// Replication lag of each follower as leader: `(follower, offsets behind the log end,
    /// time since it was last caught up)`; `None` for the offsets of one not heard from.
    pub fn follower_lag(&self, now: Instant) -> Vec<(i32, Option<i64>, Duration)> {
        let st = self.state();
        if !st.leadership.is_leader() {
            return Vec::new();
        }
        let leo = self.log.log_end_offset();
        st.leadership
            .replicas
            .iter()
            .filter(|r| **r != st.leadership.me)
            .filter_map(|r| {
                st.followers
                    .get(*r)
                    .map(|f| (*r, f.end.map(|e| leo - e), now.saturating_duration_since(f.last_caught_up)))
            })
            .collect()
    }

    /// Whether this broker is a replica being added by a running reassignment: its catch-up
    /// fetches are throttled.
    pub fn is_being_added(&self) -> bool {
        let st = self.state();
        st.adding.contains(&st.leadership.me)
    }

    /// Where a follower fetches from: `(fetch_offset, last_fetched_epoch, current_leader_epoch,
    /// leader)`. The fetch offset is the log end — which is durable, because a follower only
    /// fetches again once its appends are (see the replica fetcher) — and the last fetched
    /// epoch that of its newest batch (-1 for an empty log).
    pub fn follower_position(&self) -> (i64, i32, i32, Option<i32>) {
        let st = self.state();
        let leo = self.log.log_end_offset();
        let last = if leo > self.log.log_start_offset() { st.epochs.latest_epoch().unwrap_or(-1) } else { -1 };
        (leo, last, st.leadership.leader_epoch, st.leadership.leader)
    }

    /// Whether this broker follows `leader` at `epoch` now (a fetch's answer is used only if
    /// it still does).
    pub fn follows(&self, leader: i32, epoch: i32) -> bool {
        let st = self.state();
        st.leadership.leader == Some(leader) && !st.leadership.is_leader() && st.leadership.leader_epoch == epoch
    }

    /// As a follower: appends the leader's batches as they are, learning their epochs. Returns
    /// the new log end.
    pub fn append_as_follower(&self, records: &Bytes) -> Result<i64, PartitionError> {
        let before = self.log.log_end_offset();
        let end = self.log.append_replicated(records)?;
        let mut new_epochs = Vec::new();
        let mut at = 0;
        while let Some(h) = BatchHeader::parse(&records[at..]) {
            if at + h.total_len() > records.len() || h.base_offset >= end {
                break;
            }
            if h.base_offset >= before {
                new_epochs.push((h.partition_leader_epoch, h.base_offset));
            }
            at += h.total_len();
        }
        let changed = {
            let mut st = self.state_mut();
            let mut changed = false;
            for (epoch, start) in new_epochs {
                if st.epochs.latest_epoch().is_none_or(|l| epoch > l) {
                    st.epochs.assign(epoch, start);
                    changed = true;
                }
            }
            changed
        };
        if changed {
            self.persist_epochs();
        }
        Ok(end)
    }

    /// As a follower told its log diverged at (`epoch`, `end_offset`): truncates to
    /// `end_offset`, or to where `epoch` ends in this log if that is lower (Kafka's
    /// `truncateOnFetchResponse`), and forgets the epochs begun past the cut. Blocking (the
    /// cut is fsynced): run it off the async workers.
    pub fn truncate_diverged(&self, epoch: i32, end_offset: i64) -> Result<i64, PartitionError> {
        let leo = self.log.log_end_offset();
        let (own_epoch, own_end) = self.state().epochs.end_offset_for(epoch, leo);
        let target = if own_epoch == epoch && own_end >= 0 { end_offset.min(own_end) } else { end_offset };
        let target = target.clamp(self.log.log_start_offset(), leo);
        self.log.truncate_to(target)?;
        let end = self.log.log_end_offset();
        self.state_mut().epochs.truncate_from(end);
        self.persist_epochs();
        tracing::warn!(
            topic = self.topic(),
            partition = self.index(),
            from = leo,
            to = end,
            epoch,
            "truncated a diverged follower log"
        );
        Ok(end)
    }

    /// As a follower whose leader's log now starts past this log's end (its retention ran
    /// while this replica was behind, or this replica is new to an old partition): empties
    /// the log to restart at `leader_log_start` (Kafka's `truncateFullyAndStartAt`) and
    /// forgets every leader epoch, which the leader's batches then bring back.
    pub fn restart_at(&self, leader_log_start: i64) -> Result<(), PartitionError> {
        let from = self.log.log_end_offset();
        self.log.restart_at(leader_log_start)?;
        self.state_mut().epochs = LeaderEpochCache::default();
        self.persist_epochs();
        tracing::warn!(
            topic = self.topic(),
            partition = self.index(),
            from,
            to = leader_log_start,
            "the leader no longer holds this replica's next offset: restarted the log at the leader's log start"
        );
        Ok(())
    }

    /// As a follower: takes the leader's high watermark (never beyond this log's end).
    pub fn set_follower_high_watermark(&self, leader_hw: i64) {
        self.log.set_high_watermark(leader_hw);
    }

    /// OffsetForLeaderEpoch for `requested_epoch`: `(epoch, end_offset)` as
    /// [`LeaderEpochCache::end_offset_for`], after the leader and epoch checks.
    pub fn end_offset_for_epoch(
        &self,
        current_leader_epoch: i32,
        requested_epoch: i32,
    ) -> Result<(i32, i64), PartitionError> {
        let st = self.state();
        st.leadership.check_leader(current_leader_epoch).map_err(|r| self.refused(r))?;
        Ok(st.epochs.end_offset_for(requested_epoch, self.log.log_end_offset()))
    }

    /// Writes the epoch cache to the checkpoint file (atomically: a temporary file, fsynced,
    /// renamed, then the directory fsynced). A failure is logged: the previous checkpoint
    /// stays, and the next change writes it again.
    fn persist_epochs(&self) {
        let _file = self.checkpoint_lock.lock().unwrap_or_else(|p| p.into_inner());
        let text = self.state().epochs.encode();
        let path = checkpoint_path(&self.log);
        if let Err(e) = write_checkpoint(&path, text.as_bytes()) {
            tracing::error!(path = %path.display(), error = %e, "could not write the leader-epoch checkpoint");
        }
    }

    /// Starts the task that raises the high watermark each time this node's own log becomes
    /// durable further (a leader's share of `acks=all`), once the partition is replicated.
    fn start_hw_task_if_replicated(self: &Arc<Self>) {
        if !self.log.is_replicated() || self.hw_task.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.hw_task.store(false, Ordering::Release);
            return;
        };
        let weak = Arc::downgrade(self);
        let mut durable = self.log.watch_durable();
        let cancel = self.cancel.clone();
        runtime.spawn(async move {
            loop {
                tokio::select! {
                    r = durable.changed() => if r.is_err() { return },
                    _ = cancel.cancelled() => return,
                }
                match weak.upgrade() {
                    Some(p) => p.recompute_high_watermark(),
                    None => return,
                }
            }
        });
    }
}

/// The epoch cache rebuilt from the log itself: each epoch at the first batch that carries it
/// (one pass over the batches; only when no checkpoint exists). An empty log gets
/// `current_epoch` at its start.
fn scan_epochs(log: &PartitionLog, current_epoch: i32) -> LeaderEpochCache {
    let mut cache: Option<LeaderEpochCache> = None;
    let mut next = log.log_start_offset();
    let end = log.log_end_offset();
    while next < end {
        let Ok(read) = log.read(next, 1 << 20, strom_log::ReadBound::LogEnd) else { break };
        if read.records.is_empty() {
            break;
        }
        let mut at = 0;
        let mut last = next;
        while let Some(h) = BatchHeader::parse(&read.records[at..]) {
            if at + h.total_len() > read.records.len() {
                break;
            }
            match cache.as_mut() {
                Some(c) => c.assign(h.partition_leader_epoch, h.base_offset),
                None => cache = Some(LeaderEpochCache::starting(h.partition_leader_epoch, log.log_start_offset())),
            }
            last = h.last_offset() + 1;
            at += h.total_len();
        }
        if last <= next {
            break;
        }
        next = last;
    }
    cache.unwrap_or_else(|| LeaderEpochCache::starting(current_epoch, log.log_start_offset()))
}

fn checkpoint_path(log: &PartitionLog) -> PathBuf {
    log.dir().join(EPOCH_CHECKPOINT_FILE)
}

fn read_checkpoint(path: &std::path::Path) -> Option<LeaderEpochCache> {
    let text = std::fs::read_to_string(path).ok()?;
    let cache = LeaderEpochCache::decode(&text);
    if cache.is_none() {
        tracing::warn!(path = %path.display(), "ignoring a damaged leader-epoch checkpoint");
    }
    cache
}

fn write_checkpoint(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
