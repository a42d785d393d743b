//! [`Strategy::Sticky`](super::Strategy::Sticky) rebalancing: keep what is valid, move the minimum.

use std::collections::BTreeMap;

use super::build::{Budget, Build};
use super::engine::{Ctx, Review, diff};
use super::flow::{Layout, Net};
use super::{Assignment, MoveReason, PlacementError, Plan, recompute, round_robin};

/// See [`rebalance`](super::rebalance) for the contract.
pub(super) fn rebalance(ctx: &Ctx, current: &Assignment) -> Result<Plan, PlacementError> {
    if current.iter().all(Vec::is_empty) {
        return Ok(recompute(ctx, current, round_robin::assign(ctx)?));
    }
    let review = Review::of(ctx, current);
    let kept = keep(ctx, &review.valid);
    let mut reasons: BTreeMap<(usize, usize), MoveReason> = review.invalid.clone();
    let mut build = Build::new(ctx);
    for (&(p, pos, b), &keep) in review.valid.iter().zip(&kept) {
        if keep {
            build.fix(p, pos, b);
        } else {
            reasons.insert((p, pos), review.pressure(ctx, p, b));
        }
    }
    round_robin::fill(&mut build);
    if build.complete().is_err() {
        return Ok(recompute(ctx, current, round_robin::assign(ctx)?));
    }
    // A from-scratch placement exists (this one), so the RoundRobin recomputation succeeds too.
    let limit = round_robin::assign(ctx).map_or(0, |t| diff(current, &t, |_, _, _| MoveReason::Balance).len());
    let mut original = vec![Vec::new(); ctx.partitions];
    for &(p, _, b) in &review.valid {
        original[p].push(b);
    }
    build.polish(Some(&Budget { original: &original, limit }));
    let target = build.finish();
    let moves = diff(current, &target, |p, pos, _| reasons.get(&(p, pos)).copied().unwrap_or(MoveReason::Balance));
    Ok(Plan { target, moves })
}

/// Which valid replicas stay: a maximum set within rule 2 per partition and capacity per broker,
/// found by loading the greedy choice (earlier positions first, so leaders first) and augmenting.
fn keep(ctx: &Ctx, valid: &[(usize, usize, usize)]) -> Vec<bool> {
    let layout = Layout::new(ctx);
    let mut net = Net::new(layout.size(ctx.nodes.len()));
    let mut part_edge = BTreeMap::new();
    let mut group_edge = BTreeMap::new();
    let mut node_edge = BTreeMap::new();
    let mut paths = Vec::with_capacity(valid.len());
    for &(p, _, b) in valid {
        let r = ctx.nodes[b].rack;
        let e_part = *part_edge.entry(p).or_insert_with(|| net.edge(Layout::SOURCE, Layout::part(p), ctx.rf));
        let e_group = *group_edge
            .entry((p, r))
            .or_insert_with(|| net.edge(Layout::part(p), layout.group(p, r), ctx.max_per_rack));
        let e_choice = net.edge(layout.group(p, r), layout.node(b), 1);
        let e_node = *node_edge.entry(b).or_insert_with(|| net.edge(layout.node(b), Layout::SINK, ctx.nodes[b].cap));
        paths.push([e_part, e_group, e_choice, e_node]);
    }
    let mut order: Vec<usize> = (0..valid.len()).collect();
    order.sort_by_key(|&i| (valid[i].1, valid[i].0));
    for i in order {
        if paths[i].iter().all(|&e| net.room(e) > 0) {
            paths[i].iter().for_each(|&e| net.push(e, 1));
        }
    }
    net.maximize(Layout::SOURCE, Layout::SINK);
    paths.iter().map(|path| net.flow(path[2]) > 0).collect()
}
