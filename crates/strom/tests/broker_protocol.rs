//! Wire-level checks over raw sockets (kafka-protocol encodes the requests): ApiVersions and
//! its v0 fallback, pipelining order, per-partition produce errors that keep the connection
//! open, idempotent-producer sequence and epoch checks, fetch long polling, and garbage or
//! malformed frames that close only the offending connection while real clients keep working,
//! and a sealed segment damaged on disk that fails only the reads of its damaged batch.

mod common;
mod support;

use std::time::{Duration, Instant};

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreatePartitionsRequest, CreateTopicsRequest, FetchRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, MetadataRequest, ProducerId, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use common::TestBroker;
use support::{RawConn, produce_request, raw_batch, single_partition};

fn create_topic_raw(conn: &mut RawConn, name: &str, partitions: i32) {
    let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(1),
    ]);
    let resp = conn.call(5, &req);
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0].error_message);
    assert_eq!(resp.topics[0].num_partitions, partitions);
}

fn fetch_req(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.into()))).with_partitions(vec![
                FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20),
            ]),
        ])
}

#[test]
fn api_versions_lists_served_apis_and_falls_back_to_v0() {
    let broker = TestBroker::start();
    let mut c = RawConn::connect(&broker.bootstrap());
    let resp = c.call(
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("raw"))
            .with_client_software_version(StrBytes::from_static_str("1")),
    );
    assert_eq!(resp.error_code, 0);
    let produce = resp.api_keys.iter().find(|k| k.api_key == ApiKey::Produce as i16).expect("produce listed");
    assert_eq!((produce.min_version, produce.max_version), (3, 11));
    assert!(resp.api_keys.iter().any(|k| k.api_key == ApiKey::Fetch as i16));
    assert!(resp.api_keys.windows(2).all(|w| w[0].api_key < w[1].api_key), "sorted by key");

    // A version from the future: answered in v0 with UNSUPPORTED_VERSION and the real list.
    let mut frame = Vec::new();
    let body: Vec<u8> =
        [&18i16.to_be_bytes()[..], &99i16.to_be_bytes(), &77i32.to_be_bytes(), &[0xff, 0xff], &[0]].concat();
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);
    c.write_raw(&frame);
    let (cid, mut body) = c.recv_frame(0).expect("v0 fallback answer");
    assert_eq!(cid, 77);
    let v0 = ApiVersionsResponse::decode(&mut body, 0).expect("decodes as v0");
    assert_eq!(v0.error_code, 35, "UNSUPPORTED_VERSION");
    assert_eq!(v0.api_keys.len(), resp.api_keys.len());
    // The connection stays usable.
    let again = c.call(0, &ApiVersionsRequest::default());
    assert_eq!(again.error_code, 0);
}

