//! The Prometheus endpoint of a real `strom serve`: after a known produce and a known commit,
//! the counters and gauges moved by exactly the right amounts, and `/health` says ready.

mod common;
mod support;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use common::TestBroker;
use support::{
    client_config, create_topic, http_get, metric_samples as samples, metric_value as value, producer, send,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_the_right_amounts() {
    let broker = TestBroker::start();
    let metrics = broker.metrics_addr();
    let (status, body) = http_get(&metrics, "/health");
    assert_eq!((status, body.trim()), (200, "ready"));
    assert_eq!(http_get(&metrics, "/nope").0, 404);

    create_topic(&broker.bootstrap(), "metered", 1, &[]).await;
    // A second create of the same topic is answered with TOPIC_ALREADY_EXISTS.
    let again = support::admin(&broker.bootstrap())
        .create_topics([&NewTopic::new("metered", 1, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create_topics request");
    assert!(again[0].is_err(), "the topic exists already");
    let before = samples(&http_get(&metrics, "/metrics").1);
    assert_eq!(value(&before, "strom_produced_records_total", &[("topic", "metered")]), None);

    const N: usize = 250;
    let p = producer(&broker.bootstrap(), &[("linger.ms", "0"), ("compression.type", "none")]);
    for i in 0..N {
        send(&p, "metered", format!("k{i}").as_bytes(), &[7u8; 100]).await;
    }

    // A group commits offset 100 of 250: its lag is 150.
    let group = {
        let mut c = client_config(&broker.bootstrap());
        c.set("group.id", "lagging").set("enable.auto.commit", "false");
        c.create::<BaseConsumer>().expect("consumer")
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("metered", 0, Offset::Offset(100)).unwrap();
    group.commit(&tpl, CommitMode::Sync).expect("commit");

    let after = samples(&http_get(&metrics, "/metrics").1);
    let records = value(&after, "strom_produced_records_total", &[("topic", "metered")]).expect("records counter");
    assert_eq!(records, N as f64, "one record per acknowledged send");
    let bytes = value(&after, "strom_produced_bytes_total", &[("topic", "metered")]).expect("bytes counter");
    assert!(bytes >= (N * 100) as f64, "batch bytes {bytes} cover the {N} payloads of 100 bytes");
    assert_eq!(
        value(&after, "strom_partition_log_end_offset", &[("topic", "metered"), ("partition", "0")]),
        Some(N as f64)
    );
    assert_eq!(
        value(&after, "strom_partition_high_watermark", &[("topic", "metered"), ("partition", "0")]),
        Some(N as f64)
    );
    assert_eq!(
        value(&after, "strom_consumer_group_lag", &[("group", "lagging"), ("topic", "metered"), ("partition", "0")]),
        Some(150.0)
    );
    assert_eq!(value(&after, "strom_under_replicated_partitions", &[]), Some(0.0));
    assert!(value(&after, "strom_partitions", &[]).unwrap_or(0.0) >= 1.0);
    let produce_requests =
        value(&after, "strom_requests_total", &[("api", "Produce"), ("outcome", "handled")]).unwrap_or(0.0);
    assert!(produce_requests >= N as f64, "{produce_requests} produce requests for {N} sends with linger 0");
    let flushes = value(&after, "strom_log_flushes_total", &[]).expect("flush counter");
    assert!(flushes >= 1.0 && flushes <= N as f64 + 10.0, "flushes: {flushes}");
    assert!(value(&after, "strom_log_flush_duration_seconds_count", &[]).unwrap_or(0.0) >= 1.0);
    assert!(value(&after, "strom_active_connections", &[]).unwrap_or(0.0) >= 1.0);
    assert_eq!(
        value(&after, "strom_errors_total", &[("api", "CreateTopics"), ("code", "TopicAlreadyExists")]),
        Some(1.0)
    );
    assert_eq!(value(&after, "strom_errors_total", &[("api", "Produce")]), None, "no produce failed");
}
