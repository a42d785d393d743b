//! `strom sink`: drains Kafka topics into PostgreSQL or SQLite tables, in batches, exactly once.
//!
//! The sink is a client of any Kafka-compatible broker (librdkafka through `rdkafka`), a member
//! of a consumer group so that several sink processes share the partitions. The pieces:
//!
//! * [`config`]: what the user sets (routes topic → table, buffer limits, flush cadence,
//!   retries, what to do with a record that cannot be written), from flags or a TOML file;
//! * [`consumer`]: the consumer loop. It owns the group membership: on every assignment it
//!   reads the resume position of each partition **from the database**, never from the
//!   broker; it hands records to the flush workers and pauses the partitions when the buffer
//!   is full;
//! * [`worker`]: flush workers. Each owns a share of the partitions (a partition always goes to
//!   the same worker, so its batches commit in order) and a database connection, batches
//!   records by count and age, and retries transient database errors with backoff;
//! * [`db`]: the database side. One transaction per batch holds the rows *and* the new
//!   positions of the partitions it covers, in the table `strom_sink_offsets`. A position
//!   moves only from the value the batch started at (a compare-and-set), so a sink that lost
//!   its partitions to another one (a zombie) cannot commit a batch the new owner also
//!   writes: that is what makes the sink exactly once across crashes and rebalances;
//! * [`mapping`]: record → row, for the raw layout and for JSON values mapped to the columns of
//!   an existing table;
//! * [`metrics`]: the Prometheus metrics the sink records (`metrics` facade; the binary serves
//!   them).

pub mod budget;
pub mod config;
pub mod consumer;
pub mod db;
pub mod mapping;
pub mod metrics;
pub mod record;
pub mod retry;
pub mod worker;

pub use config::{DatabaseUrl, FileConfig, Mapping, OnError, Route, SinkConfig};
pub use consumer::{RunSummary, run};

/// Everything that stops the sink, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration is invalid (a bad URL, an empty route list, a bad duration).
    #[error("invalid sink configuration: {0}")]
    Config(String),
    /// The database refused the sink's schema (a missing table, a column type no JSON value
    /// maps to), or is unreachable at start.
    #[error(transparent)]
    Database(#[from] db::DbError),
    /// The Kafka client could not be created or subscribed.
    #[error("Kafka client error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A record could not be written and the route's policy is `stop`.
    #[error(
        "stopped at {topic}/{partition} offset {offset}: {reason} (on_error = \"stop\"; nothing of that batch was written, and the sink resumes at this record when restarted)"
    )]
    RecordRejected {
        /// Topic of the record.
        topic: String,
        /// Partition of the record.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// Why it could not be written.
        reason: String,
    },
    /// A transient database error persisted past the configured number of retries.
    #[error(
        "gave up after {retries} retries: {last} (nothing is lost: the sink resumes from the database's offsets when restarted)"
    )]
    RetriesExhausted {
        /// Retries made.
        retries: u32,
        /// The last error.
        last: db::DbError,
    },
    /// Shutdown could not flush everything in time (the database is down).
    #[error(
        "{unflushed} buffered records were not written before the shutdown deadline; they are read again from the broker on the next start"
    )]
    ShutdownIncomplete {
        /// Records left in the buffer.
        unflushed: usize,
    },
}
