//! Consumer groups with a real client (rdkafka, i.e. librdkafka) against a real `strom serve`:
//! disjoint and complete assignments, a consumer killed with SIGKILL (a child process) evicted
//! after its session timeout, a clean leave rebalancing at once, and manual commits that resume
//! exactly where they left off across a consumer restart and a broker kill -9 — with every
//! produced record consumed and none lost.

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use common::TestBroker;
use support::{TIMEOUT, client_config, create_topic, producer};

/// Session timeout of every consumer here: the broker's minimum (`group.min.session.timeout.ms`).
const SESSION_MS: u64 = 6_000;

/// A broker whose first rebalance waits only 300 ms for more members (Kafka's default is 3 s),
/// so the suite stays fast. The returned directory holds the config and must outlive it.
fn group_broker() -> (TestBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("strom.toml");
    std::fs::write(&path, "[groups]\ninitial_rebalance_delay_ms = 300\nmin_session_timeout_ms = 6000\n")
        .expect("config");
    let broker = TestBroker::start_with(&["--config", path.to_str().expect("utf-8 path")]);
    (broker, dir)
}

fn consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = client_config(bootstrap);
    c.set("group.id", group)
        .set("session.timeout.ms", SESSION_MS.to_string())
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("creating consumer")
}

type Assignment = BTreeSet<(String, i32)>;

fn assignment_of(c: &BaseConsumer) -> Assignment {
    c.assignment()
        .map(|tpl| tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect())
        .unwrap_or_default()
}

/// A consumer polled on its own thread, publishing its current assignment, how often it
/// changed and the errors polling returned.
struct Member {
    assignment: Arc<Mutex<Assignment>>,
    changes: Arc<Mutex<usize>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    fn start(bootstrap: &str, group: &str, topic: &str, strategy: &str) -> Member {
        Member::start_with(bootstrap, group, topic, &[("partition.assignment.strategy", strategy)])
    }

