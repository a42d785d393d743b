//! [`Strategy::Range`](super::Strategy::Range): contiguous ranges of partitions per leader.

use super::Assignment;
use super::PlacementError;
use super::build::Build;
use super::engine::Ctx;

/// Places every partition: partition `p` starts at the ring broker whose range holds `p` and takes
/// the following brokers round the ring that keep the rules; completion by maximum flow only when
/// capacities leave holes. No balancing step and no leader election: the range owner leads.
pub(super) fn assign(ctx: &Ctx) -> Result<Assignment, PlacementError> {
    if ctx.partitions == 0 {
        return Ok(Vec::new());
    }
    ctx.check_capacity()?;
    let ring = ctx.interleaved(0);
    let n = ring.len();
    let mut build = Build::new(ctx);
    for p in 0..ctx.partitions {
        let start = owner(p, ctx.partitions, n);
        build.fill(p, (0..n).map(|k| ring[(start + k) % n]));
    }
    build.complete()?;
    Ok(build.finish())
}

/// Ring position leading partition `p` when `parts` partitions are cut into `n` contiguous ranges,
/// the first `parts % n` of them one longer (Kafka's range assignor).
pub(super) fn owner(p: usize, parts: usize, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let (q, r) = (parts / n, parts % n);
    let long = r * (q + 1);
    if p < long { p / (q + 1) } else { r + (p - long) / q.max(1) }
}
