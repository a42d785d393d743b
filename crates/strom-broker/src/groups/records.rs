//! The records of the internal `__consumer_offsets` topic, in Kafka's own layout (so Kafka's
//! tools could read them), and the RecordBatch v2 bytes they travel in.
//!
//! Keys (all integers big-endian, strings as `i16 length + UTF-8`, nullable strings with
//! length -1 for null, bytes as `i32 length + bytes`):
//! ```text
//! offset commit key   : version i16 = 1 | group string | topic string | partition i32
//! group metadata key  : version i16 = 2 | group string
//! ```
//! Values (a null value is a tombstone: the offset or group is deleted):
//! ```text
//! offset commit value : version i16 = 3 | offset i64 | leader_epoch i32 | metadata string
//!                       | commit_timestamp i64
//! group metadata value: version i16 = 3 | protocol_type string | generation i32
//!                       | protocol nullable string | leader nullable string
//!                       | current_state_timestamp i64 | member count i32, then per member:
//!                         member_id string | group_instance_id nullable string | client_id string
//!                         | client_host string | rebalance_timeout i32 | session_timeout i32
//!                         | subscription bytes | assignment bytes
//! ```
//! Decoding also accepts Kafka's older versions that Strom does not write (offset key 0, offset
//! values 1 and 2 with their extra fields skipped, group values 0..=2).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::engine::{GroupRecord, MemberRecord};

/// One committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset the group will consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// Free-form metadata from the client.
    pub metadata: String,
    /// Wall-clock time of the commit.
    pub commit_timestamp: i64,
}

/// A decoded record of the internal topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalRecord {
    /// A committed offset (`None`: deleted).
    Offset {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The offset, or `None` for a tombstone.
        value: Option<OffsetValue>,
    },
    /// A group's metadata (`None`: the group was deleted).
    Group {
        /// Group id.
        group: String,
        /// The record, or `None` for a tombstone.
        value: Option<GroupRecord>,
    },
}

/// Why a record of the internal topic does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable __consumer_offsets record: {0}")]
pub struct DecodeError(pub String);

fn err(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

fn put_str(b: &mut BytesMut, s: &str) {
    // Group ids, topics and member ids are bounded (group id by config, the rest by the
    // protocol's own i16 lengths), so the length always fits.
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    b.put_i16(len);
    b.put_slice(&s.as_bytes()[..len as usize]);
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

fn need(b: &Bytes, n: usize, what: &str) -> Result<(), DecodeError> {
    if b.remaining() < n { Err(err(format!("truncated {what}"))) } else { Ok(()) }
}

fn get_i16(b: &mut Bytes, what: &str) -> Result<i16, DecodeError> {
    need(b, 2, what)?;
    Ok(b.get_i16())
}

fn get_i32(b: &mut Bytes, what: &str) -> Result<i32, DecodeError> {
    need(b, 4, what)?;
    Ok(b.get_i32())
}

fn get_i64(b: &mut Bytes, what: &str) -> Result<i64, DecodeError> {
    need(b, 8, what)?;
    Ok(b.get_i64())
}

fn get_opt_str(b: &mut Bytes, what: &str) -> Result<Option<String>, DecodeError> {
    let len = get_i16(b, what)?;
    if len < 0 {
        return Ok(None);
    }
    need(b, len as usize, what)?;
    let raw = b.split_to(len as usize);
    String::from_utf8(raw.to_vec()).map(Some).map_err(|_| err(format!("{what} is not UTF-8")))
}

fn get_str(b: &mut Bytes, what: &str) -> Result<String, DecodeError> {
    get_opt_str(b, what)?.ok_or_else(|| err(format!("{what} is null")))
}

fn get_bytes(b: &mut Bytes, what: &str) -> Result<Bytes, DecodeError> {
    let len = get_i32(b, what)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(b, len as usize, what)?;
    Ok(b.split_to(len as usize))
}

/// The key of a committed offset.
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::with_capacity(10 + group.len() + topic.len());
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

/// The value of a committed offset.
pub fn offset_value(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::with_capacity(24 + v.metadata.len());
    b.put_i16(3);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp);
    b.freeze()
}

/// The key of a group's metadata.
pub fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + group.len());
    b.put_i16(2);
    put_str(&mut b, group);
    b.freeze()
}

