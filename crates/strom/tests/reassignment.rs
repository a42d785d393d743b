//! Moving replicas and leaders on a 3-node cluster of real `strom serve` processes, with an
//! idempotent `acks=all` producer writing throughout: a partition reassigned away from its
//! leader (AlterPartitionReassignments, as Kafka's admin tools send it) gets its new replica
//! in sync before the old one leaves, leadership moves to the target, nothing acknowledged is
//! lost or doubled, and the old replica's log is deleted. Then preferred-leader election
//! (`strom cluster elect-leaders`) brings leadership back to the preferred replica after a
//! failover moved it away.

mod cluster_util;
mod common;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster_util::{Cluster, DEADLINE, wait_partitions};
use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use support::{RawConn, consume_all, create_replicated_topic, producer, send};

const TOPIC: &str = "moving";

/// Partition 0's (replicas in order, leader, sorted ISR) as `bootstrap` reports it.
fn replicas(bootstrap: &str) -> (Vec<i32>, i32, Vec<i32>) {
    let m = RawConn::connect(bootstrap).call(9, &support::topic_metadata_request(TOPIC));
    let t = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC)).expect("listed");
    let p = t.partitions.iter().find(|p| p.partition_index == 0).expect("partition 0");
    let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
    isr.sort_unstable();
    (p.replica_nodes.iter().map(|b| b.0).collect(), p.leader_id.0, isr)
}

fn reassign(bootstrap: &str, target: Option<Vec<i32>>) -> i16 {
    let request = AlterPartitionReassignmentsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        ReassignableTopic::default().with_name(TopicName(StrBytes::from_static_str(TOPIC))).with_partitions(vec![
            ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(target.map(|t| t.into_iter().map(BrokerId).collect())),
        ]),
    ]);
    let r = RawConn::connect(bootstrap).call(0, &request);
    assert_eq!(r.error_code, 0, "{r:?}");
    r.responses[0].partitions[0].error_code
}

fn in_progress(bootstrap: &str) -> usize {
    let r = RawConn::connect(bootstrap).call(0, &ListPartitionReassignmentsRequest::default().with_topics(None));
    assert_eq!(r.error_code, 0, "{r:?}");
    r.topics.iter().map(|t| t.partitions.len()).sum()
}

/// A cluster whose every node also reads `toml` (`--config`); the directory holding the file
/// lives as long as the returned guard.
fn cluster_with_config(toml: impl AsRef<str>) -> (tempfile::TempDir, Cluster) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("strom.toml");
    std::fs::write(&config, toml.as_ref()).expect("config");
    let c = Cluster::start_with(&["--config".to_string(), config.display().to_string()]);
    (dir, c)
}

