//! The request as the algorithms see it: eligible brokers, capacities, racks, and the review of a
//! current assignment.

use std::collections::{BTreeMap, BTreeSet};

use super::{Assignment, BrokerSlot, Move, MoveReason, PlacementError, PlacementRequest};

/// One eligible broker.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) id: i32,
    /// Rack group index; always 0 when rack awareness is off.
    pub(super) rack: usize,
    /// Replicas of this request the broker may hold (free capacity, at most the partition count).
    pub(super) cap: usize,
    pub(super) load: u32,
}

/// What a broker id in a current assignment refers to.
pub(super) enum Standing {
    Gone,
    Excluded,
    Node(usize),
}

/// The validated request.
#[derive(Debug)]
pub(super) struct Ctx {
    /// Eligible brokers sorted by id; indices into this are "node" numbers everywhere.
    pub(super) nodes: Vec<Node>,
    /// Usable nodes per rack group, ids ascending (one group when rack awareness is off).
    pub(super) groups: Vec<Vec<usize>>,
    pub(super) rack_aware: bool,
    /// Rule 2's `m`: most replicas of one partition in one rack group.
    pub(super) max_per_rack: usize,
    pub(super) rf: usize,
    pub(super) partitions: usize,
    seed: u64,
    requested_partitions: i32,
    requested_rf: i16,
    index: BTreeMap<i32, usize>,
    known: BTreeSet<i32>,
    excluded: BTreeSet<i32>,
}

impl Ctx {
    /// Validates `req` in the documented order and derives everything rule 1–3 need.
    pub(super) fn new(req: &PlacementRequest<'_>) -> Result<Self, PlacementError> {
        let partitions =
            usize::try_from(req.partitions).map_err(|_| PlacementError::InvalidPartitionCount(req.partitions))?;
        let rf = usize::try_from(req.replication_factor)
            .ok()
            .filter(|&rf| rf > 0)
            .ok_or(PlacementError::InvalidReplicationFactor(req.replication_factor))?;
        let mut eligible: BTreeMap<i32, &BrokerSlot> = BTreeMap::new();
        let mut known = BTreeSet::new();
        for broker in req.brokers {
            if known.insert(broker.id) && !req.excluded.contains(&broker.id) {
                eligible.insert(broker.id, broker);
            }
        }
        if eligible.is_empty() {
            return Err(PlacementError::NoBrokers);
        }
        if rf > eligible.len() {
            return Err(PlacementError::ReplicationFactorTooLarge {
                requested: req.replication_factor,
                available: eligible.len(),
            });
        }
        let load_of = |b: &BrokerSlot| req.load.get(&b.id).copied().unwrap_or(0);
        let cap_of = |b: &BrokerSlot| match b.capacity {
            None => partitions,
            Some(c) => usize::try_from(c.saturating_sub(load_of(b))).unwrap_or(usize::MAX).min(partitions),
        };
        let mut usable = eligible.values().filter(|b| cap_of(b) > 0).peekable();
        let rack_aware = usable.peek().is_some() && usable.all(|b| b.rack.is_some());
        let names: BTreeMap<&str, usize> = if rack_aware {
            let set: BTreeSet<&str> = eligible.values().filter_map(|b| b.rack.as_deref()).collect();
            set.into_iter().enumerate().map(|(i, name)| (name, i)).collect()
        } else {
            BTreeMap::new()
        };
        // With awareness off `names` is empty and every broker lands in group 0; with it on, brokers
        // without a rack (all full, or they would have turned awareness off) share one extra group.
        let rack_of = |b: &BrokerSlot| b.rack.as_deref().and_then(|r| names.get(r).copied()).unwrap_or(names.len());
        let nodes: Vec<Node> =
            eligible.values().map(|b| Node { id: b.id, rack: rack_of(b), cap: cap_of(b), load: load_of(b) }).collect();
        let mut groups = vec![Vec::new(); names.len() + 1];
        for (i, node) in nodes.iter().enumerate() {
            if let Some(group) = groups.get_mut(node.rack).filter(|_| node.cap > 0) {
                group.push(i);
            }
        }
        let max_per_rack = if rack_aware { spread(rf, &groups) } else { rf };
        let index = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        Ok(Self {
            nodes,
            groups,
            rack_aware,
            max_per_rack,
            rf,
            partitions,
            seed: req.seed,
            requested_partitions: req.partitions,
            requested_rf: req.replication_factor,
            index,
            known,
            excluded: req.excluded.clone(),
        })
    }

