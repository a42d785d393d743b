//! [`LogStore`]: openraft's [`RaftLogStorage`] over the one-file log of [`super::log_file`].
//!
//! Entries are readable from memory as soon as `append` returns; one writer thread owns the
//! file, takes every queued write in order, writes them all and issues one `fdatasync` for
//! the group, then fires each append's flushed callback (so openraft counts an entry as
//! persisted only after a sync that covers it). `save_vote` waits for its own sync. A failed
//! write or sync latches: it and every later write report the error, and nothing retries over
//! a file whose state is unknown.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, StorageIOError};
use tokio::sync::oneshot;

use super::log_file::{self, LOG_FILE, LogFile, Record, Replayed};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Rewrite the file once it is over this size and four times its live records.
const REWRITE_MIN_BYTES: u64 = 1 << 20;

/// The durable Raft log and vote. Cloning gives another handle to the same log (openraft's
/// log readers are clones).
#[derive(Clone, Debug)]
pub struct LogStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    mem: Mutex<Mem>,
    writer: Mutex<mpsc::Sender<Write>>,
}

#[derive(Debug, Default)]
struct Mem {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

/// One queued write and who to tell when it is durable (or written, for `None`).
struct Write {
    records: Vec<Record>,
    done: Done,
}

enum Done {
    /// Not waited for; the next synced write covers it.
    Nobody,
    /// openraft's append callback.
    Flushed(LogFlushed<TypeConfig>),
    /// A caller awaiting the sync.
    Waiter(oneshot::Sender<io::Result<()>>),
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, replaying it. Starts the writer thread, which
    /// ends when the last handle is dropped.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        create_dir_synced(dir)?;
        let replayed = log_file::replay(&dir.join(LOG_FILE))?;
        let file = LogFile::open(dir, replayed.file_bytes)?;
        let mem = Mem {
            entries: replayed.entries.clone(),
            vote: replayed.vote,
            committed: replayed.committed,
            purged: replayed.purged,
        };
        let (tx, rx) = mpsc::channel();
        let dir_name = dir.to_path_buf();
        std::thread::Builder::new()
            .name("strom-raft-log".into())
            .spawn(move || writer(dir_name, file, replayed, rx))?;
        Ok(LogStore { shared: Arc::new(Shared { mem: Mutex::new(mem), writer: Mutex::new(tx) }) })
    }

    fn mem(&self) -> MutexGuard<'_, Mem> {
        self.shared.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self, records: Vec<Record>, done: Done) -> Result<(), StorageError> {
        let tx = self.shared.writer.lock().unwrap_or_else(|p| p.into_inner());
        tx.send(Write { records, done }).map_err(|_| write_error(io::Error::other("the raft log writer has stopped")))
    }

    async fn queue_and_wait(&self, records: Vec<Record>) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.queue(records, Done::Waiter(tx))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(write_error(e)),
            Err(_) => Err(write_error(io::Error::other("the raft log writer stopped before syncing"))),
        }
    }

    /// The last entry's id (or the purged id when no entry is left).
    pub fn last_log_id(&self) -> Option<LogId> {
        let mem = self.mem();
        mem.entries.values().next_back().map(|e| e.log_id).or(mem.purged)
    }
}

fn create_dir_synced(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    std::fs::File::open(dir)?.sync_all()?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn write_error(e: io::Error) -> StorageError {
    StorageIOError::new(ErrorSubject::Logs, ErrorVerb::Write, openraft::AnyError::new(&e)).into()
}

/// The writer thread: see the module docs.
fn writer(dir: PathBuf, mut file: LogFile, mut image: Replayed, rx: mpsc::Receiver<Write>) {
    let mut failed: Option<(io::ErrorKind, String)> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let needs_sync = batch.iter().any(|w| !matches!(w.done, Done::Nobody));
        let mut result = match &failed {
            Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
            None => Ok(()),
        };
        if result.is_ok() {
            result = (|| {
                let mut bytes = Vec::new();
                for w in &batch {
                    for r in &w.records {
                        bytes.extend_from_slice(&log_file::encode(r)?);
                    }
                }
                file.append(&bytes)?;
                if needs_sync {
                    file.sync()?;
                }
                Ok(())
            })();
        }
        for w in &mut batch {
            for r in std::mem::take(&mut w.records) {
                log_file::apply(&mut image, r);
            }
        }
        if result.is_ok() && file.bytes() > REWRITE_MIN_BYTES {
            result = rewrite_if_mostly_dead(&mut file, &image);
        }
        if let Err(e) = &result {
            if failed.is_none() {
                tracing::error!(dir = %dir.display(), error = %e, "raft log write failed; refusing further writes");
                failed = Some((e.kind(), e.to_string()));
            }
        }
        for w in batch {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            match w.done {
                Done::Nobody => {}
                Done::Flushed(cb) => cb.log_io_completed(r),
                Done::Waiter(tx) => {
                    let _ = tx.send(r);
                }
            }
        }
    }
}

fn rewrite_if_mostly_dead(file: &mut LogFile, image: &Replayed) -> io::Result<()> {
    let mut live = Vec::new();
    if let Some(v) = image.vote {
        live.extend(log_file::encode(&Record::Vote(v))?);
    }
    if let Some(p) = image.purged {
        live.extend(log_file::encode(&Record::Purge(p))?);
    }
    live.extend(log_file::encode(&Record::Committed(image.committed))?);
    for e in image.entries.values() {
        live.extend(log_file::encode(&Record::Entry(e.clone()))?);
        if live.len() as u64 * 4 > file.bytes() {
            return Ok(());
        }
    }
    file.rewrite(&live)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.mem().entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let mem = self.mem();
        let last = mem.entries.values().next_back().map(|e| e.log_id).or(mem.purged);
        Ok(LogState { last_purged_log_id: mem.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        // Durable before memory says so: a vote read back must never be one a crash can undo.
        self.queue_and_wait(vec![Record::Vote(*vote)]).await?;
        self.mem().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.mem().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: a committed id lost at a crash only means re-learning it from the leader.
        self.mem().committed = committed;
        self.queue(vec![Record::Committed(committed)], Done::Nobody)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.mem().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        {
            let mut mem = self.mem();
            for e in &entries {
                mem.entries.insert(e.log_id.index, e.clone());
            }
        }
        self.queue(entries.into_iter().map(Record::Entry).collect(), Done::Flushed(callback))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.mem().entries.split_off(&log_id.index);
        self.queue(vec![Record::Truncate(log_id.index)], Done::Nobody)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut mem = self.mem();
            let kept = mem.entries.split_off(&(log_id.index + 1));
            mem.entries = kept;
            mem.purged = Some(log_id);
        }
        self.queue(vec![Record::Purge(log_id)], Done::Nobody)
    }
}
