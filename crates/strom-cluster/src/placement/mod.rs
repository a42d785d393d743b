//! Replica placement: which brokers hold the replicas of a topic's partitions.
//!
//! Everything here is a pure function. The same [`PlacementRequest`] (and, for [`rebalance`], the same
//! current [`Assignment`]) always gives the same result: nothing iterates a hash map, nothing is random,
//! and [`PlacementRequest::seed`] is the only knob that varies the output.
//!
//! # Terms
//! * An **eligible** broker is listed in `brokers` and not in `excluded`. When an id is listed twice the
//!   first entry counts and the later ones are ignored.
//! * The **free capacity** of a broker for one request is `capacity - load` (unlimited without a
//!   capacity), and never more than the partition count, since a broker holds at most one replica of
//!   each partition. `load` counts the replicas a broker holds *outside* this request: for
//!   [`rebalance`] that means leaving out the topic being rebalanced, whose replicas are counted here.
//! * A **usable** broker is eligible with free capacity above zero. Only usable brokers get replicas.
//!
//! # Rules every result holds
//! 1. Every partition has exactly `replication_factor` distinct replicas, all on usable brokers, so
//!    none on an excluded or unlisted broker.
//! 2. **Racks.** Rack awareness is on when every usable broker has a rack. A single usable broker
//!    without a rack turns it off for the whole request (Kafka refuses to mix racked and unracked
//!    brokers unless told to; turning the rule off is the sound choice that never fails a request).
//!    With awareness on and `s_r` usable brokers in rack `r`, a partition holds at most `m` replicas
//!    in one rack, where `m` is the smallest number with `sum(min(m, s_r)) >= replication_factor`:
//!    `m = 1` (one replica per rack) when there are at least as many racks as replicas, and
//!    `m = ceil(rf / racks)` in general, unless some racks are too small to take that share, in which
//!    case `m` is the most even spread the rack sizes allow. Full brokers do not count as rack members.
//! 3. **Capacity.** No broker ends above its capacity, counting `load` and the replicas placed here.
//!    When the replicas cannot all be placed under rules 1–3 the result is
//!    [`PlacementError::OverCapacity`]; that check is exact (an error means no valid placement exists).
//! 4. **Balance.** [`Strategy::RoundRobin`] places each partition on the brokers holding the fewest
//!    replicas of this request (then lowest `load`, then round-robin order), and afterwards runs a
//!    bounded balancing step (see [`rebalance`]). Without racks and capacity limits and with equal
//!    loads, replica counts and preferred-leader counts per usable broker differ by at most one. With
//!    racks (and no capacity limits, equal loads) the counts differ by at most one *within each rack*,
//!    and by at most one overall, leaders included, when all racks have the same number of brokers;
//!    otherwise the rack rule may force more (a lone broker in its own rack gets a replica of nearly
//!    every partition).
//! 5. **Range.** See [`Strategy::Range`].
//! 6. **Sticky.** See [`Strategy::Sticky`] and [`rebalance`].
//! 7. **Determinism.** Same inputs, same output; the order of `brokers` does not matter when ids are
//!    distinct.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

mod build;
mod engine;
mod flow;
mod range;
mod round_robin;
mod sticky;
#[cfg(test)]
mod tests;

/// A live, unfenced broker that may receive replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSlot {
    /// Broker id.
    pub id: i32,
    /// Rack of the broker, if it has one (see rule 2 of the module docs for how `None` is treated).
    pub rack: Option<String>,
    /// Maximum number of replicas this broker may hold in total, `None` for unlimited.
    pub capacity: Option<u32>,
}

/// How replicas are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Least-loaded first with round-robin tie-breaking, starting at broker `seed % n` of the
    /// (rack-interleaved) broker ring, with a different ring order in each run of `n` partitions (as
    /// Kafka's replica shift does) so that followers of one broker are spread over many brokers.
    /// Leaders are then chosen inside each partition to spread leadership. Guarantees rule 4.
    RoundRobin,
    /// Contiguous ranges, the way Kafka's range assignor hands consumers ranges of partitions. Take the
    /// usable brokers as a ring, sorted by id, or rack-interleaved when rack-aware (racks sorted by
    /// name, then the first broker of each rack, the second of each rack, ...). Split the partitions
    /// into `n` contiguous ranges, the first `P % n` ranges one partition longer; partitions of range
    /// `i` are led by ring broker `i`, and their followers are the next brokers around the ring,
    /// skipping any that would break the rack or capacity rules (if capacities still leave a partition
    /// short, maximum flow completes the placement, which may change earlier choices). `seed` and
    /// `load` (except for capacity) are ignored, and there is no balancing step: Range is predictable,
    /// not balanced.
    Range,
    /// For new partitions the same as [`Strategy::RoundRobin`]; for [`rebalance`] keeps every replica
    /// that is still valid and moves as few as possible.
    Sticky,
}

