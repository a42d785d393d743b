//! One module per `strom` subcommand.

pub mod log_bench;
