//! The coordinator with its tasks and a real log engine in a temp dir: the whole flow, timers
//! under tokio's paused clock, restarts, deletion and expiry.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use strom_log::{FlushPolicy, LogConfig, LogManager, ManagerConfig};
use tokio_util::sync::CancellationToken;

use super::engine::{GroupState, JoinRequest, LeaveMember, Protocol, SyncRequest};
use super::records::OffsetValue;
use super::store::OffsetsLog;
use super::{GroupConfig, GroupCoordinator, OFFSETS_TOPIC};

fn config() -> GroupConfig {
    GroupConfig { initial_rebalance_delay_ms: 100, ..GroupConfig::default() }
}

/// Opens (or reopens) the internal topic in `dir`. `never` avoids waiting on the flusher
/// thread, which paused-clock tests need: tokio jumps the clock whenever the runtime idles.
fn open(dir: &std::path::Path, flush: FlushPolicy) -> (LogManager, OffsetsLog) {
    let mgr = LogManager::open(ManagerConfig::new(dir)).expect("open logs");
    let cfg = LogConfig { flush_policy: flush, retention_ms: None, ..LogConfig::default() };
    let log = match mgr.get(OFFSETS_TOPIC, 0) {
        Some(l) => {
            l.set_config(cfg).expect("config");
            l
        }
        None => mgr.create(OFFSETS_TOPIC, 0, cfg).expect("create"),
    };
    // A single node's view: broker 1 leads its only replica.
    let meta = strom_meta::PartitionMeta {
        partition: 0,
        leader: Some(1),
        leader_epoch: 0,
        replicas: vec![1],
        isr: vec![1],
        partition_epoch: 0,
        adding: Vec::new(),
        removing: Vec::new(),
    };
    (mgr, OffsetsLog::new(vec![Some(crate::partition::Partition::open(1, log, &meta, 1))]))
}

fn coordinator(log: OffsetsLog) -> (GroupCoordinator, CancellationToken) {
    let cancel = CancellationToken::new();
    let c = GroupCoordinator::new(config(), cancel.clone());
    c.load_from(log).expect("load");
    (c, cancel)
}

fn join_req(member_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 6_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![Protocol { name: "range".into(), metadata: Bytes::from_static(b"sub") }],
        require_known_member_id: true,
        supports_skip_assignment: false,
        generated_member_id: format!("{member_id}gen-1"),
    }
}

fn offset(o: i64) -> OffsetValue {
    OffsetValue { offset: o, leader_epoch: 2, metadata: "m".into(), commit_timestamp: 1_000 }
}

/// Joins one member and syncs it; returns (member id, generation).
async fn join_and_sync(c: &GroupCoordinator, group: &str) -> (String, i32) {
    let r = c.join(group, join_req("")).await.await;
    assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
    let member = r.member_id;
    let r = c.join(group, join_req(&member)).await.await;
    assert_eq!((r.error, r.leader.as_str()), (None, member.as_str()));
    let sync = SyncRequest {
        member_id: member.clone(),
        group_instance_id: None,
        generation_id: r.generation_id,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: vec![(member.clone(), Bytes::from_static(b"assignment"))],
    };
    let s = c.sync(group, sync).await.await;
    assert_eq!((s.error, s.assignment), (None, Bytes::from_static(b"assignment")));
    (member, r.generation_id)
}

#[tokio::test]
async fn commits_and_group_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mgr, log) = open(dir.path(), FlushPolicy::Always);
    let (c, cancel) = coordinator(log);
    let (member, generation) = join_and_sync(&c, "g").await;
    let tp = ("orders".to_string(), 3);
    let res = c.commit("g", generation, member.clone(), None, vec![(tp.clone(), offset(42))]).await.await;
    assert_eq!(res, Ok(()));
    let res = c.commit("g", generation + 5, member.clone(), None, vec![(tp.clone(), offset(99))]).await.await;
    assert_eq!(res, Err(ResponseError::IllegalGeneration), "a stale generation is refused");
    assert_eq!(c.fetch_offsets("g", None).await, Ok(vec![(tp.clone(), Some(offset(42)))]));
    // A simple (non-member) commit for another group creates it.
    assert_eq!(c.commit("solo", -1, String::new(), None, vec![(tp.clone(), offset(7))]).await.await, Ok(()));
    assert_eq!(
        c.commit("ghost", 3, "m".into(), None, vec![(tp.clone(), offset(7))]).await.await,
        Err(ResponseError::IllegalGeneration)
    );
    let listed: Vec<(String, GroupState)> = c.list().into_iter().map(|(g, s)| (g, s.state)).collect();
    assert_eq!(listed, vec![("g".to_string(), GroupState::Stable), ("solo".to_string(), GroupState::Empty)]);
    cancel.cancel();
    mgr.shutdown().expect("shutdown");
    drop(c);

    let (mgr, log) = open(dir.path(), FlushPolicy::Always);
    let (c, _cancel) = coordinator(log);
    assert_eq!(c.fetch_offsets("g", Some(vec![tp.clone()])).await, Ok(vec![(tp.clone(), Some(offset(42)))]));
    assert_eq!(c.fetch_offsets("solo", None).await, Ok(vec![(tp.clone(), Some(offset(7)))]));
    let d = c.describe("g").await.expect("group restored");
    assert_eq!((d.state, d.generation, d.members.len()), (GroupState::Stable, generation, 1));
    assert_eq!(d.members[0].assignment, Bytes::from_static(b"assignment"));
    // The member carries on without a rebalance.
    assert_eq!(c.heartbeat("g", member.clone(), None, generation).await, Ok(()));
    assert_eq!(c.commit("g", generation, member, None, vec![(tp.clone(), offset(43))]).await.await, Ok(()));
    mgr.shutdown().expect("shutdown");
}

