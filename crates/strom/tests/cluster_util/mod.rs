//! A 3-node Strom cluster of real `strom serve` processes on 127.0.0.1 for end-to-end tests,
//! and Metadata helpers over a raw connection.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use crate::common::TestBroker;
use crate::support::RawConn;
use kafka_protocol::messages::MetadataRequest;

pub const CLUSTER_ID: &str = "e2e-cluster";
/// Three brokers, their clients and the test share two cores.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A free 127.0.0.1 port, bound and released: every node's voter list must name the internal
/// listeners before any node starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub struct Cluster {
    pub nodes: Vec<TestBroker>,
    pub voters: String,
    pub internal: Vec<u16>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// [`Cluster::start`] with `extra` arguments for every node's `strom serve`.
    pub fn start_with(extra: &[String]) -> Cluster {
        Cluster::start_each(|_| extra.to_vec())
    }

    /// [`Cluster::start`] with `extra(node)` arguments for node `node`'s (1-based)
    /// `strom serve`: a rack or a config file of its own.
    pub fn start_each(extra: impl Fn(usize) -> Vec<String>) -> Cluster {
        let internal: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let voters =
            internal.iter().enumerate().map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1)).collect::<Vec<_>>().join(",");
        let nodes = (0..3)
            .map(|i| {
                let mut args = node_args(i + 1, &voters, internal[i], CLUSTER_ID);
                args.extend(extra(i + 1));
                start_node(&args)
            })
            .collect();
        let c = Cluster { nodes, voters, internal };
        // Every node lists all three: a node lists itself even while fenced, so one view
        // alone does not prove the others live.
        for n in 1..=3 {
            c.wait_brokers(&c.bootstrap(n), 3);
        }
        c
    }

    pub fn bootstrap(&self, node: usize) -> String {
        self.nodes[node - 1].bootstrap()
    }

    /// Polls Metadata at `bootstrap` until it lists `n` brokers (the live ones, and the node
    /// asked itself); returns the controller id.
    pub fn wait_brokers(&self, bootstrap: &str, n: usize) -> i32 {
        let started = Instant::now();
        loop {
            let (brokers, controller) = metadata(bootstrap);
            if brokers.len() == n && controller >= 0 {
                return controller;
            }
            assert!(started.elapsed() < DEADLINE, "{bootstrap} never listed {n} brokers: {brokers:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn node_args(id: usize, voters: &str, internal: u16, cluster_id: &str) -> Vec<String> {
    vec![
        "--node-id".into(),
        id.to_string(),
        "--cluster-id".into(),
        cluster_id.into(),
        "--voters".into(),
        voters.into(),
        "--internal-listen".into(),
        format!("127.0.0.1:{internal}"),
    ]
}

pub fn start_node(args: &[String]) -> TestBroker {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    TestBroker::start_with(&refs)
}

/// Broker ids and the controller id from a Metadata request to `bootstrap`.
pub fn metadata(bootstrap: &str) -> (Vec<i32>, i32) {
    let mut c = RawConn::connect(bootstrap);
    let m = c.call(9, &MetadataRequest::default().with_topics(None));
    (m.brokers.iter().map(|b| b.node_id.0).collect(), m.controller_id.0)
}

/// Partition -> leader of `topic`, as `bootstrap` reports it.
pub fn leaders(bootstrap: &str, topic: &str) -> Vec<i32> {
    partition_state(bootstrap, topic).into_iter().map(|(l, _)| l).collect()
}

/// Partition -> (leader, ISR) of `topic`, as `bootstrap` reports it.
pub fn partition_state(bootstrap: &str, topic: &str) -> Vec<(i32, Vec<i32>)> {
    let m = RawConn::connect(bootstrap).call(9, &crate::support::topic_metadata_request(topic));
    crate::support::partition_view(&m, topic).expect("topic listed")
}

/// Polls `bootstrap` until every partition of `topic` satisfies `ok(leader, isr)`; returns
/// the state then. Panics after [`DEADLINE`] with `what` and the last state.
pub fn wait_partitions(
    bootstrap: &str,
    topic: &str,
    what: &str,
    ok: impl Fn(i32, &[i32]) -> bool,
) -> Vec<(i32, Vec<i32>)> {
    let started = Instant::now();
    loop {
        let state = partition_state(bootstrap, topic);
        if !state.is_empty() && state.iter().all(|(l, isr)| ok(*l, isr)) {
            return state;
        }
        assert!(started.elapsed() < DEADLINE, "{topic} never reached {what}: {state:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}
