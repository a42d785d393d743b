//! The metadata quorum over real TCP sockets on 127.0.0.1: three nodes elect a controller,
//! writes made through any node appear on all, the controller's loss costs nothing
//! committed, silent brokers are fenced and come back, a node that was away catches up from
//! a snapshot, a fourth node joins, and strangers on the internal port are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strom_cluster::network::client::{CallError, Peer};
use strom_cluster::network::wire::{Reply, Request};
use strom_cluster::{
    Applied, BrokerEndpoint, ClusterConfig, ClusterNode, ControllerReply, ControllerRequest, RaftMetadataStore,
};
use strom_meta::{MetaError, MetadataStore, TopicConfigs};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const CLUSTER: &str = "test-cluster";
/// Generous: three nodes and the test share two cores.
const DEADLINE: Duration = Duration::from_secs(20);

struct Cluster {
    dirs: BTreeMap<u64, tempfile::TempDir>,
    voters: BTreeMap<u64, String>,
    nodes: BTreeMap<u64, Arc<ClusterNode>>,
    listeners: BTreeMap<u64, TcpListener>,
}

fn config(id: u64, dir: &std::path::Path, voters: &BTreeMap<u64, String>) -> ClusterConfig {
    let mut c = ClusterConfig::new(CLUSTER, id, dir.join("raft"), voters.clone());
    c.snapshot_every = 20;
    c
}

fn endpoint(id: u64) -> BrokerEndpoint {
    BrokerEndpoint {
        host: "127.0.0.1".into(),
        port: 9000 + id as i32,
        rack: None,
        storage_id: None,
        max_replicas: None,
    }
}

impl Cluster {
    async fn start(n: u64) -> Cluster {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
        let mut c = Cluster {
            dirs: BTreeMap::new(),
            voters: BTreeMap::new(),
            nodes: BTreeMap::new(),
            listeners: BTreeMap::new(),
        };
        for id in 1..=n {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            c.voters.insert(id, l.local_addr().expect("addr").to_string());
            c.listeners.insert(id, l);
            c.dirs.insert(id, tempfile::tempdir().expect("tempdir"));
        }
        for id in 1..=n {
            c.boot(id).await;
        }
        c
    }

    async fn boot(&mut self, id: u64) {
        let listener = match self.listeners.remove(&id) {
            Some(l) => l,
            None => TcpListener::bind(&self.voters[&id]).await.expect("rebind the node's address"),
        };
        let cfg = config(id, self.dirs[&id].path(), &self.voters);
        let node = ClusterNode::start_with_listener(cfg, listener, endpoint(id)).await.expect("start");
        self.nodes.insert(id, node);
    }

    async fn stop(&mut self, id: u64) {
        if let Some(n) = self.nodes.remove(&id) {
            n.shutdown().await;
        }
    }

    fn store(&self, id: u64) -> RaftMetadataStore {
        RaftMetadataStore::new(self.nodes[&id].clone())
    }

