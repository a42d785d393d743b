//! [`Leadership`]: who leads a partition, at which epoch, with which replicas — and the pure
//! decisions made from it: whether a request's `current_leader_epoch` is served, fenced or
//! ahead of us, whether this broker may act as leader, and the high watermark as a function
//! of the in-sync replicas' durable ends. No I/O and no clocks, so every rule is unit-tested.

use strom_meta::PartitionMeta;

/// What a request sends as `current_leader_epoch` when it does not know the epoch (or its
/// version has no such field): no check is made.
pub const NO_EPOCH: i32 = -1;

/// Why a request may not use this partition (each is a Kafka error code, see
/// [`super::PartitionError::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request's epoch is older than the partition's: the client's metadata is stale
    /// (`FENCED_LEADER_EPOCH`, 74). It refreshes metadata and retries.
    #[error("leader epoch {sent} is older than the current epoch {current}")]
    FencedLeaderEpoch {
        /// The partition's leader epoch.
        current: i32,
        /// What the request sent.
        sent: i32,
    },
    /// The request's epoch is newer than ours: this broker has not yet heard of the leader
    /// change the client knows about (`UNKNOWN_LEADER_EPOCH`, 75). The client retries.
    #[error("leader epoch {sent} is newer than the current epoch {current}")]
    UnknownLeaderEpoch {
        /// The partition's leader epoch.
        current: i32,
        /// What the request sent.
        sent: i32,
    },
    /// This broker does not lead the partition (`NOT_LEADER_OR_FOLLOWER`, 6).
    #[error("this broker is not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if one is known.
        leader: Option<i32>,
    },
}

/// A partition's leadership as this broker knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// This broker's node id.
    pub me: i32,
    /// The leader's node id, if the partition has one.
    pub leader: Option<i32>,
    /// The current leader epoch (never decreases).
    pub leader_epoch: i32,
    /// The replica set.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// The partition epoch (raised at every leader or ISR change).
    pub partition_epoch: i32,
}

impl Leadership {
    /// This broker's view of a partition the metadata store describes.
    pub fn from_meta(me: i32, meta: &PartitionMeta) -> Leadership {
        Leadership {
            me,
            leader: meta.leader,
            leader_epoch: meta.leader_epoch,
            replicas: meta.replicas.clone(),
            isr: meta.isr.clone(),
            partition_epoch: meta.partition_epoch,
        }
    }

    /// Whether this broker leads the partition.
    pub fn is_leader(&self) -> bool {
        self.leader == Some(self.me)
    }

    /// Kafka's epoch check: a request that names an epoch (anything but [`NO_EPOCH`]) is
    /// served only at exactly the current one.
    pub fn check_epoch(&self, sent: i32) -> Result<(), Refusal> {
        let current = self.leader_epoch;
        if sent == NO_EPOCH || sent == current {
            Ok(())
        } else if sent < current {
            Err(Refusal::FencedLeaderEpoch { current, sent })
        } else {
            Err(Refusal::UnknownLeaderEpoch { current, sent })
        }
    }

    /// The epoch check, then leadership: what produce, consumer fetch, ListOffsets and
    /// OffsetForLeaderEpoch need. In Kafka's order, so a stale client learns its epoch is
    /// stale before it learns who leads.
    pub fn check_leader(&self, sent: i32) -> Result<(), Refusal> {
        self.check_epoch(sent)?;
        if self.is_leader() { Ok(()) } else { Err(Refusal::NotLeader { leader: self.leader }) }
    }

    /// The high watermark: the lowest durable end among the in-sync replicas, `end_of(id)`
    /// giving each one's durable end (the leader's own included). `None` while any in-sync
    /// replica's end is unknown (a leader that just took over), or the ISR is empty: then
    /// the high watermark must not move.
    pub fn high_watermark(&self, end_of: impl Fn(i32) -> Option<i64>) -> Option<i64> {
        let mut hw: Option<i64> = None;
        for &id in &self.isr {
            let end = end_of(id)?;
            hw = Some(hw.map_or(end, |h| h.min(end)));
        }
        hw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn led_by(leader: i32, epoch: i32) -> Leadership {
        Leadership {
            me: 1,
            leader: Some(leader),
            leader_epoch: epoch,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            partition_epoch: 0,
        }
    }

    #[test]
    fn the_current_epoch_or_none_is_served() {
        let l = led_by(1, 5);
        assert_eq!(l.check_epoch(5), Ok(()));
        assert_eq!(l.check_epoch(NO_EPOCH), Ok(()));
        assert_eq!(l.check_leader(5), Ok(()));
    }

    #[test]
    fn an_older_epoch_is_fenced_and_a_newer_one_unknown() {
        let l = led_by(1, 5);
        assert_eq!(l.check_epoch(4), Err(Refusal::FencedLeaderEpoch { current: 5, sent: 4 }));
        assert_eq!(l.check_epoch(0), Err(Refusal::FencedLeaderEpoch { current: 5, sent: 0 }));
        assert_eq!(l.check_epoch(6), Err(Refusal::UnknownLeaderEpoch { current: 5, sent: 6 }));
    }

    #[test]
    fn a_follower_refuses_leader_work_after_the_epoch_check() {
        let l = led_by(2, 5);
        assert!(!l.is_leader());
        assert_eq!(l.check_leader(5), Err(Refusal::NotLeader { leader: Some(2) }));
        assert_eq!(l.check_leader(NO_EPOCH), Err(Refusal::NotLeader { leader: Some(2) }));
        // A stale epoch is reported as such even where we do not lead.
        assert_eq!(l.check_leader(3), Err(Refusal::FencedLeaderEpoch { current: 5, sent: 3 }));
        let leaderless = Leadership { leader: None, ..led_by(2, 5) };
        assert_eq!(leaderless.check_leader(5), Err(Refusal::NotLeader { leader: None }));
    }

    #[test]
    fn high_watermark_is_the_lowest_durable_end_in_the_isr() {
        let l = led_by(1, 0);
        let ends = |id| match id {
            1 => Some(100),
            2 => Some(80),
            3 => Some(95),
            _ => None,
        };
        assert_eq!(l.high_watermark(ends), Some(80));
        // A replica outside the ISR does not hold it back.
        let shrunk = Leadership { isr: vec![1, 3], ..l.clone() };
        assert_eq!(shrunk.high_watermark(ends), Some(95));
        // An in-sync replica whose end is unknown keeps it where it is.
        assert_eq!(l.high_watermark(|id| if id == 2 { None } else { Some(100) }), None);
        assert_eq!(Leadership { isr: vec![], ..l }.high_watermark(ends), None);
        // A single node: its own durable end.
        let single =
            Leadership { me: 1, leader: Some(1), leader_epoch: 0, replicas: vec![1], isr: vec![1], partition_epoch: 0 };
        assert_eq!(single.high_watermark(|_| Some(42)), Some(42));
    }
}
