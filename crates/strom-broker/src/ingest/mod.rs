//! What the leader does to a producer's batch before its log appends it, as the topic's
//! configs ask (Kafka's `LogValidator`, for what Strom honours):
//!
//! - `message.timestamp.type=CreateTime` with `message.timestamp.before.max.ms` /
//!   `after.max.ms`: a batch whose first timestamp is too far behind the broker's clock, or
//!   whose largest is too far ahead, is refused with `INVALID_TIMESTAMP`. The bounds are
//!   checked on the batch header's two timestamps (Kafka checks every record; a producer
//!   writes the first and the largest there, so the largest is exact and the first is the
//!   earliest unless its records go back in time);
//! - `message.timestamp.type=LogAppendTime`: the batch is stamped with the append time (the
//!   attribute bit and the header's max timestamp, which consumers read as every record's
//!   timestamp) and its CRC recomputed; the produce response carries that time;
//! - `compression.type` other than `producer`: a batch in another codec has its records
//!   decompressed (bounded by [`MAX_DECOMPRESSED_BYTES`], and checked to be exactly the
//!   records its header counts) and compressed in the topic's codec; every other header
//!   field (producer id, epoch, sequence, timestamps) is kept.
//!
//! Anything else passes through untouched: the stored bytes stay the producer's. Whatever is
//! rewritten is checked first (its CRC), so a damaged batch is never given a valid CRC.
//! Followers store the leader's bytes, so every replica holds the same batch.

pub mod codec;

use bytes::{Bytes, BytesMut};
use strom_log::batch::{COMPRESSION_MASK, CRC_START, LOG_APPEND_TIME_FLAG, check_batch, check_records};
use strom_log::{BatchError, BatchHeader, HEADER_LEN};

pub use codec::{Codec, CodecError};

/// The most a batch's records may expand to when the broker decompresses them to recompress.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Records keep the producer's timestamps.
    CreateTime,
    /// The broker stamps each batch with its append time.
    LogAppendTime,
}

