//! The journal's bytes on disk: file header, records, and the checkpoint file. All integers
//! are big-endian.
//!
//! ```text
//! file header (HEADER_LEN = 32 bytes):
//!   magic "SJN1" | version u16 = 1 | reserved u16 = 0 | first_jsn u64 | reserved 12 bytes = 0 | crc32c u32 of bytes 0..28
//! record:
//!   len u32 (bytes after this field) | crc32c u32 (of every byte after it) | jsn u64 | kind u8 |
//!   partition i32 | topic_len u8 | topic | payload
//!   kind 1 (batches):  payload = RecordBatch v2 bytes exactly as stored in the segment
//!   kind 2 (truncate): payload = offset i64 (the partition is being cut there; its earlier records are void)
//!   kind 3 (delete):   payload empty (the partition is being deleted; its earlier records are void)
//! checkpoint file:
//!   magic "SJC1" | jsn u64 | crc32c u32 of the 12 bytes before it
//! ```
//!
//! Records in a file carry consecutive journal sequence numbers (jsn) starting at the
//! header's `first_jsn`; a reader stops at the first record that is torn, fails its CRC or
//! breaks the sequence (a recycled file holds older records after the newest ones).

use bytes::Bytes;

/// Bytes of a journal file's header.
pub(crate) const HEADER_LEN: u64 = 32;
const FILE_MAGIC: &[u8; 4] = b"SJN1";
const VERSION: u16 = 1;
const CHECKPOINT_MAGIC: &[u8; 4] = b"SJC1";
/// Bytes of the checkpoint file.
pub(crate) const CHECKPOINT_LEN: usize = 16;
/// Bytes of a record before its topic: len, crc, jsn, kind, partition, topic_len.
pub(crate) const RECORD_FIXED_LEN: usize = 4 + 4 + 8 + 1 + 4 + 1;

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordBody {
    /// Stored batches of one append, in offset order.
    Batches(Bytes),
    /// The partition is being truncated at `offset` (see [`crate::PartitionLog::truncate_to`]):
    /// its segment was fsynced before this record was written, so its earlier records are
    /// void (replaying them could only put back what the truncation cuts).
    Truncate(i64),
    /// The partition is being deleted; as for a truncation, its earlier records are void.
    Delete,
}

impl RecordBody {
    /// Bytes of the payload this body is written as.
    pub(crate) fn payload_len(&self) -> usize {
        match self {
            RecordBody::Batches(b) => b.len(),
            RecordBody::Truncate(_) => 8,
            RecordBody::Delete => 0,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            RecordBody::Batches(_) => 1,
            RecordBody::Truncate(_) => 2,
            RecordBody::Delete => 3,
        }
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) jsn: u64,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) body: RecordBody,
}

/// A journal file's header for records starting at `first_jsn`.
pub(crate) fn encode_header(first_jsn: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(FILE_MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_be_bytes());
    h[8..16].copy_from_slice(&first_jsn.to_be_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_be_bytes());
    h
}

/// The `first_jsn` of a journal file header, or `None` if it is not an intact header.
pub(crate) fn decode_header(h: &[u8]) -> Option<u64> {
    if h.len() < HEADER_LEN as usize || &h[0..4] != FILE_MAGIC || h[4..6] != VERSION.to_be_bytes() {
        return None;
    }
    let crc = u32::from_be_bytes(h[28..32].try_into().ok()?);
    (crc32c::crc32c(&h[..28]) == crc).then(|| u64::from_be_bytes(h[8..16].try_into().expect("8 bytes")))
}

/// The fixed part and topic of a record whose payload is `payload_len` bytes hashing (with
/// `crc32c_append` from the header's hash) to what [`finish_crc`] needs. Returns the head
/// bytes with the length filled in and the CRC left zero; the caller computes the CRC over
/// `head[8..]` and the payload, then stores it with [`finish_crc`].
pub(crate) fn encode_head(jsn: u64, topic: &str, partition: i32, body: &RecordBody, payload_len: usize) -> Vec<u8> {
    debug_assert!(topic.len() <= 255, "topic names are at most 249 bytes");
    let len = RECORD_FIXED_LEN - 4 + topic.len() + payload_len;
    let mut h = Vec::with_capacity(RECORD_FIXED_LEN + topic.len());
    h.extend_from_slice(&(len as u32).to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes());
    h.extend_from_slice(&jsn.to_be_bytes());
    h.push(body.kind());
    h.extend_from_slice(&partition.to_be_bytes());
    h.push(topic.len() as u8);
    h.extend_from_slice(topic.as_bytes());
    h
}

/// Stores the CRC of a record into its head: `crc` covers `head[8..]` and the payload.
pub(crate) fn finish_crc(head: &mut [u8], crc: u32) {
    head[4..8].copy_from_slice(&crc.to_be_bytes());
}