/// The value of a group's metadata.
pub fn group_value(g: &GroupRecord) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(3);
    put_str(&mut b, &g.protocol_type);
    b.put_i32(g.generation);
    put_opt_str(&mut b, g.protocol_name.as_deref());
    put_opt_str(&mut b, g.leader.as_deref());
    b.put_i64(g.state_timestamp);
    b.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_str(&mut b, &m.member_id);
        put_opt_str(&mut b, m.group_instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// Decodes one record's key and value.
pub fn decode(key: Option<&Bytes>, value: Option<&Bytes>) -> Result<InternalRecord, DecodeError> {
    let mut k = key.cloned().ok_or_else(|| err("null key"))?;
    let version = get_i16(&mut k, "key version")?;
    match version {
        0 | 1 => {
            let group = get_str(&mut k, "group")?;
            let topic = get_str(&mut k, "topic")?;
            let partition = get_i32(&mut k, "partition")?;
            let value = value.map(|v| decode_offset_value(v.clone())).transpose()?;
            Ok(InternalRecord::Offset { group, topic, partition, value })
        }
        2 => {
            let group = get_str(&mut k, "group")?;
            let value = value.map(|v| decode_group_value(v.clone())).transpose()?;
            Ok(InternalRecord::Group { group, value })
        }
        v => Err(err(format!("unknown key version {v}"))),
    }
}

fn decode_offset_value(mut v: Bytes) -> Result<OffsetValue, DecodeError> {
    let version = get_i16(&mut v, "offset value version")?;
    if !(0..=3).contains(&version) {
        return Err(err(format!("unknown offset value version {version}")));
    }
    let offset = get_i64(&mut v, "offset")?;
    let leader_epoch = if version >= 3 { get_i32(&mut v, "leader epoch")? } else { -1 };
    let metadata = get_str(&mut v, "metadata")?;
    let commit_timestamp = get_i64(&mut v, "commit timestamp")?;
    if version == 1 {
        let _expire = get_i64(&mut v, "expire timestamp")?;
    }
    Ok(OffsetValue { offset, leader_epoch, metadata, commit_timestamp })
}

fn decode_group_value(mut v: Bytes) -> Result<GroupRecord, DecodeError> {
    let version = get_i16(&mut v, "group value version")?;
    if !(0..=4).contains(&version) {
        return Err(err(format!("unknown group value version {version}")));
    }
    let protocol_type = get_str(&mut v, "protocol type")?;
    let generation = get_i32(&mut v, "generation")?;
    let protocol_name = get_opt_str(&mut v, "protocol")?;
    let leader = get_opt_str(&mut v, "leader")?;
    let state_timestamp = if version >= 2 { get_i64(&mut v, "state timestamp")? } else { -1 };
    let count = get_i32(&mut v, "member count")?;
    let mut members = Vec::with_capacity(count.clamp(0, 1024) as usize);
    for _ in 0..count.max(0) {
        let member_id = get_str(&mut v, "member id")?;
        let group_instance_id = if version >= 3 { get_opt_str(&mut v, "group instance id")? } else { None };
        let client_id = get_str(&mut v, "client id")?;
        let client_host = get_str(&mut v, "client host")?;
        let rebalance_timeout_ms = if version >= 1 { get_i32(&mut v, "rebalance timeout")? } else { -1 };
        let session_timeout_ms = get_i32(&mut v, "session timeout")?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 { session_timeout_ms } else { rebalance_timeout_ms };
        let subscription = get_bytes(&mut v, "subscription")?;
        let assignment = get_bytes(&mut v, "assignment")?;
        members.push(MemberRecord {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupRecord { protocol_type, generation, protocol_name, leader, state_timestamp, members })
}

/// Encodes key/value pairs as one uncompressed RecordBatch v2, ready for `PartitionLog::append`.
pub fn build_batch(records: &[(Bytes, Option<Bytes>)], timestamp: i64) -> Result<Bytes, DecodeError> {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp,
            key: Some(k.clone()),
            value: v.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, &recs, &opts).map_err(|e| err(format!("encoding a batch: {e:#}")))?;
    Ok(buf.freeze())
}

/// A stored record: its offset, key and value.
pub type StoredRecord = (i64, Option<Bytes>, Option<Bytes>);

/// Decodes the records of stored batches as `(offset, key, value)`, skipping records before
/// `from` (a read returns whole batches, so the first may start earlier).
pub fn decode_batches(mut bytes: Bytes, from: i64) -> Result<Vec<StoredRecord>, DecodeError> {
    let sets =
        RecordBatchDecoder::decode_all(&mut bytes).map_err(|e| err(format!("decoding stored batches: {e:#}")))?;
    Ok(sets
        .into_iter()
        .flat_map(|s| s.records)
        .filter(|r| r.offset >= from && !r.control)
        .map(|r| (r.offset, r.key, r.value))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> GroupRecord {
        GroupRecord {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol_name: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: 1234,
            members: vec![MemberRecord {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        }
    }

    #[test]
    fn records_round_trip_through_a_batch() {
        let off = OffsetValue { offset: 42, leader_epoch: 3, metadata: "meta".into(), commit_timestamp: 99 };
        let records = vec![
            (offset_key("g", "t", 5), Some(offset_value(&off))),
            (offset_key("g", "t", 6), None),
            (group_key("g"), Some(group_value(&group()))),
            (group_key("h"), None),
        ];
        let batch = build_batch(&records, 1_000).expect("encodes");
        strom_log::validate_batches(&batch).expect("the log accepts it");
        let decoded = decode_batches(batch, 0).expect("decodes");
        let got: Vec<InternalRecord> =
            decoded.iter().map(|(_, k, v)| decode(k.as_ref(), v.as_ref()).expect("record decodes")).collect();
        assert_eq!(
            got,
            vec![
                InternalRecord::Offset { group: "g".into(), topic: "t".into(), partition: 5, value: Some(off) },
                InternalRecord::Offset { group: "g".into(), topic: "t".into(), partition: 6, value: None },
                InternalRecord::Group { group: "g".into(), value: Some(group()) },
                InternalRecord::Group { group: "h".into(), value: None },
            ]
        );
        assert_eq!(decoded.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: [&[u8]; 5] = [b"", b"\x00", b"\x00\x09abc", b"\x00\x01\x00\x05ab", b"\x00\x02\xff\xff"];
        for k in cases {
            assert!(decode(Some(&Bytes::from_static(k)), None).is_err(), "{k:?}");
        }
        let key = offset_key("g", "t", 0);
        assert!(decode(Some(&key), Some(&Bytes::from_static(b"\x00\x03\x00"))).is_err());
        assert!(decode(None, None).is_err());
        for cut in 0..group_value(&group()).len() {
            let v = group_value(&group()).slice(..cut);
            assert!(decode(Some(&group_key("g")), Some(&v)).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn kafka_offset_value_v1_decodes() {
        let mut v = BytesMut::new();
        v.put_i16(1);
        v.put_i64(10);
        put_str(&mut v, "");
        v.put_i64(5);
        v.put_i64(6);
        let r = decode(Some(&offset_key("g", "t", 0)), Some(&v.freeze())).expect("decodes");
        let InternalRecord::Offset { value: Some(o), .. } = r else { panic!() };
        assert_eq!((o.offset, o.leader_epoch, o.commit_timestamp), (10, -1, 5));
    }
}
