//! Topic administration: CreateTopics (partitions, replication factor 1, topic configs,
//! `validate_only`), DeleteTopics (by name, or by id from v6), CreatePartitions.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{message, str_bytes, topic_name};
use crate::dispatch::RequestContext;
use crate::error::{Error, Result};
use crate::topic_config::{self, TopicConfigs};

/// Config source reported for a topic's own override (DYNAMIC_TOPIC_CONFIG).
pub(crate) const SOURCE_TOPIC: i8 = 1;
/// Config source reported for a broker default (DEFAULT_CONFIG).
pub(crate) const SOURCE_DEFAULT: i8 = 5;

/// Creates (or, with `validate_only`, checks) each requested topic.
pub async fn create_topics(ctx: &RequestContext, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let state = &ctx.state;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let outcome = async {
            reject_internal(&name)?;
            let configs = request_configs(t.configs.iter().map(|c| (&c.name, &c.value)))?;
            let mut partitions = t.num_partitions;
            if !t.assignments.is_empty() {
                if partitions != -1 || t.replication_factor != -1 {
                    return Err(Error::InvalidRequest(
                        "give either replica assignments or num_partitions/replication_factor, not both".into(),
                    ));
                }
                check_assignments(state.node_id(), t.assignments.iter().map(|a| a.broker_ids.iter().map(|b| b.0)))?;
                partitions = i32::try_from(t.assignments.len()).unwrap_or(i32::MAX);
            }
            state.create_topic(&name, partitions, t.replication_factor, configs, req.validate_only).await
        }
        .await;
        let r = CreatableTopicResult::default().with_name(t.name);
        results.push(match outcome {
            Ok(meta) => {
                let described = topic_config::describe(&state.log_defaults(), &meta.configs).unwrap_or_default();
                let configs = described
                    .into_iter()
                    .map(|d| {
                        CreatableTopicConfigs::default()
                            .with_name(StrBytes::from_static_str(d.key.name))
                            .with_value(Some(str_bytes(&d.value)))
                            .with_config_source(if d.is_default { SOURCE_DEFAULT } else { SOURCE_TOPIC })
                    })
                    .collect();
                let rf = state.metadata.partitions(&meta.name).first().map_or(1, |p| p.replicas.len());
                r.with_topic_id(meta.id)
                    .with_num_partitions(meta.partitions)
                    .with_replication_factor(i16::try_from(rf).unwrap_or(i16::MAX))
                    .with_configs(Some(configs))
            }
            Err(e) => r
                .with_error_code(e.code())
                .with_error_message(message(&e))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Collects `name=value` pairs from a request, rejecting null values.
fn request_configs<'a>(pairs: impl Iterator<Item = (&'a StrBytes, &'a Option<StrBytes>)>) -> Result<TopicConfigs> {
    let mut configs = TopicConfigs::new();
    for (name, value) in pairs {
        let value = value.as_ref().ok_or_else(|| Error::InvalidTopicConfig {
            name: name.to_string(),
            value: None,
            reason: "null value".into(),
        })?;
        configs.insert(name.to_string(), value.to_string());
    }
    Ok(configs)
}

/// Clients may not create, delete, grow or reconfigure internal topics (`__consumer_offsets`).
pub(crate) fn reject_internal(name: &str) -> Result<()> {
    if crate::groups::is_internal_topic(name) {
        return Err(Error::InvalidTopic {
            name: name.to_string(),
            reason: "internal topics are managed by the broker",
        });
    }
    Ok(())
}

/// Every partition's replicas must be exactly this broker.
fn check_assignments<I: Iterator<Item = i32>>(me: i32, partitions: impl Iterator<Item = I>) -> Result<()> {
    for replicas in partitions {
        let replicas: Vec<i32> = replicas.collect();
        if replicas != [me] {
            return Err(Error::InvalidRequest(format!(
                "replica assignment {replicas:?} is not possible: this cluster has one broker ({me})"
            )));
        }
    }
    Ok(())
}

/// Deletes each named (or, from v6, identified) topic.
pub async fn delete_topics(ctx: &RequestContext, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let state = &ctx.state;
    // v0-5 name topics in `topic_names`; v6 in `topics`, by name or id.
    let wanted: Vec<(Option<String>, uuid::Uuid)> = if ctx.version >= 6 {
        req.topics.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        req.topic_names.into_iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let name = match name {
            Some(n) => Some(n),
            None => state.metadata.topic_by_id(id).map(|t| t.name),
        };
        let r = DeletableTopicResult::default().with_name(name.as_deref().map(topic_name)).with_topic_id(id);
        responses.push(match name {
            None => r.with_error_code(ResponseError::UnknownTopicId.code()),
            Some(name) => match async {
                reject_internal(&name)?;
                state.delete_topic(&name).await
            }
            .await
            {
                Ok(meta) => r.with_topic_id(if ctx.version >= 6 { meta.id } else { uuid::Uuid::nil() }),
                Err(e) => {
                    r.with_error_code(e.code()).with_error_message(if ctx.version >= 5 { message(&e) } else { None })
                }
            },
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Raises each topic's partition count.
pub async fn create_partitions(ctx: &RequestContext, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let state = &ctx.state;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let outcome = async {
            // More partitions would rehash groups onto new partitions of the internal topic.
            reject_internal(&name)?;
            if let Some(assignments) = &t.assignments {
                check_assignments(state.node_id(), assignments.iter().map(|a| a.broker_ids.iter().map(|b| b.0)))?;
            }
            state.create_partitions(&name, t.count, req.validate_only).await
        }
        .await;
        let r = CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match outcome {
            Ok(_) => r,
            Err(e) => r.with_error_code(e.code()).with_error_message(message(&e)),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
