//! The `strom` binary: one command line for the broker, its tools and its benchmarks.
//!
//! Each subcommand lives in its own module under `cmd/`; this file only parses arguments,
//! sets up logging and dispatches.

mod cmd;

use clap::{Parser, Subcommand};

/// Strom: a durable, Kafka-compatible event-streaming broker.
#[derive(Debug, Parser)]
#[command(name = "strom", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmark the log engine alone (no network): concurrent appenders with group commit,
    /// compared with raw write+fdatasync of the same bytes in the same directory.
    LogBench(cmd::log_bench::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::LogBench(args) => cmd::log_bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr so stdout carries only data; `RUST_LOG` overrides the `info` default.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
