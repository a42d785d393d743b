//! [`OffsetsLog`]: the internal `__consumer_offsets` topic as the coordinator uses it: which
//! partition holds a group, which partitions this broker coordinates (those it leads),
//! appending records as leader, and replaying partitions when it starts coordinating them.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use bytes::Bytes;
use strom_log::ReadBound;

use super::records::{self, InternalRecord};
use crate::error::{Error, Result};
use crate::partition::Partition;

/// Name of the internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// True for topics clients must not see in topic listings (they still get them by name).
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC
}

/// Bytes read per step while replaying the internal topic at startup.
const REPLAY_READ_BYTES: usize = 4 * 1024 * 1024;

/// The partitions of the internal topic.
#[derive(Debug, Clone)]
pub struct OffsetsLog {
    /// By partition index; `None` where this broker holds no replica.
    partitions: Arc<RwLock<Vec<Option<Arc<Partition>>>>>,
    /// The partitions whose groups this broker coordinates: those it leads and has replayed.
    /// A group stored elsewhere gets `NOT_COORDINATOR`.
    coordinated: Arc<RwLock<BTreeSet<usize>>>,
}

/// Where an append landed: the partition to wait on and the offset of each record.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The partition written to.
    pub partition: Arc<Partition>,
    /// The leader epoch it was written in.
    pub epoch: i32,
    /// The offset each record got, in the order given.
    pub offsets: Vec<i64>,
    /// Offset of the last record.
    pub last_offset: i64,
}

impl Appended {
    /// Resolves once every record is committed: durable on every in-sync replica of the
    /// partition (on a single node, fsynced). Fails if this broker stops leading first.
    pub async fn wait(&self) -> Result<()> {
        self.partition.wait_committed(self.last_offset, self.epoch).await.map_err(|e| match e {
            crate::partition::PartitionError::Log(e) => Error::Log(e),
            e => Error::InvalidRequest(e.to_string()),
        })
    }
}

/// Most bytes of records put in one batch; more are split over several batches so no batch
/// comes near the internal topic's `max.message.bytes` (1 MiB by default).
const MAX_BATCH_BYTES: usize = 256 * 1024;

impl OffsetsLog {
    /// Wraps the partitions of the internal topic, in partition order (`None` where this
    /// broker holds no replica). Nothing is coordinated until [`OffsetsLog::set_coordinated`].
    pub fn new(partitions: Vec<Option<Arc<Partition>>>) -> OffsetsLog {
        debug_assert!(!partitions.is_empty());
        debug_assert!(partitions.iter().enumerate().all(|(i, p)| p.as_ref().is_none_or(|p| p.index() == i as i32)));
        OffsetsLog { partitions: Arc::new(RwLock::new(partitions)), coordinated: Arc::default() }
    }

    fn read(&self) -> RwLockReadGuard<'_, Vec<Option<Arc<Partition>>>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of partitions (held here or not).
    pub fn partition_count(&self) -> usize {
        self.read().len()
    }

    /// Partition `p`, if this broker holds it.
    pub fn partition(&self, p: usize) -> Option<Arc<Partition>> {
        self.read().get(p).cloned().flatten()
    }

    /// Takes partition `p` (newly assigned to this broker, or its partition object renewed).
    pub fn adopt(&self, p: usize, partition: Arc<Partition>) {
        let mut parts = self.partitions.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = parts.get_mut(p) {
            *slot = Some(partition);
        }
    }

    /// The held partitions this broker leads now.
    pub fn led(&self) -> BTreeSet<usize> {
        self.read()
            .iter()
            .enumerate()
            .filter(|(_, p)| p.as_ref().is_some_and(|p| p.leadership().is_leader()))
            .map(|(i, _)| i)
            .collect()
    }

