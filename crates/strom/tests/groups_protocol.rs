//! The group APIs at the wire level (raw kafka-protocol requests over a socket): the versions
//! advertised, FindCoordinator, and bad input — unknown topics and partitions in commits, stale
//! generations, unknown members, oversized metadata, empty and absurdly long group ids — each
//! answered with Kafka's error code while the coordinator keeps working; OffsetDelete.

mod common;
mod support;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use common::TestBroker;
use support::{RawConn, create_topic};

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const INVALID_GROUP_ID: i16 = 24;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const INVALID_REQUEST: i16 = 42;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn group_broker() -> (TestBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("strom.toml");
    std::fs::write(&path, "[groups]\ninitial_rebalance_delay_ms = 100\n").expect("config");
    let broker = TestBroker::start_with(&["--config", path.to_str().expect("utf-8 path")]);
    (broker, dir)
}

fn join(group: &str, member: &str, session_ms: i32, protocol_type: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s(protocol_type))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(Bytes::from_static(b"meta")),
        ])
}

fn commit(
    group: &str,
    generation: i32,
    member: &str,
    parts: &[(&str, i32, i64, Option<String>)],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (t, p, o, meta) in parts {
        let part = OffsetCommitRequestPartition::default()
            .with_partition_index(*p)
            .with_committed_offset(*o)
            .with_committed_metadata(meta.as_deref().map(s));
        match topics.iter_mut().find(|x| x.name.0.as_str() == *t) {
            Some(x) => x.partitions.push(part),
            None => {
                topics.push(OffsetCommitRequestTopic::default().with_name(TopicName(s(t))).with_partitions(vec![part]))
            }
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(topics)
}

/// Error codes of a commit response, in request order.
fn commit_codes(conn: &mut RawConn, version: i16, req: &OffsetCommitRequest) -> Vec<(String, i32, i16)> {
    let r = conn.call(version, req);
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), p.partition_index, p.error_code)))
        .collect()
}

#[test]
fn api_versions_advertise_the_group_apis() {
    let broker = TestBroker::start();
    let mut conn = RawConn::connect(&broker.bootstrap());
    let r = conn
        .call(3, &ApiVersionsRequest::default().with_client_software_name(s("t")).with_client_software_version(s("1")));
    let range = |k: ApiKey| r.api_keys.iter().find(|a| a.api_key == k as i16).map(|a| (a.min_version, a.max_version));
    assert_eq!(range(ApiKey::FindCoordinator), Some((0, 6)));
    assert_eq!(range(ApiKey::JoinGroup), Some((0, 9)));
    assert_eq!(range(ApiKey::SyncGroup), Some((0, 5)));
    assert_eq!(range(ApiKey::Heartbeat), Some((0, 4)));
    assert_eq!(range(ApiKey::LeaveGroup), Some((0, 5)));
    assert_eq!(range(ApiKey::OffsetCommit), Some((2, 9)));
    assert_eq!(range(ApiKey::OffsetFetch), Some((1, 9)));
    assert_eq!(range(ApiKey::ListGroups), Some((0, 5)));
    assert_eq!(range(ApiKey::DescribeGroups), Some((0, 6)));
    assert_eq!(range(ApiKey::DeleteGroups), Some((0, 2)));
    assert_eq!(range(ApiKey::OffsetDelete), Some((0, 0)));
}

#[test]
fn find_coordinator_names_this_broker_and_the_internal_topic_stays_hidden() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    let port: i32 = bootstrap.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("port");
    let mut conn = RawConn::connect(&bootstrap);
    for v in 0..=3 {
        let r = conn.call(v, &FindCoordinatorRequest::default().with_key(s("g")));
        assert_eq!((r.error_code, r.host.as_str(), r.port), (NONE, "127.0.0.1", port), "v{v}");
    }
    for v in 4..=6 {
        let r = conn.call(
            v,
            &FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec![s("g1"), s("txn")]),
        );
        assert_eq!(r.coordinators.len(), 2, "v{v}");
        assert!(r.coordinators.iter().all(|c| c.error_code == NONE && c.port == port), "v{v}: {r:?}");
    }
    let r = conn.call(6, &FindCoordinatorRequest::default().with_key_type(2).with_coordinator_keys(vec![s("share")]));
    assert_eq!(r.coordinators[0].error_code, INVALID_REQUEST, "share groups are not served");

    let all = conn.call(12, &MetadataRequest::default().with_topics(None));
    assert!(
        all.topics.iter().all(|t| t.name.as_ref().is_none_or(|n| !n.0.starts_with("__"))),
        "internal topic listed: {all:?}"
    );
    let named = conn.call(
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s("__consumer_offsets")))),
        ])),
    );
    assert_eq!((named.topics[0].error_code, named.topics[0].partitions.len()), (NONE, 1), "asked by name it is there");
}

