//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for the topic configs the log
//! honours (see [`crate::topic_config`]). Broker configs can be described (read-only: they come
//! from the config file) but not altered.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::{SOURCE_DEFAULT, SOURCE_TOPIC};
use super::{message, str_bytes};
use crate::config::Config;
use crate::dispatch::RequestContext;
use crate::error::{Error, Result};
use crate::topic_config::{self, ConfigType, TopicConfigs};

/// Resource type of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// Resource type of a broker.
pub const RESOURCE_BROKER: i8 = 4;
/// Config source of a value from the broker's config file (STATIC_BROKER_CONFIG).
const SOURCE_STATIC_BROKER: i8 = 4;

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Describes topic configs (every honoured one, with its source) and broker configs.
pub async fn describe_configs(ctx: &RequestContext, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let state = &ctx.state;
    let v = ctx.version;
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let keys: Option<Vec<String>> = res.configuration_keys.map(|ks| ks.iter().map(|k| k.to_string()).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|ks| ks.iter().any(|k| k == name));
            let rows = match res.resource_type {
                RESOURCE_TOPIC => {
                    topic_rows(state, &res.resource_name, req.include_synonyms, req.include_documentation, v)
                }
                RESOURCE_BROKER => broker_rows(&state.config, &res.resource_name, v),
                other => Err(Error::InvalidRequest(format!("resource type {other} is not supported"))),
            };
            match rows {
                Ok(rows) => base.with_configs(rows.into_iter().filter(|r| wanted(r.name.as_str())).collect()),
                Err(e) => base.with_error_code(e.code()).with_error_message(message(&e)),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn topic_rows(
    state: &crate::BrokerState,
    name: &str,
    synonyms: bool,
    docs: bool,
    version: i16,
) -> Result<Vec<DescribeConfigsResourceResult>> {
    let meta = state.metadata.topic(name).ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
    let rows = topic_config::describe(&state.config.log, &meta.configs)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let source = if row.is_default { SOURCE_DEFAULT } else { SOURCE_TOPIC };
            let mut r = DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(row.key.name))
                .with_value(Some(str_bytes(&row.value)))
                .with_read_only(false)
                .with_is_sensitive(false)
                .with_config_source(source);
            if synonyms {
                // As Kafka lists them: the topic's override, then the broker setting that
                // supplies the default, under its broker name.
                let mut list = Vec::new();
                if !row.is_default {
                    list.push(synonym(row.key.name, &row.value, SOURCE_TOPIC));
                }
                list.push(synonym(row.key.broker_synonym.unwrap_or(row.key.name), &row.default, SOURCE_DEFAULT));
                r = r.with_synonyms(list);
            }
            if version >= 3 {
                r = r.with_config_type(row.key.config_type as i8);
                if docs {
                    r = r.with_documentation(Some(StrBytes::from_static_str(row.key.doc)));
                }
            }
            r
        })
        .collect())
}

fn synonym(name: &'static str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(StrBytes::from_static_str(name))
        .with_value(Some(str_bytes(value)))
        .with_source(source)
}

fn broker_rows(config: &Config, name: &str, version: i16) -> Result<Vec<DescribeConfigsResourceResult>> {
    if !name.is_empty() && name != config.node_id.to_string() {
        return Err(Error::InvalidRequest(format!("broker {name:?} is not this broker ({})", config.node_id)));
    }
    let rows: [(&'static str, String, ConfigType); 10] = [
        ("node.id", config.node_id.to_string(), ConfigType::Int),
        ("auto.create.topics.enable", config.auto_create_topics.to_string(), ConfigType::Boolean),
        ("num.partitions", config.num_partitions.to_string(), ConfigType::Int),
        ("socket.request.max.bytes", config.max_request_bytes.to_string(), ConfigType::Int),
        ("log.flush.policy", config.log.flush_policy.clone(), ConfigType::String),
        ("log.segment.bytes", config.log.segment_bytes.to_string(), ConfigType::Int),
        ("log.roll.ms", config.log.segment_ms.to_string(), ConfigType::Long),
        ("log.retention.ms", config.log.retention_ms.to_string(), ConfigType::Long),
        ("log.retention.bytes", config.log.retention_bytes.to_string(), ConfigType::Long),
        ("message.max.bytes", config.log.max_message_bytes.to_string(), ConfigType::Int),
    ];
    Ok(rows
        .into_iter()
        .map(|(n, value, ty)| {
            let r = DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(n))
                .with_value(Some(str_bytes(&value)))
                .with_read_only(true)
                .with_config_source(SOURCE_STATIC_BROKER);
            if version >= 3 { r.with_config_type(ty as i8) } else { r }
        })
        .collect())
}

