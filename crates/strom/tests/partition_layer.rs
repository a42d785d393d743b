//! The partition layer seen from the wire: leader epochs come from the metadata store (here an
//! injected store whose partitions are at epoch 3, as after three leader changes), produce
//! stamps batches with the epoch, and Fetch, ListOffsets and OffsetForLeaderEpoch fence a stale
//! `current_leader_epoch` (FENCED_LEADER_EPOCH) and refuse a newer one (UNKNOWN_LEADER_EPOCH).
//! (OffsetForLeaderEpoch with librdkafka is in `offset_for_leader_epoch.rs`, a process of its
//! own for its metrics.)

mod common;
mod support;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, MetadataRequest, OffsetForLeaderEpochRequest,
};

use support::in_process::{EPOCH, InProcess, epoch_end, name};
use support::{RawConn, produce_request, raw_batch, single_partition};

const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

fn fetch(conn: &mut RawConn, topic: &str, current_leader_epoch: i32) -> (i16, bytes::Bytes) {
    let req =
        FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(
            vec![FetchTopic::default().with_topic(name(topic)).with_partitions(vec![
            FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)
                .with_current_leader_epoch(current_leader_epoch),
        ])],
        );
    let resp = conn.call(12, &req);
    let p = &resp.responses[0].partitions[0];
    (p.error_code, p.records.clone().unwrap_or_default())
}

fn list_latest(conn: &mut RawConn, topic: &str, current_leader_epoch: i32) -> (i16, i64, i32) {
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        ListOffsetsTopic::default().with_name(name(topic)).with_partitions(vec![
            ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)
                .with_current_leader_epoch(current_leader_epoch),
        ]),
    ]);
    let resp = conn.call(6, &req);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.leader_epoch)
}

#[test]
fn the_partition_layer_fences_stale_epochs_and_refuses_unknown_ones() {
    let broker = InProcess::start();
    let mut c = RawConn::connect(&broker.addr);
    // Auto-created through Metadata; the store reports its partition at epoch 3.
    let meta = c.call(
        12,
        &MetadataRequest::default().with_allow_auto_topic_creation(true).with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(Some(name("e"))),
        ])),
    );
    let p = &meta.topics[0].partitions[0];
    assert_eq!((p.error_code, p.leader_epoch), (0, EPOCH), "Metadata reports the store's epoch");

    let (code, base) = single_partition(&c.call(9, &produce_request("e", 0, -1, raw_batch(-1, -1, 0, 5, 1_000))));
    assert_eq!((code, base), (0, 0));

    // The current epoch, or none, is served; the stored batch carries the epoch it was
    // written in (bytes 12..16 of a RecordBatch: partitionLeaderEpoch).
    for sent in [EPOCH, -1] {
        let (code, records) = fetch(&mut c, "e", sent);
        assert_eq!(code, 0, "fetch at epoch {sent}");
        assert!(records.len() > 16, "fetch at epoch {sent} returned the batch");
        assert_eq!(i32::from_be_bytes(records[12..16].try_into().expect("4 bytes")), EPOCH, "stamped by the partition");
    }
    assert_eq!(fetch(&mut c, "e", EPOCH - 1).0, FENCED_LEADER_EPOCH);
    assert_eq!(fetch(&mut c, "e", EPOCH + 1).0, UNKNOWN_LEADER_EPOCH);

    assert_eq!(list_latest(&mut c, "e", EPOCH), (0, 5, EPOCH));
    assert_eq!(list_latest(&mut c, "e", EPOCH - 1).0, FENCED_LEADER_EPOCH);
    assert_eq!(list_latest(&mut c, "e", EPOCH + 1).0, UNKNOWN_LEADER_EPOCH);

    // The current epoch ends at the log end; an epoch newer than any known is undefined.
    assert_eq!(epoch_end(&mut c, "e", EPOCH, EPOCH), (0, EPOCH, 5));
    assert_eq!(epoch_end(&mut c, "e", -1, EPOCH + 2), (0, -1, -1));
    assert_eq!(epoch_end(&mut c, "e", EPOCH - 1, EPOCH).0, FENCED_LEADER_EPOCH);
    assert_eq!(epoch_end(&mut c, "e", EPOCH + 1, EPOCH).0, UNKNOWN_LEADER_EPOCH);
    // An unknown partition is answered as such, not by a closed connection.
    assert_eq!(epoch_end(&mut c, "missing", -1, 0).0, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    // What a careless or hostile client may send is answered per partition, and the
    // connection keeps serving: extreme epochs, a negative partition index.
    assert_eq!(fetch(&mut c, "e", i32::MAX).0, UNKNOWN_LEADER_EPOCH);
    assert_eq!(fetch(&mut c, "e", i32::MIN).0, FENCED_LEADER_EPOCH);
    assert_eq!(epoch_end(&mut c, "e", EPOCH, i32::MAX), (0, -1, -1), "an epoch newer than any known");
    assert_eq!(epoch_end(&mut c, "e", EPOCH, i32::MIN), (0, i32::MIN, 0), "older than any known: its start");
    let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
        OffsetForLeaderTopic::default().with_topic(name("e")).with_partitions(vec![
            OffsetForLeaderPartition::default().with_partition(-1).with_current_leader_epoch(-1).with_leader_epoch(0),
        ]),
    ]);
    assert_eq!(c.call(4, &req).topics[0].partitions[0].error_code, 3, "negative partition: UNKNOWN_TOPIC_OR_PARTITION");
    assert_eq!(list_latest(&mut c, "e", EPOCH), (0, 5, EPOCH), "the connection still serves");
}

/// Creating a topic of 2,000 partitions (two fsyncs of new directories and files for each,
/// seconds of I/O) runs on a blocking thread, outside every lock that produce takes: produce
/// to another topic meanwhile stays within a small bound of its latency before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_large_topic_does_not_stall_produce_to_another() {
    use std::time::{Duration, Instant};

    let broker = common::TestBroker::start();
    let b = broker.bootstrap();
    support::create_topic(&b, "hot", 1, &[]).await;
    let p = support::producer(&b, &[("acks", "all"), ("linger.ms", "0")]);
    let mut before = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        support::send(&p, "hot", b"k", b"v").await;
        before.push(t.elapsed());
    }
    before.sort();
    let p50_before = before[before.len() / 2];

    let admin_b = b.clone();
    let creating = tokio::spawn(async move {
        let t = Instant::now();
        support::create_topic(&admin_b, "big", 2_000, &[]).await;
        t.elapsed()
    });
    let mut during = Vec::new();
    while !creating.is_finished() {
        let t = Instant::now();
        support::send(&p, "hot", b"k", b"v").await;
        during.push(t.elapsed());
    }
    let took = creating.await.expect("create task");
    during.sort();
    let worst = during.last().copied().unwrap_or_default();
    eprintln!(
        "creation took {took:?}; produce p50 before {p50_before:?}, during: {} sends, p50 {:?}, worst {worst:?}",
        during.len(),
        during.get(during.len() / 2)
    );
    assert!(during.len() >= 20, "the creation ({took:?}) overlapped only {} produces", during.len());
    // Flat: no produce waited for the creation. The disk is shared, so single fsyncs may queue
    // behind the creation's; a stall would last as long as the creation itself.
    let bound = (p50_before * 50).max(Duration::from_millis(250));
    assert!(worst < bound, "a produce took {worst:?} during a {took:?} topic creation (bound {bound:?})");
    assert!(worst < took / 2, "a produce took {worst:?}, half the {took:?} creation");
}
