//! Kafka topic configs that the log honours, and their translation into
//! [`strom_log::LogConfig`]. A topic stores only its overrides (name -> value strings, as Kafka
//! does); the effective config is the broker's [`LogDefaults`] with the overrides applied.
//!
//! Honoured: `cleanup.policy` (`delete` only for now), `retention.ms`, `retention.bytes`,
//! `segment.bytes`, `segment.ms`, `max.message.bytes`, and Strom's own `flush.policy`
//! (`always` | `interval:<ms>` | `never`). Accepted with the one value that describes what
//! Strom does (tools and Kafka Streams set them on every topic they create):
//! `message.timestamp.type=CreateTime`, `compression.type=producer`. `min.insync.replicas` and
//! `unclean.leader.election.enable` are the replication's, not the log's: see
//! [`min_insync_replicas`]; the controller reads the latter.
//! Any other name or value is rejected with `INVALID_CONFIG` rather than silently ignored.

use strom_log::{FlushPolicy, LogConfig};

use crate::config::LogDefaults;
use crate::error::{Error, Result};

/// A topic's config overrides: Kafka config name -> value.
pub use strom_meta::TopicConfigs;

/// `cleanup.policy`.
pub const CLEANUP_POLICY: &str = "cleanup.policy";
/// `retention.ms`.
pub const RETENTION_MS: &str = "retention.ms";
/// `retention.bytes`.
pub const RETENTION_BYTES: &str = "retention.bytes";
/// `segment.bytes`.
pub const SEGMENT_BYTES: &str = "segment.bytes";
/// `segment.ms`.
pub const SEGMENT_MS: &str = "segment.ms";
/// `max.message.bytes`.
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
/// `flush.policy`: Strom's own topic config (Kafka has `flush.ms`/`flush.messages` instead).
pub const FLUSH_POLICY: &str = "flush.policy";
/// `message.timestamp.type`: only `CreateTime`.
pub const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
/// `compression.type`: only `producer`.
pub const COMPRESSION_TYPE: &str = "compression.type";
/// `min.insync.replicas`: how many in-sync replicas an `acks=all` produce needs.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
/// `unclean.leader.election.enable`: whether an offline partition may be led by a replica
/// that was not in sync (losing what it lacks). Read by the controller.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = strom_cluster::UNCLEAN_LEADER_ELECTION;

/// Kafka configs accepted with exactly one value, the one that describes what Strom does,
/// and why no other is: (name, value, reason).
const FIXED: &[(&str, &str, &str)] = &[
    (
        COMPRESSION_TYPE,
        "producer",
        "batches are stored as the producer compressed them; recompression is not implemented",
    ),
    (MESSAGE_TIMESTAMP_TYPE, "CreateTime", "records keep the producer's timestamps; LogAppendTime is not implemented"),
];

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
    /// A comma-separated list.
    List = 7,
}

/// One honoured topic config: its name, type and documentation.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    /// Kafka config name.
    pub name: &'static str,
    /// Value type.
    pub config_type: ConfigType,
    /// One-line documentation.
    pub doc: &'static str,
}

/// Every topic config the broker honours, in the order DescribeConfigs lists them.
pub const KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: CLEANUP_POLICY,
        config_type: ConfigType::List,
        doc: "delete: old segments are deleted by retention (compact is not supported yet)",
    },
    ConfigKey {
        name: COMPRESSION_TYPE,
        config_type: ConfigType::String,
        doc: "producer only: batches are stored as the producer compressed them",
    },
    ConfigKey {
        name: FLUSH_POLICY,
        config_type: ConfigType::String,
        doc: "always: fsync before acknowledging; interval:<ms>: fsync within <ms>; never: fsync on roll/close; both also fsync in the background every 4 MiB",
    },
    ConfigKey {
        name: MAX_MESSAGE_BYTES,
        config_type: ConfigType::Int,
        doc: "largest record batch a producer may send",
    },
    ConfigKey {
        name: MESSAGE_TIMESTAMP_TYPE,
        config_type: ConfigType::String,
        doc: "CreateTime only: records keep the producer's timestamps",
    },
    ConfigKey {
        name: MIN_INSYNC_REPLICAS,
        config_type: ConfigType::Int,
        doc: "acks=all produces are refused with NOT_ENOUGH_REPLICAS while fewer replicas are in sync, and the high watermark does not advance",
    },
    ConfigKey {
        name: RETENTION_BYTES,
        config_type: ConfigType::Long,
        doc: "delete oldest segments while a partition is larger; -1: no limit",
    },
    ConfigKey {
        name: RETENTION_MS,
        config_type: ConfigType::Long,
        doc: "delete segments whose newest record is older; -1: keep forever",
    },
    ConfigKey { name: SEGMENT_BYTES, config_type: ConfigType::Int, doc: "roll the active segment at this size" },
    ConfigKey {
        name: UNCLEAN_LEADER_ELECTION_ENABLE,
        config_type: ConfigType::Boolean,
        doc: "true: a partition whose in-sync replicas are all gone is led by any live replica, losing the acknowledged records it lacks; false (default): it stays offline until an in-sync replica returns",
    },
    ConfigKey { name: SEGMENT_MS, config_type: ConfigType::Long, doc: "roll a non-empty active segment this old" },
];