#[test]
fn bad_input_gets_kafka_error_codes_and_the_coordinator_keeps_working() {
    let (broker, _cfg) = group_broker();
    let bootstrap = broker.bootstrap();
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt").block_on(create_topic(
        &bootstrap,
        "t",
        2,
        &[],
    ));
    let mut conn = RawConn::connect(&bootstrap);
    let long = "g".repeat(5_000);

    // Group ids: empty (for membership APIs) and absurdly long (everywhere).
    assert_eq!(conn.call(5, &join("", "", 10_000, "consumer")).error_code, INVALID_GROUP_ID);
    assert_eq!(conn.call(5, &join(&long, "", 10_000, "consumer")).error_code, INVALID_GROUP_ID);
    let hb = |g: &str, gen_id: i32, m: &str| {
        HeartbeatRequest::default().with_group_id(gid(g)).with_generation_id(gen_id).with_member_id(s(m))
    };
    assert_eq!(conn.call(3, &hb("", 1, "m")).error_code, INVALID_GROUP_ID);
    assert_eq!(conn.call(3, &hb(&long, 1, "m")).error_code, INVALID_GROUP_ID);
    assert_eq!(
        commit_codes(&mut conn, 7, &commit(&long, -1, "", &[("t", 0, 1, None)])),
        vec![("t".into(), 0, INVALID_GROUP_ID)]
    );
    let fetch_long = OffsetFetchRequest::default().with_group_id(gid(&long)).with_topics(None);
    assert_eq!(conn.call(7, &fetch_long).error_code, INVALID_GROUP_ID);
    let d = conn.call(5, &DescribeGroupsRequest::default().with_groups(vec![gid(&long)]));
    assert_eq!(d.groups[0].error_code, INVALID_GROUP_ID);
    let del = conn.call(2, &DeleteGroupsRequest::default().with_groups_names(vec![gid(&long)]));
    assert_eq!(del.results[0].error_code, INVALID_GROUP_ID);

    // Join parameters.
    assert_eq!(conn.call(5, &join("g", "", 1_000, "consumer")).error_code, INVALID_SESSION_TIMEOUT);
    assert_eq!(conn.call(5, &join("g", "", 10_000, "")).error_code, INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(conn.call(5, &join("g", "never-issued", 10_000, "consumer")).error_code, UNKNOWN_MEMBER_ID);
    // A commit with a generation for a group that does not exist.
    assert_eq!(
        commit_codes(&mut conn, 7, &commit("nosuch", 3, "m", &[("t", 0, 1, None)])),
        vec![("t".into(), 0, ILLEGAL_GENERATION)]
    );

    // A real member: MEMBER_ID_REQUIRED, then generation 1 as leader, then its assignment.
    let r = conn.call(5, &join("g", "", 10_000, "consumer"));
    assert_eq!(r.error_code, MEMBER_ID_REQUIRED);
    let member = r.member_id.to_string();
    let r = conn.call(5, &join("g", &member, 10_000, "consumer"));
    assert_eq!((r.error_code, r.generation_id, r.leader.as_str(), r.members.len()), (NONE, 1, member.as_str(), 1));
    let sync = SyncGroupRequest::default()
        .with_group_id(gid("g"))
        .with_generation_id(1)
        .with_member_id(s(&member))
        .with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(Bytes::from_static(b"mine")),
        ]);
    let r = conn.call(3, &sync);
    assert_eq!((r.error_code, r.assignment.as_ref()), (NONE, &b"mine"[..]));
    assert_eq!(conn.call(3, &sync.clone().with_generation_id(9)).error_code, ILLEGAL_GENERATION);

    // Commits: per-partition errors beside a good partition.
    let huge = Some("x".repeat(5_000));
    let codes = commit_codes(
        &mut conn,
        7,
        &commit(
            "g",
            1,
            &member,
            &[("t", 0, 42, Some("ok".into())), ("t", 1, 7, huge), ("t", 9, 1, None), ("nope", 0, 1, None)],
        ),
    );
    assert_eq!(
        codes,
        vec![
            ("t".into(), 0, NONE),
            ("t".into(), 1, OFFSET_METADATA_TOO_LARGE),
            ("t".into(), 9, UNKNOWN_TOPIC_OR_PARTITION),
            ("nope".into(), 0, UNKNOWN_TOPIC_OR_PARTITION)
        ]
    );
    assert_eq!(commit_codes(&mut conn, 7, &commit("g", 2, &member, &[("t", 0, 50, None)]))[0].2, ILLEGAL_GENERATION);
    assert_eq!(commit_codes(&mut conn, 7, &commit("g", 1, "impostor", &[("t", 0, 50, None)]))[0].2, UNKNOWN_MEMBER_ID);
    assert_eq!(
        commit_codes(&mut conn, 7, &commit("g", -1, "", &[("t", 0, 50, None)]))[0].2,
        UNKNOWN_MEMBER_ID,
        "non-members may not commit for a live group"
    );
    assert_eq!(conn.call(3, &hb("g", 7, &member)).error_code, ILLEGAL_GENERATION);
    assert_eq!(conn.call(3, &hb("g", 1, "impostor")).error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(conn.call(3, &hb("g", 1, &member)).error_code, NONE);

    // Fetch: v8 multi-group form, "all partitions" for one group, named partitions for another.
    let fetch = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(gid("g")).with_topics(None),
        OffsetFetchRequestGroup::default().with_group_id(gid("nosuch")).with_topics(Some(vec![
            OffsetFetchRequestTopics::default().with_name(TopicName(s("t"))).with_partition_indexes(vec![0]),
        ])),
    ]);
    let r = conn.call(8, &fetch);
    let g = &r.groups[0];
    assert_eq!((g.error_code, g.topics.len(), g.topics[0].partitions.len()), (NONE, 1, 1), "{r:?}");
    let p = &g.topics[0].partitions[0];
    assert_eq!((p.partition_index, p.committed_offset, p.metadata.as_deref()), (0, 42, Some("ok")));
    assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, -1);
    let old = OffsetFetchRequest::default().with_group_id(gid("g")).with_topics(Some(vec![
        OffsetFetchRequestTopic::default().with_name(TopicName(s("t"))).with_partition_indexes(vec![0, 1]),
    ]));
    let r = conn.call(1, &old);
    let got: Vec<(i32, i64)> = r.topics[0].partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect();
    assert_eq!(got, vec![(0, 42), (1, -1)], "v1");

    // Describe, list, delete.
    let d = conn.call(5, &DescribeGroupsRequest::default().with_groups(vec![gid("g"), gid("nosuch")]));
    assert_eq!(
        (d.groups[0].group_state.as_str(), d.groups[0].protocol_data.as_str(), d.groups[0].members.len()),
        ("Stable", "range", 1)
    );
    assert_eq!(d.groups[0].members[0].member_assignment.as_ref(), b"mine");
    assert_eq!((d.groups[1].error_code, d.groups[1].group_state.as_str()), (NONE, "Dead"));
    let d6 = conn.call(6, &DescribeGroupsRequest::default().with_groups(vec![gid("nosuch")]));
    assert_eq!(d6.groups[0].error_code, GROUP_ID_NOT_FOUND);
    let l = conn.call(4, &ListGroupsRequest::default().with_states_filter(vec![s("Stable")]));
    assert_eq!(l.groups.iter().map(|g| g.group_id.0.as_str()).collect::<Vec<_>>(), vec!["g"]);
    let del = conn.call(2, &DeleteGroupsRequest::default().with_groups_names(vec![gid("g"), gid("nosuch")]));
    assert_eq!(del.results.iter().map(|r| r.error_code).collect::<Vec<_>>(), vec![NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND]);
    // The member's metadata is not a consumer subscription, so every topic counts as in use.
    let od_live = OffsetDeleteRequest::default().with_group_id(gid("g")).with_topics(vec![
        OffsetDeleteRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
    ]);
    assert_eq!(conn.call(0, &od_live).topics[0].partitions[0].error_code, GROUP_SUBSCRIBED_TO_TOPIC);

    // Leave (v3 batch form), then delete works and the offsets are gone.
    let leave = LeaveGroupRequest::default().with_group_id(gid("g")).with_members(vec![
        MemberIdentity::default().with_member_id(s(&member)),
        MemberIdentity::default().with_member_id(s("ghost")),
    ]);
    let r = conn.call(3, &leave);
    assert_eq!(r.members.iter().map(|m| m.error_code).collect::<Vec<_>>(), vec![NONE, UNKNOWN_MEMBER_ID]);
    // OffsetDelete: unknown group, unknown topic, then an empty group drops an offset.
    let od = |g: &str, t: &str| {
        OffsetDeleteRequest::default().with_group_id(gid(g)).with_topics(vec![
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s(t)))
                .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
        ])
    };
    assert_eq!(conn.call(0, &od("nosuch", "t")).error_code, GROUP_ID_NOT_FOUND);
    assert_eq!(conn.call(0, &od("g", "nope")).topics[0].partitions[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    let r = conn.call(0, &od("g", "t"));
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (NONE, NONE));
    assert_eq!(conn.call(1, &old).topics[0].partitions[0].committed_offset, -1, "t/0 was deleted");
    let del = conn.call(2, &DeleteGroupsRequest::default().with_groups_names(vec![gid("g")]));
    assert_eq!(del.results[0].error_code, NONE);
    let r = conn.call(1, &old);
    assert!(r.topics[0].partitions.iter().all(|p| p.committed_offset == -1));

    // After all of that the coordinator still serves a fresh group end to end.
    let r = conn.call(9, &join("fresh", "", 10_000, "consumer"));
    let member = r.member_id.to_string();
    let r = conn.call(9, &join("fresh", &member, 10_000, "consumer"));
    assert_eq!((r.error_code, r.generation_id), (NONE, 1));
    let r = conn.call(
        5,
        &SyncGroupRequest::default()
            .with_group_id(gid("fresh"))
            .with_generation_id(1)
            .with_member_id(s(&member))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range"))),
    );
    assert_eq!(r.error_code, NONE);
    assert_eq!(
        commit_codes(&mut conn, 9, &commit("fresh", 1, &member, &[("t", 1, 5, None)])),
        vec![("t".into(), 1, NONE)]
    );
}