/// Rejects anything but a topic resource.
/// The topic an alter request targets. Internal topics keep the configs the broker gives them
/// (retention off, fsync always): a client changing them could make committed offsets vanish.
fn topic_resource(resource_type: i8, name: &StrBytes) -> Result<String> {
    match resource_type {
        RESOURCE_TOPIC => {
            super::admin::reject_internal(name)?;
            Ok(name.to_string())
        }
        RESOURCE_BROKER => {
            Err(Error::InvalidRequest("broker configs are static: set them in the config file and restart".into()))
        }
        other => Err(Error::InvalidRequest(format!("resource type {other} is not supported"))),
    }
}

/// Replaces a topic's overrides with exactly the given set (the legacy, non-incremental API).
pub async fn alter_configs(ctx: &RequestContext, req: AlterConfigsRequest) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let state = &ctx.state;
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let outcome = async {
            let topic = topic_resource(res.resource_type, &res.resource_name)?;
            let mut next = TopicConfigs::new();
            for c in &res.configs {
                let value = c.value.as_ref().ok_or_else(|| Error::InvalidTopicConfig {
                    name: c.name.to_string(),
                    value: None,
                    reason: "null value".into(),
                })?;
                next.insert(c.name.to_string(), value.to_string());
            }
            state
                .alter_topic_configs(&topic, req.validate_only, |current| {
                    *current = next;
                    Ok(())
                })
                .await
        }
        .await;
        let r = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        responses.push(match outcome {
            Ok(_) => r,
            Err(e) => r.with_error_code(e.code()).with_error_message(message(&e)),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Sets, deletes, appends to or subtracts from individual topic configs.
pub async fn incremental_alter_configs(
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let state = &ctx.state;
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let outcome = async {
            let topic = topic_resource(res.resource_type, &res.resource_name)?;
            let defaults = state.config.log.clone();
            state
                .alter_topic_configs(&topic, req.validate_only, |current| {
                    for c in &res.configs {
                        apply_op(&defaults, current, &c.name, c.config_operation, c.value.as_ref())?;
                    }
                    Ok(())
                })
                .await
        }
        .await;
        let r = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name);
        responses.push(match outcome {
            Ok(_) => r,
            Err(e) => r.with_error_code(e.code()).with_error_message(message(&e)),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn apply_op(
    defaults: &crate::LogDefaults,
    configs: &mut TopicConfigs,
    name: &StrBytes,
    op: i8,
    value: Option<&StrBytes>,
) -> Result<()> {
    let name = name.to_string();
    let Some(key) = topic_config::key(&name) else {
        // The "unknown config" error, with its reason.
        topic_config::check(&name, value.map(|v| v.as_str()).unwrap_or(""))?;
        return Ok(());
    };
    let need_value = || {
        value.map(|v| v.to_string()).ok_or_else(|| Error::InvalidTopicConfig {
            name: name.clone(),
            value: None,
            reason: "null value".into(),
        })
    };
    match op {
        OP_SET => {
            configs.insert(name.clone(), need_value()?);
        }
        OP_DELETE => {
            configs.remove(&name);
        }
        OP_APPEND | OP_SUBTRACT if key.config_type == ConfigType::List => {
            let current = configs.get(&name).cloned().unwrap_or_else(|| topic_config::broker_default(defaults, key));
            let mut items: Vec<String> =
                current.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            let given = need_value()?;
            for item in given.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if op == OP_APPEND {
                    if !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    }
                } else {
                    items.retain(|i| i != item);
                }
            }
            configs.insert(name.clone(), items.join(","));
        }
        OP_APPEND | OP_SUBTRACT => {
            return Err(Error::InvalidTopicConfig {
                name,
                value: value.map(|v| v.to_string()),
                reason: "APPEND and SUBTRACT apply only to list configs".into(),
            });
        }
        other => return Err(Error::InvalidRequest(format!("unknown config operation {other}"))),
    }
    Ok(())
}
