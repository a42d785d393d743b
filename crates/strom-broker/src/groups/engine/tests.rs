//! Engine tests without sockets or clocks: events in, exact replies and writes out.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;
const DELAY: i32 = 3_000;

fn cfg() -> EngineConfig {
    EngineConfig {
        min_session_timeout_ms: 6_000,
        max_session_timeout_ms: 300_000,
        initial_rebalance_delay_ms: DELAY,
        max_size: i32::MAX,
        new_member_join_timeout_ms: 300_000,
    }
}

fn at(ms: i64) -> Now {
    Now { mono_ms: ms, wall_ms: 1_700_000_000_000 + ms }
}

fn protocols(meta: &'static [u8]) -> Vec<Protocol> {
    vec![Protocol { name: "range".into(), metadata: Bytes::from_static(meta) }]
}

/// A group under test plus a waiter counter and a ledger of answered waiters.
struct H {
    g: Group,
    next: WaiterId,
    answered: HashSet<WaiterId>,
    issued: HashSet<WaiterId>,
}

impl H {
    fn new() -> H {
        H { g: Group::new("g", cfg(), at(0)), next: 1, answered: HashSet::new(), issued: HashSet::new() }
    }

    fn record(&mut self, out: &Outputs) {
        for r in &out.replies {
            let id = match r {
                Reply::Join(id, _) | Reply::Sync(id, _) => *id,
            };
            assert!(self.issued.contains(&id), "reply to unknown waiter {id}");
            assert!(self.answered.insert(id), "waiter {id} answered twice");
        }
        if let Some(PersistKind::StaticRejoin { waiter, .. }) = out.persist.iter().map(|p| &p.kind).next() {
            assert!(self.issued.contains(waiter));
        }
        self.g.validate().expect("invariants hold");
    }

    fn waiter(&mut self) -> WaiterId {
        let w = self.next;
        self.next += 1;
        self.issued.insert(w);
        w
    }

    fn join(&mut self, t: i64, member_id: &str, instance: Option<&str>, gen_id: &str) -> (WaiterId, Outputs) {
        let w = self.waiter();
        let req = JoinRequest {
            member_id: member_id.into(),
            group_instance_id: instance.map(String::from),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: protocols(b"sub"),
            require_known_member_id: true,
            supports_skip_assignment: false,
            generated_member_id: gen_id.into(),
        };
        let mut out = Outputs::default();
        self.g.join(at(t), w, req, &mut out);
        self.record(&out);
        (w, out)
    }