#[test]
fn pipelined_requests_are_answered_in_order_and_errors_keep_the_connection() {
    let broker = TestBroker::start();
    let mut c = RawConn::connect(&broker.bootstrap());
    create_topic_raw(&mut c, "pipe", 1);

    // Many produce requests back to back, then read every answer: in order, offsets rising.
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(c.send(7, &produce_request("pipe", 0, -1, raw_batch(-1, -1, -1, 3, 1_000))));
    }
    ids.push(c.send(9, &MetadataRequest::default().with_topics(None)));
    for (i, id) in ids.iter().enumerate() {
        let hv = if i < 50 { 0 } else { 1 };
        let (cid, mut body) = c.recv_frame(hv).expect("response");
        assert_eq!(cid, *id, "responses come back in request order");
        if i < 50 {
            let resp = kafka_protocol::messages::ProduceResponse::decode(&mut body, 7).expect("decode");
            assert_eq!(single_partition(&resp), (0, 3 * i as i64));
        }
    }

    // Per-partition errors, connection stays open.
    let unknown = c.call(7, &produce_request("no-such-topic", 0, -1, raw_batch(-1, -1, -1, 1, 1)));
    assert_eq!(single_partition(&unknown).0, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let mut corrupt = raw_batch(-1, -1, -1, 2, 1).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff; // breaks the CRC
    let resp = c.call(7, &produce_request("pipe", 0, -1, corrupt.into()));
    assert_eq!(single_partition(&resp).0, 2, "CORRUPT_MESSAGE");
    let bad_acks = c.call(7, &produce_request("pipe", 0, 5, raw_batch(-1, -1, -1, 1, 1)));
    assert_eq!(single_partition(&bad_acks).0, 21, "INVALID_REQUIRED_ACKS");
    let internal = c.call(7, &produce_request("__consumer_offsets", 0, -1, raw_batch(-1, -1, -1, 1, 1)));
    assert_eq!(single_partition(&internal).0, 17, "INVALID_TOPIC_EXCEPTION: the internal topic is the coordinator's");
    // Nor may clients grow it (groups would rehash) or change its configs (retention could
    // delete committed offsets).
    let grow = c.call(
        3,
        &CreatePartitionsRequest::default()
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("__consumer_offsets")))
                    .with_count(50),
            ])
            .with_timeout_ms(5_000),
    );
    assert_eq!(grow.results[0].error_code, 17, "CreatePartitions on the internal topic");
    let reconfigure = c.call(
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("__consumer_offsets"))
                .with_configs(vec![
                    AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_static_str("1"))),
                ]),
        ]),
    );
    assert_eq!(reconfigure.responses[0].error_code, 17, "IncrementalAlterConfigs on the internal topic");

    // acks=0 gets no response: the next answer on the connection is the Metadata one.
    c.send(7, &produce_request("pipe", 0, 0, raw_batch(-1, -1, -1, 1, 1)));
    let meta = c.call(9, &MetadataRequest::default().with_topics(None));
    assert_eq!(meta.topics.len(), 1);

    // A failed acks=0 produce closes the connection (there is no response to carry the error).
    let mut fire_and_forget = RawConn::connect(&broker.bootstrap());
    fire_and_forget.send(7, &produce_request("no-such-topic", 0, 0, raw_batch(-1, -1, -1, 1, 1)));
    assert!(fire_and_forget.is_closed_by_peer(), "acks=0 failure closes the connection");

    // Offset out of range, and the high watermark / log start in every partition response.
    let f = c.call(11, &fetch_req("pipe", 0, 10_000, 0));
    let p = &f.responses[0].partitions[0];
    assert_eq!(p.error_code, 1, "OFFSET_OUT_OF_RANGE");
    assert_eq!((p.high_watermark, p.log_start_offset), (151, 0));
}

#[test]
fn idempotent_sequences_and_epochs_are_checked() {
    let broker = TestBroker::start();
    let mut c = RawConn::connect(&broker.bootstrap());
    create_topic_raw(&mut c, "idem", 1);
    let init = c.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    assert_eq!(init.error_code, 0);
    assert_eq!(init.producer_epoch, 0);
    let pid = init.producer_id.0;
    let other = c.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    assert_ne!(other.producer_id.0, pid, "ids are unique");

    let first = c.call(7, &produce_request("idem", 0, -1, raw_batch(pid, 0, 0, 5, 1)));
    assert_eq!(single_partition(&first), (0, 0));
    // A retry of the same batch: acknowledged with the original offset, not written again.
    let retry = c.call(7, &produce_request("idem", 0, -1, raw_batch(pid, 0, 0, 5, 1)));
    assert_eq!(single_partition(&retry), (0, 0));
    let next = c.call(7, &produce_request("idem", 0, -1, raw_batch(pid, 0, 5, 2, 1)));
    assert_eq!(single_partition(&next), (0, 5));
    let gap = c.call(7, &produce_request("idem", 0, -1, raw_batch(pid, 0, 20, 1, 1)));
    assert_eq!(single_partition(&gap).0, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");

    // Without a transactional id an epoch bump (KIP-360) gets a fresh id, as from Kafka: a
    // client cannot claim an id that was not issued to it, nor one issued to another client.
    let bumped = c.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(0),
    );
    assert_eq!(bumped.error_code, 0);
    assert!(bumped.producer_id.0 != pid && bumped.producer_id.0 != other.producer_id.0 && bumped.producer_epoch == 0);
    let claimed = c.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(900_000))
            .with_producer_epoch(3),
    );
    assert!(
        claimed.producer_id.0 != 900_000 && claimed.producer_epoch == 0,
        "a never-issued id is not handed out on request"
    );
    // A newer epoch of an id (what a bumped transactional producer writes) fences the old one.
    let new_epoch = c.call(7, &produce_request("idem", 0, -1, raw_batch(pid, 1, 0, 1, 1)));
    assert_eq!(single_partition(&new_epoch), (0, 7));
    let stale = c.call(7, &produce_request("idem", 0, -1, raw_batch(pid, 0, 7, 1, 1)));
    assert_eq!(single_partition(&stale).0, 47, "INVALID_PRODUCER_EPOCH");

    let f = c.call(11, &fetch_req("idem", 0, 0, 0));
    assert_eq!(f.responses[0].partitions[0].high_watermark, 8, "the duplicate was not stored");
}

