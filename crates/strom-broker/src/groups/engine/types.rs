//! The engine's inputs and outputs: requests, results, replies, the persisted group record
//! and what DescribeGroups reports.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;

/// Identifies one delayed JoinGroup or SyncGroup response; chosen by the shell.
pub type WaiterId = u64;

/// The time as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds, for deadlines (tokio's clock in the shell, so tests can pause it).
    pub mono_ms: i64,
    /// Wall-clock milliseconds since the epoch, for timestamps that are persisted.
    pub wall_ms: i64,
}

/// The group states of the classic protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; committed offsets may exist.
    Empty,
    /// Waiting for every known member to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment in SyncGroup.
    CompletingRebalance,
    /// Every member has its assignment and heartbeats.
    Stable,
    /// Deleted (or expired); the shell drops the group.
    Dead,
}

impl GroupState {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Parses a state name as ListGroups' `states_filter` sends it (case-insensitive).
    pub fn parse(s: &str) -> Option<GroupState> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

/// One protocol a member supports (for consumers: an assignor name and its subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// Protocol name (`range`, `roundrobin`, `cooperative-sticky`, ...).
    pub name: String,
    /// Opaque metadata; the broker never decodes it to decide anything but OffsetDelete.
    pub metadata: Bytes,
}

/// Engine settings taken from [`super::GroupConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`.
    pub max_size: i32,
    /// Kafka's `NewMemberJoinTimeoutMs`.
    pub new_member_join_timeout_ms: i32,
}

impl From<&crate::groups::GroupConfig> for EngineConfig {
    fn from(c: &crate::groups::GroupConfig) -> Self {
        EngineConfig {
            min_session_timeout_ms: c.min_session_timeout_ms,
            max_session_timeout_ms: c.max_session_timeout_ms,
            initial_rebalance_delay_ms: c.initial_rebalance_delay_ms,
            max_size: c.max_size,
            new_member_join_timeout_ms: c.new_member_join_timeout_ms,
        }
    }
}

/// A JoinGroup request as the engine needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Member id sent; empty for a first join.
    pub member_id: String,
    /// `group.instance.id` (v5+).
    pub group_instance_id: Option<String>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Requested session timeout.
    pub session_timeout_ms: i32,
    /// Requested rebalance timeout (v0: the session timeout).
    pub rebalance_timeout_ms: i32,
    /// Protocol type (`consumer`).
    pub protocol_type: String,
    /// Protocols in order of preference.
    pub protocols: Vec<Protocol>,
    /// v4+: a first join gets `MEMBER_ID_REQUIRED` and an id to come back with.
    pub require_known_member_id: bool,
    /// v9+: the client understands `skip_assignment`.
    pub supports_skip_assignment: bool,
    /// The member id to give a new member (`<client or instance id>-<uuid>`); the shell makes
    /// it so the engine needs no randomness.
    pub generated_member_id: String,
}

/// One member as the leader's JoinGroup response lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Its metadata for the selected protocol.
    pub metadata: Bytes,
}

/// A JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    /// `None` on success.
    pub error: Option<ResponseError>,
    /// The generation the member joined.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// v9: the leader must not compute a new assignment (static leader rejoining).
    pub skip_assignment: bool,
    /// The member's id (a new one for a first join).
    pub member_id: String,
    /// Every member with metadata: only in the leader's response.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    /// A failed JoinGroup.
    pub fn error(member_id: impl Into<String>, e: ResponseError) -> JoinResult {
        JoinResult {
            error: Some(e),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.into(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    /// `None` on success.
    pub error: Option<ResponseError>,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncResult {
    /// A failed SyncGroup.
    pub fn error(e: ResponseError) -> SyncResult {
        SyncResult { error: Some(e), protocol_type: None, protocol_name: None, assignment: Bytes::new() }
    }
}

/// A delayed (or immediate) answer to a waiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer a JoinGroup.
    Join(WaiterId, JoinResult),
    /// Answer a SyncGroup.
    Sync(WaiterId, SyncResult),
}

/// Why the group record must be written; handed back in [`Group::on_persisted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistKind {
    /// The leader's assignment for `generation`; the group turns Stable once it is durable.
    Assignment {
        /// Generation the assignment belongs to.
        generation: i32,
        /// Assignment per member id.
        assignment: BTreeMap<String, Bytes>,
    },
    /// A static member rejoined a Stable group under a new member id without a rebalance;
    /// its JoinGroup is answered once the new id is durable.
    StaticRejoin {
        /// The JoinGroup to answer.
        waiter: WaiterId,
        /// Generation it rejoined.
        generation: i32,
        /// The new member id.
        member_id: String,
        /// The leader before the rejoin.
        old_leader: Option<String>,
        /// The member was the leader and its client can skip the assignment (v9).
        skip_assignment: bool,
    },
    /// The group became empty; nothing waits on it.
    Empty,
}

/// A request to write the group record to the internal topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persist {
    /// What waits on the write.
    pub kind: PersistKind,
    /// The record to write.
    pub record: GroupRecord,
}

/// What one event produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// Responses to send, in order.
    pub replies: Vec<Reply>,
    /// Group records to write, in order; each is answered with [`Group::on_persisted`].
    pub persist: Vec<Persist>,
}

/// The persisted form of a group (Kafka's GroupMetadataValue): enough to resume a Stable group
/// after a restart without a rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// Protocol type; empty for a group that only ever committed offsets.
    pub protocol_type: String,
    /// Current generation.
    pub generation: i32,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// Wall-clock time of the last state change (when an empty group became empty).
    pub state_timestamp: i64,
    /// Members with their subscription (metadata of the selected protocol) and assignment.
    pub members: Vec<MemberRecord>,
}

/// One member in a [`GroupRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Metadata for the selected protocol.
    pub subscription: Bytes,
    /// Assignment.
    pub assignment: Bytes,
}

/// A member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the selected protocol (empty unless Stable).
    pub metadata: Bytes,
    /// Assignment (empty unless Stable).
    pub assignment: Bytes,
}

/// A group as DescribeGroups and ListGroups report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// Current state.
    pub state: GroupState,
    /// Protocol type.
    pub protocol_type: String,
    /// Selected protocol when Stable, else empty.
    pub protocol_data: String,
    /// Members.
    pub members: Vec<MemberDescription>,
    /// Current generation.
    pub generation: i32,
}
