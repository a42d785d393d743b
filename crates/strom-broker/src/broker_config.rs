//! Broker configs under Kafka's names: what DescribeConfigs reports for a broker resource, and
//! the dynamic ones IncrementalAlterConfigs/AlterConfigs may change live.
//!
//! A broker's settings come, last wins, from: Strom's defaults, the config file (`Config`),
//! the cluster-wide dynamic default (resource `""`), and the broker's own dynamic configs
//! (resource = its node id). The dynamic ones are kept in the metadata store (replicated with
//! Raft on a cluster, `topics.json` on a single node), so they survive restarts and reach
//! every broker; each broker recomputes its [`Effective`] settings when they change.
//!
//! Dynamic here: the topic defaults the log applies (`log.retention.ms`,
//! `log.retention.bytes`, `log.segment.bytes`, `log.roll.ms`, `message.max.bytes`,
//! `min.insync.replicas`, `log.flush.policy`) and `num.partitions`. Every other row is
//! read-only: set it in the config file and restart.

use crate::config::{Config, LogDefaults};
use crate::error::{Error, Result};
use crate::topic_config::{ConfigType, catalog};
use strom_meta::{BrokerConfigs, TopicConfigs};

/// DescribeConfigs sources for broker rows.
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
/// The cluster-wide dynamic default.
pub const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
/// The broker's config file.
pub const SOURCE_STATIC_BROKER: i8 = 4;
/// Strom's built-in default.
pub const SOURCE_DEFAULT: i8 = 5;

/// The settings a broker works with now: its config file with the dynamic configs applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// Topic defaults.
    pub log: LogDefaults,
    /// Partitions of a topic created without a count.
    pub num_partitions: i32,
}

/// The configs that may change live, with their validators.
const DYNAMIC: &[(&str, ConfigType, catalog::Validator)] = {
    use catalog::Validator as V;
    &[
        ("log.flush.policy", ConfigType::String, V::FlushPolicy),
        ("log.retention.bytes", ConfigType::Long, V::Long { min: -1 }),
        ("log.retention.ms", ConfigType::Long, V::Long { min: -1 }),
        ("log.roll.ms", ConfigType::Long, V::Long { min: 1 }),
        ("log.segment.bytes", ConfigType::Int, V::Int { min: 1024, max: i32::MAX as i64 }),
        ("message.max.bytes", ConfigType::Int, V::Int { min: 1, max: i32::MAX as i64 }),
        ("min.insync.replicas", ConfigType::Int, V::Int { min: 1, max: i32::MAX as i64 }),
        ("num.partitions", ConfigType::Int, V::Int { min: 1, max: crate::state::MAX_PARTITIONS_PER_TOPIC as i64 }),
    ]
};

/// Whether `name` can be changed live.
pub fn is_dynamic(name: &str) -> bool {
    DYNAMIC.iter().any(|(n, ..)| *n == name)
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidTopicConfig { name: name.to_string(), value: Some(value.to_string()), reason: reason.into() }
}

/// Checks one dynamic config; names Kafka has but Strom reads only at start, and unknown
/// names, are refused with the reason.
pub fn check(name: &str, value: &str) -> Result<()> {
    let Some((known, ty, validator)) = DYNAMIC.iter().find(|(n, ..)| *n == name) else {
        let reason = if rows_of(&Config::default()).iter().any(|r| r.name == name) {
            "read-only: set it in the broker's config file and restart"
        } else {
            "not a broker config Strom can change live"
        };
        return Err(invalid(name, value, reason));
    };
    let key = catalog::ConfigKey {
        name: known,
        config_type: *ty,
        kafka_default: "",
        broker_synonym: None,
        validator: *validator,
        effect: catalog::Effect::Honoured,
        doc: "",
    };
    catalog::check(&key, value).map_err(|reason| invalid(name, value, reason))
}

