//! `strom-cluster`: Strom's control plane.
//!
//! - [`state`]: the cluster metadata ([`ClusterState`]) and the commands of its log; applying
//!   is deterministic and does no I/O.
//! - [`storage`]: the durable Raft log and vote, and the state machine with its snapshots,
//!   as openraft's v2 storage traits.
//! - [`types`]: openraft's type configuration.
//! - [`network`]: the internal TCP protocol (Raft RPCs, forwarded controller requests).
//! - [`controller`]: what the Raft leader does with requests (placement, registration,
//!   heartbeats, fencing).
//! - [`placement`]: where replicas go (round-robin, range, sticky; rack-aware), pure.
//! - [`node`]: one running node ([`ClusterNode`]).
//! - [`metadata`]: the broker's `MetadataStore` over a node ([`RaftMetadataStore`]).

// openraft's error types (StorageError, RaftError) are large and its traits return them by
// value; boxing them at our seams would only convert back.
#![allow(clippy::result_large_err)]

pub mod controller;
pub mod error;
pub mod metadata;
pub mod network;
pub mod node;
pub mod placement;
pub mod state;
pub mod storage;
pub mod types;

pub use controller::{AutoRebalance, ControllerError, ControllerReply, ControllerRequest, UNCLEAN_LEADER_ELECTION};
pub use error::ClusterError;
pub use metadata::RaftMetadataStore;
pub use node::{BrokerEndpoint, BrokerStatus, ClusterConfig, ClusterNode};
pub use state::{Applied, ClusterState, Command, Rejected};