/// Everything a placement decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct PlacementRequest<'a> {
    /// Live, unfenced brokers.
    pub brokers: &'a [BrokerSlot],
    /// Brokers that must receive no new replicas (draining or decommissioning).
    pub excluded: &'a BTreeSet<i32>,
    /// Replicas each broker already holds outside this request (missing = 0).
    pub load: &'a BTreeMap<i32, u32>,
    /// Number of partitions to place (for [`rebalance`]: the topic's partition count, at least the
    /// current one; extra partitions are placed as new).
    pub partitions: i32,
    /// Replicas per partition (for [`rebalance`]: at least the current count of every partition).
    pub replication_factor: i16,
    /// Start offset for round-robin.
    pub seed: u64,
}

/// Replicas per partition: index = partition, value = broker ids, preferred leader first.
pub type Assignment = Vec<Vec<i32>>;

/// Why a request cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementError {
    /// No eligible broker: none listed, or all excluded.
    NoBrokers,
    /// More replicas per partition than eligible brokers.
    ReplicationFactorTooLarge {
        /// The replication factor asked for.
        requested: i16,
        /// Number of eligible brokers.
        available: usize,
    },
    /// Replication factor below 1.
    InvalidReplicationFactor(i16),
    /// Negative partition count.
    InvalidPartitionCount(i32),
    /// The replicas do not fit (rule 3).
    OverCapacity {
        /// Replicas that had to be placed.
        needed: u64,
        /// The most of them that fit under rules 1–3. This is at most the plain sum of free capacity,
        /// and less than it when free capacity is concentrated on too few brokers or racks.
        free: u64,
    },
    /// [`rebalance`] was asked for fewer partitions than the topic has.
    PartitionCountDecrease {
        /// Partitions in the current assignment.
        current: usize,
        /// Partitions requested.
        requested: i32,
    },
    /// [`rebalance`] was asked for a lower replication factor than a partition has.
    ReplicationFactorDecrease {
        /// The first partition with too many replicas.
        partition: i32,
        /// Its replica count.
        current: usize,
        /// The replication factor requested.
        requested: i16,
    },
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBrokers => write!(f, "no eligible brokers: none is listed or all are excluded"),
            Self::ReplicationFactorTooLarge { requested, available } => {
                write!(f, "replication factor {requested} is larger than the {available} eligible brokers")
            }
            Self::InvalidReplicationFactor(rf) => write!(f, "invalid replication factor {rf}: must be at least 1"),
            Self::InvalidPartitionCount(p) => write!(f, "invalid partition count {p}: must not be negative"),
            Self::OverCapacity { needed, free } => {
                write!(f, "not enough broker capacity: {needed} replicas to place, only {free} fit")
            }
            Self::PartitionCountDecrease { current, requested } => {
                write!(f, "the topic has {current} partitions; a rebalance cannot reduce that to {requested}")
            }
            Self::ReplicationFactorDecrease { partition, current, requested } => write!(
                f,
                "partition {partition} has {current} replicas; a rebalance cannot lower the replication factor to {requested}"
            ),
        }
    }
}

impl std::error::Error for PlacementError {}

/// Why a replica moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveReason {
    /// The broker is no longer in `brokers`.
    BrokerGone(i32),
    /// The broker is in `excluded`.
    BrokerExcluded(i32),
    /// The broker appeared twice in the partition's replica list.
    Duplicate(i32),
    /// The partition had more replicas in the broker's rack than rule 2 allows.
    RackRule,
    /// The broker held more replicas than its capacity allows.
    OverCapacity(i32),
    /// Moved to even out replica counts (or, for a recomputing strategy, because the new layout differs).
    Balance,
    /// A replica that did not exist before (new partition or higher replication factor).
    Added,
}