/// Deleting a topic drops every group's committed offsets of it (Kafka's
/// `handleDeletedPartitions`): a topic created again under the same name starts with no
/// positions, also after a restart, while offsets of other topics stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_drops_its_committed_offsets() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest};
    let mut broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "doomed", 2, &[]).await;
    create_topic(&bootstrap, "kept", 1, &[]).await;
    let mut conn = RawConn::connect(&bootstrap);
    let codes = commit_codes(
        &mut conn,
        7,
        &commit("g", -1, "", &[("doomed", 0, 5, None), ("doomed", 1, 6, None), ("kept", 0, 7, None)]),
    );
    assert!(codes.iter().all(|c| c.2 == NONE), "{codes:?}");
    let deleted = conn.call(
        4,
        &DeleteTopicsRequest::default().with_timeout_ms(10_000).with_topic_names(vec![TopicName(s("doomed"))]),
    );
    assert_eq!(deleted.responses[0].error_code, NONE);
    let again = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        CreatableTopic::default().with_name(TopicName(s("doomed"))).with_num_partitions(2).with_replication_factor(1),
    ]);
    assert_eq!(conn.call(5, &again).topics[0].error_code, NONE);
    let positions = |conn: &mut RawConn| -> Vec<(String, i32, i64)> {
        let fetch = OffsetFetchRequest::default().with_group_id(gid("g")).with_topics(Some(vec![
            OffsetFetchRequestTopic::default().with_name(TopicName(s("doomed"))).with_partition_indexes(vec![0, 1]),
            OffsetFetchRequestTopic::default().with_name(TopicName(s("kept"))).with_partition_indexes(vec![0]),
        ]));
        let r = conn.call(5, &fetch);
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), p.partition_index, p.committed_offset)))
            .collect()
    };
    let expected = vec![("doomed".to_string(), 0, -1), ("doomed".to_string(), 1, -1), ("kept".to_string(), 0, 7)];
    assert_eq!(positions(&mut conn), expected, "the re-created topic has no positions");
    drop(conn);
    assert!(broker.stop().success());
    broker.restart();
    let mut conn = RawConn::connect(&broker.bootstrap());
    assert_eq!(positions(&mut conn), expected, "nor after a restart");
}

