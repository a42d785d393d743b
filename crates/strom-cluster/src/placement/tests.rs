//! Exact-output unit tests, plus the shared oracle; the property tests are in `tests/props.rs`.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

mod props;

/// An owned request.
#[derive(Debug, Clone)]
pub(super) struct Case {
    pub(super) brokers: Vec<BrokerSlot>,
    pub(super) excluded: BTreeSet<i32>,
    pub(super) load: BTreeMap<i32, u32>,
    pub(super) partitions: i32,
    pub(super) rf: i16,
    pub(super) seed: u64,
}

impl Case {
    pub(super) fn new(brokers: Vec<BrokerSlot>, partitions: i32, rf: i16) -> Self {
        Self { brokers, excluded: BTreeSet::new(), load: BTreeMap::new(), partitions, rf, seed: 0 }
    }
    pub(super) fn req(&self) -> PlacementRequest<'_> {
        PlacementRequest {
            brokers: &self.brokers,
            excluded: &self.excluded,
            load: &self.load,
            partitions: self.partitions,
            replication_factor: self.rf,
            seed: self.seed,
        }
    }
}

pub(super) fn broker(id: i32, rack: Option<&str>, capacity: Option<u32>) -> BrokerSlot {
    BrokerSlot { id, rack: rack.map(str::to_owned), capacity }
}

pub(super) fn plain(ids: &[i32]) -> Vec<BrokerSlot> {
    ids.iter().map(|&id| broker(id, None, None)).collect()
}

/// What the module docs promise, computed independently of the implementation.
#[derive(Debug)]
pub(super) struct Oracle {
    /// Usable broker id -> (rack, free capacity for this request).
    pub(super) usable: BTreeMap<i32, (Option<String>, u64)>,
    pub(super) rack_aware: bool,
    pub(super) m: usize,
    /// `Ok(())` or the error `assign` must return.
    pub(super) expected: Result<(), PlacementError>,
}

pub(super) fn oracle(case: &Case) -> Oracle {
    let mut eligible: BTreeMap<i32, &BrokerSlot> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for b in &case.brokers {
        if seen.insert(b.id) && !case.excluded.contains(&b.id) {
            eligible.insert(b.id, b);
        }
    }
    let parts = u64::try_from(case.partitions.max(0)).unwrap_or(0);
    let mut usable = BTreeMap::new();
    for (&id, b) in &eligible {
        let load = u64::from(case.load.get(&id).copied().unwrap_or(0));
        let free = b.capacity.map_or(parts, |c| u64::from(c).saturating_sub(load).min(parts));
        if free > 0 {
            usable.insert(id, (b.rack.clone(), free));
        }
    }
    let rack_aware = !usable.is_empty() && usable.values().all(|(r, _)| r.is_some());
    let mut racks: BTreeMap<Option<String>, (usize, u64)> = BTreeMap::new();
    for (rack, free) in usable.values() {
        let key = if rack_aware { rack.clone() } else { None };
        let entry = racks.entry(key).or_insert((0, 0));
        entry.0 += 1;
        entry.1 += free;
    }
    let rf = usize::try_from(case.rf.max(1)).unwrap_or(1);
    let m = (1..=rf).find(|&m| racks.values().map(|(n, _)| (*n).min(m)).sum::<usize>() >= rf).unwrap_or(rf);
    let m = if rack_aware { m } else { rf };
    let needed = parts * u64::try_from(rf).unwrap_or(0);
    let m64 = u64::try_from(m).unwrap_or(0);
    let free = racks.values().map(|(_, f)| (*f).min(parts * m64)).sum::<u64>().min(needed);
    let expected = if case.partitions < 0 {
        Err(PlacementError::InvalidPartitionCount(case.partitions))
    } else if case.rf < 1 {
        Err(PlacementError::InvalidReplicationFactor(case.rf))
    } else if eligible.is_empty() {
        Err(PlacementError::NoBrokers)
    } else if rf > eligible.len() {
        Err(PlacementError::ReplicationFactorTooLarge { requested: case.rf, available: eligible.len() })
    } else if free < needed {
        Err(PlacementError::OverCapacity { needed, free })
    } else {
        Ok(())
    };
    Oracle { usable, rack_aware, m, expected }
}