/// A topic's produce-time rules, from its configs (see [`crate::topic_config::ingest_policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestPolicy {
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`; `i64::MAX`: no bound.
    pub before_max_ms: i64,
    /// `message.timestamp.after.max.ms`; `i64::MAX`: no bound.
    pub after_max_ms: i64,
    /// `compression.type`: `None` keeps the producer's codec.
    pub compression: Option<Codec>,
    /// `compression.gzip.level`.
    pub gzip_level: i32,
    /// `compression.lz4.level`.
    pub lz4_level: i32,
    /// `compression.zstd.level`.
    pub zstd_level: i32,
}

impl Default for IngestPolicy {
    /// What a topic without overrides gets (Kafka 4's defaults).
    fn default() -> Self {
        crate::topic_config::ingest_policy(&crate::topic_config::TopicConfigs::new())
    }
}

/// Why a batch was refused before the log saw it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A timestamp outside the topic's bounds (`INVALID_TIMESTAMP`).
    #[error(
        "timestamp {timestamp} is {distance_ms} ms {direction} the broker's clock ({now}), beyond message.timestamp.{direction}.max.ms={bound}"
    )]
    Timestamp {
        /// The offending timestamp.
        timestamp: i64,
        /// The broker's clock.
        now: i64,
        /// How far off it is.
        distance_ms: i64,
        /// `before` or `after`.
        direction: &'static str,
        /// The topic's bound.
        bound: i64,
    },
    /// The batch failed its checks (`CORRUPT_MESSAGE` / `INVALID_RECORD`).
    #[error("invalid batch: {0}")]
    Batch(#[from] BatchError),
    /// Its records did not decompress (`CORRUPT_MESSAGE`).
    #[error("cannot recompress the batch: {0}")]
    Codec(#[from] CodecError),
}

impl IngestError {
    /// The Kafka error code for the produce response.
    pub fn code(&self) -> i16 {
        use kafka_protocol::ResponseError as R;
        match self {
            IngestError::Timestamp { .. } => R::InvalidTimestamp.code(),
            IngestError::Batch(e) => crate::error::log_error_code(&strom_log::Error::InvalidBatch(e.clone())),
            IngestError::Codec(CodecError::Unknown(_)) => R::UnsupportedCompressionType.code(),
            IngestError::Codec(_) => R::CorruptMessage.code(),
        }
    }
}

/// A batch ready for the log, and the append time it was stamped with (LogAppendTime).
#[derive(Debug)]
pub struct Prepared {
    /// The bytes to append: the producer's, or the rewritten batch.
    pub records: Bytes,
    /// The time stamped into the batch, for the produce response's `log_append_time_ms`.
    pub log_append_time: Option<i64>,
}

/// Applies `policy` to a producer's record set at broker time `now_ms`. A record set that is
/// not exactly one well-formed batch header is passed on unchanged for the log to refuse.
pub fn prepare(records: Bytes, policy: &IngestPolicy, now_ms: i64) -> Result<Prepared, IngestError> {
    let Some(h) = BatchHeader::parse(&records).filter(|h| h.magic == 2 && h.total_len() == records.len()) else {
        return Ok(Prepared { records, log_append_time: None });
    };
    let append_time = policy.timestamp_type == TimestampType::LogAppendTime;
    if !append_time {
        check_timestamps(&h, policy, now_ms)?;
    }
    let recompress = policy.compression.filter(|c| c.id() != h.compression() && !h.is_control());
    if !append_time && recompress.is_none() {
        return Ok(Prepared { records, log_append_time: None });
    }
    check_batch(&records, &h, 0)?;
    let mut out = match recompress {
        Some(target) => {
            let source = Codec::from_id(h.compression())?;
            let plain = codec::decompress(source, &records[HEADER_LEN..], MAX_DECOMPRESSED_BYTES)?;
            check_records(&plain, h.record_count)?;
            let level = match target {
                Codec::Gzip => policy.gzip_level,
                Codec::Lz4 => policy.lz4_level,
                Codec::Zstd => policy.zstd_level,
                Codec::None | Codec::Snappy => 0,
            };
            let body = if target == Codec::None { plain } else { codec::compress(target, &plain, level)? };
            let mut b = BytesMut::with_capacity(HEADER_LEN + body.len());
            b.extend_from_slice(&records[..HEADER_LEN]);
            b.extend_from_slice(&body);
            let attributes = (h.attributes & !COMPRESSION_MASK) | target.id();
            b[21..23].copy_from_slice(&attributes.to_be_bytes());
            let length = i32::try_from(b.len() - strom_log::batch::LOG_OVERHEAD).unwrap_or(i32::MAX);
            b[8..12].copy_from_slice(&length.to_be_bytes());
            b
        }
        None => BytesMut::from(&records[..]),
    };
    if append_time {
        let attributes = i16::from_be_bytes([out[21], out[22]]) | LOG_APPEND_TIME_FLAG;
        out[21..23].copy_from_slice(&attributes.to_be_bytes());
        out[35..43].copy_from_slice(&now_ms.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Prepared { records: out.freeze(), log_append_time: append_time.then_some(now_ms) })
}

/// The CreateTime bounds, on the header's first and largest timestamps (-1: none given).
fn check_timestamps(h: &BatchHeader, policy: &IngestPolicy, now: i64) -> Result<(), IngestError> {
    let refuse = |timestamp: i64, distance_ms: i64, direction, bound| IngestError::Timestamp {
        timestamp,
        now,
        distance_ms,
        direction,
        bound,
    };
    if policy.after_max_ms < i64::MAX && h.max_timestamp >= 0 {
        let ahead = h.max_timestamp.saturating_sub(now);
        if ahead > policy.after_max_ms {
            return Err(refuse(h.max_timestamp, ahead, "after", policy.after_max_ms));
        }
    }
    if policy.before_max_ms < i64::MAX && h.base_timestamp >= 0 {
        let behind = now.saturating_sub(h.base_timestamp);
        if behind > policy.before_max_ms {
            return Err(refuse(h.base_timestamp, behind, "before", policy.before_max_ms));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_log::build_batch;

    const NOW: i64 = 1_700_000_000_000;

    fn policy() -> IngestPolicy {
        IngestPolicy { before_max_ms: i64::MAX, after_max_ms: i64::MAX, ..IngestPolicy::default() }
    }

    fn values() -> Vec<Vec<u8>> {
        (0..50).map(|i| format!("value number {i} with some repetition repetition").into_bytes()).collect()
    }

    fn batch(ts: i64) -> Bytes {
        let v = values();
        let refs: Vec<&[u8]> = v.iter().map(|v| v.as_slice()).collect();
        build_batch(ts, Some((7, 1, 100)), &refs)
    }

    #[test]
    fn untouched_without_rules() {
        let b = batch(NOW);
        let p = prepare(b.clone(), &policy(), NOW).expect("ok");
        assert_eq!(p.records, b, "byte for byte");
        assert_eq!(p.log_append_time, None);
    }

    #[test]
    fn timestamp_bounds_refuse_with_invalid_timestamp() {
        let p = IngestPolicy { before_max_ms: 1000, after_max_ms: 1000, ..policy() };
        assert!(prepare(batch(NOW - 500), &p, NOW).is_ok());
        let e = prepare(batch(NOW + 5000), &p, NOW).expect_err("ahead");
        assert_eq!(e.code(), 32, "INVALID_TIMESTAMP");
        assert!(e.to_string().contains("after.max.ms=1000"), "{e}");
        let e = prepare(batch(NOW - 5000), &p, NOW).expect_err("behind");
        assert!(e.to_string().contains("before.max.ms=1000"), "{e}");
        // LogAppendTime ignores the producer's timestamps.
        let p = IngestPolicy { timestamp_type: TimestampType::LogAppendTime, ..p };
        assert!(prepare(batch(NOW - 5000), &p, NOW).is_ok());
    }

    #[test]
    fn log_append_time_stamps_the_header_and_keeps_the_crc_valid() {
        let p = IngestPolicy { timestamp_type: TimestampType::LogAppendTime, ..policy() };
        let original = batch(1000);
        let out = prepare(original.clone(), &p, NOW).expect("ok");
        assert_eq!(out.log_append_time, Some(NOW));
        let h = BatchHeader::parse(&out.records).expect("header");
        assert!(h.is_log_append_time());
        assert_eq!((h.max_timestamp, h.base_timestamp), (NOW, 1000));
        strom_log::validate_batches(&out.records).expect("CRC recomputed");
        assert_eq!(&out.records[HEADER_LEN..], &original[HEADER_LEN..], "records untouched");
    }

    #[test]
    fn recompression_keeps_every_header_field_and_the_records() {
        let original = batch(NOW);
        let oh = BatchHeader::parse(&original).expect("header");
        let mut previous = original.clone();
        for target in [Codec::Zstd, Codec::Lz4, Codec::Gzip, Codec::Snappy, Codec::None] {
            let p = IngestPolicy { compression: Some(target), ..policy() };
            let out = prepare(previous.clone(), &p, NOW).expect("recompressed");
            let v = strom_log::validate_batches(&out.records).expect("valid batch");
            let h = v[0].header;
            assert_eq!(h.compression(), target.id());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence, h.record_count, h.base_timestamp, h.max_timestamp),
                (
                    oh.producer_id,
                    oh.producer_epoch,
                    oh.base_sequence,
                    oh.record_count,
                    oh.base_timestamp,
                    oh.max_timestamp
                )
            );
            let plain = codec::decompress(target, &out.records[HEADER_LEN..], MAX_DECOMPRESSED_BYTES).expect("decodes");
            assert_eq!(plain, &original[HEADER_LEN..], "{target:?}: the same records");
            previous = out.records;
        }
        assert_eq!(previous, original, "back to uncompressed: byte for byte the original");
    }

    #[test]
    fn a_damaged_batch_is_refused_not_reblessed() {
        let mut b = BytesMut::from(&batch(NOW)[..]);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        for p in [
            IngestPolicy { compression: Some(Codec::Zstd), ..policy() },
            IngestPolicy { timestamp_type: TimestampType::LogAppendTime, ..policy() },
        ] {
            let e = prepare(b.clone().freeze(), &p, NOW).expect_err("CRC mismatch");
            assert!(matches!(e, IngestError::Batch(BatchError::CrcMismatch { .. })), "{e}");
        }
    }
}
