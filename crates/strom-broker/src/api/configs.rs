//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topic configs (see
//! [`crate::topic_config`]) and broker configs (see [`crate::broker_config`]: described under
//! Kafka's names; the dynamic ones altered live, for the cluster-wide default resource `""`
//! or one broker).

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
use crate::dispatch::RequestContext;
use crate::error::{Error, Result};
use crate::topic_config::{self, ConfigType, TopicConfigs};

/// Resource type of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// Resource type of a broker.
pub const RESOURCE_BROKER: i8 = 4;

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
                RESOURCE_BROKER => broker_rows(state, &res.resource_name, v),
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
    let rows = topic_config::describe(&state.log_defaults(), &meta.configs)?;
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

fn broker_rows(state: &crate::BrokerState, name: &str, version: i16) -> Result<Vec<DescribeConfigsResourceResult>> {
    let config = &state.config;
    if !name.is_empty() && name != config.node_id.to_string() {
        return Err(Error::InvalidRequest(format!(
            "broker {name:?} is not this broker ({}): ask that broker, or describe \"\" for the cluster-wide defaults",
            config.node_id
        )));
    }
    let rows = crate::broker_config::describe(config, &state.metadata.broker_configs(), name);
    Ok(rows
        .into_iter()
        .map(|row| {
            let r = DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(row.name))
                .with_value(Some(str_bytes(&row.value)))
                .with_read_only(row.read_only)
                .with_is_sensitive(false)
                .with_config_source(row.source);
            if version >= 3 { r.with_config_type(row.config_type as i8) } else { r }
        })
        .collect())
}

/// What an alter request targets. Internal topics keep the configs the broker gives them
/// (retention off, fsync always): a client changing them could make committed offsets vanish.
enum Target {
    Topic(String),
    /// `""` (the cluster-wide default) or a node id.
    Broker(String),
}

fn target(resource_type: i8, name: &StrBytes) -> Result<Target> {
    match resource_type {
        RESOURCE_TOPIC => {
            super::admin::reject_internal(name)?;
            Ok(Target::Topic(name.to_string()))
        }
        RESOURCE_BROKER => Ok(Target::Broker(name.to_string())),
        other => Err(Error::InvalidRequest(format!("resource type {other} is not supported"))),
    }
}

/// Applies `change` to the configs of `target` (a topic's overrides, or a broker resource's
/// dynamic configs).
async fn alter(
    state: &crate::BrokerState,
    target: Target,
    validate_only: bool,
    change: impl FnOnce(&mut TopicConfigs, &Target) -> Result<()>,
) -> Result<()> {
    match &target {
        Target::Topic(topic) => {
            state.alter_topic_configs(topic, validate_only, |current| change(current, &target)).await.map(|_| ())
        }
        Target::Broker(resource) => {
            state.alter_broker_configs(resource, validate_only, |current| change(current, &target)).await
        }
    }
}

/// Replaces a topic's overrides with exactly the given set (the legacy, non-incremental API).
pub async fn alter_configs(ctx: &RequestContext, req: AlterConfigsRequest) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let state = &ctx.state;
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in req.resources {
        let outcome = async {
            let target = target(res.resource_type, &res.resource_name)?;
            let mut next = TopicConfigs::new();
            for c in &res.configs {
                let value = c.value.as_ref().ok_or_else(|| Error::InvalidTopicConfig {
                    name: c.name.to_string(),
                    value: None,
                    reason: "null value".into(),
                })?;
                next.insert(c.name.to_string(), value.to_string());
            }
            alter(state, target, req.validate_only, |current, _| {
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
            let target = target(res.resource_type, &res.resource_name)?;
            let defaults = state.log_defaults();
            alter(state, target, req.validate_only, |current, target| {
                for c in &res.configs {
                    match target {
                        Target::Topic(_) => {
                            apply_op(&defaults, current, &c.name, c.config_operation, c.value.as_ref())?
                        }
                        Target::Broker(_) => broker_op(current, &c.name, c.config_operation, c.value.as_ref())?,
                    }
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

/// SET or DELETE of one dynamic broker config (none of them is a list).
fn broker_op(configs: &mut TopicConfigs, name: &StrBytes, op: i8, value: Option<&StrBytes>) -> Result<()> {
    let name = name.to_string();
    match (op, value) {
        (OP_SET, Some(v)) => {
            crate::broker_config::check(&name, v.as_str())?;
            configs.insert(name, v.to_string());
        }
        (OP_SET, None) => {
            return Err(Error::InvalidTopicConfig { name, value: None, reason: "null value".into() });
        }
        (OP_DELETE, _) => {
            configs.remove(&name);
        }
        (OP_APPEND | OP_SUBTRACT, _) => {
            return Err(Error::InvalidTopicConfig {
                name,
                value: value.map(|v| v.to_string()),
                reason: "APPEND and SUBTRACT apply only to list configs; no dynamic broker config is a list".into(),
            });
        }
        (other, _) => return Err(Error::InvalidRequest(format!("unknown config operation {other}"))),
    }
    Ok(())
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
