//! `strom consume --group` against a real `strom serve`: a consumer in a group commits
//! what it printed, so the next one resumes right after it; Ctrl-C stops `--follow`
//! cleanly and commits what was printed, with nothing skipped and nothing repeated.

mod cli_util;
mod common;

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant};

use cli_util::{DEADLINE, Strom, group_broker, reader, wait_with_deadline};

fn numbers(out: &str) -> Vec<u32> {
    out.lines().map(|l| l.parse().unwrap_or_else(|_| panic!("not a number: {l:?}"))).collect()
}

fn produce_numbers(strom: &Strom, topic: &str, range: std::ops::RangeInclusive<u32>) {
    let input: String = range.map(|i| format!("{i}\n")).collect();
    strom.run_with_input(&["produce", topic], Some(input.as_bytes())).ok("produce");
}

#[test]
fn a_group_resumes_after_its_last_commit() {
    let (broker, _config) = group_broker();
    let strom = Strom::new(broker.bootstrap());
    strom.ok(&["topic", "create", "jobs"]);
    produce_numbers(&strom, "jobs", 1..=100);

    let first = strom.ok(&["consume", "jobs", "--group", "workers", "--from-beginning", "--count", "30"]);
    assert_eq!(numbers(&first), (1..=30).collect::<Vec<_>>());
    // No --from-beginning: the committed offset decides where the group goes on.
    let second = strom.ok(&["consume", "jobs", "--group", "workers", "--count", "30"]);
    assert_eq!(numbers(&second), (31..=60).collect::<Vec<_>>());
    // Without --count or --follow: the rest, then stop at the end of the log.
    let rest = strom.ok(&["consume", "jobs", "--group", "workers"]);
    assert_eq!(numbers(&rest), (61..=100).collect::<Vec<_>>());
    let nothing = strom.ok(&["consume", "jobs", "--group", "workers"]);
    assert_eq!(nothing, "");

    // Another group starts on its own.
    let other = strom.ok(&["consume", "jobs", "--group", "auditors", "--from-beginning", "--count", "3"]);
    assert_eq!(numbers(&other), [1, 2, 3]);
}

#[test]
fn ctrl_c_stops_follow_and_commits_what_was_printed() {
    let (broker, _config) = group_broker();
    let strom = Strom::new(broker.bootstrap());
    strom.ok(&["topic", "create", "feed"]);
    produce_numbers(&strom, "feed", 1..=50);

    let mut child = strom
        .command(&["consume", "feed", "--group", "tail", "--from-beginning", "--follow"])
        .spawn()
        .expect("spawning strom consume");
    let err = reader(child.stderr.take());
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut printed = Vec::new();
    let mut line = String::new();
    let until = Instant::now() + DEADLINE;
    // Read until the first 50 arrive, produce more while it follows, read those too.
    while printed.len() < 50 {
        line.clear();
        assert!(out.read_line(&mut line).expect("reading stdout") > 0, "consumer exited early");
        printed.push(line.trim().parse::<u32>().expect("number"));
    }
    produce_numbers(&strom, "feed", 51..=60);
    while printed.len() < 60 {
        assert!(Instant::now() < until, "follow did not deliver new records");
        line.clear();
        assert!(out.read_line(&mut line).expect("reading stdout") > 0, "consumer exited early");
        printed.push(line.trim().parse::<u32>().expect("number"));
    }
    assert_eq!(printed, (1..=60).collect::<Vec<_>>());

    let sigint = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill -INT");
    assert!(sigint.success());
    let status = wait_with_deadline(&mut child, Duration::from_secs(30), "consume --follow");
    let mut tail = String::new();
    std::io::Read::read_to_string(&mut out, &mut tail).expect("rest of stdout");
    let stderr = err.join().expect("stderr");
    assert!(status.success(), "Ctrl-C should end consume cleanly ({status}): {stderr}");
    assert_eq!(tail, "", "nothing more was printed after the last record");

    // The commit covered everything printed: the group goes on at 61.
    produce_numbers(&strom, "feed", 61..=65);
    let next = strom.ok(&["consume", "feed", "--group", "tail"]);
    assert_eq!(numbers(&next), (61..=65).collect::<Vec<_>>());
}