impl fmt::Display for MoveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BrokerGone(b) => write!(f, "broker {b} left"),
            Self::BrokerExcluded(b) => write!(f, "broker {b} excluded"),
            Self::Duplicate(b) => write!(f, "broker {b} listed twice"),
            Self::RackRule => write!(f, "rack rule"),
            Self::OverCapacity(b) => write!(f, "broker {b} over capacity"),
            Self::Balance => write!(f, "balance"),
            Self::Added => write!(f, "replica added"),
        }
    }
}

/// One replica change: partition `partition` gets a replica on `to`, replacing the one on `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// Partition index.
    pub partition: i32,
    /// Broker that loses the replica, `None` for a replica that did not exist before.
    pub from: Option<i32>,
    /// Broker that gains the replica; never already a replica of the partition.
    pub to: i32,
    /// Why.
    pub reason: MoveReason,
}

impl fmt::Display for Move {
    /// Prints e.g. `partition 3: replica 2 -> 4 (broker 2 left)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.from {
            Some(from) => write!(f, "partition {}: replica {from} -> {} ({})", self.partition, self.to, self.reason),
            None => write!(f, "partition {}: new replica -> {} ({})", self.partition, self.to, self.reason),
        }
    }
}

/// The outcome of [`rebalance`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The assignment after the moves; it satisfies rules 1–3.
    pub target: Assignment,
    /// The replica changes from the current assignment to `target`, by partition, then by position.
    /// Applying them (remove `from`, add `to`) to each partition's replica set gives the target's
    /// set; changes in replica order alone (a new preferred leader among the same brokers) are not
    /// moves. Their number is the number of replicas that change broker.
    pub moves: Vec<Move>,
}

impl Plan {
    /// The partitions whose replicas (or their order) differ between `current` and the
    /// target, with their target replicas: what a reassignment must be asked for.
    pub fn changed_partitions(&self, current: &[Vec<i32>]) -> Vec<(i32, Vec<i32>)> {
        self.target
            .iter()
            .enumerate()
            .filter(|(i, t)| current.get(*i) != Some(*t))
            .map(|(i, t)| (i32::try_from(i).unwrap_or(i32::MAX), t.clone()))
            .collect()
    }
}

/// Places the replicas of `req.partitions` new partitions.
///
/// [`Strategy::Sticky`] behaves as [`Strategy::RoundRobin`] here. The result satisfies rules 1–3 and
/// the chosen strategy's guarantees, or the error says why no placement exists. To add partitions to
/// an existing topic, pass the new partitions' count and the brokers' loads including the topic, or
/// use [`rebalance`] with the full partition count.
///
/// # Errors
/// [`PlacementError::InvalidPartitionCount`], [`PlacementError::InvalidReplicationFactor`],
/// [`PlacementError::NoBrokers`], [`PlacementError::ReplicationFactorTooLarge`] (checked in that
/// order), then [`PlacementError::OverCapacity`].
pub fn assign(strategy: Strategy, req: &PlacementRequest<'_>) -> Result<Assignment, PlacementError> {
    let ctx = engine::Ctx::new(req)?;
    match strategy {
        Strategy::RoundRobin | Strategy::Sticky => round_robin::assign(&ctx),
        Strategy::Range => range::assign(&ctx),
    }
}

