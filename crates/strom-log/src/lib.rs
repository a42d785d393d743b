//! `strom-log`: Strom's storage engine. A partition log is a write-ahead log of Kafka
//! RecordBatch v2 bytes, stored exactly as the client sent them (only the base offset and
//! the partition leader epoch are rewritten), checksummed, and fsynced by a group-commit
//! flusher before an append is acknowledged (flush policy `always`).
//!
//! Module map:
//! - [`batch`]: RecordBatch v2 header parsing and validation (length, magic, CRC32C, counts).
//! - [`config`]: [`LogConfig`] per partition, [`ManagerConfig`] per data directory.
//! - `index`: sparse offset and time indexes of one segment.
//! - `segment`: one `<base-offset>.log` file with its indexes; reads and scans.
//! - `recovery`: validating a segment's tail and cutting a torn or corrupt tail.
//! - `producer_state`: idempotent-producer sequence tracking and its snapshots.
//! - `flusher`: the group-commit thread that fsyncs each dirty file once per round.
//! - `partition`: [`PartitionLog`]: append, read, truncate, retention of one partition.
//! - `manager`: [`LogManager`]: the data directory, the flusher, the clean-shutdown marker.
//! - `fd_cache`: bounds how many sealed segment files are open at once.
//!
//! The engine knows bytes and offsets, not sockets or requests; `strom-broker` maps
//! [`Error`] to Kafka error codes.

pub mod batch;
pub mod config;
pub mod error;
mod fd_cache;
mod flusher;
mod index;
mod maintenance;
mod manager;
mod partition;
mod producer_state;
mod recovery;
mod segment;

pub use batch::{BatchHeader, HEADER_LEN, build_batch, validate_batches};
pub use config::{BACKGROUND_FLUSH_BYTES, FlushPolicy, LogConfig, ManagerConfig, PREALLOCATE_MAX_FLUSH_BYTES};
pub use error::{BatchError, Error, Result};
pub use manager::{LogManager, validate_topic_name};
pub use partition::{AppendInfo, PartitionLog, ReadBound, ReadResult};