/// Rules 1–3 for `a` as a placement of `case`.
pub(super) fn check_rules(case: &Case, a: &Assignment) -> Result<(), String> {
    let o = oracle(case);
    if a.len() != usize::try_from(case.partitions).unwrap_or(0) {
        return Err(format!("{} partitions, wanted {}", a.len(), case.partitions));
    }
    let mut held: BTreeMap<i32, u64> = BTreeMap::new();
    for (p, replicas) in a.iter().enumerate() {
        let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
        if replicas.len() != usize::try_from(case.rf).unwrap_or(0) || distinct.len() != replicas.len() {
            return Err(format!("partition {p}: replicas {replicas:?} are not {} distinct brokers", case.rf));
        }
        let mut per_rack: BTreeMap<&str, usize> = BTreeMap::new();
        for id in replicas {
            let Some((rack, _)) = o.usable.get(id) else {
                return Err(format!("partition {p}: broker {id} not usable"));
            };
            *held.entry(*id).or_insert(0) += 1;
            if o.rack_aware {
                let n = per_rack.entry(rack.as_deref().unwrap_or("")).or_insert(0);
                *n += 1;
                if *n > o.m {
                    return Err(format!("partition {p}: {replicas:?} has more than {} in one rack", o.m));
                }
            }
        }
    }
    for (id, n) in held {
        if o.usable.get(&id).is_some_and(|(_, free)| n > *free) {
            return Err(format!("broker {id} holds {n}, above its free capacity"));
        }
    }
    Ok(())
}

fn rr(case: &Case) -> Assignment {
    assign(Strategy::RoundRobin, &case.req()).expect("round-robin placement")
}

#[test]
fn round_robin_three_brokers_six_partitions_rf2() {
    let case = Case::new(plain(&[1, 2, 3]), 6, 2);
    // Block 0 deals the ring 1,2,3; block 1 walks it with stride 2 (1,3,2): all six ordered pairs.
    assert_eq!(rr(&case), vec![vec![1, 2], vec![3, 1], vec![2, 3], vec![1, 3], vec![2, 1], vec![3, 2]]);
    assert_eq!(assign(Strategy::Sticky, &case.req()), Ok(rr(&case)));
}

#[test]
fn round_robin_seed_rotates_the_start() {
    let mut case = Case::new(plain(&[1, 2, 3]), 3, 2);
    case.seed = 1;
    assert_eq!(rr(&case), vec![vec![2, 3], vec![1, 2], vec![3, 1]]);
    case.seed = 4; // 4 % 3 == 1
    assert_eq!(rr(&case), vec![vec![2, 3], vec![1, 2], vec![3, 1]]);
}

#[test]
fn round_robin_rack_aware_interleaves_racks() {
    let brokers = vec![
        broker(1, Some("a"), None),
        broker(2, Some("a"), None),
        broker(3, Some("b"), None),
        broker(4, Some("b"), None),
    ];
    let case = Case::new(brokers, 4, 2);
    assert_eq!(rr(&case), vec![vec![1, 3], vec![2, 4], vec![3, 1], vec![4, 2]]);
}

#[test]
fn range_gives_contiguous_ranges() {
    let case = Case::new(plain(&[1, 2, 3]), 7, 2);
    let expected = vec![vec![1, 2], vec![1, 2], vec![1, 2], vec![2, 3], vec![2, 3], vec![3, 1], vec![3, 1]];
    assert_eq!(assign(Strategy::Range, &case.req()), Ok(expected));
}

#[test]
fn range_skips_a_second_replica_in_the_same_rack() {
    let brokers = vec![broker(1, Some("a"), None), broker(2, Some("a"), None), broker(3, Some("b"), None)];
    // Interleaved ring 1,3,2; rack a may hold only one replica of each partition.
    let case = Case::new(brokers, 3, 2);
    assert_eq!(assign(Strategy::Range, &case.req()), Ok(vec![vec![1, 3], vec![3, 2], vec![2, 3]]));
}

#[test]
fn unracked_broker_turns_rack_awareness_off() {
    let brokers = vec![broker(1, Some("a"), None), broker(2, Some("a"), None), broker(3, None, None)];
    let case = Case::new(brokers, 3, 2);
    assert_eq!(rr(&case), vec![vec![1, 2], vec![3, 1], vec![2, 3]]);
}

#[test]
fn capacity_is_respected_and_errors_are_exact() {
    let mut case = Case::new(vec![broker(1, None, Some(3)), broker(2, None, Some(3))], 4, 2);
    assert_eq!(rr(&Case { partitions: 3, ..case.clone() }), vec![vec![1, 2], vec![2, 1], vec![1, 2]]);
    assert_eq!(assign(Strategy::RoundRobin, &case.req()), Err(PlacementError::OverCapacity { needed: 8, free: 6 }));
    // Plenty of capacity in total, but all on one broker: only one replica per partition fits.
    case.brokers = vec![broker(1, None, Some(100)), broker(2, None, Some(5))];
    case.load.insert(2, 5);
    assert_eq!(assign(Strategy::Range, &case.req()), Err(PlacementError::OverCapacity { needed: 8, free: 4 }));
}

