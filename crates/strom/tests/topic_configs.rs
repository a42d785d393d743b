//! Kafka parity for topic configs, end to end with librdkafka (the rdkafka crate) against a
//! real `strom serve`: the configs tools and frameworks set are accepted, described and
//! altered; LogAppendTime reaches consumers; timestamp bounds refuse with INVALID_TIMESTAMP;
//! a topic's `compression.type` recompresses what producers send.

mod common;
mod support;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::Timestamp;
use rdkafka::admin::{AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use common::TestBroker;
use support::{TIMEOUT, admin, client_config, consume_all, create_topic, producer, stored_batches};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// What Kafka Streams, Connect, Terraform providers and librdkafka's own admin tests set on
/// the topics they create (one of each kind of config: booleans, longs, doubles, lists,
/// versions, the compaction and tiered-storage settings Strom accepts without acting on).
const SAMPLE: &[(&str, &str)] = &[
    ("cleanup.policy", "compact,delete"),
    ("compression.type", "lz4"),
    ("compression.lz4.level", "12"),
    ("delete.retention.ms", "900"),
    ("file.delete.delay.ms", "30000"),
    ("flush.messages", "1"),
    ("flush.ms", "1000"),
    ("index.interval.bytes", "8192"),
    ("leader.replication.throttled.replicas", "*"),
    ("local.retention.ms", "-2"),
    ("max.compaction.lag.ms", "600000"),
    ("max.message.bytes", "2000000"),
    ("message.downconversion.enable", "false"),
    ("message.format.version", "2.8-IV1"),
    ("message.timestamp.after.max.ms", "86400000"),
    ("message.timestamp.before.max.ms", "604800000"),
    ("message.timestamp.type", "CreateTime"),
    ("min.cleanable.dirty.ratio", "0.1"),
    ("min.compaction.lag.ms", "1000"),
    ("min.insync.replicas", "1"),
    ("preallocate", "true"),
    ("retention.ms", "86400000"),
    ("segment.bytes", "10485760"),
    ("segment.index.bytes", "1048576"),
    ("segment.jitter.ms", "100"),
    ("unclean.leader.election.enable", "false"),
];

async fn describe(
    a: &rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
    topic: &str,
) -> HashMap<String, (Option<String>, String)> {
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let r = a.describe_configs([&ResourceSpecifier::Topic(topic)], &opts).await.expect("describe");
    let res = r[0].as_ref().expect("topic configs");
    res.entries.iter().map(|e| (e.name.clone(), (e.value.clone(), format!("{:?}", e.source)))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_topic_configs_are_accepted_described_and_altered() {
    let broker = TestBroker::start();
    let a = admin(&broker.bootstrap());
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));

    let mut t = NewTopic::new("sample", 2, TopicReplication::Fixed(1));
    for (k, v) in SAMPLE {
        t = t.set(k, v);
    }
    let r = a.create_topics([&t], &opts).await.expect("create");
    assert!(r[0].is_ok(), "every Kafka config in the sample is accepted: {r:?}");

    let d = describe(&a, "sample").await;
    for (k, v) in SAMPLE {
        let (value, source) = d.get(*k).unwrap_or_else(|| panic!("{k} described"));
        assert_eq!(value.as_deref(), Some(*v), "{k}");
        assert_eq!(source, "DynamicTopic", "{k}");
    }
    assert_eq!(d["segment.ms"], (Some("604800000".to_string()), "Default".to_string()));
    assert_eq!(d["flush.policy"].0.as_deref(), Some("always"), "flush.messages=1 means fsync before ack");
    assert!(d.len() >= 37, "every topic config is described ({} are)", d.len());

    // AlterConfigs replaces the whole set: what is left out returns to its default.
    let alter = AlterConfig::new(ResourceSpecifier::Topic("sample"))
        .set("compression.type", "zstd")
        .set("flush.ms", "250")
        .set("flush.messages", "9223372036854775807")
        .set("retention.ms", "-1");
    let r = a.alter_configs([&alter], &opts).await.expect("alter");
    assert!(r[0].is_ok(), "{r:?}");
    let d = describe(&a, "sample").await;
    assert_eq!(d["compression.type"].0.as_deref(), Some("zstd"));
    assert_eq!(d["flush.policy"].0.as_deref(), Some("interval:250"), "Kafka's flush.ms is Strom's interval");
    assert_eq!(d["cleanup.policy"], (Some("delete".into()), "Default".into()));

    // A value Kafka refuses is refused, naming the config, and nothing changes. (Sent raw:
    // the rdkafka crate's alter_configs drops per-resource errors.)
    let mut conn = support::RawConn::connect(&broker.bootstrap());
    for (k, v) in [("min.cleanable.dirty.ratio", "2"), ("compression.zstd.level", "99"), ("flush.messages", "0")] {
        use kafka_protocol::messages::AlterConfigsRequest;
        use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
        use kafka_protocol::protocol::StrBytes;
        let req = AlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("sample"))
                .with_configs(vec![
                    AlterableConfig::default()
                        .with_name(StrBytes::from_static_str(k))
                        .with_value(Some(StrBytes::from_static_str(v))),
                ]),
        ]);
        let r = conn.call(2, &req);
        let res = &r.responses[0];
        assert_eq!(res.error_code, 40, "{k}={v}: INVALID_CONFIG");
        let message = res.error_message.as_deref().unwrap_or_default().to_string();
        assert!(message.contains(k), "the reason names the config: {message}");
    }
    assert_eq!(describe(&a, "sample").await["compression.type"].0.as_deref(), Some("zstd"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_is_stamped_by_the_broker_and_seen_by_consumers() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "appended", 1, &[("message.timestamp.type", "LogAppendTime")]).await;
    let p = producer(&bootstrap, &[("linger.ms", "0")]);
    let before = now_ms();
    for i in 0..10 {
        let value = format!("v{i}");
        let r = FutureRecord::<(), _>::to("appended").payload(&value).timestamp(1_000);
        p.send(r, TIMEOUT).await.expect("delivered");
    }
    let after = now_ms();

    let c: BaseConsumer = client_config(&bootstrap).set("group.id", "appended").create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("appended", 0, Offset::Beginning).expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut seen = 0;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while seen < 10 && std::time::Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = m.expect("message");
        match m.timestamp() {
            Timestamp::LogAppendTime(t) => {
                assert!((before..=after).contains(&t), "append time {t} within [{before}, {after}]");
            }
            other => panic!("record {}: {other:?}, not LogAppendTime", m.offset()),
        }
        seen += 1;
    }
    assert_eq!(seen, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_time_bounds_refuse_with_invalid_timestamp() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    let bounds = [("message.timestamp.before.max.ms", "60000"), ("message.timestamp.after.max.ms", "60000")];
    create_topic(&bootstrap, "bounded", 1, &bounds).await;
    // Kafka 4's default bound of one hour ahead applies to every topic.
    create_topic(&bootstrap, "default-bounds", 1, &[]).await;
    let p = producer(&bootstrap, &[("linger.ms", "0"), ("retries", "0")]);
    let send = |topic: &'static str, ts: i64| {
        let p = p.clone();
        async move { p.send(FutureRecord::<(), _>::to(topic).payload("x").timestamp(ts), TIMEOUT).await.map(|_| ()) }
    };
    let now = now_ms();
    send("bounded", now).await.expect("a timestamp within both bounds");
    for (topic, ts) in [("bounded", now - 3_600_000), ("bounded", now + 3_600_000), ("default-bounds", now + 7_200_000)]
    {
        match send(topic, ts).await {
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTimestamp), _)) => {}
            other => panic!("{topic} at {ts} (now {now}): {other:?}, not INVALID_TIMESTAMP"),
        }
    }
    send("default-bounds", now - 3_600_000 * 24 * 365).await.expect("no bound behind by default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_codec_recompresses_what_producers_send() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    for (topic_codec, producer_codec, stored_id) in
        [("zstd", "none", 4), ("gzip", "lz4", 1), ("uncompressed", "snappy", 0)]
    {
        let topic = format!("recompress-{topic_codec}");
        create_topic(&bootstrap, &topic, 1, &[("compression.type", topic_codec)]).await;
        let p = producer(
            &bootstrap,
            &[("compression.type", producer_codec), ("linger.ms", "5"), ("enable.idempotence", "true")],
        );
        let mut pending = Vec::new();
        for i in 0..2_000 {
            let key = format!("k{}", i % 31);
            let value = format!("{topic_codec}-{i}-{}", "y".repeat(i % 120));
            let r = FutureRecord::to(&topic).key(&key).payload(&value);
            let f = p.send_result(r).unwrap_or_else(|(e, _)| panic!("enqueue: {e}"));
            pending.push((key, value, f));
        }
        let mut expected = Vec::new();
        for (key, value, f) in pending {
            let d = f.await.expect("delivery").unwrap_or_else(|(e, _)| panic!("{topic}: {e}"));
            expected.push((d.offset, key, value));
        }
        expected.sort();
        let got = tokio::task::block_in_place(|| consume_all(&bootstrap, &topic, 1));
        let got: Vec<(i64, String, String)> = got
            .into_iter()
            .map(|r| {
                let s = |b: Option<Vec<u8>>| String::from_utf8(b.expect("set")).expect("utf8");
                (r.offset, s(r.key), s(r.value))
            })
            .collect();
        assert_eq!(got, expected, "{topic}: every record back once, at its offset");
        let stored = tokio::task::block_in_place(|| stored_batches(&bootstrap, &topic));
        assert!(
            stored.iter().all(|attributes| attributes & 7 == stored_id),
            "{topic}: stored batches are in the topic's codec {stored_id}: {stored:?}"
        );
    }
}

