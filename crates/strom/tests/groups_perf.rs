//! Consumer-group measurements for docs/PERFORMANCE.md (ignored by default; they take a while
//! and load the machine):
//!
//! ```text
//! cargo test -p strom --test groups_perf -- --ignored --nocapture --test-threads=1
//! ```
//!
//! - `rebalance_of_50_consumers_on_100_partitions`: 50 rdkafka consumers share a 100-partition
//!   topic; a 51st joins; time until every member holds a disjoint share covering all 100.
//! - `offset_commit_throughput`: pipelined single-partition OffsetCommit requests over raw
//!   sockets (kafka-protocol), each acknowledged only once durable; commits per second, then a
//!   check that the last acknowledged offset of every partition survived a kill -9.
//!   `STROM_BENCH_CONNECTIONS` and `STROM_BENCH_DEPTH` set connections (one group each) and
//!   requests in flight per connection (default 16 x 64).

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::TestBroker;
use support::{RawConn, client_config, create_topic};

fn broker_with(groups_toml: &str) -> (TestBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("strom.toml");
    std::fs::write(&path, format!("[groups]\n{groups_toml}")).expect("config");
    let broker = TestBroker::start_with(&["--config", path.to_str().expect("utf-8")]);
    (broker, dir)
}

type Assignment = BTreeSet<i32>;

struct Member {
    assignment: Arc<Mutex<Assignment>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    fn start(bootstrap: &str, topic: &str) -> Member {
        let c: BaseConsumer = client_config(bootstrap)
            .set("group.id", "fifty")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("partition.assignment.strategy", "range")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        c.subscribe(&[topic]).expect("subscribe");
        let assignment = Arc::new(Mutex::new(Assignment::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (assignment.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let _ = c.poll(Duration::from_millis(50));
                let now: Assignment =
                    c.assignment().map(|t| t.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default();
                *a.lock().expect("lock") = now;
            }
        });
        Member { assignment, stop, thread: Some(thread) }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn balanced(members: &[Member], partitions: usize) -> bool {
    let sets: Vec<Assignment> = members.iter().map(|m| m.assignment.lock().expect("lock").clone()).collect();
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    total == partitions && union.len() == partitions && sets.iter().all(|s| !s.is_empty())
}

#[test]
#[ignore = "measurement for docs/PERFORMANCE.md"]
fn rebalance_of_50_consumers_on_100_partitions() {
    let (broker, _cfg) = broker_with("initial_rebalance_delay_ms = 3000\n");
    let b = broker.bootstrap();
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt").block_on(create_topic(
        &b,
        "hundred",
        100,
        &[],
    ));
    let started = Instant::now();
    let mut members: Vec<Member> = (0..50).map(|_| Member::start(&b, "hundred")).collect();
    while !balanced(&members, 100) {
        assert!(started.elapsed() < Duration::from_secs(120), "50 members never settled");
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("50 members settled {:?} after starting (includes the 3 s initial delay)", started.elapsed());
    std::thread::sleep(Duration::from_secs(2));
    for round in 0..3 {
        let joined = Instant::now();
        members.push(Member::start(&b, "hundred"));
        while !balanced(&members, 100) {
            assert!(joined.elapsed() < Duration::from_secs(60), "never settled after a join");
            std::thread::sleep(Duration::from_millis(5));
        }
        println!(
            "round {round}: {} members stable on 100 partitions {:?} after a member joined",
            members.len(),
            joined.elapsed()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// One connection's pipelined commit loop: `depth` requests in flight, each committing the
/// next offset of one partition of `group`. Returns the last acknowledged offset per partition.
async fn commit_loop(
    addr: String,
    group: String,
    depth: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> BTreeMap<i32, i64> {
    const VERSION: i16 = 8;
    let stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(i32, i32, i64)>(depth);
    let hv = OffsetCommitRequest::header_version(VERSION);
    let writer = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut correlation = 0i32;
            let mut next = 0i64;
            while !stop.load(Ordering::Relaxed) {
                correlation += 1;
                next += 1;
                let partition = correlation % 8;
                let req = OffsetCommitRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(StrBytes::from_static_str("bench")))
                            .with_partitions(vec![
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(partition)
                                    .with_committed_offset(next),
                            ]),
                    ]);
                let header = RequestHeader::default()
                    .with_request_api_key(ApiKey::OffsetCommit as i16)
                    .with_request_api_version(VERSION)
                    .with_correlation_id(correlation);
                let mut body = BytesMut::new();
                header.encode(&mut body, hv).expect("header");
                req.encode(&mut body, VERSION).expect("body");
                let mut frame = BytesMut::with_capacity(body.len() + 4);
                frame.put_i32(body.len() as i32);
                frame.extend_from_slice(&body);
                // Reserve an in-flight slot before writing: at most `depth` outstanding.
                if tx.send((correlation, partition, next)).await.is_err() {
                    break;
                }
                wr.write_all(&frame).await.expect("write");
            }
        }
    });
    let mut last = BTreeMap::new();
    let rhv = OffsetCommitResponse::header_version(VERSION);
    while let Some((correlation, partition, offset)) = rx.recv().await {
        let mut size = [0u8; 4];
        rd.read_exact(&mut size).await.expect("read size");
        let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
        rd.read_exact(&mut buf).await.expect("read body");
        let mut bytes = Bytes::from(buf);
        let h = ResponseHeader::decode(&mut bytes, rhv).expect("header");
        assert_eq!(h.correlation_id, correlation, "responses in request order");
        let r = OffsetCommitResponse::decode(&mut bytes, VERSION).expect("response");
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "commit failed");
        assert_eq!(bytes.remaining(), 0);
        last.insert(partition, offset);
        acked.fetch_add(1, Ordering::Relaxed);
    }
    writer.await.expect("writer");
    last
}

