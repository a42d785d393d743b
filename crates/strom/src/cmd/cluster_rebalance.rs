//! `strom cluster rebalance --dry-run`: the plan that would move replicas so every topic sits
//! on the live brokers (minus `--exclude`d ones), computed with the cluster's own placement
//! strategies (`strom_cluster::placement::plan_cluster`, rack-aware as the controller is)
//! from Metadata requests. Each move says
//! why (a broker left, was excluded, balance). Without `--dry-run` the plan is executed: every
//! changed partition is sent as a reassignment (AlterPartitionReassignments), which the
//! cluster carries out (add the new replicas, wait until they are in sync, move leadership,
//! drop the old ones), and the command waits until none is left under way.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::bail;
use serde::Serialize;
use strom_cluster::placement::{self, Strategy};

use super::client::{ClientArgs, Output, print_json};

/// Arguments of `strom cluster rebalance`.
#[derive(Debug, clap::Args)]
pub struct RebalanceArgs {
    /// Only print the plan; move nothing.
    #[arg(long)]
    dry_run: bool,
    /// Start the moves and return without waiting for them to finish.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting after this long (the moves go on in the cluster).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    wait_timeout: std::time::Duration,
    /// Brokers to drain: they get no replicas and lose the ones they hold.
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    exclude: Vec<i32>,
    /// How the new layout is chosen: sticky moves the fewest replicas.
    #[arg(long, value_enum, default_value_t = StrategyArg::Sticky)]
    strategy: StrategyArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StrategyArg {
    Sticky,
    RoundRobin,
    Range,
}

#[derive(Debug, Serialize)]
struct TopicPlan {
    topic: String,
    moves: Vec<MoveOut>,
    /// Why no plan exists for this topic (its replication factor exceeds the brokers left).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct MoveOut {
    partition: i32,
    from: Option<i32>,
    to: i32,
    reason: String,
}

/// Runs `strom cluster rebalance`.
pub fn run(c: &ClientArgs, args: RebalanceArgs) -> anyhow::Result<ExitCode> {
    let strategy = match args.strategy {
        StrategyArg::Sticky => Strategy::Sticky,
        StrategyArg::RoundRobin => Strategy::RoundRobin,
        StrategyArg::Range => Strategy::Range,
    };
    let rt = super::client::runtime()?;
    let (brokers, topics) = rt.block_on(super::cluster_reassign::cluster_layout(c))?;
    let excluded: BTreeSet<i32> = args.exclude.iter().copied().collect();
    let mut plans = Vec::new();
    let mut targets = super::cluster_reassign::Targets::new();
    // A topic with no valid plan (more replicas than brokers left) is reported, and the
    // other topics are still planned: the user sees everything that blocks a drain.
    for (name, outcome) in placement::plan_cluster(strategy, &topics, &brokers, &excluded) {
        match outcome {
            Ok(plan) => {
                let current = &topics[&name];
                targets.insert(
                    name.clone(),
                    plan.changed_partitions(current).into_iter().map(|(p, t)| (p, Some(t))).collect(),
                );
                let moves = plan
                    .moves
                    .iter()
                    .map(|m| MoveOut { partition: m.partition, from: m.from, to: m.to, reason: m.reason.to_string() })
                    .collect();
                plans.push((name, plan.moves, moves, None));
            }
            Err(e) => plans.push((name, Vec::new(), Vec::new(), Some(format!("no valid plan: {e}")))),
        }
    }
    let blocked: Vec<String> =
        plans.iter().filter_map(|(topic, _, _, e)| e.as_ref().map(|e| format!("topic {topic}: {e}"))).collect();
    match c.output {
        Output::Json => {
            let out: Vec<TopicPlan> =
                plans.into_iter().map(|(topic, _, moves, error)| TopicPlan { topic, moves, error }).collect();
            print_json(&out)?;
        }
        Output::Table => {
            if plans.is_empty() {
                println!("nothing to move: every replica is on a live, allowed broker and the load is balanced");
            }
            for (topic, moves, _, error) in &plans {
                match error {
                    Some(e) => println!("{topic}: {e}"),
                    None => println!("{topic}:"),
                }
                for m in moves {
                    println!("  {m}");
                }
            }
            if args.dry_run {
                println!("(dry run: nothing moved)");
            }
        }
    }
    if !blocked.is_empty() {
        bail!("no complete plan: {}", blocked.join("; "));
    }
    if args.dry_run || targets.values().all(Vec::is_empty) {
        return Ok(ExitCode::SUCCESS);
    }
    rt.block_on(async {
        let refused = super::cluster_reassign::reassign(c, &targets).await?;
        if !refused.is_empty() {
            bail!("the cluster refused some moves: {}", refused.join("; "));
        }
        let count: usize = targets.values().map(Vec::len).sum();
        eprintln!("reassigning {count} partition(s)");
        if args.no_wait {
            return Ok(());
        }
        super::cluster_reassign::wait_for_reassignments(c, args.wait_timeout, c.output == Output::Json).await?;
        eprintln!("done: every move completed");
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
