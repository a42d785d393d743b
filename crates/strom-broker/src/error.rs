//! The one error type of `strom-broker`, and the one place where errors (the broker's own and
//! [`strom_log::Error`]) become Kafka error codes: [`Error::code`] and [`log_error_code`].

use std::io;
use std::path::PathBuf;

use kafka_protocol::ResponseError;

/// Every failure `strom-broker` reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is invalid or values do not work together.
    #[error("invalid config: {field}: {reason}")]
    Config {
        /// The offending field (`listen`, `num_partitions`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The TOML configuration file could not be parsed.
    #[error("config file {path}")]
    ConfigFile {
        /// The file given with `--config`.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: toml::de::Error,
    },
    /// An I/O operation of the broker itself (listener, metadata files) failed.
    #[error("{context}")]
    Io {
        /// What the broker was doing, with the path or address involved.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The storage engine failed.
    #[error(transparent)]
    Log(#[from] strom_log::Error),
    /// A persisted metadata file is unreadable.
    #[error("metadata file {path} is corrupt: {reason}")]
    CorruptMetadata {
        /// The file.
        path: PathBuf,
        /// What did not parse.
        reason: String,
    },
    /// A topic name is not a legal Kafka topic name.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic {
        /// The name as sent.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The topic already exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// The topic does not exist.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// A partition count is invalid (below 1, or not above the current count).
    #[error("invalid partition count for topic {topic:?}: {reason}")]
    InvalidPartitions {
        /// The topic.
        topic: String,
        /// Why the count is rejected.
        reason: String,
    },
    /// A replication factor other than 1 (or -1, the default) on this single-node broker.
    #[error("replication factor {0} is not possible: this cluster has one broker")]
    InvalidReplicationFactor(i16),
    /// A topic config name or value is not accepted.
    #[error("invalid topic config {name}{}: {reason}", value.as_deref().map_or_else(|| " (null)".to_string(), |v| format!("={v}")))]
    InvalidTopicConfig {
        /// Config name (`retention.ms`, ...).
        name: String,
        /// Value as sent (`None` for a null value).
        value: Option<String>,
        /// Why it is rejected.
        reason: String,
    },
    /// A well-formed request asks for something this broker does not do.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The metadata store could not finish an operation; nothing was changed (retriable).
    #[error("{0}")]
    MetadataUnavailable(String),
    /// The cluster refused a partition reassignment or leader election.
    #[error("{reason}")]
    PartitionRefused {
        /// What kind of refusal.
        kind: strom_meta::PartitionRefusal,
        /// Why.
        reason: String,
    },
}

impl From<strom_meta::MetaError> for Error {
    fn from(e: strom_meta::MetaError) -> Self {
        use strom_meta::MetaError as M;
        match e {
            M::TopicExists(t) => Error::TopicExists(t),
            M::UnknownTopic(t) => Error::UnknownTopic(t),
            M::InvalidTopic { name, reason } => Error::InvalidTopic { name, reason },
            M::InvalidPartitions { topic, reason } => Error::InvalidPartitions { topic, reason },
            M::Corrupt { path, reason } => Error::CorruptMetadata { path, reason },
            M::Io { context, source } => Error::Io { context, source },
            M::Unavailable(reason) | M::StaleChange(reason) => Error::MetadataUnavailable(reason),
            M::InvalidReplicationFactor { requested, .. } => Error::InvalidReplicationFactor(requested),
            M::PartitionRefused { kind, reason } => Error::PartitionRefused { kind, reason },
        }
    }
}

/// Result alias for `strom-broker`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an [`Error::Io`] with a description of what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// The Kafka error code a client gets for this error.
    pub fn code(&self) -> i16 {
        let e = match self {
            Error::Log(e) => return log_error_code(e),
            Error::InvalidTopic { .. } => ResponseError::InvalidTopicException,
            Error::TopicExists(_) => ResponseError::TopicAlreadyExists,
            Error::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
            Error::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
            Error::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            Error::InvalidTopicConfig { .. } => ResponseError::InvalidConfig,
            Error::InvalidRequest(_) => ResponseError::InvalidRequest,
            Error::MetadataUnavailable(_) => ResponseError::RequestTimedOut,
            Error::Config { .. } => ResponseError::InvalidConfig,
            Error::PartitionRefused { kind, .. } => {
                use strom_meta::PartitionRefusal as K;
                match kind {
                    K::UnknownPartition => ResponseError::UnknownTopicOrPartition,
                    K::InvalidReplicaAssignment => ResponseError::InvalidReplicaAssignment,
                    K::NoReassignmentInProgress => ResponseError::NoReassignmentInProgress,
                    K::ElectionNotNeeded => ResponseError::ElectionNotNeeded,
                    K::PreferredLeaderNotAvailable => ResponseError::PreferredLeaderNotAvailable,
                    K::EligibleLeadersNotAvailable => ResponseError::EligibleLeadersNotAvailable,
                }
            }
            Error::Io { .. } | Error::CorruptMetadata { .. } | Error::ConfigFile { .. } => {
                ResponseError::KafkaStorageError
            }
        };
        e.code()
    }
}

/// The Kafka error code for a storage-engine error. This is the only place the mapping lives.
pub fn log_error_code(e: &strom_log::Error) -> i16 {
    use strom_log::Error as L;
    let e = match e {
        // Damaged bytes are CORRUPT_MESSAGE (which clients retry: a retry may arrive intact);
        // a well-formed batch that breaks the rules is INVALID_RECORD, which they do not.
        L::InvalidBatch(b) => match b {
            strom_log::BatchError::CrcMismatch { .. }
            | strom_log::BatchError::TruncatedHeader { .. }
            | strom_log::BatchError::InvalidLength { .. }
            | strom_log::BatchError::LengthPastEnd { .. } => ResponseError::CorruptMessage,
            _ => ResponseError::InvalidRecord,
        },
        L::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        L::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        L::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        L::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        L::StorageFailed { .. } | L::Io { .. } | L::Corrupted { .. } => ResponseError::KafkaStorageError,
        // The partition was deleted (or the broker is shutting down) under the request.
        L::Closed(_) => ResponseError::UnknownTopicOrPartition,
        // Only a follower truncates: a client that reached it is told to find the leader.
        L::Truncating(_) | L::NotContiguous { .. } => ResponseError::NotLeaderOrFollower,
        L::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        L::InvalidConfig(_) => ResponseError::InvalidConfig,
    };
    e.code()
}

/// Error code 0: success.
pub const NONE: i16 = 0;

/// Shorthand for a protocol error code from [`ResponseError`].
pub const fn code(e: ResponseError) -> i16 {
    e.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_errors_map_to_kafka_codes() {
        let too_large = strom_log::Error::MessageTooLarge { size: 10, max: 5 };
        assert_eq!(log_error_code(&too_large), 10);
        let oor = strom_log::Error::OffsetOutOfRange { requested: 9, log_start: 0, log_end: 3 };
        assert_eq!(log_error_code(&oor), 1);
        let seq = strom_log::Error::OutOfOrderSequence { producer_id: 1, expected: 2, received: 5 };
        assert_eq!(log_error_code(&seq), 45);
        let epoch = strom_log::Error::InvalidProducerEpoch { producer_id: 1, received: 0, current: 1 };
        assert_eq!(log_error_code(&epoch), 47);
        let failed = strom_log::Error::StorageFailed { path: "x".into() };
        assert_eq!(log_error_code(&failed), 56);
        let empty = strom_log::Error::InvalidBatch(strom_log::BatchError::Empty);
        assert_eq!(log_error_code(&empty), 87, "INVALID_RECORD: well-formed bytes, broken rules");
        let damaged =
            strom_log::Error::InvalidBatch(strom_log::BatchError::CrcMismatch { position: 0, expected: 1, actual: 2 });
        assert_eq!(log_error_code(&damaged), 2, "CORRUPT_MESSAGE: damaged bytes");
        assert_eq!(Error::TopicExists("t".into()).code(), 36);
        assert_eq!(Error::Log(too_large).code(), 10);
    }
}