    /// Waits until every running node sees exactly `live` as the unfenced brokers.
    async fn wait_live(&self, live: &[i32]) {
        let started = Instant::now();
        loop {
            let views: Vec<Vec<i32>> =
                self.nodes.keys().map(|id| self.store(*id).brokers().iter().map(|b| b.node_id).collect()).collect();
            if views.iter().all(|v| v == live) {
                return;
            }
            assert!(started.elapsed() < DEADLINE, "live brokers never became {live:?}: {views:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_leader(&self) -> u64 {
        let started = Instant::now();
        loop {
            let leaders: BTreeSet<Option<u64>> = self.nodes.values().map(|n| n.controller_id()).collect();
            if leaders.len() == 1 {
                if let Some(Some(l)) = leaders.into_iter().next() {
                    if self.nodes.contains_key(&l) {
                        return l;
                    }
                }
            }
            assert!(started.elapsed() < DEADLINE, "no agreed controller");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn wait_topic(store: &RaftMetadataStore, name: &str) {
    let started = Instant::now();
    while store.topic(name).is_none() {
        assert!(started.elapsed() < DEADLINE, "topic {name} never reached node {}", store.node().node_id());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_controller_and_a_write_through_any_node_reaches_all() {
    let c = Cluster::start(3).await;
    c.wait_live(&[1, 2, 3]).await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    // Through a follower: forwarded to the controller; readable there as soon as it returns.
    let created = c.store(follower).create_topic("orders", 6, TopicConfigs::new()).await.expect("create");
    assert_eq!(created.partitions, 6);
    assert_eq!(c.store(follower).topic("orders").map(|t| t.id), Some(created.id), "read-your-writes");
    for id in 1..=3 {
        wait_topic(&c.store(id), "orders").await;
        let parts = c.store(id).partitions("orders");
        let leaders: BTreeSet<i32> = parts.iter().filter_map(|p| p.leader).collect();
        assert_eq!(leaders, BTreeSet::from([1, 2, 3]), "partitions are led on every node: {parts:?}");
        assert_eq!(c.store(id).controller_id(), Some(leader as i32));
    }
    let err = c.store(leader).create_topic("orders", 1, TopicConfigs::new()).await.expect_err("exists");
    assert!(matches!(err, MetaError::TopicExists(_)), "{err}");
    let grown = c.store(follower).set_partitions("orders", 9).await.expect("grow");
    assert_eq!(grown.partitions, 9);
    let cfg = TopicConfigs::from([("retention.ms".to_string(), "60000".to_string())]);
    c.store(follower).set_configs("orders", cfg.clone()).await.expect("alter");
    c.store(follower).delete_topic("orders").await.expect("delete");
    assert!(c.store(follower).topic("orders").is_none());
    for n in c.nodes.values() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_controller_elects_another_and_loses_nothing_committed() {
    let mut c = Cluster::start(3).await;
    c.wait_live(&[1, 2, 3]).await;
    let leader = c.wait_leader().await;
    let any = (1..=3).find(|id| *id != leader).expect("a survivor");
    c.store(any).create_topic("before", 3, TopicConfigs::new()).await.expect("create");
    let first = alloc(&c.nodes[&any]).await;
    let stopped_at = Instant::now();
    c.stop(leader).await;
    let next = c.wait_leader().await;
    let elected_after = stopped_at.elapsed();
    assert_ne!(next, leader);
    // A write succeeds through the new controller; the old topic and id block are intact.
    c.store(any).create_topic("after", 3, TopicConfigs::new()).await.expect("create after failover");
    let second = alloc(&c.nodes[&any]).await;
    assert!(second >= first + 1000, "producer-id blocks overlap: {first} then {second}");
    for id in c.nodes.keys() {
        wait_topic(&c.store(*id), "after").await;
        assert!(c.store(*id).topic("before").is_some(), "node {id} lost a committed topic");
    }
    // The stopped controller is fenced once its session runs out, and partitions it led
    // show as offline (one replica each).
    let live: Vec<i32> = (1..=3).filter(|id| *id != leader as i32).collect();
    c.wait_live(&live).await;
    let offline = c.store(any).partitions("before").iter().filter(|p| p.leader.is_none()).count();
    assert_eq!(offline, 1, "exactly the partition on the stopped node is offline");
    eprintln!("new controller after {elected_after:?}");
    // It comes back: registered again, unfenced, leading its partition again.
    c.boot(leader).await;
    c.wait_live(&[1, 2, 3]).await;
    let started = Instant::now();
    while c.store(any).partitions("before").iter().any(|p| p.leader.is_none()) {
        assert!(started.elapsed() < DEADLINE, "the returning broker never led its partition again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in c.nodes.values() {
        n.shutdown().await;
    }
}

async fn alloc(node: &ClusterNode) -> i64 {
    let req = ControllerRequest::AllocateProducerIds { node_id: node.node_id() as i32, count: 1000 };
    match node.submit(req, DEADLINE).await.expect("allocate") {
        ControllerReply::Committed { applied: Applied::ProducerIds { first, .. }, .. } => first,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_away_for_long_catches_up_from_a_snapshot() {
    let mut c = Cluster::start(3).await;
    c.wait_live(&[1, 2, 3]).await;
    let leader = c.wait_leader().await;
    let away = (1..=3).find(|id| *id != leader).expect("a follower");
    let here = (1..=3).find(|id| *id != leader && *id != away).expect("another");
    c.stop(away).await;
    // Far more entries than the snapshot interval (20): the leader snapshots and purges the
    // log the absent node would need.
    for i in 0..60 {
        c.store(here).create_topic(&format!("t{i}"), 1, TopicConfigs::new()).await.expect("create");
    }
    let started = Instant::now();
    loop {
        let m = c.nodes[&leader].raft().metrics().borrow().clone();
        if m.purged.is_some_and(|p| p.index > 20) {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "the leader never purged its log: {:?}", m.purged);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.boot(away).await;
    wait_topic(&c.store(away), "t59").await;
    assert_eq!(c.store(away).topics().len(), 60);
    let snapshot = c.nodes[&away].raft().metrics().borrow().snapshot;
    assert!(snapshot.is_some(), "the returning node installed a snapshot");
    for n in c.nodes.values() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_as_a_learner_and_a_second_node_with_its_id_is_refused() {
    let c = Cluster::start(3).await;
    c.wait_live(&[1, 2, 3]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let node4 = ClusterNode::start(config(4, dir.path(), &c.voters), endpoint(4)).await.expect("start node 4");
    c.wait_live(&[1, 2, 3, 4]).await;
    let store4 = RaftMetadataStore::new(node4.clone());
    store4.create_topic("spread", 8, TopicConfigs::new()).await.expect("create through the learner");
    let leaders: BTreeSet<i32> = store4.partitions("spread").iter().filter_map(|p| p.leader).collect();
    assert_eq!(leaders, BTreeSet::from([1, 2, 3, 4]));
    let voters = node4.raft().metrics().borrow().membership_config.membership().voter_ids().collect::<Vec<_>>();
    assert_eq!(voters, vec![1, 2, 3], "the fourth node does not vote");

    // Another process claiming node id 4 while the first lives: refused, and says why.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let twin = ClusterNode::start(config(4, dir2.path(), &c.voters), endpoint(4)).await.expect("start the twin");
    let mut status = twin.broker_status();
    let seen = tokio::time::timeout(
        DEADLINE,
        status.wait_for(|s| s.last_error.as_deref().is_some_and(|e| e.contains("already"))),
    )
    .await
    .expect("the twin is told within the deadline")
    .expect("status")
    .clone();
    assert!(seen.epoch.is_none(), "the twin never registered: {seen:?}");
    twin.shutdown().await;
    assert!(c.store(1).brokers().iter().any(|b| b.node_id == 4), "the first node 4 is untouched");
    node4.shutdown().await;
    for n in c.nodes.values() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_on_the_internal_port_are_refused_and_the_node_keeps_serving() {
    let c = Cluster::start(3).await;
    c.wait_live(&[1, 2, 3]).await;
    let addr = c.voters[&1].clone();
    // Another cluster's node.
    let mut foreign = Peer::new("another-cluster", 7, 1, &addr);
    let err = foreign.call(&Request::Vote(vote_request()), DEADLINE).await.expect_err("refused");
    assert!(matches!(&err, CallError::Refused { reason, .. } if reason.contains("cluster id mismatch")), "{err}");
    // A peer claiming node 1's own id.
    let mut dup = Peer::new(CLUSTER, 1, 1, &addr);
    let err = dup.call(&Request::Vote(vote_request()), DEADLINE).await.expect_err("refused");
    assert!(matches!(&err, CallError::Refused { reason, .. } if reason.contains("duplicate node id")), "{err}");
    // Addressed to the wrong node.
    let mut wrong = Peer::new(CLUSTER, 2, 3, &addr);
    let err = wrong.call(&Request::Vote(vote_request()), DEADLINE).await.expect_err("refused");
    assert!(matches!(&err, CallError::Refused { reason, .. } if reason.contains("not node 3")), "{err}");
    // Garbage, and a frame declaring 4 GiB: each connection is closed without a reply.
    for junk in [b"GET / HTTP/1.1\r\n\r\n".to_vec(), vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]] {
        let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        s.write_all(&junk).await.expect("write");
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read(&mut s, &mut buf))
            .await
            .expect("closed within the deadline")
            .unwrap_or(0);
        assert_eq!(n, 0, "no reply to garbage");
    }
    // A real peer still gets answers, and writes still work.
    let mut ok = Peer::new(CLUSTER, 2, 1, &addr);
    let reply = ok.call(&Request::Vote(vote_request()), DEADLINE).await.expect("answered");
    assert!(matches!(reply, Reply::Vote(_)));
    c.store(1).create_topic("still-serving", 1, TopicConfigs::new()).await.expect("create");
    for n in c.nodes.values() {
        n.shutdown().await;
    }
}

fn vote_request() -> openraft::raft::VoteRequest<u64> {
    // Term 0: a stale vote request every node answers (rejecting it) without side effects.
    openraft::raft::VoteRequest { vote: openraft::Vote::new(0, 2), last_log_id: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_writes_fail_with_a_retriable_error_and_reads_keep_working() {
    let mut c = Cluster::start(3).await;
    c.wait_live(&[1, 2, 3]).await;
    c.store(1).create_topic("kept", 1, TopicConfigs::new()).await.expect("create");
    for id in [2, 3] {
        wait_topic(&c.store(id), "kept").await;
    }
    c.stop(2).await;
    c.stop(3).await;
    let store = c.store(1);
    let started = Instant::now();
    let err = store.create_topic("lost", 1, TopicConfigs::new()).await.expect_err("no quorum");
    assert!(matches!(err, MetaError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15), "failed within the write timeout, not hung");
    assert!(store.topic("kept").is_some(), "reads still answer from the applied state");
    c.stop(1).await;
}
