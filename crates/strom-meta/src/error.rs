//! [`MetaError`]: why a metadata operation failed.

use std::path::PathBuf;

/// Every failure a [`crate::MetadataStore`] reports. The broker maps each to its Kafka error
/// code.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The topic already exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// The topic does not exist.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// A topic name is not a legal Kafka topic name.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic {
        /// The name as sent.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A partition count is invalid (not above the current count).
    #[error("invalid partition count for topic {topic:?}: {reason}")]
    InvalidPartitions {
        /// The topic.
        topic: String,
        /// Why the count is rejected.
        reason: String,
    },
    /// The replication factor cannot be met (too few brokers, or more than one replica
    /// where partition data is not replicated).
    #[error("invalid replication factor {requested}: {reason}")]
    InvalidReplicationFactor {
        /// What was asked.
        requested: i16,
        /// Why it cannot be.
        reason: String,
    },
    /// A persisted metadata file is unreadable.
    #[error("metadata file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What did not parse.
        reason: String,
    },
    /// Reading or writing the store's files failed; the change was not made.
    #[error("{context}")]
    Io {
        /// What the store was doing, with the path involved.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A partition change made from a view that is no longer current (another leader epoch
    /// or partition epoch): the asker refreshes and decides again.
    #[error("stale partition change: {0}")]
    StaleChange(String),
    /// A reassignment or leader election the cluster refused, and why.
    #[error("{reason}")]
    PartitionRefused {
        /// What kind of refusal (each has its Kafka error code).
        kind: PartitionRefusal,
        /// The controller's explanation.
        reason: String,
    },
    /// The store could not finish the operation (a worker thread panicked, or the store is
    /// shutting down); the change was not made.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
}

/// Why a partition reassignment or leader election was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionRefusal {
    /// The topic or partition does not exist.
    UnknownPartition,
    /// The target replicas are empty, repeat, or name unknown brokers.
    InvalidReplicaAssignment,
    /// A cancel where no reassignment runs.
    NoReassignmentInProgress,
    /// The partition already has the leader the election would give it.
    ElectionNotNeeded,
    /// The preferred replica is fenced or out of sync.
    PreferredLeaderNotAvailable,
    /// No replica is able to lead.
    EligibleLeadersNotAvailable,
}

impl MetaError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> MetaError {
        MetaError::Io { context: context.into(), source }
    }
}

/// `Result` with [`MetaError`].
pub type Result<T, E = MetaError> = std::result::Result<T, E>;
