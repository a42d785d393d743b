//! [`GroupOffsets`]: one group's committed offsets in memory, and which of them have expired.
//! Pure: the actor feeds it durable changes and asks it what to expire.

use std::collections::{BTreeMap, BTreeSet};

use super::records::OffsetValue;

/// A topic-partition.
pub type TopicPartition = (String, i32);

/// One committed offset and where its record sits in the internal topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The value committed.
    pub value: OffsetValue,
    /// Offset of the record in the internal topic: of two changes to one partition, the later
    /// record wins, whatever order their durability was confirmed in.
    pub log_offset: i64,
}

/// The committed offsets of one group.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GroupOffsets {
    offsets: BTreeMap<TopicPartition, Committed>,
    /// Where each deletion applied since the last [`forget_deletions`](Self::forget_deletions)
    /// was written: durability is confirmed per write, not in log order, so an older value
    /// confirmed after a newer deletion must not come back.
    deleted: BTreeMap<TopicPartition, i64>,
}

impl GroupOffsets {
    /// Applies a durable change (`None`: deleted) written at `log_offset`. Changes older than
    /// the one applied already (value or deletion) are ignored.
    pub fn apply(&mut self, tp: TopicPartition, value: Option<OffsetValue>, log_offset: i64) {
        let newer = self.offsets.get(&tp).is_none_or(|c| c.log_offset < log_offset)
            && self.deleted.get(&tp).is_none_or(|d| *d < log_offset);
        if !newer {
            return;
        }
        match value {
            Some(value) => {
                self.deleted.remove(&tp);
                self.offsets.insert(tp, Committed { value, log_offset });
            }
            None => {
                self.offsets.remove(&tp);
                self.deleted.insert(tp, log_offset);
            }
        }
    }

    /// Drops the deletion marks: call when no write is waiting for its durability (and after
    /// a replay), since only a write still in flight can be older than a deletion applied.
    pub fn forget_deletions(&mut self) {
        self.deleted.clear();
    }

    /// The committed offset of one partition.
    pub fn get(&self, topic: &str, partition: i32) -> Option<&Committed> {
        self.offsets.get(&(topic.to_string(), partition))
    }

    /// Every committed offset, ordered by topic and partition.
    pub fn iter(&self) -> impl Iterator<Item = (&TopicPartition, &Committed)> {
        self.offsets.iter()
    }

    /// Number of committed partitions.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// True when nothing is committed.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Offsets that have expired at `now` (wall-clock ms) under `retention_ms`:
    /// - an empty group's offsets expire `retention_ms` after the later of their commit and
    ///   the moment the group became empty (`empty_since`);
    /// - a group with members keeps the offsets of topics it subscribes to; offsets of other
    ///   topics expire `retention_ms` after their commit (only known for consumer groups:
    ///   `subscribed` is `None` otherwise, and then nothing expires).
    pub fn expired(
        &self,
        now: i64,
        retention_ms: i64,
        empty_since: Option<i64>,
        subscribed: Option<&BTreeSet<String>>,
    ) -> Vec<TopicPartition> {
        self.offsets
            .iter()
            .filter(|((topic, _), c)| match (empty_since, subscribed) {
                (Some(since), _) => c.value.commit_timestamp.max(since).saturating_add(retention_ms) <= now,
                (None, Some(subs)) => {
                    !subs.contains(topic) && c.value.commit_timestamp.saturating_add(retention_ms) <= now
                }
                (None, None) => false,
            })
            .map(|(tp, _)| tp.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(offset: i64, ts: i64) -> OffsetValue {
        OffsetValue { offset, leader_epoch: -1, metadata: String::new(), commit_timestamp: ts }
    }

    /// A value confirmed after a newer deletion of the same partition stays deleted.
    #[test]
    fn an_older_value_confirmed_late_does_not_undo_a_deletion() {
        let mut o = GroupOffsets::default();
        let tp = ("t".to_string(), 0);
        o.apply(tp.clone(), None, 106);
        o.apply(
            tp.clone(),
            Some(OffsetValue { offset: 5, leader_epoch: -1, metadata: String::new(), commit_timestamp: 0 }),
            100,
        );
        assert!(o.get("t", 0).is_none());
        o.forget_deletions();
        o.apply(
            tp,
            Some(OffsetValue { offset: 7, leader_epoch: -1, metadata: String::new(), commit_timestamp: 0 }),
            110,
        );
        assert_eq!(o.get("t", 0).map(|c| c.value.offset), Some(7));
    }

    #[test]
    fn later_record_wins_whatever_the_order_of_application() {
        let mut g = GroupOffsets::default();
        let tp = ("t".to_string(), 0);
        g.apply(tp.clone(), Some(v(20, 0)), 11);
        g.apply(tp.clone(), Some(v(10, 0)), 10);
        assert_eq!(g.get("t", 0).map(|c| c.value.offset), Some(20));
        g.apply(tp.clone(), None, 9);
        assert!(g.get("t", 0).is_some(), "an older tombstone does not delete a newer commit");
        g.apply(tp.clone(), None, 12);
        assert!(g.is_empty());
    }

    #[test]
    fn expiry_follows_group_state() {
        let mut g = GroupOffsets::default();
        g.apply(("a".into(), 0), Some(v(1, 1_000)), 1);
        g.apply(("b".into(), 0), Some(v(1, 5_000)), 2);
        let ret = 10_000;
        // Empty since 2000: a expires at max(1000, 2000) + 10000 = 12000; b at 15000.
        assert!(g.expired(11_999, ret, Some(2_000), None).is_empty());
        assert_eq!(g.expired(12_000, ret, Some(2_000), None), vec![("a".to_string(), 0)]);
        assert_eq!(g.expired(15_000, ret, Some(2_000), None).len(), 2);
        // With members subscribed to a: only b can expire, by its commit time.
        let subs: BTreeSet<String> = ["a".to_string()].into();
        assert_eq!(g.expired(100_000, ret, None, Some(&subs)), vec![("b".to_string(), 0)]);
        assert!(g.expired(100_000, ret, None, None).is_empty());
    }
}