fn strom(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_strom")).args(args).output().expect("running strom")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reassigned_partition_moves_under_load_and_leadership_returns_to_the_preferred_replica() {
    let mut c = Cluster::start();
    let all = (1..=3).map(|n| c.bootstrap(n)).collect::<Vec<_>>().join(",");
    create_replicated_topic(&c.bootstrap(1), TOPIC, 1, 2, &[("min.insync.replicas", "2")]).await;
    wait_partitions(&c.bootstrap(1), TOPIC, "a leader and both replicas in sync", |l, isr| l > 0 && isr.len() == 2);
    let (before, leader, _) = replicas(&c.bootstrap(1));
    let newcomer = (1..=3).find(|n| !before.contains(n)).expect("a broker without a replica");
    let kept = *before.iter().find(|r| **r != leader).expect("a follower");
    eprintln!("replicas {before:?}, leader {leader}: moving to [{newcomer}, {kept}]");

    let p = producer(&all, &[("enable.idempotence", "true"), ("acks", "all")]);
    for i in 0..200 {
        send(&p, TOPIC, format!("k{i}").as_bytes(), format!("v{i}").as_bytes()).await;
    }
    // The leader leaves the replica set; the newcomer takes its place and the lead.
    let writer = tokio::spawn(async move {
        for i in 200..500 {
            send(&p, TOPIC, format!("k{i}").as_bytes(), format!("v{i}").as_bytes()).await;
        }
    });
    assert_eq!(reassign(&c.bootstrap(kept as usize), Some(vec![newcomer, kept])), 0);
    // While it runs: the replica set holds both old and new, and the ISR never loses the
    // replicas it had (the newcomer joins before the leader leaves).
    let started = Instant::now();
    loop {
        let (now, _, isr) = replicas(&c.bootstrap(kept as usize));
        if in_progress(&c.bootstrap(kept as usize)) == 0 {
            break;
        }
        assert_eq!(now.len(), 3, "old and new replicas during the move: {now:?}");
        assert!(isr.len() >= 2, "the ISR shrank during the move: {isr:?}");
        assert!(started.elapsed() < DEADLINE, "the reassignment never completed: {now:?}, ISR {isr:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (after, new_leader, isr) = replicas(&c.bootstrap(kept as usize));
    assert_eq!(after, vec![newcomer, kept], "the target, preferred leader first");
    let mut want = vec![newcomer, kept];
    want.sort_unstable();
    assert_eq!(isr, want, "both target replicas in sync");
    assert_eq!(new_leader, newcomer, "the removed leader handed over to the target's first replica");
    writer.await.expect("the writer finished: every send was acknowledged");

    let got = consume_all(&c.bootstrap(newcomer as usize), TOPIC, 1);
    let values: BTreeSet<Vec<u8>> = got.iter().filter_map(|r| r.value.clone()).collect();
    assert_eq!(values.len(), 500, "every acknowledged record is readable from the new leader");
    assert_eq!(got.len(), 500, "and none twice");
    // The old replica's log is deleted once it left the replica set.
    let old_dir = c.nodes[leader as usize - 1].data_dir().join(format!("{TOPIC}-0"));
    let started = Instant::now();
    while old_dir.exists() {
        assert!(started.elapsed() < DEADLINE, "{} was never deleted", old_dir.display());
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(reassign(&c.bootstrap(1), None), 85, "NO_REASSIGNMENT_IN_PROGRESS for a cancel of nothing");
    let out = strom(&["cluster", "reassign", "--topic", TOPIC, "--partition", "0", "--cancel", "-b", &c.bootstrap(1)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no reassignment is in progress"), "{out:?}");

    // Preferred-leader election: a failover moves leadership away from the newcomer...
    c.nodes[newcomer as usize - 1].kill9();
    let k = kept;
    wait_partitions(&c.bootstrap(kept as usize), TOPIC, "the other replica leading", |l, _| l == k);
    c.nodes[newcomer as usize - 1].restart();
    let both = |_: i32, isr: &[i32]| isr.len() == 2;
    wait_partitions(&c.bootstrap(kept as usize), TOPIC, "the restarted replica back in sync", both);
    assert_eq!(replicas(&c.bootstrap(kept as usize)).1, kept, "a return does not take leadership back");
    // ...and the election gives it back.
    let out = strom(&["cluster", "elect-leaders", "--topic", TOPIC, "--output", "json", "-b", &c.bootstrap(1)]);
    assert!(out.status.success(), "elect-leaders: {}", String::from_utf8_lossy(&out.stderr));
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(results[0]["result"], "elected", "{results}");
    let n = newcomer;
    wait_partitions(&c.bootstrap(1), TOPIC, "the preferred replica leading", |l, _| l == n);
    let out = strom(&["cluster", "elect-leaders", "--topic", TOPIC, "--output", "json", "-b", &c.bootstrap(1)]);
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(results[0]["result"], "already led by its preferred replica", "{results}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_unclean_election_enabled_an_out_of_sync_replica_leads_an_offline_partition() {
    let mut c = Cluster::start();
    let configs = [("unclean.leader.election.enable", "true")];
    create_replicated_topic(&c.bootstrap(1), TOPIC, 1, 2, &configs).await;
    wait_partitions(&c.bootstrap(1), TOPIC, "both replicas in sync", |l, isr| l > 0 && isr.len() == 2);
    let (before, leader, _) = replicas(&c.bootstrap(1));
    let follower = *before.iter().find(|r| **r != leader).expect("a follower");
    let third = (1..=3).find(|n| !before.contains(n)).expect("a node with no replica") as usize;
    // The follower dies and leaves the ISR; then the leader dies: the partition is offline,
    // its ISR still naming the leader (the one replica known to hold every record).
    c.nodes[follower as usize - 1].kill9();
    let (l, f) = (leader, follower);
    wait_partitions(&c.bootstrap(third), TOPIC, "the ISR without the follower", |_, isr| isr == [l]);
    c.nodes[leader as usize - 1].kill9();
    c.nodes[follower as usize - 1].restart();
    // The follower, never back in sync, is elected because the topic allows it.
    wait_partitions(&c.bootstrap(third), TOPIC, "the out-of-sync replica leading", |l, isr| l == f && isr == [f]);
}

/// The earliest offset of partition 0 of `topic`, from its leader at `bootstrap`.
fn log_start(bootstrap: &str, topic: &str) -> i64 {
    use kafka_protocol::messages::ListOffsetsRequest;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-2)]),
    ]);
    let r = RawConn::connect(bootstrap).call(4, &request);
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "{r:?}");
    p.offset
}

