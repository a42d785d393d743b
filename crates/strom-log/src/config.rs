//! Per-log and per-manager configuration, with the defaults stated on each field.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// When appended bytes are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FlushPolicy {
    /// Durable before the append is acknowledged: the group-commit flusher fsyncs the file and
    /// only then completes the waiter. Default.
    #[default]
    Always,
    /// Acknowledge at once; the flusher fsyncs dirty data at most this long after it was
    /// written, and sooner once [`BACKGROUND_FLUSH_BYTES`] are unflushed.
    Interval(Duration),
    /// Acknowledge at once; fsync when a segment rolls or the log closes, and in the
    /// background once [`BACKGROUND_FLUSH_BYTES`] are unflushed.
    Never,
}

impl FromStr for FlushPolicy {
    type Err = Error;

    /// Parses `always`, `never` or `interval:<ms>`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim() {
            "always" => Ok(FlushPolicy::Always),
            "never" => Ok(FlushPolicy::Never),
            other => {
                let ms = other
                    .strip_prefix("interval:")
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| {
                        Error::InvalidConfig(format!(
                            "flush policy {other:?}: expected always, never or interval:<ms> with ms > 0"
                        ))
                    })?;
                Ok(FlushPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl std::fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlushPolicy::Always => write!(f, "always"),
            FlushPolicy::Never => write!(f, "never"),
            FlushPolicy::Interval(d) => write!(f, "interval:{}", d.as_millis()),
        }
    }
}

impl TryFrom<String> for FlushPolicy {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<FlushPolicy> for String {
    fn from(p: FlushPolicy) -> String {
        p.to_string()
    }
}

/// Settings of one partition log. Topic configs map onto these fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// Roll the active segment once it holds this many bytes (`segment.bytes`).
    /// Default: 128 MiB.
    pub segment_bytes: u64,
    /// Roll a non-empty active segment once it is this old (`segment.ms`). Default: 7 days.
    pub segment_ms: Option<u64>,
    /// Delete sealed segments whose newest record is older than this (`retention.ms`);
    /// `None` keeps them forever. Default: 7 days.
    pub retention_ms: Option<i64>,
    /// Delete the oldest sealed segments while the log is larger than this
    /// (`retention.bytes`); `None` means no size limit. Default: none.
    pub retention_bytes: Option<u64>,
    /// Largest single batch accepted (`max.message.bytes`). Default: 1 MiB + 12 bytes of
    /// log overhead, as Kafka's.
    pub max_message_bytes: usize,
    /// Write an offset- and time-index entry at least every this many bytes
    /// (`index.interval.bytes`). Default: 4096.
    pub index_interval_bytes: u64,
    /// When appends are fsynced (`flush.policy`). Default: `always`.
    pub flush_policy: FlushPolicy,
}

/// Seven days in milliseconds: Kafka's default for `retention.ms` and `segment.ms`.
pub const SEVEN_DAYS_MS: u64 = 7 * 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 128 * 1024 * 1024,
            segment_ms: Some(SEVEN_DAYS_MS),
            retention_ms: Some(SEVEN_DAYS_MS as i64),
            retention_bytes: None,
            max_message_bytes: 1024 * 1024 + 12,
            index_interval_bytes: 4096,
            flush_policy: FlushPolicy::Always,
        }
    }
}

impl LogConfig {
    /// Checks that the values can work together.
    pub fn validate(self) -> Result<Self, Error> {
        if self.segment_bytes < 1024 {
            return Err(Error::InvalidConfig(format!(
                "segment.bytes {} is below the minimum of 1024",
                self.segment_bytes
            )));
        }
        if self.max_message_bytes == 0 {
            return Err(Error::InvalidConfig("max.message.bytes must be positive".into()));
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::InvalidConfig("index.interval.bytes must be positive".into()));
        }
        Ok(self)
    }
}

