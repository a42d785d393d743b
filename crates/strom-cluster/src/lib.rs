//! `strom-cluster`: Strom's control plane.
//!
//! - [`state`]: the cluster metadata ([`ClusterState`]) and the commands of its log; applying
//!   is deterministic and does no I/O.
//! - [`storage`]: the durable Raft log and vote, and the state machine with its snapshots,
//!   as openraft's v2 storage traits.
//! - [`types`]: openraft's type configuration.

// openraft's error types (StorageError, RaftError) are large and its traits return them by
// value; boxing them at our seams would only convert back.
#![allow(clippy::result_large_err)]

pub mod state;
pub mod storage;
pub mod types;

pub use state::{Applied, ClusterState, Command, Rejected};