/// A CreateTopics with no partition count or replication factor (the broker's defaults).
fn create_with_defaults(bootstrap: &str, topic: &str) -> i16 {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_num_partitions(-1)
            .with_replication_factor(-1),
    ]);
    let r = support::RawConn::connect(bootstrap).call(5, &req);
    r.topics[0].error_code
}

async fn describe_broker(bootstrap: &str) -> HashMap<String, (Option<String>, String, bool)> {
    let a = admin(bootstrap);
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let r = a.describe_configs([&ResourceSpecifier::Broker(1)], &opts).await.expect("describe broker");
    let res = r[0].as_ref().expect("broker configs");
    res.entries.iter().map(|e| (e.name.clone(), (e.value.clone(), format!("{:?}", e.source), e.is_read_only))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_configs_are_described_under_kafka_names_and_the_dynamic_ones_change_live() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    let d = describe_broker(&bootstrap).await;
    for name in
        ["num.partitions", "log.retention.ms", "log.segment.bytes", "message.max.bytes", "listeners", "log.dirs"]
    {
        assert!(d.contains_key(name), "{name} described: {d:?}");
    }
    assert!(d["listeners"].2, "listeners is read-only");
    assert!(!d["log.retention.ms"].2, "log.retention.ms can change live");

    create_topic(&bootstrap, "before", 1, &[]).await;
    let (code, _) =
        support::alter_broker(&bootstrap, "", &[("log.retention.ms", Some("3600000")), ("num.partitions", Some("3"))]);
    assert_eq!(code, 0, "cluster-wide dynamic defaults");
    let (code, message) = support::alter_broker(&bootstrap, "", &[("listeners", Some("PLAINTEXT://127.0.0.1:1"))]);
    assert_eq!(code, 40, "{message}");
    assert!(message.contains("read-only"), "{message}");
    let (code, message) = support::alter_broker(&bootstrap, "1", &[("num.partitions", Some("0"))]);
    assert_eq!(code, 40, "{message}");

    // Topics without their own override take the new default at once; new topics get the
    // new partition count.
    let a = admin(&bootstrap);
    assert_eq!(describe(&a, "before").await["retention.ms"], (Some("3600000".into()), "Default".into()));
    assert_eq!(create_with_defaults(&bootstrap, "after"), 0);
    let md: BaseConsumer = client_config(&bootstrap).create().expect("client");
    let count = tokio::task::block_in_place(|| {
        md.fetch_metadata(Some("after"), TIMEOUT).expect("metadata").topics()[0].partitions().len()
    });
    assert_eq!(count, 3, "num.partitions applies to topics created without a count");
    let d = describe_broker(&bootstrap).await;
    assert_eq!((d["num.partitions"].0.as_deref(), d["num.partitions"].1.as_str()), (Some("3"), "DynamicDefaultBroker"));

    // They are kept in the metadata store: a restart keeps them.
    broker.restart();
    let bootstrap = broker.bootstrap();
    let d = describe_broker(&bootstrap).await;
    assert_eq!(d["log.retention.ms"].0.as_deref(), Some("3600000"));
    let (code, _) = support::alter_broker(&bootstrap, "", &[("log.retention.ms", None)]);
    assert_eq!(code, 0);
    let a = admin(&bootstrap);
    assert_eq!(
        describe(&a, "before").await["retention.ms"].0.as_deref(),
        Some("604800000"),
        "back to the file's default"
    );
}
