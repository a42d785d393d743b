//! Client-side helpers for the broker end-to-end tests: rdkafka producers, consumers and admin
//! calls, and a tiny raw-socket Kafka client (kafka-protocol) for what real clients never send.
#![allow(dead_code)]

pub mod in_process;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// How long any single client operation may take in tests.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Timestamp (ms).
    pub timestamp: Option<i64>,
}

/// A client config with the bootstrap server and quiet logging.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("log_level", "4").set("socket.timeout.ms", "20000");
    c
}

/// A future producer; `extra` overrides defaults.
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = client_config(bootstrap);
    c.set("message.timeout.ms", "30000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("creating producer")
}

/// An admin client.
pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap).create().expect("creating admin client")
}

/// Creates a topic through the admin API and panics on failure.
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    create_replicated_topic(bootstrap, name, partitions, 1, configs).await;
}

/// Creates a topic with `replicas` replicas per partition; panics on failure.
pub async fn create_replicated_topic(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    replicas: i32,
    configs: &[(&str, &str)],
) {
    let admin = admin(bootstrap);
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(replicas));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = admin
        .create_topics([&t], &AdminOptions::new().operation_timeout(Some(TIMEOUT)))
        .await
        .expect("create_topics request");
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// Reads every record of `topic` from the beginning up to the high watermarks at call time,
/// partition by partition, in offset order.
pub fn consume_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Rec> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", format!("strom-test-{}", rand::random::<u64>()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("creating consumer");
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, TIMEOUT).expect("fetch_watermarks");
        ends.insert(p, high);
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low)).expect("tpl");
        }
    }
    let mut out = Vec::new();
    if tpl.count() == 0 {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while ends.iter().any(|(p, end)| next.get(p).copied().unwrap_or(0) < *end) {
        assert!(Instant::now() < deadline, "consuming {topic} timed out: got {next:?}, want {ends:?}");
        let Some(m) = consumer.poll(Duration::from_millis(500)) else { continue };
        let m = m.expect("consumer error");
        let headers = m
            .headers()
            .map(|hs| hs.iter().map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec()))).collect())
            .unwrap_or_default();
        next.insert(m.partition(), m.offset() + 1);
        if m.offset() < ends[&m.partition()] {
            out.push(Rec {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| k.to_vec()),
                value: m.payload().map(|v| v.to_vec()),
                headers,
                timestamp: m.timestamp().to_millis(),
            });
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// Sends one record and waits for its acknowledgement: `(partition, offset)`.
pub async fn send(p: &FutureProducer, topic: &str, key: &[u8], value: &[u8]) -> (i32, i64) {
    let delivery = p
        .send(FutureRecord::to(topic).key(key).payload(value), Duration::from_secs(0))
        .await
        .unwrap_or_else(|(e, _)| panic!("send failed: {e}"));
    (delivery.partition, delivery.offset)
}

/// A Metadata request for one topic.
pub fn topic_metadata_request(topic: &str) -> kafka_protocol::messages::MetadataRequest {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default()
            .with_name(Some(kafka_protocol::messages::TopicName(StrBytes::from_string(topic.to_string())))),
    ]))
}

/// (leader, sorted ISR) of each partition of `topic` in a Metadata answer, in partition
/// order; `None` if the answer does not list the topic.
pub fn partition_view(m: &kafka_protocol::messages::MetadataResponse, topic: &str) -> Option<Vec<(i32, Vec<i32>)>> {
    let t = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))?;
    let mut out: Vec<(i32, i32, Vec<i32>)> = t
        .partitions
        .iter()
        .map(|p| {
            let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            isr.sort_unstable();
            (p.partition_index, p.leader_id.0, isr)
        })
        .collect();
    out.sort();
    Some(out.into_iter().map(|(_, l, isr)| (l, isr)).collect())
}

/// The value of environment variable `name`, or `default` if unset or not a number.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// SplitMix64: a test's random choices as a function of its seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A blocking raw-protocol connection.
pub struct RawConn {
    /// The socket.
    pub stream: TcpStream,
    next_correlation: i32,
}

