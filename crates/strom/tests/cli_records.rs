//! `strom produce` and `strom consume` against a real `strom serve`: 10,000 keyed lines
//! with headers from a file come back exactly with `--from-beginning --count`; the end of
//! the log stops a consumer without `--follow`; `--from-timestamp`, `--offset`,
//! `--partition` and `--format` start and print where they should; a record the broker
//! rejects is reported with its line number and fails the command.

mod cli_util;
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cli_util::Strom;
use common::TestBroker;

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis()).expect("ms")
}

#[test]
fn ten_thousand_lines_with_keys_and_headers_come_back_exactly() {
    let broker = TestBroker::start();
    let strom = Strom::new(broker.bootstrap());
    strom.ok(&["topic", "create", "lines", "--partitions", "4"]);

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lines.txt");
    let mut text = String::new();
    let mut expected = BTreeMap::new();
    for i in 0..10_000 {
        let (k, v) = (format!("key-{i}"), format!("value {i} with a = and a : inside"));
        text.push_str(&format!("{k}|{v}\n"));
        expected.insert(k, v);
    }
    std::fs::write(&file, &text).expect("writing the input");

    let produced = strom.json(&[
        "produce",
        "lines",
        "--file",
        file.to_str().expect("path"),
        "--key-separator",
        "|",
        "--header",
        "source=test",
        "--header",
        "run=1",
    ]);
    assert_eq!(produced["records"], 10_000, "{produced}");
    assert_eq!(produced["delivered"], 10_000, "{produced}");
    assert_eq!(produced["failed"], 0, "{produced}");

    let run =
        strom.run(&["consume", "lines", "--from-beginning", "--count", "10000", "--output", "json"]).ok("consume");
    let records = run.json_lines();
    assert_eq!(records.len(), 10_000);
    let mut got = BTreeMap::new();
    for r in &records {
        assert_eq!(r["topic"], "lines");
        assert_eq!(r["headers"], serde_json::json!([{"key": "source", "value": "test"}, {"key": "run", "value": "1"}]));
        assert!(r["timestamp"].as_i64().is_some(), "{r}");
        let key = r["key"].as_str().expect("key").to_owned();
        let old = got.insert(key, r["value"].as_str().expect("value").to_owned());
        assert!(old.is_none(), "duplicate record {r}");
    }
    assert_eq!(got, expected);
    // Keyed records spread over all partitions, each in offset order.
    for p in 0..4 {
        let offsets: Vec<i64> =
            records.iter().filter(|r| r["partition"] == p).map(|r| r["offset"].as_i64().expect("offset")).collect();
        assert!(!offsets.is_empty(), "partition {p} got no records");
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "partition {p} out of order");
    }

    // --count stops early; without --follow the end of the log stops the consumer.
    let first = strom.ok(&["consume", "lines", "--from-beginning", "--count", "7"]);
    assert_eq!(first.lines().count(), 7);
    let all = strom.ok(&["consume", "lines", "--from-beginning"]);
    assert_eq!(all.lines().count(), 10_000);
    // The default start is the end: nothing new, nothing printed.
    let none = strom.run(&["consume", "lines"]).ok("consume lines");
    assert_eq!(none.stdout, "");
}

#[test]
fn start_positions_and_templates() {
    let broker = TestBroker::start();
    let strom = Strom::new(broker.bootstrap());
    strom.ok(&["topic", "create", "events", "--partitions", "2"]);

    let before = (1..=5).map(|i| format!("k{i}:early-{i}\n")).collect::<String>();
    strom
        .run_with_input(&["produce", "events", "--partition", "1", "-K", ":"], Some(before.as_bytes()))
        .ok("produce early");
    // The client stamps records when it sends them: wait until the clock has moved past
    // every early timestamp, so the boundary is unambiguous.
    let boundary = now_ms() + 2;
    while now_ms() <= boundary {
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = (6..=8).map(|i| format!("k{i}:late-{i}\n")).collect::<String>();
    strom
        .run_with_input(&["produce", "events", "--partition", "1", "-K", ":"], Some(after.as_bytes()))
        .ok("produce late");

    let from_ts =
        strom.ok(&["consume", "events", "--from-timestamp", &boundary.to_string(), "--format", "%p:%o %k=%v"]);
    assert_eq!(from_ts, "1:5 k6=late-6\n1:6 k7=late-7\n1:7 k8=late-8\n");

    let rfc3339 =
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(u64::try_from(boundary).expect("ms")))
            .to_string();
    let from_rfc = strom.ok(&["consume", "events", "--from-timestamp", &rfc3339, "--format", "%o"]);
    assert_eq!(from_rfc, "5\n6\n7\n", "from {rfc3339}");

    // A time after every record: nothing to print, and the command still ends.
    let future = strom.ok(&["consume", "events", "--from-timestamp", &(now_ms() + 3_600_000).to_string()]);
    assert_eq!(future, "");

    let at = strom.ok(&["consume", "events", "--partition", "1", "--offset", "3", "--count", "2", "--format", "%o:%v"]);
    assert_eq!(at, "3:early-4\n4:early-5\n");
    let tail = strom.ok(&["consume", "events", "--partition", "1", "--offset", "-2", "--format", "%o"]);
    assert_eq!(tail, "6\n7\n");
    let empty = strom.ok(&["consume", "events", "--partition", "0", "--from-beginning"]);
    assert_eq!(empty, "");

    let templ =
        strom.ok(&["consume", "events", "--from-beginning", "--count", "1", "--format", "%t|%p|%o|%k|%v|%K|%S|%h\\n"]);
    assert_eq!(templ, "events|1|0|k1|early-1|2|7|\n");
}

#[test]
fn records_the_broker_rejects_are_reported_and_fail_the_command() {
    let broker = TestBroker::start();
    let strom = Strom::new(broker.bootstrap());
    strom.ok(&["topic", "create", "small", "--config", "max.message.bytes=200"]);
    strom.run_with_input(&["produce", "small"], Some(b"fits\n")).ok("produce a small record");

    // The broker checks max.message.bytes per batch, and librdkafka fails a rejected
    // batch as a whole, so every record here is too large on its own.
    let big = "x".repeat(1000);
    let input = format!("{big}\n{big}\n{big}\n");
    let run = strom.run_with_input(&["produce", "small"], Some(input.as_bytes()));
    assert!(run.stdout.is_empty(), "nothing on stdout: {}", run.stdout);
    let err = run.failed("produce small");
    for line in 1..=3 {
        assert!(err.contains(&format!("record at line {line} failed: ")), "line {line} not reported:\n{err}");
    }
    assert!(err.trim_end().ends_with("error: 3 of 3 records failed"), "{err}");
    assert_eq!(strom.ok(&["consume", "small", "--from-beginning"]), "fits\n");
}