/// A replica added to a partition whose leader's retention already deleted its first
/// segments cannot fetch from offset 0: it restarts its log at the leader's log start, catches
/// up from there, and the reassignment completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_added_after_retention_ran_starts_at_the_leaders_log_start() {
    let (_dir, mut c) = cluster_with_config("retention_check_interval_ms = 100\n");
    let configs = [("segment.bytes", "1024"), ("retention.bytes", "2048")];
    create_replicated_topic(&c.bootstrap(1), "aged", 1, 1, &configs).await;
    let state = wait_partitions(&c.bootstrap(1), "aged", "a leader", |l, _| l > 0);
    let owner = state[0].0;
    let p = producer(&c.bootstrap(owner as usize), &[("acks", "all"), ("linger.ms", "0")]);
    for i in 0..200 {
        send(&p, "aged", format!("k{i}").as_bytes(), &[b'x'; 200]).await;
    }
    drop(p);
    let started = Instant::now();
    let start = loop {
        let s = log_start(&c.bootstrap(owner as usize), "aged");
        if s > 0 {
            break s;
        }
        assert!(started.elapsed() < DEADLINE, "retention never moved the log start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let other = if owner == 1 { 2 } else { 1 };
    let request = AlterPartitionReassignmentsRequest::default().with_topics(vec![
        ReassignableTopic::default().with_name(TopicName(StrBytes::from_static_str("aged"))).with_partitions(vec![
            ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(Some(vec![BrokerId(owner), BrokerId(other)])),
        ]),
    ]);
    let r = RawConn::connect(&c.bootstrap(1)).call(1, &request);
    assert_eq!(r.responses[0].partitions[0].error_code, 0, "{r:?}");
    let o = other;
    wait_partitions(&c.bootstrap(1), "aged", "the new replica in sync", |_, isr| isr.contains(&o));
    // Its joining the ISR and the completion are two commits: wait for the second.
    let started = Instant::now();
    while in_progress(&c.bootstrap(1)) > 0 {
        assert!(started.elapsed() < DEADLINE, "the reassignment never completed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The new replica, on its own, serves every record from the leader's log start on.
    c.nodes[owner as usize - 1].kill9();
    wait_partitions(&c.bootstrap(other as usize), "aged", "the new replica leading", |l, _| l == o);
    let got = consume_all(&c.bootstrap(other as usize), "aged", 1);
    let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
    let first = offsets.first().copied().expect("records");
    assert!(first >= start, "it holds nothing below the leader's log start {start}: {offsets:?}");
    assert_eq!(offsets, (first..200).collect::<Vec<_>>(), "every record from its log start to the end, once");
    assert_eq!(got.last().and_then(|r| r.key.clone()), Some(b"k199".to_vec()));
}

/// Every partition's (replicas, sorted ISR) of `topic`.
fn layout(bootstrap: &str, topic: &str) -> Vec<(Vec<i32>, Vec<i32>)> {
    let m = RawConn::connect(bootstrap).call(9, &support::topic_metadata_request(topic));
    let t = m.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)).expect("listed");
    let mut parts: Vec<_> = t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition_index);
    parts
        .iter()
        .map(|p| {
            let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            isr.sort_unstable();
            (p.replica_nodes.iter().map(|b| b.0).collect(), isr)
        })
        .collect()
}

