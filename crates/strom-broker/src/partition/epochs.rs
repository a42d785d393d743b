//! [`LeaderEpochCache`]: at which offset each leader epoch began, as Kafka's
//! `LeaderEpochFileCache`, and the OffsetForLeaderEpoch answer derived from it. A consumer
//! that resumes at an offset read under an older epoch asks for that epoch's end, and learns
//! whether the log it read from was truncated (librdkafka does this after a leader change).
//!
//! Pure: it holds `(epoch, start_offset)` pairs and answers; the partition feeds it.

/// An epoch or offset the cache cannot answer for (Kafka's `UNDEFINED_EPOCH` and
/// `UNDEFINED_EPOCH_OFFSET`).
pub const UNDEFINED: i64 = -1;

/// Each leader epoch and the first offset written in it, ascending in both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// A cache whose only epoch is `epoch`, begun at or before `start_offset`.
    pub fn starting(epoch: i32, start_offset: i64) -> LeaderEpochCache {
        LeaderEpochCache { entries: vec![(epoch, start_offset)] }
    }

    /// The newest epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` began at `start_offset`. An epoch not newer than the latest is
    /// ignored (batches of the current epoch keep arriving); a newer one whose start is
    /// behind an existing entry's start replaces those entries (a truncated log re-led).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) {
        if self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return;
        }
        while self.entries.last().is_some_and(|&(_, start)| start > start_offset) {
            self.entries.pop();
        }
        self.entries.push((epoch, start_offset));
    }

    /// OffsetForLeaderEpoch: for the requested epoch, `(epoch, end_offset)` where
    /// `end_offset` is the first offset of the next newer epoch (or `log_end_offset` when the
    /// requested epoch is the latest) and `epoch` the largest known epoch not above the
    /// requested one. `(-1, -1)` for an epoch newer than every known one, or for
    /// [`UNDEFINED`]; for an epoch older than every known one, the requested epoch and the
    /// start of the oldest known epoch (Kafka's rules, `LeaderEpochFileCache.endOffsetFor`).
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        let undefined = (UNDEFINED as i32, UNDEFINED);
        if i64::from(requested) == UNDEFINED {
            return undefined;
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let Some(&(_, higher_start)) = self.entries.iter().find(|e| e.0 > requested) else {
            return undefined;
        };
        match self.entries.iter().rev().find(|e| e.0 <= requested) {
            Some(&(floor, _)) => (floor, higher_start),
            None => (requested, higher_start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> LeaderEpochCache {
        let mut c = LeaderEpochCache::starting(0, 0);
        c.assign(2, 100);
        c.assign(5, 250);
        c
    }

    #[test]
    fn the_latest_epoch_ends_at_the_log_end() {
        assert_eq!(cache().end_offset_for(5, 300), (5, 300));
        assert_eq!(LeaderEpochCache::starting(0, 0).end_offset_for(0, 42), (0, 42));
    }

    #[test]
    fn an_older_epoch_ends_where_the_next_begins() {
        let c = cache();
        assert_eq!(c.end_offset_for(0, 300), (0, 100));
        assert_eq!(c.end_offset_for(2, 300), (2, 250));
        // An epoch between known ones: the largest known below it, and the next one's start.
        assert_eq!(c.end_offset_for(3, 300), (2, 250));
        assert_eq!(c.end_offset_for(1, 300), (0, 100));
    }

    #[test]
    fn unknown_epochs() {
        let c = cache();
        assert_eq!(c.end_offset_for(6, 300), (-1, -1), "newer than any known epoch");
        assert_eq!(c.end_offset_for(-1, 300), (-1, -1));
        let later = LeaderEpochCache::starting(3, 40);
        assert_eq!(later.end_offset_for(1, 90), (1, 40), "older than any known epoch");
    }

    #[test]
    fn assign_ignores_old_epochs_and_replaces_truncated_ones() {
        let mut c = cache();
        c.assign(5, 400);
        c.assign(4, 500);
        assert_eq!(c, cache(), "the current or an older epoch changes nothing");
        c.assign(6, 200); // a new leader whose log ends before epoch 5 began
        assert_eq!(c.entries, vec![(0, 0), (2, 100), (6, 200)]);
        assert_eq!(c.latest_epoch(), Some(6));
    }
}
