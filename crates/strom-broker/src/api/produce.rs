//! Produce: append each partition's record set as received (a `Bytes` slice of the request
//! frame: no per-record decode), in arrival order, after the topic's produce-time rules
//! ([`crate::ingest`]: timestamp bounds, LogAppendTime, recompression to the topic's
//! `compression.type`), which leave the bytes untouched by default; then, unless `acks=0`,
//! answer once every append is durable: `acks=1` when it is durable on this broker (the
//! group-commit fsync under flush policy `always`), `acks=-1` when it is below the high
//! watermark, i.e. durable on every in-sync replica (on a single node, the same fsync).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use std::sync::Arc;
use std::time::Duration;

use strom_log::{AppendInfo, BatchHeader};
use tracing::debug;

use super::str_bytes;
use crate::dispatch::{Handled, RequestContext};
use crate::error::log_error_code;
use crate::partition::Partition;

/// The outcome of one partition's append, before the durability wait.
enum Appended {
    /// Appended (or recognised as a duplicate) in leader epoch `epoch`; wait for durability
    /// before answering.
    Ok { partition: Arc<Partition>, info: AppendInfo, epoch: i32, log_append_time: Option<i64> },
    /// Rejected with this error code and message.
    Failed { code: i16, message: Option<String> },
}

/// Appends every partition's records now; answers later (after the fsync) or never (`acks=0`).
pub async fn handle(ctx: &RequestContext, req: ProduceRequest) -> Handled<ProduceResponse> {
    let received = std::time::Instant::now();
    let state = &ctx.state;
    let acks = req.acks;
    let mut topics = Vec::with_capacity(req.topic_data.len());
    // Every partition of the request joins the same durability round (one fsync of the
    // journal) when the journal's round thread is idle.
    let hold = state.logs.hold_commits();
    for topic in req.topic_data {
        let name: &str = &topic.name.0;
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let outcome = if !matches!(acks, -1..=1) {
                Appended::Failed { code: ResponseError::InvalidRequiredAcks.code(), message: None }
            } else if req.transactional_id.is_some() {
                Appended::Failed {
                    code: ResponseError::TransactionalIdAuthorizationFailed.code(),
                    message: Some("transactions are not supported by this broker".into()),
                }
            } else if crate::groups::is_internal_topic(name) {
                // Only the group coordinator writes its internal topic; a client record there
                // would be replayed as group state at the next start.
                Appended::Failed {
                    code: ResponseError::InvalidTopicException.code(),
                    message: Some(format!("{name} is an internal topic; clients cannot produce to it")),
                }
            } else if let Some((code, message)) = p.records.as_ref().and_then(|r| client_rules(r, ctx.version)) {
                Appended::Failed { code: code.code(), message: Some(message) }
            } else {
                match state.partition(name, p.index) {
                    Some(partition) => append(&partition, acks, p.records, name, p.index),
                    None => {
                        Appended::Failed { code: state.missing_partition_error(name, p.index).code(), message: None }
                    }
                }
            };
            parts.push((p.index, outcome));
        }
        topics.push((topic.name, parts));
    }
    drop(hold);
    if acks == 0 {
        // No response to carry an error: like Kafka, close the connection instead, so the
        // client notices and refreshes its metadata.
        let failed = topics.iter().flat_map(|(name, parts)| parts.iter().map(move |(i, o)| (name, i, o))).find_map(
            |(name, i, o)| match o {
                Appended::Failed { code, .. } => {
                    Some(format!("acks=0 produce to {}-{i} failed with error {code}", name.0))
                }
                Appended::Ok { .. } => None,
            },
        );
        return match failed {
            Some(reason) => Handled::Close(reason),
            None => Handled::NoResponse,
        };
    }
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0).max(1));
    Handled::Later(Box::pin(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut responses = Vec::with_capacity(topics.len());
        for (name, parts) in topics {
            let mut partition_responses = Vec::with_capacity(parts.len());
            for (index, outcome) in parts {
                partition_responses.push(respond(index, outcome, acks, deadline).await);
            }
            responses
                .push(TopicProduceResponse::default().with_name(name).with_partition_responses(partition_responses));
        }
        metrics::histogram!("strom_produce_ack_duration_seconds").record(received.elapsed().as_secs_f64());
        ProduceResponse::default().with_responses(responses)
    }))
}

