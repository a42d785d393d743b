//! Kafka RecordBatch v2 headers: parsing, validation and the two fields the log rewrites.
//!
//! Hand-written on purpose: the log must check a batch (length, magic, CRC32C, counts) and
//! rewrite its base offset and leader epoch *without* decoding or re-encoding records, so
//! the stored bytes stay exactly what the client sent. `kafka-protocol`'s record codec
//! decodes every record (and decompresses), which is the work this module exists to avoid.
//!
//! Layout (all integers big-endian):
//! ```text
//! 0  baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8
//! 17 crc u32 (CRC32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
//! 27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
//! 53 baseSequence i32 | 57 recordCount i32 | 61 records...
//! ```

use bytes::Bytes;

use crate::error::BatchError;

/// Size of the fixed RecordBatch v2 header.
pub const HEADER_LEN: usize = 61;
/// Bytes before and including the length field (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// Offset of the CRC-covered range (attributes onwards).
pub const CRC_START: usize = 21;
/// Compression codec mask in the attributes field.
pub const COMPRESSION_MASK: i16 = 0x07;
/// Attributes bit marking a transactional batch.
const TRANSACTIONAL_FLAG: i16 = 0x10;
/// Attributes bit marking a control batch.
const CONTROL_FLAG: i16 = 0x20;
/// Attributes bit: timestamps are log-append time.
pub const LOG_APPEND_TIME_FLAG: i16 = 0x08;

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    i16::from_be_bytes(a)
}

/// The fixed fields of one RecordBatch v2, read from its first 61 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (as stored; as sent by a producer it is usually 0).
    pub base_offset: i64,
    /// Bytes after the length field; the whole batch is `LOG_OVERHEAD + batch_length` bytes.
    pub batch_length: i32,
    /// Leader epoch of the partition when the batch was appended.
    pub partition_leader_epoch: i32,
    /// Format version; 2 for every batch this log accepts.
    pub magic: i8,
    /// CRC32C of bytes 21..end.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the fixed header from the start of `b`; `None` when `b` is shorter than 61 bytes.
    pub fn parse(b: &[u8]) -> Option<BatchHeader> {
        if b.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(b, 0),
            batch_length: be_i32(b, 8),
            partition_leader_epoch: be_i32(b, 12),
            magic: b[16] as i8,
            crc: be_u32(b, 17),
            attributes: be_i16(b, 21),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, 35),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            record_count: be_i32(b, 57),
        })
    }

    /// Total size of the batch on disk and on the wire.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        // Saturating: the fields may come from damaged bytes on disk, which must be reported,
        // not overflow.
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    /// True for transactional batches.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }

    /// True for control (transaction marker) batches.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }

    /// True when the batch's timestamps are log-append time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & LOG_APPEND_TIME_FLAG != 0
    }

    /// Sequence number of the last record, wrapping at `i32::MAX` as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

/// A validated batch inside a larger buffer.
#[derive(Debug, Clone)]
pub struct ValidBatch {
    /// Its parsed header.
    pub header: BatchHeader,
    /// The batch's bytes (a zero-copy slice of the input).
    pub bytes: Bytes,
}

/// Validates every batch in `buf` (a produce request's record set for one partition) and
/// returns them in order. Rejects the whole set on the first bad batch, so callers can
/// guarantee "no partial write".
pub fn validate_batches(buf: &Bytes) -> Result<Vec<ValidBatch>, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut out = Vec::with_capacity(1);
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let header =
            BatchHeader::parse(rest).ok_or(BatchError::TruncatedHeader { position: pos, remaining: rest.len() })?;
        check_batch(rest, &header, pos)?;
        let len = header.total_len();
        out.push(ValidBatch { header, bytes: buf.slice(pos..pos + len) });
        pos += len;
    }
    Ok(out)
}

/// Checks one batch whose header is `h`, starting at `b[0]`; `b` may extend past the batch.
/// `position` is only used in error reports.
pub fn check_batch(b: &[u8], h: &BatchHeader, position: usize) -> Result<(), BatchError> {
    if h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::InvalidLength { position, length: h.batch_length });
    }
    let remaining = b.len() - LOG_OVERHEAD;
    if h.batch_length as usize > remaining {
        return Err(BatchError::LengthPastEnd { position, length: h.batch_length, remaining });
    }
    if h.magic != 2 {
        return Err(BatchError::UnsupportedMagic { position, magic: h.magic });
    }
    let end = h.total_len();
    let actual = crc32c::crc32c(&b[CRC_START..end]);
    if actual != h.crc {
        return Err(BatchError::CrcMismatch { position, expected: h.crc, actual });
    }
    if h.record_count <= 0 {
        return Err(BatchError::InvalidRecordCount { position, count: h.record_count });
    }
    if h.last_offset_delta != h.record_count - 1 {
        return Err(BatchError::OffsetDeltaMismatch {
            position,
            last_offset_delta: h.last_offset_delta,
            count: h.record_count,
        });
    }
    if h.compression() == 0 {
        check_record_framing(&b[HEADER_LEN..end], h.record_count, position)?;
    }
    Ok(())
}

/// Checks that `records` (a batch's records section, uncompressed) is exactly `count`
/// length-prefixed records (cheap: reads one varint per record, decodes nothing else). Used
/// by the broker on records it decompressed to recompress them.
pub fn check_records(records: &[u8], count: i32) -> Result<(), BatchError> {
    check_record_framing(records, count, 0)
}

