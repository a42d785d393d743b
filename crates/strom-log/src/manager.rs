//! [`LogManager`]: a data directory of partition logs, its group-commit flusher, its
//! retention thread, and the clean-shutdown marker.
//!
//! Layout: `<data_dir>/<topic>-<partition>/<base-offset:020>.{log,index,timeindex,snapshot}`
//! and `<data_dir>/.clean_shutdown` while the directory is closed cleanly.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::JournalStats;
use crate::config::{LogConfig, ManagerConfig};
use crate::error::{Error, Result};
use crate::fd_cache::FdCache;
use crate::flusher::Flusher;
use crate::journal::{Checkpointer, CommitHold, Committer, RecordBody};
use crate::partition::{Env, PartitionLog, now_ms};
use crate::recovery::load_partition;

const CLEAN_MARKER: &str = ".clean_shutdown";

pub(crate) use crate::dirs::sync_dir;

/// Checks a topic name the way Kafka does (`[a-zA-Z0-9._-]`, 1..=249 chars, not `.`/`..`),
/// which also guarantees it is a safe single path component.
pub fn validate_topic_name(topic: &str) -> Result<()> {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(Error::InvalidConfig(format!("invalid topic name {topic:?}"))) }
}

/// Owns every partition log of one data directory. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LogManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ManagerConfig,
    env: Arc<Env>,
    logs: RwLock<HashMap<(String, i32), PartitionLog>>,
    /// Partitions whose files [`LogManager::create`] is making, outside the `logs` lock.
    creating: Mutex<HashSet<(String, i32)>>,
    shutdown: Mutex<bool>,
    retention_stop: Arc<(Mutex<bool>, Condvar)>,
    retention_thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    /// A manager dropped without [`LogManager::shutdown`] still ends its retention thread
    /// (the flusher ends itself when its last handle goes).
    fn drop(&mut self) {
        let (lock, cv) = &*self.retention_stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }
}

/// The directory a cluster node keeps its Raft log and snapshots in, inside the data
/// directory; the log manager skips it.
pub const RAFT_DIR_NAME: &str = "raft";

