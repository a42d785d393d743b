//! `strom-meta`: the cluster metadata as the broker uses it, and nothing about how it is kept.
//!
//! - [`MetadataStore`] ([`store`]): the seam. The broker reads brokers, topics and partitions
//!   (leader, leader epoch, replicas, ISR) through it and changes topics through it; it never
//!   builds a store itself, so the single-node store here and the Raft-replicated store of the
//!   cluster crate plug in the same way.
//! - [`types`]: what the store answers: [`BrokerInfo`], [`TopicMeta`], [`PartitionMeta`].
//! - [`LocalMetadataStore`] ([`local`]): a cluster of one, kept in one JSON file in the data
//!   directory and replaced atomically.
//! - [`MetaError`] ([`error`]): why a store operation failed.
//!
//! The crate depends on neither the broker nor the log, so both the broker and a cluster crate
//! can depend on it without a cycle.

pub mod error;
pub mod fs;
pub mod local;
pub mod store;
pub mod types;

pub use error::{MetaError, PartitionRefusal, Result};
pub use local::{LocalMetadataStore, TOPICS_FILE};
pub use store::{MetadataStore, StoreFuture};
pub use types::{
    BrokerConfigs, BrokerInfo, IsrChange, MAX_TOPIC_NAME_LEN, PartitionMeta, TopicConfigs, TopicMeta,
    validate_topic_name,
};
