//! One module per `strom` subcommand.

pub mod bench;
pub mod client;
pub mod cluster;
pub mod cluster_reassign;
pub mod cluster_rebalance;
pub mod cluster_up;
pub mod completions;
pub mod consume;
pub mod group;
pub mod log_bench;
pub mod produce;
pub mod serve;
pub mod sink;
pub mod topic;
