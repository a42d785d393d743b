//! Partition replication on a 3-node cluster of real `strom serve` processes: an idempotent
//! `acks=all` producer writes to replication-factor-3 partitions; kill -9 of a leader moves
//! leadership to an in-sync follower and nothing acknowledged is lost or duplicated; the
//! killed node comes back, catches up, rejoins the ISR, and its own log holds every record.
//! `min.insync.replicas` refuses `acks=all` produces when the ISR is too small. A leader that
//! accepted a batch its followers never got loses it on return: the new leader's log wins.

mod cluster_util;
mod common;
mod support;

use cluster_util::{Cluster, wait_partitions};
use rdkafka::producer::FutureProducer;
use std::collections::BTreeSet;
use support::{
    RawConn, consume_all, create_replicated_topic, produce_request, producer, raw_batch, send, single_partition,
};

async fn produce(p: &FutureProducer, topic: &str, from: usize, n: usize) {
    for i in from..from + n {
        send(p, topic, format!("k{i}").as_bytes(), format!("v{i}").as_bytes()).await;
    }
}

/// Every node's client address, for clients that must survive any one node dying.
fn all_bootstrap(c: &Cluster) -> String {
    (1..=3).map(|n| c.bootstrap(n)).collect::<Vec<_>>().join(",")
}