impl LogManager {
    /// Opens `config.data_dir` (creating it if needed), recovering every partition found.
    /// Partitions found on disk get `config.default_log` until [`PartitionLog::set_config`].
    pub fn open(config: ManagerConfig) -> Result<LogManager> {
        let dir = config.data_dir.clone();
        crate::dirs::create_dir_durable(&dir)?;
        let marker = dir.join(CLEAN_MARKER);
        let clean = marker.exists();
        let flusher = Flusher::start(config.flush_threads, "strom-flusher").map_err(|e| Error::io(&dir, e))?;
        let preallocator = Flusher::start(1, "strom-prealloc").map_err(|e| Error::io(&dir, e))?;
        let journal_dir = dir.join(crate::journal::DIR_NAME);
        let committer = match config.journal {
            true => {
                let ck = Checkpointer::start(journal_dir.clone()).map_err(|e| Error::io(&journal_dir, e))?;
                Some(Arc::new(Committer::new(ck)))
            }
            false => None,
        };
        let env = Arc::new(Env {
            committer,
            flusher,
            preallocator,
            preallocate_bytes: config.preallocate_bytes,
            preallocate_after_bytes: config.preallocate_after_bytes,
            producer_id_expiration_ms: config.producer_id_expiration_ms,
            fd_cache: FdCache::new(config.max_open_sealed_segments),
            auto_high_watermark: config.auto_high_watermark,
        });
        let started = std::time::Instant::now();
        let mut logs = HashMap::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            if !entry.file_type().map_err(|e| Error::io(entry.path(), e))?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            // The journal's directory, and the cluster's Raft directory (`raft`, kept by
            // strom-cluster beside the logs): not partitions. A partition directory always
            // ends in `-<index>`, so neither name can be one.
            if name == crate::journal::DIR_NAME || name == RAFT_DIR_NAME {
                continue;
            }
            let Some((topic, partition)) = parse_partition_dir(&name) else {
                tracing::warn!(dir = %entry.path().display(), "ignoring a directory that is not <topic>-<partition>");
                continue;
            };
            let state = load_partition(&entry.path(), config.default_log.clone(), clean, &env.fd_cache)?;
            let log = PartitionLog::from_state(&topic, partition, entry.path(), state, env.clone());
            logs.insert((topic, partition), log);
        }
        // The journal is replayed even when it is now turned off: what it holds was acknowledged.
        if config.journal || journal_dir.exists() {
            let (writer, replayed) = crate::journal::recover(&journal_dir, &logs, config.journal_file_bytes)?;
            if let Some(c) = &env.committer {
                c.start(writer, replayed.batches).map_err(|e| Error::io(&journal_dir, e))?;
            }
        }
        if clean {
            // From now on a crash must be treated as unclean.
            std::fs::remove_file(&marker).map_err(|e| Error::io(&marker, e))?;
        }
        sync_dir(&dir)?;
        tracing::info!(dir = %dir.display(), partitions = logs.len(), clean, elapsed_ms = started.elapsed().as_millis() as u64, "opened log directory");
        let inner = Arc::new(Inner {
            config,
            env,
            logs: RwLock::new(logs),
            creating: Mutex::new(HashSet::new()),
            shutdown: Mutex::new(false),
            retention_stop: Arc::new((Mutex::new(false), Condvar::new())),
            retention_thread: Mutex::new(None),
        });
        Ok(LogManager { inner })
    }

    /// Runs retention every `every` on a background thread until shutdown.
    pub fn start_retention(&self, every: Duration) {
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.retention_stop.clone();
        let spawned = std::thread::Builder::new().name("strom-retention".into()).spawn(move || {
            loop {
                {
                    let (lock, cv) = &*stop;
                    let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                    let (guard, _) =
                        cv.wait_timeout_while(guard, every, |stopped| !*stopped).unwrap_or_else(|p| p.into_inner());
                    if *guard {
                        return;
                    }
                }
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = (LogManager { inner }).run_retention(now_ms()) {
                    tracing::warn!(error = %e, "retention run failed");
                }
            }
        });
        match spawned {
            Ok(t) => *self.inner.retention_thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(t),
            Err(e) => tracing::error!(error = %e, "could not start the retention thread"),
        }
    }

    /// Holds back the journal's round thread while a caller appends to several partitions as
    /// one request, so that (when it is idle) they make one round: drop the guard once the
    /// appends are made, before waiting for them. `None` when the journal is off.
    pub fn hold_commits(&self) -> Option<CommitHold> {
        self.inner.env.committer.as_ref().map(|c| c.hold())
    }

    /// What the node journal has done since the directory was opened; `None` when it is off.
    pub fn journal_stats(&self) -> Option<JournalStats> {
        self.inner.env.committer.as_ref().map(|c| c.stats())
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.config.data_dir
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.inner.config.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Creates a new, empty partition log. Fails with [`Error::AlreadyExists`] if present.
    pub fn create(&self, topic: &str, partition: i32, config: LogConfig) -> Result<PartitionLog> {
        validate_topic_name(topic)?;
        if partition < 0 {
            return Err(Error::InvalidConfig(format!("negative partition {partition}")));
        }
        let config = config.validate()?;
        let key = (topic.to_string(), partition);
        // The map's lock is held only to look and to publish, never across the file work and
        // fsyncs below: produce and fetch look partitions up in it all the time.
        {
            let logs = self.inner.logs.read().unwrap_or_else(|p| p.into_inner());
            let mut creating = self.inner.creating.lock().unwrap_or_else(|p| p.into_inner());
            if logs.contains_key(&key) || !creating.insert(key.clone()) {
                return Err(Error::AlreadyExists(format!("{topic}-{partition}")));
            }
        }
        let created = self.create_files(topic, partition, config);
        let mut logs = self.inner.logs.write().unwrap_or_else(|p| p.into_inner());
        self.inner.creating.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        let log = created?;
        if self.is_shut_down() {
            // Shutdown closed every log it saw; this one it did not.
            drop(logs);
            log.close()?;
            return Err(Error::Closed(format!("{topic}-{partition}")));
        }
        logs.insert(key, log.clone());
        Ok(log)
    }

    /// The file work of [`LogManager::create`], with no manager lock held.
    fn create_files(&self, topic: &str, partition: i32, config: LogConfig) -> Result<PartitionLog> {
        if self.is_shut_down() {
            return Err(Error::Closed(format!("{topic}-{partition}")));
        }
        let dir = self.partition_dir(topic, partition);
        // The partition directory's entry is durable (its parent fsynced) before anything in
        // it can be acknowledged; a directory left by an earlier failed create gets its parent
        // fsynced here too.
        if !crate::dirs::create_dir_durable(&dir)? {
            sync_dir(&self.inner.config.data_dir)?;
        }
        let state = load_partition(&dir, config, false, &self.inner.env.fd_cache)?;
        Ok(PartitionLog::from_state(topic, partition, dir, state, self.inner.env.clone()))
    }

    /// The partition log, if it exists.
    pub fn get(&self, topic: &str, partition: i32) -> Option<PartitionLog> {
        self.inner.logs.read().unwrap_or_else(|p| p.into_inner()).get(&(topic.to_string(), partition)).cloned()
    }

    /// Every open partition log.
    pub fn list(&self) -> Vec<PartitionLog> {
        self.inner.logs.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Deletes a partition log and its files.
    pub fn delete(&self, topic: &str, partition: i32) -> Result<()> {
        let removed =
            self.inner.logs.write().unwrap_or_else(|p| p.into_inner()).remove(&(topic.to_string(), partition));
        let Some(log) = removed else { return Ok(()) };
        // No append after this one (so none is journaled after the deletion's record).
        log.mark_closed();
        // With the journal: fsync the segment, then make a record voiding this partition's
        // journaled records durable before the files go, so a replay gives none of them to a
        // partition created again under the name, and a crash before the removal is durable
        // leaves the partition whole.
        if let Some(c) = &self.inner.env.committer {
            if let Err(e) = log.sync_active(true) {
                // A failed log is deleted all the same; what it held is being thrown away.
                tracing::warn!(topic, partition, error = %e, "deleting a partition whose segment could not be fsynced");
            }
            c.control(topic, partition, RecordBody::Delete)?;
        }
        let dir = log.dir().to_path_buf();
        if let Ok(st) = log.lock() {
            for seg in st.segments.values() {
                self.inner.env.fd_cache.remove(&seg.path);
            }
        }
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        sync_dir(&self.inner.config.data_dir)?;
        tracing::info!(topic, partition, "deleted partition log");
        Ok(())
    }

    /// Applies retention to every partition, then expires idempotent-producer state (see
    /// [`PartitionLog::expire_producers`]); returns the number of segments deleted.
    pub fn run_retention(&self, now_ms: i64) -> Result<usize> {
        let mut deleted = 0;
        for log in self.list() {
            match log.apply_retention(now_ms) {
                Ok(n) => deleted += n,
                Err(e) => {
                    tracing::warn!(topic = log.topic(), partition = log.partition(), error = %e, "retention failed for partition")
                }
            }
            if let Err(e) = log.expire_producers(now_ms) {
                tracing::warn!(topic = log.topic(), partition = log.partition(), error = %e, "producer state expiry failed for partition");
            }
        }
        Ok(deleted)
    }

    fn is_shut_down(&self) -> bool {
        *self.inner.shutdown.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes every log cleanly: stops appends, drains the flusher, fsyncs every active
    /// segment, writes indexes and producer snapshots, then the clean-shutdown marker (only
    /// if every log closed without error). Idempotent.
    pub fn shutdown(&self) -> Result<()> {
        {
            let mut done = self.inner.shutdown.lock().unwrap_or_else(|p| p.into_inner());
            if *done {
                return Ok(());
            }
            *done = true;
        }
        {
            let (lock, cv) = &*self.inner.retention_stop;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(t) = self.inner.retention_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        let next_jsn = self.inner.env.committer.as_ref().map(|c| c.stop());
        self.inner.env.flusher.stop();
        let mut first_error = None;
        for log in self.list() {
            if let Err(e) = log.close() {
                tracing::error!(topic = log.topic(), partition = log.partition(), error = %e, "log did not close cleanly");
                first_error.get_or_insert(e);
            }
        }
        // After the logs are closed: a queued or running zero-fill sees that and stops.
        self.inner.env.preallocator.stop();
        if let Some(e) = first_error {
            return Err(e);
        }
        let dir = &self.inner.config.data_dir;
        if let (Some(jsn), Some(c)) = (next_jsn, &self.inner.env.committer) {
            if c.is_pinned() {
                return Err(Error::StorageFailed { path: dir.join(crate::journal::DIR_NAME) });
            }
            // Every log is closed (fsynced): nothing in the journal needs replaying.
            crate::journal::write_checkpoint(&dir.join(crate::journal::DIR_NAME), jsn)?;
        }
        let marker = dir.join(CLEAN_MARKER);
        std::fs::File::create(&marker).and_then(|f| f.sync_all()).map_err(|e| Error::io(&marker, e))?;
        sync_dir(dir)?;
        tracing::info!(dir = %dir.display(), "log directory closed cleanly");
        Ok(())
    }
}

/// Splits `<topic>-<partition>` at the last `-`.
fn parse_partition_dir(name: &str) -> Option<(String, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    let partition: i32 = partition.parse().ok().filter(|p| *p >= 0)?;
    validate_topic_name(topic).ok()?;
    Some((topic.to_string(), partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_dir_names() {
        assert_eq!(parse_partition_dir("my-topic-3"), Some(("my-topic".into(), 3)));
        assert_eq!(parse_partition_dir("topic"), None);
        assert_eq!(parse_partition_dir("t-x"), None);
        assert_eq!(parse_partition_dir("t--1"), Some(("t-".into(), 1)));
        assert!(validate_topic_name("../etc").is_err());
        assert!(validate_topic_name("ok.topic_name-1").is_ok());
    }
}

#[cfg(test)]
mod smoke_tests {
    use super::*;
    use crate::FlushPolicy;
    use crate::batch::build_batch;
    use crate::partition::ReadBound;

    fn small() -> LogConfig {
        LogConfig { segment_bytes: 4096, index_interval_bytes: 256, ..LogConfig::default() }
    }

    #[tokio::test]
    async fn append_read_roll_reopen_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(ManagerConfig::new(dir.path())).unwrap();
        let log = mgr.create("t", 0, small()).unwrap();
        let mut last = 0;
        for i in 0..100i64 {
            let v = vec![i as u8; 100];
            let info = log.append(build_batch(1000 + i, None, &[&v, &v]), 3).unwrap();
            assert_eq!(info.base_offset, i * 2);
            last = info.last_offset;
        }
        log.wait_durable(last).await.unwrap();
        assert_eq!(log.high_watermark(), 200);
        assert!(log.segment_count() > 3, "segments: {}", log.segment_count());
        let r = log.read(51, 1, ReadBound::HighWatermark).unwrap();
        let h = BatchHeaderCheck::first(&r.records);
        assert_eq!(h.0, 50);
        assert_eq!(h.1, 3);
        // Timestamp lookup.
        let b = log.find_batch_by_timestamp(1050).unwrap().unwrap();
        assert_eq!(BatchHeaderCheck::first(&b).0, 100);
        mgr.shutdown().unwrap();
        drop(log);
        drop(mgr);

        let mgr = LogManager::open(ManagerConfig::new(dir.path())).unwrap();
        let log = mgr.get("t", 0).unwrap();
        assert_eq!(log.log_end_offset(), 200);
        let all = log.read(0, usize::MAX >> 1, ReadBound::HighWatermark).unwrap();
        assert!(!all.records.is_empty());
        log.truncate_to(101).unwrap();
        assert_eq!(log.log_end_offset(), 100);
        let info = log.append(build_batch(5, None, &[b"x"]), 4).unwrap();
        assert_eq!(info.base_offset, 100);
        // Crash (no shutdown) and reopen: everything durable is there.
        log.wait_durable(100).await.unwrap();
        drop(log);
        drop(mgr);
        let mgr = LogManager::open(ManagerConfig::new(dir.path())).unwrap();
        let log = mgr.get("t", 0).unwrap();
        assert_eq!(log.log_end_offset(), 101);
        log.set_config(LogConfig { retention_bytes: Some(1), ..small() }).unwrap();
        assert!(log.apply_retention(0).unwrap() > 0);
        assert_eq!(log.segment_count(), 1);
        assert!(matches!(log.read(0, 100, ReadBound::HighWatermark), Err(Error::OffsetOutOfRange { .. })));
        mgr.shutdown().unwrap();
    }

    #[tokio::test]
    async fn idempotent_retry_returns_original_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(ManagerConfig::new(dir.path())).unwrap();
        let log = mgr.create("t", 0, LogConfig { flush_policy: FlushPolicy::Never, ..small() }).unwrap();
        log.append(build_batch(1, None, &[b"a"]), 0).unwrap();
        let b = build_batch(1, Some((9, 0, 0)), &[b"a", b"b"]);
        let first = log.append(b.clone(), 0).unwrap();
        let retry = log.append(b, 0).unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (first.base_offset, first.last_offset));
        assert_eq!(log.log_end_offset(), 3);
        assert!(matches!(
            log.append(build_batch(1, Some((9, 0, 7)), &[b"c"]), 0),
            Err(Error::OutOfOrderSequence { .. })
        ));
        // Producer state survives an unclean restart (rebuilt by replay).
        drop(log);
        drop(mgr);
        let mgr = LogManager::open(ManagerConfig::new(dir.path())).unwrap();
        let log = mgr.get("t", 0).unwrap();
        let again = log.append(build_batch(1, Some((9, 0, 0)), &[b"a", b"b"]), 0).unwrap();
        assert!(again.duplicate);
        assert_eq!(again.base_offset, 1);
    }

    #[tokio::test]
    async fn a_failed_roll_keeps_the_active_segment_and_completes_waiters() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(ManagerConfig::new(dir.path())).unwrap();
        let log = mgr.create("t", 0, LogConfig { segment_bytes: 1024, ..small() }).unwrap();
        let first = log.append(build_batch(1, None, &[&[1u8; 300][..], &[2u8; 300][..]]), 0).unwrap();
        // Block the roll: the next segment's file exists and holds data.
        let blocker = dir.path().join("t-0").join(format!("{:020}.log", first.last_offset + 1));
        std::fs::write(&blocker, b"not ours").unwrap();
        let err = log.append(build_batch(2, None, &[&[3u8; 600][..]]), 0).unwrap_err();
        assert!(matches!(err, Error::Corrupted { .. }), "{err}");
        // The earlier append is still acknowledged, nothing panicked, the log is not failed.
        log.wait_durable(first.last_offset).await.unwrap();
        assert!(!log.is_failed());
        assert_eq!(log.segment_count(), 1);
        // Once the obstacle is gone, the next append rolls and succeeds.
        std::fs::remove_file(&blocker).unwrap();
        let next = log.append(build_batch(3, None, &[&[4u8; 600][..]]), 0).unwrap();
        assert_eq!(next.base_offset, first.last_offset + 1);
        log.wait_durable(next.last_offset).await.unwrap();
        assert_eq!(log.segment_count(), 2);
        mgr.shutdown().unwrap();
    }

    /// Under the policies that acknowledge before the fsync, every `BACKGROUND_FLUSH_BYTES`
    /// of unflushed appends is fsynced in the background. Nothing else fsyncs here (no roll,
    /// an hour-long interval), so each completed fsync can only be that flush. Under
    /// `interval` the background flushes must not disturb the one timed request waiting.
    #[test]
    fn unflushed_bytes_are_written_back_in_the_background() {
        const ROUNDS: u64 = 3;
        for policy in [FlushPolicy::Never, FlushPolicy::Interval(Duration::from_secs(3600))] {
            let dir = tempfile::tempdir().unwrap();
            let mgr = LogManager::open(ManagerConfig::new(dir.path())).unwrap();
            let log = mgr.create("t", 0, LogConfig { flush_policy: policy, ..LogConfig::default() }).unwrap();
            let payload = vec![7u8; 64 * 1024];
            for round in 1..=ROUNDS {
                let mut appended = 0;
                while appended <= crate::BACKGROUND_FLUSH_BYTES {
                    appended +=
                        log.append(build_batch(1, None, &[&payload[..]]), 0).map(|_| payload.len() as u64).unwrap();
                }
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while log.inner.fsyncs_done.load(std::sync::atomic::Ordering::Relaxed) < round {
                    assert!(std::time::Instant::now() < deadline, "{policy}: round {round} not fsynced after 10 s");
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            assert_eq!(log.segment_count(), 1, "{policy}: no roll may fsync instead");
            let timed = mgr.inner.env.flusher.timed_len();
            let expected = usize::from(matches!(policy, FlushPolicy::Interval(_)));
            assert_eq!(timed, expected, "{policy}: timed flush requests waiting after {ROUNDS} background flushes");
            mgr.shutdown().unwrap();
        }
    }

    /// A sealed segment's index files sample one batch per `index.interval.bytes`; after a
    /// restart its largest timestamp must still count the batches after the last entry, or a
    /// timestamp lookup skips them (and time-based retention would take the segment for
    /// older than it is).
    #[test]
    fn timestamps_after_the_last_index_entry_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { segment_bytes: 8192, flush_policy: FlushPolicy::Never, ..LogConfig::default() };
        assert_eq!(cfg.index_interval_bytes, 4096, "the default interval, coarser than these batches");
        let value = [9u8; 500];
        let mgr = LogManager::open(ManagerConfig::new(dir.path())).unwrap();
        let log = mgr.create("t", 0, cfg.clone()).unwrap();
        let mut appended = Vec::new();
        for i in 0..40 {
            appended.push(log.append(build_batch(1_000 + i * 10, None, &[&value[..]]), 0).unwrap());
        }
        assert!(log.segment_count() >= 3);
        mgr.shutdown().unwrap();

        let mgr = LogManager::open(ManagerConfig::new(dir.path())).unwrap();
        let log = mgr.get("t", 0).unwrap();
        log.set_config(cfg).unwrap();
        for (i, a) in appended.iter().enumerate() {
            let ts = 1_000 + i as i64 * 10;
            let b = log.find_batch_by_timestamp(ts).unwrap().expect("a batch at or after every stored timestamp");
            assert_eq!(BatchHeaderCheck::first(&b).0, a.base_offset, "timestamp {ts}");
        }
        mgr.shutdown().unwrap();
    }

    /// Deleting a partition wakes whoever waits on its high watermark (long-polling fetches),
    /// and reads of a handle kept from before then say the partition is gone.
    #[tokio::test]
    async fn deleting_a_partition_wakes_its_watchers_and_ends_its_reads() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(ManagerConfig::new(dir.path())).unwrap();
        let log = mgr.create("t", 0, small()).unwrap();
        log.append(build_batch(1, None, &[b"a"]), 0).unwrap();
        let mut hw = log.watch_high_watermark();
        hw.borrow_and_update();
        mgr.delete("t", 0).unwrap();
        tokio::time::timeout(Duration::from_secs(5), hw.changed())
            .await
            .expect("woken by the delete")
            .expect("sender alive");
        assert!(matches!(log.read(0, 1024, ReadBound::HighWatermark), Err(Error::Closed(_))));
        assert!(matches!(log.find_batch_by_timestamp(0), Err(Error::Closed(_))));
        mgr.shutdown().unwrap();
    }

    /// A retention run drops idempotent producers idle past `producer_id_expiration_ms`:
    /// one that comes back later starts afresh at any sequence, while a recent one still has
    /// its retries recognised.
    #[tokio::test]
    async fn retention_runs_expire_idle_producers() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ManagerConfig::new(dir.path());
        cfg.producer_id_expiration_ms = 60_000;
        let mgr = LogManager::open(cfg).unwrap();
        let log = mgr.create("t", 0, LogConfig { flush_policy: FlushPolicy::Never, ..small() }).unwrap();
        log.append(build_batch(1_000, Some((7, 0, 0)), &[b"old"]), 0).unwrap();
        let recent = build_batch(100_000, Some((8, 0, 0)), &[b"new"]);
        log.append(recent.clone(), 0).unwrap();
        mgr.run_retention(100_000).unwrap();
        assert_eq!(log.lock().unwrap().producers.len(), 1, "producer 7 (idle 99 s) expired, 8 kept");
        assert!(log.append(recent, 0).unwrap().duplicate, "the recent producer's retry is still recognised");
        let back = log.append(build_batch(100_001, Some((7, 0, 5)), &[b"back"]), 0).unwrap();
        assert!(!back.duplicate, "the expired producer starts afresh at sequence 5");
        mgr.shutdown().unwrap();
    }

    /// `delete_segments_before` removes only sealed segments wholly below the offset, and
    /// moves the log start to the first one kept.
    #[test]
    fn segments_below_a_checkpoint_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = LogManager::open(ManagerConfig::new(dir.path())).unwrap();
        let log = mgr.create("t", 0, LogConfig { flush_policy: FlushPolicy::Never, ..small() }).unwrap();
        let value = [1u8; 700];
        let mut firsts = Vec::new();
        for _ in 0..20 {
            let before = log.segment_count();
            let a = log.append(build_batch(1, None, &[&value[..]]), 0).unwrap();
            if log.segment_count() > before || firsts.is_empty() {
                firsts.push(a.base_offset);
            }
        }
        assert!(firsts.len() >= 4, "{firsts:?}");
        // An offset inside the third segment: the first two go, the third stays.
        assert_eq!(log.delete_segments_before(firsts[2] + 1).unwrap(), 2);
        assert_eq!(log.log_start_offset(), firsts[2]);
        assert_eq!(log.delete_segments_before(firsts[2]).unwrap(), 0, "nothing wholly below the start");
        assert!(log.delete_segments_before(i64::MAX).unwrap() >= 1);
        assert_eq!(log.segment_count(), 1, "the active segment always stays");
        mgr.shutdown().unwrap();
    }

    struct BatchHeaderCheck;
    impl BatchHeaderCheck {
        fn first(b: &bytes::Bytes) -> (i64, i32) {
            let h = crate::BatchHeader::parse(b).unwrap();
            (h.base_offset, h.partition_leader_epoch)
        }
    }
}
