//! An assignment under construction, with the shared steps: greedy filling, completion by maximum
//! flow, the balancing step, and leader election.

use std::cmp::Reverse;

use super::engine::Ctx;
use super::{Assignment, PlacementError, flow};

/// The limit on a sticky plan's size during balancing.
pub(super) struct Budget<'o> {
    /// Valid nodes of each partition in the current assignment.
    pub(super) original: &'o [Vec<usize>],
    /// Most moves the plan may have.
    pub(super) limit: usize,
}

impl Budget<'_> {
    /// Change in plan size when partition `p`'s replica moves from `g` to `r`.
    fn cost(&self, p: usize, g: usize, r: usize) -> isize {
        let new = |b: usize| isize::from(!self.original.get(p).is_some_and(|o| o.contains(&b)));
        new(r) - new(g)
    }
}

/// Slots per partition (`None` = hole) over node numbers. A `fixed` slot holds a replica kept from the
/// current assignment: completion never moves it.
pub(super) struct Build<'c> {
    pub(super) ctx: &'c Ctx,
    pub(super) slots: Vec<Vec<Option<usize>>>,
    pub(super) fixed: Vec<Vec<bool>>,
    /// Replicas of this request per node.
    pub(super) count: Vec<usize>,
}

impl<'c> Build<'c> {
    /// All holes.
    pub(super) fn new(ctx: &'c Ctx) -> Self {
        Self {
            ctx,
            slots: vec![vec![None; ctx.rf]; ctx.partitions],
            fixed: vec![vec![false; ctx.rf]; ctx.partitions],
            count: vec![0; ctx.nodes.len()],
        }
    }

    /// Puts kept replica `b` in slot `pos` of partition `p` (ignored when out of range).
    pub(super) fn fix(&mut self, p: usize, pos: usize, b: usize) {
        if let (Some(slot), Some(fixed)) =
            (self.slots.get_mut(p).and_then(|s| s.get_mut(pos)), self.fixed.get_mut(p).and_then(|f| f.get_mut(pos)))
        {
            *slot = Some(b);
            *fixed = true;
            self.count[b] += 1;
        }
    }

    pub(super) fn holes_in(&self, p: usize) -> usize {
        self.slots[p].iter().filter(|s| s.is_none()).count()
    }

    pub(super) fn holes(&self) -> usize {
        (0..self.slots.len()).map(|p| self.holes_in(p)).sum()
    }

    fn holds(&self, p: usize, b: usize) -> bool {
        self.slots[p].contains(&Some(b))
    }

    /// Replicas of partition `p` in rack group `rack`.
    fn rack_load(&self, p: usize, rack: usize) -> usize {
        self.slots[p].iter().flatten().filter(|&&b| self.ctx.nodes[b].rack == rack).count()
    }

    /// Whether `b` may take a replica of `p` without breaking rules 1–3.
    fn can_take(&self, p: usize, b: usize) -> bool {
        let node = &self.ctx.nodes[b];
        self.count[b] < node.cap && !self.holds(p, b) && self.rack_load(p, node.rack) < self.ctx.max_per_rack
    }

    /// Fills the holes of `p` (first hole first) with the first brokers of `order` that keep the
    /// rules; returns the last broker placed.
    pub(super) fn fill(&mut self, p: usize, order: impl IntoIterator<Item = usize>) -> Option<usize> {
        let mut last = None;
        for b in order {
            if self.holes_in(p) == 0 {
                break;
            }
            if self.can_take(p, b)
                && let Some(slot) = self.slots[p].iter_mut().find(|s| s.is_none())
            {
                *slot = Some(b);
                self.count[b] += 1;
                last = Some(b);
            }
        }
        last
    }

    /// Fills the remaining holes by maximum flow, moving only unfixed replicas, or fails with
    /// `OverCapacity` counting what could be placed.
    pub(super) fn complete(&mut self) -> Result<(), PlacementError> {
        let open = self.fixed.iter().flatten().filter(|f| !**f).count();
        let left = flow::repair(self);
        if left == 0 {
            return Ok(());
        }
        let needed = super::engine::as_u64(open);
        Err(PlacementError::OverCapacity { needed, free: needed.saturating_sub(super::engine::as_u64(left)) })
    }