#[test]
fn fetch_long_poll_wakes_on_append() {
    let broker = TestBroker::start();
    let mut c = RawConn::connect(&broker.bootstrap());
    create_topic_raw(&mut c, "poll", 1);
    // Nothing to read: a long poll that must be woken by the append below, not time out.
    let started = Instant::now();
    let id = c.send(11, &fetch_req("poll", 0, 0, 20_000));
    let mut producer = RawConn::connect(&broker.bootstrap());
    std::thread::sleep(Duration::from_millis(200)); // let the fetch park (not a synchronisation: either order passes)
    let resp = producer.call(7, &produce_request("poll", 0, -1, raw_batch(-1, -1, -1, 4, 1)));
    assert_eq!(single_partition(&resp), (0, 0));
    let (cid, mut body) = c.recv_frame(0).expect("fetch answer (v11: response header v0)");
    assert_eq!(cid, id);
    let f = kafka_protocol::messages::FetchResponse::decode(&mut body, 11).expect("decode");
    let p = &f.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 4);
    assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()), "records returned");
    assert!(started.elapsed() < Duration::from_secs(10), "woken by the append, not the 20 s timeout");

    // With no data and a short max wait, the fetch returns empty after about max_wait.
    let started = Instant::now();
    let f = c.call(11, &fetch_req("poll", 0, 4, 300));
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(f.responses[0].partitions[0].records.as_ref().is_none_or(|r| r.is_empty()));
}

#[test]
fn garbage_and_malformed_frames_close_only_that_connection() {
    let broker = TestBroker::start();
    let mut good = RawConn::connect(&broker.bootstrap());
    create_topic_raw(&mut good, "safe", 1);
    let acked = good.call(7, &produce_request("safe", 0, -1, raw_batch(-1, -1, -1, 10, 1)));
    assert_eq!(single_partition(&acked), (0, 0));

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random garbage", (0..64u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect()),
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        ("size over the maximum", (200 * 1024 * 1024i32).to_be_bytes().to_vec()),
        ("size too small for a header", [&3i32.to_be_bytes()[..], &[1, 2, 3]].concat()),
        (
            "unknown api key",
            [&8i32.to_be_bytes()[..], &999i16.to_be_bytes(), &0i16.to_be_bytes(), &1i32.to_be_bytes()].concat(),
        ),
        (
            "unserved version",
            [&10i32.to_be_bytes()[..], &0i16.to_be_bytes(), &0i16.to_be_bytes(), &1i32.to_be_bytes(), &[0xff, 0xff]]
                .concat(),
        ),
        ("malformed produce body", {
            let body =
                [&0i16.to_be_bytes()[..], &7i16.to_be_bytes(), &9i32.to_be_bytes(), &[0xff, 0xff], &[0x7f; 5]].concat();
            [&(body.len() as i32).to_be_bytes()[..], &body].concat()
        }),
        // A few bytes declaring 2^31 array elements: kafka-protocol 0.18.0 reserved memory for
        // all of them before reading one (~200 GB) and the failed allocation aborted the whole
        // broker. The vendored patch bounds the reservation; the request is just malformed.
        ("produce with 2^31 topics", {
            let body = [
                &0i16.to_be_bytes()[..],
                &3i16.to_be_bytes(),
                &13i32.to_be_bytes(),
                &[0xff, 0xff],
                &[0xff, 0xff],
                &1i16.to_be_bytes(),
                &1000i32.to_be_bytes(),
                &i32::MAX.to_be_bytes(),
            ]
            .concat();
            [&(body.len() as i32).to_be_bytes()[..], &body].concat()
        }),
        ("flexible metadata with 2^31 topics", {
            // Metadata v12: request header v2 (client id, empty tagged fields), then a compact
            // array whose varint length says 2^31 - 1 elements.
            let body = [
                &3i16.to_be_bytes()[..],
                &12i16.to_be_bytes(),
                &14i32.to_be_bytes(),
                &[0xff, 0xff],
                &[0x00],
                &[0xff, 0xff, 0xff, 0xff, 0x07],
            ]
            .concat();
            [&(body.len() as i32).to_be_bytes()[..], &body].concat()
        }),
    ];
    for (what, bytes) in cases {
        let mut bad = RawConn::connect(&broker.bootstrap());
        bad.write_raw(&bytes);
        assert!(bad.is_closed_by_peer(), "{what}: the broker closes the connection");
    }
    // A truncated frame followed by the client going away.
    {
        let mut bad = RawConn::connect(&broker.bootstrap());
        bad.write_raw(&[0, 0, 1, 0, 0, 3]);
    }

    // The good connection and a real client still work, and acknowledged data is intact.
    let meta = good.call(9, &MetadataRequest::default().with_topics(None));
    assert_eq!(meta.topics.len(), 1);
    let f = good.call(11, &fetch_req("safe", 0, 0, 0));
    assert_eq!(f.responses[0].partitions[0].high_watermark, 10);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let p = support::producer(&broker.bootstrap(), &[]);
        let (partition, offset) = support::send(&p, "safe", b"k", b"v").await;
        assert_eq!((partition, offset), (0, 10));
    });
    let recs = support::consume_all(&broker.bootstrap(), "safe", 1);
    assert_eq!(recs.len(), 11);
    assert_eq!(recs[10].value.as_deref(), Some(&b"v"[..]));
}

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn thousands_of_idle_connections_cost_little() {
    const CONNS: usize = 2_000;
    let broker = TestBroker::start();
    let pid = broker.pid().expect("running");
    let mut warm = RawConn::connect(&broker.bootstrap());
    warm.call(3, &ApiVersionsRequest::default());
    let before = rss_kib(pid);
    let mut conns: Vec<RawConn> = (0..CONNS).map(|_| RawConn::connect(&broker.bootstrap())).collect();
    // Each connection makes one request, then goes idle.
    for c in &mut conns {
        c.send(3, &ApiVersionsRequest::default());
    }
    for c in &mut conns {
        c.recv_frame(0).expect("answer");
    }
    let after = rss_kib(pid);
    let per_conn = (after.saturating_sub(before)) * 1024 / CONNS as u64;
    eprintln!("{CONNS} idle connections: RSS {before} KiB -> {after} KiB ({per_conn} bytes each)");
    assert!(per_conn < 16 * 1024, "an idle connection costs {per_conn} bytes");
    // Still serving.
    let meta = warm.call(9, &MetadataRequest::default().with_topics(None));
    assert!(meta.brokers.len() == 1);
}