#[tokio::test(start_paused = true)]
async fn silent_member_is_evicted_by_the_session_timer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_mgr, log) = open(dir.path(), FlushPolicy::Never);
    let (c, _cancel) = coordinator(log);
    let (member, generation) = join_and_sync(&c, "g").await;
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    assert_eq!(c.heartbeat("g", member.clone(), None, generation).await, Ok(()));
    tokio::time::sleep(Duration::from_millis(5_999)).await;
    assert_eq!(c.describe("g").await.map(|d| d.state), Some(GroupState::Stable), "still within the session");
    tokio::time::sleep(Duration::from_millis(2)).await;
    let d = c.describe("g").await.expect("group");
    assert_eq!((d.state, d.members.len()), (GroupState::Empty, 0), "evicted 6 s after its last heartbeat");
    assert_eq!(c.heartbeat("g", member, None, generation).await, Err(ResponseError::UnknownMemberId));
}

#[tokio::test(start_paused = true)]
async fn leave_then_delete_and_offset_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_mgr, log) = open(dir.path(), FlushPolicy::Never);
    let (c, _cancel) = coordinator(log);
    let (member, generation) = join_and_sync(&c, "g").await;
    let (a, b) = (("a".to_string(), 0), ("b".to_string(), 0));
    assert_eq!(
        c.commit("g", generation, member.clone(), None, vec![(a.clone(), offset(1)), (b.clone(), offset(2))])
            .await
            .await,
        Ok(())
    );
    assert_eq!(c.delete_group("g").await, Err(ResponseError::NonEmptyGroup));
    // Members subscribe to nothing decodable here, so every topic counts as subscribed.
    let r = c.delete_offsets("g", vec![a.clone()]).await;
    assert_eq!(r, Ok(vec![(a.clone(), Err(ResponseError::GroupSubscribedToTopic))]));
    let left = c.leave("g", vec![LeaveMember { member_id: member.clone(), group_instance_id: None }]).await;
    assert_eq!(left, Ok(vec![Ok(())]));
    assert_eq!(c.describe("g").await.map(|d| d.state), Some(GroupState::Empty), "the last member left: empty at once");
    assert_eq!(c.delete_offsets("g", vec![a.clone()]).await, Ok(vec![(a.clone(), Ok(()))]));
    assert_eq!(c.fetch_offsets("g", None).await, Ok(vec![(b.clone(), Some(offset(2)))]));
    assert_eq!(c.delete_group("g").await, Ok(()));
    assert_eq!(c.delete_group("g").await, Err(ResponseError::GroupIdNotFound));
    assert!(c.describe("g").await.is_none());
    assert_eq!(c.fetch_offsets("g", Some(vec![b.clone()])).await, Ok(vec![(b, None)]));
}

#[tokio::test]
async fn offsets_of_an_empty_group_expire_and_stay_expired_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mgr, log) = open(dir.path(), FlushPolicy::Always);
    let (c, cancel) = coordinator(log);
    let tp = ("t".to_string(), 0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let value = OffsetValue { commit_timestamp: now, ..offset(5) };
    assert_eq!(c.commit("old", -1, String::new(), None, vec![(tp.clone(), value)]).await.await, Ok(()));
    let retention = config().offsets_retention_ms();
    c.expire_offsets(now + retention - 1);
    assert!(wait_until(|| async { c.fetch_offsets("old", None).await.map(|v| v.len()) == Ok(1) }).await);
    c.expire_offsets(now + retention + 1);
    assert!(wait_until(|| async { c.list().is_empty() }).await, "expired offsets delete the empty group");
    cancel.cancel();
    mgr.shutdown().expect("shutdown");
    let (mgr, log) = open(dir.path(), FlushPolicy::Always);
    let (c, _cancel) = coordinator(log);
    assert!(c.list().is_empty());
    assert_eq!(c.fetch_offsets("old", None).await, Ok(vec![]));
    mgr.shutdown().expect("shutdown");
}

/// Polls `cond` until it holds or 5 s pass.
async fn wait_until<F, Fut>(mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test]
async fn a_commit_larger_than_one_batch_is_split_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mgr, log) = open(dir.path(), FlushPolicy::Always);
    let (c, cancel) = coordinator(log);
    // 20,000 partitions with 100 bytes of metadata each: about 3 MB, over max.message.bytes.
    let entries: Vec<_> = (0..20_000)
        .map(|p| (("wide".to_string(), p), OffsetValue { metadata: "m".repeat(100), ..offset(i64::from(p)) }))
        .collect();
    assert_eq!(c.commit("big", -1, String::new(), None, entries.clone()).await.await, Ok(()));
    assert_eq!(c.fetch_offsets("big", None).await.map(|v| v.len()), Ok(20_000));
    cancel.cancel();
    mgr.shutdown().expect("shutdown");
    let (mgr, log) = open(dir.path(), FlushPolicy::Always);
    let (c, _cancel) = coordinator(log);
    let got = c.fetch_offsets("big", None).await.expect("fetch");
    let want: Vec<_> = entries.into_iter().map(|(tp, v)| (tp, Some(v))).collect();
    let mut got = got;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = want;
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
    mgr.shutdown().expect("shutdown");
}
