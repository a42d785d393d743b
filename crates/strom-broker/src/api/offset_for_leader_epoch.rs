//! OffsetForLeaderEpoch: for each partition and leader epoch, where that epoch's log ends,
//! from the partition's leader-epoch cache. A consumer that resumes at a position read under
//! an older epoch (librdkafka after a leader change, or when it is given an offset with an
//! epoch) asks this to detect a truncated log; followers will ask it after a leader change.

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::dispatch::RequestContext;

/// Answers each requested partition through the partition layer (leader and epoch checks
/// first, then the epoch cache).
pub async fn handle(ctx: &RequestContext, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let state = &ctx.state;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = EpochEndOffset::default().with_partition(p.partition);
                    let failed = |code: i16| r.clone().with_error_code(code).with_leader_epoch(-1).with_end_offset(-1);
                    let Some(partition) = state.partition(&t.topic.0, p.partition) else {
                        return failed(state.missing_partition_error(&t.topic.0, p.partition).code());
                    };
                    // Served from v2 (the oldest the codec and Kafka 4 know), so every
                    // request carries current_leader_epoch (-1: no check).
                    match partition.end_offset_for_epoch(p.current_leader_epoch, p.leader_epoch) {
                        Ok((epoch, end)) => r.with_leader_epoch(epoch).with_end_offset(end),
                        Err(e) => failed(e.code()),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
