//! JoinGroup and the rebalance it drives: member ids (the `MEMBER_ID_REQUIRED` flow), static
//! members, the initial delay, completing the join phase and starting a generation. Follows
//! Kafka's `GroupCoordinator.handleJoinGroup` and `onCompleteJoin`.

use std::collections::HashMap;

use kafka_protocol::ResponseError;

use super::{
    Group, GroupState, JoinRequest, JoinResult, JoinTimer, JoinWaiter, JoinedMember, Member, Now, Outputs, Persist,
    PersistKind, Protocol, Reply, SyncResult, WaiterId,
};

impl Group {
    /// Handles a JoinGroup. The answer to `waiter` is in `out` now or after a later event.
    pub fn join(&mut self, now: Now, waiter: WaiterId, req: JoinRequest, out: &mut Outputs) {
        let reject =
            |out: &mut Outputs, e| out.replies.push(Reply::Join(waiter, JoinResult::error(req.member_id.clone(), e)));
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return reject(out, ResponseError::InvalidSessionTimeout);
        }
        if self.state == GroupState::Dead {
            return reject(out, ResponseError::CoordinatorNotAvailable);
        }
        if !self.accept_joining_member(&req.member_id) {
            return reject(out, ResponseError::GroupMaxSizeReached);
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return reject(out, ResponseError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            self.new_member_join(now, waiter, req, out);
        } else {
            self.current_member_join(now, waiter, req, out);
        }
        if self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now, out);
        }
    }

    /// Kafka's `acceptJoiningMember`: `group.max.size` counts members already in the group.
    fn accept_joining_member(&self, member_id: &str) -> bool {
        let max = usize::try_from(self.config.max_size).unwrap_or(usize::MAX);
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                self.members.get(member_id).is_some_and(|m| m.awaiting_join.is_some())
                    || self.members.values().filter(|m| m.awaiting_join.is_some()).count() < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < max
            }
        }
    }

    /// An empty group accepts any non-empty protocol list; otherwise the protocol type must
    /// match and one of the protocols must be supported by every member.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|p| self.members.values().all(|m| m.protocols.iter().any(|q| q.name == p.name)))
    }

    fn new_member_join(&mut self, now: Now, waiter: WaiterId, req: JoinRequest, out: &mut Outputs) {
        let new_id = req.generated_member_id.clone();
        match req.group_instance_id.clone() {
            Some(instance) => match self.static_members.get(&instance).cloned() {
                Some(old_id) => {
                    tracing::info!(group = %self.group_id, %instance, old = %old_id, new = %new_id, "static member rejoins with a new member id");
                    self.update_static_member_and_rebalance(now, waiter, req, &old_id, new_id, out);
                }
                None => self.add_member_and_rebalance(now, waiter, req, new_id, out),
            },
            None if req.require_known_member_id => {
                let deadline = now.mono_ms + i64::from(req.session_timeout_ms);
                self.pending_members.insert(new_id.clone(), deadline);
                out.replies.push(Reply::Join(waiter, JoinResult::error(new_id, ResponseError::MemberIdRequired)));
            }
            None => self.add_member_and_rebalance(now, waiter, req, new_id, out),
        }
    }

    fn current_member_join(&mut self, now: Now, waiter: WaiterId, req: JoinRequest, out: &mut Outputs) {
        let member_id = req.member_id.clone();
        if self.pending_members.contains_key(&member_id) {
            if req.group_instance_id.is_some() {
                // Pending ids are only issued to dynamic members.
                out.replies.push(Reply::Join(waiter, JoinResult::error(member_id, ResponseError::UnknownMemberId)));
                return;
            }
            self.pending_members.remove(&member_id);
            self.add_member_and_rebalance(now, waiter, req, member_id, out);
            return;
        }
        let instance = req.group_instance_id.as_deref();
        let instance_unknown = instance.is_some_and(|i| !self.static_members.contains_key(i));
        if self.is_static_member_fenced(instance, &member_id) {
            out.replies.push(Reply::Join(waiter, JoinResult::error(member_id, ResponseError::FencedInstanceId)));
            return;
        }
        let Some(member) = self.members.get(&member_id).filter(|_| !instance_unknown) else {
            out.replies.push(Reply::Join(waiter, JoinResult::error(member_id, ResponseError::UnknownMemberId)));
            return;
        };
        let matches = member.matches(&req.protocols);
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(now, waiter, &req, out),
            GroupState::CompletingRebalance if matches => {
                // It lost its JoinGroup response: send it again.
                let result = self.join_result(&member_id, self.is_leader(&member_id));
                out.replies.push(Reply::Join(waiter, result));
            }
            GroupState::Stable if matches && !self.is_leader(&member_id) => {
                let result = self.join_result(&member_id, false);
                out.replies.push(Reply::Join(waiter, result));
            }
            // A changed subscription, or the leader asking for a new assignment.
            GroupState::CompletingRebalance | GroupState::Stable => {
                let why = if matches { "the leader rejoins" } else { "a member's protocols changed" };
                tracing::info!(group = %self.group_id, member = %member_id, state = self.state.as_str(), "rebalancing: {why}");
                self.update_member_and_rebalance(now, waiter, &req, out);
            }
            GroupState::Empty | GroupState::Dead => {
                out.replies.push(Reply::Join(waiter, JoinResult::error(member_id, ResponseError::UnknownMemberId)));
            }
        }
    }

    /// The JoinGroup response of the current generation for `member_id`.
    fn join_result(&self, member_id: &str, with_members: bool) -> JoinResult {
        JoinResult {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: if with_members { self.current_member_metadata() } else { Vec::new() },
        }
    }

    /// Every member with its metadata for the selected protocol: what the leader assigns from.
    pub(super) fn current_member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members_in_order()
            .into_iter()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata_for(&protocol),
            })
            .collect()
    }

    fn add_member_and_rebalance(
        &mut self,
        now: Now,
        waiter: WaiterId,
        req: JoinRequest,
        member_id: String,
        out: &mut Outputs,
    ) {
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: bytes::Bytes::new(),
            awaiting_join: Some(JoinWaiter { id: waiter }),
            awaiting_sync: None,
            is_new: true,
            heartbeat_deadline: None,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        if self.state == GroupState::PreparingRebalance && self.generation == 0 {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members.insert(instance.clone(), member_id.clone());
        }
        self.members.insert(member_id.clone(), member);
        // A new member cannot heartbeat until it has its id, and a client that disconnected
        // while its JoinGroup waited would leave a defunct member: bound its wait.
        self.schedule_heartbeat(now, &member_id, Some(i64::from(self.config.new_member_join_timeout_ms)));
        tracing::info!(group = %self.group_id, member = %member_id, "new member joins");
        self.maybe_prepare_rebalance(now, out);
    }

    fn update_member_and_rebalance(&mut self, now: Now, waiter: WaiterId, req: &JoinRequest, out: &mut Outputs) {
        self.update_member(waiter, req, out);
        self.maybe_prepare_rebalance(now, out);
    }

    /// Kafka's `updateMember`: new protocols and timeouts, and this JoinGroup as the waiter.
    fn update_member(&mut self, waiter: WaiterId, req: &JoinRequest, out: &mut Outputs) {
        let member_id = req.member_id.clone();
        let Some(m) = self.members.get_mut(&member_id) else { return };
        m.protocols = req.protocols.clone();
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_timeout_ms = req.session_timeout_ms;
        let new = JoinWaiter { id: waiter };
        if let Some(old) = m.awaiting_join.replace(new) {
            // A second JoinGroup while the first still waits: the client gave up on the first.
            let stale = JoinResult::error(member_id, ResponseError::RebalanceInProgress);
            out.replies.push(Reply::Join(old.id, stale));
        }
    }

    fn update_static_member_and_rebalance(
        &mut self,
        now: Now,
        waiter: WaiterId,
        req: JoinRequest,
        old_id: &str,
        new_id: String,
        out: &mut Outputs,
    ) {
        let old_leader = self.leader.clone();
        self.replace_static_member(old_id, &new_id, out);
        self.schedule_heartbeat(now, &new_id, None);
        match self.state {
            GroupState::Stable => {
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.protocols = req.protocols.clone();
                    m.rebalance_timeout_ms = req.rebalance_timeout_ms;
                    m.session_timeout_ms = req.session_timeout_ms;
                }
                if self.protocol_name.as_deref() == Some(self.select_protocol().as_str()) {
                    // Same protocol: no rebalance; answer once the new member id is durable.
                    let skip_assignment = req.supports_skip_assignment && self.is_leader(&new_id);
                    let kind = PersistKind::StaticRejoin {
                        waiter,
                        generation: self.generation,
                        member_id: new_id,
                        old_leader,
                        skip_assignment,
                    };
                    out.persist.push(Persist { kind, record: self.record(None) });
                } else {
                    let req = JoinRequest { member_id: new_id, ..req };
                    self.update_member_and_rebalance(now, waiter, &req, out);
                }
            }
            GroupState::CompletingRebalance => {
                // The leader may already be assigning with the old id: rebalance again.
                let req = JoinRequest { member_id: new_id, ..req };
                self.update_member(waiter, &req, out);
                self.prepare_rebalance(now, out);
            }
            GroupState::PreparingRebalance => {
                let req = JoinRequest { member_id: new_id, ..req };
                self.update_member(waiter, &req, out);
            }
            GroupState::Empty | GroupState::Dead => {
                out.replies.push(Reply::Join(waiter, JoinResult::error(new_id, ResponseError::UnknownMemberId)));
            }
        }
    }

    /// Moves a static member to a new member id; whatever the old id waited for is fenced.
    fn replace_static_member(&mut self, old_id: &str, new_id: &str, out: &mut Outputs) {
        let Some(mut m) = self.members.remove(old_id) else { return };
        if let Some(w) = m.awaiting_join.take() {
            out.replies.push(Reply::Join(w.id, JoinResult::error(old_id, ResponseError::FencedInstanceId)));
        }
        if let Some(w) = m.awaiting_sync.take() {
            out.replies.push(Reply::Sync(w, SyncResult::error(ResponseError::FencedInstanceId)));
        }
        m.member_id = new_id.to_string();
        if let Some(instance) = &m.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.to_string());
        }
        self.members.insert(new_id.to_string(), m);
        if self.is_leader(old_id) {
            self.leader = Some(new_id.to_string());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.to_string());
        }
    }

    pub(super) fn maybe_prepare_rebalance(&mut self, now: Now, out: &mut Outputs) {
        if matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty) {
            self.prepare_rebalance(now, out);
        }
    }

    pub(super) fn prepare_rebalance(&mut self, now: Now, out: &mut Outputs) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_error(now, ResponseError::RebalanceInProgress, out);
        }
        self.sync_deadline = None;
        self.storing_assignment = None;
        let rebalance_timeout = self.rebalance_timeout_ms();
        self.join_timer = Some(if self.state == GroupState::Empty {
            let delay = i64::from(self.config.initial_rebalance_delay_ms);
            JoinTimer::Initial { deadline: now.mono_ms + delay, delay, remaining: (rebalance_timeout - delay).max(0) }
        } else {
            JoinTimer::Normal { deadline: now.mono_ms + rebalance_timeout }
        });
        tracing::info!(group = %self.group_id, generation = self.generation, members = self.members.len(), "preparing to rebalance");
        self.transition(now, GroupState::PreparingRebalance);
        self.try_complete_join(now, out);
    }

    /// Completes the join phase early once every member has rejoined (not during the initial
    /// delay, which always runs its course).
    pub(super) fn try_complete_join(&mut self, now: Now, out: &mut Outputs) {
        if matches!(self.join_timer, Some(JoinTimer::Normal { .. })) && self.all_members_joined() {
            self.complete_join(now, out);
        }
    }

    pub(super) fn on_join_timer(&mut self, now: Now, timer: JoinTimer, out: &mut Outputs) {
        match timer {
            JoinTimer::Initial { delay, remaining, .. } if self.new_member_added && remaining != 0 => {
                // Members are still arriving: wait a little longer, within the rebalance timeout.
                self.new_member_added = false;
                let next = i64::from(self.config.initial_rebalance_delay_ms).min(remaining);
                let remaining = (remaining - delay).max(0);
                self.join_timer = Some(JoinTimer::Initial { deadline: now.mono_ms + next, delay: next, remaining });
            }
            _ => self.complete_join(now, out),
        }
    }

    /// Kafka's `onCompleteJoin`: drop dynamic members that did not rejoin, start the next
    /// generation and answer every waiting JoinGroup (the leader gets all members' metadata).
    fn complete_join(&mut self, now: Now, out: &mut Outputs) {
        self.join_timer = None;
        self.new_member_added = false;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %self.group_id, member = %id, "removing member that did not rejoin in time");
            self.remove_member(&id, out);
        }
        if self.state == GroupState::Dead {
            return;
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Only static members that did not rejoin remain: wait for them (or their session
            // timeouts) a while longer.
            tracing::warn!(group = %self.group_id, "no member rejoined; extending the rebalance");
            self.join_timer = Some(JoinTimer::Normal { deadline: now.mono_ms + self.rebalance_timeout_ms() });
            return;
        }
        self.init_next_generation(now);
        if self.state == GroupState::Empty {
            tracing::info!(group = %self.group_id, generation = self.generation, "group is now empty");
            out.persist.push(Persist { kind: PersistKind::Empty, record: self.record(None) });
            return;
        }
        tracing::info!(group = %self.group_id, generation = self.generation, members = self.members.len(), protocol = ?self.protocol_name, "group rebalanced; awaiting the leader's assignment");
        let leader = self.leader.clone().unwrap_or_default();
        let ids: Vec<String> = self.members_in_order().into_iter().map(|m| m.member_id.clone()).collect();
        for id in ids {
            let is_leader = id == leader;
            let mut result = self.join_result(&id, is_leader);
            result.skip_assignment = false;
            if let Some(w) = self.members.get_mut(&id).and_then(|m| m.awaiting_join.take()) {
                out.replies.push(Reply::Join(w.id, result));
            }
            self.schedule_heartbeat(now, &id, None);
            if let Some(m) = self.members.get_mut(&id) {
                m.is_new = false;
            }
            self.pending_sync.insert(id);
        }
        self.sync_deadline = Some(now.mono_ms + self.rebalance_timeout_ms());
    }

    /// Keeps the leader if it rejoined, else hands leadership to a member that did.
    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else { return false };
        if self.members.get(&leader).is_some_and(|m| m.awaiting_join.is_some()) {
            return true;
        }
        let joined =
            self.members_in_order().into_iter().find(|m| m.awaiting_join.is_some()).map(|m| m.member_id.clone());
        match joined {
            Some(id) => {
                tracing::info!(group = %self.group_id, old = %leader, new = %id, "leader did not rejoin; electing a new one");
                self.leader = Some(id);
                true
            }
            None => false,
        }
    }

    fn init_next_generation(&mut self, now: Now) {
        self.generation += 1;
        self.pending_sync.clear();
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(now, GroupState::Empty);
        } else {
            self.protocol_name = Some(self.select_protocol());
            self.transition(now, GroupState::CompletingRebalance);
        }
    }

    /// The protocol every member supports that most members prefer (ties: the earliest in the
    /// longest-standing member's list), as Kafka's `selectProtocol`.
    pub(super) fn select_protocol(&self) -> String {
        let members = self.members_in_order();
        let supported_by_all = |name: &str| members.iter().all(|m| m.protocols.iter().any(|p| p.name == name));
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in &members {
            if let Some(p) = m.protocols.iter().find(|p| supported_by_all(&p.name)) {
                *votes.entry(p.name.as_str()).or_default() += 1;
            }
        }
        let Some(first) = members.first() else { return String::new() };
        let mut best: Option<(&str, usize)> = None;
        for p in &first.protocols {
            let v = votes.get(p.name.as_str()).copied().unwrap_or(0);
            if v > 0 && best.is_none_or(|(_, b)| v > b) {
                best = Some((p.name.as_str(), v));
            }
        }
        best.map(|(n, _)| n.to_string()).or_else(|| first.protocols.first().map(|p| p.name.clone())).unwrap_or_default()
    }

    /// Removes a member without triggering anything (Kafka's `group.remove`).
    pub(super) fn remove_member(&mut self, member_id: &str, out: &mut Outputs) {
        let Some(m) = self.members.remove(member_id) else { return };
        if let Some(w) = m.awaiting_join {
            out.replies.push(Reply::Join(w.id, JoinResult::error("", ResponseError::UnknownMemberId)));
        }
        if let Some(w) = m.awaiting_sync {
            out.replies.push(Reply::Sync(w, SyncResult::error(ResponseError::UnknownMemberId)));
        }
        if let Some(instance) = &m.group_instance_id {
            if self.static_members.get(instance).is_some_and(|id| id == member_id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader = self.first_member();
        }
    }

    /// Removes a member and rebalances (or completes the running rebalance) as needed.
    pub(super) fn remove_member_and_update(&mut self, now: Now, member_id: &str, out: &mut Outputs) {
        self.remove_member(member_id, out);
        match self.state {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => self.maybe_prepare_rebalance(now, out),
            GroupState::PreparingRebalance => self.try_complete_join(now, out),
        }
    }

    pub(super) fn remove_pending_member(&mut self, now: Now, member_id: &str, out: &mut Outputs) {
        self.pending_members.remove(member_id);
        if self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now, out);
        }
    }
}
