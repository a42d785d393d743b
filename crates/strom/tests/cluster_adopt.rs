//! Upgrading a single-node data directory into a cluster: the same directory, started again
//! with `--cluster-id/--voters`, keeps its topics (same ids), records, committed group offsets
//! and producer ids (new ones start above what the single node handed out).

mod common;
mod support;

use std::time::{Duration, Instant};

use common::TestBroker;
use kafka_protocol::messages::{InitProducerIdRequest, MetadataRequest, ProducerId};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, TopicPartitionList};
use support::{RawConn, TIMEOUT, client_config, consume_all, create_topic, producer, send};

fn topic_id(bootstrap: &str, topic: &str) -> Option<uuid::Uuid> {
    let mut c = RawConn::connect(bootstrap);
    let m = c.call(12, &MetadataRequest::default().with_topics(None));
    m.topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .map(|t| uuid::Uuid::from_bytes(*t.topic_id.as_bytes()))
}

fn new_producer_id(bootstrap: &str) -> i64 {
    let mut c = RawConn::connect(bootstrap);
    let init = c.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    assert_eq!(init.error_code, 0, "InitProducerId");
    init.producer_id.0
}

fn committed(bootstrap: &str) -> i64 {
    let c: BaseConsumer = client_config(bootstrap).set("group.id", "readers").create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition("legacy", p);
    }
    let got = c.committed_offsets(tpl, TIMEOUT).expect("committed");
    got.elements().iter().map(|e| e.offset().to_raw().unwrap_or(0).max(0)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_data_directory_joins_a_cluster_with_everything_it_had() {
    let mut single = TestBroker::start();
    let b = single.bootstrap();
    create_topic(&b, "legacy", 3, &[]).await;
    let p = producer(&b, &[("enable.idempotence", "true"), ("acks", "all")]);
    for i in 0..30 {
        send(&p, "legacy", format!("k{i}").as_bytes(), format!("v{i}").as_bytes()).await;
    }
    drop(p);
    let c: BaseConsumer = client_config(&b)
        .set("group.id", "readers")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&["legacy"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while n < 30 {
        assert!(Instant::now() < deadline, "consumed only {n}");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            m.expect("message").offset();
            n += 1;
        }
    }
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
    drop(c);
    let id_before = topic_id(&b, "legacy").expect("topic id");
    let pid_before = new_producer_id(&b);
    single.stop();

    // The same data directory as node 1 of a one-voter cluster.
    let internal = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let args = [
        "--node-id".to_string(),
        "1".into(),
        "--cluster-id".into(),
        "upgraded".into(),
        "--voters".into(),
        format!("1@127.0.0.1:{internal}"),
        "--internal-listen".into(),
        format!("127.0.0.1:{internal}"),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = TestBroker::start_at(single.data_dir().to_path_buf(), &refs);
    let b = node.bootstrap();
    let started = Instant::now();
    while topic_id(&b, "legacy").is_none() || committed(&b) != 30 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the topic or its offsets never came back:\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(topic_id(&b, "legacy"), Some(id_before), "the topic keeps its id");
    assert_eq!(consume_all(&b, "legacy", 3).len(), 30, "every record is there");
    let pid_after = new_producer_id(&b);
    assert!(pid_after > pid_before, "producer ids continue above the single node's: {pid_before} then {pid_after}");
    assert!(node.data_dir().join("topics.json.adopted").exists(), "the single-node registry is set aside");
    assert!(!node.data_dir().join("topics.json").exists());
    assert!(node.logs().contains("adopted the single-node data directory"), "{}", node.logs());
}
