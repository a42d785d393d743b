//! [`GroupConfig`]: the coordinator's settings, Kafka's `group.*` and `offsets.*` broker configs.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Settings of the group coordinator. Every default is Kafka's unless it says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    /// Smallest session timeout a member may ask for (`group.min.session.timeout.ms`); a
    /// JoinGroup below it gets `INVALID_SESSION_TIMEOUT`. Default: 6000.
    pub min_session_timeout_ms: i32,
    /// Largest session timeout a member may ask for (`group.max.session.timeout.ms`).
    /// Default: 1800000 (30 minutes).
    pub max_session_timeout_ms: i32,
    /// How long the first rebalance of an empty group waits for more members before it
    /// completes, extended (up to the rebalance timeout) while members keep arriving
    /// (`group.initial.rebalance.delay.ms`). Default: 3000.
    pub initial_rebalance_delay_ms: i32,
    /// Most members one group may have (`group.max.size`); more get `GROUP_MAX_SIZE_REACHED`.
    /// Default: 2147483647 (no limit).
    pub max_size: i32,
    /// Committed offsets of an empty group expire this long after the later of the commit and
    /// the moment the group became empty (`offsets.retention.minutes`). Default: 10080 (7 days).
    pub offsets_retention_minutes: i64,
    /// How often expired offsets are looked for (`offsets.retention.check.interval.ms`).
    /// Default: 600000 (10 minutes).
    pub offsets_retention_check_interval_ms: u64,
    /// Longest metadata string a commit may attach to an offset (`offset.metadata.max.bytes`);
    /// longer gets `OFFSET_METADATA_TOO_LARGE`. Default: 4096.
    pub offset_metadata_max_bytes: usize,
    /// Longest group id accepted, in bytes; longer gets `INVALID_GROUP_ID`. Kafka has no such
    /// limit; Strom has one so a group id cannot bloat every record of the internal topic.
    /// Default: 1024 (Strom's own).
    pub max_group_id_bytes: usize,
    /// Partitions of the internal `__consumer_offsets` topic when it is first created
    /// (`offsets.topic.num.partitions`); a group's records live in partition
    /// `hash(group) % partitions`. Once the topic exists its partition count wins. One partition
    /// means one file and one fsync per group commit for all groups. Default: 1 (Kafka: 50).
    pub offsets_topic_partitions: i32,
    /// Replicas per partition of the internal topic in a cluster
    /// (`offsets.topic.replication.factor`), capped at the brokers live when it is created,
    /// so committed offsets and groups survive a broker. A single node has one. Default: 3.
    pub offsets_topic_replication_factor: i16,
    /// `segment.bytes` of the internal topic (`offsets.topic.segment.bytes`).
    /// Default: 104857600 (100 MiB).
    pub offsets_topic_segment_bytes: u64,
    /// How long a member that joined without a member id may take to come back with the one it
    /// was given, and how long a new member's JoinGroup may wait in a rebalance before it is
    /// dropped (Kafka's `NewMemberJoinTimeoutMs`, not configurable there). Default: 300000.
    pub new_member_join_timeout_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX,
            offsets_retention_minutes: 7 * 24 * 60,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            max_group_id_bytes: 1024,
            offsets_topic_partitions: 1,
            offsets_topic_replication_factor: 3,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            new_member_join_timeout_ms: 300_000,
        }
    }
}

impl GroupConfig {
    /// Checks the values and that they work together.
    pub fn validate(self) -> Result<GroupConfig> {
        let bad = |field: &'static str, reason: String| Err(Error::Config { field, reason });
        if self.min_session_timeout_ms < 1 {
            return bad("groups.min_session_timeout_ms", format!("{} is below 1", self.min_session_timeout_ms));
        }
        if self.max_session_timeout_ms < self.min_session_timeout_ms {
            return bad(
                "groups.max_session_timeout_ms",
                format!(
                    "{} is below min_session_timeout_ms {}",
                    self.max_session_timeout_ms, self.min_session_timeout_ms
                ),
            );
        }
        if self.initial_rebalance_delay_ms < 0 {
            return bad("groups.initial_rebalance_delay_ms", "must not be negative".into());
        }
        if self.max_size < 1 {
            return bad("groups.max_size", "must be at least 1".into());
        }
        if self.offsets_retention_minutes < 1 {
            return bad("groups.offsets_retention_minutes", "must be at least 1".into());
        }
        if self.offsets_retention_check_interval_ms < 1 {
            return bad("groups.offsets_retention_check_interval_ms", "must be at least 1".into());
        }
        if self.max_group_id_bytes < 1 || self.max_group_id_bytes > i16::MAX as usize {
            return bad("groups.max_group_id_bytes", format!("{} is outside 1..=32767", self.max_group_id_bytes));
        }
        if self.offset_metadata_max_bytes > i16::MAX as usize {
            // The stored record keeps metadata as an int16-length string: longer would be cut.
            return bad(
                "groups.offset_metadata_max_bytes",
                format!("{} is above 32767", self.offset_metadata_max_bytes),
            );
        }
        if !(1..=1000).contains(&self.offsets_topic_partitions) {
            return bad(
                "groups.offsets_topic_partitions",
                format!("{} is outside 1..=1000", self.offsets_topic_partitions),
            );
        }
        if self.offsets_topic_replication_factor < 1 {
            return bad(
                "groups.offsets_topic_replication_factor",
                format!("{} is below 1", self.offsets_topic_replication_factor),
            );
        }
        if self.offsets_topic_segment_bytes < 1024 || self.offsets_topic_segment_bytes > i32::MAX as u64 {
            return bad(
                "groups.offsets_topic_segment_bytes",
                format!("{} is outside 1024..=2^31-1", self.offsets_topic_segment_bytes),
            );
        }
        if self.new_member_join_timeout_ms < 1 {
            return bad("groups.new_member_join_timeout_ms", "must be at least 1".into());
        }
        Ok(self)
    }

    /// `offsets.retention.minutes` in milliseconds.
    pub fn offsets_retention_ms(&self) -> i64 {
        self.offsets_retention_minutes.saturating_mul(60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_combinations_are_not() {
        GroupConfig::default().validate().expect("defaults are valid");
        let c = GroupConfig { min_session_timeout_ms: 10, max_session_timeout_ms: 5, ..GroupConfig::default() };
        assert!(c.validate().is_err());
        let c = GroupConfig { offsets_topic_partitions: 0, ..GroupConfig::default() };
        assert!(c.validate().is_err());
        assert_eq!(GroupConfig::default().offsets_retention_ms(), 7 * 24 * 3600 * 1000);
    }
}