#[test]
fn capacity_forces_the_only_valid_layout() {
    // Brokers 1 and 2 must hold every partition; greedy alone would put 3 and 4 in first.
    let brokers =
        vec![broker(1, None, Some(4)), broker(2, None, Some(4)), broker(3, None, Some(2)), broker(4, None, Some(2))];
    let case = Case::new(brokers, 4, 3);
    for strategy in [Strategy::RoundRobin, Strategy::Range] {
        let a = assign(strategy, &case.req()).expect("feasible");
        assert_eq!(check_rules(&case, &a), Ok(()), "{strategy:?}: {a:?}");
        assert!(a.iter().all(|r| r.contains(&1) && r.contains(&2)), "{strategy:?}: {a:?}");
    }
}

#[test]
fn errors_are_checked_in_order() {
    let none: Vec<BrokerSlot> = Vec::new();
    let req = |brokers: Vec<BrokerSlot>, partitions, rf| {
        assign(Strategy::RoundRobin, &Case::new(brokers, partitions, rf).req())
    };
    assert_eq!(req(plain(&[1]), -1, 0), Err(PlacementError::InvalidPartitionCount(-1)));
    assert_eq!(req(plain(&[1]), 1, 0), Err(PlacementError::InvalidReplicationFactor(0)));
    assert_eq!(req(none, 1, 1), Err(PlacementError::NoBrokers));
    assert_eq!(
        req(plain(&[1, 2]), 1, 3),
        Err(PlacementError::ReplicationFactorTooLarge { requested: 3, available: 2 })
    );
    assert_eq!(req(plain(&[1, 2]), 0, 2), Ok(Vec::new()));
    let mut all_out = Case::new(plain(&[1, 2]), 1, 1);
    all_out.excluded = [1, 2].into();
    assert_eq!(assign(Strategy::Range, &all_out.req()), Err(PlacementError::NoBrokers));
}

#[test]
fn rebalance_refuses_to_shrink() {
    let case = Case::new(plain(&[1, 2, 3]), 2, 2);
    let current = vec![vec![1, 2], vec![2, 3], vec![3, 1]];
    let err = PlacementError::PartitionCountDecrease { current: 3, requested: 2 };
    assert_eq!(rebalance(Strategy::Sticky, &current, &case.req()), Err(err));
    let current = vec![vec![1, 2], vec![1, 2, 3]];
    let err = PlacementError::ReplicationFactorDecrease { partition: 1, current: 3, requested: 2 };
    assert_eq!(rebalance(Strategy::RoundRobin, &current, &case.req()), Err(err));
}

#[test]
fn sticky_replaces_only_the_gone_broker() {
    let case = Case::new(plain(&[1, 2, 4]), 3, 2);
    let current = vec![vec![1, 2], vec![2, 3], vec![3, 1]];
    let plan = rebalance(Strategy::Sticky, &current, &case.req()).expect("plan");
    assert_eq!(plan.target, vec![vec![1, 2], vec![2, 4], vec![4, 1]]);
    let printed: Vec<String> = plan.moves.iter().map(ToString::to_string).collect();
    assert_eq!(printed, ["partition 1: replica 3 -> 4 (broker 3 left)", "partition 2: replica 3 -> 4 (broker 3 left)"]);
}

#[test]
fn sticky_drains_excluded_and_fixes_racks_and_duplicates() {
    let brokers = vec![
        broker(1, Some("a"), None),
        broker(2, Some("a"), None),
        broker(3, Some("b"), None),
        broker(4, Some("b"), None),
    ];
    let mut case = Case::new(brokers, 3, 2);
    case.excluded = [4].into();
    let current = vec![vec![1, 2], vec![4, 1], vec![3, 3]];
    let plan = rebalance(Strategy::Sticky, &current, &case.req()).expect("plan");
    assert_eq!(check_rules(&case, &plan.target), Ok(()));
    let reasons: Vec<(i32, Option<i32>, MoveReason)> =
        plan.moves.iter().map(|m| (m.partition, m.from, m.reason)).collect();
    assert_eq!(
        reasons,
        [
            (0, Some(2), MoveReason::RackRule),
            (1, Some(4), MoveReason::BrokerExcluded(4)),
            (2, Some(3), MoveReason::Duplicate(3))
        ]
    );
    assert_eq!(plan.target, vec![vec![1, 3], vec![3, 1], vec![3, 2]]);
}

