//! One module per API family: decode (done by [`crate::dispatch`]), execute, respond.
//!
//! - [`api_versions`]: ApiVersions, derived from the dispatch table.
//! - [`metadata`]: Metadata (with topic auto-creation) and DescribeCluster.
//! - [`produce`]: Produce: append in arrival order, answer after the group commit.
//! - [`fetch`]: Fetch: byte limits and long polling woken by the high watermark.
//! - [`list_offsets`]: ListOffsets: earliest, latest, by timestamp.
//! - [`offset_for_leader_epoch`]: OffsetForLeaderEpoch: where a leader epoch's log ends.
//! - [`admin`]: CreateTopics, DeleteTopics, CreatePartitions.
//! - [`configs`]: DescribeConfigs, AlterConfigs, IncrementalAlterConfigs.
//! - [`init_producer_id`]: InitProducerId for idempotent producers.
//! - [`groups`]: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups,
//!   DescribeGroups, DeleteGroups.
//! - [`group_offsets`]: OffsetCommit, OffsetFetch, OffsetDelete.
//! - [`reassignments`]: AlterPartitionReassignments, ListPartitionReassignments, ElectLeaders.

pub mod admin;
pub mod api_versions;
pub mod configs;
pub mod fetch;
pub mod group_offsets;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod reassignments;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// A protocol string from a Rust string.
pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A protocol topic name from a Rust string.
pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// The error message Kafka clients print for an error, or `None` for success.
pub(crate) fn message(e: &crate::Error) -> Option<StrBytes> {
    Some(StrBytes::from_string(e.to_string()))
}
