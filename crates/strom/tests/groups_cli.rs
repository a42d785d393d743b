//! `strom group list|describe|reset-offsets|delete` against a real broker with a live rdkafka
//! consumer group: what they print (JSON), the refusal to reset a group with members, and the
//! effect of each reset.

mod common;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use serde_json::Value;

use common::TestBroker;
use support::{TIMEOUT, client_config, create_topic, producer, send};

/// Runs `strom group <args>` and returns (success, stdout, stderr).
fn strom(bootstrap: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strom"))
        .arg("group")
        .args(args)
        .args(["--bootstrap-servers", bootstrap, "--timeout", "10s"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("running strom group");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(bootstrap: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let (ok, out, err) = strom(bootstrap, &all);
    assert!(ok, "strom group {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn committed(bootstrap: &str, group: &str) -> Vec<i64> {
    let c: BaseConsumer = client_config(bootstrap).set("group.id", group).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("t", 0);
    tpl.add_partition("t", 1);
    let got = c.committed_offsets(tpl, TIMEOUT).expect("committed");
    got.elements().iter().map(|e| e.offset().to_raw().unwrap_or(-1001)).collect()
}

#[test]
fn list_describe_reset_and_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("strom.toml");
    std::fs::write(&cfg, "[groups]\ninitial_rebalance_delay_ms = 100\n").expect("config");
    let broker = TestBroker::start_with(&["--config", cfg.to_str().expect("utf-8")]);
    let b = broker.bootstrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async {
        create_topic(&b, "t", 2, &[]).await;
        let p = producer(&b, &[("acks", "all")]);
        for i in 0..10u8 {
            send(&p, "t", &[i], b"v").await;
        }
    });
    let start_ts = std::time::SystemTime::now();

    // A live member that has consumed and committed everything.
    let c: BaseConsumer = client_config(&b)
        .set("group.id", "cli")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    c.subscribe(&["t"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while n < 10 {
        assert!(Instant::now() < deadline, "consumed only {n}");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            m.expect("message");
            n += 1;
        }
    }
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
    let total: i64 = committed(&b, "cli").iter().sum();
    assert_eq!(total, 10);

    let list = json(&b, &["list"]);
    let row = list.as_array().expect("array").iter().find(|g| g["group"] == "cli").expect("cli listed").clone();
    assert_eq!((row["state"].as_str(), row["members"].as_u64()), (Some("Stable"), Some(1)), "{row}");

    let d = json(&b, &["describe", "cli"]);
    assert_eq!(d["state"], "Stable");
    assert_eq!(d["members"][0]["assignment"]["t"], serde_json::json!([0, 1]), "{d}");
    let offsets = d["offsets"].as_array().expect("offsets");
    assert_eq!(offsets.len(), 2);
    for o in offsets {
        assert_eq!(o["committed"], o["log_end"], "{o}");
        assert_eq!(o["lag"], 0);
    }
    let (ok, table, _) = strom(&b, &["describe", "cli"]);
    assert!(ok && table.contains("Group cli is Stable with 1 member(s)") && table.contains("LAG"), "{table}");

    // Resetting a group with a live member is refused, clearly.
    let (ok, _, err) = strom(&b, &["reset-offsets", "cli", "--topic", "t", "--to-earliest"]);
    assert!(!ok && err.contains("stop its consumers first"), "{err}");
    let (ok, _, err) = strom(&b, &["delete", "cli"]);
    assert!(!ok && err.contains("active members"), "{err}");

    c.unsubscribe();
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(30);
    while json(&b, &["describe", "cli"])["state"] != "Empty" {
        assert!(Instant::now() < deadline, "group never became empty");
        std::thread::sleep(Duration::from_millis(100));
    }

    let plan = json(&b, &["reset-offsets", "cli", "--topic", "t", "--to-earliest", "--dry-run"]);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(committed(&b, "cli").iter().sum::<i64>(), 10, "a dry run commits nothing");
    json(&b, &["reset-offsets", "cli", "--topic", "t", "--to-earliest"]);
    assert_eq!(committed(&b, "cli"), vec![0, 0]);
    json(&b, &["reset-offsets", "cli", "--topic", "t", "--partitions", "1", "--to-offset", "1000000"]);
    let ends: Vec<i64> =
        d["offsets"].as_array().expect("offsets").iter().map(|o| o["log_end"].as_i64().expect("end")).collect();
    assert_eq!(committed(&b, "cli"), vec![0, ends[1]], "--to-offset is clamped to the log end");
    json(&b, &["reset-offsets", "cli", "--topic", "t", "--to-latest"]);
    assert_eq!(committed(&b, "cli"), ends);
    let ts = humantime::format_rfc3339_millis(start_ts - Duration::from_secs(3600)).to_string();
    json(&b, &["reset-offsets", "cli", "--topic", "t", "--to-datetime", &ts]);
    assert_eq!(committed(&b, "cli"), vec![0, 0], "an hour ago: every record is after that");
    let (ok, _, err) = strom(&b, &["reset-offsets", "cli", "--topic", "nope", "--to-earliest"]);
    assert!(!ok && err.contains("nope"), "{err}");

    assert_eq!(json(&b, &["delete", "cli"])["deleted"], "cli");
    let (ok, _, err) = strom(&b, &["describe", "cli"]);
    assert!(!ok && err.contains("no consumer group"), "{err}");
    let (ok, _, err) = strom(&b, &["delete", "cli"]);
    assert!(!ok && err.contains("no consumer group"), "{err}");
    assert_eq!(committed(&b, "cli"), vec![-1001, -1001], "no committed offsets left (librdkafka reports -1001)");
}
