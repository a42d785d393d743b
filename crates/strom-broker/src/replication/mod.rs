//! Partition replication between brokers of a cluster: followers pull their leaders' logs
//! ([`fetcher`], over [`client`]). The leader's side — follower progress, the high watermark
//! over the ISR, divergence answers — is the partition layer's
//! ([`crate::partition::Partition::replica_fetch`]); ISR changes go through the metadata
//! store ([`crate::BrokerState::propose_isr_change`]).

pub mod client;
pub mod fetcher;

pub use client::{BrokerClient, ClientError};
pub use fetcher::{FetcherConfig, REPLICA_FETCH_VERSION, ReplicaFetchers};
