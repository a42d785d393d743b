//! Preallocation: zero-filled space kept ahead of a busy active segment, so an
//! acknowledgement's fsync has no block allocation to commit.

use std::sync::Weak;

use super::{PartitionLog, Shared, State};
use crate::config::PREALLOCATE_MAX_FLUSH_BYTES;
use crate::flusher::Job;

/// Zeros for preallocation, written in pieces of this size (one short hold of the state
/// lock each). A static, so it costs no allocation and no space in the binary (`.bss`).
static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];

/// A queued zero-fill of one partition's active segment.
pub(super) struct Preallocate(pub(super) Weak<Shared>);

impl Job for Preallocate {
    fn run(&self) {
        if let Some(inner) = self.0.upgrade() {
            PartitionLog { inner }.preallocate();
        }
    }
}

impl PartitionLog {
    /// Decides, under the state lock after an append, whether the active segment needs more
    /// zero-filled space ahead of it, and if so marks a fill as queued (at most one at a
    /// time per partition). See [`crate::ManagerConfig::preallocate_bytes`].
    pub(super) fn claim_preallocation(&self, st: &mut State) -> bool {
        let chunk = self.inner.env.preallocate_bytes;
        if chunk == 0
            || st.preallocating
            || st.appended_since_open < self.inner.env.preallocate_after_bytes
            // No fsync measured yet, or large ones (under `never` and `interval` the
            // background flushes average megabytes: those partitions are not preallocated).
            || !(1..=PREALLOCATE_MAX_FLUSH_BYTES).contains(&st.flush_bytes_avg)
        {
            return false;
        }
        let limit = st.config.segment_bytes;
        let failed_here = st.prealloc_failed_segment;
        let seg = st.active();
        if failed_here == Some(seg.base_offset)
            || seg.file_len >= limit
            || seg.file_len.saturating_sub(seg.size) >= chunk / 2
        {
            return false;
        }
        st.preallocating = true;
        true
    }

    /// Runs on the preallocator thread: writes zeros after the end of the active segment's
    /// file (up to `preallocate_bytes` more, never past `segment.bytes`), then fsyncs them so
    /// the block allocation is committed before appends reach it.
    ///
    /// The zeros are written in pieces, each under the state lock and only past what the file
    /// already holds, so an append (which writes at the logical end, also under the lock) can
    /// never be overwritten by them: appends that outrun the fill simply extend the file as
    /// they would without preallocation. The fill stops if the segment rolls, the log is
    /// truncated, closed or failed.
    fn preallocate(&self) {
        let chunk = self.inner.env.preallocate_bytes;
        let failed_base = self.zero_fill(chunk).err();
        if let Ok(mut st) = self.lock() {
            st.preallocating = false;
            if failed_base.is_some() {
                st.prealloc_failed_segment = failed_base;
            }
        }
    }

    /// The fill itself; `Err(base)` when writing zeros failed for the segment at `base`.
    fn zero_fill(&self, chunk: u64) -> std::result::Result<(), i64> {
        use std::os::unix::fs::FileExt;
        let Ok(mut st) = self.lock() else { return Ok(()) };
        if st.failed || st.closed {
            return Ok(());
        }
        let (limit, generation) = (st.config.segment_bytes, st.generation);
        let seg = st.active();
        if seg.file.is_none() {
            return Ok(());
        }
        let (base, path) = (seg.base_offset, seg.path.clone());
        // Any configured step is capped by the segment size (and cannot overflow).
        let target = seg.file_len.saturating_add(chunk).min(limit.max(seg.file_len));
        drop(st);
        // Its own open file, not the flusher's: the kernel reports a writeback error once per
        // open file, and this fsync also writes back appended data. Through a shared file, an
        // error on those pages could be reported here only, and the flusher's fsync would then
        // succeed and acknowledge the lost data. Through separate ones both fsyncs see it.
        let file = match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "preallocation skipped: cannot open the segment");
                return Err(base);
            }
        };
        let mut written = 0u64;
        loop {
            let Ok(mut st) = self.lock() else { return Ok(()) };
            if st.failed || st.closed || st.generation != generation {
                return Ok(());
            }
            let seg = st.active();
            if seg.base_offset != base {
                return Ok(()); // rolled meanwhile
            }
            let from = seg.file_len;
            if from >= target {
                break;
            }
            let n = (target - from).min(ZEROS.len() as u64) as usize;
            match file.write_at(&ZEROS[..n], from) {
                Ok(w) if w > 0 => {
                    seg.file_len = from + w as u64;
                    written += w as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => {
                    // A full disk or a file-size limit: appends will report it when they
                    // reach it; preallocation just stops for this segment.
                    let error = other.err().map_or_else(|| "write returned 0".to_string(), |e| e.to_string());
                    tracing::debug!(path = %path.display(), position = from, %error, "preallocation stopped");
                    return Err(base);
                }
            }
        }
        if written == 0 {
            return Ok(()); // appends outran the fill: nothing of ours to make durable
        }
        if let Err(e) = file.sync_data() {
            // This fsync also wrote back appended data, and may have been told first that some
            // of it was lost (the flusher's own fsync hears it too, see above): treat it as a
            // failed data fsync.
            tracing::error!(path = %path.display(), error = %e, "fsync of preallocated space failed; log is now failed and refuses writes");
            metrics::counter!("strom_log_fsync_failures_total").increment(1);
            if let Ok(mut st) = self.lock() {
                self.latch_failed(&mut st);
            }
            return Ok(());
        }
        metrics::counter!("strom_log_preallocated_bytes_total").increment(written);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{FlushPolicy, LogConfig};
    use crate::{LogManager, ManagerConfig};

    /// Group commits of more than `PREALLOCATE_MAX_FLUSH_BYTES` are not preallocated (the
    /// zeros would double the bytes written where bandwidth, not the journal, is the cost);
    /// small ones are.
    #[test]
    fn preallocation_follows_the_size_of_group_commits() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for (value_len, expect_fill) in [(150 * 1024, false), (1024, true)] {
            let dir = tempfile::tempdir().unwrap();
            let mut m = ManagerConfig::new(dir.path());
            m.preallocate_after_bytes = 0;
            m.preallocate_bytes = 1024 * 1024;
            // Preallocation serves partitions that fsync their own segments: with the journal
            // an `always` partition's segment is not fsynced on the acknowledgement path.
            m.journal = false;
            let mgr = LogManager::open(m).unwrap();
            let log =
                mgr.create("t", 0, LogConfig { flush_policy: FlushPolicy::Always, ..LogConfig::default() }).unwrap();
            let value = vec![7u8; value_len];
            let mut claimed = false;
            for _ in 0..20 {
                let info = log.append(crate::build_batch(0, None, &[&value]), 0).unwrap();
                // Whether this append queued a fill is decided under the lock, in `append`.
                claimed |= log.lock().unwrap().preallocating;
                rt.block_on(log.wait_durable(info.last_offset)).unwrap();
            }
            let mut st = log.lock().unwrap();
            let active = st.active();
            let filled = active.file_len > active.size;
            assert_eq!(
                claimed || filled,
                expect_fill,
                "{value_len}-byte appends (average {} bytes per fsync)",
                st.flush_bytes_avg
            );
            drop(st);
            mgr.shutdown().unwrap();
        }
    }
}
