//! Every topic config of Apache Kafka 4.x (plus Strom's `flush.policy` and the older names
//! Kafka 3.x clients still send), each with its type, Kafka's default, the broker config that
//! supplies its default, how a value is validated, and what Strom does with it.
//!
//! One table on purpose: CreateTopics, AlterConfigs, IncrementalAlterConfigs and
//! DescribeConfigs all read it, and `docs/TOPIC-CONFIGS.md` lists the same rows (a unit test
//! checks that every name here appears there).

/// Kafka's config types, as DescribeConfigs v3+ reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    /// `true` or `false`.
    Boolean = 1,
    /// A string.
    String = 2,
    /// A 32-bit integer.
    Int = 3,
    /// A 64-bit integer.
    Long = 5,
    /// A floating-point number.
    Double = 6,
    /// A comma-separated list.
    List = 7,
}

/// How a value is checked, as Kafka's `ConfigDef` validators check it.
#[derive(Debug, Clone, Copy)]
pub enum Validator {
    /// `true` or `false` (any case).
    Bool,
    /// A 32-bit integer in `min..=max`.
    Int {
        /// Smallest value allowed.
        min: i64,
        /// Largest value allowed.
        max: i64,
    },
    /// `-1` (the codec's default) or a 32-bit integer in `min..=max`.
    IntOrMinusOne {
        /// Smallest value allowed besides -1.
        min: i64,
        /// Largest value allowed.
        max: i64,
    },
    /// A 64-bit integer of at least `min`.
    Long {
        /// Smallest value allowed.
        min: i64,
    },
    /// A number in `min..=max`.
    Double {
        /// Smallest value allowed.
        min: f64,
        /// Largest value allowed.
        max: f64,
    },
    /// Exactly one of these strings (case-sensitive, as Kafka's `ValidString`).
    OneOf(&'static [&'static str]),
    /// A comma-separated list whose items are each one of these.
    ListOf(&'static [&'static str]),
    /// Empty, `*`, or `partition:broker` pairs separated by commas (the throttled-replica lists).
    ThrottledReplicas,
    /// A Kafka version such as `3.0`, `2.8-IV1` or `0.10.2.1` (`message.format.version`).
    KafkaVersion,
    /// Strom's flush policy: `always`, `never` or `interval:<ms>`.
    FlushPolicy,
}

/// What Strom does with a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Honoured as Kafka honours it.
    Honoured,
    /// Accepted, validated, stored and described; the text says what Strom does instead.
    Accepted(&'static str),
}

/// One topic config.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    /// Kafka config name.
    pub name: &'static str,
    /// Value type.
    pub config_type: ConfigType,
    /// Kafka's default, used where Strom has no broker setting of its own.
    pub kafka_default: &'static str,
    /// The broker config that supplies the default (DescribeConfigs' synonym), as Kafka names it.
    pub broker_synonym: Option<&'static str>,
    /// How values are checked.
    pub validator: Validator,
    /// What Strom does with it.
    pub effect: Effect,
    /// One-line documentation, returned by DescribeConfigs.
    pub doc: &'static str,
}

/// `cleanup.policy`.
pub const CLEANUP_POLICY: &str = "cleanup.policy";
/// `compression.type`.
pub const COMPRESSION_TYPE: &str = "compression.type";
/// `compression.gzip.level`.
pub const COMPRESSION_GZIP_LEVEL: &str = "compression.gzip.level";
/// `compression.lz4.level`.
pub const COMPRESSION_LZ4_LEVEL: &str = "compression.lz4.level";
/// `compression.zstd.level`.
pub const COMPRESSION_ZSTD_LEVEL: &str = "compression.zstd.level";
/// `flush.messages`: Kafka's fsync-every-N-messages.
pub const FLUSH_MESSAGES: &str = "flush.messages";
/// `flush.ms`: Kafka's fsync-at-least-this-often.
pub const FLUSH_MS: &str = "flush.ms";
/// `flush.policy`: Strom's shorthand for the two above.
pub const FLUSH_POLICY: &str = "flush.policy";
/// `index.interval.bytes`.
pub const INDEX_INTERVAL_BYTES: &str = "index.interval.bytes";
/// `max.message.bytes`.
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
/// `message.timestamp.after.max.ms`.
pub const TIMESTAMP_AFTER_MAX_MS: &str = "message.timestamp.after.max.ms";
/// `message.timestamp.before.max.ms`.
pub const TIMESTAMP_BEFORE_MAX_MS: &str = "message.timestamp.before.max.ms";
/// `message.timestamp.difference.max.ms` (Kafka 3.x; both bounds at once).
pub const TIMESTAMP_DIFFERENCE_MAX_MS: &str = "message.timestamp.difference.max.ms";
/// `message.timestamp.type`.
pub const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
/// `min.insync.replicas`.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
/// `remote.storage.enable`.
pub const REMOTE_STORAGE_ENABLE: &str = "remote.storage.enable";
/// `retention.bytes`.
pub const RETENTION_BYTES: &str = "retention.bytes";
/// `retention.ms`.
pub const RETENTION_MS: &str = "retention.ms";
/// `segment.bytes`.
pub const SEGMENT_BYTES: &str = "segment.bytes";
/// `segment.ms`.
pub const SEGMENT_MS: &str = "segment.ms";
/// `unclean.leader.election.enable`: read by the controller.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = strom_cluster::UNCLEAN_LEADER_ELECTION;