fn apply(e: &mut Effective, name: &str, value: &str) {
    let v = value.trim();
    let long = || v.parse::<i64>().ok();
    match name {
        "log.flush.policy" => e.log.flush_policy = v.to_string(),
        "log.retention.bytes" => e.log.retention_bytes = long().unwrap_or(e.log.retention_bytes),
        "log.retention.ms" => e.log.retention_ms = long().unwrap_or(e.log.retention_ms),
        "log.roll.ms" => e.log.segment_ms = long().map_or(e.log.segment_ms, |v| v as u64),
        "log.segment.bytes" => e.log.segment_bytes = long().map_or(e.log.segment_bytes, |v| v as u64),
        "message.max.bytes" => e.log.max_message_bytes = long().map_or(e.log.max_message_bytes, |v| v as usize),
        "min.insync.replicas" => e.log.min_insync_replicas = long().map_or(e.log.min_insync_replicas, |v| v as i32),
        "num.partitions" => e.num_partitions = long().map_or(e.num_partitions, |v| v as i32),
        _ => {}
    }
}

/// The dynamic layers that apply to broker `node_id`, lowest first.
fn layers(dynamic: &BrokerConfigs, node_id: i32) -> [Option<&TopicConfigs>; 2] {
    [dynamic.get(""), dynamic.get(&node_id.to_string())]
}

/// The settings broker `node_id` works with: `config` with `dynamic` applied (entries that
/// fail validation, which the alter path refuses before storing, are skipped). Fails when the
/// combination is invalid (a segment smaller than the largest batch, say).
pub fn effective(config: &Config, dynamic: &BrokerConfigs, node_id: i32) -> Result<Effective> {
    let mut e = Effective { log: config.log.clone(), num_partitions: config.num_partitions };
    for layer in layers(dynamic, node_id).into_iter().flatten() {
        for (name, value) in layer {
            if check(name, value).is_ok() {
                apply(&mut e, name, value);
            }
        }
    }
    e.log.to_log_config()?;
    Ok(e)
}

/// One broker config as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Kafka's name.
    pub name: &'static str,
    /// The value in force.
    pub value: String,
    /// Its type.
    pub config_type: ConfigType,
    /// Where the value comes from.
    pub source: i8,
    /// Whether it can be changed live.
    pub read_only: bool,
}

/// Every broker config Strom has a Kafka name for, from the config file alone.
fn rows_of(c: &Config) -> Vec<Row> {
    let listener = format!("PLAINTEXT://{}", c.listen);
    let advertised = format!("PLAINTEXT://{}", c.advertised_address.clone().unwrap_or_else(|| c.listen.clone()));
    let policy = c.log.to_log_config().map(|l| l.flush_policy).unwrap_or_default();
    let (flush_messages, flush_ms) = crate::topic_config::flush_pair(policy);
    let (flush_messages, flush_ms) = (flush_messages.to_string(), flush_ms.to_string());
    let rf = c.cluster.as_ref().map_or(1, |cl| cl.default_replication_factor);
    let row =
        |name, value: String, config_type| Row { name, value, config_type, source: SOURCE_DEFAULT, read_only: true };
    use ConfigType as T;
    vec![
        row("advertised.listeners", advertised, T::String),
        row("auto.create.topics.enable", c.auto_create_topics.to_string(), T::Boolean),
        row("broker.id", c.node_id.to_string(), T::Int),
        row("compression.type", "producer".into(), T::String),
        row("default.replication.factor", rf.to_string(), T::Int),
        row("listeners", listener, T::String),
        row("log.cleanup.policy", "delete".into(), T::List),
        row("log.dirs", c.data_dir.display().to_string(), T::String),
        row("log.flush.interval.messages", flush_messages, T::Long),
        row("log.flush.interval.ms", flush_ms, T::Long),
        row("log.flush.policy", c.log.flush_policy.clone(), T::String),
        row("log.index.interval.bytes", "4096".into(), T::Int),
        row("log.message.timestamp.after.max.ms", "3600000".into(), T::Long),
        row("log.message.timestamp.before.max.ms", catalog::LONG_MAX.into(), T::Long),
        row("log.message.timestamp.type", "CreateTime".into(), T::String),
        row("log.retention.bytes", c.log.retention_bytes.to_string(), T::Long),
        row("log.retention.ms", c.log.retention_ms.to_string(), T::Long),
        row("log.roll.ms", c.log.segment_ms.to_string(), T::Long),
        row("log.segment.bytes", c.log.segment_bytes.to_string(), T::Int),
        row("message.max.bytes", c.log.max_message_bytes.to_string(), T::Int),
        row("min.insync.replicas", c.log.min_insync_replicas.to_string(), T::Int),
        row("node.id", c.node_id.to_string(), T::Int),
        row("num.partitions", c.num_partitions.to_string(), T::Int),
        row("replica.lag.time.max.ms", c.replica_lag_time_max_ms.to_string(), T::Long),
        row("socket.request.max.bytes", c.max_request_bytes.to_string(), T::Int),
        row("unclean.leader.election.enable", "false".into(), T::Boolean),
    ]
}