/// What Kafka refuses from a client's record set beyond its validity as batches (which the
/// log checks): more than one batch per partition (Produce v3+), control batches, transactional
/// batches without a transactional id, and compression codecs the request version cannot
/// carry. Reads only the batch headers; the CRC and the records are the log's to check.
fn client_rules(records: &bytes::Bytes, version: i16) -> Option<(ResponseError, String)> {
    let h = BatchHeader::parse(records)?;
    if h.magic != 2 || h.total_len() < strom_log::HEADER_LEN {
        return None; // not a batch at all: the log's validation says why
    }
    if records.len() > h.total_len() {
        return Some((
            ResponseError::InvalidRecord,
            "a produce request may carry exactly one record batch per partition".into(),
        ));
    }
    if h.is_control() {
        return Some((ResponseError::InvalidRecord, "clients cannot write control batches".into()));
    }
    if h.is_transactional() {
        return Some((
            ResponseError::TransactionalIdAuthorizationFailed,
            "a transactional batch needs a transactional id, and transactions are not supported by this broker".into(),
        ));
    }
    match h.compression() {
        0..=3 => None,
        4 if version >= 7 => None,
        4 => Some((
            ResponseError::UnsupportedCompressionType,
            format!("zstd needs Produce v7 or later, this request is v{version}"),
        )),
        codec => Some((ResponseError::UnsupportedCompressionType, format!("unknown compression codec {codec}"))),
    }
}

/// Appends through the partition layer, which checks that this broker leads the partition
/// (and, for `acks=all`, that enough replicas are in sync) and stamps the batch with the
/// current leader epoch.
fn append(partition: &Arc<Partition>, acks: i16, records: Option<bytes::Bytes>, topic: &str, index: i32) -> Appended {
    let Some(records) = records else {
        return Appended::Failed { code: ResponseError::InvalidRecord.code(), message: Some("null record set".into()) };
    };
    if acks == -1 {
        if let Err(e) = partition.check_min_insync() {
            debug!(topic, partition = index, error = %e, "acks=all produce refused");
            return Appended::Failed { code: e.code(), message: Some(e.to_string()) };
        }
    }
    let bytes = records.len() as u64;
    // Leadership first (a client sent here by stale metadata must learn that, not the
    // batch's faults), then the topic's rules, then the append (which checks again).
    if let Err(e) = partition.leader_log(crate::partition::NO_EPOCH) {
        return Appended::Failed { code: e.code(), message: Some(e.to_string()) };
    }
    let prepared = match crate::ingest::prepare(records, &partition.ingest_policy(), now_ms()) {
        Ok(p) => p,
        Err(e) => {
            debug!(topic, partition = index, error = %e, "batch refused by the topic's rules");
            return Appended::Failed { code: e.code(), message: Some(e.to_string()) };
        }
    };
    match partition.append_as_leader(prepared.records) {
        Ok((info, epoch)) => {
            if !info.duplicate {
                metrics::counter!("strom_produced_bytes_total", "topic" => topic.to_string()).increment(bytes);
                metrics::counter!("strom_produced_records_total", "topic" => topic.to_string())
                    .increment(u64::from(info.record_count));
            }
            Appended::Ok { partition: partition.clone(), info, epoch, log_append_time: prepared.log_append_time }
        }
        Err(e) => {
            debug!(topic, partition = index, error = %e, "append rejected");
            Appended::Failed { code: e.code(), message: Some(e.to_string()) }
        }
    }
}

/// The broker's clock in milliseconds since the epoch (what LogAppendTime stamps).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Waits for what `acks` promises (see the module docs) until `deadline`, then answers.
async fn respond(index: i32, outcome: Appended, acks: i16, deadline: tokio::time::Instant) -> PartitionProduceResponse {
    let r = PartitionProduceResponse::default().with_index(index);
    match outcome {
        Appended::Ok { partition, info, epoch, log_append_time } => {
            let log = partition.log();
            let waited = if acks == -1 {
                tokio::time::timeout_at(deadline, partition.wait_committed(info.last_offset, epoch))
                    .await
                    .map(|r| r.map_err(|e| (e.code(), e.to_string())))
            } else {
                tokio::time::timeout_at(deadline, log.wait_durable(info.last_offset))
                    .await
                    .map(|r| r.map_err(|e| (log_error_code(&e), e.to_string())))
            };
            match waited {
                Ok(Ok(())) => r
                    .with_base_offset(info.base_offset)
                    .with_log_append_time_ms(log_append_time.unwrap_or(-1))
                    .with_log_start_offset(log.log_start_offset()),
                Ok(Err((code, message))) => {
                    r.with_error_code(code).with_base_offset(-1).with_error_message(Some(str_bytes(&message)))
                }
                Err(_) => r
                    .with_error_code(ResponseError::RequestTimedOut.code())
                    .with_base_offset(-1)
                    .with_error_message(Some(str_bytes(
                        "the in-sync replicas did not make the batch durable within the request timeout",
                    ))),
            }
        }
        Appended::Failed { code, message } => {
            r.with_error_code(code).with_base_offset(-1).with_error_message(message.as_deref().map(str_bytes))
        }
    }
}