    fn start_with(bootstrap: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> Member {
        let c = consumer(bootstrap, group, extra);
        c.subscribe(&[topic]).expect("subscribe");
        let assignment = Arc::new(Mutex::new(Assignment::new()));
        let changes = Arc::new(Mutex::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, n, errs, s) = (assignment.clone(), changes.clone(), errors.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(Err(e)) = c.poll(Duration::from_millis(100)) {
                    errs.lock().expect("lock").push(e.to_string());
                }
                let now = assignment_of(&c);
                let mut current = a.lock().expect("lock");
                if *current != now {
                    *current = now;
                    *n.lock().expect("lock") += 1;
                }
            }
            // Dropping the consumer closes it: librdkafka sends LeaveGroup (not for static
            // members, which keep their place until their session times out).
            drop(c);
        });
        Member { assignment, changes, errors, stop, thread: Some(thread) }
    }

    fn assignment(&self) -> Assignment {
        self.assignment.lock().expect("lock").clone()
    }

    fn changes(&self) -> usize {
        *self.changes.lock().expect("lock")
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().expect("lock").clone()
    }

    /// Closes the consumer (LeaveGroup for a dynamic member) and waits for it.
    fn leave(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("consumer thread");
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A consumer in a child process (this test binary re-run as [`child_consumer`]), so it can be
/// killed with SIGKILL: no LeaveGroup, no goodbye.
struct ChildMember {
    child: std::process::Child,
    assignment: Arc<Mutex<Assignment>>,
}

impl ChildMember {
    fn start(bootstrap: &str, group: &str, topic: &str, strategy: &str) -> ChildMember {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["child_consumer", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env("STROM_GROUP_CHILD", format!("{bootstrap}|{group}|{topic}|{strategy}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning the child consumer");
        let stdout = child.stdout.take().expect("child stdout");
        let assignment = Arc::new(Mutex::new(Assignment::new()));
        let a = assignment.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(rest) = line.strip_prefix("ASSIGNMENT ") {
                    *a.lock().expect("lock") = serde_json::from_str::<Vec<(String, i32)>>(rest)
                        .expect("assignment json")
                        .into_iter()
                        .collect();
                }
            }
        });
        ChildMember { child, assignment }
    }

    fn assignment(&self) -> Assignment {
        self.assignment.lock().expect("lock").clone()
    }

    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for ChildMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of the child process: a consumer that prints its assignment whenever it changes.
#[test]
#[ignore = "run by other tests as a child process"]
fn child_consumer() {
    let Ok(spec) = std::env::var("STROM_GROUP_CHILD") else { return };
    let parts: Vec<&str> = spec.split('|').collect();
    let (bootstrap, group, topic, strategy) = (parts[0], parts[1], parts[2], parts[3]);
    let c = consumer(bootstrap, group, &[("partition.assignment.strategy", strategy)]);
    c.subscribe(&[topic]).expect("subscribe");
    let mut last: Option<Assignment> = None;
    loop {
        let _ = c.poll(Duration::from_millis(100));
        let now = assignment_of(&c);
        if last.as_ref() != Some(&now) {
            println!("ASSIGNMENT {}", serde_json::to_string(&now.iter().collect::<Vec<_>>()).expect("json"));
            last = Some(now);
        }
    }
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `limit`. Returns how long
/// it took.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

fn all_partitions(topic: &str, n: i32) -> Assignment {
    (0..n).map(|p| (topic.to_string(), p)).collect()
}

/// Disjoint assignments whose union is `want`.
fn partitioned(sets: &[Assignment], want: &Assignment) -> bool {
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: Assignment = sets.iter().flatten().cloned().collect();
    total == want.len() && &union == want && sets.iter().all(|s| !s.is_empty())
}

fn three_members_then_kill_then_leave(strategy: &str) {
    let (broker, _cfg) = group_broker();
    let bootstrap = broker.bootstrap();
    let topic = format!("six-{strategy}");
    let group = format!("g-{strategy}");
    support_runtime().block_on(create_topic(&bootstrap, &topic, 6, &[]));
    let want = all_partitions(&topic, 6);

    let a = Member::start(&bootstrap, &group, &topic, strategy);
    let b = Member::start(&bootstrap, &group, &topic, strategy);
    let mut c = ChildMember::start(&bootstrap, &group, &topic, strategy);
    wait_for(Duration::from_secs(60), "three disjoint assignments covering six partitions", || {
        partitioned(&[a.assignment(), b.assignment(), c.assignment()], &want)
    });
    for m in [a.assignment(), b.assignment(), c.assignment()] {
        assert_eq!(m.len(), 2, "{strategy}: six partitions over three members is two each: {m:?}");
    }

    // SIGKILL the child: it never leaves, so only its session timeout can evict it.
    let killed = Instant::now();
    c.kill9();
    wait_for(Duration::from_secs(SESSION_MS / 1000 + 30), "the two survivors to own all six partitions", || {
        partitioned(&[a.assignment(), b.assignment()], &want)
    });
    let took = killed.elapsed();
    eprintln!("{strategy}: survivors own everything {took:?} after the SIGKILL");
    assert!(
        took >= Duration::from_millis(SESSION_MS - 1_500),
        "{strategy}: the dead member was evicted after {took:?}, before its {SESSION_MS} ms session timeout"
    );

    // A clean leave rebalances at once: well within one session timeout.
    let left = Instant::now();
    b.leave();
    wait_for(Duration::from_secs(30), "the last member to own everything", || a.assignment() == want);
    let took = left.elapsed();
    eprintln!("{strategy}: last member owns everything {took:?} after the clean leave");
    assert!(took < Duration::from_millis(SESSION_MS / 2), "{strategy}: rebalance after a clean leave took {took:?}");
    drop(a);
    drop(broker);
}

#[test]
fn range_three_consumers_six_partitions_kill_and_leave() {
    three_members_then_kill_then_leave("range");
}

#[test]
fn cooperative_sticky_three_consumers_six_partitions_kill_and_leave() {
    three_members_then_kill_then_leave("cooperative-sticky");
}

#[test]
fn static_member_restarts_without_a_rebalance_and_a_duplicate_is_fenced() {
    let (broker, _cfg) = group_broker();
    let bootstrap = broker.bootstrap();
    support_runtime().block_on(create_topic(&bootstrap, "static", 4, &[]));
    let want = all_partitions("static", 4);
    let member =
        |instance: &str| Member::start_with(&bootstrap, "static-group", "static", &[("group.instance.id", instance)]);
    let a = member("a");
    let b = member("b");
    wait_for(Duration::from_secs(60), "two static members splitting four partitions", || {
        partitioned(&[a.assignment(), b.assignment()], &want)
    });
    let (a_changes, b_share) = (a.changes(), b.assignment());

    // b's process restarts: a static member does not leave, and comes back with the same
    // instance id well within its session timeout.
    b.leave();
    let b2 = member("b");
    wait_for(
        Duration::from_secs(SESSION_MS / 1000 - 1),
        "the restarted static member to get its partitions back",
        || b2.assignment() == b_share,
    );
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(a.changes(), a_changes, "the other member never saw a rebalance");
    assert_eq!(b2.assignment(), b_share);

    // A second process with the same instance id takes the place over; the first is fenced.
    let b3 = member("b");
    wait_for(Duration::from_secs(30), "the duplicate to be fenced", || {
        b2.errors().iter().any(|e| e.to_lowercase().contains("fenced"))
    });
    wait_for(Duration::from_secs(30), "the new instance to hold b's partitions", || {
        partitioned(&[a.assignment(), b3.assignment()], &want)
    });
}

fn support_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Produces `n` records with values `0..n` (as text) over the topic's partitions.
fn produce_numbers(bootstrap: &str, topic: &str, from: usize, n: usize) {
    let p = producer(bootstrap, &[("acks", "all"), ("linger.ms", "5")]);
    support_runtime().block_on(async {
        let mut futs = Vec::new();
        for i in from..from + n {
            let v = i.to_string();
            let key = format!("k{}", i % 17);
            let rec = rdkafka::producer::FutureRecord::to(topic).key(&key).payload(&v);
            futs.push(p.send_result(rec).unwrap_or_else(|(e, _)| panic!("enqueue: {e}")));
        }
        for f in futs {
            f.await.expect("delivery").unwrap_or_else(|(e, _)| panic!("produce failed: {e}"));
        }
    });
}

/// Records seen `(partition, offset, value)`, first offset per partition, last commit per
/// partition.
type Consumed = (Vec<(i32, i64, usize)>, BTreeMap<i32, i64>, BTreeMap<i32, i64>);

/// Consumes up to `max` records, committing synchronously after every `commit_every` records
/// (and at the end). Returns the records seen (partition, offset, value), the first offset
/// seen per partition and the last commit per partition.
fn consume_and_commit(c: &BaseConsumer, max: usize, commit_every: usize) -> Consumed {
    let mut seen = Vec::new();
    let mut first = BTreeMap::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut committed = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let commit = |next: &BTreeMap<i32, i64>, committed: &mut BTreeMap<i32, i64>, topic: &str| {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in next {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o)).expect("tpl");
        }
        c.commit(&tpl, CommitMode::Sync).expect("synchronous commit");
        committed.extend(next.iter().map(|(p, o)| (*p, *o)));
    };
    let mut topic = String::new();
    let mut quiet = 0;
    while seen.len() < max && Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            quiet += 1;
            // Two seconds without a record once reading has started: everything is read.
            if !seen.is_empty() && quiet >= 10 {
                break;
            }
            continue;
        };
        quiet = 0;
        let m = m.expect("consume error");
        topic = m.topic().to_string();
        let v: usize = std::str::from_utf8(m.payload().expect("payload")).expect("utf8").parse().expect("number");
        first.entry(m.partition()).or_insert(m.offset());
        next.insert(m.partition(), m.offset() + 1);
        seen.push((m.partition(), m.offset(), v));
        if seen.len() % commit_every == 0 {
            commit(&next, &mut committed, &topic);
        }
    }
    if !next.is_empty() && committed != next {
        commit(&next, &mut committed, &topic);
    }
    (seen, first, committed)
}