    /// Rejects a current assignment that `rebalance` would have to shrink.
    pub(super) fn check_current(&self, current: &Assignment) -> Result<(), PlacementError> {
        if current.len() > self.partitions {
            return Err(PlacementError::PartitionCountDecrease {
                current: current.len(),
                requested: self.requested_partitions,
            });
        }
        match current.iter().enumerate().find(|(_, replicas)| replicas.len() > self.rf) {
            Some((p, replicas)) => Err(PlacementError::ReplicationFactorDecrease {
                partition: as_i32(p),
                current: replicas.len(),
                requested: self.requested_rf,
            }),
            None => Ok(()),
        }
    }

    /// Replicas this request has to place from scratch.
    pub(super) fn needed(&self) -> u64 {
        as_u64(self.partitions).saturating_mul(as_u64(self.rf))
    }

    /// The most replicas that fit under rules 1–3 from scratch: each rack group gives at most
    /// `partitions * m` and at most its brokers' capacities. This bound is reached: lay out each
    /// broker's replicas as one run, grouped by rack, and deal the runs round the partitions.
    pub(super) fn max_placeable(&self) -> u64 {
        let per_group = as_u64(self.partitions).saturating_mul(as_u64(self.max_per_rack));
        let total: u64 =
            self.groups.iter().map(|g| g.iter().map(|&b| as_u64(self.nodes[b].cap)).sum::<u64>().min(per_group)).sum();
        total.min(self.needed())
    }

    /// `Err(OverCapacity)` unless a from-scratch placement exists.
    pub(super) fn check_capacity(&self) -> Result<(), PlacementError> {
        let (needed, free) = (self.needed(), self.max_placeable());
        if free < needed { Err(PlacementError::OverCapacity { needed, free }) } else { Ok(()) }
    }

    /// Number of usable brokers.
    pub(super) fn usable(&self) -> usize {
        self.groups.iter().map(Vec::len).sum()
    }

    /// Usable brokers as a ring: by id, or rack-interleaved (first broker of each rack, then the second
    /// of each, ...). In block `block`, rack `j`'s list is rotated by `block * j`, which pairs racks'
    /// brokers differently from block to block while keeping the interleaving.
    pub(super) fn interleaved(&self, block: usize) -> Vec<usize> {
        let lists: Vec<Vec<usize>> = self
            .groups
            .iter()
            .filter(|g| !g.is_empty())
            .enumerate()
            .map(|(j, g)| {
                let mut g = g.clone();
                let len = g.len();
                g.rotate_left(mul_mod(block, j, len));
                g
            })
            .collect();
        let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
        (0..longest).flat_map(|i| lists.iter().filter_map(move |l| l.get(i).copied())).collect()
    }

    /// The round-robin ring for block `block` (partitions `block * n .. (block + 1) * n`): the
    /// interleaved ring starting at `seed % n`; without racks it is walked with stride
    /// `units[block % units.len()]` (a number coprime to `n`), Kafka's "replica shift" in another form.
    pub(super) fn rr_ring(&self, block: usize, units: &[usize]) -> Vec<usize> {
        let base = self.interleaved(if self.rack_aware { block } else { 0 });
        let n = base.len();
        if n == 0 {
            return base;
        }
        let start = usize::try_from(self.seed % as_u64(n)).unwrap_or(0);
        let stride = if self.rack_aware || units.is_empty() { 1 } else { units[block % units.len()] };
        (0..n).map(|i| base[(start + mul_mod(i, stride, n)) % n]).collect()
    }

    /// What broker `id` of a current assignment is now.
    pub(super) fn standing(&self, id: i32) -> Standing {
        match self.index.get(&id) {
            Some(&node) => Standing::Node(node),
            None if self.known.contains(&id) && self.excluded.contains(&id) => Standing::Excluded,
            None => Standing::Gone,
        }
    }
}

/// Rule 2's `m`: the smallest per-rack maximum that still lets a partition have `rf` replicas.
fn spread(rf: usize, groups: &[Vec<usize>]) -> usize {
    let fits = |m: usize| groups.iter().map(|g| g.len().min(m)).sum::<usize>() >= rf;
    (1..=rf).find(|&m| fits(m)).unwrap_or(rf)
}

/// Numbers coprime to `n` in `1..n` (just `[1]` for `n <= 2`): the strides of the round-robin blocks.
pub(super) fn units(n: usize) -> Vec<usize> {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    (1..n.max(2)).filter(|&u| gcd(u, n) == 1).collect()
}

/// `a * b % n` without overflow (0 when `n == 0`).
fn mul_mod(a: usize, b: usize, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let product = (a as u128 % n as u128) * (b as u128 % n as u128) % n as u128;
    usize::try_from(product).unwrap_or(0)
}

