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
//! On a single node every partition is led by this broker at the epoch its metadata records
//! (0 until a cluster changes leaders); replication will add follower state here.

pub mod epochs;
pub mod leadership;
mod manager;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use strom_log::{AppendInfo, PartitionLog};
use strom_meta::PartitionMeta;

pub use epochs::LeaderEpochCache;
pub use leadership::{Leadership, NO_EPOCH, Refusal};
pub use manager::ReplicaManager;

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
    /// The log failed the operation.
    #[error(transparent)]
    Log(#[from] strom_log::Error),
}

impl PartitionError {
    /// The Kafka error code for this error.
    pub fn code(&self) -> i16 {
        match self {
            PartitionError::Refused { refusal, .. } => refusal_code(refusal),
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

/// What the partition's lock guards: small. Held for writing only to change leadership or
/// the epoch cache (no I/O); held for reading across an append's write, so that a leader
/// change cannot slip between stamping a batch's epoch and writing it.
#[derive(Debug)]
struct State {
    leadership: Leadership,
    epochs: LeaderEpochCache,
}

/// One partition of a topic on this broker: its log and its leadership.
#[derive(Debug)]
pub struct Partition {
    log: PartitionLog,
    state: RwLock<State>,
}

impl Partition {
    /// A partition over `log` with the leadership `meta` describes, as seen by broker `me`.
    ///
    /// The epoch cache starts with the current epoch at the log's start: on a single node
    /// every batch was written at that epoch. (A cluster whose leaders change must persist
    /// the cache, as Kafka's `leader-epoch-checkpoint`; that is the replication work.)
    pub fn new(me: i32, log: PartitionLog, meta: &PartitionMeta) -> Partition {
        let leadership = Leadership::from_meta(me, meta);
        let epochs = LeaderEpochCache::starting(leadership.leader_epoch, log.log_start_offset());
        Partition { log, state: RwLock::new(State { leadership, epochs }) }
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

    /// Takes new leadership from the metadata store (a leader change bumps the epoch). An
    /// older epoch than the current one is ignored: epochs never go back. A new epoch begins
    /// at the log end, as in Kafka when a replica becomes leader.
    pub fn update(&self, meta: &PartitionMeta) {
        let mut st = self.state_mut();
        if meta.leader_epoch < st.leadership.leader_epoch {
            return;
        }
        if meta.leader_epoch > st.leadership.leader_epoch {
            st.epochs.assign(meta.leader_epoch, self.log.log_end_offset());
        }
        st.leadership = Leadership::from_meta(st.leadership.me, meta);
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

    /// Appends a producer's batch as leader, stamping it with the current leader epoch (the
    /// handler never chooses the epoch). The state is held for reading across the log's
    /// write (a page-cache write; the fsync comes later, outside), so a leader change waits
    /// for it rather than coming between the check and the write. The epoch cache learns a
    /// new epoch's first offset from the first batch written in it.
    pub fn append_as_leader(&self, records: Bytes) -> Result<(AppendInfo, &PartitionLog), PartitionError> {
        let (info, epoch, new_epoch) = {
            let st = self.state();
            st.leadership.check_leader(NO_EPOCH).map_err(|r| self.refused(r))?;
            let epoch = st.leadership.leader_epoch;
            let info = self.log.append(records, epoch)?;
            (info, epoch, st.epochs.latest_epoch().is_none_or(|latest| epoch > latest))
        };
        if new_epoch && !info.duplicate {
            self.state_mut().epochs.assign(epoch, info.base_offset);
        }
        Ok((info, &self.log))
    }

    /// The high watermark: the lowest durable end over the in-sync replicas. On a single
    /// node the only one is this broker, whose durable end the log publishes; until
    /// followers report theirs, an ISR with other members holds it at the log's value.
    pub fn high_watermark(&self) -> i64 {
        let own = self.log.high_watermark();
        let st = self.state();
        let me = st.leadership.me;
        st.leadership.high_watermark(|id| (id == me).then_some(own)).unwrap_or(own)
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
}