/// The rows of a DescribeConfigs for broker `resource` (`""`: the cluster-wide dynamic
/// defaults only, as Kafka lists them; otherwise this broker's every config).
pub fn describe(config: &Config, dynamic: &BrokerConfigs, resource: &str) -> Vec<Row> {
    if resource.is_empty() {
        return dynamic
            .get("")
            .into_iter()
            .flatten()
            .filter_map(|(name, value)| {
                let (n, ty, _) = DYNAMIC.iter().find(|(n, ..)| n == name)?;
                Some(Row {
                    name: n,
                    value: value.clone(),
                    config_type: *ty,
                    source: SOURCE_DYNAMIC_DEFAULT_BROKER,
                    read_only: false,
                })
            })
            .collect();
    }
    let defaults = rows_of(&Config { data_dir: config.data_dir.clone(), ..Config::default() });
    let [cluster, own] = layers(dynamic, config.node_id);
    rows_of(config)
        .into_iter()
        .zip(defaults)
        .map(|(mut row, default)| {
            row.read_only = !is_dynamic(row.name);
            if row.value != default.value {
                row.source = SOURCE_STATIC_BROKER;
            }
            for (layer, source) in [(cluster, SOURCE_DYNAMIC_DEFAULT_BROKER), (own, SOURCE_DYNAMIC_BROKER)] {
                if let Some(v) = layer.and_then(|l| l.get(row.name)) {
                    row.value = v.clone();
                    row.source = source;
                }
            }
            row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> TopicConfigs {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn dynamic_layers_apply_in_order_and_are_described_with_their_source() {
        let c = Config::default();
        let mut d = BrokerConfigs::new();
        d.insert("".into(), configs(&[("log.retention.ms", "1000"), ("num.partitions", "4")]));
        d.insert(c.node_id.to_string(), configs(&[("log.retention.ms", "2000")]));
        d.insert("99".into(), configs(&[("num.partitions", "9")]));
        let e = effective(&c, &d, c.node_id).expect("valid");
        assert_eq!((e.log.retention_ms, e.num_partitions), (2000, 4), "own over cluster default; others' ignored");
        let rows = describe(&c, &d, &c.node_id.to_string());
        let row = |n: &str| rows.iter().find(|r| r.name == n).expect(n).clone();
        assert_eq!(
            (row("log.retention.ms").value.as_str(), row("log.retention.ms").source),
            ("2000", SOURCE_DYNAMIC_BROKER)
        );
        assert_eq!(row("num.partitions").source, SOURCE_DYNAMIC_DEFAULT_BROKER);
        assert_eq!((row("message.max.bytes").source, row("message.max.bytes").read_only), (SOURCE_DEFAULT, false));
        assert!(row("listeners").read_only);
        let defaults = describe(&c, &d, "");
        assert_eq!(defaults.len(), 2, "the cluster-wide resource lists its dynamic configs only");
    }

    #[test]
    fn bad_and_read_only_names_are_refused_with_a_reason() {
        assert!(check("log.retention.ms", "-1").is_ok());
        for (name, value, why) in [
            ("log.retention.ms", "soon", "not an integer"),
            ("num.partitions", "0", "must be in"),
            ("listeners", "PLAINTEXT://:1", "read-only"),
            ("no.such.thing", "1", "not a broker config"),
        ] {
            let e = check(name, value).expect_err(name);
            assert_eq!(e.code(), 40);
            assert!(e.to_string().contains(why), "{name}: {e}");
        }
        let mut d = BrokerConfigs::new();
        d.insert("".into(), configs(&[("num.partitions", "0"), ("log.retention.ms", "7")]));
        let e = effective(&Config::default(), &d, 1).expect("valid");
        assert_eq!((e.num_partitions, e.log.retention_ms), (1, 7), "a stored value that fails validation is skipped");
    }
}
