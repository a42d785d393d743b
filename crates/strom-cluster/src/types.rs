//! The openraft type configuration of the metadata quorum.

use std::io::Cursor;

use crate::state::{Applied, Command, Rejected};

/// A Raft node id: the broker's Kafka node id (`node_id`, which is never negative).
pub type NodeId = u64;

/// What a node is, to Raft: the address of its internal listener.
pub type Node = openraft::BasicNode;

/// What applying one log entry returned: the command's outcome (`None` for Raft's own
/// blank and membership entries).
pub type Response = Option<Result<Applied, Rejected>>;

openraft::declare_raft_types!(
    /// The metadata quorum: entries are [`Command`]s, snapshots are the JSON of the state.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft log id of this config.
pub type LogId = openraft::LogId<NodeId>;
/// A Raft vote of this config.
pub type Vote = openraft::Vote<NodeId>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<NodeId>;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// Membership as stored.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