/// Counts the RecordBatches in a fetched record set.
fn batch_count(records: &bytes::Bytes) -> usize {
    let (mut at, mut n) = (0usize, 0usize);
    while at + 12 <= records.len() {
        let len = i32::from_be_bytes([records[at + 8], records[at + 9], records[at + 10], records[at + 11]]) as usize;
        at += 12 + len;
        n += 1;
    }
    n
}

#[test]
fn fetch_respects_partition_and_total_byte_limits() {
    let broker = TestBroker::start();
    let mut c = RawConn::connect(&broker.bootstrap());
    create_topic_raw(&mut c, "limits", 2);
    for p in 0..2 {
        for _ in 0..10 {
            let r = c.call(7, &produce_request("limits", p, -1, raw_batch(-1, -1, -1, 3, 1)));
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        }
    }
    let both = |partition_max: i32, total_max: i32| {
        FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_bytes(total_max)
            .with_topics(vec![
                FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str("limits"))).with_partitions(
                    (0..2)
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(partition_max)
                        })
                        .collect(),
                ),
            ])
    };
    // A tiny partition limit: the first partition still returns one whole batch (progress),
    // the next one nothing rather than a batch over its limit (as Kafka: only the first
    // partition with data may exceed the limits).
    let f = c.call(11, &both(1, 1 << 20));
    let counts: Vec<usize> =
        f.responses[0].partitions.iter().map(|p| p.records.as_ref().map_or(0, batch_count)).collect();
    assert_eq!(counts, vec![1, 0]);
    // A tiny total limit: the first partition returns one batch, the second nothing.
    let f = c.call(11, &both(1 << 20, 1));
    let counts: Vec<usize> =
        f.responses[0].partitions.iter().map(|p| p.records.as_ref().map_or(0, batch_count)).collect();
    assert_eq!(counts, vec![1, 0]);
    for p in &f.responses[0].partitions {
        assert_eq!(
            (p.high_watermark, p.last_stable_offset, p.log_start_offset),
            (30, 30, 0),
            "offsets in every partition"
        );
    }
    // Generous limits return everything.
    let f = c.call(11, &both(1 << 20, 1 << 20));
    let counts: Vec<usize> =
        f.responses[0].partitions.iter().map(|p| batch_count(p.records.as_ref().expect("records"))).collect();
    assert_eq!(counts, vec![10, 10]);
}

