//! Topic configs: every one Kafka 4.x has is accepted, validated as Kafka validates it,
//! stored as the topic's overrides (name -> value strings, as Kafka does) and described; the
//! effective settings are the broker's [`LogDefaults`] with the overrides applied.
//!
//! [`catalog`] is the table of names, types, defaults and validators, and says for each
//! config whether Strom honours it or what it does instead (also in `docs/TOPIC-CONFIGS.md`).
//! This module turns a topic's overrides into what the parts of the broker consume: the log's
//! [`LogConfig`], `min.insync.replicas` for the partition layer, and the [`IngestPolicy`] the
//! produce path applies (timestamps, recompression). An unknown name or a bad value is
//! `INVALID_CONFIG` with the reason, never silently ignored.

pub mod catalog;

pub use catalog::{
    CLEANUP_POLICY, COMPRESSION_GZIP_LEVEL, COMPRESSION_LZ4_LEVEL, COMPRESSION_TYPE, COMPRESSION_ZSTD_LEVEL, ConfigKey,
    ConfigType, Effect, FLUSH_MESSAGES, FLUSH_MS, FLUSH_POLICY, INDEX_INTERVAL_BYTES, KEYS, LONG_MAX,
    MAX_MESSAGE_BYTES, MESSAGE_TIMESTAMP_TYPE, MIN_INSYNC_REPLICAS, RETENTION_BYTES, RETENTION_MS, SEGMENT_BYTES,
    SEGMENT_MS, TIMESTAMP_AFTER_MAX_MS, TIMESTAMP_BEFORE_MAX_MS, TIMESTAMP_DIFFERENCE_MAX_MS,
    UNCLEAN_LEADER_ELECTION_ENABLE, key,
};
use strom_log::{FlushPolicy, LogConfig};

use crate::config::LogDefaults;
use crate::error::{Error, Result};
use crate::ingest::{Codec, IngestPolicy, TimestampType};

/// A topic's config overrides: Kafka config name -> value.
pub use strom_meta::TopicConfigs;

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidTopicConfig { name: name.to_string(), value: Some(value.to_string()), reason: reason.into() }
}

/// Checks one override: a known name with a valid value.
pub fn check(name: &str, value: &str) -> Result<()> {
    let Some(k) = key(name) else {
        return Err(invalid(
            name,
            value,
            "unknown topic config (Strom accepts every topic config of Kafka 4.x; see docs/TOPIC-CONFIGS.md)",
        ));
    };
    catalog::check(k, value).map_err(|reason| invalid(name, value, reason))
}

fn check_all(overrides: &TopicConfigs) -> Result<()> {
    overrides.iter().try_for_each(|(n, v)| check(n, v))
}

/// A validated override as a number (validation already refused non-numbers).
fn number(overrides: &TopicConfigs, name: &str) -> Option<i64> {
    overrides.get(name).and_then(|v| v.trim().parse().ok())
}