/// For an uncompressed batch, checks that the records section is exactly `count`
/// length-prefixed records (cheap: reads one varint per record, decodes nothing else).
fn check_record_framing(mut records: &[u8], count: i32, position: usize) -> Result<(), BatchError> {
    for _ in 0..count {
        let (len, used) = read_varint(records)
            .ok_or(BatchError::MalformedRecords { position, reason: "bad record length varint" })?;
        if len < 0 {
            return Err(BatchError::MalformedRecords { position, reason: "negative record length" });
        }
        let total = used + len as usize;
        if total > records.len() {
            return Err(BatchError::MalformedRecords { position, reason: "record runs past batch end" });
        }
        records = &records[total..];
    }
    if !records.is_empty() {
        return Err(BatchError::MalformedRecords { position, reason: "bytes after the last record" });
    }
    Ok(())
}

/// Reads a zigzag-encoded varint (Kafka's `varint`); returns the value and bytes used.
pub fn read_varint(b: &[u8]) -> Option<(i32, usize)> {
    let mut raw: u32 = 0;
    for (i, byte) in b.iter().take(5).enumerate() {
        raw |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let value = ((raw >> 1) as i32) ^ -((raw & 1) as i32);
            return Some((value, i + 1));
        }
    }
    None
}

/// Writes the fields the log owns into a 16-byte prefix for a batch: the assigned base
/// offset, the length as sent and the partition leader epoch. None of these are covered by
/// the CRC, so the rest of the batch is stored byte for byte as received.
pub fn rewritten_prefix(original: &[u8], base_offset: i64, leader_epoch: i32) -> [u8; REWRITTEN_PREFIX_LEN] {
    let mut p = [0u8; REWRITTEN_PREFIX_LEN];
    p[0..8].copy_from_slice(&base_offset.to_be_bytes());
    p[8..12].copy_from_slice(&original[8..12]);
    p[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    p
}

/// Bytes of a batch that [`rewritten_prefix`] replaces; the rest is stored as received.
pub const REWRITTEN_PREFIX_LEN: usize = 16;

/// Builds a valid uncompressed batch with the given values; used by tests and benchmarks
/// that need real RecordBatch v2 bytes without a Kafka client.
pub fn build_batch(base_timestamp: i64, producer: Option<(i64, i16, i32)>, values: &[&[u8]]) -> Bytes {
    let mut records = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut body = Vec::new();
        body.push(0u8); // record attributes
        write_varint(&mut body, 0); // timestamp delta (varlong, small)
        write_varint(&mut body, i as i32); // offset delta
        write_varint(&mut body, -1); // null key
        write_varint(&mut body, v.len() as i32);
        body.extend_from_slice(v);
        write_varint(&mut body, 0); // no headers
        write_varint(&mut records, body.len() as i32);
        records.extend_from_slice(&body);
    }
    let count = values.len() as i32;
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let mut b = Vec::with_capacity(HEADER_LEN + records.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_LEN - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(count - 1).to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

fn write_varint(out: &mut Vec<u8>, v: i32) {
    let mut z = ((v << 1) ^ (v >> 31)) as u32;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Bytes {
        build_batch(1_000, None, &[b"a", b"bb", b"ccc"])
    }

    #[test]
    fn valid_batch_parses() {
        let b = batch();
        let v = validate_batches(&b).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].header.record_count, 3);
        assert_eq!(v[0].header.last_offset_delta, 2);
        assert_eq!(v[0].bytes.len(), b.len());
    }

    #[test]
    fn two_batches_parse() {
        let mut both = batch().to_vec();
        both.extend_from_slice(&batch());
        assert_eq!(validate_batches(&Bytes::from(both)).unwrap().len(), 2);
    }

    #[test]
    fn each_defect_has_its_own_error() {
        let good = batch().to_vec();
        let mut crc = good.clone();
        let last = crc.len() - 1;
        crc[last] ^= 0xff;
        assert!(matches!(validate_batches(&Bytes::from(crc)), Err(BatchError::CrcMismatch { .. })));

        let mut magic = good.clone();
        magic[16] = 1;
        assert!(matches!(validate_batches(&Bytes::from(magic)), Err(BatchError::UnsupportedMagic { magic: 1, .. })));

        let mut neg = good.clone();
        neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(validate_batches(&Bytes::from(neg)), Err(BatchError::InvalidLength { length: -5, .. })));

        let mut long = good.clone();
        long[8..12].copy_from_slice(&(10_000i32).to_be_bytes());
        assert!(matches!(validate_batches(&Bytes::from(long)), Err(BatchError::LengthPastEnd { .. })));

        let zero = build_batch(0, None, &[]);
        assert!(matches!(validate_batches(&zero), Err(BatchError::InvalidRecordCount { count: 0, .. })));

        assert!(matches!(validate_batches(&Bytes::from(good[..30].to_vec())), Err(BatchError::TruncatedHeader { .. })));
        assert!(matches!(validate_batches(&Bytes::new()), Err(BatchError::Empty)));
    }

    #[test]
    fn varint_round_trip() {
        for v in [0, 1, -1, 63, -64, 300, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(read_varint(&out), Some((v, out.len())));
        }
    }
}
