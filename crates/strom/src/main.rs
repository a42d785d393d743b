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
    /// Run a single-node Kafka-compatible broker (default: 127.0.0.1:9092, data in
    /// ./strom-data).
    Serve(cmd::serve::Args),
    /// Benchmark the log engine alone (no network): concurrent appenders with group commit,
    /// compared with raw write+fdatasync of the same bytes in the same directory.
    LogBench(cmd::log_bench::Args),
    /// Create, list, describe, alter and delete topics.
    Topic(cmd::topic::Args),
    /// Write records to a topic, one per line from stdin or a file.
    Produce(cmd::produce::Args),
    /// Print a topic's records.
    Consume(cmd::consume::Args),
    /// List, describe, reset the offsets of and delete consumer groups.
    Group(cmd::group::Args),
    /// Show the brokers, the controller and what the cluster holds.
    Cluster(cmd::cluster::Args),
    /// Write topics into PostgreSQL or SQLite tables, batched, exactly once (a consumer group
    /// member of any Kafka-compatible broker).
    Sink(cmd::sink::Args),
    /// Benchmark a Kafka-compatible broker (Strom or any other) over the network.
    Bench(cmd::bench::Args),
    /// Print shell completions.
    Completions(cmd::completions::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::LogBench(args) => cmd::log_bench::run(args),
        Command::Topic(args) => cmd::topic::run(args),
        Command::Produce(args) => cmd::produce::run(args),
        Command::Consume(args) => cmd::consume::run(args),
        Command::Group(args) => cmd::group::run(args),
        Command::Cluster(args) => cmd::cluster::run(args),
        Command::Sink(args) => cmd::sink::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Completions(args) => cmd::completions::run(args, <Cli as clap::CommandFactory>::command()),
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