/// A flush policy as Kafka's pair (`flush.messages`, `flush.ms`; for the broker,
/// `log.flush.interval.messages` and `log.flush.interval.ms`).
pub fn flush_pair(policy: FlushPolicy) -> (i64, i64) {
    match policy {
        FlushPolicy::Always => (1, i64::MAX),
        FlushPolicy::Interval(d) => (i64::MAX, i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        FlushPolicy::Never => (i64::MAX, i64::MAX),
    }
}

/// The flush policy of a topic: its `flush.policy` if set; else Kafka's `flush.messages` and
/// `flush.ms` (each defaulting to the broker policy's equivalent): a message bound below
/// `i64::MAX` or `flush.ms=0` is `always` (fsync before acknowledging meets any bound),
/// another `flush.ms` is `interval:<ms>`, and both unbounded is `never`.
fn flush_policy(default: FlushPolicy, overrides: &TopicConfigs) -> Result<FlushPolicy> {
    if let Some(v) = overrides.get(FLUSH_POLICY) {
        return v.parse().map_err(|e: strom_log::Error| invalid(FLUSH_POLICY, v, e.to_string()));
    }
    if !overrides.contains_key(FLUSH_MESSAGES) && !overrides.contains_key(FLUSH_MS) {
        return Ok(default);
    }
    let (default_messages, default_ms) = flush_pair(default);
    let messages = number(overrides, FLUSH_MESSAGES).unwrap_or(default_messages);
    let ms = number(overrides, FLUSH_MS).unwrap_or(default_ms);
    Ok(if messages < i64::MAX || ms == 0 {
        FlushPolicy::Always
    } else if ms < i64::MAX {
        FlushPolicy::Interval(std::time::Duration::from_millis(ms as u64))
    } else {
        FlushPolicy::Never
    })
}

/// The effective log config of a topic: the broker defaults with its overrides applied.
pub fn log_config(defaults: &LogDefaults, overrides: &TopicConfigs) -> Result<LogConfig> {
    check_all(overrides)?;
    let mut cfg = defaults.to_log_config()?;
    if let Some(v) = number(overrides, RETENTION_MS) {
        cfg.retention_ms = (v >= 0).then_some(v);
    }
    if let Some(v) = number(overrides, RETENTION_BYTES) {
        cfg.retention_bytes = u64::try_from(v).ok();
    }
    if let Some(v) = number(overrides, SEGMENT_BYTES) {
        cfg.segment_bytes = v as u64;
    }
    if let Some(v) = number(overrides, SEGMENT_MS) {
        cfg.segment_ms = Some(v as u64);
    }
    if let Some(v) = number(overrides, MAX_MESSAGE_BYTES) {
        cfg.max_message_bytes = v as usize;
    }
    if let Some(v) = number(overrides, INDEX_INTERVAL_BYTES) {
        // Kafka's 0 means "index every batch", which the log's smallest interval does.
        cfg.index_interval_bytes = (v as u64).max(1);
    }
    if !deletes(overrides) {
        // A compact-only topic is never deleted by retention (as in Kafka).
        cfg.retention_ms = None;
        cfg.retention_bytes = None;
    }
    cfg.flush_policy = flush_policy(cfg.flush_policy, overrides)?;
    cfg.validate().map_err(|e| Error::InvalidTopicConfig {
        name: "(combination)".into(),
        value: None,
        reason: e.to_string(),
    })
}

/// Whether retention deletes the topic's old segments (`cleanup.policy` includes `delete`).
fn deletes(overrides: &TopicConfigs) -> bool {
    overrides.get(CLEANUP_POLICY).is_none_or(|v| v.split(',').any(|p| p.trim() == "delete"))
}

/// A topic's effective `min.insync.replicas`: its override, else the broker's default. (Not
/// part of [`LogConfig`]: the log does not replicate; the partition layer enforces it.)
pub fn min_insync_replicas(defaults: &LogDefaults, overrides: &TopicConfigs) -> i32 {
    number(overrides, MIN_INSYNC_REPLICAS)
        .filter(|v| (1..=i64::from(i32::MAX)).contains(v))
        .map_or(defaults.min_insync_replicas, |v| v as i32)
}

/// What the produce path does to a topic's batches before the log appends them: its
/// timestamp type and bounds, and the codec it recompresses to. Invalid overrides (which
/// validation refuses before they are stored) fall back to the defaults.
pub fn ingest_policy(overrides: &TopicConfigs) -> IngestPolicy {
    let text = |name: &str| overrides.get(name).map(|v| v.trim().to_string());
    let bound = |name: &str| number(overrides, name).filter(|v| *v >= 0);
    let difference = bound(TIMESTAMP_DIFFERENCE_MAX_MS);
    let default_after: i64 =
        key(TIMESTAMP_AFTER_MAX_MS).map_or(i64::MAX, |k| k.kafka_default.parse().unwrap_or(i64::MAX));
    let compression = match text(COMPRESSION_TYPE).as_deref() {
        Some("uncompressed") => Some(Codec::None),
        Some("gzip") => Some(Codec::Gzip),
        Some("snappy") => Some(Codec::Snappy),
        Some("lz4") => Some(Codec::Lz4),
        Some("zstd") => Some(Codec::Zstd),
        _ => None,
    };
    let level = |name: &str| number(overrides, name).or_else(|| key(name)?.kafka_default.parse().ok()).unwrap_or(-1);
    IngestPolicy {
        timestamp_type: if text(MESSAGE_TIMESTAMP_TYPE).as_deref() == Some("LogAppendTime") {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        before_max_ms: bound(TIMESTAMP_BEFORE_MAX_MS).or(difference).unwrap_or(i64::MAX),
        after_max_ms: bound(TIMESTAMP_AFTER_MAX_MS).or(difference).unwrap_or(default_after),
        compression,
        gzip_level: level(COMPRESSION_GZIP_LEVEL) as i32,
        lz4_level: level(COMPRESSION_LZ4_LEVEL) as i32,
        zstd_level: level(COMPRESSION_ZSTD_LEVEL) as i32,
    }
}

/// The broker's default for a config, as Kafka would print it: from [`LogDefaults`] where
/// Strom has a broker setting for it, else Kafka's default.
pub fn broker_default(defaults: &LogDefaults, k: &ConfigKey) -> String {
    let policy = defaults.to_log_config().map(|c| c.flush_policy).unwrap_or_default();
    match k.name {
        RETENTION_MS => defaults.retention_ms.to_string(),
        RETENTION_BYTES => defaults.retention_bytes.to_string(),
        SEGMENT_BYTES => defaults.segment_bytes.to_string(),
        SEGMENT_MS => defaults.segment_ms.to_string(),
        MAX_MESSAGE_BYTES => defaults.max_message_bytes.to_string(),
        MIN_INSYNC_REPLICAS => defaults.min_insync_replicas.to_string(),
        FLUSH_POLICY => policy.to_string(),
        FLUSH_MESSAGES => flush_pair(policy).0.to_string(),
        FLUSH_MS => flush_pair(policy).1.to_string(),
        _ => k.kafka_default.to_string(),
    }
}

/// One row of a topic's described config.
#[derive(Debug, Clone)]
pub struct DescribedConfig {
    /// The config.
    pub key: &'static ConfigKey,
    /// The effective value.
    pub value: String,
    /// The broker's default for it (what applies without the topic's override).
    pub default: String,
    /// True when the topic has no override and the broker default applies.
    pub is_default: bool,
}

/// Every config of a topic with its effective value and where it comes from. The value of an
/// override is the override as stored, except `flush.policy`, which is always the policy in
/// force (it may come from `flush.messages`/`flush.ms`).
pub fn describe(defaults: &LogDefaults, overrides: &TopicConfigs) -> Result<Vec<DescribedConfig>> {
    let cfg = log_config(defaults, overrides)?;
    Ok(KEYS
        .iter()
        .map(|k| {
            let default = broker_default(defaults, k);
            let value = match (k.name, overrides.get(k.name)) {
                (FLUSH_POLICY, _) => cfg.flush_policy.to_string(),
                (_, Some(v)) => v.trim().to_string(),
                (_, None) => default.clone(),
            };
            DescribedConfig {
                key: k,
                value,
                default,
                is_default: !overrides.contains_key(k.name)
                    && !(k.name == FLUSH_POLICY
                        && (overrides.contains_key(FLUSH_MESSAGES) || overrides.contains_key(FLUSH_MS))),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> TopicConfigs {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_apply_and_bad_values_are_rejected() {
        let d = LogDefaults::default();
        let o = configs(&[
            (RETENTION_MS, "-1"),
            (MAX_MESSAGE_BYTES, "2048"),
            (FLUSH_POLICY, "interval:20"),
            (INDEX_INTERVAL_BYTES, "512"),
        ]);
        let c = log_config(&d, &o).expect("valid");
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.max_message_bytes, 2048);
        assert_eq!(c.index_interval_bytes, 512);
        assert_eq!(c.flush_policy.to_string(), "interval:20");

        for (k, v) in [
            (CLEANUP_POLICY, "tidy"),
            (SEGMENT_BYTES, "10"),
            (RETENTION_MS, "soon"),
            (MIN_INSYNC_REPLICAS, "0"),
            (UNCLEAN_LEADER_ELECTION_ENABLE, "yes"),
            (FLUSH_POLICY, "sometimes"),
            ("no.such.config", "1"),
        ] {
            let e = log_config(&d, &configs(&[(k, v)])).expect_err(k);
            assert_eq!(e.code(), 40, "{k}={v} -> INVALID_CONFIG");
            assert!(e.to_string().contains(k), "the error names the config: {e}");
        }
        let rows = describe(&d, &o).expect("describe");
        assert_eq!(rows.len(), KEYS.len());
    }

    #[test]
    fn compact_only_topics_are_not_deleted_by_retention() {
        let d = LogDefaults::default();
        let c = log_config(&d, &configs(&[(CLEANUP_POLICY, "compact"), (RETENTION_MS, "1000")])).expect("valid");
        assert_eq!((c.retention_ms, c.retention_bytes), (None, None));
        let c = log_config(&d, &configs(&[(CLEANUP_POLICY, "compact,delete"), (RETENTION_MS, "1000")])).expect("valid");
        assert_eq!(c.retention_ms, Some(1000));
    }

    #[test]
    fn kafka_flush_settings_map_onto_the_flush_policy() {
        let d = LogDefaults { flush_policy: "never".into(), ..LogDefaults::default() };
        let policy = |pairs: &[(&str, &str)]| log_config(&d, &configs(pairs)).expect("valid").flush_policy.to_string();
        assert_eq!(policy(&[]), "never", "the broker default");
        assert_eq!(policy(&[(FLUSH_MESSAGES, "1")]), "always");
        assert_eq!(policy(&[(FLUSH_MESSAGES, "5000")]), "always", "fsync before ack meets any message bound");
        assert_eq!(policy(&[(FLUSH_MS, "0")]), "always");
        assert_eq!(policy(&[(FLUSH_MS, "250")]), "interval:250");
        assert_eq!(policy(&[(FLUSH_MS, LONG_MAX), (FLUSH_MESSAGES, LONG_MAX)]), "never");
        assert_eq!(policy(&[(FLUSH_MESSAGES, "1"), (FLUSH_POLICY, "interval:9")]), "interval:9", "flush.policy wins");
        // On a broker whose default is `always`, flush.ms alone keeps the message bound of 1.
        let always = LogDefaults::default();
        let c = log_config(&always, &configs(&[(FLUSH_MS, LONG_MAX)])).expect("valid");
        assert_eq!(c.flush_policy, FlushPolicy::Always);
        let rows = describe(&always, &configs(&[(FLUSH_MS, "100")])).expect("describe");
        let row = |n: &str| rows.iter().find(|r| r.key.name == n).expect(n).clone();
        assert_eq!(row(FLUSH_POLICY).value, "always");
        assert!(!row(FLUSH_POLICY).is_default, "derived from an override");
        assert_eq!((row(FLUSH_MESSAGES).value.as_str(), row(FLUSH_MESSAGES).is_default), ("1", true));
        assert_eq!(row(FLUSH_MS).value, "100");
    }

    #[test]
    fn ingest_policy_reads_timestamps_and_compression() {
        let p = ingest_policy(&TopicConfigs::new());
        assert_eq!(p.timestamp_type, TimestampType::CreateTime);
        assert_eq!((p.before_max_ms, p.after_max_ms), (i64::MAX, 3_600_000), "Kafka 4's defaults");
        assert_eq!(p.compression, None);
        let p = ingest_policy(&configs(&[
            (MESSAGE_TIMESTAMP_TYPE, "LogAppendTime"),
            (TIMESTAMP_DIFFERENCE_MAX_MS, "5000"),
            (TIMESTAMP_AFTER_MAX_MS, "10"),
            (COMPRESSION_TYPE, "zstd"),
            (COMPRESSION_ZSTD_LEVEL, "7"),
        ]));
        assert_eq!(p.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!((p.before_max_ms, p.after_max_ms), (5000, 10), "difference fills the bound not set");
        assert_eq!((p.compression, p.zstd_level), (Some(Codec::Zstd), 7));
        assert_eq!(ingest_policy(&configs(&[(COMPRESSION_TYPE, "uncompressed")])).compression, Some(Codec::None));
    }

    #[test]
    fn every_config_is_in_the_docs_table() {
        let doc = include_str!("../../../../docs/TOPIC-CONFIGS.md");
        for k in KEYS {
            assert!(doc.contains(&format!("| `{}` |", k.name)), "docs/TOPIC-CONFIGS.md lacks a row for {}", k.name);
        }
    }
}