/// A sealed segment that rots while the broker is down (one byte inside its first batch
/// flipped) does not keep the broker from starting: fetching the damaged batch answers
/// KAFKA_STORAGE_ERROR for that partition only, the partition's later segments and other
/// topics still serve every acknowledged record, and the partition still takes writes.
#[test]
fn a_rotten_sealed_segment_fails_only_reads_of_the_damaged_batch() {
    const BATCHES: i64 = 20;
    const RECORDS: i64 = 5;
    let mut broker = TestBroker::start();
    let mut c = RawConn::connect(&broker.bootstrap());
    create_topic_raw(&mut c, "rot", 1);
    create_topic_raw(&mut c, "fine", 1);
    let small_segments = c.call(
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("rot"))
                .with_configs(vec![
                    AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("segment.bytes"))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_static_str("1024"))),
                ]),
        ]),
    );
    assert_eq!(small_segments.responses[0].error_code, 0);
    for topic in ["rot", "fine"] {
        for _ in 0..BATCHES {
            let r = c.call(7, &produce_request(topic, 0, -1, raw_batch(-1, -1, -1, RECORDS as usize, 1)));
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0, "{topic}");
        }
    }
    drop(c);
    assert!(broker.stop().success());

    let dir = broker.data_dir().join("rot-0");
    let mut segments: Vec<i64> = std::fs::read_dir(&dir)
        .expect("partition dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    segments.sort_unstable();
    assert!(segments.len() >= 3, "expected several segments, found {segments:?}");
    let first = dir.join(format!("{:020}.log", segments[0]));
    let mut bytes = std::fs::read(&first).expect("read segment");
    bytes[61 + 10] ^= 0x55; // inside the first batch's records: its CRC no longer matches
    std::fs::write(&first, &bytes).expect("damage segment");

    broker.restart();
    let mut c = RawConn::connect(&broker.bootstrap());
    let damaged = c.call(12, &fetch_req("rot", 0, 0, 0));
    let p = &damaged.responses[0].partitions[0];
    assert_eq!(p.error_code, 56, "KAFKA_STORAGE_ERROR for the damaged batch");
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()), "no bytes of a damaged batch are served");

    let intact = c.call(12, &fetch_req("rot", 0, segments[1], 0));
    let p = &intact.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "later segments still serve");
    assert_eq!(p.high_watermark, BATCHES * RECORDS);
    assert!(batch_count(p.records.as_ref().expect("records")) > 0);

    let other = c.call(12, &fetch_req("fine", 0, 0, 0));
    let p = &other.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, BATCHES * RECORDS), "other topics are untouched");
    assert_eq!(batch_count(p.records.as_ref().expect("records")), BATCHES as usize);

    let r = c.call(7, &produce_request("rot", 0, -1, raw_batch(-1, -1, -1, 1, 1)));
    let (code, base) = single_partition(&r);
    assert_eq!((code, base), (0, BATCHES * RECORDS), "the damaged partition still takes writes after its end");
    assert!(broker.logs().contains("corrupt"), "the damage is logged");
}

/// `raw_batch` with its attributes replaced (compression codec, transactional and control
/// bits) and its CRC recomputed, so only the rule under test is broken.
fn batch_with_attributes(attributes: i16) -> bytes::Bytes {
    let mut b = raw_batch(-1, -1, -1, 2, 1).to_vec();
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.into()
}

