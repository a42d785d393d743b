//! Group membership APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! ListGroups, DescribeGroups, DeleteGroups. Each decodes the request (done by dispatch),
//! asks [`crate::groups::GroupCoordinator`] and shapes the answer for the request's version.
//! Committed offsets (OffsetCommit, OffsetFetch, OffsetDelete) are in [`super::group_offsets`].

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::dispatch::{Handled, RequestContext};
use crate::groups::engine::{GroupState, JoinRequest, JoinResult, LeaveMember, Protocol, SyncRequest, SyncResult};
use crate::metadata::BrokerInfo;

/// `authorized_operations` when the client did not ask for them (Kafka's `Integer.MIN_VALUE`).
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
/// Group type ListGroups v5+ reports: only the classic protocol is served.
const CLASSIC: &str = "classic";

fn code(e: Option<ResponseError>) -> i16 {
    e.map_or(0, |e| e.code())
}

fn opt_str(s: Option<&str>) -> Option<StrBytes> {
    s.map(str_bytes)
}

/// FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets`
/// partition (this broker, on a single node); transactions are coordinated by the broker
/// asked.
pub async fn find_coordinator(ctx: &RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let state = &ctx.state;
    let me = || BrokerInfo {
        node_id: state.node_id(),
        host: state.advertised_host.clone(),
        port: state.advertised_port,
        rack: None,
    };
    if req.key_type == 0 {
        // The first FindCoordinator of a cluster creates the offsets topic (as Kafka does).
        state.request_offsets_topic();
    }
    // 0 = group, 1 = transaction; 2 (share groups, v6) is not served.
    let find = |key: &str| -> Result<BrokerInfo, ResponseError> {
        match req.key_type {
            0 => state.group_coordinator(key).ok_or(ResponseError::CoordinatorNotAvailable),
            1 => Ok(me()),
            _ => Err(ResponseError::InvalidRequest),
        }
    };
    if ctx.version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match find(key) {
                    Ok(b) => c.with_node_id(BrokerId(b.node_id)).with_host(str_bytes(&b.host)).with_port(b.port),
                    Err(e) => c
                        .with_error_code(e.code())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_message(Some(str_bytes(&e.to_string()))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match find(&req.key) {
        Ok(b) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(b.node_id))
            .with_host(str_bytes(&b.host))
            .with_port(b.port),
        Err(e) => {
            let r =
                FindCoordinatorResponse::default().with_error_code(e.code()).with_node_id(BrokerId(-1)).with_port(-1);
            if ctx.version >= 1 { r.with_error_message(Some(str_bytes(&e.to_string()))) } else { r }
        }
    }
}

/// JoinGroup: answered once the rebalance completes (or at once for `MEMBER_ID_REQUIRED`
/// and errors).
pub async fn join_group(ctx: &RequestContext, req: JoinGroupRequest) -> Handled<JoinGroupResponse> {
    let version = ctx.version;
    let groups = &ctx.state.groups;
    if let Err(e) = groups.check_group_id(&req.group_id.0, false) {
        return Handled::Now(join_response(version, JoinResult::error(req.member_id.to_string(), e)));
    }
    let instance = if version >= 5 { req.group_instance_id.as_ref().map(|s| s.to_string()) } else { None };
    let client_id = ctx.client_id().to_string();
    let prefix = instance.clone().unwrap_or_else(|| client_id.clone());
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        group_instance_id: instance,
        client_id,
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| Protocol { name: p.name.to_string(), metadata: p.metadata })
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
        generated_member_id: format!("{prefix}-{}", uuid::Builder::from_random_bytes(rand::random()).into_uuid()),
    };
    let answer = groups.join(&req.group_id.0, join).await;
    Handled::Later(Box::pin(async move { join_response(version, answer.await) }))
}

