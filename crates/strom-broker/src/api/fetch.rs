//! Fetch: stored batches as they are (`Bytes`, no per-record decode), within the partition and
//! total byte limits, up to the high watermark; long polling until `min_bytes` are available
//! or `max_wait_ms` passes, woken by each partition's high-watermark watch (never a sleep loop).
//!
//! A fetch from a follower (a replica id >= 0) reads up to the log end instead, long-polls on
//! the log end, tells a follower whose log diverged where to truncate (`DivergingEpoch`,
//! KIP-320), and records its fetch offset as its durable end, which may raise the high
//! watermark (see [`crate::partition::Partition::replica_fetch`]).
//!
//! Fetch sessions (KIP-227) are not kept: every response carries session id 0, which tells
//! clients to send full fetch requests.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use std::sync::Arc;

use strom_log::ReadBound;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::dispatch::{Handled, RequestContext};
use crate::error::log_error_code;
use crate::partition::{Partition, ReplicaFetch};

/// One requested partition.
struct Wanted {
    index: i32,
    /// The partition, or the error code for one this broker does not hold (or refuses this
    /// follower).
    partition: Result<Arc<Partition>, i16>,
    /// For a follower's fetch: where its log diverged from ours, if it did.
    diverging: Option<(i32, i64)>,
    /// The epoch the client believes current (v9+; [`crate::partition::NO_EPOCH`] before).
    current_leader_epoch: i32,
    offset: i64,
    max_bytes: usize,
}

