//! `strom-bench`: the load generator behind `strom bench`. It speaks plain Kafka through
//! librdkafka (the `rdkafka` crate), so it measures Strom and any other Kafka-compatible
//! broker the same way, with the client users run.
//!
//! Module map:
//! - [`config`]: [`BenchConfig`], every parameter of a run with its default.
//! - `runner`: [`Runner`], one run from setup to verified report, and [`Live`] counters.
//! - `produce`: producers whose delivery callback sends the next message (closed loop), and
//!   the fixed-rate pacer.
//! - `consume`: assigned consumers for consume and roundtrip modes.
//! - `topic`: topic creation, leader wait, high watermarks.
//! - [`payload`]: random, incompressible payloads; roundtrip send stamps.
//! - [`report`]: [`Report`] with hardware, parameters, throughput, HdrHistogram
//!   percentiles and the stored-versus-acknowledged check.
//! - `client`: shared librdkafka settings; [`LogContext`] keeps client logs at debug.
//!
//! ```no_run
//! use strom_bench::{BenchConfig, Limit, Runner};
//! let mut cfg = BenchConfig::new("127.0.0.1:9092");
//! cfg.create_topic = true;
//! cfg.limit = Limit::Messages(10_000);
//! let report = Runner::new(cfg)?.run()?;
//! println!("{}", report.to_json());
//! # Ok::<(), strom_bench::Error>(())
//! ```

mod client;
pub mod config;
mod consume;
mod error;
pub mod payload;
mod produce;
pub mod report;
mod runner;
mod topic;

pub use client::LogContext;
pub use config::{BenchConfig, Limit, Mode};
pub use error::Error;
pub use report::{Hardware, LatencySummary, Report, Throughput, Verification};
pub use runner::{Live, Runner};
