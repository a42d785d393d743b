//! Idempotent-producer state of one partition: for each producer id, its epoch and the
//! sequence ranges and offsets of its last few batches, so a retried batch is answered with
//! its original offsets instead of being written twice (Kafka's `ProducerStateManager`).
//!
//! The state is rebuilt at startup from the newest snapshot at or below the log end plus a
//! replay of the batches after it. Snapshots are written when a segment rolls and when the
//! log closes cleanly, as `<offset:020>.snapshot`: magic `SPS2`, entry count u32, entries,
//! then CRC32C u32 (all big-endian). `SPS1` snapshots (entries without the last timestamp)
//! are still read.
//!
//! A producer's entry expires, as in Kafka, when its last batch's timestamp is older than
//! `producer.id.expiration.ms` or when retention has deleted its last batch; a producer that
//! comes back afterwards starts afresh (any sequence is accepted from a producer with no
//! state). Without this every short-lived idempotent producer (every Java producer, by
//! default) would stay in memory and in every snapshot for good.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;
use crate::error::{Error, Result};

/// How many recent batches per producer are remembered for duplicate detection; Kafka
/// clients keep at most 5 requests in flight per connection with idempotence on.
const BATCHES_KEPT: usize = 5;
const SNAPSHOT_MAGIC: &[u8; 4] = b"SPS2";
/// The first format: entries without `last_timestamp`.
const SNAPSHOT_MAGIC_V1: &[u8; 4] = b"SPS1";

/// Sequence range and offsets of one stored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// Max timestamp of the producer's last batch (what Kafka expires by); -1 when unknown
    /// (read from an `SPS1` snapshot), which only retention then expires.
    last_timestamp: i64,
}

/// The verdict on an idempotent batch before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqCheck {
    /// Write it.
    Append,
    /// Already stored: answer with these offsets, write nothing.
    Duplicate(BatchMeta),
}

/// Producer state of one partition (see the module docs for expiry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

