//! What fuzzing cannot show: that a connection's memory is bounded by its limits
//! (`max_request_bytes` × `max_inflight_requests`, plus a constant), whatever a client sends.
//! Every allocation in this process is counted ([`CountingAlloc`]); a real broker serves a
//! real TCP connection here, and the client sends what a hostile or broken client would:
//! a frame that declares 2 GiB, a maximum-size frame trickled in, declared array counts far
//! beyond the bytes sent, a pipeline of maximum-size produce requests, and a pipeline of
//! fetches of a megabyte each whose responses it never reads (so the broker's writer blocks
//! and its reader must stop at the in-flight limit). (One test in this binary, so nothing
//! else allocates meanwhile.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use strom_fuzz::request::CountingAlloc;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MAX_REQUEST: usize = 1 << 20;
const MAX_INFLIGHT: usize = 8;

fn frame(api: ApiKey, version: i16, body: &impl Encodable) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("memory")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, 1).expect("header");
    body.encode(&mut buf, version).expect("body");
    let mut out = (buf.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

/// A produce request of nearly `MAX_REQUEST` bytes to `memory-0` (one valid batch).
fn big_produce() -> Vec<u8> {
    let value = vec![7u8; MAX_REQUEST - 4096];
    let batch = strom_log::build_batch(0, None, &[&value]);
    let req = ProduceRequest::default().with_acks(1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("memory")))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))]),
    ]);
    frame(ApiKey::Produce, 7, &req)
}

/// Waits until the broker has closed `s` (reads to EOF), up to a deadline.
fn closed_by_broker(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut sink = [0u8; 4096];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

#[test]
fn a_connection_holds_at_most_its_limits_whatever_the_client_sends() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let dir = tempfile::tempdir().expect("dir");
    let config = strom_broker::Config {
        listen: "127.0.0.1:0".into(),
        metrics_listen: String::new(),
        data_dir: dir.path().to_path_buf(),
        max_request_bytes: MAX_REQUEST,
        max_inflight_requests: MAX_INFLIGHT,
        fetch_max_bytes: MAX_REQUEST,
        ..strom_broker::Config::default()
    };
    let broker = rt.block_on(strom_broker::Broker::bind(config, CancellationToken::new())).expect("broker");
    let addr = broker.local_addr();
    let state = broker.state().clone();
    rt.spawn(broker.run());
    rt.block_on(state.create_topic("memory", 1, -1, Default::default(), false)).expect("topic");
    let produce = big_produce();
    let pipeline: Vec<u8> = (0..64).flat_map(|_| produce.iter().copied()).collect();
    // Metadata v1 whose topic array claims 2^31-1 entries in a 30-byte frame.
    let mut lying = frame(ApiKey::Metadata, 1, &kafka_protocol::messages::MetadataRequest::default());
    lying.truncate(lying.len() - 4);
    lying.extend_from_slice(&i32::MAX.to_be_bytes());
    let len = (lying.len() - 4) as u32;
    lying[..4].copy_from_slice(&len.to_be_bytes());

    let fetches = {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        let req = kafka_protocol::messages::FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(MAX_REQUEST as i32)
            .with_topics(vec![
                FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str("memory"))).with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(MAX_REQUEST as i32),
                ]),
            ]);
        frame(ApiKey::Fetch, 11, &req)
    };
    let base = CountingAlloc::reset_peak();
    let started = Instant::now();

    // 1. A frame that declares 2 GiB: refused from its size alone.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&(2u32 << 30).to_be_bytes()).expect("write");
    assert!(closed_by_broker(&mut s), "a 2 GiB frame closes the connection");

    // 2. A maximum-size frame trickled in, then dropped half-way.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&(MAX_REQUEST as u32).to_be_bytes()).expect("write");
    for chunk in produce[4..MAX_REQUEST / 2].chunks(64 * 1024) {
        s.write_all(chunk).expect("write");
    }
    drop(s);

    // 3. Declared counts far beyond the bytes.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&lying).expect("write");
    assert!(closed_by_broker(&mut s), "an undecodable request closes the connection");

    // 4. 64 maximum-size produce requests pipelined (about 64 MiB).
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&pipeline).expect("write the pipeline");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut answered = 0;
    let mut len = [0u8; 4];
    while answered < 64 {
        s.read_exact(&mut len).expect("a response");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).expect("a response body");
        answered += 1;
    }
    drop(s);

    // 5. 200 fetches of up to 1 MiB each, pipelined, responses never read: the broker's
    //    writer blocks on the full socket, and its reader stops at the in-flight limit.
    let mut s = TcpStream::connect(addr).expect("connect");
    for _ in 0..200 {
        s.write_all(&fetches).expect("write a fetch");
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50)); // let the broker take what it will
    }
    let peak = CountingAlloc::peak_above(base);
    drop(s);

    // The in-flight requests' frames or responses (each held until answered or written) and
    // the one being read, each at most twice (frame + what decoding it keeps), plus a constant for the broker's own
    // bookkeeping (tasks, buffers, the log's index growth).
    let bound = 2 * (MAX_INFLIGHT + 2) * MAX_REQUEST + 16 * 1024 * 1024;
    assert!(
        peak <= bound,
        "peak {peak} bytes above the baseline exceeds the connection bound {bound} ({:?})",
        started.elapsed()
    );
    eprintln!("peak allocation above baseline: {} KiB (bound {} KiB)", peak / 1024, bound / 1024);
}
