//! The classic group protocol as a pure state machine: one [`Group`] per group id takes events
//! (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, commit validation, a clock tick, "the group
//! record is durable") and returns what to answer and what to persist. It does no I/O and
//! reads no clock: the async shell ([`super::actor`]) passes the time in, owns the timers and
//! the reply channels, and writes the group record to the internal topic.
//!
//! States and transitions (Kafka's `GroupMetadata`):
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
//!   ▲                  ▲        │                                    │ leader's SyncGroup,
//!   │                  │        └──no members left──▶ Empty           │ record durable
//!   │                  └──join, leave, session timeout──── Stable ◀───┘
//!   └── (any state) ──delete / offsets expired──▶ Dead
//! ```
//! Every [`WaiterId`] handed to [`Group::join`] or [`Group::sync`] is answered exactly once,
//! either at once or by a later event, through [`Outputs::replies`]: the shell can keep its
//! reply channels in a map without leaking them.
//!
//! Timers are deadlines in the shell's monotonic milliseconds ([`Now::mono_ms`]):
//! per-member heartbeat deadlines, per-pending-member deadlines, the rebalance (join)
//! deadline and the pending-sync deadline. [`Group::next_deadline`] is the earliest;
//! [`Group::tick`] handles every deadline that has passed.

mod join;
mod sync;
#[cfg(test)]
mod tests;
mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use kafka_protocol::ResponseError;

pub use self::sync::{LeaveMember, SyncRequest};
pub use self::types::*;

/// One member of a group.
#[derive(Debug, Clone)]
pub struct Member {
    /// Broker-issued member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// Client id of the member's last JoinGroup.
    pub client_id: String,
    /// Client address of the member's last JoinGroup.
    pub client_host: String,
    /// How long the member may go without a heartbeat.
    pub session_timeout_ms: i32,
    /// How long the member may take to rejoin during a rebalance.
    pub rebalance_timeout_ms: i32,
    /// Protocol type of its last JoinGroup (`consumer`, `connect`, ...).
    pub protocol_type: String,
    /// Supported protocols in order of preference.
    pub protocols: Vec<Protocol>,
    /// Its assignment in the current generation (empty until SyncGroup completes).
    pub assignment: Bytes,
    awaiting_join: Option<JoinWaiter>,
    awaiting_sync: Option<WaiterId>,
    /// Joined but not yet through a completed join phase: its heartbeat deadline is the
    /// new-member join timeout, and it may expire while awaiting join.
    is_new: bool,
    heartbeat_deadline: Option<i64>,
    /// Join order: the leader falls back to the longest-standing member.
    seq: u64,
}

#[derive(Debug, Clone, Copy)]
struct JoinWaiter {
    id: WaiterId,
}

impl Member {
    fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|p| p.name == protocol).map(|p| p.metadata.clone()).unwrap_or_default()
    }

    /// Members waiting in a rebalance need not heartbeat, unless they are new (a new member's
    /// JoinGroup may be abandoned by a client that went away).
    fn heartbeat_satisfied_by_waiting(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }
}

/// The rebalance (join) deadline and whether it is the extendable initial delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinTimer {
    /// Kafka's `DelayedJoin`: completes early once every member has joined.
    Normal { deadline: i64 },
    /// Kafka's `InitialDelayedJoin`: waits the whole delay, extended while members arrive.
    Initial { deadline: i64, delay: i64, remaining: i64 },
}

impl JoinTimer {
    fn deadline(self) -> i64 {
        match self {
            JoinTimer::Normal { deadline } | JoinTimer::Initial { deadline, .. } => deadline,
        }
    }
}

/// One consumer group.
#[derive(Debug)]
pub struct Group {
    group_id: String,
    config: EngineConfig,
    state: GroupState,
    state_timestamp: i64,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: HashMap<String, Member>,
    /// Member ids issued with MEMBER_ID_REQUIRED, with the deadline to come back by.
    pending_members: HashMap<String, i64>,
    /// Members that got their JoinGroup response but have not sent SyncGroup yet.
    pending_sync: BTreeSet<String>,
    static_members: HashMap<String, String>,
    new_member_added: bool,
    join_timer: Option<JoinTimer>,
    sync_deadline: Option<i64>,
    /// An assignment being made durable: (generation).
    storing_assignment: Option<i32>,
    next_seq: u64,
}

impl Group {
    /// A new, empty group.
    pub fn new(group_id: impl Into<String>, config: EngineConfig, now: Now) -> Group {
        Group {
            group_id: group_id.into(),
            config,
            state: GroupState::Empty,
            state_timestamp: now.wall_ms,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: BTreeSet::new(),
            static_members: HashMap::new(),
            new_member_added: false,
            join_timer: None,
            sync_deadline: None,
            storing_assignment: None,
            next_seq: 0,
        }
    }