/// The sum of the log end offsets of `topic`'s partitions in the stopped node's data directory.
fn stored_records(data_dir: &std::path::Path, topic: &str) -> i64 {
    let logs =
        strom_log::LogManager::open(strom_log::ManagerConfig::new(data_dir)).expect("opening the data directory");
    let total =
        logs.list().iter().filter(|l| l.topic() == topic).map(|l| l.log_end_offset() - l.log_start_offset()).sum();
    logs.shutdown().expect("closing the data directory");
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_the_leader_and_the_returning_node_catches_up() {
    let mut c = Cluster::start();
    create_replicated_topic(&c.bootstrap(1), "replicated", 3, 3, &[]).await;
    let full = |_: i32, isr: &[i32]| isr == [1, 2, 3];
    let state =
        wait_partitions(&c.bootstrap(1), "replicated", "a leader and a full ISR", |l, isr| l > 0 && full(l, isr));
    eprintln!("partitions (leader, isr): {state:?}");

    let bootstrap = all_bootstrap(&c);
    let p = producer(&bootstrap, &[("enable.idempotence", "true"), ("acks", "all")]);
    produce(&p, "replicated", 0, 300).await;

    // kill -9 of the leader of partition 0: its partitions move to in-sync followers.
    let dead = usize::try_from(state[0].0).expect("a node id");
    let survivor = if dead == 1 { 2 } else { 1 };
    c.nodes[dead - 1].kill9();
    let dead_id = dead as i32;
    wait_partitions(&c.bootstrap(survivor), "replicated", "leaders other than the killed node", |l, isr| {
        l > 0 && l != dead_id && !isr.contains(&dead_id)
    });
    produce(&p, "replicated", 300, 100).await;
    drop(p);
    let got = consume_all(&c.bootstrap(survivor), "replicated", 3);
    let values: BTreeSet<Vec<u8>> = got.iter().filter_map(|r| r.value.clone()).collect();
    assert_eq!(values.len(), 400, "every acknowledged record is readable after the leader died");
    assert_eq!(got.len(), 400, "and none twice (idempotent retries across the failover are duplicates)");

    // Back on its data directory, the node catches up and rejoins every ISR...
    c.nodes[dead - 1].restart();
    wait_partitions(&c.bootstrap(survivor), "replicated", "the restarted node back in every ISR", full);
    // ...and, stopped, its own log holds every record.
    c.nodes[dead - 1].stop();
    assert_eq!(stored_records(c.nodes[dead - 1].data_dir(), "replicated"), 400, "the returning replica caught up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_insync_replicas_refuses_acks_all_when_the_isr_is_too_small() {
    let mut c = Cluster::start();
    create_replicated_topic(&c.bootstrap(1), "guarded", 1, 3, &[("min.insync.replicas", "3")]).await;
    let state = wait_partitions(&c.bootstrap(1), "guarded", "a full ISR", |l, isr| l > 0 && isr == [1, 2, 3]);
    let leader = usize::try_from(state[0].0).expect("a node id");
    let mut conn = RawConn::connect(&c.bootstrap(leader));
    let (code, offset) = single_partition(&conn.call(7, &produce_request("guarded", 0, -1, raw_batch(-1, 0, 0, 2, 1))));
    assert_eq!((code, offset), (0, 0), "acks=all with the whole ISR");

    // A follower dies: once it is fenced the ISR has 2 members, fewer than 3.
    let follower = (1..=3).find(|n| *n != leader).expect("a follower");
    c.nodes[follower - 1].kill9();
    let f = follower as i32;
    wait_partitions(&c.bootstrap(leader), "guarded", "the ISR without the dead follower", |_, isr| !isr.contains(&f));
    let (code, _) = single_partition(&conn.call(7, &produce_request("guarded", 0, -1, raw_batch(-1, 0, 0, 2, 1))));
    assert_eq!(code, 19, "NOT_ENOUGH_REPLICAS for acks=all");
    let (code, offset) = single_partition(&conn.call(7, &produce_request("guarded", 0, 1, raw_batch(-1, 0, 0, 2, 1))));
    assert_eq!((code, offset), (0, 2), "acks=1 needs only the leader");
}

/// Sends SIGSTOP or SIGCONT to a node.
fn signal(c: &Cluster, node: usize, sig: &str) {
    let pid = c.nodes[node - 1].pid().expect("running").to_string();
    let ok = std::process::Command::new("kill").args([sig, &pid]).status().expect("kill").success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_only_the_old_leader_had_is_truncated_when_it_returns() {
    let mut c = Cluster::start();
    create_replicated_topic(&c.bootstrap(1), "diverge", 1, 3, &[]).await;
    let state = wait_partitions(&c.bootstrap(1), "diverge", "a full ISR", |l, isr| l > 0 && isr == [1, 2, 3]);
    let old = usize::try_from(state[0].0).expect("a node id");
    let followers: Vec<usize> = (1..=3).filter(|n| *n != old).collect();
    let mut conn = RawConn::connect(&c.bootstrap(old));
    let (code, _) = single_partition(&conn.call(7, &produce_request("diverge", 0, -1, raw_batch(-1, 0, 0, 5, 1))));
    assert_eq!(code, 0, "5 records on every replica");

    // The followers freeze; the leader takes 3 records with acks=1 that nobody else gets
    // (nothing can change in the metadata meanwhile: one node is no quorum).
    for f in &followers {
        signal(&c, *f, "-STOP");
    }
    // A follower's fetch already parked at the leader would still carry the next records
    // into its socket buffer: wait out the fetch's long-poll bound (replica.fetch.wait.max,
    // 500 ms), after which no fetch of theirs is open. (A timer, not an event: nothing else
    // says that a frozen process has no request outstanding.)
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let (code, offset) = single_partition(&conn.call(7, &produce_request("diverge", 0, 1, raw_batch(-1, 0, 0, 3, 2))));
    assert_eq!((code, offset), (0, 5), "acks=1 on the leader alone");
    // The leader freezes and the followers wake: they fence it and one of them leads.
    signal(&c, old, "-STOP");
    for f in &followers {
        signal(&c, *f, "-CONT");
    }
    let o = old as i32;
    let state = wait_partitions(&c.bootstrap(followers[0]), "diverge", "a new leader", |l, _| l > 0 && l != o);
    let new = usize::try_from(state[0].0).expect("a node id");
    let mut conn = RawConn::connect(&c.bootstrap(new));
    let (code, offset) = single_partition(&conn.call(7, &produce_request("diverge", 0, -1, raw_batch(-1, 0, 0, 4, 3))));
    assert_eq!((code, offset), (0, 5), "the new leader continues from the last replicated offset");

    // The old leader wakes, learns it follows, truncates its 3 records and takes the new 4.
    signal(&c, old, "-CONT");
    wait_partitions(&c.bootstrap(new), "diverge", "the old leader back in the ISR", |_, isr| isr == [1, 2, 3]);
    let got = consume_all(&c.bootstrap(new), "diverge", 1);
    let timestamps: Vec<Option<i64>> = got.iter().map(|r| r.timestamp).collect();
    assert_eq!(timestamps, [vec![Some(1); 5], vec![Some(3); 4]].concat(), "consumers see the new leader's log");
    c.nodes[old - 1].stop();
    assert_eq!(
        stored_batches(c.nodes[old - 1].data_dir(), "diverge"),
        [(0, 1), (5, 3)],
        "the old leader's log is the new one's"
    );
}

/// `(base offset, max timestamp)` of every batch of partition 0 of `topic` in a stopped
/// node's data directory.
fn stored_batches(data_dir: &std::path::Path, topic: &str) -> Vec<(i64, i64)> {
    let logs =
        strom_log::LogManager::open(strom_log::ManagerConfig::new(data_dir)).expect("opening the data directory");
    let log = logs.get(topic, 0).expect("the partition's log");
    let read = log.read(0, 1 << 20, strom_log::ReadBound::LogEnd).expect("reading the log");
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(h) = strom_log::BatchHeader::parse(&read.records[at..]) {
        out.push((h.base_offset, h.max_timestamp));
        at += h.total_len();
    }
    logs.shutdown().expect("closing the data directory");
    out
}

/// The coordinator of `group` as `bootstrap` names it, once it names one other than `not`.
fn coordinator(bootstrap: &str, group: &str, not: Option<i32>) -> i32 {
    use kafka_protocol::messages::FindCoordinatorRequest;
    let started = std::time::Instant::now();
    loop {
        let mut conn = RawConn::connect(bootstrap);
        let key = kafka_protocol::protocol::StrBytes::from_string(group.to_string());
        let r = conn.call(3, &FindCoordinatorRequest::default().with_key(key));
        if r.error_code == 0 && Some(r.node_id.0) != not {
            return r.node_id.0;
        }
        assert!(started.elapsed() < cluster_util::DEADLINE, "no coordinator for {group}: error {}", r.error_code);
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}

/// `group`'s committed offset of `topic`-0, read through `bootstrap` by a fresh consumer,
/// once the coordinator answers.
fn committed(bootstrap: &str, group: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer =
        support::client_config(bootstrap).set("group.id", group).create().expect("creating a consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let started = std::time::Instant::now();
    loop {
        if let Ok(c) = consumer.committed_offsets(tpl.clone(), std::time::Duration::from_secs(5)) {
            if let Some(rdkafka::Offset::Offset(o)) = c.elements().first().map(|e| e.offset()) {
                return o;
            }
        }
        assert!(started.elapsed() < cluster_util::DEADLINE, "no committed offset for {group}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_the_death_of_their_coordinator() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let mut c = Cluster::start();
    create_replicated_topic(&c.bootstrap(1), "work", 1, 3, &[]).await;
    wait_partitions(&c.bootstrap(1), "work", "a full ISR", |l, isr| l > 0 && isr == [1, 2, 3]);
    let bootstrap = all_bootstrap(&c);
    // The first FindCoordinator creates __consumer_offsets with 3 replicas (3 brokers live).
    let first = coordinator(&c.bootstrap(1), "g1", None);
    wait_partitions(&c.bootstrap(1), "__consumer_offsets", "three in-sync replicas", |l, isr| {
        l > 0 && isr == [1, 2, 3]
    });
    let consumer: BaseConsumer = support::client_config(&bootstrap)
        .set("group.id", "g1")
        .set("enable.auto.commit", "false")
        .create()
        .expect("creating a consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("work", 0, rdkafka::Offset::Offset(7)).expect("offset");
    consumer.commit(&tpl, CommitMode::Sync).expect("commit acknowledged");
    drop(consumer);
    assert_eq!(committed(&bootstrap, "g1", "work"), 7);

    // kill -9 of the coordinator: the new leader of the group's offsets partition takes over
    // the group with the commit, which every in-sync replica had made durable.
    let dead = usize::try_from(first).expect("a node id");
    c.nodes[dead - 1].kill9();
    let survivor = if dead == 1 { 2 } else { 1 };
    let survivors: String = (1..=3).filter(|n| *n != dead).map(|n| c.bootstrap(n)).collect::<Vec<_>>().join(",");
    coordinator(&c.bootstrap(survivor), "g1", Some(first));
    assert_eq!(committed(&survivors, "g1", "work"), 7, "the commit survived its coordinator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_hands_leadership_over_before_the_broker_exits() {
    let mut c = Cluster::start();
    create_replicated_topic(&c.bootstrap(1), "handover", 3, 3, &[]).await;
    let state = wait_partitions(&c.bootstrap(1), "handover", "a full ISR", |l, isr| l > 0 && isr == [1, 2, 3]);
    let leader = usize::try_from(state[0].0).expect("a node id");
    let survivor = if leader == 1 { 2 } else { 1 };
    let p = producer(&all_bootstrap(&c), &[("enable.idempotence", "true"), ("acks", "all")]);
    produce(&p, "handover", 0, 100).await;
    // SIGTERM: by the time the process has exited, the cluster already has other leaders and
    // ISRs without it (a kill -9 would leave it leading until its session timed out).
    c.nodes[leader - 1].stop();
    let l = leader as i32;
    let after = cluster_util::partition_state(&c.bootstrap(survivor), "handover");
    assert!(after.iter().all(|(ld, isr)| *ld > 0 && *ld != l && !isr.contains(&l)), "right after the exit: {after:?}");
    produce(&p, "handover", 100, 50).await;
    drop(p);
    let got = consume_all(&c.bootstrap(survivor), "handover", 3);
    assert_eq!(got.len(), 150, "nothing lost or doubled across the handover");
    // It comes back at once: its session was closed, so its registration is not refused.
    c.nodes[leader - 1].restart();
    wait_partitions(&c.bootstrap(survivor), "handover", "the node back in every ISR", |_, isr| isr == [1, 2, 3]);
}
