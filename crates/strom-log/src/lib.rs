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
//! - `journal`: the node journal: one fdatasync per round covers the appends of every
//!   partition (flush policy `always`); checkpoints, replay at startup.
//! - `flusher`: the thread pool that fsyncs partitions on their own (without the journal,
//!   and the timed and background flushes of `interval`/`never`).
//! - `partition`: [`PartitionLog`]: append, read, truncate, retention of one partition.
//! - `manager`: [`LogManager`]: the data directory, the flusher, the clean-shutdown marker.
//! - `fd_cache`: bounds how many sealed segment files are open at once.
//! - `dirs`: creating and fsyncing directories so their entries survive a power loss.
//!
//! The engine knows bytes and offsets, not sockets or requests; `strom-broker` maps
//! [`Error`] to Kafka error codes.

pub mod batch;
pub mod config;
mod dirs;
pub mod error;
mod fd_cache;
mod flusher;
mod index;
mod journal;
mod maintenance;
mod manager;
mod partition;
mod producer_state;
mod recovery;
mod segment;

pub use batch::{BatchHeader, HEADER_LEN, build_batch, validate_batches};
pub use config::{BACKGROUND_FLUSH_BYTES, FlushPolicy, LogConfig, ManagerConfig, PREALLOCATE_MAX_FLUSH_BYTES};
pub use dirs::{create_dir_durable, sync_dir};
pub use error::{BatchError, Error, Result};
pub use journal::CommitHold;
pub use manager::{LogManager, validate_topic_name};
pub use partition::{AppendInfo, Durable, PartitionLog, ReadBound, ReadResult};

/// Counters of the node journal (see [`LogManager::journal_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    /// Durability rounds made by one fdatasync of the journal, however many partitions and
    /// appends each covered.
    pub journal_rounds: u64,
    /// Rounds the journal could not make durable (a failed write or fsync), which fsynced
    /// their partitions' segments instead.
    pub fallback_rounds: u64,
    /// Rounds of a megabyte or more, made durable by fsyncing their partitions' segments
    /// (bandwidth, not flushes, is their cost: the journal would write them twice).
    pub direct_rounds: u64,
    /// Checkpoints written (every partition journaled before one was fsynced).
    pub checkpoints: u64,
    /// Batches the replay at startup put back into segments that had lost them.
    pub replayed_batches: u64,
    /// A partition's fsync failed at a checkpoint: the journal keeps every file until a
    /// restart replays it.
    pub pinned: bool,
}
