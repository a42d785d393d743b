//! The state machine without a network: exact outcomes of each command, and a property test
//! over random command sequences (invariants after every step, determinism, monotonic
//! epochs, producer ids never handed out twice).

use std::collections::BTreeMap;

use proptest::prelude::*;
use uuid::Uuid;

use super::{Applied, ClusterState, Command, Rejected};

fn register(id: i32) -> Command {
    register_as(id, Uuid::from_u128(id as u128 + 1), Uuid::from_u128(1000 + id as u128))
}

/// A registration of node `id` by the process `incarnation` on the data directory `storage`.
fn register_as(id: i32, incarnation: Uuid, storage: Uuid) -> Command {
    Command::RegisterBroker {
        node_id: id,
        incarnation,
        host: "127.0.0.1".into(),
        port: 9000 + id,
        rack: None,
        internal_address: format!("127.0.0.1:{}", 19000 + id),
        storage_id: Some(storage),
        max_replicas: None,
    }
}

/// Applies `commands` from log index 1, checking the invariants after each.
fn run(state: &mut ClusterState, commands: &[Command]) -> Vec<Result<Applied, Rejected>> {
    let first = state.brokers.values().map(|b| b.epoch).max().unwrap_or(0) + 1;
    commands
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let r = state.apply(first + i as u64, c);
            if let Err(e) = state.validate() {
                panic!("after {c:?}: {e}");
            }
            r
        })
        .collect()
}

fn create(name: &str, assignment: Vec<Vec<i32>>) -> Command {
    Command::CreateTopic {
        name: name.into(),
        id: Uuid::from_u128(name.bytes().map(u128::from).sum::<u128>() + 7),
        configs: BTreeMap::new(),
        assignment,
        leader_epochs: BTreeMap::new(),
    }
}

fn three_live_brokers() -> ClusterState {
    let mut s = ClusterState::default();
    run(&mut s, &[register(1), register(2), register(3)]);
    for id in 1..=3 {
        let epoch = s.brokers[&id].epoch;
        s.apply(100 + id as u64, &Command::UnfenceBroker { node_id: id, epoch }).expect("unfence");
    }
    s
}

