//! [`StateMachineStore`]: openraft's [`RaftStateMachine`] over a [`ClusterState`] in memory,
//! persisted as snapshots.
//!
//! Applying does no I/O: the state is rebuilt at start from the last snapshot plus the
//! committed log after it (openraft re-applies it; the log store keeps the committed id).
//! A snapshot is the JSON of the state, written to `snapshot.json` atomically (temporary
//! file, fsync, rename, directory fsync) before openraft is told it exists, so purging the
//! log it covers never loses anything.
//!
//! Readers (the broker's metadata store) share [`SharedState`]: a read lock for a clone, and
//! a watch of the last applied index to wait for a write to be applied here.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::state::ClusterState;
use crate::types::{Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// The snapshot file in the Raft directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// What the state machine has applied.
#[derive(Debug, Clone, Default)]
pub struct AppliedState {
    /// The last applied log id.
    pub last_applied: Option<LogId>,
    /// The last applied membership.
    pub membership: StoredMembership,
    /// The metadata.
    pub cluster: ClusterState,
}

/// The applied state as every reader on this node sees it.
#[derive(Debug)]
pub struct SharedState {
    state: RwLock<AppliedState>,
    applied: watch::Sender<u64>,
}

impl SharedState {
    /// A read guard on the applied state; hold it only to copy out what you need.
    pub fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The index of the last applied entry, watched: changes after every applied batch.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    fn replace(&self, f: impl FnOnce(&mut AppliedState)) {
        let index = {
            let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
            s.last_applied.map(|l| l.index).unwrap_or(0)
        };
        self.applied.send_replace(index);
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    cluster: ClusterState,
}

/// The state machine and its snapshots. Clones share them (the snapshot builder is a clone).
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    shared: Arc<SharedState>,
    dir: PathBuf,
}

impl StateMachineStore {
    /// Opens the state machine in `dir`: the state of the last snapshot there, or empty.
    pub fn open(dir: &Path) -> io::Result<StateMachineStore> {
        let mut state = AppliedState::default();
        if let Some(file) = read_snapshot(dir)? {
            state = AppliedState {
                last_applied: file.meta.last_log_id,
                membership: file.meta.last_membership,
                cluster: file.cluster,
            };
        }
        let index = state.last_applied.map(|l| l.index).unwrap_or(0);
        let (applied, _) = watch::channel(index);
        Ok(StateMachineStore {
            shared: Arc::new(SharedState { state: RwLock::new(state), applied }),
            dir: dir.to_path_buf(),
        })
    }

    /// The state readers share.
    pub fn shared(&self) -> Arc<SharedState> {
        self.shared.clone()
    }
}

fn read_snapshot(dir: &Path) -> io::Result<Option<SnapshotFile>> {
    let path = dir.join(SNAPSHOT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("snapshot {} is corrupt: {e}", path.display()))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the snapshot file atomically on a blocking thread.
async fn write_snapshot(dir: &Path, file: &SnapshotFile) -> Result<(), StorageError> {
    let bytes = serde_json::to_vec(file).map_err(|e| snapshot_error(io::Error::other(e)))?;
    let path = dir.join(SNAPSHOT_FILE);
    tokio::task::spawn_blocking(move || strom_meta::fs::write_file_atomically(&path, &bytes))
        .await
        .map_err(|e| snapshot_error(io::Error::other(e)))?
        .map_err(|e| snapshot_error(io::Error::other(e)))
}

fn snapshot_error(e: io::Error) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), ErrorVerb::Write, openraft::AnyError::new(&e)).into()
}

fn decode_error(e: serde_json::Error) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), ErrorVerb::Read, openraft::AnyError::new(&e)).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (meta, cluster) = {
            let s = self.shared.read();
            let id = match s.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
                None => "empty".to_string(),
            };
            let meta =
                SnapshotMeta { last_log_id: s.last_applied, last_membership: s.membership.clone(), snapshot_id: id };
            (meta, s.cluster.clone())
        };
        let data = serde_json::to_vec(&cluster).map_err(|e| snapshot_error(io::Error::other(e)))?;
        let file = SnapshotFile { meta: meta.clone(), cluster };
        write_snapshot(&self.dir, &file).await?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let s = self.shared.read();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        self.shared.replace(|s| {
            for entry in entries {
                s.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => out.push(None),
                    EntryPayload::Normal(cmd) => out.push(Some(s.cluster.apply(entry.log_id.index, &cmd))),
                    EntryPayload::Membership(m) => {
                        s.membership = StoredMembership::new(Some(entry.log_id), m);
                        out.push(None);
                    }
                }
            }
        });
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let cluster: ClusterState = serde_json::from_slice(snapshot.get_ref()).map_err(decode_error)?;
        let file = SnapshotFile { meta: meta.clone(), cluster };
        // Durable first: once installed, openraft may purge the log the snapshot replaces.
        write_snapshot(&self.dir, &file).await?;
        self.shared.replace(|s| {
            s.last_applied = file.meta.last_log_id;
            s.membership = file.meta.last_membership.clone();
            s.cluster = file.cluster;
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let dir = self.dir.clone();
        let file = tokio::task::spawn_blocking(move || read_snapshot(&dir))
            .await
            .map_err(|e| snapshot_error(io::Error::other(e)))?
            .map_err(snapshot_error)?;
        let Some(file) = file else { return Ok(None) };
        let data = serde_json::to_vec(&file.cluster).map_err(|e| snapshot_error(io::Error::other(e)))?;
        Ok(Some(Snapshot { meta: file.meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}