    /// The partitions whose groups this broker coordinates.
    pub fn coordinated(&self) -> BTreeSet<usize> {
        self.coordinated.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts or stops coordinating the groups of partition `p`.
    pub fn set_coordinated(&self, p: usize, on: bool) {
        let mut c = self.coordinated.write().unwrap_or_else(|e| e.into_inner());
        if on {
            c.insert(p);
        } else {
            c.remove(&p);
        }
    }

    /// Whether this broker coordinates `group`: it leads the partition storing it and has
    /// loaded that partition's groups.
    pub fn is_local(&self, group: &str) -> bool {
        self.coordinated.read().unwrap_or_else(|p| p.into_inner()).contains(&self.partition_for(group))
    }

    /// The partition holding `group`'s records: Java's `String.hashCode` of the group id, as
    /// Kafka's `partitionFor`, so the layout matches Kafka's for the same partition count.
    pub fn partition_for(&self, group: &str) -> usize {
        partition_for(group, self.partition_count())
    }

    /// Appends `records` for `group` as the partition's leader (as one batch, or several if
    /// they are large); [`Appended::wait`] says when they are committed. `records` must not be
    /// empty; this broker must coordinate the group.
    pub fn append(&self, group: &str, records: &[(Bytes, Option<Bytes>)], now_wall_ms: i64) -> Result<Appended> {
        let p = self.partition_for(group);
        let partition = match self.partition(p) {
            Some(part) if self.is_local(group) => part,
            _ => return Err(Error::InvalidRequest(format!("this broker does not coordinate group {group:?}"))),
        };
        let mut epoch = -1;
        let mut offsets = Vec::with_capacity(records.len());
        let mut start = 0;
        while start < records.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < records.len() && (end == start || bytes < MAX_BATCH_BYTES) {
                bytes += records[end].0.len() + records[end].1.as_ref().map_or(0, Bytes::len) + 24;
                end += 1;
            }
            let batch = records::build_batch(&records[start..end], now_wall_ms)
                .map_err(|e| Error::InvalidRequest(e.to_string()))?;
            let (info, at) = partition.append_as_leader(batch).map_err(|e| match e {
                crate::partition::PartitionError::Log(e) => Error::Log(e),
                e => Error::InvalidRequest(e.to_string()),
            })?;
            epoch = at;
            debug_assert!(!info.duplicate, "coordinator batches carry no producer id");
            debug_assert_eq!(info.last_offset - info.base_offset + 1, (end - start) as i64);
            offsets.extend(info.base_offset..=info.last_offset);
            start = end;
        }
        let last_offset =
            offsets.last().copied().ok_or_else(|| Error::InvalidRequest("empty append to the offsets topic".into()))?;
        Ok(Appended { partition, epoch, offsets, last_offset })
    }

    /// Reads every partition from its start and hands each record, decoded, to `apply` with
    /// its partition and offset. A record that does not decode is logged and skipped: the log
    /// engine has already checked its CRC, so it is a record this build cannot read, and one
    /// unreadable record must not keep the broker from starting.
    pub fn replay(
        &self,
        only: Option<&[usize]>,
        mut apply: impl FnMut(usize, i64, InternalRecord),
    ) -> Result<ReplayStats> {
        let mut stats = ReplayStats::default();
        let logs: Vec<(usize, strom_log::PartitionLog)> = self
            .read()
            .iter()
            .enumerate()
            .filter(|(p, _)| only.is_none_or(|o| o.contains(p)))
            .filter_map(|(p, l)| l.as_ref().map(|l| (p, l.log().clone())))
            .collect();
        for (p, log) in &logs {
            let p = *p;
            let mut next = log.log_start_offset();
            let end = log.log_end_offset();
            while next < end {
                let read = log.read(next, REPLAY_READ_BYTES, ReadBound::LogEnd)?;
                if read.records.is_empty() {
                    break;
                }
                let decoded = records::decode_batches(read.records, next).map_err(|e| Error::CorruptMetadata {
                    path: log.dir().to_path_buf(),
                    reason: format!("at offset {next}: {e}"),
                })?;
                let Some(last) = decoded.last().map(|r| r.0) else { break };
                for (offset, key, value) in decoded {
                    match records::decode(key.as_ref(), value.as_ref()) {
                        Ok(r) => {
                            stats.records += 1;
                            apply(p, offset, r);
                        }
                        Err(e) => {
                            stats.skipped += 1;
                            tracing::error!(partition = p, offset, error = %e, "skipping an unreadable record of the internal offsets topic");
                        }
                    }
                }
                next = last + 1;
            }
        }
        Ok(stats)
    }
}

/// What a replay read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records applied.
    pub records: u64,
    /// Records that did not decode and were skipped.
    pub skipped: u64,
}

/// Kafka's `Utils.abs(groupId.hashCode) % partitions`.
pub fn partition_for(group: &str, partitions: usize) -> usize {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps i32::MIN to 0 instead of overflowing.
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs as usize % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_java_string_hashcode() {
        // "hello".hashCode() == 99162322; "polygenelubricants".hashCode() == i32::MIN.
        assert_eq!(partition_for("hello", 50), 99162322 % 50);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("anything", 1), 0);
        assert_eq!(partition_for("", 7), 0);
    }
}
