//! The fault harness: a 3-node Strom cluster of real `strom serve` processes, each in a
//! network namespace of its own (joined to the test by veth pairs on a bridge) and on a
//! power-loss filesystem of its own (`strom-faultfs`), under a seeded schedule of faults
//! while an idempotent `acks=all` producer and a consumer run:
//!
//! - kill -9 of a node (then restarted on its data);
//! - a paused node (SIGSTOP, later SIGCONT), often the leader;
//! - an isolated node (its link set down: a minority of one cut off from the majority and
//!   from clients, then healed);
//! - a node cut off from the other nodes but not from the clients (blackhole routes between
//!   the namespaces): the minority/majority split with clients on both sides, and, when the
//!   node leads, a leader its clients reach but its followers do not;
//! - a power cut of one node (kill -9, every write it had not fsynced dropped, or a seeded
//!   prefix kept with the last write torn; restarted on what survived);
//! - a power cut of every node at once (all three killed, all unsynced writes dropped):
//!   `acks=all` means "fsynced on every in-sync replica", so even this loses nothing
//!   acknowledged;
//! - a node that comes back with an empty data disk (killed, its data directory wiped but for
//!   the Raft metadata, restarted): it registers with a new storage id, is in no ISR, and
//!   catches up from nothing. (A voter that loses its Raft state as well needs a quorum
//!   membership change, which is not built; see the README.)
//!
//! One fault at a time; after each the harness waits until every partition has a leader and
//! a full ISR again. Then a checker verifies, in Jepsen's terms: no lost write (every
//! acknowledged record is in the log, at the offset it was acknowledged with), no duplicate,
//! no inconsistent offset (one offset, two values), no non-monotonic or skipping poll (the
//! consumer saw each partition's offsets in order, one after another), and no record a
//! consumer saw that later vanished.
//!
//! `STROM_FAULT_STEPS` (default 8: each kind of fault once) and `STROM_FAULT_SEED` choose the
//! run; CI runs the short default. `STROM_FAULT_FAST_RESTARTS=1` restarts dead nodes without
//! waiting for the cluster to fence them. Without `ip netns` (not root) the nodes run on loopback and the two network
//! faults are left out, which the output says.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::MetadataRequest;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use strom_faultfs::{CutMode, FaultFs};
use support::{RawConn, Rng, create_replicated_topic, env_u64, partition_view, producer};

const TOPIC: &str = "jepsen";
const PARTITIONS: i32 = 3;
const NODES: usize = 3;
/// Three brokers, two clients and the test share two cores; a restart after a power cut
/// replays a journal.
const HEAL_DEADLINE: Duration = Duration::from_secs(120);