    /// Rebuilds a group from its last durable record (at startup). A group with members
    /// resumes Stable in its generation; the members must heartbeat within their session
    /// timeout, counted from `now`.
    pub fn from_record(group_id: impl Into<String>, config: EngineConfig, record: &GroupRecord, now: Now) -> Group {
        let mut g = Group::new(group_id, config, now);
        g.generation = record.generation;
        g.protocol_type = (!record.protocol_type.is_empty()).then(|| record.protocol_type.clone());
        g.protocol_name = record.protocol_name.clone();
        g.state_timestamp = record.state_timestamp;
        for m in &record.members {
            let protocols = match &record.protocol_name {
                Some(name) => vec![Protocol { name: name.clone(), metadata: m.subscription.clone() }],
                None => Vec::new(),
            };
            let member = Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: record.protocol_type.clone(),
                protocols,
                assignment: m.assignment.clone(),
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
                heartbeat_deadline: Some(now.mono_ms + i64::from(m.session_timeout_ms)),
                seq: g.next_seq,
            };
            g.next_seq += 1;
            if let Some(instance) = &m.group_instance_id {
                g.static_members.insert(instance.clone(), m.member_id.clone());
            }
            g.members.insert(m.member_id.clone(), member);
        }
        if !g.members.is_empty() {
            g.state = GroupState::Stable;
            g.leader = record.leader.clone().filter(|l| g.members.contains_key(l));
            if g.leader.is_none() {
                g.leader = g.first_member();
            }
        }
        g
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// Current state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// Current generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The protocol type, once a member has joined.
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// Wall-clock time of the last state change.
    pub fn state_timestamp(&self) -> i64 {
        self.state_timestamp
    }

