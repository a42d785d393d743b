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

    /// The first offset of the newest epoch, if any.
    pub fn latest_start(&self) -> Option<i64> {
        self.entries.last().map(|e| e.1)
    }

    /// Forgets the epochs that begin at or after `end` (the log was truncated to end there),
    /// as Kafka's `truncateFromEnd`.
    pub fn truncate_from(&mut self, end: i64) {
        while self.entries.len() > 1 && self.entries.last().is_some_and(|&(_, start)| start >= end) {
            self.entries.pop();
        }
    }

    /// The checkpoint file's text, as Kafka's `leader-epoch-checkpoint`: a version line
    /// (`0`), the entry count, then `epoch start_offset` per line.
    pub fn encode(&self) -> String {
        let mut out = format!("0\n{}\n", self.entries.len());
        for (epoch, start) in &self.entries {
            out.push_str(&format!("{epoch} {start}\n"));
        }
        out
    }

    /// Parses [`LeaderEpochCache::encode`]'s text; `None` if it is not an intact checkpoint
    /// (wrong version, count or order).
    pub fn decode(text: &str) -> Option<LeaderEpochCache> {
        let mut lines = text.lines();
        if lines.next()?.trim() != "0" {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        let mut entries = Vec::with_capacity(count.min(1024));
        for line in lines.by_ref().take(count) {
            let (e, o) = line.trim().split_once(' ')?;
            let entry: (i32, i64) = (e.parse().ok()?, o.parse().ok()?);
            if entries.last().is_some_and(|&(pe, po): &(i32, i64)| entry.0 <= pe || entry.1 < po) {
                return None;
            }
            entries.push(entry);
        }
        (entries.len() == count && count > 0 && lines.next().is_none()).then_some(LeaderEpochCache { entries })
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
    fn checkpoint_text_round_trips_and_damage_is_refused() {
        let c = cache();
        assert_eq!(c.encode(), "0\n3\n0 0\n2 100\n5 250\n");
        assert_eq!(LeaderEpochCache::decode(&c.encode()), Some(c.clone()));
        for bad in ["", "1\n1\n0 0\n", "0\n2\n0 0\n", "0\n2\n3 0\n2 5\n", "0\n1\n0 x\n", "0\n0\n"] {
            assert_eq!(LeaderEpochCache::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn truncation_forgets_epochs_begun_past_the_new_end() {
        let mut c = cache();
        c.truncate_from(250);
        assert_eq!(c.entries, vec![(0, 0), (2, 100)]);
        c.truncate_from(0);
        assert_eq!(c.entries, vec![(0, 0)], "the oldest epoch stays");
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