fn join_response(version: i16, r: JoinResult) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|m| {
            let jm =
                JoinGroupResponseMember::default().with_member_id(str_bytes(&m.member_id)).with_metadata(m.metadata);
            if version >= 5 { jm.with_group_instance_id(opt_str(m.group_instance_id.as_deref())) } else { jm }
        })
        .collect();
    // Before v7 the protocol name is not nullable.
    let protocol_name = match (r.protocol_name, version >= 7) {
        (Some(n), _) => Some(str_bytes(&n)),
        (None, true) => None,
        (None, false) => Some(StrBytes::default()),
    };
    let resp = JoinGroupResponse::default()
        .with_error_code(code(r.error))
        .with_generation_id(r.generation_id)
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(&r.leader))
        .with_member_id(str_bytes(&r.member_id))
        .with_members(members);
    let resp = if version >= 7 { resp.with_protocol_type(opt_str(r.protocol_type.as_deref())) } else { resp };
    if version >= 9 { resp.with_skip_assignment(r.skip_assignment) } else { resp }
}

/// SyncGroup: the leader's call carries the assignment; everyone is answered once it is
/// durable.
pub async fn sync_group(ctx: &RequestContext, req: SyncGroupRequest) -> Handled<SyncGroupResponse> {
    let version = ctx.version;
    let groups = &ctx.state.groups;
    if let Err(e) = groups.check_group_id(&req.group_id.0, false) {
        return Handled::Now(sync_response(version, SyncResult::error(e)));
    }
    let sync = SyncRequest {
        member_id: req.member_id.to_string(),
        group_instance_id: if version >= 3 { req.group_instance_id.as_ref().map(|s| s.to_string()) } else { None },
        generation_id: req.generation_id,
        protocol_type: if version >= 5 { req.protocol_type.as_ref().map(|s| s.to_string()) } else { None },
        protocol_name: if version >= 5 { req.protocol_name.as_ref().map(|s| s.to_string()) } else { None },
        assignments: req.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect(),
    };
    let answer = groups.sync(&req.group_id.0, sync).await;
    Handled::Later(Box::pin(async move { sync_response(version, answer.await) }))
}

fn sync_response(version: i16, r: SyncResult) -> SyncGroupResponse {
    let resp = SyncGroupResponse::default().with_error_code(code(r.error)).with_assignment(r.assignment);
    if version >= 5 {
        resp.with_protocol_type(opt_str(r.protocol_type.as_deref()))
            .with_protocol_name(opt_str(r.protocol_name.as_deref()))
    } else {
        resp
    }
}

/// Heartbeat.
pub async fn heartbeat(ctx: &RequestContext, req: HeartbeatRequest) -> HeartbeatResponse {
    let groups = &ctx.state.groups;
    let result = match groups.check_group_id(&req.group_id.0, false) {
        Err(e) => Err(e),
        Ok(()) => {
            let instance = if ctx.version >= 3 { req.group_instance_id.as_ref().map(|s| s.to_string()) } else { None };
            groups.heartbeat(&req.group_id.0, req.member_id.to_string(), instance, req.generation_id).await
        }
    };
    HeartbeatResponse::default().with_error_code(code(result.err()))
}

/// LeaveGroup: v0-2 name one member, v3+ a batch (possibly by instance id alone).
pub async fn leave_group(ctx: &RequestContext, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let groups = &ctx.state.groups;
    let leaving: Vec<LeaveMember> = if ctx.version >= 3 {
        req.members
            .iter()
            .map(|m| LeaveMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeaveMember { member_id: req.member_id.to_string(), group_instance_id: None }]
    };
    let result = match groups.check_group_id(&req.group_id.0, false) {
        Err(e) => Err(e),
        Ok(()) => groups.leave(&req.group_id.0, leaving.clone()).await,
    };
    if ctx.version < 3 {
        let e = match result {
            Err(e) => Some(e),
            Ok(v) => v.into_iter().next().and_then(Result::err),
        };
        return LeaveGroupResponse::default().with_error_code(code(e));
    }
    match result {
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
        Ok(results) => {
            let members = leaving
                .into_iter()
                .zip(results)
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(opt_str(m.group_instance_id.as_deref()))
                        .with_error_code(code(r.err()))
                })
                .collect();
            LeaveGroupResponse::default().with_members(members)
        }
    }
}