fn wait_layout(bootstrap: &str, what: &str, ok: impl Fn(&[(Vec<i32>, Vec<i32>)]) -> bool) -> Vec<(Vec<i32>, Vec<i32>)> {
    let started = Instant::now();
    loop {
        let l = layout(bootstrap, "spread");
        if ok(&l) && in_progress(bootstrap) == 0 {
            return l;
        }
        assert!(started.elapsed() < DEADLINE, "never reached {what}: {l:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Automatic rebalancing: the replicas of a broker fenced longer than the delay move to the
/// live brokers (fully in sync), and when it comes back empty the spread of replica counts
/// brings some back to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_move_off_a_broker_that_stays_away_and_back_when_it_returns() {
    let (_dir, mut c) =
        cluster_with_config("[cluster]\nrebalance_interval_s = 1\nfenced_broker_rebalance_delay_s = 2\n");
    create_replicated_topic(&c.bootstrap(1), "spread", 3, 2, &[]).await;
    let full = |l: &[(Vec<i32>, Vec<i32>)]| l.iter().all(|(r, isr)| r.len() == 2 && isr.len() == 2);
    let before = wait_layout(&c.bootstrap(1), "every partition fully in sync", full);
    assert!(before.iter().any(|(r, _)| r.contains(&3)), "node 3 holds replicas: {before:?}");
    let p = producer(&c.bootstrap(1), &[("acks", "all"), ("enable.idempotence", "true")]);
    for i in 0..60 {
        send(&p, "spread", format!("k{i}").as_bytes(), b"v").await;
    }

    c.nodes[2].kill9();
    let away = wait_layout(&c.bootstrap(1), "no replica on the dead node, all in sync", |l| {
        full(l) && l.iter().all(|(r, _)| !r.contains(&3))
    });
    eprintln!("after node 3 stayed away: {away:?}");
    c.nodes[2].restart();
    let back = wait_layout(&c.bootstrap(1), "node 3 holding replicas again, all in sync", |l| {
        full(l) && l.iter().any(|(r, _)| r.contains(&3))
    });
    eprintln!("after node 3 returned: {back:?}");
    for i in 60..80 {
        send(&p, "spread", format!("k{i}").as_bytes(), b"v").await;
    }
    drop(p);
    let got = consume_all(&c.bootstrap(1), "spread", 3);
    let keys: BTreeSet<Vec<u8>> = got.iter().filter_map(|r| r.key.clone()).collect();
    assert_eq!((keys.len(), got.len()), (80, 80), "every record once, through both moves");
}

/// Bytes of the segment files of partition 0 of `topic` in `data_dir`.
fn stored_bytes(data_dir: &std::path::Path, topic: &str) -> u64 {
    std::fs::read_dir(data_dir.join(format!("{topic}-0")))
        .expect("partition dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// An added replica's catch-up is held to the throttle, and `strom topic describe` shows how
/// far behind the leader's log end it is while it catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_catches_up_no_faster_than_the_throttle_and_describe_shows_its_lag() {
    const RATE: u64 = 100_000;
    let (_dir, c) = cluster_with_config(format!("[cluster]\nreassignment_throttle_bytes_per_sec = {RATE}\n"));
    create_replicated_topic(&c.bootstrap(1), "slow", 1, 1, &[]).await;
    let owner = wait_partitions(&c.bootstrap(1), "slow", "a leader", |l, _| l > 0)[0].0;
    let p = producer(&c.bootstrap(owner as usize), &[("acks", "1"), ("linger.ms", "5")]);
    for i in 0..3000 {
        send(&p, "slow", format!("k{i}").as_bytes(), &[b'x'; 200]).await;
    }
    drop(p);
    let bytes = stored_bytes(c.nodes[owner as usize - 1].data_dir(), "slow");
    let other = if owner == 1 { 2 } else { 1 };
    let started = Instant::now();
    let out = strom(&[
        "cluster",
        "reassign",
        "--topic",
        "slow",
        "--partition",
        "0",
        "--replicas",
        &format!("{owner},{other}"),
        "--no-wait",
        "-b",
        &c.bootstrap(1),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut lags = Vec::new();
    let mut ages = Vec::new();
    let produced = Instant::now();
    while in_progress(&c.bootstrap(1)) > 0 {
        let out = strom(&["topic", "describe", "slow", "--output", "json", "-b", &c.bootstrap(owner as usize)]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        if let Some(lag) = v["partitions"][0]["replica_lag"][other.to_string()].as_i64() {
            lags.push(lag);
        }
        if let Some(ms) = v["partitions"][0]["replica_lag_ms"][other.to_string()].as_i64() {
            ages.push(ms);
        }
        assert!(started.elapsed() < DEADLINE, "the move never finished");
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = started.elapsed();
    // One second of burst, then the rate.
    let floor = Duration::from_secs_f64((bytes as f64 / RATE as f64 - 1.5).max(0.0));
    assert!(took >= floor, "{bytes} bytes moved in {took:?}: faster than {RATE} B/s allows ({floor:?})");
    assert!(lags.iter().any(|l| *l > 0), "describe showed the new replica behind while it caught up: {lags:?}");
    assert!(lags.windows(2).all(|w| w[1] <= w[0]), "its lag only shrank: {lags:?}");
    // The records it lacked were all produced before the move began: the oldest of them is
    // at least as old as the time since then.
    let (first_age, last_age) = (ages.first().copied(), ages.last().copied());
    assert!(
        first_age.is_some_and(|a| a >= 0)
            && last_age.is_some_and(|a| a as u128 >= produced.elapsed().as_millis().saturating_sub(1500)),
        "describe showed how old the oldest missing record is: {ages:?}"
    );
    eprintln!("{bytes} bytes at {RATE} B/s took {took:?}; lags seen {lags:?}");
    let out = strom(&["topic", "describe", "slow", "--output", "json", "-b", &c.bootstrap(owner as usize)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["partitions"][0]["replica_lag"][other.to_string()], 0, "caught up: {v}");
}

/// Bad reassignment and election requests get Kafka's error codes per partition, change
/// nothing, and the broker keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reassignments_and_elections_are_refused_partition_by_partition() {
    use kafka_protocol::messages::ElectLeadersRequest;
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    let c = Cluster::start();
    create_replicated_topic(&c.bootstrap(1), TOPIC, 1, 2, &[]).await;
    wait_partitions(&c.bootstrap(1), TOPIC, "both replicas in sync", |l, isr| l > 0 && isr.len() == 2);
    let before = replicas(&c.bootstrap(1));
    let part = |index: i32, replicas: Option<Vec<i32>>| {
        ReassignablePartition::default()
            .with_partition_index(index)
            .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect()))
    };
    let name = |s: &str| TopicName(StrBytes::from_string(s.to_string()));
    let request = AlterPartitionReassignmentsRequest::default().with_topics(vec![
        ReassignableTopic::default().with_name(name(TOPIC)).with_partitions(vec![
            part(0, Some(vec![1, 1])),  // a broker twice
            part(0, Some(vec![])),      // no replicas
            part(0, Some(vec![1, 99])), // an unknown broker
            part(7, Some(vec![1, 2])),  // no such partition
            part(-1, Some(vec![1, 2])), // nor this one
        ]),
        ReassignableTopic::default().with_name(name("no-such-topic")).with_partitions(vec![part(0, Some(vec![1]))]),
    ]);
    let r = RawConn::connect(&c.bootstrap(1)).call(0, &request);
    let codes: Vec<i16> = r.responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect();
    // INVALID_REPLICA_ASSIGNMENT (39) x3, UNKNOWN_TOPIC_OR_PARTITION (3) x3.
    assert_eq!(codes, vec![39, 39, 39, 3, 3, 3], "{r:?}");
    assert!(r.responses.iter().flat_map(|t| &t.partitions).all(|p| p.error_message.is_some()), "each says why");
    // v1 without consent to a replication-factor change.
    let request =
        AlterPartitionReassignmentsRequest::default().with_allow_replication_factor_change(false).with_topics(vec![
            ReassignableTopic::default().with_name(name(TOPIC)).with_partitions(vec![part(0, Some(vec![1, 2, 3]))]),
        ]);
    let r = RawConn::connect(&c.bootstrap(1)).call(1, &request);
    assert_eq!(r.responses[0].partitions[0].error_code, 38, "INVALID_REPLICATION_FACTOR: {r:?}");

    let elect = |unclean: i8, topic: &str, partitions: Vec<i32>| {
        let request = ElectLeadersRequest::default().with_election_type(unclean).with_topic_partitions(Some(vec![
            TopicPartitions::default().with_topic(name(topic)).with_partitions(partitions),
        ]));
        let r = RawConn::connect(&c.bootstrap(2)).call(2, &request);
        assert_eq!(r.error_code, 0, "{r:?}");
        r.replica_election_results[0].partition_result.iter().map(|p| p.error_code).collect::<Vec<_>>()
    };
    assert_eq!(elect(0, "no-such-topic", vec![0]), vec![3]);
    assert_eq!(elect(0, TOPIC, vec![5]), vec![3]);
    assert_eq!(elect(1, TOPIC, vec![0]), vec![84], "unclean: ELECTION_NOT_NEEDED, the partition has a leader");
    assert_eq!(replicas(&c.bootstrap(1)), before, "nothing changed");
    assert_eq!(in_progress(&c.bootstrap(1)), 0);
}

/// A reassignment waiting for a replica on a broker that stays away is cancelled by the
/// automatic rebalance (its original replicas stay), so it cannot block rebalancing forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reassignment_stuck_on_a_dead_broker_is_cancelled() {
    let (_dir, mut c) =
        cluster_with_config("[cluster]\nrebalance_interval_s = 1\nfenced_broker_rebalance_delay_s = 2\n");
    create_replicated_topic(&c.bootstrap(1), TOPIC, 1, 1, &[]).await;
    let owner = wait_partitions(&c.bootstrap(1), TOPIC, "a leader", |l, _| l > 0)[0].0;
    let dead = (1..=3).find(|n| *n != owner).expect("another node");
    let alive = (1..=3).find(|n| *n != owner && *n != dead).expect("a third node") as usize;
    c.nodes[dead as usize - 1].kill9();
    assert_eq!(reassign(&c.bootstrap(alive), Some(vec![owner, dead])), 0, "a registered broker may be named");
    assert_eq!(in_progress(&c.bootstrap(alive)), 1, "waiting for the dead broker to catch up");
    // `strom cluster status` shows both: the move under way, and the dead broker holding a
    // replica (once it is fenced).
    let started = Instant::now();
    loop {
        let out = strom(&["cluster", "status", "--output", "json", "-b", &c.bootstrap(alive)]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        if v["unavailable_brokers"] == serde_json::json!([{ "id": dead, "replicas": 1 }]) {
            assert_eq!(v["reassigning"], 1, "{v}");
            break;
        }
        assert!(started.elapsed() < DEADLINE, "status never showed the dead broker: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    while in_progress(&c.bootstrap(alive)) > 0 {
        assert!(started.elapsed() < DEADLINE, "the stuck reassignment was never cancelled");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (after, leader, isr) = replicas(&c.bootstrap(alive));
    assert_eq!((after, leader, isr), (vec![owner], owner, vec![owner]), "the original replica stays");
}

/// `strom cluster rebalance` plans with racks, as the controller places with them: on a
/// layout that the rack rule shaped (node 3 alone in its rack holds a replica of every
/// partition), the dry run finds nothing to move, where a plan blind to racks would "balance"
/// replicas off node 3 and put both replicas of a partition in one rack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rebalance_plan_keeps_the_rack_rule() {
    let c = Cluster::start_each(|n| vec!["--rack".to_string(), if n < 3 { "r1" } else { "r2" }.to_string()]);
    create_replicated_topic(&c.bootstrap(1), "racked", 6, 2, &[]).await;
    let l = wait_partitions(&c.bootstrap(1), "racked", "full ISRs", |l, isr| l > 0 && isr.len() == 2);
    let m = RawConn::connect(&c.bootstrap(1)).call(9, &support::topic_metadata_request("racked"));
    let layout: Vec<Vec<i32>> =
        m.topics[0].partitions.iter().map(|p| p.replica_nodes.iter().map(|b| b.0).collect()).collect();
    assert!(
        layout.iter().all(|r| r.contains(&3)),
        "the rack rule put a replica of each partition on node 3: {layout:?} ({l:?})"
    );
    let out = strom(&["cluster", "rebalance", "--dry-run", "--output", "json", "-b", &c.bootstrap(1)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plans: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(plans, serde_json::json!([]), "nothing to move on a rack-balanced layout");
}

/// `[cluster] max_replicas` caps what placement gives a broker: node 3, capped at 1, gets one
/// replica of a 6-partition topic (balanced placement would give it 2) and none of the next
/// topic; a topic that would need more of it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_respects_each_brokers_replica_capacity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let capped = dir.path().join("capped.toml");
    std::fs::write(&capped, "[cluster]\nmax_replicas = 1\n").expect("config");
    let c = Cluster::start_each(|n| {
        if n == 3 { vec!["--config".to_string(), capped.display().to_string()] } else { Vec::new() }
    });
    let on_3 = |topic: &str| {
        let m = RawConn::connect(&c.bootstrap(1)).call(9, &support::topic_metadata_request(topic));
        m.topics[0].partitions.iter().filter(|p| p.replica_nodes.iter().any(|b| b.0 == 3)).count()
    };
    create_replicated_topic(&c.bootstrap(1), "first", 6, 1, &[]).await;
    assert_eq!(on_3("first"), 1, "node 3 holds its one replica");
    create_replicated_topic(&c.bootstrap(1), "second", 6, 1, &[]).await;
    assert_eq!(on_3("second"), 0, "node 3 is full");
    let out = strom(&["topic", "create", "third", "-p", "1", "-r", "3", "-b", &c.bootstrap(1)]);
    assert!(!out.status.success(), "RF 3 needs node 3, which is full");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("Invalid number of partitions"), "INVALID_PARTITIONS: {err}");
}
