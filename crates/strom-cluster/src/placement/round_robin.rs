//! [`Strategy::RoundRobin`](super::Strategy::RoundRobin): least-loaded first, round-robin on ties.

use super::Assignment;
use super::PlacementError;
use super::build::Build;
use super::engine::{Ctx, units};

/// Places every partition from scratch: greedy fill, exact completion, balancing, leader election.
///
/// With equal loads and no capacity limits the greedy pass is exactly "deal replicas round the
/// ring": partition `p` of a block of `n` partitions takes ring positions `p*rf .. p*rf + rf` (mod
/// `n`), so replica counts never differ by more than one. Each ring start `s` (a multiple of
/// `g = gcd(n, rf)`) occurs `g` times per block and its `i`-th occurrence is led by ring position
/// `s + i`; those are all distinct, so every block of `n` partitions has `n` distinct leaders.
pub(super) fn assign(ctx: &Ctx) -> Result<Assignment, PlacementError> {
    if ctx.partitions == 0 {
        return Ok(Vec::new());
    }
    ctx.check_capacity()?;
    let mut build = Build::new(ctx);
    fill(&mut build);
    build.complete()?;
    build.polish(None);
    build.elect_leaders();
    Ok(build.finish())
}

/// Fills the holes of every partition in order: candidates sorted by (replicas of this request,
/// load, distance round the ring from the cursor); the cursor moves past the last broker taken.
/// Partitions `k*n .. (k+1)*n` use block `k`'s ring, starting again at its first position.
pub(super) fn fill(build: &mut Build<'_>) {
    let ctx = build.ctx;
    let n = ctx.usable();
    if n == 0 {
        return;
    }
    let units = units(n);
    let mut ring = Vec::new();
    let mut pos = vec![0usize; ctx.nodes.len()];
    let mut cursor = 0;
    for p in 0..ctx.partitions {
        if p % n == 0 {
            ring = ctx.rr_ring(p / n, &units);
            for (i, &b) in ring.iter().enumerate() {
                pos[b] = i;
            }
            cursor = 0;
        }
        if build.holes_in(p) == 0 {
            continue;
        }
        let mut order = ring.clone();
        order.sort_by_key(|&b| (build.count[b], ctx.nodes[b].load, (pos[b] + n - cursor) % n));
        if let Some(last) = build.fill(p, order) {
            cursor = (pos[last] + 1) % n;
        }
    }
}