    /// The balancing step (see `rebalance`'s docs). With a `budget`, the plan's size (brokers new to
    /// a partition compared with `budget.original`) never exceeds `budget.limit`; each move costs -1,
    /// 0 or 1 against it and cheaper moves go first. Each move takes a replica from a broker with at
    /// least two more than the receiver, so the sum of squared counts falls and the loop ends.
    pub(super) fn polish(&mut self, budget: Option<&Budget<'_>>) {
        let mut spent = budget.map_or(0, |b| self.size_against(b.original));
        while let Some((p, pos, to, cost)) = self.balance_move(budget, spent) {
            spent = spent.saturating_add_signed(cost);
            if let Some(from) = self.slots[p][pos] {
                self.count[from] = self.count[from].saturating_sub(1);
            }
            self.slots[p][pos] = Some(to);
            self.fixed[p][pos] = false;
            self.count[to] += 1;
        }
    }

    /// Brokers in the slots that are not in the partition's `original` set.
    fn size_against(&self, original: &[Vec<usize>]) -> usize {
        let new_in = |p: usize, s: &Option<usize>| s.is_some_and(|b| !original.get(p).is_some_and(|o| o.contains(&b)));
        self.slots.iter().enumerate().map(|(p, slots)| slots.iter().filter(|s| new_in(p, s)).count()).sum()
    }

    /// The next balancing move as (partition, position, receiver, cost): givers from the most
    /// replicas down, receivers (usable, with room) from the fewest up.
    fn balance_move(&self, budget: Option<&Budget<'_>>, spent: usize) -> Option<(usize, usize, usize, isize)> {
        let nodes = &self.ctx.nodes;
        let usable: Vec<usize> = (0..nodes.len()).filter(|&b| nodes[b].cap > 0).collect();
        let mut givers = usable.clone();
        givers.sort_by_key(|&b| (Reverse(self.count[b]), Reverse(nodes[b].load), nodes[b].id));
        let mut takers: Vec<usize> = usable.into_iter().filter(|&b| self.count[b] < nodes[b].cap).collect();
        takers.sort_by_key(|&b| (self.count[b], nodes[b].load, nodes[b].id));
        for &g in &givers {
            for &r in &takers {
                if self.count[g] < self.count[r] + 2 {
                    break;
                }
                if let Some((p, pos, cost)) = self.movable_slot(g, r, budget, spent) {
                    return Some((p, pos, r, cost));
                }
            }
        }
        None
    }

    /// Where a replica of `g` may move to `r` within the rules and the budget: cheapest first, then
    /// follower before leader, then lowest partition.
    fn movable_slot(
        &self,
        g: usize,
        r: usize,
        budget: Option<&Budget<'_>>,
        spent: usize,
    ) -> Option<(usize, usize, isize)> {
        let nodes = &self.ctx.nodes;
        let mut best: Option<((isize, bool), usize, usize)> = None;
        for (p, slots) in self.slots.iter().enumerate() {
            let Some(pos) = slots.iter().position(|&s| s == Some(g)) else { continue };
            let rack_full = nodes[r].rack != nodes[g].rack && self.rack_load(p, nodes[r].rack) >= self.ctx.max_per_rack;
            if self.holds(p, r) || rack_full {
                continue;
            }
            let cost = budget.map_or(0, |b| b.cost(p, g, r));
            if budget.is_some_and(|b| spent.saturating_add_signed(cost) > b.limit) {
                continue;
            }
            let key = (cost, pos == 0);
            if best.is_none_or(|(k, ..)| key < k) {
                best = Some((key, p, pos));
            }
        }
        best.map(|((cost, _), p, pos)| (p, pos, cost))
    }

    /// Moves one replica of each partition to the front as preferred leader: the one that leads the
    /// fewest partitions so far, the earliest on ties. Only the order changes.
    pub(super) fn elect_leaders(&mut self) {
        let mut led = vec![0usize; self.ctx.nodes.len()];
        for (slots, fixed) in self.slots.iter_mut().zip(&mut self.fixed) {
            let best = slots.iter().enumerate().filter_map(|(i, s)| s.map(|b| (led[b], i))).min();
            if let Some((_, i)) = best {
                slots[..=i].rotate_right(1);
                fixed[..=i].rotate_right(1);
                if let Some(b) = slots[0] {
                    led[b] += 1;
                }
            }
        }
    }

    /// The assignment in broker ids (holes, if any, are left out).
    pub(super) fn finish(&self) -> Assignment {
        self.slots.iter().map(|s| s.iter().flatten().map(|&b| self.ctx.nodes[b].id).collect()).collect()
    }
}