/// A whole record as one buffer (control records, and tests).
pub(crate) fn encode_record(jsn: u64, topic: &str, partition: i32, body: &RecordBody) -> Vec<u8> {
    let payload: Vec<u8> = match body {
        RecordBody::Batches(b) => b.to_vec(),
        RecordBody::Truncate(o) => o.to_be_bytes().to_vec(),
        RecordBody::Delete => Vec::new(),
    };
    let mut r = encode_head(jsn, topic, partition, body, payload.len());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&r[8..]), &payload);
    finish_crc(&mut r, crc);
    r.extend_from_slice(&payload);
    r
}

/// Why decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Fewer bytes left than the record claims (or than a length field): a torn tail, or
    /// the end of what was ever written.
    Truncated,
    /// The bytes do not form a record (length out of range, CRC mismatch, unknown kind).
    Invalid(&'static str),
}

/// Decodes the record at the start of `buf`; returns it and its length in bytes.
/// `max_len` bounds a believable length field (the journal file size).
pub(crate) fn decode_record(buf: &Bytes, max_len: usize) -> Result<(Record, usize), Stop> {
    if buf.len() < 4 {
        return Err(Stop::Truncated);
    }
    let len = u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len < RECORD_FIXED_LEN - 4 || len > max_len {
        return Err(Stop::Invalid("record length out of range"));
    }
    if buf.len() < 4 + len {
        return Err(Stop::Truncated);
    }
    let crc = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
    if crc32c::crc32c(&buf[8..4 + len]) != crc {
        return Err(Stop::Invalid("record CRC mismatch"));
    }
    let jsn = u64::from_be_bytes(buf[8..16].try_into().expect("8 bytes"));
    let kind = buf[16];
    let partition = i32::from_be_bytes(buf[17..21].try_into().expect("4 bytes"));
    let topic_len = buf[21] as usize;
    let payload_at = RECORD_FIXED_LEN + topic_len;
    if payload_at > 4 + len {
        return Err(Stop::Invalid("topic past the record's end"));
    }
    let topic = std::str::from_utf8(&buf[RECORD_FIXED_LEN..payload_at])
        .map_err(|_| Stop::Invalid("topic is not UTF-8"))?
        .to_string();
    let payload = buf.slice(payload_at..4 + len);
    let body = match kind {
        1 => RecordBody::Batches(payload),
        2 if payload.len() == 8 => RecordBody::Truncate(i64::from_be_bytes(payload[..].try_into().expect("8 bytes"))),
        3 if payload.is_empty() => RecordBody::Delete,
        _ => return Err(Stop::Invalid("unknown record kind or payload size")),
    };
    Ok((Record { jsn, topic, partition, body }, 4 + len))
}

/// The checkpoint file's bytes for `jsn`.
pub(crate) fn encode_checkpoint(jsn: u64) -> [u8; CHECKPOINT_LEN] {
    let mut c = [0u8; CHECKPOINT_LEN];
    c[0..4].copy_from_slice(CHECKPOINT_MAGIC);
    c[4..12].copy_from_slice(&jsn.to_be_bytes());
    let crc = crc32c::crc32c(&c[..12]);
    c[12..16].copy_from_slice(&crc.to_be_bytes());
    c
}

/// The jsn of an intact checkpoint file.
pub(crate) fn decode_checkpoint(c: &[u8]) -> Option<u64> {
    if c.len() != CHECKPOINT_LEN || &c[0..4] != CHECKPOINT_MAGIC {
        return None;
    }
    let crc = u32::from_be_bytes(c[12..16].try_into().ok()?);
    (crc32c::crc32c(&c[..12]) == crc).then(|| u64::from_be_bytes(c[4..12].try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_caught() {
        for body in [RecordBody::Batches(Bytes::from_static(b"abcdef")), RecordBody::Truncate(42), RecordBody::Delete] {
            let r = Bytes::from(encode_record(7, "topic", 3, &body));
            let (rec, n) = decode_record(&r, 1 << 20).expect("decode");
            assert_eq!(n, r.len());
            assert_eq!(rec, Record { jsn: 7, topic: "topic".into(), partition: 3, body: body.clone() });
            for cut in 0..r.len() {
                assert!(decode_record(&r.slice(..cut), 1 << 20).is_err(), "a record cut at {cut} must not decode");
            }
            for i in 4..r.len() {
                let mut bad = r.to_vec();
                bad[i] ^= 0x40;
                assert!(decode_record(&Bytes::from(bad), 1 << 20).is_err(), "a flipped byte {i} must not decode");
            }
        }
        assert_eq!(
            decode_record(&Bytes::from(vec![0u8; 64]), 1 << 20),
            Err(Stop::Invalid("record length out of range"))
        );
    }

    #[test]
    fn headers_and_checkpoints_round_trip() {
        assert_eq!(decode_header(&encode_header(99)), Some(99));
        let mut h = encode_header(99);
        h[9] ^= 1;
        assert_eq!(decode_header(&h), None);
        assert_eq!(decode_checkpoint(&encode_checkpoint(5)), Some(5));
        assert_eq!(decode_checkpoint(&[0u8; CHECKPOINT_LEN]), None);
    }
}