    /// A member by id.
    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.get(member_id)
    }

    /// The leader's member id.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Topics the members subscribe to, decoded from consumer-protocol metadata; `None` when
    /// the group is not a consumer group or a subscription does not decode (then every topic
    /// counts as subscribed, as Kafka does).
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let mut meta = m.metadata_for(protocol);
            if meta.len() < 2 {
                return None;
            }
            let version = bytes::Buf::get_i16(&mut meta);
            let sub = ConsumerProtocolSubscription::decode(&mut meta, version.clamp(0, 3)).ok()?;
            topics.extend(sub.topics.iter().map(|t| t.to_string()));
        }
        Some(topics)
    }

    /// The earliest deadline the shell must wake up for.
    pub fn next_deadline(&self) -> Option<i64> {
        let members = self.members.values().filter_map(|m| m.heartbeat_deadline);
        let pending = self.pending_members.values().copied();
        let group = self.join_timer.map(JoinTimer::deadline).into_iter().chain(self.sync_deadline);
        members.chain(pending).chain(group).min()
    }

    /// Handles every deadline at or before `now`.
    pub fn tick(&mut self, now: Now, out: &mut Outputs) {
        // Pending members that never came back with their id.
        let expired: Vec<String> =
            self.pending_members.iter().filter(|(_, d)| **d <= now.mono_ms).map(|(id, _)| id.clone()).collect();
        for id in expired {
            tracing::info!(group = %self.group_id, member = %id, "pending member expired before rejoining");
            self.remove_pending_member(now, &id, out);
        }
        // Members whose session timed out.
        let mut expired: Vec<(u64, String)> = self
            .members
            .values()
            .filter(|m| m.heartbeat_deadline.is_some_and(|d| d <= now.mono_ms))
            .map(|m| (m.seq, m.member_id.clone()))
            .collect();
        expired.sort();
        for (_, id) in expired {
            let Some(m) = self.members.get_mut(&id) else { continue };
            if m.heartbeat_satisfied_by_waiting() {
                m.heartbeat_deadline = None;
                continue;
            }
            tracing::info!(group = %self.group_id, member = %id, "member failed to heartbeat within its session timeout; removing it");
            self.remove_member_and_update(now, &id, out);
        }
        if let Some(t) = self.join_timer.filter(|t| t.deadline() <= now.mono_ms) {
            self.on_join_timer(now, t, out);
        }
        if self.sync_deadline.is_some_and(|d| d <= now.mono_ms) {
            self.on_sync_timeout(now, out);
        }
    }

    /// What DescribeGroups reports.
    pub fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = self
            .members_in_order()
            .into_iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable { m.metadata_for(&protocol) } else { Bytes::new() },
                assignment: if stable { m.assignment.clone() } else { Bytes::new() },
            })
            .collect();
        GroupDescription {
            group_id: self.group_id.clone(),
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable { protocol } else { String::new() },
            members,
            generation: self.generation,
        }
    }

    /// The group's persisted form, with `assignment` overriding the members' current ones.
    pub fn record(&self, assignment: Option<&BTreeMap<String, Bytes>>) -> GroupRecord {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupRecord {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp,
            members: self
                .members_in_order()
                .into_iter()
                .map(|m| MemberRecord {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(&protocol),
                    assignment: assignment
                        .and_then(|a| a.get(&m.member_id).cloned())
                        .unwrap_or_else(|| m.assignment.clone()),
                })
                .collect(),
        }
    }

    /// True for a group nothing has happened to yet: empty, generation 0, no member ids
    /// handed out. The shell need not keep such a group.
    pub fn is_pristine(&self) -> bool {
        self.state == GroupState::Empty
            && self.generation == 0
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && self.protocol_type.is_none()
    }

    /// True while member ids handed out with `MEMBER_ID_REQUIRED` wait to be used.
    pub fn has_pending_members(&self) -> bool {
        !self.pending_members.is_empty()
    }

    /// Marks the group Dead for DeleteGroups: only an empty group may be deleted.
    pub fn delete(&mut self, now: Now) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => {
                self.transition(now, GroupState::Dead);
                Ok(())
            }
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }

    // ----- helpers shared by join.rs and sync.rs -----

    fn transition(&mut self, now: Now, to: GroupState) {
        debug_assert!(valid_transition(self.state, to), "group {}: {:?} -> {to:?}", self.group_id, self.state);
        tracing::debug!(group = %self.group_id, from = self.state.as_str(), to = to.as_str(), "group state change");
        self.state = to;
        self.state_timestamp = now.wall_ms;
    }

    fn members_in_order(&self) -> Vec<&Member> {
        let mut v: Vec<&Member> = self.members.values().collect();
        v.sort_by_key(|m| m.seq);
        v
    }

    fn first_member(&self) -> Option<String> {
        self.members.values().min_by_key(|m| m.seq).map(|m| m.member_id.clone())
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// The largest rebalance timeout of the members: how long a rebalance may take.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    fn is_static_member_fenced(&self, instance: Option<&str>, member_id: &str) -> bool {
        instance.and_then(|i| self.static_members.get(i)).is_some_and(|current| current != member_id)
    }

    /// Kafka's `validateCurrentMember`: static ids must map to the member id sent, dynamic
    /// member ids must exist.
    fn validate_current_member(&self, member_id: &str, instance: Option<&str>) -> Result<(), ResponseError> {
        match instance {
            Some(i) => match self.static_members.get(i) {
                Some(current) if current != member_id => Err(ResponseError::FencedInstanceId),
                Some(_) => Ok(()),
                None => Err(ResponseError::UnknownMemberId),
            },
            None if !self.members.contains_key(member_id) => Err(ResponseError::UnknownMemberId),
            None => Ok(()),
        }
    }

    /// Restarts a member's session timer (a heartbeat, a completed join or sync).
    fn schedule_heartbeat(&mut self, now: Now, member_id: &str, timeout_ms: Option<i64>) {
        if let Some(m) = self.members.get_mut(member_id) {
            let timeout = timeout_ms.unwrap_or(i64::from(m.session_timeout_ms));
            m.heartbeat_deadline = Some(now.mono_ms + timeout);
        }
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Checks the invariants that must hold between events.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(l) = self.leader.as_ref().filter(|l| !self.members.contains_key(*l)) {
            return Err(format!("leader {l} is not a member"));
        }
        if self.leader.is_none() && !self.members.is_empty() {
            return Err("members but no leader".into());
        }
        for (instance, id) in &self.static_members {
            match self.members.get(id) {
                Some(m) if m.group_instance_id.as_deref() == Some(instance.as_str()) => {}
                _ => return Err(format!("static member {instance} maps to {id}, which does not hold it")),
            }
        }
        let awaiting_join = self.members.values().any(|m| m.awaiting_join.is_some());
        if awaiting_join && self.state != GroupState::PreparingRebalance {
            return Err(format!("members await join in state {:?}", self.state));
        }
        let awaiting_sync = self.members.values().any(|m| m.awaiting_sync.is_some());
        if awaiting_sync && self.state != GroupState::CompletingRebalance {
            return Err(format!("members await sync in state {:?}", self.state));
        }
        if self.state == GroupState::Empty && !self.members.is_empty() {
            return Err("empty group has members".into());
        }
        if matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance) && self.members.is_empty() {
            return Err(format!("{:?} group has no members", self.state));
        }
        if self.state == GroupState::PreparingRebalance && self.join_timer.is_none() {
            return Err("rebalance without a join timer".into());
        }
        Ok(())
    }
}

/// Kafka's `validPreviousStates`.
fn valid_transition(from: GroupState, to: GroupState) -> bool {
    use GroupState::*;
    match to {
        Dead => true,
        PreparingRebalance => matches!(from, Stable | CompletingRebalance | Empty),
        CompletingRebalance => from == PreparingRebalance,
        Stable => from == CompletingRebalance,
        Empty => from == PreparingRebalance,
    }
}
