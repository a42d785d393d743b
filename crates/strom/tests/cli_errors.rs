//! The `strom` client commands without a broker: an unreachable broker gives one
//! readable line within `--timeout` and a non-zero exit, for every client command; shell
//! completions print; every command's `--help` shows an example.

mod cli_util;
mod common;

use std::net::TcpListener;
use std::time::Duration;

use cli_util::Strom;

/// An address on 127.0.0.1 where nothing listens (bound, then released).
fn dead_address() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a probe port");
    let addr = l.local_addr().expect("local addr");
    drop(l);
    addr.to_string()
}

#[test]
fn unreachable_broker_fails_in_one_line_within_the_timeout() {
    let addr = dead_address();
    let strom = Strom::new(&addr);
    let commands: &[&[&str]] = &[
        &["topic", "list"],
        &["topic", "create", "t"],
        &["topic", "describe", "t"],
        &["cluster", "info"],
        &["produce", "t"],
        &["consume", "t"],
        &["consume", "t", "--group", "g"],
        &["bench", "--duration", "1s"],
    ];
    for args in commands {
        let mut all = args.to_vec();
        all.extend(["--timeout", "2s"]);
        let what = all.join(" ");
        let run = strom.run(&all);
        assert!(run.elapsed < Duration::from_secs(6), "`strom {what}` took {:?}", run.elapsed);
        let err = run.failed(&what);
        assert_eq!(err.trim().lines().count(), 1, "`strom {what}` should print one line:\n{err}");
        assert!(err.starts_with(&format!("error: cannot reach a broker at {addr} within 2s")), "`strom {what}`: {err}");
    }
}

#[test]
fn bootstrap_flag_overrides_the_environment() {
    let addr = dead_address();
    // The environment points somewhere else; the flag wins.
    let strom = Strom::new("127.0.0.1:1");
    let err = strom.run(&["topic", "list", "--bootstrap-servers", &addr, "--timeout", "1s"]).failed("topic list");
    assert!(err.contains(&addr), "{err}");
    // Global flags may also come before the nested subcommand.
    let err = strom.run(&["topic", "-b", &addr, "--timeout", "1s", "list"]).failed("topic -b list");
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn completions_for_each_shell() {
    let strom = Strom::new("127.0.0.1:1");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = strom.ok(&["completions", shell]);
        assert!(out.contains("strom") && out.contains("bootstrap-servers"), "{shell}: {out:.200}");
    }
    let err = strom.run(&["completions", "tcsh"]).failed("completions tcsh");
    assert!(err.contains("invalid value"), "{err}");
}

#[test]
fn every_client_command_help_has_an_example() {
    let strom = Strom::new("127.0.0.1:1");
    let commands: &[&[&str]] = &[
        &["topic"],
        &["topic", "create"],
        &["topic", "list"],
        &["topic", "describe"],
        &["topic", "delete"],
        &["topic", "alter-config"],
        &["topic", "add-partitions"],
        &["produce"],
        &["consume"],
        &["cluster"],
        &["cluster", "info"],
        &["bench"],
        &["completions"],
    ];
    for args in commands {
        let mut all = args.to_vec();
        all.push("--help");
        let out = strom.ok(&all);
        assert!(out.contains("Example"), "`strom {}` has no example:\n{out}", all.join(" "));
        assert!(out.contains("--bootstrap-servers") || args[0] == "completions", "{out}");
    }
}