#[test]
#[ignore = "measurement for docs/PERFORMANCE.md"]
fn offset_commit_throughput() {
    let (mut broker, _cfg) = broker_with("");
    let b = broker.bootstrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    rt.block_on(create_topic(&b, "bench", 8, &[]));
    // STROM_BENCH_CONNECTIONS / STROM_BENCH_DEPTH change the shape (default 16 x 64).
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (connections, depth, seconds) = (env("STROM_BENCH_CONNECTIONS", 16), env("STROM_BENCH_DEPTH", 64), 10u64);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|i| rt.spawn(commit_loop(b.clone(), format!("bench-{i}"), depth, stop.clone(), acked.clone())))
        .collect();
    // Warm up, then measure a fixed window.
    std::thread::sleep(Duration::from_secs(2));
    let (a0, t0) = (acked.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let (a1, t1) = (acked.load(Ordering::Relaxed), Instant::now());
    stop.store(true, Ordering::Relaxed);
    let lasts: Vec<BTreeMap<i32, i64>> = tasks.into_iter().map(|t| rt.block_on(t).expect("task")).collect();
    let rate = (a1 - a0) as f64 / (t1 - t0).as_secs_f64();
    println!(
        "OffsetCommit: {rate:.0} commits/s acknowledged durable ({connections} connections x {depth} in flight, 1 partition per commit, {} commits in {:?})",
        a1 - a0,
        t1 - t0
    );

    // Committed means durable: kill -9, restart, every last acknowledged offset is there.
    broker.kill9();
    broker.restart();
    let mut conn = RawConn::connect(&broker.bootstrap());
    for (i, last) in lasts.iter().enumerate() {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(format!("bench-{i}"))))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("bench")))
                    .with_partition_indexes((0..8).collect()),
            ]));
        let r = conn.call(7, &req);
        let got: BTreeMap<i32, i64> = r.topics[0]
            .partitions
            .iter()
            .filter(|p| p.committed_offset >= 0)
            .map(|p| (p.partition_index, p.committed_offset))
            .collect();
        assert_eq!(&got, last, "group bench-{i}: the last acknowledged commit of every partition survives kill -9");
    }
    println!(
        "after kill -9 and restart: the last acknowledged offset of all {} group-partitions is stored",
        lasts.iter().map(BTreeMap::len).sum::<usize>()
    );
}
