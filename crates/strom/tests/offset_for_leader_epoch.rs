//! OffsetForLeaderEpoch answers a real client: librdkafka validates its fetch position with it
//! after a leader change (KIP-320). A process of its own, so the broker's metrics it checks
//! count only this test's requests.

mod support;

use std::time::{Duration, Instant};

use kafka_protocol::messages::MetadataRequest;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use support::in_process::{EPOCH, InProcess, epoch_end, name};
use support::{RawConn, client_config, metric_samples, metric_value, produce_request, raw_batch, single_partition};

const FENCED_LEADER_EPOCH: i16 = 74;

/// librdkafka validates its position with OffsetForLeaderEpoch when metadata shows the
/// leader epoch rose while it fetches (KIP-320): the broker answers it from the partition's
/// epoch cache (epoch 3 ended at offset 10, where epoch 4 began), so the consumer goes on from
/// where it was without a reset, and without an error from the broker.
#[test]
fn offset_for_leader_epoch_answers_librdkafka_after_a_leader_change() {
    let metrics = strom_broker::metrics::install();
    let broker = InProcess::start();
    let mut c = RawConn::connect(&broker.addr);
    let meta = c.call(
        12,
        &MetadataRequest::default().with_allow_auto_topic_creation(true).with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(Some(name("r"))),
        ])),
    );
    assert_eq!(meta.topics[0].error_code, 0);
    for i in 0..2 {
        let resp = c.call(9, &produce_request("r", 0, -1, raw_batch(-1, -1, 0, 5, 1_000 + i)));
        assert_eq!(single_partition(&resp), (0, i * 5));
    }
    let consumer: BaseConsumer = client_config(&broker.addr)
        .set("group.id", "validate")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "200")
        .set("max.partition.fetch.bytes", "64")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("r", 0, rdkafka::Offset::Beginning).expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let asked = || {
        let all = metric_samples(&metrics.render());
        metric_value(&all, "strom_requests_total", &[("api", "OffsetForLeaderEpoch"), ("outcome", "handled")])
            .unwrap_or(0.0)
    };
    let mut offsets = Vec::new();
    let mut bumped = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while offsets.len() < 10 || asked() < 1.0 {
        assert!(Instant::now() < deadline, "consumed {offsets:?}, OffsetForLeaderEpoch asked {} times", asked());
        if offsets.len() >= 3 && !bumped {
            assert_eq!(broker.bump_epoch(), EPOCH + 1);
            bumped = true;
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            offsets.push(m.expect("no consumer error").offset());
        }
    }
    assert_eq!(offsets, (0..10).collect::<Vec<_>>(), "every record once, in order, no reset");
    let all = metric_samples(&metrics.render());
    // The only error allowed: UNKNOWN_LEADER_EPOCH, if the client saw the new epoch in a
    // Metadata answer in the instant before the partition applied it (it retries then).
    let errors: Vec<_> = all
        .keys()
        .filter(|k| k.starts_with("strom_errors_total{") && k.contains("api=\"OffsetForLeaderEpoch\""))
        .filter(|k| !k.contains("code=\"UnknownLeaderEpoch\""))
        .collect();
    assert!(errors.is_empty(), "OffsetForLeaderEpoch answered with errors: {errors:?}");
    // What the broker told it: epoch 3 ended where epoch 4 began.
    assert_eq!(epoch_end(&mut c, "r", EPOCH + 1, EPOCH), (0, EPOCH, 10));
    assert_eq!(epoch_end(&mut c, "r", EPOCH + 1, EPOCH + 1), (0, EPOCH + 1, 10));
    assert_eq!(epoch_end(&mut c, "r", EPOCH, EPOCH).0, FENCED_LEADER_EPOCH, "the old epoch is fenced now");
}
