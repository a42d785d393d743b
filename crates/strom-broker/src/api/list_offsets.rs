//! ListOffsets: earliest (-2), latest (-1, the high watermark) and by timestamp (the first
//! record whose timestamp is at or after the target). Max-timestamp (-3) needs v7, which is not
//! advertised. As in Kafka, a request from the debugging replica id (-2) is answered by any
//! replica, leader or follower, from its own log, and "latest" is then its log end offset:
//! how `strom topic describe` measures each follower's lag.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use strom_log::PartitionLog;
use tracing::warn;

use crate::dispatch::RequestContext;
use crate::error::log_error_code;
use crate::partition::Partition;

/// `timestamp` value asking for the log start offset.
pub const EARLIEST: i64 = -2;
/// `timestamp` value asking for the end offset (the high watermark).
pub const LATEST: i64 = -1;
/// Kafka's `DEBUGGING_REPLICA_ID`: a request from it reads any replica's own log.
pub const DEBUGGING_REPLICA_ID: i32 = -2;

/// Looks up each requested partition's offset. A partition named twice in one request gets
/// INVALID_REQUEST for each mention, as from Kafka.
pub async fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let state = &ctx.state;
    let mut mentions = std::collections::HashMap::<(String, i32), usize>::new();
    for t in &req.topics {
        for p in &t.partitions {
            *mentions.entry((t.name.0.to_string(), p.partition_index)).or_default() += 1;
        }
    }
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    // Leader epoch -1 (unknown) unless an offset is found.
                    let r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_leader_epoch(-1);
                    let failed = |r: ListOffsetsPartitionResponse, code: i16| {
                        r.with_error_code(code).with_offset(-1).with_timestamp(-1)
                    };
                    if mentions.get(&(t.name.0.to_string(), p.partition_index)).is_some_and(|n| *n > 1) {
                        return failed(r, ResponseError::InvalidRequest.code());
                    }
                    let Some(partition) = state.partition(&t.name.0, p.partition_index) else {
                        return failed(r, state.missing_partition_error(&t.name.0, p.partition_index).code());
                    };
                    if req.replica_id.0 == DEBUGGING_REPLICA_ID {
                        let log = partition.log();
                        return match p.timestamp {
                            EARLIEST => r.with_offset(log.log_start_offset()).with_timestamp(-1),
                            LATEST => r.with_offset(log.log_end_offset()).with_timestamp(-1),
                            _ => failed(r, ResponseError::InvalidRequest.code()),
                        };
                    }
                    // v4+ carries the epoch the client believes current; the partition
                    // layer fences a stale one and refuses one it does not know yet.
                    let log = match partition.leader_log(p.current_leader_epoch) {
                        Ok(log) => log,
                        Err(e) => return failed(r, e.code()),
                    };
                    match lookup(&partition, log, p.timestamp) {
                        Ok((-1, timestamp)) => r.with_offset(-1).with_timestamp(timestamp),
                        Ok((offset, timestamp)) => {
                            let r = r.with_offset(offset).with_timestamp(timestamp);
                            if ctx.version >= 4 { r.with_leader_epoch(partition.leader_epoch()) } else { r }
                        }
                        Err(code) => failed(r, code),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// `(offset, timestamp)` for one partition, or an error code.
fn lookup(partition: &Partition, log: &PartitionLog, target: i64) -> Result<(i64, i64), i16> {
    match target {
        EARLIEST => Ok((log.log_start_offset(), -1)),
        LATEST => Ok((partition.high_watermark(), -1)),
        t if t >= 0 => by_timestamp(log, t),
        _ => Err(ResponseError::UnsupportedVersion.code()),
    }
}

/// The first record at or after `target` below the high watermark; `(-1, -1)` when none.
fn by_timestamp(log: &PartitionLog, target: i64) -> Result<(i64, i64), i16> {
    let batch = match log.find_batch_by_timestamp(target) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok((-1, -1)),
        Err(e) => return Err(log_error_code(&e)),
    };
    let mut buf = batch;
    let set = RecordBatchDecoder::decode(&mut buf).map_err(|e| {
        warn!(topic = log.topic(), partition = log.partition(), error = %e, "stored batch does not decode");
        ResponseError::CorruptMessage.code()
    })?;
    let hw = log.high_watermark();
    Ok(set
        .records
        .iter()
        .find(|r| r.timestamp >= target)
        .filter(|r| r.offset < hw)
        .map_or((-1, -1), |r| (r.offset, r.timestamp)))
}
