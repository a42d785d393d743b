//! Startup: replays the journal records after the last checkpoint into the segments.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use super::files::{self, Writer};
use super::format::RecordBody;
use crate::error::Result;
use crate::partition::PartitionLog;

/// Jsns skipped after a replay, so no record written before it (a torn round's leftovers
/// in a freed file) can ever pass for one written after it. Far more than a file can hold.
const JSN_GAP_AFTER_RECOVERY: u64 = 1 << 32;

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replayed {
    /// Records read after the checkpoint.
    pub(crate) records: u64,
    /// Batches appended to segments (those the segments already held are not counted).
    pub(crate) batches: u64,
    /// Partitions that received batches.
    pub(crate) partitions: usize,
}

/// Opens the journal in `dir` (creating it), replays every record after its checkpoint into
/// `logs` (the partitions just opened), fsyncs what it changed, writes a new checkpoint, and
/// returns the writer the round thread continues with (every existing file is free for reuse).
///
/// Batches go in only where they continue a partition's log exactly (its segment lost them
/// in a power cut) and are skipped where the segment already holds them, so a replay that is
/// itself interrupted is simply run again. Records of a partition before its last journaled
/// truncation or deletion are void: the partition's segment was fsynced before that record
/// was written, so it holds everything they did, and a replay must neither put back what a
/// truncation cut nor give a partition created again under the name its predecessor's data.
pub(crate) fn recover(
    dir: &Path,
    logs: &HashMap<(String, i32), PartitionLog>,
    file_bytes: u64,
) -> Result<(Writer, Replayed)> {
    crate::dirs::create_dir_durable(dir)?;
    let started = Instant::now();
    let checkpoint = files::read_checkpoint(dir)?.unwrap_or(0);
    let found = files::list(dir)?;
    let largest = found.iter().filter_map(|f| std::fs::metadata(&f.path).ok()).map(|m| m.len()).max().unwrap_or(0);
    let max_record = usize::try_from(largest.max(file_bytes)).unwrap_or(usize::MAX);

    // First pass: where each partition's earlier records were voided (its last truncation
    // or deletion).
    let mut voided: HashMap<(String, i32), u64> = HashMap::new();
    files::scan(&found, checkpoint, max_record, |r| {
        if matches!(r.body, RecordBody::Delete | RecordBody::Truncate(_)) {
            voided.insert((r.topic, r.partition), r.jsn);
        }
        Ok(())
    })?;
    // Second pass: apply.
    let mut replayed = Replayed::default();
    let mut touched: HashSet<(String, i32)> = HashSet::new();
    let mut missing: HashSet<(String, i32)> = HashSet::new();
    let end = files::scan(&found, checkpoint, max_record, |r| {
        replayed.records += 1;
        let key = (r.topic, r.partition);
        if voided.get(&key).is_some_and(|v| r.jsn <= *v) {
            return Ok(());
        }
        let Some(log) = logs.get(&key) else {
            if matches!(r.body, RecordBody::Batches(_)) && missing.insert(key.clone()) {
                tracing::warn!(topic = %key.0, partition = key.1, "journal: records for a partition whose directory is gone; skipped");
            }
            return Ok(());
        };
        match r.body {
            RecordBody::Batches(bytes) => match log.replay_stored(&bytes) {
                Ok(0) => {}
                Ok(n) => {
                    replayed.batches += n as u64;
                    touched.insert(key);
                }
                Err(e @ crate::Error::Corrupted { .. }) | Err(e @ crate::Error::InvalidBatch(_)) => {
                    // Not expected: the segment lost what a checkpoint said it held, or the
                    // record's batches are damaged despite its CRC. Report it and go on; the
                    // partition keeps what its segment has.
                    tracing::error!(topic = %key.0, partition = key.1, jsn = r.jsn, error = %e, "journal: record does not fit its partition's log; skipped");
                }
                Err(e) => return Err(e),
            },
            // Only the last one of each partition is reached here; it voids what came before.
            RecordBody::Truncate(_) | RecordBody::Delete => {}
        }
        Ok(())
    })?;
    if let Some((path, position, reason)) = &end.stopped {
        tracing::warn!(file = %path.display(), position, %reason, "journal: replay stopped at a torn or damaged record (a round that was never acknowledged)");
    }
    for key in &touched {
        if let Some(log) = logs.get(key) {
            log.sync_for_checkpoint()?;
            // Durable now: visible to consumers, as everything recovered from the segment is.
            log.publish_durable(log.log_end_offset());
        }
    }
    replayed.partitions = touched.len();
    let next_jsn = end.next_jsn + JSN_GAP_AFTER_RECOVERY;
    files::write_checkpoint(dir, next_jsn)?;
    if replayed.records > 0 || end.stopped.is_some() {
        tracing::info!(
            records = replayed.records,
            batches = replayed.batches,
            partitions = replayed.partitions,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "journal replayed"
        );
    }
    let writer = Writer::new(dir, file_bytes, next_jsn, found.into_iter().map(|f| f.path).collect())?;
    Ok((writer, replayed))
}
