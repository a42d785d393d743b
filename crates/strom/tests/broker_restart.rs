//! Restarts of a real `strom serve` process: a graceful stop (SIGTERM, exit 0) and a kill -9,
//! each followed by reading everything back; topics, configs and producer ids survive.
//!
//! The crash test: a client produces with `acks=all` and records what was acknowledged; the
//! broker is killed with SIGKILL at a random moment and restarted; every acknowledged record is
//! there, exactly once, at the offset it was acknowledged with. (Oracle: acknowledged =>
//! present; failed or timed out => unknown.)

mod common;
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::producer::FutureRecord;

use common::TestBroker;
use support::{RawConn, TIMEOUT, admin, consume_all, create_topic, producer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_and_kill9_then_read_everything_back() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "keep", 2, &[("retention.ms", "-1")]).await;
    let p = producer(&bootstrap, &[("linger.ms", "2")]);
    for i in 0..2_000 {
        let v = format!("v{i}");
        p.send_result(FutureRecord::to("keep").key(&v).payload(&v)).expect("enqueue");
    }
    rdkafka::producer::Producer::flush(&p, TIMEOUT).expect("flush");
    drop(p);
    let before = tokio::task::block_in_place(|| consume_all(&bootstrap, "keep", 2));
    assert_eq!(before.len(), 2_000);
    let pid_before = RawConn::connect(&bootstrap)
        .call(
            0,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .producer_id
        .0;

    let status = broker.stop();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    assert!(broker.logs().contains("broker stopped cleanly"));
    broker.restart();
    assert_eq!(broker.bootstrap(), bootstrap, "same port");
    let after = tokio::task::block_in_place(|| consume_all(&bootstrap, "keep", 2));
    assert_eq!(after, before, "everything back after a graceful restart");

    broker.kill9();
    broker.restart();
    let after = tokio::task::block_in_place(|| consume_all(&bootstrap, "keep", 2));
    assert_eq!(after, before, "everything back after kill -9");
    let a = admin(&bootstrap);
    let described = a
        .describe_configs([&ResourceSpecifier::Topic("keep")], &AdminOptions::new().operation_timeout(Some(TIMEOUT)))
        .await
        .expect("describe");
    let res = described[0].as_ref().expect("topic survives");
    assert_eq!(res.get("retention.ms").and_then(|e| e.value.as_deref()), Some("-1"), "topic configs survive");
    let pid_after = RawConn::connect(&bootstrap)
        .call(
            0,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .producer_id
        .0;
    assert!(pid_after > pid_before, "producer ids are never reused ({pid_before} then {pid_after})");

    // Appends continue after the old end.
    let p = producer(&bootstrap, &[]);
    let (partition, offset) = support::send(&p, "keep", b"again", b"again").await;
    let stored = before.iter().filter(|r| r.partition == partition).count() as i64;
    assert_eq!(offset, stored, "offsets continue after the old end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_acks_all_produce_keeps_every_acknowledged_record_once() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "crash", 2, &[]).await;
    let mut acked_total = 0usize;
    let mut next_id = 0u64;
    let mut acked_all: HashMap<String, (i32, i64)> = HashMap::new();
    for round in 0..2 {
        let p = producer(
            &bootstrap,
            &[("acks", "all"), ("linger.ms", "1"), ("message.timeout.ms", "2000"), ("enable.idempotence", "false")],
        );
        let acked: Arc<Mutex<HashMap<String, (i32, i64)>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let producing = {
            let acked = acked.clone();
            let stop = stop.clone();
            let start = next_id;
            tokio::spawn(async move {
                let mut id = start;
                let mut inflight = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let v = format!("rec-{id}");
                    id += 1;
                    match p.send_result(FutureRecord::to("crash").key(&v).payload(&v)) {
                        Ok(f) => inflight.push((v, f)),
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                    if inflight.len() >= 64 {
                        for (v, f) in inflight.drain(..) {
                            if let Ok(Ok(d)) = f.await {
                                acked.lock().expect("lock").insert(v, (d.partition, d.offset));
                            }
                        }
                    }
                }
                for (v, f) in inflight.drain(..) {
                    if let Ok(Ok(d)) = f.await {
                        acked.lock().expect("lock").insert(v, (d.partition, d.offset));
                    }
                }
                id
            })
        };
        // Kill at a random moment while records are being produced.
        let delay = 300 + rand::random::<u64>() % 1200;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        broker.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        next_id = producing.await.expect("producer task");
        broker.restart();

        let acked = std::mem::take(&mut *acked.lock().expect("lock"));
        assert!(!acked.is_empty(), "round {round}: something was acknowledged before the kill");
        acked_total += acked.len();
        acked_all.extend(acked);
        let got = tokio::task::block_in_place(|| consume_all(&bootstrap, "crash", 2));
        eprintln!(
            "round {round}: killed after {delay} ms; {} acknowledged so far, {} stored",
            acked_all.len(),
            got.len()
        );
        let mut count: HashMap<&[u8], usize> = HashMap::new();
        for r in &got {
            *count.entry(r.value.as_deref().unwrap_or_default()).or_default() += 1;
        }
        let at: HashMap<(i32, i64), &[u8]> =
            got.iter().map(|r| ((r.partition, r.offset), r.value.as_deref().unwrap_or_default())).collect();
        for (v, (partition, offset)) in &acked_all {
            assert_eq!(
                count.get(v.as_bytes()).copied(),
                Some(1),
                "round {round}: acknowledged {v} present exactly once"
            );
            assert_eq!(
                at.get(&(*partition, *offset)).copied(),
                Some(v.as_bytes()),
                "round {round}: {v} at its acknowledged offset"
            );
        }
    }
    assert!(acked_total > 0);
}
