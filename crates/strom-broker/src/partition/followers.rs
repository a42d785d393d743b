//! [`Followers`]: what a partition leader knows of each follower — how far its log is durable
//! and when it was last caught up — and the ISR decisions made from it (Kafka's
//! `Replica.updateFetchState`, `isCaughtUp`, and the ISR shrink and expand rules). Pure: the
//! caller passes the clock, so every rule is unit-tested.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One follower, as its leader saw it in the current leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// Its durable log end: a follower fetches only once what it appended is fsynced, so
    /// the offset it fetches from is durable on it. `None` until it fetched in this epoch.
    pub end: Option<i64>,
    /// When it last had everything the leader had (Kafka's `lastCaughtUpTimeMs`).
    pub last_caught_up: Instant,
    /// When it last fetched, and the leader's log end at that moment.
    last_fetch: Option<(Instant, i64)>,
}

/// The followers of a partition this broker leads.
#[derive(Debug, Clone, Default)]
pub struct Followers {
    by_id: HashMap<i32, FollowerProgress>,
}

impl Followers {
    /// Forgets every follower's progress (a new leader epoch): ends are unknown until each
    /// fetches, and each gets a full lag allowance from `now` before it can be dropped from
    /// the ISR.
    pub fn reset(&mut self, replicas: &[i32], me: i32, now: Instant) {
        self.by_id = replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| (*r, FollowerProgress { end: None, last_caught_up: now, last_fetch: None }))
            .collect();
    }

    /// Follows a change of the replica set within an epoch (a reassignment adding or removing
    /// replicas): followers still listed keep their progress, new ones start unknown with a
    /// full lag allowance from `now`, and those gone are forgotten.
    pub fn set_replicas(&mut self, replicas: &[i32], me: i32, now: Instant) {
        self.by_id.retain(|id, _| replicas.contains(id));
        for r in replicas.iter().filter(|r| **r != me) {
            self.by_id.entry(*r).or_insert(FollowerProgress { end: None, last_caught_up: now, last_fetch: None });
        }
    }

    /// Records a fetch by `id` from `fetch_offset` when the leader's log ended at
    /// `leader_end`. It was caught up at this fetch if it asked from the log end, or at its
    /// previous fetch if it now asks from where the log ended then (Kafka's rule: it had
    /// everything as of that moment). Returns `false` for a broker that is not a follower.
    pub fn record_fetch(&mut self, id: i32, fetch_offset: i64, leader_end: i64, now: Instant) -> bool {
        let Some(f) = self.by_id.get_mut(&id) else { return false };
        let offset = fetch_offset.min(leader_end);
        f.end = Some(offset);
        if offset >= leader_end {
            f.last_caught_up = now;
        } else if let Some((at, end_then)) = f.last_fetch {
            if offset >= end_then {
                f.last_caught_up = f.last_caught_up.max(at);
            }
        }
        f.last_fetch = Some((now, leader_end));
        true
    }

    /// Follower `id`'s durable end, if it fetched in this epoch.
    pub fn end_of(&self, id: i32) -> Option<i64> {
        self.by_id.get(&id).and_then(|f| f.end)
    }

    /// Follower `id`'s progress.
    pub fn get(&self, id: i32) -> Option<&FollowerProgress> {
        self.by_id.get(&id)
    }

    /// The ISR without the followers not caught up within `max_lag` of `now` (Kafka's
    /// `replica.lag.time.max.ms`). The leader `me` always stays. `None` when nobody lags.
    pub fn shrunk_isr(&self, isr: &[i32], me: i32, now: Instant, max_lag: Duration) -> Option<Vec<i32>> {
        let lagging = |id: &i32| {
            *id != me && self.by_id.get(id).is_some_and(|f| now.saturating_duration_since(f.last_caught_up) > max_lag)
        };
        if !isr.iter().any(lagging) {
            return None;
        }
        Some(isr.iter().copied().filter(|id| !lagging(id)).collect())
    }

    /// The ISR with follower `id` added, if it is out of it and has caught up: its durable
    /// end is at or past the high watermark and past the start of the current leader epoch
    /// (so its log is the leader's up to there, Kafka's `isFollowerInSync`).
    pub fn grown_isr(&self, isr: &[i32], id: i32, high_watermark: i64, epoch_start: i64) -> Option<Vec<i32>> {
        if isr.contains(&id) {
            return None;
        }
        let end = self.end_of(id)?;
        if end < high_watermark || end < epoch_start {
            return None;
        }
        let mut grown = isr.to_vec();
        grown.push(id);
        grown.sort_unstable();
        Some(grown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn followers(now: Instant) -> Followers {
        let mut f = Followers::default();
        f.reset(&[1, 2, 3], 1, now);
        f
    }

    #[test]
    fn ends_are_unknown_until_a_follower_fetches_and_capped_at_the_leader_end() {
        let t0 = Instant::now();
        let mut f = followers(t0);
        assert_eq!(f.end_of(2), None);
        assert!(f.record_fetch(2, 40, 50, t0));
        assert_eq!(f.end_of(2), Some(40));
        assert!(f.record_fetch(3, 90, 50, t0), "a follower ahead of a new leader is capped");
        assert_eq!(f.end_of(3), Some(50));
        assert!(!f.record_fetch(7, 10, 50, t0), "not a replica");
        assert_eq!(f.end_of(1), None, "the leader is not its own follower");
    }

    #[test]
    fn a_follower_that_keeps_up_stays_and_one_that_stops_leaves_after_the_lag_allowance() {
        let t0 = Instant::now();
        let lag = Duration::from_secs(10);
        let mut f = followers(t0);
        // Follower 2 reaches the log end each time; follower 3 stops fetching.
        f.record_fetch(2, 100, 100, t0 + Duration::from_secs(5));
        f.record_fetch(3, 20, 100, t0 + Duration::from_secs(5));
        assert_eq!(f.shrunk_isr(&[1, 2, 3], 1, t0 + Duration::from_secs(9), lag), None);
        f.record_fetch(2, 150, 160, t0 + Duration::from_secs(11));
        assert_eq!(f.shrunk_isr(&[1, 2, 3], 1, t0 + Duration::from_secs(11), lag), Some(vec![1, 2]));
        // Follower 2 asks from where the log ended at its previous fetch: caught up as of then.
        f.record_fetch(2, 160, 200, t0 + Duration::from_secs(20));
        assert_eq!(f.get(2).map(|p| p.last_caught_up), Some(t0 + Duration::from_secs(11)));
        assert_eq!(f.shrunk_isr(&[1, 2], 1, t0 + Duration::from_secs(20), lag), None);
    }

    #[test]
    fn a_replica_set_change_keeps_the_progress_of_followers_that_stay() {
        let t0 = Instant::now();
        let mut f = followers(t0);
        f.record_fetch(2, 40, 50, t0);
        f.set_replicas(&[1, 2, 4], 1, t0 + Duration::from_secs(1));
        assert_eq!(f.end_of(2), Some(40), "kept");
        assert!(f.get(3).is_none(), "removed");
        assert_eq!(f.get(4).map(|p| (p.end, p.last_caught_up)), Some((None, t0 + Duration::from_secs(1))));
        assert!(f.get(1).is_none(), "the leader is not its own follower");
    }

    #[test]
    fn a_follower_rejoins_only_at_the_high_watermark_and_in_the_current_epoch() {
        let t0 = Instant::now();
        let mut f = followers(t0);
        assert_eq!(f.grown_isr(&[1, 2], 3, 100, 50), None, "no fetch yet");
        f.record_fetch(3, 90, 120, t0);
        assert_eq!(f.grown_isr(&[1, 2], 3, 100, 50), None, "below the high watermark");
        f.record_fetch(3, 100, 120, t0);
        assert_eq!(f.grown_isr(&[1, 2], 3, 100, 110), None, "before the epoch began");
        assert_eq!(f.grown_isr(&[1, 2], 3, 100, 50), Some(vec![1, 2, 3]));
        assert_eq!(f.grown_isr(&[1, 2, 3], 3, 100, 50), None, "already in");
    }
}