pub(super) fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

pub(super) fn as_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A current assignment checked against the request.
pub(super) struct Review {
    /// Replicas invalid on their own (gone, excluded, repeated), by (partition, position).
    pub(super) invalid: BTreeMap<(usize, usize), MoveReason>,
    /// The others as (partition, position, node).
    pub(super) valid: Vec<(usize, usize, usize)>,
    /// Valid replicas per (partition, rack group).
    per_rack: BTreeMap<(usize, usize), usize>,
    /// Valid replicas per node.
    per_node: Vec<usize>,
}

impl Review {
    pub(super) fn of(ctx: &Ctx, current: &Assignment) -> Self {
        let mut review = Self {
            invalid: BTreeMap::new(),
            valid: Vec::new(),
            per_rack: BTreeMap::new(),
            per_node: vec![0; ctx.nodes.len()],
        };
        for (p, replicas) in current.iter().enumerate() {
            let mut seen = BTreeSet::new();
            for (pos, &id) in replicas.iter().enumerate() {
                let reason = match ctx.standing(id) {
                    _ if !seen.insert(id) => MoveReason::Duplicate(id),
                    Standing::Gone => MoveReason::BrokerGone(id),
                    Standing::Excluded => MoveReason::BrokerExcluded(id),
                    Standing::Node(b) => {
                        review.valid.push((p, pos, b));
                        if ctx.nodes[b].cap > 0 {
                            *review.per_rack.entry((p, ctx.nodes[b].rack)).or_insert(0) += 1;
                        }
                        review.per_node[b] += 1;
                        continue;
                    }
                };
                review.invalid.insert((p, pos), reason);
            }
        }
        review
    }

    /// Why a valid replica on node `b` of partition `p` had to go: its broker is full, or its rack was
    /// over rule 2's limit in the partition (counting usable brokers), or its broker over capacity;
    /// `Balance` when none holds.
    pub(super) fn pressure(&self, ctx: &Ctx, p: usize, b: usize) -> MoveReason {
        let node = &ctx.nodes[b];
        if node.cap == 0 {
            MoveReason::OverCapacity(node.id)
        } else if self.per_rack.get(&(p, node.rack)).copied().unwrap_or(0) > ctx.max_per_rack {
            MoveReason::RackRule
        } else if self.per_node[b] > node.cap {
            MoveReason::OverCapacity(node.id)
        } else {
            MoveReason::Balance
        }
    }

    /// The reason to record when the replica at (`p`, `pos`), on broker `id`, leaves.
    pub(super) fn reason(&self, ctx: &Ctx, p: usize, pos: usize, id: i32) -> MoveReason {
        match (self.invalid.get(&(p, pos)), ctx.standing(id)) {
            (Some(&reason), _) => reason,
            (None, Standing::Node(b)) => self.pressure(ctx, p, b),
            (None, _) => MoveReason::Balance,
        }
    }
}

/// The moves from `current` to `target`. A replica occurrence stays when it is the first occurrence
/// of its broker in the partition and the target keeps the broker; every broker new to the partition
/// is a move, paired with the leaving occurrence at the same position if there is one, else with the
/// first unpaired leaving one, else with none. `reason(partition, position, broker)` names why the
/// leaving occurrence leaves.
pub(super) fn diff(
    current: &Assignment,
    target: &Assignment,
    reason: impl Fn(usize, usize, i32) -> MoveReason,
) -> Vec<Move> {
    let mut moves = Vec::new();
    for (p, new) in target.iter().enumerate() {
        let old: &[i32] = current.get(p).map_or(&[], Vec::as_slice);
        let mut seen = BTreeSet::new();
        let leaving: Vec<(usize, i32)> = old
            .iter()
            .enumerate()
            .filter(|&(_, id)| !(seen.insert(*id) && new.contains(id)))
            .map(|(i, &id)| (i, id))
            .collect();
        let mut paired = vec![false; leaving.len()];
        for (j, &to) in new.iter().enumerate() {
            if old.contains(&to) {
                continue;
            }
            let same_spot = leaving.iter().position(|&(i, _)| i == j).filter(|&k| !paired[k]);
            let pick = same_spot.or_else(|| paired.iter().position(|done| !done));
            let from = pick.map(|k| {
                paired[k] = true;
                leaving[k]
            });
            let reason = from.map_or(MoveReason::Added, |(i, id)| reason(p, i, id));
            moves.push(Move { partition: as_i32(p), from: from.map(|(_, id)| id), to, reason });
        }
    }
    moves
}
