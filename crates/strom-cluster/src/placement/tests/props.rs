//! Property tests of rules 1–7 over random clusters.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::strategy::Strategy as PropStrategy;

use super::super::range::owner;
use super::{Case, check_rules, oracle};
use crate::placement::{Assignment, BrokerSlot, Move, MoveReason, Plan, Strategy, assign, rebalance};

const ALL: [Strategy; 3] = [Strategy::RoundRobin, Strategy::Range, Strategy::Sticky];

/// Which features a generated cluster uses.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Copy)]
struct Shape {
    racks: bool,
    caps: bool,
    load: bool,
    exclude: bool,
}

const EVERYTHING: Shape = Shape { racks: true, caps: true, load: true, exclude: true };
const UNLIMITED: Shape = Shape { racks: true, caps: false, load: false, exclude: true };
const FLAT: Shape = Shape { racks: false, caps: false, load: false, exclude: true };

/// 1..=12 brokers (ids from 0..24), racks from a pool of 0..=4, optional capacities and loads,
/// random exclusions, 1..=200 partitions, rf 1..=4.
fn cases(shape: Shape) -> impl PropStrategy<Value = Case> {
    let pool = if shape.racks { 0usize..=4 } else { 0usize..=0 };
    (prop::collection::btree_set(0i32..24, 1..=12), pool, 1i32..=200, 1i16..=4, any::<u64>())
        .prop_flat_map(move |(ids, racks, partitions, rf, seed)| {
            // Disabled features are generated anyway and dropped (proptest wants weights above zero).
            let rack = prop::option::weighted(0.97, 0..racks.max(1)).prop_map(move |r| r.filter(|_| racks > 0));
            let cap = prop::option::weighted(0.6, 0u32..=120).prop_map(move |c| c.filter(|_| shape.caps));
            let load = if shape.load { 0u32..=40 } else { 0u32..=0 };
            let out = prop::bool::weighted(0.2).prop_map(move |out| out && shape.exclude);
            let attrs = prop::collection::vec((rack, cap, load, out), ids.len());
            (Just(ids), attrs, Just(partitions), Just(rf), Just(seed))
        })
        .prop_map(|(ids, attrs, partitions, rf, seed)| {
            let mut case = Case::new(Vec::new(), partitions, rf);
            case.seed = seed;
            for (id, (rack, capacity, load, out)) in ids.into_iter().zip(attrs) {
                case.brokers.push(BrokerSlot { id, rack: rack.map(|r| format!("r{r}")), capacity });
                if load > 0 {
                    case.load.insert(id, load);
                }
                if out {
                    case.excluded.insert(id);
                }
            }
            case
        })
}

/// All brokers racked, no limits; with `equal`, `racks * per_rack` brokers, broker `i` in rack `i % racks`.
fn racked(equal: bool) -> impl PropStrategy<Value = Case> {
    (1usize..=4, 1usize..=3, prop::collection::vec(0usize..4, 1..=12), 1i32..=200, 1i16..=4, any::<u64>()).prop_map(
        move |(racks, per_rack, random, partitions, rf, seed)| {
            let rack_of: Vec<usize> = if equal { (0..racks * per_rack).map(|i| i % racks).collect() } else { random };
            let brokers = rack_of
                .iter()
                .enumerate()
                .map(|(i, r)| BrokerSlot {
                    id: 100 - 3 * i32::try_from(i).unwrap_or(0),
                    rack: Some(format!("z{r}")),
                    capacity: None,
                })
                .collect();
            let rf = rf.min(i16::try_from(rack_of.len()).unwrap_or(1));
            Case { seed, ..Case::new(brokers, partitions, rf) }
        },
    )
}

/// A previous assignment of `case`'s topic, made by `strategy` on another broker set: `case`'s ids
/// with those in `toggle` added or removed. With `racks` false it ignores racks, so it may break the
/// rack rule.
fn previous(case: &Case, toggle: &BTreeSet<i32>, strategy: Strategy, racks: bool) -> Option<Assignment> {
    let ids: BTreeSet<i32> = case.brokers.iter().map(|b| b.id).collect();
    let brokers = ids
        .symmetric_difference(toggle)
        .map(|&id| {
            let same = case.brokers.iter().find(|b| b.id == id);
            let rack = same.map_or_else(|| Some(format!("r{}", id % 3)), |b| b.rack.clone()).filter(|_| racks);
            BrokerSlot { id, rack, capacity: None }
        })
        .collect();
    assign(strategy, &Case::new(brokers, case.partitions, case.rf).req()).ok()
}

