//! The one error type of `strom-bench`.

use std::time::Duration;

use rdkafka::error::KafkaError;

/// Why a benchmark could not run (or could not finish). Delivery errors during a run are
/// not errors of the run: they are counted in the [`Report`](crate::Report).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter is out of range or contradicts another.
    #[error("invalid {field}: {reason}")]
    Config {
        /// The offending parameter.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No broker answered a metadata request in time.
    #[error("cannot reach a broker at {bootstrap} within {}: {}", humantime::format_duration(*timeout), describe(.cause))]
    Unreachable {
        /// The bootstrap list that was tried.
        bootstrap: String,
        /// How long we waited.
        timeout: Duration,
        /// librdkafka's last error (described in the message rather than chained: its
        /// own `Display` and `source` repeat each other).
        cause: KafkaError,
    },
    /// The topic does not exist and `create_topic` was not set.
    #[error("topic {topic:?} does not exist (pass --create-topic to create it)")]
    UnknownTopic {
        /// The topic.
        topic: String,
    },
    /// Creating the topic failed.
    #[error("cannot create topic {topic:?}: {reason}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's or client's answer.
        reason: String,
    },
    /// The topic exists but some partition has no leader after waiting.
    #[error("topic {topic:?} has no leader for partition {partition} after {}", humantime::format_duration(*waited))]
    NoLeader {
        /// The topic.
        topic: String,
        /// The first leaderless partition.
        partition: i32,
        /// How long we waited.
        waited: Duration,
    },
    /// A librdkafka call failed outside the measured path.
    #[error("{context}: {}", describe(.cause))]
    Kafka {
        /// What we were doing.
        context: String,
        /// librdkafka's error (described in the message, not chained; see `Unreachable`).
        cause: KafkaError,
    },
    /// A worker task panicked or was cancelled.
    #[error("benchmark worker failed: {0}")]
    Worker(String),
}

/// librdkafka's description of an error ("Local: Broker transport failure") without the
/// Rust wrapping ("Meta data fetch error: BrokerTransportFailure (...)").
pub(crate) fn describe(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => {
            let full = code.to_string();
            let prefix = format!("{code:?} (");
            full.strip_prefix(&prefix).and_then(|r| r.strip_suffix(')')).map_or_else(|| full.clone(), str::to_owned)
        }
        None => e.to_string(),
    }
}

impl Error {
    /// Wraps a librdkafka error with what we were doing.
    pub(crate) fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
        let context = context.into();
        move |cause| Error::Kafka { context, cause }
    }
}
