//! `strom cluster up --nodes 3` as the README runs it: it prints the bootstrap servers, the
//! cluster serves `strom topic create` through one node and `strom cluster status` through
//! another, and SIGTERM stops every node cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A base port such that `base..base + 3` are all free now (the command takes consecutive
/// ports, as a user would give it).
fn free_run() -> u16 {
    for _ in 0..200 {
        let base = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        if base > 65000 {
            continue;
        }
        let held: Vec<_> = (0..3).filter_map(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok()).collect();
        if held.len() == 3 {
            return base;
        }
    }
    panic!("no run of 3 free ports found");
}

fn strom(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strom")).args(args).output().expect("run strom")
}

/// `strom cluster up`, sent SIGTERM if still running when the test ends (a failed assertion
/// included), so it stops its nodes instead of leaving them running.
struct Up(std::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn cluster_up_serves_a_three_node_cluster_and_stops_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (kafka, internal, metrics) = (free_run(), free_run(), free_run());
    let mut up = Up(Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["cluster", "up", "--nodes", "3", "--dir"])
        .arg(dir.path())
        .args(["--base-port", &kafka.to_string(), "--internal-base-port", &internal.to_string()])
        .args(["--metrics-base-port", &metrics.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn strom cluster up"));
    let stdout = up.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let bootstrap = loop {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("cluster up printed");
        if let Some(b) = line.strip_prefix("bootstrap servers: ") {
            break b.to_string();
        }
    };
    let nodes: Vec<&str> = bootstrap.split(',').collect();
    assert_eq!(
        nodes,
        vec![format!("127.0.0.1:{kafka}"), format!("127.0.0.1:{}", kafka + 1), format!("127.0.0.1:{}", kafka + 2)]
    );

    // Every node lists all three (a node lists itself even while fenced): all are live.
    for n in &nodes {
        let started = Instant::now();
        loop {
            let out = strom(&["cluster", "info", "--output", "json", "-b", n]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if v["brokers"].as_array().map(Vec::len) == Some(3) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{n} never listed 3 brokers");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let out = strom(&["topic", "create", "demo", "--partitions", "6", "-b", nodes[1]]);
    assert!(out.status.success(), "topic create: {}", String::from_utf8_lossy(&out.stderr));
    // A group's first FindCoordinator creates __consumer_offsets, over all three nodes.
    let out = strom(&["consume", "demo", "--group", "readers", "--from-beginning", "-b", nodes[0]]);
    assert!(out.status.success(), "consume with a group: {}", String::from_utf8_lossy(&out.stderr));
    let started = Instant::now();
    let status = loop {
        let out = strom(&["cluster", "status", "--output", "json", "-b", nodes[0]]);
        assert!(out.status.success(), "cluster status: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let brokers = v["brokers"].as_array().map(Vec::len).unwrap_or(0);
        let leaders: u64 = v["brokers"].as_array().into_iter().flatten().filter_map(|b| b["leaders"].as_u64()).sum();
        if brokers == 3 && leaders >= 18 {
            break v;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "status never showed 3 brokers leading 6 partitions: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status["controller"].as_i64().is_some_and(|c| (1..=3).contains(&c)), "{status}");
    // 6 partitions of demo and the 12 of __consumer_offsets (4 per node, from node-N.toml),
    // spread: created at the first FindCoordinator, when every node was up.
    assert_eq!(status["partitions"], 18, "{status}");
    assert_eq!(status["offline"].as_array().map(Vec::len), Some(0), "{status}");
    assert!(
        status["brokers"].as_array().into_iter().flatten().all(|b| b["leaders"].as_u64() >= Some(1)),
        "partitions are led on every node: {status}"
    );

    // A plan to drain node 3: exactly its replicas move, each to a node that stays.
    let on_3 =
        status["brokers"].as_array().into_iter().flatten().find(|b| b["id"] == 3).and_then(|b| b["replicas"].as_u64());
    // __consumer_offsets has 3 replicas per partition (3 brokers were live): it cannot leave
    // node 3 of three, which the plan says (and fails); demo's replicas on node 3 all move.
    let out = strom(&["cluster", "rebalance", "--dry-run", "--exclude", "3", "--output", "json", "-b", nodes[0]]);
    assert!(!out.status.success(), "a drain that leaves RF 3 on 2 brokers has no complete plan");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("__consumer_offsets") && stderr.contains("replication factor 3"), "{stderr}");
    let plans: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let offsets_on_3 = 12;
    let blocked = plans.as_array().into_iter().flatten().find(|t| t["topic"] == "__consumer_offsets");
    assert!(blocked.is_some_and(|t| t["error"].is_string()), "{plans}");
    let moves: Vec<&serde_json::Value> =
        plans.as_array().into_iter().flatten().flat_map(|t| t["moves"].as_array().into_iter().flatten()).collect();
    assert_eq!(
        on_3.map(|n| n - offsets_on_3),
        Some(moves.len() as u64),
        "one move per demo replica on node 3: {plans}"
    );
    for m in &moves {
        assert_eq!(m["from"], 3, "{m}");
        assert!(m["to"] == 1 || m["to"] == 2, "{m}");
        assert_eq!(m["reason"], "broker 3 excluded", "{m}");
    }
    // Executing it is refused as a whole, before anything moves.
    let out = strom(&["cluster", "rebalance", "--exclude", "3", "-b", nodes[0]]);
    assert!(!out.status.success(), "a plan that cannot complete is not started");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no complete plan"));
    let out = strom(&["cluster", "status", "--output", "json", "-b", nodes[0]]);
    let after: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let on_3_after =
        after["brokers"].as_array().into_iter().flatten().find(|b| b["id"] == 3).and_then(|b| b["replicas"].as_u64());
    assert_eq!(on_3_after, on_3, "nothing moved: {after}");

    let pid = up.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = up.0.try_wait().expect("wait") {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "cluster up did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "cluster up exits 0 after a clean stop of every node: {exit}");
    for n in &nodes {
        assert!(std::net::TcpStream::connect(n).is_err(), "node {n} still listening after the stop");
    }
}