/// Settings of a [`crate::LogManager`]: one data directory and its flusher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    /// Root of the data directory; each partition lives in `<data_dir>/<topic>-<partition>/`.
    pub data_dir: PathBuf,
    /// Configuration given to logs found on disk at startup until the caller sets their own.
    pub default_log: LogConfig,
    /// At most this many sealed segment files stay open at once across all partitions;
    /// colder ones are closed and reopened on demand. Active segments are always open.
    /// Default: 512.
    pub max_open_sealed_segments: usize,
    /// Fsyncs of different files run on up to this many threads in one group commit.
    /// Default: 4.
    pub flush_threads: usize,
    /// When true (single-node mode, the default), the high watermark follows what is durable
    /// under the log's flush policy; when false the caller (replication) sets it.
    pub auto_high_watermark: bool,
    /// Zero-filled space kept ahead of the write position of a busy partition's active
    /// segment, in bytes; 0 turns preallocation off. It serves partitions that fsync their
    /// own segment to acknowledge (the journal off, or rounds of a megabyte or more); with
    /// the journal, small `always` appends never fsync their segment on the way to an
    /// acknowledgement, so their segments are not preallocated. Appends then overwrite blocks the
    /// filesystem has already allocated, so their fsync has no file size or extent change
    /// to commit through the journal (on ext4 it measured about half as long for small
    /// writes). It pays only where fsyncs are small: zero-filling writes every byte twice,
    /// so a partition whose group commits average more than [`PREALLOCATE_MAX_FLUSH_BYTES`]
    /// is not preallocated (measured: 16 KiB messages at full disk bandwidth lost a third of
    /// their throughput). A busy one holds up to 1.5× this much unused space at the end of
    /// its active segment; it is released when the segment rolls or the log closes, and
    /// recovery after a crash cuts it off like any torn tail.
    ///
    /// Small steps keep each zero-fill short: its fsync commits the new blocks through the
    /// journal and must write the zeros first, and a data fsync that meets it waits. With
    /// 8 MiB steps this machine showed ~9 data fsyncs a second over 10 ms at 280K msg/s;
    /// with 256 KiB–1 MiB steps 0.5–2 a second, and a lower p99 (docs/PERFORMANCE.md).
    /// Default: 512 KiB.
    pub preallocate_bytes: u64,
    /// A partition starts preallocating once it has appended this many bytes since it was
    /// opened, so idle partitions cost no disk space. Default: 1 MiB.
    pub preallocate_after_bytes: u64,
    /// Whether appends under flush policy `always` are made durable through the node journal
    /// (one `fdatasync` per round for every partition; see `docs/ARCHITECTURE.md`) rather than
    /// by an fsync of each partition's segment. Default: true. Turning it off is for
    /// comparisons; a journal left by an earlier run is replayed either way.
    pub journal: bool,
    /// Size of one journal file. A checkpoint (an fsync of every partition journaled since
    /// the last one) runs each time a file fills, and a restart after a crash replays at
    /// most about two files. Default: 128 MiB.
    pub journal_file_bytes: u64,
    /// An idempotent producer's state in a partition (kept to recognise its retries) is
    /// dropped once its last batch's timestamp is this old, checked with each retention
    /// run (Kafka's `producer.id.expiration.ms`). Default: 86400000 (one day).
    pub producer_id_expiration_ms: u64,
}

/// Partitions whose fsyncs cover more than this on average (bytes, moving average) are not
/// preallocated: for them the journal commit saved is small next to writing the zeros.
pub const PREALLOCATE_MAX_FLUSH_BYTES: u64 = 64 * 1024;

/// Under the flush policies that acknowledge before the fsync (`interval`, `never`), a
/// partition with this many unflushed bytes is fsynced in the background. Acknowledgements
/// never wait for it; it exists because a segment roll fsyncs the old segment before the new
/// one takes writes (so recovery only ever repairs the active segment), and without it a
/// roll under `never` had a whole segment of dirty pages to write (with it, about this much)
/// while appends to the partition waited: 314-451 ms per 128 MiB roll on the development
/// machine.
pub const BACKGROUND_FLUSH_BYTES: u64 = 4 * 1024 * 1024;

impl ManagerConfig {
    /// A manager config for `data_dir` with every other field at its default.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ManagerConfig {
            data_dir: data_dir.into(),
            default_log: LogConfig::default(),
            max_open_sealed_segments: 512,
            flush_threads: 4,
            auto_high_watermark: true,
            preallocate_bytes: 512 * 1024,
            preallocate_after_bytes: 1024 * 1024,
            producer_id_expiration_ms: 86_400_000,
            journal: true,
            journal_file_bytes: 128 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_policy_round_trips() {
        for s in ["always", "never", "interval:250"] {
            let p: FlushPolicy = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        assert!("interval:0".parse::<FlushPolicy>().is_err());
        assert!("sometimes".parse::<FlushPolicy>().is_err());
    }
}