fn spread<'a>(ids: impl IntoIterator<Item = &'a i32>, counts: &BTreeMap<i32, usize>) -> usize {
    let values: Vec<usize> = ids.into_iter().map(|id| counts.get(id).copied().unwrap_or(0)).collect();
    values.iter().max().unwrap_or(&0) - values.iter().min().unwrap_or(&0)
}

fn tally<'a>(ids: impl IntoIterator<Item = &'a i32>) -> BTreeMap<i32, usize> {
    let mut counts = BTreeMap::new();
    ids.into_iter().for_each(|&id| *counts.entry(id).or_insert(0) += 1);
    counts
}

/// Replica counts and leader counts.
fn counts(a: &Assignment) -> (BTreeMap<i32, usize>, BTreeMap<i32, usize>) {
    (tally(a.iter().flatten()), tally(a.iter().filter_map(|r| r.first())))
}

/// Applying the moves to `current` gives `plan.target` (as sets), and each move is well-formed.
fn check_moves(current: &Assignment, plan: &Plan) -> Result<(), String> {
    for (p, target) in plan.target.iter().enumerate() {
        let old = current.get(p).cloned().unwrap_or_default();
        let mut now = old.clone();
        for m in plan.moves.iter().filter(|m| usize::try_from(m.partition) == Ok(p)) {
            if old.contains(&m.to) || (m.from.is_none() != (m.reason == MoveReason::Added)) {
                return Err(format!("bad move {m:?} from {old:?}"));
            }
            if let Some(from) = m.from {
                let at = now.iter().position(|&b| b == from).ok_or(format!("{m:?}: {from} not in {now:?}"))?;
                now.remove(at);
            }
            now.push(m.to);
        }
        if tally(&now) != tally(target) {
            return Err(format!("partition {p}: {old:?} + moves = {now:?}, target {target:?}"));
        }
    }
    Ok(())
}

/// The invalid replicas of `current` under `case`, as (gone + excluded + duplicate, rack surplus).
fn invalid(case: &Case, current: &Assignment) -> (usize, usize) {
    let o = oracle(case);
    let known: BTreeSet<i32> = case.brokers.iter().map(|b| b.id).collect();
    let (mut forced, mut surplus) = (0, 0);
    for replicas in current {
        let mut seen = BTreeSet::new();
        let mut per_rack: BTreeMap<Option<String>, usize> = BTreeMap::new();
        for id in replicas {
            if !seen.insert(id) || !known.contains(id) || case.excluded.contains(id) {
                forced += 1;
            } else if let Some((rack, _)) = o.usable.get(id).filter(|_| o.rack_aware) {
                *per_rack.entry(rack.clone()).or_insert(0) += 1;
            }
        }
        surplus += per_rack.values().map(|n| n.saturating_sub(o.m)).sum::<usize>();
    }
    (forced, surplus)
}