/// Resolves the requested partitions now; reads and waits in the deferred part.
pub async fn handle(ctx: &RequestContext, req: FetchRequest) -> Handled<FetchResponse> {
    if ctx.version >= 7 && req.session_id != 0 {
        // We never hand out a session id, so a client cannot legitimately send one.
        return FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code()).into();
    }
    let state = ctx.state.clone();
    // Fetch v4..=12 name a follower in `replica_id` (v15 moved it into `replica_state`).
    let replica = (req.replica_id.0 >= 0).then_some(req.replica_id.0);
    // The broker's own ceiling (fetch_max_bytes), whatever the client asks: a response is
    // held in memory twice (read, then encoded), so a client must not size it.
    let cap = state.config.fetch_max_bytes;
    let plan: Vec<(TopicName, Vec<Wanted>)> = req
        .topics
        .into_iter()
        .map(|t| {
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut w = Wanted {
                        index: p.partition,
                        partition: state
                            .partition(&t.topic.0, p.partition)
                            .ok_or_else(|| state.missing_partition_error(&t.topic.0, p.partition).code()),
                        diverging: None,
                        current_leader_epoch: p.current_leader_epoch,
                        offset: p.fetch_offset,
                        max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0).clamp(1, cap),
                    };
                    if let (Some(follower), Ok(partition)) = (replica, &w.partition) {
                        match partition.replica_fetch(
                            follower,
                            p.current_leader_epoch,
                            p.fetch_offset,
                            p.last_fetched_epoch,
                        ) {
                            Ok((decision, change)) => {
                                if let ReplicaFetch::Diverging { epoch, end_offset } = decision {
                                    w.diverging = Some((epoch, end_offset));
                                }
                                if let Some(change) = change {
                                    state.propose_isr_change(partition.clone(), change);
                                }
                            }
                            Err(e) => w.partition = Err(e.code()),
                        }
                    }
                    w
                })
                .collect();
            (t.topic, parts)
        })
        .collect();
    let max_bytes = usize::try_from(req.max_bytes).unwrap_or(0).clamp(1, cap);
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let max_wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0));
    let shutdown = state.shutdown.clone();
    // Nothing asked for: answer at once, as Kafka does, rather than wait out max_wait.
    let nothing_asked = plan.iter().all(|(_, parts)| parts.is_empty());
    Handled::Later(Box::pin(async move {
        let deadline = Instant::now() + max_wait;
        // Consumers wait for the high watermark to move; followers for the log end.
        let mut watches: Vec<watch::Receiver<i64>> = plan
            .iter()
            .flat_map(|(_, ps)| {
                ps.iter()
                    .filter_map(|w| w.partition.as_ref().ok().and_then(|p| p.leader_log(w.current_leader_epoch).ok()))
            })
            .map(|log| if replica.is_some() { log.watch_log_end() } else { log.watch_high_watermark() })
            .collect();
        loop {
            // Mark the current values seen *before* reading, so an append that lands after
            // the read still wakes us.
            for w in &mut watches {
                w.borrow_and_update();
            }
            let bound = if replica.is_some() { ReadBound::LogEnd } else { ReadBound::HighWatermark };
            let (response, bytes, any_error) = read_all(&plan, max_bytes, bound);
            if bytes >= min_bytes || any_error || nothing_asked || Instant::now() >= deadline || shutdown.is_cancelled()
            {
                if replica.is_some() {
                    let with_data = response
                        .responses
                        .iter()
                        .flat_map(|t| &t.partitions)
                        .filter(|p| p.records.as_ref().is_some_and(|r| !r.is_empty()))
                        .count();
                    metrics::histogram!("strom_replica_fetch_partitions_with_data").record(with_data as f64);
                }
                return response;
            }
            tokio::select! {
                _ = changed_any(&mut watches) => {
                    // A watch whose partition went away would wake us forever; drop it.
                    watches.retain(|w| w.has_changed().is_ok());
                }
                _ = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }))
}

/// Reads every requested partition once. Returns the response, the record bytes in it, and
/// whether any partition has an error (which ends a long poll at once, as in Kafka).
fn read_all(plan: &[(TopicName, Vec<Wanted>)], max_bytes: usize, bound: ReadBound) -> (FetchResponse, usize, bool) {
    let mut used = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(plan.len());
    for (name, parts) in plan {
        let mut partitions = Vec::with_capacity(parts.len());
        for w in parts {
            let (data, n) = read_one(w, max_bytes.saturating_sub(used), used == 0, bound);
            // An error, or a divergence the follower must act on, ends a long poll at once.
            any_error |= data.error_code != 0 || w.diverging.is_some();
            used += n;
            partitions.push(data);
        }
        topics.push(FetchableTopicResponse::default().with_topic(name.clone()).with_partitions(partitions));
    }
    (FetchResponse::default().with_responses(topics), used, any_error)
}

/// Reads one partition within `budget` bytes. The first partition that returns data may
/// exceed the budget and its own limit by one batch (clients must make progress past a large
/// batch); later partitions return nothing rather than exceed either (Kafka sends them a
/// partial batch, which clients drop: the same to them).
fn read_one(w: &Wanted, budget: usize, first: bool, bound: ReadBound) -> (PartitionData, usize) {
    let data = PartitionData::default().with_partition_index(w.index).with_aborted_transactions(Some(Vec::new()));
    let refused =
        |code: i16| (data.clone().with_error_code(code).with_high_watermark(-1).with_last_stable_offset(-1), 0);
    let partition = match &w.partition {
        Ok(p) => p,
        Err(code) => return refused(*code),
    };
    // The partition layer's leader and epoch checks, at every read of a long poll.
    let log = match partition.leader_log(w.current_leader_epoch) {
        Ok(log) => log,
        Err(e) => return refused(e.code()),
    };
    let with_offsets = |d: PartitionData, hw: i64, start: i64| {
        d.with_high_watermark(hw).with_last_stable_offset(hw).with_log_start_offset(start)
    };
    if let Some((epoch, end_offset)) = w.diverging {
        // No records: the follower truncates first, then fetches again.
        let d = with_offsets(data, log.high_watermark(), log.log_start_offset());
        let diverging = kafka_protocol::messages::fetch_response::EpochEndOffset::default()
            .with_epoch(epoch)
            .with_end_offset(end_offset);
        return (d.with_diverging_epoch(diverging).with_records(Some(Bytes::new())), 0);
    }
    if budget == 0 {
        let d = with_offsets(data, log.high_watermark(), log.log_start_offset());
        return (d.with_records(Some(Bytes::new())), 0);
    }
    let limit = w.max_bytes.min(budget);
    match log.read(w.offset, limit, bound) {
        Ok(r) => {
            let records = if !first && r.records.len() > limit { Bytes::new() } else { r.records };
            let n = records.len();
            if n > 0 {
                metrics::counter!("strom_fetched_bytes_total", "topic" => log.topic().to_string()).increment(n as u64);
            }
            (with_offsets(data, r.high_watermark, r.log_start_offset).with_records(Some(records)), n)
        }
        Err(e) => {
            let d = with_offsets(data, log.high_watermark(), log.log_start_offset());
            (d.with_error_code(log_error_code(&e)).with_records(Some(Bytes::new())), 0)
        }
    }
}

/// Resolves when any of the watches changes (or its partition goes away).
async fn changed_any(watches: &mut [watch::Receiver<i64>]) {
    if watches.is_empty() {
        return std::future::pending().await;
    }
    let mut futs: Vec<Pin<Box<_>>> = watches.iter_mut().map(|w| Box::pin(w.changed())).collect();
    poll_fn(|cx| {
        for f in &mut futs {
            if f.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}
