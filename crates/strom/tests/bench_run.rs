//! `strom bench` against a real `strom serve`: a one-second run prints a well-formed,
//! self-consistent JSON report whose acknowledged count is exactly what the broker holds
//! (checked again independently with `strom topic describe`); roundtrip mode at a fixed
//! rate measures every message end to end; delivery errors make the command fail.

mod cli_util;
mod common;

use cli_util::Strom;
use common::TestBroker;
use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

/// Percentiles are ordered and within [min, max].
fn check_latency(l: &Value, samples: u64) {
    assert_eq!(u(&l["samples"]), samples, "{l}");
    let order = ["min_ms", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "p9999_ms", "max_ms"];
    for w in order.windows(2) {
        assert!(f(&l[w[0]]) <= f(&l[w[1]]), "{} > {}: {l}", w[0], w[1]);
    }
    assert!(f(&l["min_ms"]) > 0.0 && f(&l["mean_ms"]) <= f(&l["max_ms"]), "{l}");
}

/// Sum of the log end offsets `strom topic describe` reports.
fn stored(strom: &Strom, topic: &str) -> u64 {
    let d = strom.json(&["topic", "describe", topic]);
    d["partitions"].as_array().expect("partitions").iter().map(|p| u(&p["log_end_offset"])).sum()
}

