//! The cluster metadata seam, from [`strom_meta`]: handlers see topics, partitions (leader,
//! leader epoch, replicas, ISR) and brokers only through the [`MetadataStore`] trait, which the
//! broker is given at startup ([`crate::BrokerState::open`]). [`LocalMetadataStore`] is a
//! cluster of one kept in the data directory; the Raft-replicated store of the cluster crate
//! implements the same trait.
//!
//! The store is the source of truth: at startup the broker creates partition logs the store
//! lists but the disk lacks, and deletes logs the store does not list (left over by a crash
//! between the two steps of a create or delete).

pub use strom_meta::{
    BrokerInfo, LocalMetadataStore, MAX_TOPIC_NAME_LEN, MetaError, MetadataStore, PartitionMeta, StoreFuture,
    TOPICS_FILE, TopicMeta,
};

use crate::error::Result;

/// Checks a topic name against Kafka's rules (see [`strom_meta::validate_topic_name`]).
pub fn validate_topic_name(name: &str) -> Result<()> {
    Ok(strom_meta::validate_topic_name(name)?)
}

/// Writes `bytes` to `path` atomically and durably (see [`strom_meta::fs::write_file_atomically`]).
pub(crate) fn write_file_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    Ok(strom_meta::fs::write_file_atomically(path, bytes)?)
}