impl ProducerStates {
    /// Checks a batch against the stored state without changing it.
    pub(crate) fn check(&self, h: &BatchHeader) -> Result<SeqCheck> {
        if h.producer_id < 0 || h.is_control() || h.base_sequence < 0 {
            return Ok(SeqCheck::Append);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // No state for this producer: any sequence starts it, as in Kafka since 2.5. Its
            // state may be gone with the batches that held it (retention, a topic deleted and
            // created again under a running producer), and refusing would be fatal to the
            // client (librdkafka treats it as a desynchronisation) for no stored duplicate.
            return Ok(SeqCheck::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(Error::InvalidProducerEpoch {
                producer_id: h.producer_id,
                received: h.producer_epoch,
                current: entry.epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            // A new epoch starts its sequences at 0.
            if h.base_sequence != 0 {
                return Err(Error::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    expected: 0,
                    received: h.base_sequence,
                });
            }
            return Ok(SeqCheck::Append);
        }
        let last_seq = h.last_sequence();
        if let Some(dup) = entry.batches.iter().find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq) {
            return Ok(SeqCheck::Duplicate(*dup));
        }
        let expected = entry.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if h.base_sequence != expected {
            return Err(Error::OutOfOrderSequence { producer_id: h.producer_id, expected, received: h.base_sequence });
        }
        Ok(SeqCheck::Append)
    }

    /// Records a stored batch (after a write, or while replaying the log at startup).
    /// `h.base_offset` must be the assigned offset.
    pub(crate) fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 || h.is_control() || h.base_sequence < 0 {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = h.max_timestamp;
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        while entry.batches.len() > BATCHES_KEPT {
            entry.batches.pop_front();
        }
    }

    /// Drops the producers whose last batch is older than `expiration_ms` at `now_ms`, or lies
    /// below `log_start` (deleted by retention). Returns how many were dropped.
    pub(crate) fn expire(&mut self, now_ms: i64, expiration_ms: u64, log_start: i64) -> usize {
        let before = self.producers.len();
        let expiration = i64::try_from(expiration_ms).unwrap_or(i64::MAX);
        self.producers.retain(|_, e| {
            let idle = e.last_timestamp >= 0 && now_ms.saturating_sub(e.last_timestamp) >= expiration;
            let deleted = e.batches.back().is_some_and(|b| b.last_offset < log_start);
            !(idle || deleted)
        });
        before - self.producers.len()
    }

    /// How many producers have state here.
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Serialises the state with a trailing CRC.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.producers[&id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_timestamp.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses a snapshot; `None` if it is torn or corrupt (the caller then replays further).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 12 {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let with_timestamps = match &body[..4] {
            m if m == SNAPSHOT_MAGIC => true,
            m if m == SNAPSHOT_MAGIC_V1 => false,
            _ => return None,
        };
        let mut r = Reader { b: &body[4..] };
        let count = r.u32()?;
        let mut producers = HashMap::with_capacity(count as usize);
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let last_timestamp = if with_timestamps { r.i64()? } else { -1 };
            let n = r.u8()?;
            let mut batches = VecDeque::with_capacity(n as usize);
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            producers.insert(id, ProducerEntry { epoch, batches, last_timestamp });
        }
        r.b.is_empty().then_some(ProducerStates { producers })
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        if self.b.len() < N {
            return None;
        }
        let (head, rest) = self.b.split_at(N);
        self.b = rest;
        head.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|a| a[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::build_batch;

    fn header(pid: i64, epoch: i16, seq: i32, n: usize, base_offset: i64) -> BatchHeader {
        let values: Vec<&[u8]> = vec![b"v"; n];
        let mut h = BatchHeader::parse(&build_batch(0, Some((pid, epoch, seq)), &values)).unwrap();
        h.base_offset = base_offset;
        h
    }

    /// Idle producers expire by their last batch's timestamp, and producers whose last batch
    /// retention deleted expire at once; an unknown timestamp (an `SPS1` snapshot) expires
    /// only the second way.
    #[test]
    fn producers_expire_by_age_and_by_retention() {
        let mut s = ProducerStates::default();
        let mut at = |pid: i64, ts: i64, base_offset: i64| {
            let mut h = header(pid, 0, 0, 1, base_offset);
            h.max_timestamp = ts;
            s.record(&h);
        };
        at(1, 1_000, 0); // idle since t=1000
        at(2, 9_000, 5); // recent
        at(3, 9_500, 1); // recent, but its last batch (offset 1) is below a log start of 2
        assert_eq!(s.expire(10_000, 5_000, 2), 2);
        assert_eq!(s.producers.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(s.expire(10_000, 5_000, 2), 0, "nothing more to expire");
        let mut unknown = ProducerStates::default();
        unknown.producers.insert(
            4,
            ProducerEntry {
                epoch: 0,
                batches: [BatchMeta { first_seq: 0, last_seq: 0, first_offset: 7, last_offset: 7 }].into(),
                last_timestamp: -1,
            },
        );
        assert_eq!(unknown.expire(i64::MAX, 1, 0), 0, "an unknown age does not expire");
        assert_eq!(unknown.expire(0, 1, 8), 1, "retention still does");
    }

    /// Snapshots of the first format (no timestamps) still load, with the age unknown.
    #[test]
    fn first_format_snapshots_still_load() {
        let mut v1 = Vec::new();
        v1.extend_from_slice(b"SPS1");
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&42i64.to_be_bytes());
        v1.extend_from_slice(&3i16.to_be_bytes());
        v1.push(1);
        for v in [0i32, 4] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        for v in [10i64, 14] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_be_bytes());
        let s = ProducerStates::decode(&v1).expect("an SPS1 snapshot decodes");
        let e = &s.producers[&42];
        assert_eq!((e.epoch, e.last_timestamp, e.batches[0].last_offset), (3, -1, 14));
        assert_eq!(ProducerStates::decode(&s.encode()).as_ref(), Some(&s), "and round-trips as SPS2");
    }

    #[test]
    fn sequences_duplicates_and_epochs() {
        let mut s = ProducerStates::default();
        let b0 = header(7, 0, 0, 3, 0);
        assert_eq!(s.check(&b0).unwrap(), SeqCheck::Append);
        s.record(&b0);
        // Retry of the same batch: duplicate with its original offsets.
        let retry = header(7, 0, 0, 3, 99);
        assert!(matches!(
            s.check(&retry).unwrap(),
            SeqCheck::Duplicate(BatchMeta { first_offset: 0, last_offset: 2, .. })
        ));
        // Gap: out of order.
        assert!(matches!(
            s.check(&header(7, 0, 5, 1, 3)),
            Err(Error::OutOfOrderSequence { expected: 3, received: 5, .. })
        ));
        // Next in sequence.
        assert_eq!(s.check(&header(7, 0, 3, 1, 3)).unwrap(), SeqCheck::Append);
        // Stale epoch fenced; new epoch must start at 0.
        s.record(&header(7, 2, 0, 1, 4));
        assert!(matches!(s.check(&header(7, 1, 1, 1, 5)), Err(Error::InvalidProducerEpoch { current: 2, .. })));
        assert!(matches!(s.check(&header(7, 3, 4, 1, 5)), Err(Error::OutOfOrderSequence { expected: 0, .. })));
        // A producer with no state here may start at any sequence, and is then held to it.
        let first = header(8, 0, 41, 2, 5);
        assert_eq!(s.check(&first).unwrap(), SeqCheck::Append);
        s.record(&first);
        assert!(matches!(
            s.check(&header(8, 0, 44, 1, 7)),
            Err(Error::OutOfOrderSequence { expected: 43, received: 44, .. })
        ));
        assert_eq!(s.check(&header(8, 0, 43, 1, 7)).unwrap(), SeqCheck::Append);
        let round = ProducerStates::decode(&s.encode()).unwrap();
        assert_eq!(round, s);
    }
}