#[test]
fn a_broker_registers_fenced_with_its_log_index_as_epoch_and_is_unfenced() {
    let mut s = ClusterState::default();
    assert_eq!(s.apply(7, &register(1)), Ok(Applied::Registered { epoch: 7 }));
    assert!(s.brokers[&1].fenced, "registered fenced");
    assert_eq!(s.live_brokers().count(), 0);
    assert_eq!(
        s.apply(8, &Command::UnfenceBroker { node_id: 1, epoch: 6 }),
        Err(Rejected::StaleBrokerEpoch { node_id: 1, epoch: 6, current: 7 })
    );
    s.apply(9, &Command::UnfenceBroker { node_id: 1, epoch: 7 }).expect("unfence");
    assert_eq!(s.live_brokers().map(|b| b.node_id).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn a_new_topic_is_led_by_its_first_live_replica() {
    let mut s = three_live_brokers();
    s.apply(200, &Command::FenceBroker { node_id: 2, epoch: s.brokers[&2].epoch }).expect("fence");
    let Ok(Applied::Topic { record, .. }) = s.apply(201, &create("t", vec![vec![2, 3], vec![1, 2]])) else {
        panic!("create failed")
    };
    assert_eq!(record.partitions[0].leader, Some(3), "2 is fenced");
    assert_eq!(record.partitions[1].leader, Some(1));
    assert_eq!(record.partitions[0].isr, vec![2, 3], "a new partition's ISR is all its replicas");
    assert_eq!(s.apply(202, &create("t", vec![vec![1]])), Err(Rejected::TopicExists("t".into())));
    assert_eq!(s.apply(203, &create("u", vec![vec![9]])), Err(Rejected::UnknownBroker(9)));
    assert!(matches!(s.apply(204, &create("u", vec![vec![1, 1]])), Err(Rejected::Invalid(_))));
    s.validate().expect("valid");
}

#[test]
fn fencing_moves_leadership_to_a_live_isr_member_and_keeps_the_last_member() {
    let mut s = three_live_brokers();
    s.apply(200, &create("t", vec![vec![1, 2], vec![1]])).expect("create");
    s.apply(201, &Command::FenceBroker { node_id: 1, epoch: s.brokers[&1].epoch }).expect("fence");
    let p = &s.topics["t"].partitions;
    assert_eq!((p[0].leader, p[0].leader_epoch, p[0].isr.clone()), (Some(2), 1, vec![2]));
    assert_eq!((p[1].leader, p[1].leader_epoch, p[1].isr.clone()), (None, 1, vec![1]), "offline, ISR kept");
    // Back: it leads the partition only it can serve; the other stays with 2.
    s.apply(202, &Command::UnfenceBroker { node_id: 1, epoch: s.brokers[&1].epoch }).expect("unfence");
    let p = &s.topics["t"].partitions;
    assert_eq!((p[0].leader, p[0].leader_epoch), (Some(2), 1));
    assert_eq!((p[1].leader, p[1].leader_epoch), (Some(1), 2));
    s.validate().expect("valid");
}

#[test]
fn a_restart_registers_anew_and_the_old_epoch_is_stale() {
    let mut s = three_live_brokers();
    s.apply(200, &create("t", vec![vec![1]])).expect("create");
    let old = s.brokers[&1].epoch;
    s.apply(201, &register(1)).expect("re-register");
    assert_eq!(s.topics["t"].partitions[0].leader, None, "a re-registered broker leads nothing until unfenced");
    assert!(matches!(
        s.apply(202, &Command::FenceBroker { node_id: 1, epoch: old }),
        Err(Rejected::StaleBrokerEpoch { .. })
    ));
    s.apply(203, &Command::UnfenceBroker { node_id: 1, epoch: 201 }).expect("unfence");
    assert_eq!(s.topics["t"].partitions[0].leader, Some(1));
}

#[test]
fn a_last_replica_back_with_an_empty_disk_does_not_lead_again() {
    let mut s = three_live_brokers();
    // "solo" has one replica, on 3; "shared" three.
    run(&mut s, &[create("solo", vec![vec![3]]), create("shared", vec![vec![3, 1, 2]])]);
    let fence = Command::FenceBroker { node_id: 3, epoch: s.brokers[&3].epoch };
    run(&mut s, &[fence]);
    assert_eq!(s.topics["solo"].partitions[0].leader, None, "offline while its only replica is down");
    assert_eq!(s.topics["solo"].partitions[0].isr, vec![3], "the last member stays in the ISR");
    // Node 3 comes back on a new data directory (same id): it must not lead "solo" from an
    // empty log; with its old directory it would.
    let mut again = s.clone();
    let same_disk = register_as(3, Uuid::from_u128(77), Uuid::from_u128(1003));
    let new_disk = register_as(3, Uuid::from_u128(78), Uuid::from_u128(2003));
    for (state, register, leads) in [(&mut again, same_disk, true), (&mut s, new_disk, false)] {
        run(state, &[register]);
        let epoch = state.brokers[&3].epoch;
        run(state, &[Command::UnfenceBroker { node_id: 3, epoch }]);
        let solo = &state.topics["solo"].partitions[0];
        assert_eq!(solo.leader.is_some(), leads, "{solo:?}");
        assert_eq!(solo.last_replica_lost, !leads);
        let shared = &state.topics["shared"].partitions[0];
        assert!(!shared.isr.contains(&3), "a re-registered broker rejoins the ISR only by catching up");
    }
}

#[test]
fn partition_changes_are_checked_against_the_partition_epoch() {
    let mut s = three_live_brokers();
    s.apply(200, &create("t", vec![vec![1, 2, 3]])).expect("create");
    let change = |epoch, leader, isr: Vec<i32>| Command::ChangePartition {
        topic: "t".into(),
        partition: 0,
        partition_epoch: epoch,
        leader,
        isr,
    };
    s.apply(201, &change(0, Some(1), vec![1, 2])).expect("shrink");
    assert_eq!(s.topics["t"].partitions[0].leader_epoch, 0, "same leader, same leader epoch");
    assert!(matches!(s.apply(202, &change(0, Some(2), vec![2])), Err(Rejected::StalePartitionEpoch { .. })));
    assert!(matches!(s.apply(203, &change(1, Some(3), vec![1, 2])), Err(Rejected::Invalid(_))), "leader outside ISR");
    s.apply(204, &change(1, Some(2), vec![2])).expect("elect 2");
    let p = &s.topics["t"].partitions[0];
    assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (Some(2), 1, 2));
}

#[test]
fn an_adopted_topic_keeps_its_epochs_and_the_producer_id_floor_only_rises() {
    let mut s = three_live_brokers();
    let adopt = Command::CreateTopic {
        name: "old".into(),
        id: Uuid::from_u128(99),
        configs: BTreeMap::new(),
        assignment: vec![vec![1], vec![1]],
        leader_epochs: BTreeMap::from([(1, 4)]),
    };
    s.apply(200, &adopt).expect("adopt");
    let epochs: Vec<i32> = s.topics["old"].partitions.iter().map(|p| p.leader_epoch).collect();
    assert_eq!(epochs, vec![0, 4]);
    s.apply(201, &Command::RaiseProducerIdFloor { floor: 5000 }).expect("raise");
    s.apply(202, &Command::RaiseProducerIdFloor { floor: 10 }).expect("a lower floor changes nothing");
    assert_eq!(
        s.apply(203, &Command::AllocateProducerIds { node_id: 1, count: 1 }),
        Ok(Applied::ProducerIds { first: 5000, count: 1 })
    );
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut s = three_live_brokers();
    let a = s.apply(200, &Command::AllocateProducerIds { node_id: 1, count: 1000 });
    let b = s.apply(201, &Command::AllocateProducerIds { node_id: 2, count: 1000 });
    assert_eq!(a, Ok(Applied::ProducerIds { first: 0, count: 1000 }));
    assert_eq!(b, Ok(Applied::ProducerIds { first: 1000, count: 1000 }));
    assert!(s.apply(202, &Command::AllocateProducerIds { node_id: 9, count: 1 }).is_err());
    assert!(s.apply(203, &Command::AllocateProducerIds { node_id: 1, count: 0 }).is_err());
}

#[test]
fn topics_grow_change_configs_and_go() {
    let mut s = three_live_brokers();
    s.apply(200, &create("t", vec![vec![1]])).expect("create");
    let Ok(Applied::Topic { record, .. }) =
        s.apply(201, &Command::CreatePartitions { name: "t".into(), assignment: vec![vec![2], vec![3]] })
    else {
        panic!("grow failed")
    };
    assert_eq!(record.partitions.iter().map(|p| p.leader).collect::<Vec<_>>(), vec![Some(1), Some(2), Some(3)]);
    let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
    s.apply(202, &Command::AlterConfigs { name: "t".into(), configs: configs.clone() }).expect("alter");
    assert_eq!(s.topics["t"].configs, configs);
    assert!(s.apply(203, &Command::UnregisterBroker { node_id: 2 }).is_err(), "2 holds a replica");
    s.apply(204, &Command::DeleteTopic { name: "t".into() }).expect("delete");
    assert_eq!(s.apply(205, &Command::DeleteTopic { name: "t".into() }), Err(Rejected::UnknownTopic("t".into())));
    s.apply(206, &Command::UnregisterBroker { node_id: 2 }).expect("now it may go");
    assert!(!s.brokers.contains_key(&2));
}

fn partition(s: &ClusterState, topic: &str) -> super::PartitionRecord {
    s.topics[topic].partitions[0].clone()
}

#[test]
fn a_reassignment_adds_the_new_replicas_then_drops_the_old_ones_once_the_new_are_in_sync() {
    let mut s = three_live_brokers();
    let mut s4 = s.clone();
    run(&mut s4, &[register(4)]);
    s = s4;
    let epoch = s.brokers[&4].epoch;
    s.apply(300, &Command::UnfenceBroker { node_id: 4, epoch }).expect("unfence 4");
    run(&mut s, &[create("t", vec![vec![1, 2]])]);
    let reassign = |e, target: Option<Vec<i32>>| Command::ReassignPartition {
        topic: "t".into(),
        partition: 0,
        partition_epoch: e,
        target,
    };
    // Leader 1 leaves, 3 and 4 join: [3, 4, 2] -> the target, 1 is removed at the end.
    assert!(matches!(run(&mut s, &[reassign(0, Some(vec![3, 4, 2]))])[0], Ok(Applied::Done)));
    let p = partition(&s, "t");
    assert_eq!(p.replicas, vec![3, 4, 2, 1]);
    assert_eq!((p.adding.clone(), p.removing.clone()), (vec![3, 4], vec![1]));
    assert_eq!((p.isr.clone(), p.leader), (vec![1, 2], Some(1)), "the ISR and leader do not change yet");
    let complete = |e| Command::CompleteReassignment { topic: "t".into(), partition: 0, partition_epoch: e };
    assert!(run(&mut s, &[complete(1)])[0].is_err(), "3 and 4 are not in sync yet");
    // 3 joins (the leader's AlterPartition): still waiting for 4.
    let grow = |e, isr: Vec<i32>| Command::ChangePartition {
        topic: "t".into(),
        partition: 0,
        partition_epoch: e,
        leader: Some(1),
        isr,
    };
    run(&mut s, &[grow(1, vec![1, 2, 3])]);
    assert!(run(&mut s, &[complete(2)])[0].is_err(), "4 is not in sync yet");
    run(&mut s, &[grow(2, vec![1, 2, 3, 4])]);
    let before = partition(&s, "t");
    assert!(matches!(run(&mut s, &[complete(3)])[0], Ok(Applied::Done)));
    let p = partition(&s, "t");
    assert_eq!(p.replicas, vec![3, 4, 2]);
    assert_eq!(p.isr, vec![2, 3, 4], "the removed replica left the ISR");
    assert_eq!(p.leader, Some(3), "the removed leader handed over to the target's first in-sync replica");
    assert_eq!(p.leader_epoch, before.leader_epoch + 1);
    assert!(!p.reassigning());
    assert_eq!(run(&mut s, &[reassign(4, None)])[0], Err(Rejected::NoReassignment { topic: "t".into(), partition: 0 }));
}

#[test]
fn a_cancelled_reassignment_restores_the_original_replicas() {
    let mut s = three_live_brokers();
    run(&mut s, &[create("t", vec![vec![1, 2]])]);
    run(
        &mut s,
        &[Command::ReassignPartition { topic: "t".into(), partition: 0, partition_epoch: 0, target: Some(vec![2, 3]) }],
    );
    run(
        &mut s,
        &[Command::ChangePartition {
            topic: "t".into(),
            partition: 0,
            partition_epoch: 1,
            leader: Some(1),
            isr: vec![1, 2, 3],
        }],
    );
    run(&mut s, &[Command::ReassignPartition { topic: "t".into(), partition: 0, partition_epoch: 2, target: None }]);
    let p = partition(&s, "t");
    // The original members, in the order the reassignment listed them (as Kafka's
    // replicas-minus-adding); the leader stays.
    assert_eq!((p.replicas, p.isr, p.leader), (vec![2, 1], vec![1, 2], Some(1)));
    assert!(p.adding.is_empty() && p.removing.is_empty());
}

fn command() -> impl Strategy<Value = Command> {
    let id = 1..=4i32;
    let name = prop::sample::select(vec!["a", "b", "c"]);
    let replicas = prop::collection::btree_set(1..=4i32, 1..=3).prop_map(|s| s.into_iter().collect::<Vec<_>>());
    prop_oneof![
        id.clone().prop_map(register),
        (id.clone(), 0u64..40).prop_map(|(node_id, epoch)| Command::FenceBroker { node_id, epoch }),
        (id.clone(), 0u64..40).prop_map(|(node_id, epoch)| Command::UnfenceBroker { node_id, epoch }),
        (name.clone(), prop::collection::vec(replicas.clone(), 1..4), any::<u64>()).prop_map(|(n, a, salt)| {
            Command::CreateTopic {
                name: n.into(),
                id: Uuid::from_u64_pair(salt | 1, 0),
                configs: BTreeMap::new(),
                assignment: a,
                leader_epochs: BTreeMap::new(),
            }
        }),
        name.clone().prop_map(|n| Command::DeleteTopic { name: n.into() }),
        (name.clone(), prop::collection::vec(replicas.clone(), 1..3))
            .prop_map(|(n, a)| Command::CreatePartitions { name: n.into(), assignment: a }),
        (name.clone(), 0..3i32, 0..4i32, prop::option::of(id.clone()), replicas.clone()).prop_map(
            |(n, p, e, leader, isr)| {
                Command::ChangePartition { topic: n.into(), partition: p, partition_epoch: e, leader, isr }
            }
        ),
        (name.clone(), 0..3i32, 0..4i32, prop::option::of(replicas)).prop_map(|(n, p, e, target)| {
            Command::ReassignPartition { topic: n.into(), partition: p, partition_epoch: e, target }
        }),
        (name, 0..3i32, 0..4i32).prop_map(|(n, p, e)| Command::CompleteReassignment {
            topic: n.into(),
            partition: p,
            partition_epoch: e
        }),
        (id, 1..2000i64).prop_map(|(node_id, count)| Command::AllocateProducerIds { node_id, count }),
        (0..5000i64).prop_map(|floor| Command::RaiseProducerIdFloor { floor }),
        (1..=4i32).prop_map(|node_id| Command::UnregisterBroker { node_id }),
    ]
}

proptest! {
    #[test]
    fn random_command_sequences_keep_the_invariants(commands in prop::collection::vec(command(), 1..60)) {
        let mut s = ClusterState::default();
        let mut replay = ClusterState::default();
        let mut blocks = Vec::new();
        let mut epochs: BTreeMap<(String, usize, uuid::Uuid), i32> = BTreeMap::new();
        for (i, c) in commands.iter().enumerate() {
            let before = s.clone();
            let r = s.apply(i as u64 + 1, c);
            prop_assert_eq!(replay.apply(i as u64 + 1, c), r.clone(), "deterministic");
            if r.is_err() {
                prop_assert_eq!(&s, &before, "a rejected command changes nothing");
            }
            if let Err(e) = s.validate() {
                return Err(TestCaseError::fail(format!("after {c:?}: {e}")));
            }
            if let Ok(Applied::ProducerIds { first, count }) = r {
                blocks.push((first, count));
            }
            for (name, t) in &s.topics {
                for (p, rec) in t.partitions.iter().enumerate() {
                    let last = epochs.entry((name.clone(), p, t.id)).or_insert(rec.leader_epoch);
                    prop_assert!(rec.leader_epoch >= *last, "leader epoch went down");
                    *last = rec.leader_epoch;
                }
            }
        }
        prop_assert_eq!(&s, &replay);
        blocks.sort();
        for w in blocks.windows(2) {
            prop_assert!(w[0].0 + w[0].1 <= w[1].0, "producer-id blocks overlap: {:?}", w);
        }
    }
}

#[test]
fn dynamic_broker_configs_are_set_replaced_removed_and_survive_a_snapshot() {
    let mut s = three_live_brokers();
    let set = |resource: &str, pairs: &[(&str, &str)]| Command::AlterBrokerConfigs {
        resource: resource.into(),
        configs: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    s.apply(300, &set("", &[("log.retention.ms", "1000"), ("num.partitions", "4")])).expect("cluster default");
    s.apply(301, &set("2", &[("log.retention.ms", "5")])).expect("one broker");
    s.apply(302, &set("", &[("num.partitions", "6")])).expect("replaced as a whole");
    assert_eq!(s.broker_configs[""], BTreeMap::from([("num.partitions".to_string(), "6".to_string())]));
    assert_eq!(s.broker_configs["2"]["log.retention.ms"], "5");
    assert!(matches!(s.apply(303, &set("broker-x", &[("a", "b")])), Err(Rejected::Invalid(_))));
    let json = serde_json::to_vec(&s).expect("encode");
    let back: ClusterState = serde_json::from_slice(&json).expect("decode");
    assert_eq!(back, s);
    s.apply(304, &set("2", &[])).expect("removed");
    assert!(!s.broker_configs.contains_key("2"));
    // A snapshot from before dynamic broker configs existed still decodes.
    let mut old: serde_json::Value = serde_json::to_value(&s).expect("value");
    old.as_object_mut().expect("object").remove("broker_configs");
    let decoded: ClusterState = serde_json::from_value(old).expect("old snapshot");
    assert!(decoded.broker_configs.is_empty());
}