/// ListGroups, with the v4 state filter and the v5 type filter.
pub async fn list_groups(ctx: &RequestContext, req: ListGroupsRequest) -> ListGroupsResponse {
    let version = ctx.version;
    let states: Vec<GroupState> = req.states_filter.iter().filter_map(|s| GroupState::parse(s)).collect();
    let unknown_state = states.len() < req.states_filter.len();
    let classic_wanted =
        req.types_filter.is_empty() || req.types_filter.iter().any(|t| t.eq_ignore_ascii_case(CLASSIC));
    let groups = if unknown_state || !classic_wanted {
        Vec::new()
    } else {
        ctx.state
            .groups
            .list()
            .into_iter()
            .filter(|(_, s)| states.is_empty() || states.contains(&s.state))
            .map(|(id, s)| {
                let g = ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(&id)))
                    .with_protocol_type(str_bytes(&s.protocol_type));
                let g = if version >= 4 { g.with_group_state(str_bytes(s.state.as_str())) } else { g };
                if version >= 5 { g.with_group_type(str_bytes(CLASSIC)) } else { g }
            })
            .collect()
    };
    ListGroupsResponse::default().with_groups(groups)
}

/// DescribeGroups. An unknown group is reported as `Dead` with no error before v6 (as Kafka
/// does) and as `GROUP_ID_NOT_FOUND` from v6.
pub async fn describe_groups(ctx: &RequestContext, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let version = ctx.version;
    let coordinator = &ctx.state.groups;
    let mut described = Vec::with_capacity(req.groups.len());
    for group_id in req.groups {
        let base = DescribedGroup::default().with_group_id(group_id.clone());
        let base = if version >= 3 { base.with_authorized_operations(OPERATIONS_NOT_REQUESTED) } else { base };
        let fail = |base: DescribedGroup, e: ResponseError| {
            let g = base.with_error_code(e.code()).with_group_state(str_bytes(GroupState::Dead.as_str()));
            if version >= 6 { g.with_error_message(Some(str_bytes(&e.to_string()))) } else { g }
        };
        if let Err(e) = coordinator.check_group_id(&group_id.0, true) {
            described.push(fail(base, e));
            continue;
        }
        let Some(d) = coordinator.describe(&group_id.0).await else {
            described.push(if version >= 6 {
                fail(base, ResponseError::GroupIdNotFound)
            } else {
                base.with_group_state(str_bytes(GroupState::Dead.as_str()))
            });
            continue;
        };
        let members = d
            .members
            .into_iter()
            .map(|m| {
                let dm = DescribedGroupMember::default()
                    .with_member_id(str_bytes(&m.member_id))
                    .with_client_id(str_bytes(&m.client_id))
                    .with_client_host(str_bytes(&m.client_host))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment);
                if version >= 4 { dm.with_group_instance_id(opt_str(m.group_instance_id.as_deref())) } else { dm }
            })
            .collect();
        described.push(
            base.with_group_state(str_bytes(d.state.as_str()))
                .with_protocol_type(str_bytes(&d.protocol_type))
                .with_protocol_data(str_bytes(&d.protocol_data))
                .with_members(members),
        );
    }
    DescribeGroupsResponse::default().with_groups(described)
}

/// DeleteGroups: only empty groups; their offsets go with them.
pub async fn delete_groups(ctx: &RequestContext, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let coordinator = &ctx.state.groups;
    let mut results = Vec::with_capacity(req.groups_names.len());
    for group_id in req.groups_names {
        let result = match coordinator.check_group_id(&group_id.0, true) {
            Err(e) => Err(e),
            Ok(()) => coordinator.delete_group(&group_id.0).await,
        };
        results.push(DeletableGroupResult::default().with_group_id(group_id).with_error_code(code(result.err())));
    }
    DeleteGroupsResponse::default().with_results(results)
}