/// What Kafka refuses from a client beyond broken bytes: several batches for one partition,
/// control batches, transactional batches without a transactional id, and compression codecs
/// the request version cannot carry. Each gets its own error code (not CORRUPT_MESSAGE, which
/// clients retry), nothing is written, and the connection stays open.
#[test]
fn produce_rules_beyond_valid_bytes_get_their_own_errors() {
    let broker = TestBroker::start();
    let mut c = RawConn::connect(&broker.bootstrap());
    create_topic_raw(&mut c, "rules", 1);
    let two = [raw_batch(-1, -1, -1, 1, 1), raw_batch(-1, -1, -1, 1, 1)].concat();
    let cases: [(&str, i16, bytes::Bytes, i16); 5] = [
        ("two batches in one partition", 7, two.into(), 87),
        ("a control batch", 7, batch_with_attributes(0x20), 87),
        ("a transactional batch without a transactional id", 7, batch_with_attributes(0x10), 53),
        ("an unknown compression codec", 7, batch_with_attributes(5), 76),
        ("zstd before Produce v7", 6, batch_with_attributes(4), 76),
    ];
    for (what, version, records, code) in cases {
        let r = c.call(version, &produce_request("rules", 0, -1, records));
        assert_eq!(single_partition(&r).0, code, "{what}");
    }
    let mut crc_broken = raw_batch(-1, -1, -1, 1, 1).to_vec();
    let last = crc_broken.len() - 1;
    crc_broken[last] ^= 1;
    let r = c.call(7, &produce_request("rules", 0, -1, crc_broken.into()));
    assert_eq!(single_partition(&r).0, 2, "damaged bytes stay CORRUPT_MESSAGE");
    let ok = c.call(7, &produce_request("rules", 0, -1, raw_batch(-1, -1, -1, 1, 1)));
    assert_eq!(single_partition(&ok), (0, 0), "nothing refused was written, and the connection still works");
}

