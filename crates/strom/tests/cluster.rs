//! A 3-node Strom cluster of real `strom serve` processes on 127.0.0.1, used by librdkafka
//! clients that each bootstrap from one node: topics created through one node are served by
//! all, partitions are led on every node, an idempotent acks=all producer and a reader work
//! across them, kill -9 of the controller leaves a new controller, nothing committed lost,
//! and the node comes back with its data. Strangers are refused: a node with another
//! cluster id, and a data directory of another cluster.

mod cluster_util;
mod common;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster_util::{Cluster, DEADLINE, free_port, leaders, metadata, node_args, start_node};
use rdkafka::producer::FutureProducer;
use support::{consume_all, create_topic, producer, send};

async fn produce(p: &FutureProducer, topic: &str, from: usize, n: usize) {
    for i in from..from + n {
        send(p, topic, format!("k{i}").as_bytes(), format!("v{i}").as_bytes()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_use_the_cluster_through_any_node_and_the_controller_can_die() {
    let mut c = Cluster::start();
    // Created through node 3, served by node 1 with partitions led on every node.
    create_topic(&c.bootstrap(3), "events", 6, &[]).await;
    let started = Instant::now();
    let led = loop {
        let led = leaders(&c.bootstrap(1), "events");
        if led.iter().all(|l| *l > 0) {
            break led;
        }
        assert!(started.elapsed() < DEADLINE, "partitions never got leaders: {led:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(led.iter().copied().collect::<BTreeSet<_>>(), BTreeSet::from([1, 2, 3]), "leaders spread: {led:?}");

    // A dynamic broker default set through node 1 reaches every node (through the Raft log).
    let (code, message) = support::alter_broker(&c.bootstrap(1), "", &[("log.retention.ms", Some("3600000"))]);
    assert_eq!(code, 0, "{message}");
    for node in [2, 3] {
        let a = support::admin(&c.bootstrap(node));
        let opts = rdkafka::admin::AdminOptions::new().operation_timeout(Some(support::TIMEOUT));
        let started = Instant::now();
        loop {
            let r = a
                .describe_configs([&rdkafka::admin::ResourceSpecifier::Topic("events")], &opts)
                .await
                .expect("describe");
            let retention = r[0].as_ref().expect("configs").get("retention.ms").and_then(|e| e.value.clone());
            if retention.as_deref() == Some("3600000") {
                break;
            }
            assert!(started.elapsed() < DEADLINE, "node {node} never applied the new default: {retention:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // An idempotent acks=all producer that only knows node 1; a reader that only knows node 2.
    let p = producer(&c.bootstrap(1), &[("enable.idempotence", "true"), ("acks", "all")]);
    produce(&p, "events", 0, 300).await;
    let got = consume_all(&c.bootstrap(2), "events", 6);
    assert_eq!(got.len(), 300, "every record read back through another node");
    drop(p);

    // kill -9 of the controller: another takes over; the topic and its records are intact.
    let controller = c.wait_brokers(&c.bootstrap(1), 3);
    let dead = usize::try_from(controller).expect("a node id");
    let survivor = if dead == 1 { 2 } else { 1 };
    let killed_at = Instant::now();
    c.nodes[dead - 1].kill9();
    let new_controller = loop {
        let (_, ctl) = metadata(&c.bootstrap(survivor));
        if ctl > 0 && ctl != controller {
            break ctl;
        }
        assert!(killed_at.elapsed() < DEADLINE, "no new controller after kill -9 of node {controller}");
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("controller {controller} killed; node {new_controller} took over after {:?}", killed_at.elapsed());
    create_topic(&c.bootstrap(survivor), "after-failover", 2, &[]).await;
    // The dead node is fenced: Metadata stops listing it, and the new controller counts the
    // election and the fencing in /metrics.
    c.wait_brokers(&c.bootstrap(survivor), 2);
    let ctl = usize::try_from(new_controller).expect("a node id");
    let (code, text) = support::http_get(&c.nodes[ctl - 1].metrics_addr(), "/metrics");
    assert_eq!(code, 200);
    let samples = support::metric_samples(&text);
    for metric in ["strom_cluster_controller_elections_total", "strom_cluster_broker_fenced_total"] {
        let v = support::metric_value(&samples, metric, &[]).unwrap_or(0.0);
        assert!(v >= 1.0, "{metric} on the new controller is {v}");
    }

    // Back on its data directory: listed again, its partitions led again, all records there.
    c.nodes[dead - 1].restart();
    c.wait_brokers(&c.bootstrap(survivor), 3);
    let started = Instant::now();
    while leaders(&c.bootstrap(dead), "events").iter().any(|l| *l < 0) {
        assert!(started.elapsed() < DEADLINE, "the restarted node never led its partitions again");
        std::thread::sleep(Duration::from_millis(20));
    }
    let p = producer(&c.bootstrap(dead), &[("enable.idempotence", "true"), ("acks", "all")]);
    produce(&p, "events", 300, 60).await;
    let got = consume_all(&c.bootstrap(dead), "events", 6);
    let values: BTreeSet<Vec<u8>> = got.iter().filter_map(|r| r.value.clone()).collect();
    assert_eq!(values.len(), 360, "no record lost or duplicated across the failover");
    assert_eq!(got.len(), 360, "no record lost or duplicated across the failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused_and_a_data_directory_keeps_its_cluster() {
    let mut c = Cluster::start();
    // A fourth process naming another cluster id: it never joins, and says why.
    let stranger = start_node(&node_args(4, &c.voters, free_port(), "someone-else"));
    let started = Instant::now();
    while !stranger.logs().contains("cluster id mismatch") {
        assert!(started.elapsed() < DEADLINE, "the stranger never logged the refusal:\n{}", stranger.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (brokers, _) = metadata(&c.bootstrap(1));
    assert_eq!(brokers.len(), 3, "the stranger is not a broker of the cluster: {brokers:?}");
    assert!(c.nodes.iter().any(|n| n.logs().contains("cluster id mismatch")), "the cluster logged the refusal too");

    // Node 3's data directory, started with another cluster id: refused at start, clearly.
    c.nodes[2].stop();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", ""])
        .arg("--data-dir")
        .arg(c.nodes[2].data_dir())
        .args(node_args(3, &c.voters, c.internal[2], "someone-else"))
        .output()
        .expect("run strom serve");
    assert!(!out.status.success(), "a data directory of another cluster must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("belongs to cluster \"e2e-cluster\""), "{stderr}");
}