/// Whether a move's reason is true of the current assignment.
fn justified(case: &Case, current: &Assignment, m: &Move) -> bool {
    let o = oracle(case);
    let old = usize::try_from(m.partition).ok().and_then(|p| current.get(p)).cloned().unwrap_or_default();
    let known = |id: i32| case.brokers.iter().any(|b| b.id == id);
    let rack = |id: i32| o.usable.get(&id).and_then(|(r, _)| r.clone());
    match (m.reason, m.from) {
        (MoveReason::BrokerGone(b), Some(f)) => b == f && !known(b),
        (MoveReason::BrokerExcluded(b), Some(f)) => b == f && known(b) && case.excluded.contains(&b),
        (MoveReason::Duplicate(b), Some(f)) => b == f && old.iter().filter(|&&x| x == b).count() > 1,
        (MoveReason::RackRule, Some(f)) => {
            o.rack_aware && old.iter().filter(|&&x| o.usable.contains_key(&x) && rack(x) == rack(f)).count() > o.m
        }
        (MoveReason::OverCapacity(b), Some(f)) => {
            b == f
                && o.usable
                    .get(&b)
                    .is_none_or(|(_, free)| current.iter().filter(|r| r.contains(&b)).count() as u64 > *free)
        }
        (MoveReason::Balance, Some(_)) | (MoveReason::Added, None) => true,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// Rules 1–3 for every strategy, and the error (OverCapacity's numbers included) exactly when the oracle says so.
    #[test]
    fn assign_obeys_every_rule(case in cases(EVERYTHING)) {
        let o = oracle(&case);
        for strategy in ALL {
            match (assign(strategy, &case.req()), &o.expected) {
                (Ok(a), Ok(())) => prop_assert_eq!(check_rules(&case, &a), Ok(()), "{:?} {:?}", strategy, a),
                (got, expected) => prop_assert_eq!(got.map(|_| ()), expected.clone(), "{:?}", strategy),
            }
        }
    }

    /// Rule 7: same inputs, same output, whatever the order of `brokers`.
    #[test]
    fn results_are_deterministic(case in cases(EVERYTHING), toggle in prop::collection::btree_set(0i32..24, 0..=6)) {
        let mut reversed = case.clone();
        reversed.brokers.reverse();
        for strategy in ALL {
            let first = assign(strategy, &case.req());
            prop_assert_eq!(&first, &assign(strategy, &case.req()));
            prop_assert_eq!(&first, &assign(strategy, &reversed.req()));
            if let Some(prev) = previous(&case, &toggle, Strategy::RoundRobin, true) {
                let plan = rebalance(strategy, &prev, &case.req());
                prop_assert_eq!(&plan, &rebalance(strategy, &prev, &reversed.req()));
            }
        }
    }

    /// Rule 4 without racks: replicas and leaders per eligible broker differ by at most one.
    #[test]
    fn round_robin_balances_replicas_and_leaders(case in cases(FLAT)) {
        if let Ok(a) = assign(Strategy::RoundRobin, &case.req()) {
            let o = oracle(&case);
            let (replicas, leaders) = counts(&a);
            prop_assert!(spread(o.usable.keys(), &replicas) <= 1, "replicas {:?}", replicas);
            prop_assert!(spread(o.usable.keys(), &leaders) <= 1, "leaders {:?}", leaders);
        }
    }

    /// Rule 4 with racks: within each rack counts differ by at most one; and overall, leaders
    /// included, when racks are the same size.
    #[test]
    fn round_robin_balance_with_racks(uneven in racked(false), even in racked(true)) {
        let a = assign(Strategy::RoundRobin, &uneven.req()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(check_rules(&uneven, &a), Ok(()));
        let (replicas, _) = counts(&a);
        for rack in uneven.brokers.iter().map(|b| &b.rack).collect::<BTreeSet<_>>() {
            let members = uneven.brokers.iter().filter(|b| &b.rack == rack).map(|b| &b.id);
            prop_assert!(spread(members, &replicas) <= 1, "rack {:?}: {:?}", rack, replicas);
        }
        let a = assign(Strategy::RoundRobin, &even.req()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(check_rules(&even, &a), Ok(()));
        let (replicas, leaders) = counts(&a);
        let ids: Vec<i32> = even.brokers.iter().map(|b| b.id).collect();
        prop_assert!(spread(&ids, &replicas) <= 1, "replicas {:?}", replicas);
        prop_assert!(spread(&ids, &leaders) <= 1, "leaders {:?}", leaders);
    }

    /// Rule 5, exactly: without limits, partition p's replicas are ring brokers owner(p), owner(p)+1, ...
    #[test]
    fn range_is_contiguous(flat in cases(FLAT), even in racked(true)) {
        for case in [flat, even] {
            let Ok(a) = assign(Strategy::Range, &case.req()) else { continue };
            let o = oracle(&case);
            // The ring: by id, or the first broker of each rack (racks by name), then the second, ...
            let mut racks: BTreeMap<Option<String>, Vec<i32>> = BTreeMap::new();
            for (id, (rack, _)) in &o.usable {
                racks.entry(rack.clone().filter(|_| o.rack_aware)).or_default().push(*id);
            }
            let ring: Vec<i32> = (0..12).flat_map(|i| racks.values().filter_map(move |l| l.get(i).copied())).collect();
            let parts = a.len();
            for (p, replicas) in a.iter().enumerate() {
                let start = owner(p, parts, ring.len());
                let expected: Vec<i32> = (0..replicas.len()).map(|j| ring[(start + j) % ring.len()]).collect();
                prop_assert_eq!(replicas, &expected, "partition {}", p);
            }
        }
    }

    /// Rule 6 without capacity limits: the moves are the invalid replicas plus balancing moves, within
    /// the RoundRobin recomputation's count, and balancing only stops early when that budget is spent.
    #[test]
    fn sticky_moves_only_invalid_replicas(
        case in cases(UNLIMITED),
        toggle in prop::collection::btree_set(0i32..24, 0..=6),
        range in any::<bool>(),
        racks in any::<bool>(),
    ) {
        let strategy = if range { Strategy::Range } else { Strategy::RoundRobin };
        let Some(prev) = previous(&case, &toggle, strategy, racks) else { return Ok(()) };
        let (plan, recomputed) = match (rebalance(Strategy::Sticky, &prev, &case.req()), rebalance(Strategy::RoundRobin, &prev, &case.req())) {
            (Ok(plan), Ok(recomputed)) => (plan, recomputed),
            (plan, recomputed) => { prop_assert_eq!(plan.map(|_| ()), recomputed.map(|_| ())); return Ok(()) }
        };
        prop_assert_eq!(check_rules(&case, &plan.target), Ok(()));
        prop_assert_eq!(check_moves(&prev, &plan), Ok(()));
        let (forced, surplus) = invalid(&case, &prev);
        let balance = plan.moves.iter().filter(|m| m.reason == MoveReason::Balance).count();
        prop_assert!(plan.moves.len() >= forced + surplus, "{} moves, {} invalid", plan.moves.len(), forced + surplus);
        prop_assert!(plan.moves.len() - balance <= forced + surplus, "{:?}", plan.moves);
        prop_assert!(plan.moves.iter().all(|m| justified(&case, &prev, m)), "{:?}", plan.moves);
        prop_assert!(plan.moves.len() <= recomputed.moves.len());
        let o = oracle(&case);
        if !o.rack_aware {
            let (replicas, _) = counts(&plan.target);
            prop_assert!(spread(o.usable.keys(), &replicas) <= 1 || plan.moves.len() == recomputed.moves.len());
        }
    }

    /// Rebalance plans are valid for every strategy, fail exactly when placement is impossible, and
    /// sticky never moves more than the RoundRobin recomputation.
    #[test]
    fn rebalance_plans_are_valid(
        case in cases(EVERYTHING),
        toggle in prop::collection::btree_set(0i32..24, 0..=6),
        racks in any::<bool>(),
    ) {
        let Some(prev) = previous(&case, &toggle, Strategy::RoundRobin, racks) else { return Ok(()) };
        let o = oracle(&case);
        let mut sizes = Vec::new();
        for strategy in ALL {
            match (rebalance(strategy, &prev, &case.req()), &o.expected) {
                (Ok(plan), Ok(())) => {
                    prop_assert_eq!(check_rules(&case, &plan.target), Ok(()), "{:?}", strategy);
                    prop_assert_eq!(check_moves(&prev, &plan), Ok(()), "{:?}", strategy);
                    prop_assert!(plan.moves.iter().all(|m| justified(&case, &prev, m)), "{:?} {:?}", strategy, plan.moves);
                    prop_assert!(plan.moves.len() >= invalid(&case, &prev).0);
                    sizes.push(plan.moves.len());
                }
                (got, expected) => prop_assert_eq!(got.map(|_| ()), expected.clone(), "{:?}", strategy),
            }
        }
        if let [round_robin, _, sticky] = sizes[..] {
            prop_assert!(sticky <= round_robin, "sticky {} > round-robin {}", sticky, round_robin);
        }
    }

    /// Rule 6: with nothing changed, sticky moves nothing (also under another seed).
    #[test]
    fn sticky_without_change_moves_nothing(case in cases(EVERYTHING), other_seed in any::<u64>()) {
        for strategy in [Strategy::RoundRobin, Strategy::Sticky] {
            let Ok(current) = assign(strategy, &case.req()) else { continue };
            for seed in [case.seed, other_seed] {
                let plan = rebalance(Strategy::Sticky, &current, &Case { seed, ..case.clone() }.req());
                prop_assert_eq!(plan, Ok(Plan { target: current.clone(), moves: Vec::new() }));
            }
        }
    }
}
