//! The one error type of `strom-log`. The broker maps each variant to a Kafka
//! error code in exactly one place (`strom-broker`'s `error` module).

use std::io;
use std::path::PathBuf;

/// Why a RecordBatch was rejected before anything was written.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than a batch header (61 bytes) remain in the buffer.
    #[error("truncated batch header at byte {position}: {remaining} bytes left, 61 needed")]
    TruncatedHeader {
        /// Position of the batch in the request buffer.
        position: usize,
        /// Bytes left in the buffer at that position.
        remaining: usize,
    },
    /// The batch length field is negative or smaller than the fixed header.
    #[error("invalid batch length {length} at byte {position}")]
    InvalidLength {
        /// Position of the batch in the request buffer.
        position: usize,
        /// The length field as sent.
        length: i32,
    },
    /// The batch claims more bytes than the buffer holds.
    #[error("batch at byte {position} claims {length} bytes but only {remaining} remain")]
    LengthPastEnd {
        /// Position of the batch in the request buffer.
        position: usize,
        /// The length field as sent.
        length: i32,
        /// Bytes left after the length field.
        remaining: usize,
    },
    /// Only RecordBatch v2 (magic 2) is accepted.
    #[error("unsupported batch magic {magic} at byte {position} (only 2 is accepted)")]
    UnsupportedMagic {
        /// Position of the batch in the request buffer.
        position: usize,
        /// The magic byte as sent.
        magic: i8,
    },
    /// The CRC32C over attributes..end does not match the header's CRC field.
    #[error("CRC mismatch at byte {position}: header says {expected:#010x}, bytes hash to {actual:#010x}")]
    CrcMismatch {
        /// Position of the batch in the request buffer.
        position: usize,
        /// CRC stored in the batch header.
        expected: u32,
        /// CRC computed over the batch bytes.
        actual: u32,
    },
    /// The record count is zero or negative.
    #[error("batch at byte {position} has invalid record count {count}")]
    InvalidRecordCount {
        /// Position of the batch in the request buffer.
        position: usize,
        /// Record count as sent.
        count: i32,
    },
    /// `lastOffsetDelta` must equal `recordCount - 1` for batches produced by clients.
    #[error("batch at byte {position}: last offset delta {last_offset_delta} does not match record count {count}")]
    OffsetDeltaMismatch {
        /// Position of the batch in the request buffer.
        position: usize,
        /// lastOffsetDelta as sent.
        last_offset_delta: i32,
        /// recordCount as sent.
        count: i32,
    },
    /// The records section of an uncompressed batch does not parse as `count` records.
    #[error("batch at byte {position}: records section is malformed ({reason})")]
    MalformedRecords {
        /// Position of the batch in the request buffer.
        position: usize,
        /// What did not add up.
        reason: &'static str,
    },
    /// An empty record set was sent.
    #[error("empty record set")]
    Empty,
}

/// Every failure `strom-log` reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The appended bytes are not valid RecordBatch v2 data; nothing was written.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// A batch is larger than the log's `max_message_bytes`; nothing was written.
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge {
        /// Size of the offending batch in bytes.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// An offset below the log start or above the log end was requested.
    #[error("offset {requested} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The requested offset.
        requested: i64,
        /// The first offset the log still holds.
        log_start: i64,
        /// The next offset the log will assign.
        log_end: i64,
    },
    /// The idempotent producer's sequence number does not follow the last one stored.
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {received}")]
    OutOfOrderSequence {
        /// Producer id of the batch.
        producer_id: i64,
        /// The sequence the log expected next.
        expected: i32,
        /// The batch's base sequence.
        received: i32,
    },
    /// The batch's producer epoch is older than the latest one seen for its producer id.
    #[error("producer {producer_id} epoch {received} is older than current epoch {current}")]
    InvalidProducerEpoch {
        /// Producer id of the batch.
        producer_id: i64,
        /// The batch's producer epoch.
        received: i16,
        /// The newest epoch the log has stored for this producer.
        current: i16,
    },
    /// An earlier fsync (or write) of this log failed; the log refuses writes until restarted,
    /// because the kernel may have dropped dirty pages and retrying cannot be trusted.
    #[error("log {path} is failed after an earlier storage error; restart to recover")]
    StorageFailed {
        /// The partition directory.
        path: PathBuf,
    },
    /// An I/O operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory the operation touched.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk failed validation where they were expected to be intact.
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupted {
        /// The segment file.
        path: PathBuf,
        /// Byte position in the file.
        position: u64,
        /// What check failed.
        reason: String,
    },
    /// The partition log already exists.
    #[error("partition log {0} already exists")]
    AlreadyExists(String),
    /// The partition log was deleted or the manager shut down.
    #[error("partition log {0} is closed")]
    Closed(String),
    /// The partition log is being truncated (a follower diverged from its leader); retry.
    #[error("partition log {0} is being truncated")]
    Truncating(String),
    /// A replicated append does not continue the log: its first new batch starts at `found`,
    /// the log ends at `expected` (the leader's and this log's views differ; refetch).
    #[error("replicated batches start at offset {found}, the log ends at {expected}")]
    NotContiguous {
        /// The log end.
        expected: i64,
        /// The first new batch's base offset.
        found: i64,
    },
    /// A configuration value is invalid.
    #[error("invalid log config: {0}")]
    InvalidConfig(String),
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// Result alias for `strom-log`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