fn run(cmd: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", cmd.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The network: one namespace per node, each with a veth pair whose other end is on a bridge
/// in the test's namespace, on a /24 of its own (chosen from the process id, so parallel runs
/// do not collide). Removed on drop.
struct Net {
    tag: String,
    subnet: String,
}

impl Net {
    fn setup() -> Result<Net, String> {
        let pid = std::process::id();
        let tag = format!("sf{}", pid % 100_000);
        let subnet = format!("10.{}.{}", 100 + (pid / 250) % 100, pid % 250);
        let net = Net { tag, subnet };
        let br = net.bridge();
        run(&["ip", "link", "add", &br, "type", "bridge"])?;
        run(&["ip", "addr", "add", &format!("{}.254/24", net.subnet), "dev", &br])?;
        run(&["ip", "link", "set", &br, "up"])?;
        for i in 1..=NODES {
            let (ns, host_end, ns_end) = (net.ns(i), net.host_end(i), format!("{}n{i}", net.tag));
            run(&["ip", "netns", "add", &ns])?;
            run(&["ip", "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end])?;
            run(&["ip", "link", "set", &ns_end, "netns", &ns])?;
            run(&["ip", "link", "set", &host_end, "master", &br])?;
            run(&["ip", "link", "set", &host_end, "up"])?;
            run(&["ip", "netns", "exec", &ns, "ip", "addr", "add", &format!("{}/24", net.ip(i)), "dev", &ns_end])?;
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", &ns_end, "up"])?;
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}-{i}", self.tag)
    }

    fn host_end(&self, i: usize) -> String {
        format!("{}h{i}", self.tag)
    }

    fn ip(&self, i: usize) -> String {
        format!("{}.{i}", self.subnet)
    }

    /// Cuts node `i` off from everyone (the other nodes and the clients).
    fn isolate(&self, i: usize) {
        run(&["ip", "link", "set", &self.host_end(i), "down"]).expect("setting a link down");
    }

    fn heal(&self, i: usize) {
        run(&["ip", "link", "set", &self.host_end(i), "up"]).expect("setting a link up");
    }

    /// Cuts node `i` off from the other nodes but not from the clients (the bridge address):
    /// blackhole routes in its namespace to theirs and in theirs to its, so packets between
    /// them vanish silently, as in a real partition. With 3 nodes this is the minority/majority
    /// split with clients on both sides; when `i` leads, it is a leader cut off from its
    /// followers that clients still reach.
    fn cut_from_peers(&self, i: usize) {
        for j in (1..=NODES).filter(|j| *j != i) {
            for (ns, to) in [(self.ns(i), self.ip(j)), (self.ns(j), self.ip(i))] {
                run(&["ip", "netns", "exec", &ns, "ip", "route", "add", "blackhole", &format!("{to}/32")])
                    .expect("adding a blackhole route");
            }
        }
    }

    fn rejoin_peers(&self, i: usize) {
        for j in (1..=NODES).filter(|j| *j != i) {
            for (ns, to) in [(self.ns(i), self.ip(j)), (self.ns(j), self.ip(i))] {
                run(&["ip", "netns", "exec", &ns, "ip", "route", "del", "blackhole", &format!("{to}/32")])
                    .expect("removing a blackhole route");
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=NODES {
            let _ = run(&["ip", "netns", "del", &self.ns(i)]);
            let _ = run(&["ip", "link", "del", &self.host_end(i)]);
        }
        let _ = run(&["ip", "link", "del", &self.bridge()]);
    }
}

/// One `strom serve` process, its own power-loss filesystem and, with a [`Net`], its own
/// namespace.
struct Node {
    id: usize,
    host: String,
    kafka_port: u16,
    internal_port: u16,
    ns: Option<String>,
    fs: FaultFs,
    root: PathBuf,
    child: Option<Child>,
    paused: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Node {
    fn data_dir(&self) -> PathBuf {
        self.fs.mountpoint().join("data")
    }

    fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.kafka_port)
    }

    fn start(&mut self, voters: &str) {
        let ready = self.root.join("ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("broker.log"))
            .expect("opening the node's log");
        let config = self.root.join("strom.toml");
        // Without preallocation its zero-fill fsyncs would make appended data durable as a
        // side effect, leaving the power cuts less to prove.
        std::fs::write(&config, "preallocate_bytes = 0\n").expect("writing the node's config");
        let bin = env!("CARGO_BIN_EXE_strom");
        // `nsenter --net` enters only the network namespace: `ip netns exec` would also give the
        // node a mount namespace of its own, holding a copy of every FUSE mount, so a power
        // cut's unmount in ours would never end the filesystem's session.
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/var/run/netns/{ns}")).arg("--").arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("serve")
            .args(["--node-id", &self.id.to_string()])
            .args(["--listen", &self.bootstrap()])
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--ready-file")
            .arg(&ready)
            .arg("--config")
            .arg(&config)
            .args(["--cluster-id", "fault-harness", "--voters", voters])
            .args(["--internal-listen", &format!("{}:{}", self.host, self.internal_port)])
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log));
        let mut child = cmd.spawn().expect("spawning strom serve");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            if let Some(status) = child.try_wait().expect("polling the node") {
                panic!("node {} exited while starting ({status}); see {}", self.id, self.root.display());
            }
            assert!(Instant::now() < deadline, "node {} not ready within 60 s", self.id);
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
        self.paused = false;
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").args([sig, &c.id().to_string()]).status();
        }
    }

    fn kill9(&mut self) {
        if self.paused {
            self.signal("-CONT");
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    fn resume(&mut self) {
        self.signal("-CONT");
        self.paused = false;
    }

    /// Deletes everything in the data directory but the Raft metadata (`raft/`): a broker
    /// whose data disk was lost and replaced (KIP-903's case). A voter that lost its Raft
    /// state too is another matter (a quorum membership change, KIP-853's), not built.
    fn wipe_partition_data(&self) {
        for entry in std::fs::read_dir(self.data_dir()).expect("reading the data directory") {
            let path = entry.expect("a directory entry").path();
            if path.file_name().is_some_and(|n| n == "raft") {
                continue;
            }
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("wiping a partition directory");
            } else {
                std::fs::remove_file(&path).expect("wiping a file");
            }
        }
    }

    /// kill -9, then the power cut (retried while the dead process's files are still open).
    fn power_cut(&mut self, mode: CutMode) {
        self.kill9();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.fs.power_cut(mode) {
                Ok(_) => return,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("power cut of node {} failed: {e}", self.id),
            }
        }
    }
}

struct Cluster {
    nodes: Vec<Node>,
    voters: String,
    net: Option<Net>,
    /// Kept (and named) if the test fails, for the nodes' logs.
    root: Option<tempfile::TempDir>,
    /// `STROM_FAULT_FAST_RESTARTS=1`: restart a dead node without waiting for the cluster to
    /// fence it first (its new registration is refused until the old session expires; the
    /// next fault may come before it rejoined).
    fast_restarts: bool,
}

impl Cluster {
    fn start() -> Cluster {
        if let Err(why) = strom_faultfs::available() {
            panic!("the power-loss filesystem cannot run here ({why}); it needs /dev/fuse and root");
        }
        let net = match Net::setup() {
            Ok(n) => Some(n),
            Err(why) => {
                eprintln!("fault harness: no network namespaces ({why}); nodes on loopback, no isolation faults");
                None
            }
        };
        let root = tempfile::Builder::new().prefix("strom-faults-").tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        for id in 1..=NODES {
            let dir = root.path().join(format!("node-{id}"));
            std::fs::create_dir_all(dir.join("mnt")).expect("node dir");
            let fs =
                FaultFs::mount(&dir.join("backing"), &dir.join("mnt")).expect("mounting the power-loss filesystem");
            let (host, kafka_port, internal_port, ns) = match &net {
                Some(n) => (n.ip(id), 9092, 9093, Some(n.ns(id))),
                None => ("127.0.0.1".to_string(), free_port(), free_port(), None),
            };
            nodes.push(Node { id, host, kafka_port, internal_port, ns, fs, root: dir, child: None, paused: false });
        }
        let voters =
            nodes.iter().map(|n| format!("{}@{}:{}", n.id, n.host, n.internal_port)).collect::<Vec<_>>().join(",");
        let fast_restarts = env_u64("STROM_FAULT_FAST_RESTARTS", 0) == 1;
        let mut c = Cluster { nodes, voters, net, root: Some(root), fast_restarts };
        for i in 0..NODES {
            c.start_node(i);
        }
        c
    }

    fn start_node(&mut self, i: usize) {
        let voters = self.voters.clone();
        self.nodes[i].start(&voters);
    }

    fn bootstrap(&self) -> String {
        self.nodes.iter().map(Node::bootstrap).collect::<Vec<_>>().join(",")
    }

    /// Metadata for `topics` (all with `None`) from node `n`, if it answers.
    fn metadata(&self, n: &Node, topics: Option<&str>) -> Option<kafka_protocol::messages::MetadataResponse> {
        if n.child.is_none() || n.paused {
            return None;
        }
        let addr = n.bootstrap().parse().expect("socket address");
        let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut conn = RawConn::from_stream(stream);
        let req = match topics {
            Some(t) => support::topic_metadata_request(t),
            None => MetadataRequest::default().with_topics(None),
        };
        conn.try_call(9, &req).ok()
    }

    /// Waits until every node lists all of them as live brokers.
    fn wait_brokers(&self) {
        let started = Instant::now();
        while !self.nodes.iter().all(|n| self.metadata(n, None).is_some_and(|m| m.brokers.len() == NODES)) {
            assert!(started.elapsed() < HEAL_DEADLINE, "the brokers never all registered");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// (leader, ISR) of every partition of the topic as the first node that answers says.
    fn partitions(&self) -> Option<PartitionView> {
        self.nodes.iter().find_map(|n| self.metadata(n, Some(TOPIC)).and_then(|m| partition_view(&m, TOPIC)))
    }

    /// Waits until every partition has a leader and all three replicas in sync, as every
    /// node sees it (a restarted node's view comes from the metadata log past its new
    /// registration, which took it out of every ISR: a full ISR there means it rejoined).
    fn wait_healed(&self, after: &str) -> Duration {
        let started = Instant::now();
        loop {
            let views: Vec<Option<PartitionView>> = self.nodes.iter().map(|n| self.view(n)).collect();
            let healed = views.iter().all(|v| {
                v.as_ref().is_some_and(|s| {
                    s.len() == PARTITIONS as usize && s.iter().all(|(l, isr)| *l > 0 && isr.len() == NODES)
                })
            });
            if healed {
                return started.elapsed();
            }
            assert!(started.elapsed() < HEAL_DEADLINE, "the cluster did not heal after {after}: {views:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Node `n`'s view of the topic's partitions, if it answers and lists every broker live.
    fn view(&self, n: &Node) -> Option<PartitionView> {
        let m = self.metadata(n, Some(TOPIC))?;
        if m.brokers.len() != NODES {
            return None;
        }
        partition_view(&m, TOPIC)
    }

    /// Waits until the cluster has fenced the dead node `victim` (it is in no ISR), so that
    /// its restart is a new registration and the heal that follows a real rejoin.
    fn wait_out_of_isr(&self, victim: usize) {
        if self.fast_restarts {
            return;
        }
        let started = Instant::now();
        let v = victim as i32;
        loop {
            if self.partitions().is_some_and(|s| s.iter().all(|(_, isr)| !isr.contains(&v))) {
                return;
            }
            assert!(started.elapsed() < HEAL_DEADLINE, "node {victim} was never fenced");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn leader_of(&self, partition: usize) -> Option<usize> {
        let s = self.partitions()?;
        usize::try_from(s.get(partition)?.0).ok().filter(|l| (1..=NODES).contains(l))
    }
}

/// (leader, sorted ISR) per partition, in partition order.
type PartitionView = Vec<(i32, Vec<i32>)>;

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill9();
        }
        if std::thread::panicking() {
            if let Some(root) = self.root.take() {
                eprintln!("fault harness: the nodes' logs are kept in {}", root.keep().display());
            }
        }
    }
}

/// What the clients observed.
#[derive(Default)]
struct History {
    /// Acknowledged value -> (partition, offset).
    acked: HashMap<String, (i32, i64)>,
    /// Sends that failed or timed out: they may or may not be in the log (but at most once).
    indeterminate: HashSet<String>,
    /// What the consumer saw, per partition, in poll order: (offset, value).
    seen: BTreeMap<i32, Vec<(i64, String)>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_record_is_lost_under_a_seeded_schedule_of_faults() {
    let steps = env_u64("STROM_FAULT_STEPS", 8);
    let seed = env_u64("STROM_FAULT_SEED", 0x5eed_0ffa);
    let mut c = Cluster::start();
    c.wait_brokers();
    let bootstrap = c.bootstrap();
    create_replicated_topic(&bootstrap, TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]).await;
    c.wait_healed("creating the topic");

    let history: Arc<Mutex<History>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let (history, stop, bootstrap) = (history.clone(), stop.clone(), bootstrap.clone());
        tokio::spawn(async move {
            let p = producer(
                &bootstrap,
                &[
                    ("acks", "all"),
                    ("enable.idempotence", "true"),
                    ("linger.ms", "2"),
                    ("message.timeout.ms", "240000"),
                    ("reconnect.backoff.max.ms", "250"),
                ],
            );
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let values: Vec<String> = (0..50).map(|i| format!("v-{}", sent + i)).collect();
                sent += 50;
                let futures: Vec<_> = values
                    .iter()
                    .map(|v| p.send(FutureRecord::to(TOPIC).key(v).payload(v), Duration::from_secs(240)))
                    .collect();
                let mut results = Vec::with_capacity(futures.len());
                for f in futures {
                    results.push(f.await);
                }
                let mut h = history.lock().expect("history");
                for (v, r) in values.into_iter().zip(results) {
                    match r {
                        Ok(d) => {
                            h.acked.insert(v, (d.partition, d.offset));
                        }
                        Err(_) => {
                            h.indeterminate.insert(v);
                        }
                    }
                }
            }
        })
    };
    let consuming = {
        let (history, stop, bootstrap) = (history.clone(), stop.clone(), bootstrap.clone());
        std::thread::spawn(move || {
            let consumer: BaseConsumer = support::client_config(&bootstrap)
                .set("group.id", "fault-harness-reader")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .create()
                .expect("creating the consumer");
            let mut tpl = rdkafka::TopicPartitionList::new();
            for p in 0..PARTITIONS {
                tpl.add_partition_offset(TOPIC, p, rdkafka::Offset::Beginning).expect("assignment");
            }
            consumer.assign(&tpl).expect("assign");
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                    history.lock().expect("history").seen.entry(m.partition()).or_default().push((m.offset(), v));
                }
            }
        })
    };

    let mut rng = Rng(seed);
    let mut applied: Vec<String> = Vec::new();
    // Each kind of fault at least once in a default run, in a seeded order; more steps draw
    // at random.
    let kinds = if c.net.is_some() { 8 } else { 6 };
    let mut order: Vec<u64> = (0..kinds).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for step in 0..steps {
        // Let the clients make progress between faults.
        tokio::time::sleep(Duration::from_millis(500 + rng.below(1000))).await;
        let kind = order.get(step as usize).copied().unwrap_or_else(|| rng.below(kinds));
        let victim = match rng.below(2) {
            0 => c.leader_of(rng.below(PARTITIONS as u64) as usize).unwrap_or(1),
            _ => 1 + rng.below(NODES as u64) as usize,
        };
        let hold = Duration::from_millis(1000 + rng.below(2500));
        let what = match kind {
            0 => {
                c.nodes[victim - 1].kill9();
                tokio::time::sleep(hold).await;
                c.wait_out_of_isr(victim);
                c.start_node(victim - 1);
                format!("kill -9 of node {victim}, restarted after {hold:?}")
            }
            1 => {
                c.nodes[victim - 1].pause();
                tokio::time::sleep(hold).await;
                c.nodes[victim - 1].resume();
                format!("node {victim} paused (SIGSTOP) for {hold:?}")
            }
            2 => {
                c.nodes[victim - 1].power_cut(CutMode::DropAll);
                c.wait_out_of_isr(victim);
                c.start_node(victim - 1);
                format!("power cut of node {victim} (every unsynced write dropped)")
            }
            3 => {
                let cut_seed = rng.next();
                c.nodes[victim - 1].power_cut(CutMode::KeepPrefix { seed: cut_seed });
                c.wait_out_of_isr(victim);
                c.start_node(victim - 1);
                format!("power cut of node {victim} (a seeded prefix of unsynced writes kept, the last torn)")
            }
            4 => {
                for n in &mut c.nodes {
                    n.power_cut(CutMode::DropAll);
                }
                for i in 0..NODES {
                    c.start_node(i);
                }
                "power cut of every node at once (every unsynced write dropped)".to_string()
            }
            5 => {
                c.nodes[victim - 1].kill9();
                c.nodes[victim - 1].wipe_partition_data();
                c.wait_out_of_isr(victim);
                c.start_node(victim - 1);
                format!("node {victim} back with an empty data disk")
            }
            6 => {
                let net = c.net.as_ref().expect("isolation needs the namespaces");
                net.isolate(victim);
                tokio::time::sleep(hold).await;
                net.heal(victim);
                format!("node {victim} isolated from the others and the clients for {hold:?}")
            }
            _ => {
                let net = c.net.as_ref().expect("a partition needs the namespaces");
                // A leader, the case that matters: clients still reach it, its followers don't.
                let victim = c.leader_of(rng.below(PARTITIONS as u64) as usize).unwrap_or(victim);
                let led: Vec<usize> = (0..PARTITIONS as usize).filter(|p| c.leader_of(*p) == Some(victim)).collect();
                net.cut_from_peers(victim);
                // The majority fences it and elects other leaders while clients still reach it.
                let other = &c.nodes[if victim == 1 { 1 } else { 0 }];
                let v = victim as i32;
                let started = Instant::now();
                while !c.metadata(other, Some(TOPIC)).and_then(|m| partition_view(&m, TOPIC)).is_some_and(|s| {
                    led.iter().all(|p| s.get(*p).is_some_and(|(l, isr)| *l > 0 && *l != v && !isr.contains(&v)))
                }) {
                    assert!(started.elapsed() < HEAL_DEADLINE, "the majority never moved node {victim}'s leaderships");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let moved = started.elapsed();
                tokio::time::sleep(hold).await;
                net.rejoin_peers(victim);
                format!(
                    "node {victim} (leading partitions {led:?}) cut off from the other nodes, not from the clients; \
                     new leaders after {moved:?}, healed after {hold:?} more"
                )
            }
        };
        let healed = c.wait_healed(&what);
        eprintln!("fault {}: {what}; healed {healed:?} later", step + 1);
        applied.push(what);
    }

    // Let the in-flight sends finish, then read everything back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    producing.await.expect("producer task");
    consuming.join().expect("consumer thread");
    c.wait_healed("the end of the run");
    let log = support::consume_all(&bootstrap, TOPIC, PARTITIONS);
    let h = history.lock().expect("history");

    let mut at: HashMap<(i32, i64), String> = HashMap::new();
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in &log {
        let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string();
        assert!(
            at.insert((r.partition, r.offset), v.clone()).is_none(),
            "offset {}-{} read twice",
            r.partition,
            r.offset
        );
        *count.entry(v).or_default() += 1;
    }
    let lost: Vec<&String> = h.acked.keys().filter(|v| !count.contains_key(*v)).collect();
    assert!(
        lost.is_empty(),
        "lost acknowledged writes ({} of {}): {:?}",
        lost.len(),
        h.acked.len(),
        &lost[..lost.len().min(10)]
    );
    let dups: Vec<(&String, &usize)> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicated records: {dups:?}");
    for (v, (p, o)) in &h.acked {
        assert_eq!(at.get(&(*p, *o)), Some(v), "acknowledged {v} at {p}-{o}, the log holds something else there");
    }
    let unknown: Vec<&String> =
        count.keys().filter(|v| !h.acked.contains_key(*v) && !h.indeterminate.contains(*v)).collect();
    assert!(unknown.is_empty(), "records nobody sent: {unknown:?}");
    let mut polled = 0;
    for (p, seen) in &h.seen {
        for w in seen.windows(2) {
            assert_eq!(w[1].0, w[0].0 + 1, "partition {p}: the consumer went from offset {} to {}", w[0].0, w[1].0);
        }
        for (o, v) in seen {
            assert_eq!(at.get(&(*p, *o)), Some(v), "the consumer saw {v} at {p}-{o}, which the log no longer holds");
        }
        polled += seen.len();
    }
    eprintln!(
        "fault harness (seed {seed:#x}, {steps} faults): {} acknowledged, {} indeterminate, {} in the log, {polled} polled; \
         no lost, duplicated, misplaced or vanished record",
        h.acked.len(),
        h.indeterminate.len(),
        log.len()
    );
    assert!(h.acked.len() > 100, "the producer made progress through the faults");
    assert!(polled > 0, "the consumer made progress");
}