#[test]
fn sticky_moves_replicas_onto_a_new_broker_for_balance() {
    let before = Case::new(plain(&[1, 2, 3]), 6, 2);
    let current = rr(&before);
    let after = Case::new(plain(&[1, 2, 3, 4]), 6, 2);
    let plan = rebalance(Strategy::Sticky, &current, &after.req()).expect("plan");
    assert_eq!(plan.moves.len(), 3);
    assert!(plan.moves.iter().all(|m| m.to == 4 && m.reason == MoveReason::Balance), "{:?}", plan.moves);
    assert_eq!(check_rules(&after, &plan.target), Ok(()));
    let recomputed = rebalance(Strategy::RoundRobin, &current, &after.req()).expect("plan");
    assert!(recomputed.moves.len() >= plan.moves.len());
}

#[test]
fn sticky_places_added_partitions_and_replicas() {
    let case = Case::new(plain(&[1, 2, 3]), 3, 2);
    let current = vec![vec![1, 2], vec![3]];
    let plan = rebalance(Strategy::Sticky, &current, &case.req()).expect("plan");
    assert_eq!(plan.target[..2], [vec![1, 2], vec![3, 1]]);
    assert_eq!(plan.moves.len(), 3);
    assert!(plan.moves.iter().all(|m| m.from.is_none() && m.reason == MoveReason::Added));
    assert_eq!(plan.moves[0].to_string(), "partition 1: new replica -> 1 (replica added)");
}

#[test]
fn sticky_without_previous_assignment_is_round_robin() {
    let case = Case::new(plain(&[1, 2, 3]), 6, 2);
    let plan = rebalance(Strategy::Sticky, &Vec::new(), &case.req()).expect("plan");
    assert_eq!(plan.target, rr(&case));
    assert_eq!(plan.moves.len(), 12);
}

#[test]
fn errors_display_for_a_cli() {
    assert_eq!(
        PlacementError::OverCapacity { needed: 8, free: 6 }.to_string(),
        "not enough broker capacity: 8 replicas to place, only 6 fit"
    );
    let m = Move { partition: 3, from: Some(2), to: 4, reason: MoveReason::BrokerExcluded(2) };
    assert_eq!(m.to_string(), "partition 3: replica 2 -> 4 (broker 2 excluded)");
}

#[test]
fn sticky_keeps_the_most_replicas_when_rack_and_capacity_rules_overlap() {
    // Broker 2 may hold one replica. Keeping it in partition 0 (where rack a has two) would force two
    // moves; the maximum matching drops it there instead and keeps it in partition 1: one move.
    let brokers = vec![
        broker(1, Some("a"), None),
        broker(2, Some("a"), Some(1)),
        broker(3, Some("b"), None),
        broker(4, Some("b"), None),
    ];
    let case = Case::new(brokers, 2, 2);
    let current = vec![vec![2, 1], vec![3, 2]];
    let plan = rebalance(Strategy::Sticky, &current, &case.req()).expect("plan");
    assert_eq!(plan.target, vec![vec![4, 1], vec![3, 2]]);
    let printed: Vec<String> = plan.moves.iter().map(ToString::to_string).collect();
    assert_eq!(printed, ["partition 0: replica 2 -> 4 (rack rule)"]);
}

#[test]
fn balancing_respects_its_budget() {
    let current = rr(&Case::new(plain(&[1, 2, 3]), 6, 2));
    let after = Case::new(plain(&[1, 2, 3, 4]), 6, 2);
    let ctx = engine::Ctx::new(&after.req()).expect("valid request");
    let review = engine::Review::of(&ctx, &current);
    let mut original = vec![Vec::new(); ctx.partitions];
    review.valid.iter().for_each(|&(p, _, b)| original[p].push(b));
    for (limit, moves) in [(Some(0), 0), (Some(1), 1), (Some(2), 2), (None, 3)] {
        let mut build = build::Build::new(&ctx);
        review.valid.iter().for_each(|&(p, pos, b)| build.fix(p, pos, b));
        build.polish(limit.map(|limit| build::Budget { original: &original, limit }).as_ref());
        let target = build.finish();
        assert_eq!(engine::diff(&current, &target, |_, _, _| MoveReason::Balance).len(), moves, "limit {limit:?}");
    }
}
