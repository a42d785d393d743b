//! The README's quick start, run as written against a real `strom serve`.
//!
//! The commands come from README.md, between the `<!-- quickstart -->` and
//! `<!-- /quickstart -->` markers: every line that runs `strom` (other than
//! `strom serve`, which the test harness starts on an ephemeral port) is run through
//! `sh -c` with the `strom` binary on `PATH` and `STROM_BOOTSTRAP_SERVERS` pointing at the
//! test broker. Until the README has the markers, the quick start below is used.

mod cli_util;
mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use cli_util::{DEADLINE, reader, wait_with_deadline};
use common::TestBroker;

/// The quick start the README shows (kept in step with it by this test).
const QUICKSTART: &str = "\
strom topic create greetings --partitions 3
printf 'hello\\nworld\\n' | strom produce greetings
strom consume greetings --from-beginning
";

/// The shell lines of the README's quick start, if it has the markers.
fn readme_quickstart() -> Option<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).ok()?;
    let start = readme.find("<!-- quickstart -->")?;
    let end = readme[start..].find("<!-- /quickstart -->")? + start;
    Some(readme[start..end].to_owned())
}

/// Lines that run a client command: skip prose, fences, comments, and the broker itself.
fn client_commands(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split(" #").next().unwrap_or(l).trim())
        .filter(|l| !l.starts_with('#') && !l.starts_with("```") && !l.starts_with("<!--"))
        .filter(|l| l.split_whitespace().any(|w| w == "strom") && !l.contains(" serve"))
        .map(str::to_owned)
        .collect()
}

fn sh(line: &str, bootstrap: &str) -> (String, String) {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_strom")).parent().expect("bin dir").to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let started = Instant::now();
    let mut child = Command::new("sh")
        .args(["-c", line])
        .env("PATH", path)
        .env("STROM_BOOTSTRAP_SERVERS", bootstrap)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning sh");
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let status = wait_with_deadline(&mut child, DEADLINE, line);
    let (out, err) = (out.join().expect("stdout"), err.join().expect("stderr"));
    assert!(
        status.success(),
        "quick start line failed after {:?}: {line}\nstdout:\n{out}\nstderr:\n{err}",
        started.elapsed()
    );
    (out, err)
}

#[test]
fn the_readme_quick_start_works_as_written() {
    let broker = TestBroker::start();
    let from_readme = readme_quickstart();
    let commands = client_commands(from_readme.as_deref().unwrap_or(QUICKSTART));
    assert!(commands.iter().any(|c| c.contains("strom consume")), "no consume in the quick start: {commands:?}");
    let mut last_consume = String::new();
    for line in &commands {
        let (out, _) = sh(line, &broker.bootstrap());
        if line.contains("strom consume") {
            last_consume = out;
        }
    }
    if from_readme.is_none() {
        let mut lines: Vec<&str> = last_consume.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, ["hello", "world"]);
    } else {
        assert!(!last_consume.is_empty(), "the quick start's consume printed nothing");
    }
}

#[test]
fn quick_start_lines_are_recognised() {
    let text = "```sh\n# start\nstrom serve   # terminal 1\nstrom topic create t\nprintf 'a\\n' | strom produce t\necho done\n```\n";
    assert_eq!(client_commands(text), ["strom topic create t", "printf 'a\\n' | strom produce t"]);
}