#[test]
fn manual_commits_resume_exactly_across_consumer_restart_and_broker_kill9() {
    let (mut broker, _cfg) = group_broker();
    let bootstrap = broker.bootstrap();
    let topic = "commits";
    support_runtime().block_on(create_topic(&bootstrap, topic, 3, &[]));
    produce_numbers(&bootstrap, topic, 0, 3_000);
    let extra = [("enable.auto.commit", "false")];
    let mut all_seen: Vec<(i32, i64, usize)> = Vec::new();

    // First consumer: part of the topic, committing every 100 records.
    let c1 = consumer(&bootstrap, "resume", &extra);
    c1.subscribe(&[topic]).expect("subscribe");
    let (seen, _, committed1) = consume_and_commit(&c1, 1_000, 100);
    assert!(seen.len() >= 1_000, "first consumer read {}", seen.len());
    all_seen.extend(&seen);
    drop(c1);

    // Second consumer of the same group resumes exactly at the commits.
    let c2 = consumer(&bootstrap, "resume", &extra);
    c2.subscribe(&[topic]).expect("subscribe");
    let (seen, first, committed2) = consume_and_commit(&c2, 1_000, 100);
    for (p, o) in &first {
        assert_eq!(
            Some(o),
            committed1.get(p).or(Some(&0)),
            "partition {p}: resumed at {o}, committed {:?}",
            committed1.get(p)
        );
    }
    all_seen.extend(&seen);
    let mut committed = committed1.clone();
    committed.extend(committed2);
    drop(c2);

    // The broker dies without warning; committed offsets are durable.
    broker.kill9();
    broker.restart();
    produce_numbers(&bootstrap, topic, 3_000, 600);

    let probe = consumer(&bootstrap, "resume", &extra);
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(topic, p);
    }
    let stored = probe.committed_offsets(tpl, TIMEOUT).expect("committed offsets after restart");
    for e in stored.elements() {
        let want = committed.get(&e.partition()).copied().map_or(Offset::Invalid, Offset::Offset);
        assert_eq!(e.offset(), want, "partition {} after kill -9", e.partition());
    }
    drop(probe);

    let c3 = consumer(&bootstrap, "resume", &extra);
    c3.subscribe(&[topic]).expect("subscribe");
    let (seen, first, _) = consume_and_commit(&c3, 10_000, 250);
    for (p, o) in &first {
        assert_eq!(Some(o), committed.get(p).or(Some(&0)), "partition {p} after the broker restart");
    }
    all_seen.extend(&seen);

    let values: BTreeSet<usize> = all_seen.iter().map(|r| r.2).collect();
    let missing: Vec<usize> = (0..3_600).filter(|v| !values.contains(v)).collect();
    assert!(
        missing.is_empty(),
        "records never consumed: {} (first {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let positions: BTreeSet<(i32, i64)> = all_seen.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(positions.len(), all_seen.len(), "exact resumption: no record read twice");
}