/// `i64::MAX` as Kafka prints it: "never" for the flush and compaction-lag settings.
pub const LONG_MAX: &str = "9223372036854775807";
const I32_MAX: i64 = i32::MAX as i64;

const NO_COMPACTION: &str = "no effect yet: Strom does not compact (cleanup.policy=compact keeps every record)";
const NO_TIERED: &str = "no effect: Strom has no tiered storage, every segment stays local";
const NO_THROTTLE_LIST: &str = "no effect: replication is throttled by [cluster] reassignment_throttle_bytes_per_sec, which applies to replicas being added by a reassignment";

/// Every topic config, sorted by name (the order DescribeConfigs lists them in).
pub const KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: CLEANUP_POLICY,
        config_type: ConfigType::List,
        kafka_default: "delete",
        broker_synonym: Some("log.cleanup.policy"),
        validator: Validator::ListOf(&["compact", "delete"]),
        effect: Effect::Accepted(
            "delete is honoured; compact is accepted but not carried out yet: a compact-only topic keeps every record (retention does not delete it, as in Kafka) and readers see every value, the latest last",
        ),
        doc: "delete: retention deletes old segments; compact: keep the latest value per key (not carried out yet: every record is kept)",
    },
    ConfigKey {
        name: COMPRESSION_GZIP_LEVEL,
        config_type: ConfigType::Int,
        kafka_default: "-1",
        broker_synonym: Some("compression.gzip.level"),
        validator: Validator::IntOrMinusOne { min: 1, max: 9 },
        effect: Effect::Honoured,
        doc: "gzip level when the broker recompresses to gzip; -1: the codec's default (6)",
    },
    ConfigKey {
        name: COMPRESSION_LZ4_LEVEL,
        config_type: ConfigType::Int,
        kafka_default: "9",
        broker_synonym: Some("compression.lz4.level"),
        validator: Validator::Int { min: 1, max: 17 },
        effect: Effect::Honoured,
        doc: "lz4 level when the broker recompresses to lz4",
    },
    ConfigKey {
        name: COMPRESSION_TYPE,
        config_type: ConfigType::String,
        kafka_default: "producer",
        broker_synonym: Some("compression.type"),
        validator: Validator::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        effect: Effect::Honoured,
        doc: "producer: store batches as the producer compressed them; any codec or uncompressed: the broker recompresses batches in another codec",
    },
    ConfigKey {
        name: COMPRESSION_ZSTD_LEVEL,
        config_type: ConfigType::Int,
        kafka_default: "3",
        broker_synonym: Some("compression.zstd.level"),
        validator: Validator::Int { min: -131_072, max: 22 },
        effect: Effect::Honoured,
        doc: "zstd level when the broker recompresses to zstd",
    },
    ConfigKey {
        name: "delete.retention.ms",
        config_type: ConfigType::Long,
        kafka_default: "86400000",
        broker_synonym: Some("log.cleaner.delete.retention.ms"),
        validator: Validator::Long { min: 0 },
        effect: Effect::Accepted(NO_COMPACTION),
        doc: "how long tombstones of a compacted topic are kept (no compaction yet)",
    },
    ConfigKey {
        name: "file.delete.delay.ms",
        config_type: ConfigType::Long,
        kafka_default: "60000",
        broker_synonym: Some("log.segment.delete.delay.ms"),
        validator: Validator::Long { min: 0 },
        effect: Effect::Accepted(
            "no delay: retention unlinks a segment at once; readers that still hold it keep reading their open file",
        ),
        doc: "Kafka waits this long before deleting a file; Strom unlinks at once (open readers keep their file)",
    },
    ConfigKey {
        name: FLUSH_MESSAGES,
        config_type: ConfigType::Long,
        kafka_default: LONG_MAX,
        broker_synonym: Some("log.flush.interval.messages"),
        validator: Validator::Long { min: 1 },
        effect: Effect::Honoured,
        doc: "fsync after this many messages; any value below 9223372036854775807 makes Strom fsync before acknowledging (flush.policy=always), which meets every such bound",
    },
    ConfigKey {
        name: FLUSH_MS,
        config_type: ConfigType::Long,
        kafka_default: LONG_MAX,
        broker_synonym: Some("log.flush.interval.ms"),
        validator: Validator::Long { min: 0 },
        effect: Effect::Honoured,
        doc: "fsync data at most this long after it is written (flush.policy=interval:<ms>); 0: before acknowledging",
    },
    ConfigKey {
        name: FLUSH_POLICY,
        config_type: ConfigType::String,
        kafka_default: "always",
        broker_synonym: Some("log.flush.policy"),
        validator: Validator::FlushPolicy,
        effect: Effect::Honoured,
        doc: "Strom's shorthand, which wins over flush.messages/flush.ms when set. always: fsync before acknowledging; interval:<ms>: fsync within <ms>; never: fsync on roll/close; both also fsync in the background every 4 MiB",
    },
    ConfigKey {
        name: "follower.replication.throttled.replicas",
        config_type: ConfigType::List,
        kafka_default: "",
        broker_synonym: Some("follower.replication.throttled.replicas"),
        validator: Validator::ThrottledReplicas,
        effect: Effect::Accepted(NO_THROTTLE_LIST),
        doc: "replicas whose follower fetches Kafka throttles (Strom throttles the replicas a reassignment adds)",
    },
    ConfigKey {
        name: INDEX_INTERVAL_BYTES,
        config_type: ConfigType::Int,
        kafka_default: "4096",
        broker_synonym: Some("log.index.interval.bytes"),
        validator: Validator::Int { min: 0, max: I32_MAX },
        effect: Effect::Honoured,
        doc: "write an offset- and time-index entry at least every this many bytes",
    },
    ConfigKey {
        name: "leader.replication.throttled.replicas",
        config_type: ConfigType::List,
        kafka_default: "",
        broker_synonym: Some("leader.replication.throttled.replicas"),
        validator: Validator::ThrottledReplicas,
        effect: Effect::Accepted(NO_THROTTLE_LIST),
        doc: "replicas whose leader-side reads Kafka throttles (Strom throttles the replicas a reassignment adds)",
    },
    ConfigKey {
        name: "local.retention.bytes",
        config_type: ConfigType::Long,
        kafka_default: "-2",
        broker_synonym: Some("log.local.retention.bytes"),
        validator: Validator::Long { min: -2 },
        effect: Effect::Accepted(NO_TIERED),
        doc: "local retention with tiered storage (none in Strom: retention.bytes applies)",
    },
    ConfigKey {
        name: "local.retention.ms",
        config_type: ConfigType::Long,
        kafka_default: "-2",
        broker_synonym: Some("log.local.retention.ms"),
        validator: Validator::Long { min: -2 },
        effect: Effect::Accepted(NO_TIERED),
        doc: "local retention with tiered storage (none in Strom: retention.ms applies)",
    },
    ConfigKey {
        name: "max.compaction.lag.ms",
        config_type: ConfigType::Long,
        kafka_default: LONG_MAX,
        broker_synonym: Some("log.cleaner.max.compaction.lag.ms"),
        validator: Validator::Long { min: 1 },
        effect: Effect::Accepted(NO_COMPACTION),
        doc: "the longest a record may stay uncompacted (no compaction yet)",
    },
    ConfigKey {
        name: MAX_MESSAGE_BYTES,
        config_type: ConfigType::Int,
        kafka_default: "1048588",
        broker_synonym: Some("message.max.bytes"),
        validator: Validator::Int { min: 1, max: I32_MAX },
        effect: Effect::Honoured,
        doc: "largest record batch a producer may send (after the broker's recompression, if any)",
    },
    ConfigKey {
        name: "message.downconversion.enable",
        config_type: ConfigType::Boolean,
        kafka_default: "true",
        broker_synonym: Some("log.message.downconversion.enable"),
        validator: Validator::Bool,
        effect: Effect::Accepted(
            "no effect, as in Kafka 4: batches are never down-converted (fetches older than v4 are not served)",
        ),
        doc: "deprecated in Kafka 4 (a no-op there too)",
    },
    ConfigKey {
        name: "message.format.version",
        config_type: ConfigType::String,
        kafka_default: "3.0-IV1",
        broker_synonym: Some("log.message.format.version"),
        validator: Validator::KafkaVersion,
        effect: Effect::Accepted("no effect, as in Kafka 4: every batch is stored as RecordBatch v2 (magic 2)"),
        doc: "deprecated (ignored by Kafka 4 too): batches are always stored in format v2",
    },
    ConfigKey {
        name: TIMESTAMP_AFTER_MAX_MS,
        config_type: ConfigType::Long,
        kafka_default: "3600000",
        broker_synonym: Some("log.message.timestamp.after.max.ms"),
        validator: Validator::Long { min: 0 },
        effect: Effect::Honoured,
        doc: "with CreateTime, a batch whose largest timestamp is further than this ahead of the broker's clock is refused (INVALID_TIMESTAMP)",
    },
    ConfigKey {
        name: TIMESTAMP_BEFORE_MAX_MS,
        config_type: ConfigType::Long,
        kafka_default: LONG_MAX,
        broker_synonym: Some("log.message.timestamp.before.max.ms"),
        validator: Validator::Long { min: 0 },
        effect: Effect::Honoured,
        doc: "with CreateTime, a batch with a timestamp further than this behind the broker's clock is refused (INVALID_TIMESTAMP)",
    },
    ConfigKey {
        name: TIMESTAMP_DIFFERENCE_MAX_MS,
        config_type: ConfigType::Long,
        kafka_default: LONG_MAX,
        broker_synonym: Some("log.message.timestamp.difference.max.ms"),
        validator: Validator::Long { min: 0 },
        effect: Effect::Honoured,
        doc: "Kafka 3.x: both bounds at once, where message.timestamp.before/after.max.ms are not set on the topic",
    },
    ConfigKey {
        name: MESSAGE_TIMESTAMP_TYPE,
        config_type: ConfigType::String,
        kafka_default: "CreateTime",
        broker_synonym: Some("log.message.timestamp.type"),
        validator: Validator::OneOf(&["CreateTime", "LogAppendTime"]),
        effect: Effect::Honoured,
        doc: "CreateTime: records keep the producer's timestamps; LogAppendTime: the broker stamps each batch with its append time",
    },
    ConfigKey {
        name: "min.cleanable.dirty.ratio",
        config_type: ConfigType::Double,
        kafka_default: "0.5",
        broker_synonym: Some("log.cleaner.min.cleanable.ratio"),
        validator: Validator::Double { min: 0.0, max: 1.0 },
        effect: Effect::Accepted(NO_COMPACTION),
        doc: "how dirty a log must be before it is compacted (no compaction yet)",
    },
    ConfigKey {
        name: "min.compaction.lag.ms",
        config_type: ConfigType::Long,
        kafka_default: "0",
        broker_synonym: Some("log.cleaner.min.compaction.lag.ms"),
        validator: Validator::Long { min: 0 },
        effect: Effect::Accepted(NO_COMPACTION),
        doc: "the shortest a record stays uncompacted (no compaction yet)",
    },
    ConfigKey {
        name: MIN_INSYNC_REPLICAS,
        config_type: ConfigType::Int,
        kafka_default: "1",
        broker_synonym: Some("min.insync.replicas"),
        validator: Validator::Int { min: 1, max: I32_MAX },
        effect: Effect::Honoured,
        doc: "acks=all produces are refused with NOT_ENOUGH_REPLICAS while fewer replicas are in sync, and the high watermark does not advance",
    },
    ConfigKey {
        name: "preallocate",
        config_type: ConfigType::Boolean,
        kafka_default: "false",
        broker_synonym: Some("log.preallocate"),
        validator: Validator::Bool,
        effect: Effect::Accepted(
            "no effect: Strom decides by itself, zero-filling space ahead of the writes of busy partitions whose fsyncs are small",
        ),
        doc: "Kafka preallocates new segments; Strom preallocates busy partitions with small fsyncs, whatever the value",
    },
    ConfigKey {
        name: "remote.log.copy.disable",
        config_type: ConfigType::Boolean,
        kafka_default: "false",
        broker_synonym: None,
        validator: Validator::Bool,
        effect: Effect::Accepted(NO_TIERED),
        doc: "tiered storage (none in Strom)",
    },
    ConfigKey {
        name: "remote.log.delete.on.disable",
        config_type: ConfigType::Boolean,
        kafka_default: "false",
        broker_synonym: None,
        validator: Validator::Bool,
        effect: Effect::Accepted(NO_TIERED),
        doc: "tiered storage (none in Strom)",
    },
    ConfigKey {
        name: REMOTE_STORAGE_ENABLE,
        config_type: ConfigType::Boolean,
        kafka_default: "false",
        broker_synonym: None,
        validator: Validator::Bool,
        effect: Effect::Accepted(
            "false only: true is refused with INVALID_CONFIG, as Kafka refuses it on a broker without tiered storage",
        ),
        doc: "tiered storage; Strom has none, so only false is accepted",
    },
    ConfigKey {
        name: RETENTION_BYTES,
        config_type: ConfigType::Long,
        kafka_default: "-1",
        broker_synonym: Some("log.retention.bytes"),
        validator: Validator::Long { min: -1 },
        effect: Effect::Honoured,
        doc: "delete oldest segments while a partition is larger; -1: no limit",
    },
    ConfigKey {
        name: RETENTION_MS,
        config_type: ConfigType::Long,
        kafka_default: "604800000",
        broker_synonym: Some("log.retention.ms"),
        validator: Validator::Long { min: -1 },
        effect: Effect::Honoured,
        doc: "delete segments whose newest record is older; -1: keep forever",
    },
    ConfigKey {
        name: SEGMENT_BYTES,
        config_type: ConfigType::Int,
        kafka_default: "1073741824",
        broker_synonym: Some("log.segment.bytes"),
        validator: Validator::Int { min: 1024, max: I32_MAX },
        effect: Effect::Honoured,
        doc: "roll the active segment at this size (Strom allows down to 1024 bytes; Kafka 4 down to 1 MiB)",
    },
    ConfigKey {
        name: "segment.index.bytes",
        config_type: ConfigType::Int,
        kafka_default: "10485760",
        broker_synonym: Some("log.index.size.max.bytes"),
        validator: Validator::Int { min: 4, max: I32_MAX },
        effect: Effect::Accepted(
            "no effect: Strom's indexes grow with their segment and do not force a roll when full",
        ),
        doc: "Kafka's preallocated index size; Strom's indexes grow as needed",
    },
    ConfigKey {
        name: "segment.jitter.ms",
        config_type: ConfigType::Long,
        kafka_default: "0",
        broker_synonym: Some("log.roll.jitter.ms"),
        validator: Validator::Long { min: 0 },
        effect: Effect::Accepted("no effect: segments roll at segment.ms exactly"),
        doc: "random jitter subtracted from segment.ms (not applied by Strom)",
    },
    ConfigKey {
        name: SEGMENT_MS,
        config_type: ConfigType::Long,
        kafka_default: "604800000",
        broker_synonym: Some("log.roll.ms"),
        validator: Validator::Long { min: 1 },
        effect: Effect::Honoured,
        doc: "roll a non-empty active segment this old",
    },
    ConfigKey {
        name: UNCLEAN_LEADER_ELECTION_ENABLE,
        config_type: ConfigType::Boolean,
        kafka_default: "false",
        broker_synonym: Some("unclean.leader.election.enable"),
        validator: Validator::Bool,
        effect: Effect::Honoured,
        doc: "true: a partition whose in-sync replicas are all gone is led by any live replica, losing the acknowledged records it lacks; false: it stays offline until an in-sync replica returns",
    },
];