    fn sync(
        &mut self,
        t: i64,
        member_id: &str,
        generation: i32,
        assignments: &[(&str, &'static [u8])],
    ) -> (WaiterId, Outputs) {
        let w = self.waiter();
        let req = SyncRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            generation_id: generation,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments: assignments.iter().map(|(m, a)| (m.to_string(), Bytes::from_static(a))).collect(),
        };
        let mut out = Outputs::default();
        self.g.sync(at(t), w, req, &mut out);
        self.record(&out);
        (w, out)
    }

    fn tick(&mut self, t: i64) -> Outputs {
        let mut out = Outputs::default();
        self.g.tick(at(t), &mut out);
        self.record(&out);
        out
    }

    fn persisted(&mut self, t: i64, p: &Persist) -> Outputs {
        let mut out = Outputs::default();
        self.g.on_persisted(at(t), p.kind.clone(), Ok(()), &mut out);
        self.record(&out);
        out
    }

    /// Joins one dynamic member through MEMBER_ID_REQUIRED; returns its id.
    fn first_join(&mut self, t: i64, id: &str) -> WaiterId {
        let (w, out) = self.join(t, "", None, id);
        assert_eq!(out.replies, vec![Reply::Join(w, JoinResult::error(id, ResponseError::MemberIdRequired))]);
        let (w, out) = self.join(t, id, None, "unused");
        assert!(out.replies.is_empty(), "the join waits for the rebalance: {out:?}");
        w
    }

    /// A one-member Stable group at generation 1 with member `a` (assignment `A`).
    fn stable_with_a(&mut self) {
        let w = self.first_join(0, "a");
        let out = self.tick(DELAY as i64);
        let Reply::Join(id, r) = &out.replies[0] else { panic!("{out:?}") };
        assert_eq!((*id, r.generation_id, r.leader.as_str()), (w, 1, "a"));
        let (ws, out) = self.sync(DELAY as i64, "a", 1, &[("a", b"A")]);
        let p = out.persist[0].clone();
        let out = self.persisted(DELAY as i64, &p);
        assert_eq!(out.replies.len(), 1);
        assert!(matches!(&out.replies[0], Reply::Sync(id, r) if *id == ws && r.assignment == Bytes::from_static(b"A")));
        assert_eq!(self.g.state(), GroupState::Stable);
    }
}

fn join_reply(out: &Outputs, waiter: WaiterId) -> &JoinResult {
    out.replies
        .iter()
        .find_map(|r| match r {
            Reply::Join(id, res) if *id == waiter => Some(res),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no join reply for {waiter}: {out:?}"))
}

fn sync_reply(out: &Outputs, waiter: WaiterId) -> &SyncResult {
    out.replies
        .iter()
        .find_map(|r| match r {
            Reply::Sync(id, res) if *id == waiter => Some(res),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no sync reply for {waiter}: {out:?}"))
}

#[test]
fn first_member_gets_an_id_then_leads_generation_one_after_the_initial_delay() {
    let mut h = H::new();
    let w = h.first_join(0, "a");
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert_eq!(h.g.next_deadline(), Some(DELAY as i64));
    assert!(h.tick(DELAY as i64 - 1).replies.is_empty(), "the initial delay runs its course");
    let out = h.tick(DELAY as i64);
    let expected = JoinResult {
        error: None,
        generation_id: 1,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        leader: "a".into(),
        skip_assignment: false,
        member_id: "a".into(),
        members: vec![JoinedMember {
            member_id: "a".into(),
            group_instance_id: None,
            metadata: Bytes::from_static(b"sub"),
        }],
    };
    assert_eq!(out.replies, vec![Reply::Join(w, expected)]);
    assert_eq!(h.g.state(), GroupState::CompletingRebalance);
}

#[test]
fn assignment_is_handed_out_only_once_durable() {
    let mut h = H::new();
    h.first_join(0, "a");
    h.tick(3_000);
    let (w, out) = h.sync(3_000, "a", 1, &[("a", b"A")]);
    assert!(out.replies.is_empty(), "no answer before the record is durable");
    assert_eq!(out.persist.len(), 1);
    let p = &out.persist[0];
    assert_eq!(p.record.generation, 1);
    assert_eq!(p.record.members[0].assignment, Bytes::from_static(b"A"));
    let out = h.persisted(3_001, &p.clone());
    assert_eq!(sync_reply(&out, w).assignment, Bytes::from_static(b"A"));
    assert_eq!(h.g.state(), GroupState::Stable);
}

#[test]
fn failed_assignment_write_rebalances() {
    let mut h = H::new();
    h.first_join(0, "a");
    h.tick(3_000);
    let (w, out) = h.sync(3_000, "a", 1, &[("a", b"A")]);
    let mut out2 = Outputs::default();
    h.g.on_persisted(at(3_001), out.persist[0].kind.clone(), Err(ResponseError::CoordinatorNotAvailable), &mut out2);
    h.record(&out2);
    assert_eq!(sync_reply(&out2, w).error, Some(ResponseError::CoordinatorNotAvailable));
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn second_member_triggers_rebalance_and_completes_once_all_rejoin() {
    let mut h = H::new();
    h.stable_with_a();
    let (wb, out) = h.join(5_000, "", None, "b");
    assert_eq!(join_reply(&out, wb).error, Some(ResponseError::MemberIdRequired));
    let (wb, out) = h.join(5_000, "b", None, "x");
    assert!(out.replies.is_empty());
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert_eq!(h.g.heartbeat(at(5_100), "a", None, 1), Err(ResponseError::RebalanceInProgress));
    // Commits are still accepted while preparing (Kafka relies on the heartbeat to signal).
    assert_eq!(h.g.validate_commit(at(5_100), 1, "a", None), Ok(()));
    let (wa, out) = h.join(5_200, "a", None, "x");
    let ra = join_reply(&out, wa);
    let rb = join_reply(&out, wb);
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    assert_eq!(ra.leader, "a");
    assert_eq!(ra.members.iter().map(|m| m.member_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(rb.members.is_empty(), "only the leader gets the member list");
    // A follower syncing before the leader waits; the leader's sync completes both.
    let (sb, out) = h.sync(5_300, "b", 2, &[]);
    assert!(out.replies.is_empty());
    assert_eq!(h.g.validate_commit(at(5_300), 2, "b", None), Err(ResponseError::RebalanceInProgress));
    let (sa, out) = h.sync(5_300, "a", 2, &[("a", b"A"), ("b", b"B")]);
    let out = h.persisted(5_301, &out.persist[0].clone());
    assert_eq!(sync_reply(&out, sa).assignment, Bytes::from_static(b"A"));
    assert_eq!(sync_reply(&out, sb).assignment, Bytes::from_static(b"B"));
    assert_eq!(h.g.validate_commit(at(5_400), 1, "b", None), Err(ResponseError::IllegalGeneration));
    assert_eq!(h.g.validate_commit(at(5_400), 2, "zz", None), Err(ResponseError::UnknownMemberId));
    assert_eq!(h.g.validate_commit(at(5_400), -1, "", None), Err(ResponseError::UnknownMemberId));
    assert_eq!(h.g.validate_commit(at(5_400), 2, "b", None), Ok(()));
}

#[test]
fn silent_member_is_evicted_after_its_session_timeout() {
    let mut h = H::new();
    h.stable_with_a();
    let (_, _) = h.join(5_000, "", None, "b");
    let (wb, _) = h.join(5_000, "b", None, "x");
    let (wa, out) = h.join(5_000, "a", None, "x");
    assert_eq!(join_reply(&out, wa).generation_id, 2);
    assert_eq!(join_reply(&out, wb).generation_id, 2);
    let (_, out) = h.sync(5_000, "a", 2, &[("a", b"A"), ("b", b"B")]);
    h.persisted(5_000, &out.persist[0].clone());
    let (_, _) = h.sync(5_000, "b", 2, &[]);
    // a keeps heartbeating; b goes silent.
    for t in (6_000..=14_000).step_by(2_000) {
        assert_eq!(h.g.heartbeat(at(t), "a", None, 2), Ok(()));
        assert!(h.tick(t).replies.is_empty());
    }
    assert_eq!(h.g.state(), GroupState::Stable);
    assert_eq!(h.g.next_deadline(), Some(15_000), "b's session ends 10 s after its sync");
    h.tick(15_000);
    assert!(h.g.member("b").is_none(), "b was evicted");
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert_eq!(h.g.heartbeat(at(15_100), "b", None, 2), Err(ResponseError::UnknownMemberId));
    assert_eq!(h.g.heartbeat(at(15_100), "a", None, 2), Err(ResponseError::RebalanceInProgress));
    let (wa, out) = h.join(15_200, "a", None, "x");
    let r = join_reply(&out, wa);
    assert_eq!((r.generation_id, r.members.len()), (3, 1));
}

#[test]
fn leave_rebalances_at_once() {
    let mut h = H::new();
    h.stable_with_a();
    h.join(5_000, "", None, "b");
    let (wb, _) = h.join(5_000, "b", None, "x");
    let (_, _) = h.join(5_000, "a", None, "x");
    let (_, out) = h.sync(5_000, "a", 2, &[("a", b"A"), ("b", b"B")]);
    h.persisted(5_000, &out.persist[0].clone());
    h.sync(5_000, "b", 2, &[]);
    let _ = wb;
    let mut out = Outputs::default();
    let res = h.g.leave(at(6_000), &[LeaveMember { member_id: "b".into(), group_instance_id: None }], &mut out);
    h.record(&out);
    assert_eq!(res, Ok(vec![Ok(())]));
    assert_eq!(h.g.state(), GroupState::PreparingRebalance, "no waiting for a timeout");
    let res = h.g.leave(at(6_000), &[LeaveMember { member_id: "nobody".into(), group_instance_id: None }], &mut out);
    assert_eq!(res, Ok(vec![Err(ResponseError::UnknownMemberId)]));
    // The last member leaving empties the group at once.
    let mut out = Outputs::default();
    let res = h.g.leave(at(6_100), &[LeaveMember { member_id: "a".into(), group_instance_id: None }], &mut out);
    h.record(&out);
    assert_eq!(res, Ok(vec![Ok(())]));
    assert_eq!(h.g.state(), GroupState::Empty);
    assert_eq!(out.persist.iter().map(|p| &p.kind).collect::<Vec<_>>(), [&PersistKind::Empty]);
    assert_eq!(h.g.generation(), 3);
    assert_eq!(h.g.validate_commit(at(6_200), -1, "", None), Ok(()), "anyone may commit for an empty group");
}

#[test]
fn member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped() {
    let mut h = H::new();
    h.stable_with_a();
    h.join(5_000, "", None, "b");
    let (wb, _) = h.join(5_000, "b", None, "x");
    // a never rejoins (but its heartbeats keep it from a session timeout).
    let deadline = 5_000 + i64::from(REBALANCE);
    for t in (7_000..deadline).step_by(5_000) {
        assert_eq!(h.g.heartbeat(at(t), "a", None, 1), Err(ResponseError::RebalanceInProgress));
        h.tick(t);
    }
    assert_eq!(h.g.next_deadline(), Some(deadline));
    let out = h.tick(deadline);
    let r = join_reply(&out, wb);
    assert_eq!((r.generation_id, r.leader.as_str(), r.members.len()), (2, "b", 1), "b leads the new generation alone");
    assert!(h.g.member("a").is_none());
}

#[test]
fn follower_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let mut h = H::new();
    h.stable_with_a();
    h.join(5_000, "", None, "b");
    h.join(5_000, "b", None, "x");
    h.join(5_000, "a", None, "x");
    let (_, out) = h.sync(5_000, "a", 2, &[("a", b"A"), ("b", b"B")]);
    h.persisted(5_000, &out.persist[0].clone());
    for t in (7_000..35_000).step_by(2_000) {
        h.g.heartbeat(at(t), "a", None, 2).expect("a is fine");
        h.g.heartbeat(at(t), "b", None, 2).expect("b heartbeats but never syncs");
        h.tick(t);
    }
    h.tick(35_000);
    assert!(h.g.member("b").is_none());
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn bad_joins_get_their_error_codes() {
    let mut h = H::new();
    let w = h.waiter();
    let mut out = Outputs::default();
    let req = |session, ptype: &str, protos: Vec<Protocol>| JoinRequest {
        member_id: String::new(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "h".into(),
        session_timeout_ms: session,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: ptype.into(),
        protocols: protos,
        require_known_member_id: true,
        supports_skip_assignment: false,
        generated_member_id: "m".into(),
    };
    h.g.join(at(0), w, req(1_000, "consumer", protocols(b"")), &mut out);
    assert_eq!(join_reply(&out, w).error, Some(ResponseError::InvalidSessionTimeout));
    let w = h.waiter();
    h.g.join(at(0), w, req(SESSION, "", protocols(b"")), &mut out);
    assert_eq!(join_reply(&out, w).error, Some(ResponseError::InconsistentGroupProtocol));
    let w = h.waiter();
    h.g.join(at(0), w, req(SESSION, "consumer", vec![]), &mut out);
    assert_eq!(join_reply(&out, w).error, Some(ResponseError::InconsistentGroupProtocol));
    // A member id the group never issued.
    let (w, out) = h.join(0, "stranger", None, "x");
    assert_eq!(join_reply(&out, w).error, Some(ResponseError::UnknownMemberId));
    // A protocol no current member supports.
    h.stable_with_a();
    let w = h.waiter();
    let mut out = Outputs::default();
    let other = vec![Protocol { name: "roundrobin".into(), metadata: Bytes::new() }];
    h.g.join(at(4_000), w, req(SESSION, "consumer", other), &mut out);
    assert_eq!(join_reply(&out, w).error, Some(ResponseError::InconsistentGroupProtocol));
    // Stale or unknown syncs.
    let (w, out) = h.sync(4_000, "a", 7, &[]);
    assert_eq!(sync_reply(&out, w).error, Some(ResponseError::IllegalGeneration));
    let (w, out) = h.sync(4_000, "zz", 1, &[]);
    assert_eq!(sync_reply(&out, w).error, Some(ResponseError::UnknownMemberId));
    assert_eq!(h.g.heartbeat(at(4_000), "a", None, 0), Err(ResponseError::IllegalGeneration));
}

#[test]
fn static_member_rejoins_a_stable_group_without_a_rebalance_and_fences_the_old_id() {
    let mut h = H::new();
    let (w, _) = h.join(0, "", Some("inst-1"), "s1");
    let out = h.tick(3_000);
    assert_eq!(join_reply(&out, w).member_id, "s1", "static members skip MEMBER_ID_REQUIRED");
    let (_, out) = h.sync(3_000, "s1", 1, &[("s1", b"S")]);
    h.persisted(3_000, &out.persist[0].clone());
    // The process restarts and joins with no member id but the same instance id.
    let (w, out) = h.join(4_000, "", Some("inst-1"), "s2");
    assert!(out.replies.is_empty());
    let p = out.persist[0].clone();
    assert!(matches!(&p.kind, PersistKind::StaticRejoin { member_id, generation: 1, .. } if member_id == "s2"));
    assert_eq!(h.g.state(), GroupState::Stable, "no rebalance");
    let out = h.persisted(4_001, &p);
    let r = join_reply(&out, w);
    assert_eq!((r.error, r.generation_id, r.member_id.as_str()), (None, 1, "s2"));
    assert_eq!(r.leader, "s1", "an old client is told the old leader so it does not reassign");
    let (w, out) = h.sync(4_002, "s2", 1, &[]);
    assert_eq!(sync_reply(&out, w).assignment, Bytes::from_static(b"S"), "it keeps its assignment");
    assert_eq!(h.g.heartbeat(at(4_003), "s1", Some("inst-1"), 1), Err(ResponseError::FencedInstanceId));
    assert_eq!(h.g.validate_commit(at(4_003), 1, "s1", Some("inst-1")), Err(ResponseError::FencedInstanceId));
    assert_eq!(h.g.heartbeat(at(4_003), "s2", Some("inst-1"), 1), Ok(()));
}

#[test]
fn initial_delay_is_extended_while_members_keep_arriving() {
    let mut h = H::new();
    let wa = h.first_join(0, "a");
    let wb = h.first_join(2_000, "b");
    // a's delay ends at 3000, but b arrived meanwhile: wait another delay.
    assert!(h.tick(3_000).replies.is_empty());
    assert_eq!(h.g.next_deadline(), Some(6_000));
    let out = h.tick(6_000);
    assert_eq!(join_reply(&out, wa).generation_id, 1);
    assert_eq!(join_reply(&out, wb).generation_id, 1);
}

#[test]
fn group_record_restores_a_stable_group() {
    let mut h = H::new();
    h.stable_with_a();
    let record = h.g.record(None);
    let g2 = Group::from_record("g", cfg(), &record, at(100_000));
    g2.validate().expect("valid");
    assert_eq!(g2.state(), GroupState::Stable);
    assert_eq!(g2.generation(), 1);
    assert_eq!(g2.member("a").map(|m| m.assignment.clone()), Some(Bytes::from_static(b"A")));
    assert_eq!(g2.next_deadline(), Some(100_000 + i64::from(SESSION)));
    let mut g2 = g2;
    assert_eq!(g2.heartbeat(at(100_500), "a", None, 1), Ok(()));
    let empty = GroupRecord { members: vec![], leader: None, protocol_name: None, ..record };
    assert_eq!(Group::from_record("g", cfg(), &empty, at(0)).state(), GroupState::Empty);
}

#[test]
fn only_empty_groups_can_be_deleted() {
    let mut h = H::new();
    h.stable_with_a();
    assert_eq!(h.g.delete(at(5_000)), Err(ResponseError::NonEmptyGroup));
    let mut out = Outputs::default();
    h.g.leave(at(5_000), &[LeaveMember { member_id: "a".into(), group_instance_id: None }], &mut out).expect("left");
    assert_eq!(h.g.delete(at(5_000)), Ok(()));
    assert_eq!(h.g.state(), GroupState::Dead);
    let (w, out) = h.join(5_001, "", None, "z");
    assert_eq!(join_reply(&out, w).error, Some(ResponseError::CoordinatorNotAvailable));
}

#[test]
fn protocol_vote_picks_what_most_members_prefer() {
    let mut g = Group::new("g", cfg(), at(0));
    let mut out = Outputs::default();
    let p = |names: &[&str]| {
        names.iter().map(|n| Protocol { name: n.to_string(), metadata: Bytes::new() }).collect::<Vec<_>>()
    };
    for (i, names) in [["range", "roundrobin"], ["roundrobin", "range"], ["roundrobin", "range"]].iter().enumerate() {
        let req = JoinRequest {
            member_id: String::new(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: p(names),
            require_known_member_id: false,
            supports_skip_assignment: false,
            generated_member_id: format!("m{i}"),
        };
        g.join(at(0), i as u64, req, &mut out);
    }
    g.tick(at(3_000), &mut out);
    assert_eq!(g.describe().state, GroupState::PreparingRebalance, "members kept arriving: the delay is extended");
    g.tick(at(6_000), &mut out);
    assert_eq!(g.describe().state, GroupState::CompletingRebalance);
    assert_eq!(g.select_protocol(), "roundrobin");
}

/// Random event sequences: the invariants hold after every event, every waiter is answered at
/// most once, and once every member has left or expired every waiter has been answered.
#[test]
fn random_event_sequences_keep_invariants_and_answer_every_waiter() {
    let mut seed: u64 = 0x5eed;
    let mut rand = move |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for round in 0..200 {
        let mut h = H::new();
        let mut t = 0i64;
        let mut ids: Vec<String> = Vec::new();
        let mut fresh = 0;
        for _ in 0..60 {
            t += rand(4_000) as i64;
            match rand(7) {
                0 | 1 => {
                    fresh += 1;
                    let gen_id = format!("m{round}-{fresh}");
                    let (w, out) = h.join(t, "", None, &gen_id);
                    if join_reply(&out, w).error == Some(ResponseError::MemberIdRequired) {
                        ids.push(gen_id.clone());
                        h.join(t, &gen_id, None, "unused");
                    }
                }
                2 if !ids.is_empty() => {
                    let id = ids[rand(ids.len() as u64) as usize].clone();
                    h.join(t, &id, None, "unused");
                }
                3 if !ids.is_empty() => {
                    let id = ids[rand(ids.len() as u64) as usize].clone();
                    let generation = h.g.generation();
                    let assignments: Vec<(&str, &'static [u8])> = vec![];
                    let (_, out) = h.sync(t, &id, generation, &assignments);
                    for p in out.persist.clone() {
                        h.persisted(t, &p);
                    }
                }
                4 if !ids.is_empty() => {
                    let id = ids[rand(ids.len() as u64) as usize].clone();
                    let _ = h.g.heartbeat(at(t), &id, None, h.g.generation());
                }
                5 if !ids.is_empty() => {
                    let id = ids.remove(rand(ids.len() as u64) as usize);
                    let mut out = Outputs::default();
                    let _ = h.g.leave(at(t), &[LeaveMember { member_id: id, group_instance_id: None }], &mut out);
                    h.record(&out);
                }
                _ => {
                    h.tick(t);
                }
            }
        }
        // Let everything time out: all members go, every waiter must have been answered.
        for _ in 0..20 {
            t += 400_000;
            h.tick(t);
        }
        assert_eq!(h.g.size(), 0, "round {round}: every member expired");
        assert_eq!(h.g.state(), GroupState::Empty, "round {round}");
        let unanswered: Vec<_> = h.issued.difference(&h.answered).collect();
        assert!(unanswered.is_empty(), "round {round}: unanswered waiters {unanswered:?}");
    }
}

#[test]
fn describe_shows_assignments_only_when_stable() {
    let mut h = H::new();
    h.first_join(0, "a");
    let d = h.g.describe();
    assert_eq!((d.state, d.protocol_data.as_str(), d.members.len()), (GroupState::PreparingRebalance, "", 1));
    assert!(d.members[0].metadata.is_empty());
    h.tick(3_000);
    let (_, out) = h.sync(3_000, "a", 1, &[("a", b"A")]);
    h.persisted(3_000, &out.persist[0].clone());
    let d = h.g.describe();
    assert_eq!((d.state, d.protocol_data.as_str()), (GroupState::Stable, "range"));
    assert_eq!(d.members[0].assignment, Bytes::from_static(b"A"));
    let _: BTreeMap<String, Bytes> = BTreeMap::new();
}