/// Looks up an honoured config by name.
pub fn key(name: &str) -> Option<&'static ConfigKey> {
    KEYS.iter().find(|k| k.name == name)
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidTopicConfig { name: name.to_string(), value: Some(value.to_string()), reason: reason.into() }
}

fn parse_i64(name: &str, value: &str, min: i64) -> Result<i64> {
    let v: i64 = value.trim().parse().map_err(|_| invalid(name, value, "not an integer"))?;
    if v < min {
        return Err(invalid(name, value, format!("must be at least {min}")));
    }
    Ok(v)
}

/// Applies one override to `cfg`, rejecting unknown names and bad values.
pub fn apply(cfg: &mut LogConfig, name: &str, value: &str) -> Result<()> {
    match name {
        CLEANUP_POLICY => {
            let policies: Vec<&str> = value.split(',').map(str::trim).collect();
            if policies != ["delete"] {
                return Err(invalid(
                    name,
                    value,
                    "only cleanup.policy=delete is supported (compaction is not implemented yet)",
                ));
            }
        }
        RETENTION_MS => cfg.retention_ms = Some(parse_i64(name, value, -1)?).filter(|v| *v >= 0),
        RETENTION_BYTES => cfg.retention_bytes = u64::try_from(parse_i64(name, value, -1)?).ok(),
        SEGMENT_BYTES => {
            let v = parse_i64(name, value, 1024)?;
            if v > i64::from(i32::MAX) {
                return Err(invalid(name, value, "must fit in a 32-bit integer"));
            }
            cfg.segment_bytes = v as u64;
        }
        SEGMENT_MS => cfg.segment_ms = Some(parse_i64(name, value, 1)? as u64),
        MAX_MESSAGE_BYTES => {
            let v = parse_i64(name, value, 1)?;
            if v > i64::from(i32::MAX) {
                return Err(invalid(name, value, "must fit in a 32-bit integer"));
            }
            cfg.max_message_bytes = v as usize;
        }
        FLUSH_POLICY => {
            cfg.flush_policy = value.parse::<FlushPolicy>().map_err(|e| invalid(name, value, e.to_string()))?;
        }
        MIN_INSYNC_REPLICAS => {
            parse_min_insync(value)?;
        }
        UNCLEAN_LEADER_ELECTION_ENABLE => {
            if !matches!(value.trim(), "true" | "false") {
                return Err(invalid(name, value, "must be true or false"));
            }
        }
        _ if let Some((_, only, reason)) = FIXED.iter().find(|f| f.0 == name) => {
            if value.trim() != *only {
                return Err(invalid(name, value, format!("only {name}={only} is supported ({reason})")));
            }
        }
        _ => {
            return Err(Error::InvalidTopicConfig {
                name: name.to_string(),
                value: Some(value.to_string()),
                reason: format!(
                    "unknown or unsupported topic config; supported: {}",
                    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    Ok(())
}

fn parse_min_insync(value: &str) -> Result<i32> {
    let v = parse_i64(MIN_INSYNC_REPLICAS, value, 1)?;
    i32::try_from(v).map_err(|_| invalid(MIN_INSYNC_REPLICAS, value, "must fit in a 32-bit integer"))
}

/// A topic's effective `min.insync.replicas`: its override, else the broker's default. (Not
/// part of [`LogConfig`]: the log does not replicate; the partition layer enforces it.)
pub fn min_insync_replicas(defaults: &LogDefaults, overrides: &TopicConfigs) -> i32 {
    overrides.get(MIN_INSYNC_REPLICAS).and_then(|v| parse_min_insync(v).ok()).unwrap_or(defaults.min_insync_replicas)
}

/// The effective log config of a topic: the broker defaults with its overrides applied.
pub fn log_config(defaults: &LogDefaults, overrides: &TopicConfigs) -> Result<LogConfig> {
    let mut cfg = defaults.to_log_config()?;
    for (name, value) in overrides {
        apply(&mut cfg, name, value)?;
    }
    cfg.validate().map_err(|e| Error::InvalidTopicConfig {
        name: "(combination)".into(),
        value: None,
        reason: e.to_string(),
    })
}

/// The value of an honoured config in an effective [`LogConfig`], as Kafka would print it.
pub fn value_of(cfg: &LogConfig, name: &str) -> Option<String> {
    Some(match name {
        CLEANUP_POLICY => "delete".to_string(),
        RETENTION_MS => cfg.retention_ms.unwrap_or(-1).to_string(),
        RETENTION_BYTES => cfg.retention_bytes.map_or(-1, |b| b as i64).to_string(),
        SEGMENT_BYTES => cfg.segment_bytes.to_string(),
        SEGMENT_MS => cfg.segment_ms.map_or(-1, |v| v as i64).to_string(),
        MAX_MESSAGE_BYTES => cfg.max_message_bytes.to_string(),
        FLUSH_POLICY => cfg.flush_policy.to_string(),
        _ => return FIXED.iter().find(|f| f.0 == name).map(|f| f.1.to_string()),
    })
}

/// One row of a topic's described config.
#[derive(Debug, Clone)]
pub struct DescribedConfig {
    /// The honoured key.
    pub key: &'static ConfigKey,
    /// The effective value.
    pub value: String,
    /// True when the topic has no override and the broker default applies.
    pub is_default: bool,
}

/// Every honoured config of a topic with its effective value and where it comes from.
pub fn describe(defaults: &LogDefaults, overrides: &TopicConfigs) -> Result<Vec<DescribedConfig>> {
    let cfg = log_config(defaults, overrides)?;
    Ok(KEYS
        .iter()
        .map(|k| DescribedConfig {
            key: k,
            value: if k.name == MIN_INSYNC_REPLICAS {
                min_insync_replicas(defaults, overrides).to_string()
            } else if k.name == UNCLEAN_LEADER_ELECTION_ENABLE {
                overrides.get(k.name).map_or_else(|| "false".to_string(), |v| v.trim().to_string())
            } else {
                value_of(&cfg, k.name).unwrap_or_default()
            },
            is_default: !overrides.contains_key(k.name),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_bad_values_are_rejected() {
        let d = LogDefaults::default();
        let mut o = TopicConfigs::new();
        o.insert(RETENTION_MS.into(), "-1".into());
        o.insert(MAX_MESSAGE_BYTES.into(), "2048".into());
        o.insert(FLUSH_POLICY.into(), "interval:20".into());
        let c = log_config(&d, &o).expect("valid");
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.max_message_bytes, 2048);
        assert_eq!(c.flush_policy.to_string(), "interval:20");

        for (k, v) in [
            (CLEANUP_POLICY, "compact"),
            (SEGMENT_BYTES, "10"),
            (RETENTION_MS, "soon"),
            ("min.insync.replicas", "0"),
            (UNCLEAN_LEADER_ELECTION_ENABLE, "yes"),
            (FLUSH_POLICY, "sometimes"),
        ] {
            let mut o = TopicConfigs::new();
            o.insert(k.into(), v.into());
            let e = log_config(&d, &o).expect_err(k);
            assert_eq!(e.code(), 40, "{k}={v} -> INVALID_CONFIG");
        }
        let rows = describe(&d, &o).expect("describe");
        assert_eq!(rows.len(), KEYS.len());
    }
}