#[test]
fn one_second_produce_run_reports_what_the_broker_holds() {
    let broker = TestBroker::start();
    let strom = Strom::new(broker.bootstrap());
    let run = strom
        .run(&[
            "bench",
            "--topic",
            "b",
            "--create-topic",
            "--partitions",
            "3",
            "--duration",
            "1s",
            "--concurrency",
            "8",
            "--message-size",
            "100",
            "--json",
        ])
        .ok("bench");
    let r = run.json();
    assert!(r["tool"].as_str().expect("tool").starts_with("strom-bench"));
    assert!(r["started_at"].as_str().expect("started_at").ends_with('Z'));
    assert!(u(&r["hardware"]["logical_cores"]) >= 1);
    assert_eq!(r["params"]["mode"], "produce");
    assert_eq!(r["params"]["concurrency"], 8);
    assert_eq!(r["params"]["message_size"], 100);
    assert_eq!(r["params"]["limit"]["duration"], 1.0);
    assert_eq!(r["topic_partitions"], 3);

    let p = &r["produce"];
    let measured = u(&p["messages"]);
    assert!(measured > 0, "{r}");
    assert_eq!(u(&p["bytes"]), measured * 100);
    let secs = f(&p["seconds"]);
    assert!((0.5..5.0).contains(&secs), "measured interval {secs} s for a 1 s run");
    assert!((f(&p["msgs_per_sec"]) - measured as f64 / secs).abs() < 1e-6 * f(&p["msgs_per_sec"]).max(1.0));
    check_latency(&r["produce_latency"], measured);
    assert!(r["consume"].is_null() && r["end_to_end_latency"].is_null());

    assert_eq!(u(&r["errors"]), 0, "{r}");
    let acknowledged = u(&r["acknowledged"]);
    assert_eq!(acknowledged, measured + u(&r["warmup_messages"]));
    let v = &r["verification"];
    assert_eq!(v["consistent"], true, "{v}");
    assert_eq!(u(&v["acknowledged"]), acknowledged);
    assert_eq!(u(&v["stored"]), acknowledged);
    let parts = v["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 3);
    let delta: i64 =
        parts.iter().map(|p| p["after"].as_i64().expect("after") - p["before"].as_i64().expect("before")).sum();
    assert_eq!(u64::try_from(delta).expect("non-negative"), acknowledged);

    // The broker, asked separately, holds exactly the acknowledged records.
    assert_eq!(stored(&strom, "b"), acknowledged);

    // A second run on the same topic counts only its own records.
    let again = strom.run(&["bench", "--topic", "b", "--messages", "500", "--json"]).ok("bench again").json();
    assert_eq!(u(&again["produce"]["messages"]), 500);
    assert_eq!(u(&again["verification"]["stored"]), 500);
    assert_eq!(stored(&strom, "b"), acknowledged + 500);

    // Consume mode reads it all back from the beginning.
    let read = strom
        .run(&["bench", "--topic", "b", "--mode", "consume", "--consumers", "2", "--json"])
        .ok("bench consume")
        .json();
    assert_eq!(u(&read["consume"]["messages"]), acknowledged + 500, "{read}");
    // The second run used the default message size, 256 bytes.
    assert_eq!(u(&read["consume"]["bytes"]), acknowledged * 100 + 500 * 256);
    assert!(read["verification"].is_null() && read["produce"].is_null());
}

#[test]
fn roundtrip_at_a_fixed_rate_measures_every_message() {
    let broker = TestBroker::start();
    let strom = Strom::new(broker.bootstrap());
    let r = strom
        .run(&[
            "bench",
            "--topic",
            "rt",
            "--create-topic",
            "--mode",
            "roundtrip",
            "--rate",
            "500",
            "--messages",
            "300",
            "--warmup",
            "200ms",
            "--json",
        ])
        .ok("bench roundtrip")
        .json();
    assert_eq!(u(&r["produce"]["messages"]), 300, "{r}");
    // A fixed rate: 300 messages at 500/s take about 0.6 s.
    let secs = f(&r["produce"]["seconds"]);
    assert!((0.5..3.0).contains(&secs), "300 messages at 500/s took {secs} s");
    check_latency(&r["produce_latency"], 300);
    check_latency(&r["end_to_end_latency"], 300);
    assert_eq!(u(&r["consume"]["messages"]), 300);
    // About 100 warmup messages (200 ms at 500/s), all acknowledged and stored.
    let warmup = u(&r["warmup_messages"]);
    assert!((50..=150).contains(&warmup), "{warmup} warmup messages");
    assert_eq!(u(&r["verification"]["stored"]), 300 + warmup);
    assert_eq!(r["verification"]["consistent"], true);
    assert_eq!(stored(&strom, "rt"), 300 + warmup);
}

#[test]
fn delivery_errors_fail_the_run_and_are_reported() {
    let broker = TestBroker::start();
    let strom = Strom::new(broker.bootstrap());
    strom.ok(&["topic", "create", "tiny", "--config", "max.message.bytes=200"]);
    let run = strom.run(&["bench", "--topic", "tiny", "--messages", "20", "--message-size", "1000", "--json"]);
    let report = run.json();
    let err = run.failed("bench with oversized messages");
    assert_eq!(u(&report["errors"]), 20, "{report}");
    assert_eq!(u(&report["acknowledged"]), 0);
    assert!(!report["error_samples"].as_array().expect("samples").is_empty());
    assert_eq!(report["verification"]["stored"], 0);
    assert!(err.trim().starts_with("error: 20 errors during the run: delivery failed:"), "{err}");

    let missing = strom.run(&["bench", "--topic", "nope", "--duration", "1s"]).failed("bench on a missing topic");
    assert!(missing.contains("topic \"nope\" does not exist (pass --create-topic to create it)"), "{missing}");
}

/// `-X KEY=VALUE` reaches librdkafka: a valid setting runs, an unknown one is refused by
/// the client with its name in the error, and a malformed pair is refused by the CLI. A
/// fractional `--linger-ms` is taken as librdkafka takes it.
#[test]
fn client_config_overrides_reach_librdkafka() {
    let broker = TestBroker::start();
    let strom = Strom::new(broker.bootstrap());
    let report = strom
        .run(&[
            "bench",
            "--topic",
            "x",
            "--create-topic",
            "--messages",
            "50",
            "--linger-ms",
            "0.05",
            "-X",
            "socket.nagle.disable=true",
            "--json",
        ])
        .ok("bench with -X and a fractional linger")
        .json();
    assert_eq!(u(&report["acknowledged"]), 50, "{report}");
    assert_eq!(report["params"]["client_config"][0][0], "socket.nagle.disable", "{report}");
    assert_eq!(report["params"]["linger_ms"], 0.05, "{report}");

    let err = strom
        .run(&["bench", "--topic", "x", "--messages", "5", "-X", "no.such.setting=1"])
        .failed("unknown librdkafka setting");
    assert!(err.contains("no.such.setting"), "{err}");
    let err = strom.run(&["bench", "--topic", "x", "--messages", "5", "-X", "novalue"]).failed("malformed -X");
    assert!(err.contains("is not KEY=VALUE"), "{err}");
    let err = strom.run(&["bench", "--topic", "x", "--messages", "5", "--linger-ms=-1"]).failed("negative linger");
    assert!(err.contains("linger"), "{err}");
}