impl RawConn {
    /// Connects to `addr`.
    pub fn connect(addr: &str) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connecting");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        RawConn { stream, next_correlation: 1 }
    }

    /// Wraps a connected socket (its timeouts as the caller set them).
    pub fn from_stream(stream: TcpStream) -> RawConn {
        RawConn { stream, next_correlation: 1 }
    }

    /// [`RawConn::call`] that reports a broken connection or a bad answer instead of
    /// panicking (for talking to brokers a test is faulting).
    pub fn try_call<R: Request>(&mut self, version: i16, req: &R) -> Result<R::Response, String> {
        let id = self.send_checked(version, req).map_err(|e| e.to_string())?;
        let hv = R::Response::header_version(version);
        let (cid, mut body) = self.recv_frame(hv).map_err(|e| e.to_string())?;
        if cid != id {
            return Err(format!("correlation id {cid}, expected {id}"));
        }
        R::Response::decode(&mut body, version).map_err(|e| e.to_string())
    }

    fn send_checked<R: Request>(&mut self, version: i16, req: &R) -> std::io::Result<i32> {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version)).map_err(std::io::Error::other)?;
        req.encode(&mut body, version).map_err(std::io::Error::other)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame)?;
        Ok(correlation_id)
    }

    /// Writes raw bytes.
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Encodes and sends a request; returns its correlation id.
    pub fn send<R: Request>(&mut self, version: i16, req: &R) -> i32 {
        self.send_checked(version, req).expect("sending a request")
    }

    /// Reads one response frame: `(correlation id, body after the header)`.
    pub fn recv_frame(&mut self, response_header_version: i16) -> std::io::Result<(i32, Bytes)> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut buf)?;
        let mut bytes = Bytes::from(buf);
        let header = ResponseHeader::decode(&mut bytes, response_header_version).expect("response header");
        Ok((header.correlation_id, bytes))
    }

    /// Sends a request and decodes its response.
    pub fn call<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        let id = self.send(version, req);
        let key = ApiKey::try_from(R::KEY).expect("key");
        let hv = if key == ApiKey::ApiVersions { 0 } else { R::Response::header_version(version) };
        let (cid, mut body) = self.recv_frame(hv).expect("response");
        assert_eq!(cid, id, "correlation id");
        let resp = R::Response::decode(&mut body, version).expect("decode response");
        assert_eq!(body.remaining(), 0, "trailing bytes in response");
        resp
    }

    /// True when the broker has closed the connection (reads EOF or reset within the timeout).
    pub fn is_closed_by_peer(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

/// Builds one uncompressed RecordBatch v2 of `n` records (`key-i`/`value-i`), as a producer
/// with id `producer_id` (or -1), `epoch` and first sequence `base_sequence` would send it.
pub fn raw_batch(producer_id: i64, epoch: i16, base_sequence: i32, n: usize, timestamp: i64) -> Bytes {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch unless offset - sequence stays constant; without
            // a producer id the batch's base sequence (the first record's) is -1 as Kafka expects.
            sequence: if producer_id >= 0 { base_sequence + i as i32 } else { i as i32 - 1 },
            timestamp,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("encoding batch");
    buf.freeze()
}

/// A ProduceRequest with one record set for `topic`/`partition`.
pub fn produce_request(
    topic: &str,
    partition: i32,
    acks: i16,
    records: Bytes,
) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_string(topic.to_string()))).with_partition_data(
            vec![PartitionProduceData::default().with_index(partition).with_records(Some(records))],
        ),
    ])
}

/// The single partition response of a one-partition produce.
pub fn single_partition(resp: &kafka_protocol::messages::ProduceResponse) -> (i16, i64) {
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// GET `path` over plain HTTP/1.1; returns (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connecting to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("setting a read timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("sending the request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("reading the HTTP response");
    let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status line");
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Parses the text format into `metric{labels}` -> value (labels as rendered).
pub fn metric_samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The value of the sample whose name is `metric` and whose labels include all of `labels`.
pub fn metric_value(all: &HashMap<String, f64>, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    all.iter()
        .filter(|(k, _)| k.split('{').next() == Some(metric))
        .find(|(k, _)| labels.iter().all(|(n, v)| k.contains(&format!("{n}=\"{v}\""))))
        .map(|(_, v)| *v)
}

/// The attributes of the stored batches at the start of partition 0, read with a raw Fetch.
pub fn stored_batches(bootstrap: &str, topic: &str) -> Vec<i16> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let req = FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_bytes(1 << 20).with_topics(vec![
        FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.into()))).with_partitions(vec![
            FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20),
        ]),
    ]);
    let resp = RawConn::connect(bootstrap).call(11, &req);
    let records = resp.responses[0].partitions[0].records.clone().expect("records");
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 61 <= records.len() {
        let len = i32::from_be_bytes([records[at + 8], records[at + 9], records[at + 10], records[at + 11]]) as usize;
        out.push(i16::from_be_bytes([records[at + 21], records[at + 22]]));
        at += 12 + len;
    }
    assert!(!out.is_empty(), "at least one batch");
    out
}

/// One IncrementalAlterConfigs of a broker resource, sent raw (the rdkafka crate has no
/// incremental alter): `(name, Some(value))` sets, `(name, None)` deletes.
pub fn alter_broker(bootstrap: &str, resource: &str, changes: &[(&str, Option<&str>)]) -> (i16, String) {
    use kafka_protocol::messages::IncrementalAlterConfigsRequest;
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::protocol::StrBytes;
    let configs = changes
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_config_operation(if v.is_some() { 0 } else { 1 })
                .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_string(resource.to_string()))
            .with_configs(configs),
    ]);
    let r = RawConn::connect(bootstrap).call(1, &req);
    let res = &r.responses[0];
    (res.error_code, res.error_message.as_deref().unwrap_or_default().to_string())
}