/// The internal topic is pruned (it is not compacted): with small segments and a short check
/// interval, many commits leave sealed segments, every group writes its live state again, the
/// segments below are deleted (the topic's log start moves), and after a restart every
/// group's last offsets and its group record are still there.
#[test]
fn the_offsets_topic_is_pruned_and_keeps_every_live_group() {
    use kafka_protocol::messages::ListOffsetsRequest;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("strom.toml");
    std::fs::write(
        &path,
        "[groups]\ninitial_rebalance_delay_ms = 0\noffsets_retention_check_interval_ms = 200\noffsets_topic_segment_bytes = 4096\n",
    )
    .expect("config");
    let mut broker = TestBroker::start_with(&["--config", path.to_str().expect("utf-8 path")]);
    let bootstrap = broker.bootstrap();
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt").block_on(create_topic(
        &bootstrap,
        "t",
        4,
        &[],
    ));
    let mut conn = RawConn::connect(&bootstrap);

    // A group with a group record: joined, synced, committed, then left (Empty, generation 1).
    let member = conn.call(5, &join("member-group", "", 10_000, "consumer")).member_id.to_string();
    assert_eq!(conn.call(5, &join("member-group", &member, 10_000, "consumer")).error_code, NONE);
    let sync = SyncGroupRequest::default()
        .with_group_id(gid("member-group"))
        .with_generation_id(1)
        .with_member_id(s(&member))
        .with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(Bytes::from_static(b"all")),
        ]);
    assert_eq!(conn.call(3, &sync).error_code, NONE);
    assert!(
        commit_codes(&mut conn, 7, &commit("member-group", 1, &member, &[("t", 3, 33, None)]))
            .iter()
            .all(|c| c.2 == NONE)
    );
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid("member-group"))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&member))]);
    assert_eq!(conn.call(3, &leave).error_code, NONE);

    // An offsets-only group committing many times over several segments.
    for round in 0..300i64 {
        let parts: Vec<(&str, i32, i64, Option<String>)> =
            (0..4).map(|p| ("t", p, round * 10 + i64::from(p), None)).collect();
        assert!(commit_codes(&mut conn, 7, &commit("busy", -1, "", &parts)).iter().all(|c| c.2 == NONE));
    }
    let earliest = |conn: &mut RawConn| {
        let req =
            ListOffsetsRequest::default().with_replica_id(kafka_protocol::messages::BrokerId(-1)).with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(s("__consumer_offsets")))
                    .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-2)]),
            ]);
        conn.call(6, &req).topics[0].partitions[0].offset
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while earliest(&mut conn) == 0 {
        assert!(std::time::Instant::now() < deadline, "the internal topic was not pruned within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    drop(conn);
    assert!(broker.stop().success());
    broker.restart();
    let mut conn = RawConn::connect(&broker.bootstrap());
    assert!(earliest(&mut conn) > 0, "still pruned after the restart");
    let fetch = |conn: &mut RawConn, group: &str| -> Vec<(i32, i64)> {
        let r = conn.call(5, &OffsetFetchRequest::default().with_group_id(gid(group)).with_topics(None));
        r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.committed_offset))).collect()
    };
    assert_eq!(
        fetch(&mut conn, "busy"),
        vec![(0, 2990), (1, 2991), (2, 2992), (3, 2993)],
        "the last commits survive pruning"
    );
    assert_eq!(fetch(&mut conn, "member-group"), vec![(3, 33)]);
    let d = conn.call(5, &DescribeGroupsRequest::default().with_groups(vec![gid("member-group")]));
    assert_eq!(
        (d.groups[0].error_code, d.groups[0].group_state.as_str(), d.groups[0].protocol_type.as_str()),
        (NONE, "Empty", "consumer"),
        "the group record survives pruning"
    );
}