/// Plans the moves that bring an existing topic's `current` assignment in line with `req` after
/// brokers joined or left (left = not in `brokers`, or in `excluded`), capacities changed, or
/// partitions or replicas were added (`req.partitions` and `req.replication_factor` may be larger
/// than in `current`).
///
/// [`Strategy::RoundRobin`] and [`Strategy::Range`] recompute the placement from scratch with
/// [`assign`] and list the difference. [`Strategy::Sticky`] keeps every replica that is still valid:
/// a replica is invalid when its broker is gone or excluded, when it repeats a broker, when it breaks
/// the rack rule (the surplus replicas of a rack in the partition), or when its broker is over
/// capacity (the surplus replicas of that broker). The replicas kept are a maximum set within those
/// limits (found by maximum matching, so overlapping rack and capacity surpluses cost as few moves as
/// possible); among equal choices earlier positions stay, the preferred leader first. Each invalid
/// replica is replaced at its position, on the broker with the fewest replicas of the topic (then
/// lowest `load`, then round-robin order) that keeps the rules, or by maximum flow where tight
/// capacities leave no greedy choice. So the preferred leader changes only if the leader is replaced.
///
/// Then comes the balancing step, which [`assign`] also runs for `RoundRobin`: while some usable
/// broker holds at least two more replicas of the topic than a usable broker with room, one replica
/// moves from the first to the second where rules 1–3 allow (givers with the most replicas first,
/// receivers with the fewest first; a follower rather than a leader; the lowest partition first).
/// Each move lowers the sum of squared counts, so the step ends; without racks or capacity limits it
/// makes exactly the fewest moves that bring the counts within one. For `Sticky` the step is bounded:
/// moves that only change where a replacement goes (or put a replica back where it was) cost nothing
/// and come first, and a kept replica moves only while the plan stays no larger than the plan of the
/// `RoundRobin` recomputation. So `Sticky` never moves more than `RoundRobin`, and without racks or
/// capacity limits it stops only when counts differ by at most one or that budget is spent. An
/// assignment made by `RoundRobin` or `Sticky` for the same request (any seed) is valid and has
/// nothing to balance, so rebalancing it moves nothing; one made by `Range` may get balancing moves,
/// since `Range` is not balanced.
///
/// In the rare case where keeping every valid replica makes the rest impossible to place (capacity so
/// tight that the kept replicas sit where the new ones must go), `Sticky` falls back to the
/// `RoundRobin` recomputation. `Sticky` with an empty `current` is `RoundRobin`.
///
/// # Errors
/// The request errors of [`assign`] first, then [`PlacementError::PartitionCountDecrease`] and
/// [`PlacementError::ReplicationFactorDecrease`] when `req` would shrink the topic, then
/// [`PlacementError::OverCapacity`] when no valid target exists (for `Sticky` too: it fails exactly
/// when a from-scratch placement is impossible).
pub fn rebalance(strategy: Strategy, current: &Assignment, req: &PlacementRequest<'_>) -> Result<Plan, PlacementError> {
    let ctx = engine::Ctx::new(req)?;
    ctx.check_current(current)?;
    match strategy {
        Strategy::RoundRobin => Ok(recompute(&ctx, current, round_robin::assign(&ctx)?)),
        Strategy::Range => Ok(recompute(&ctx, current, range::assign(&ctx)?)),
        Strategy::Sticky => sticky::rebalance(&ctx, current),
    }
}

/// The plan that replaces `current` by a freshly computed `target`.
fn recompute(ctx: &engine::Ctx, current: &Assignment, target: Assignment) -> Plan {
    let review = engine::Review::of(ctx, current);
    let moves = engine::diff(current, &target, |p, pos, id| review.reason(ctx, p, pos, id));
    Plan { target, moves }
}

/// The plan of one topic within [`plan_cluster`]: its moves, or why it has none.
pub type TopicPlan = Result<Plan, PlacementError>;

/// Plans every topic of a cluster with [`rebalance`]: `topics` maps each topic to its current
/// assignment; each topic's `load` is the replicas the brokers hold in the *other* topics, and
/// its replication factor the largest it has. Topics with nothing to move are left out; a topic
/// with no valid plan (more replicas than brokers left) is reported with its error, and the
/// others are still planned.
pub fn plan_cluster(
    strategy: Strategy,
    topics: &BTreeMap<String, Assignment>,
    brokers: &[BrokerSlot],
    excluded: &BTreeSet<i32>,
) -> BTreeMap<String, TopicPlan> {
    let mut total: BTreeMap<i32, u32> = BTreeMap::new();
    for r in topics.values().flatten().flatten() {
        *total.entry(*r).or_default() += 1;
    }
    let mut out = BTreeMap::new();
    for (name, current) in topics {
        let mut load = total.clone();
        for r in current.iter().flatten() {
            if let Some(n) = load.get_mut(r) {
                *n -= 1;
            }
        }
        let rf = current.iter().map(Vec::len).max().unwrap_or(1);
        let request = PlacementRequest {
            brokers,
            excluded,
            load: &load,
            partitions: i32::try_from(current.len()).unwrap_or(i32::MAX),
            replication_factor: i16::try_from(rf).unwrap_or(i16::MAX),
            seed: 0,
        };
        match rebalance(strategy, current, &request) {
            Ok(plan) if plan.moves.is_empty() => {}
            other => {
                out.insert(name.clone(), other);
            }
        }
    }
    out
}