/// Looks up a config by name.
pub fn key(name: &str) -> Option<&'static ConfigKey> {
    KEYS.iter().find(|k| k.name == name)
}

/// Checks `value` against `key`'s validator; the error is the reason, for `INVALID_CONFIG`.
pub fn check(key: &ConfigKey, value: &str) -> Result<(), String> {
    let v = value.trim();
    let int = |v: &str| v.parse::<i64>().map_err(|_| "not an integer".to_string());
    match key.validator {
        Validator::Bool => {
            if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                return Err("must be true or false".into());
            }
        }
        Validator::Int { min, max } => {
            let n = int(v)?;
            if !(min..=max).contains(&n) {
                return Err(format!("must be in [{min}, {max}]"));
            }
        }
        Validator::IntOrMinusOne { min, max } => {
            let n = int(v)?;
            if n != -1 && !(min..=max).contains(&n) {
                return Err(format!("must be -1 or in [{min}, {max}]"));
            }
        }
        Validator::Long { min } => {
            let n = int(v)?;
            if n < min {
                return Err(format!("must be at least {min}"));
            }
        }
        Validator::Double { min, max } => {
            let n: f64 = v.parse().map_err(|_| "not a number".to_string())?;
            if !(min..=max).contains(&n) {
                return Err(format!("must be in [{min}, {max}]"));
            }
        }
        Validator::OneOf(allowed) => {
            if !allowed.contains(&v) {
                return Err(format!("must be one of {}", allowed.join(", ")));
            }
        }
        Validator::ListOf(allowed) => {
            for item in v.split(',').map(str::trim) {
                if !allowed.contains(&item) {
                    return Err(format!("{item:?} is not one of {}", allowed.join(", ")));
                }
            }
        }
        Validator::ThrottledReplicas => {
            if !v.is_empty() && v != "*" {
                for pair in v.split(',').map(str::trim) {
                    let ok =
                        pair.split_once(':').is_some_and(|(p, b)| p.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
                    if !ok {
                        return Err(format!(
                            "{pair:?} is not partition:broker; expected \"\", \"*\" or a list of partition:broker"
                        ));
                    }
                }
            }
        }
        Validator::KafkaVersion => {
            let (numbers, iv) = v.split_once("-IV").unwrap_or((v, "0"));
            let parts: Vec<&str> = numbers.split('.').collect();
            let ok = (2..=4).contains(&parts.len())
                && parts.iter().all(|p| !p.is_empty() && p.parse::<u32>().is_ok())
                && iv.parse::<u32>().is_ok();
            if !ok {
                return Err("not a Kafka version (such as 3.0, 2.8-IV1 or 0.10.2)".into());
            }
        }
        Validator::FlushPolicy => {
            v.parse::<strom_log::FlushPolicy>().map_err(|e| e.to_string())?;
        }
    }
    if key.name == REMOTE_STORAGE_ENABLE && v.eq_ignore_ascii_case("true") {
        return Err("tiered storage is not supported by this broker".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_unique() {
        for w in KEYS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
    }

    #[test]
    fn kafka_defaults_pass_their_own_validators() {
        for k in KEYS {
            check(k, k.kafka_default).unwrap_or_else(|e| panic!("{}={:?}: {e}", k.name, k.kafka_default));
        }
    }

    #[test]
    fn validators_refuse_what_kafka_refuses() {
        let bad = [
            (CLEANUP_POLICY, "compact,tidy"),
            (COMPRESSION_TYPE, "brotli"),
            (COMPRESSION_GZIP_LEVEL, "0"),
            (COMPRESSION_LZ4_LEVEL, "18"),
            (COMPRESSION_ZSTD_LEVEL, "23"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("delete.retention.ms", "-1"),
            (FLUSH_MESSAGES, "0"),
            (MESSAGE_TIMESTAMP_TYPE, "logappendtime"),
            ("message.format.version", "banana"),
            ("leader.replication.throttled.replicas", "0-1"),
            (REMOTE_STORAGE_ENABLE, "true"),
            ("preallocate", "yes"),
            (SEGMENT_BYTES, "2147483648"),
        ];
        for (name, value) in bad {
            let k = key(name).expect(name);
            assert!(check(k, value).is_err(), "{name}={value} must be refused");
        }
        let good = [
            (CLEANUP_POLICY, "compact,delete"),
            (COMPRESSION_GZIP_LEVEL, "-1"),
            ("message.format.version", "0.10.2-IV0"),
            ("message.format.version", "2.8"),
            ("leader.replication.throttled.replicas", "0:1,1:2"),
            ("follower.replication.throttled.replicas", "*"),
            ("preallocate", "TRUE"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ];
        for (name, value) in good {
            let k = key(name).expect(name);
            check(k, value).unwrap_or_else(|e| panic!("{name}={value}: {e}"));
        }
    }
}
