//! `strom topic` and `strom cluster info` against a real `strom serve`: create, list,
//! describe, alter, grow and delete a topic, checking the JSON output each time, and the
//! one-line errors for an unknown topic, a bad config key and an invalid partition count.

mod cli_util;
mod common;

use cli_util::Strom;
use common::TestBroker;
use serde_json::json;

fn topic_names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .expect("topic list is an array")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_owned())
        .collect()
}

#[test]
fn topic_lifecycle_with_json_output() {
    let broker = TestBroker::start();
    let strom = Strom::new(broker.bootstrap());

    let created = strom.json(&["topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=86400000"]);
    assert_eq!(
        created,
        json!({"topic": "orders", "partitions": 3, "replication_factor": 1, "configs": {"retention.ms": "86400000"}})
    );
    strom.json(&["topic", "create", "audit"]);

    let list = strom.json(&["topic", "list"]);
    assert_eq!(topic_names(&list), ["audit", "orders"], "sorted by name: {list}");
    let orders = &list[1];
    assert_eq!(orders["partitions"], 3);
    assert_eq!(orders["replication_factor"], 1);

    let described = strom.json(&["topic", "describe", "orders"]);
    assert_eq!(described["name"], "orders");
    let parts = described["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 3);
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["partition"], i);
        assert!(p["leader"].as_i64().expect("leader") >= 0, "{p}");
        assert_eq!(p["replicas"].as_array().expect("replicas").len(), 1);
        assert_eq!(p["isr"], p["replicas"]);
        assert_eq!(p["log_start_offset"], 0);
        assert_eq!(p["log_end_offset"], 0);
    }
    assert_eq!(described["configs"], json!({"retention.ms": "86400000"}));

    // Records move the log end offset that describe reports.
    strom.run_with_input(&["produce", "orders", "--partition", "1"], Some(b"a\nb\n")).ok("produce orders");
    let described = strom.json(&["topic", "describe", "orders"]);
    assert_eq!(described["partitions"][1]["log_end_offset"], 2, "{described}");
    assert_eq!(described["partitions"][0]["log_end_offset"], 0, "{described}");

    let altered = strom.json(&[
        "topic",
        "alter-config",
        "orders",
        "--set",
        "retention.ms=3600000",
        "--set",
        "segment.bytes=1048576",
    ]);
    assert_eq!(altered, json!({"topic": "orders", "configs": {"retention.ms": "3600000", "segment.bytes": "1048576"}}));
    let altered = strom.json(&["topic", "alter-config", "orders", "--delete", "retention.ms"]);
    assert_eq!(altered, json!({"topic": "orders", "configs": {"segment.bytes": "1048576"}}));
    let described = strom.json(&["topic", "describe", "orders"]);
    assert_eq!(described["configs"], json!({"segment.bytes": "1048576"}));

    let grown = strom.json(&["topic", "add-partitions", "orders", "--total", "5"]);
    assert_eq!(grown, json!({"topic": "orders", "partitions": 5, "previous_partitions": 3}));
    let described = strom.json(&["topic", "describe", "orders"]);
    assert_eq!(described["partitions"].as_array().expect("partitions").len(), 5);

    let info = strom.json(&["cluster", "info"]);
    assert_eq!(info["topics"], 2, "{info}");
    assert_eq!(info["partitions"], 6, "{info}");
    assert_eq!(info["brokers"].as_array().expect("brokers").len(), 1);
    assert_eq!(info["brokers"][0]["port"].as_i64(), broker.bootstrap().rsplit(':').next().and_then(|p| p.parse().ok()));
    assert_eq!(info["controller"], info["brokers"][0]["id"]);

    let deleted = strom.json(&["topic", "delete", "orders"]);
    assert_eq!(deleted, json!({"topic": "orders", "deleted": true}));
    assert_eq!(topic_names(&strom.json(&["topic", "list"])), ["audit"]);
    let err = strom.run(&["topic", "describe", "orders"]).failed("topic describe orders");
    assert_eq!(err.trim(), "error: topic \"orders\" does not exist");
}

#[test]
fn tables_are_for_people() {
    let broker = TestBroker::start();
    let strom = Strom::new(broker.bootstrap());
    let out = strom.ok(&["topic", "create", "t1", "--partitions", "2"]);
    assert_eq!(out.trim(), "created topic t1 (2 partitions, replication factor 1)");
    let out = strom.ok(&["topic", "list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("NAME"), "{out}");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["t1", "2", "1"]);
    let out = strom.ok(&["topic", "describe", "t1"]);
    assert!(out.contains("PARTITION") && out.contains("LOG-END"), "{out}");
    let out = strom.ok(&["cluster", "info"]);
    assert!(out.contains("controller:") && out.contains("topics:     1 (2 partitions)"), "{out}");
}

#[test]
fn bad_requests_fail_in_one_line() {
    let broker = TestBroker::start();
    let strom = Strom::new(broker.bootstrap());
    strom.ok(&["topic", "create", "t"]);

    let cases: &[(&[&str], &str)] = &[
        (&["topic", "describe", "missing"], "topic \"missing\" does not exist"),
        (&["topic", "delete", "missing"], "topic \"missing\" does not exist"),
        (&["topic", "create", "t"], "already exists"),
        (&["topic", "create", "bad", "--partitions", "0"], "invalid partition count 0"),
        (&["topic", "create", "bad", "--partitions", "-2"], "invalid partition count -2"),
        (&["topic", "create", "bad", "--config", "no.such.key=1"], "no.such.key=1"),
        (&["topic", "alter-config", "t", "--set", "no.such.key=1"], "no.such.key"),
        (&["topic", "alter-config", "t"], "nothing to change"),
        (&["topic", "add-partitions", "t", "--total", "1"], "invalid partition count 1"),
        (&["produce", "missing"], "topic \"missing\" does not exist"),
        (&["consume", "missing"], "topic \"missing\" does not exist"),
        (&["consume", "t", "--partition", "7"], "partition 7 does not exist"),
    ];
    for (args, expected) in cases {
        let what = args.join(" ");
        let err = strom.run(args).failed(&what);
        assert_eq!(err.trim().lines().count(), 1, "`strom {what}` should print one line, got:\n{err}");
        assert!(err.starts_with("error: ") && err.contains(expected), "`strom {what}`: {err}");
    }
    // Nothing was created by the failed attempts.
    assert_eq!(topic_names(&strom.json(&["topic", "list"])), ["t"]);
}

#[test]
fn the_topic_create_help_example_works() {
    let broker = TestBroker::start();
    let strom = Strom::new(broker.bootstrap());
    let help = strom.ok(&["topic", "create", "--help"]);
    let example = help
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("strom topic create"))
        .unwrap_or_else(|| panic!("no example in:\n{help}"));
    let args: Vec<&str> = example.split_whitespace().skip(1).collect();
    let created = strom.json(&args);
    assert_eq!(created["topic"], "orders", "{created}");
    let described = strom.json(&["topic", "describe", "orders"]);
    for pair in args.iter().skip_while(|a| **a != "--config").filter(|a| a.contains('=')) {
        let (k, v) = pair.split_once('=').expect("key=value");
        assert_eq!(described["configs"][k], v, "{k} set by the example: {described}");
    }
}
