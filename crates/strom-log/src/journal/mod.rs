//! The node journal: one write-ahead file per data directory that makes the appends of
//! every partition (flush policy `always`) durable with one `fdatasync` per round.
//!
//! Without it each partition fsynced its own segment, so a produce request to N partitions
//! waited for N fsyncs, and this machine's disk serialises flushes: throughput at 64
//! partitions was a fifth of one partition's. With it:
//!
//! 1. `append` writes the batches to their segment (page cache, no sync) and hands a
//!    [`Pending`] (the stored bytes, by reference) to the [`Committer`], under the
//!    partition's lock so each partition's appends arrive in offset order.
//! 2. The committer's thread takes everything pending as one round: it writes one record
//!    per append to the journal with one `writev`, fdatasyncs the journal once, and
//!    publishes the new durable end of every partition in the round. Appends arriving
//!    meanwhile make the next round. (A round of one partition goes through the journal
//!    too: see `commit::round` for why that is faster than fsyncing the segment.)
//! 3. Segments are made durable lazily, at checkpoints: when the journal switches files,
//!    the `checkpoint` thread fsyncs every partition journaled since the last checkpoint and
//!    then records the checkpoint's jsn; journal files wholly below it are reused.
//! 4. At startup ([`recover`]) the records after the checkpoint are replayed into the
//!    segments, idempotently by offset (a batch the segment already holds is skipped; the
//!    batch CRCs and the record CRC are checked), then the segments are fsynced and a new
//!    checkpoint written.
//!
//! A round that fails (write or fsync of the journal) falls back to fsyncing each of its
//! partitions' segments directly: whatever that fsync covers is acknowledged, a partition
//! whose own fsync fails latches failed, and the journal continues in a fresh file (the
//! failed file's tail cannot be trusted; the jsns of the failed round are burnt). A
//! partition that fails at a checkpoint pins the journal: nothing is freed until a restart
//! replays it, because its acknowledged records may now exist only in the journal.
//!
//! Truncations and deletions are journaled too ([`format::RecordBody`]): the partition's
//! segment is fsynced, then the record made durable, and only then are the segment files
//! cut or removed. At replay the record voids the partition's earlier records, so a replay
//! never puts back what a truncation removed nor fills a re-created partition with its
//! predecessor's records, and loses nothing (the fsync before the record covered them).

mod checkpoint;
mod commit;
mod files;
mod format;
mod recover;

pub(crate) use checkpoint::Checkpointer;
pub use commit::CommitHold;
pub(crate) use commit::{Committer, Pending};
pub(crate) use files::write_checkpoint;
pub(crate) use format::RecordBody;
pub(crate) use recover::recover;

/// Name of the journal's directory inside the data directory (not a valid `<topic>-<n>`).
pub(crate) const DIR_NAME: &str = ".journal";