/// A fetch that asks for nothing is answered at once, and a long poll on a partition whose
/// topic is deleted meanwhile ends with UNKNOWN_TOPIC_OR_PARTITION instead of waiting out
/// its `max_wait_ms`.
#[test]
fn fetches_end_early_when_there_is_nothing_to_wait_for() {
    use kafka_protocol::messages::{DeleteTopicsRequest, FetchResponse};
    use kafka_protocol::protocol::HeaderVersion;
    let broker = TestBroker::start();
    let mut c = RawConn::connect(&broker.bootstrap());
    let nothing = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(10_000)
        .with_min_bytes(1);
    let started = Instant::now();
    assert!(c.call(12, &nothing).responses.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5), "an empty fetch waited {:?}", started.elapsed());

    create_topic_raw(&mut c, "going", 1);
    let mut poller = RawConn::connect(&broker.bootstrap());
    let started = Instant::now();
    let id = poller.send(12, &fetch_req("going", 0, 0, 10_000));
    // Give the fetch time to start waiting. Whether or not it has, the answer must come early
    // and say the partition is gone; the wait is what makes the delete's wake-up the path
    // under test.
    std::thread::sleep(Duration::from_millis(300));
    let deleted = c.call(
        4,
        &DeleteTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topic_names(vec![TopicName(StrBytes::from_static_str("going"))]),
    );
    assert_eq!(deleted.responses[0].error_code, 0);
    let (cid, mut body) = poller.recv_frame(FetchResponse::header_version(12)).expect("fetch answered");
    assert_eq!(cid, id);
    let resp = FetchResponse::decode(&mut body, 12).expect("decode");
    assert_eq!(resp.responses[0].partitions[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    assert!(started.elapsed() < Duration::from_secs(5), "the long poll outlived its topic by {:?}", started.elapsed());
}

/// ListOffsets over raw sockets: earliest, latest and by timestamp (past every record: -1),
/// leader epoch -1 where no offset is found, and a partition named twice in one request gets
/// INVALID_REQUEST for each mention, as from Kafka.
#[test]
fn list_offsets_answers_and_refuses_duplicates() {
    use kafka_protocol::messages::ListOffsetsRequest;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let broker = TestBroker::start();
    let mut c = RawConn::connect(&broker.bootstrap());
    create_topic_raw(&mut c, "lo", 2);
    for ts in [1_000, 2_000] {
        let r = c.call(7, &produce_request("lo", 0, -1, raw_batch(-1, -1, -1, 2, ts)));
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let ask = |partitions: &[(i32, i64)]| {
        ListOffsetsRequest::default().with_replica_id(kafka_protocol::messages::BrokerId(-1)).with_topics(vec![
            ListOffsetsTopic::default().with_name(TopicName(StrBytes::from_static_str("lo"))).with_partitions(
                partitions
                    .iter()
                    .map(|&(p, ts)| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(ts))
                    .collect(),
            ),
        ])
    };
    let answers = |r: &kafka_protocol::messages::ListOffsetsResponse| -> Vec<(i16, i64, i32)> {
        r.topics[0].partitions.iter().map(|p| (p.error_code, p.offset, p.leader_epoch)).collect()
    };
    let r = c.call(6, &ask(&[(0, -2), (1, -1)]));
    assert_eq!(answers(&r), vec![(0, 0, 0), (0, 0, 0)], "earliest of partition 0, latest of the empty partition 1");
    let r = c.call(6, &ask(&[(0, 1_500)]));
    assert_eq!(answers(&r), vec![(0, 2, 0)], "the first record at or after 1500");
    let r = c.call(6, &ask(&[(0, 9_999)]));
    assert_eq!(answers(&r), vec![(0, -1, -1)], "past every record: offset and leader epoch -1");
    let r = c.call(6, &ask(&[(0, -1), (1, -1), (0, -2)]));
    assert_eq!(answers(&r), vec![(42, -1, -1), (0, 0, 0), (42, -1, -1)], "partition 0 twice: INVALID_REQUEST for both");
}

/// "Create if it does not exist" callers get TOPIC_ALREADY_EXISTS for an existing topic
/// whatever else the request says, and a Metadata request for a name no topic can have is
/// INVALID_TOPIC_EXCEPTION even with auto-creation off (clients then fail at once).
#[test]
fn existing_topics_and_invalid_names_get_the_kafka_error_first() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let broker = TestBroker::start();
    let mut c = RawConn::connect(&broker.bootstrap());
    create_topic_raw(&mut c, "here", 1);
    let again = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("here")))
            .with_num_partitions(3)
            .with_replication_factor(3),
    ]);
    assert_eq!(c.call(5, &again).topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS before INVALID_REPLICATION_FACTOR");
    let meta = c.call(
        9,
        &MetadataRequest::default().with_allow_auto_topic_creation(false).with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("no spaces allowed")))),
        ])),
    );
    assert_eq!(meta.topics[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
}

/// The topic configs Kafka Streams and admin tools set on every topic they create are accepted
/// with the value that describes what Strom does, and refused with any other.
#[test]
fn kafka_topic_configs_with_strom_semantics_are_accepted() {
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    let broker = TestBroker::start();
    let mut c = RawConn::connect(&broker.bootstrap());
    let create = |name: &'static str, configs: &[(&'static str, &'static str)]| {
        CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(name)))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_static_str(k))
                                .with_value(Some(StrBytes::from_static_str(v)))
                        })
                        .collect(),
                ),
        ])
    };
    let streams_like = [
        ("message.timestamp.type", "CreateTime"),
        ("min.insync.replicas", "1"),
        ("compression.type", "producer"),
        ("cleanup.policy", "delete"),
    ];
    let r = c.call(5, &create("repartition", &streams_like));
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    for (k, v, why) in [
        ("message.timestamp.type", "logappendtime", "must be one of CreateTime, LogAppendTime"),
        ("compression.type", "brotli", "must be one of"),
        ("remote.storage.enable", "true", "tiered storage is not supported"),
        ("no.such.config", "1", "unknown topic config"),
    ] {
        let r = c.call(5, &create("refused", &[(k, v)]));
        assert_eq!(r.topics[0].error_code, 40, "INVALID_CONFIG for {k}={v}");
        let message = r.topics[0].error_message.as_deref().unwrap_or_default().to_string();
        assert!(message.contains(why) && message.contains(k), "{k}={v}: {message}");
    }
    // min.insync.replicas is honoured: any count from 1 (as Kafka, more than the replicas
    // only makes acks=all produces fail), nothing below.
    let r = c.call(5, &create("strict", &[("min.insync.replicas", "2")]));
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    let r = c.call(5, &create("refused", &[("min.insync.replicas", "0")]));
    assert_eq!(r.topics[0].error_code, 40, "INVALID_CONFIG for min.insync.replicas=0");
    // On a 1-replica topic that wants 2 in sync, acks=all is refused and acks=1 is not.
    let (code, _) = single_partition(&c.call(7, &produce_request("strict", 0, -1, raw_batch(-1, 0, 0, 1, 1))));
    assert_eq!(code, 19, "NOT_ENOUGH_REPLICAS");
    let (code, _) = single_partition(&c.call(7, &produce_request("strict", 0, 1, raw_batch(-1, 0, 0, 1, 1))));
    assert_eq!(code, 0, "acks=1");
}
