//! SyncGroup, Heartbeat, LeaveGroup, OffsetCommit validation and the completion of group
//! record writes. Follows Kafka's `GroupCoordinator.handleSyncGroup`, `handleHeartbeat`,
//! `handleLeaveGroup` and `validateOffsetCommit`.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::{Group, GroupState, JoinResult, Now, Outputs, Persist, PersistKind, Reply, SyncResult, WaiterId};

/// A SyncGroup request as the engine needs it.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Generation the member believes it is in.
    pub generation_id: i32,
    /// v5+: must match the group's protocol type when present.
    pub protocol_type: Option<String>,
    /// v5+: must match the selected protocol when present.
    pub protocol_name: Option<String>,
    /// The leader's assignment per member id (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
}

/// One member named in a LeaveGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMember {
    /// Member id; empty to remove a static member by instance id alone (admin removal).
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
}

impl Group {
    /// Handles a SyncGroup. The answer to `waiter` is in `out` now or after a later event
    /// (the leader's assignment, once it is durable).
    pub fn sync(&mut self, now: Now, waiter: WaiterId, req: SyncRequest, out: &mut Outputs) {
        let reject = |out: &mut Outputs, e| out.replies.push(Reply::Sync(waiter, SyncResult::error(e)));
        let member_id = req.member_id.as_str();
        if self.state == GroupState::Dead {
            return reject(out, ResponseError::CoordinatorNotAvailable);
        }
        if self.is_static_member_fenced(req.group_instance_id.as_deref(), member_id) {
            return reject(out, ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return reject(out, ResponseError::UnknownMemberId);
        }
        if req.generation_id != self.generation {
            return reject(out, ResponseError::IllegalGeneration);
        }
        if req.protocol_type.as_ref().is_some_and(|t| self.protocol_type.as_ref() != Some(t))
            || req.protocol_name.as_ref().is_some_and(|n| self.protocol_name.as_ref() != Some(n))
        {
            return reject(out, ResponseError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => reject(out, ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => reject(out, ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    if let Some(old) = m.awaiting_sync.replace(waiter) {
                        out.replies.push(Reply::Sync(old, SyncResult::error(ResponseError::RebalanceInProgress)));
                    }
                }
                self.pending_sync.remove(member_id);
                if self.is_leader(member_id) && self.storing_assignment != Some(self.generation) {
                    let mut assignment: BTreeMap<String, Bytes> =
                        req.assignments.into_iter().filter(|(id, _)| self.members.contains_key(id)).collect();
                    for id in self.members.keys() {
                        assignment.entry(id.clone()).or_default();
                    }
                    tracing::info!(group = %self.group_id, generation = self.generation, members = self.members.len(), "assignment received from the leader");
                    self.storing_assignment = Some(self.generation);
                    let record = self.record(Some(&assignment));
                    let kind = PersistKind::Assignment { generation: self.generation, assignment };
                    out.persist.push(Persist { kind, record });
                }
            }
            GroupState::Stable => {
                self.pending_sync.remove(member_id);
                let assignment = self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                out.replies.push(Reply::Sync(
                    waiter,
                    SyncResult {
                        error: None,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        assignment,
                    },
                ));
                self.schedule_heartbeat(now, member_id, None);
            }
        }
    }

    /// Handles a Heartbeat: `Ok` keeps the member alive; `REBALANCE_IN_PROGRESS` tells it to
    /// rejoin (its session is still refreshed).
    pub fn heartbeat(
        &mut self,
        now: Now,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_static_member_fenced(instance, member_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.schedule_heartbeat(now, member_id, None);
                Ok(())
            }
            GroupState::PreparingRebalance => {
                self.schedule_heartbeat(now, member_id, None);
                Err(ResponseError::RebalanceInProgress)
            }
        }
    }

    /// Handles a LeaveGroup: one result per member named, or a group-level error. Each member
    /// that leaves triggers a rebalance at once (or completes the running one).
    pub fn leave(
        &mut self,
        now: Now,
        leaving: &[LeaveMember],
        out: &mut Outputs,
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let mut results = Vec::with_capacity(leaving.len());
        for l in leaving {
            let instance = l.group_instance_id.as_deref();
            let result = if l.member_id.is_empty() {
                match instance.and_then(|i| self.static_members.get(i)).cloned() {
                    Some(id) => {
                        tracing::info!(group = %self.group_id, member = %id, "static member removed by instance id");
                        self.remove_member_and_update(now, &id, out);
                        Ok(())
                    }
                    None => Err(ResponseError::UnknownMemberId),
                }
            } else if self.pending_members.contains_key(&l.member_id) {
                self.remove_pending_member(now, &l.member_id, out);
                Ok(())
            } else {
                self.validate_current_member(&l.member_id, instance).map(|()| {
                    tracing::info!(group = %self.group_id, member = %l.member_id, "member leaves the group");
                    self.remove_member_and_update(now, &l.member_id, out);
                })
            };
            results.push(result);
        }
        Ok(results)
    }

    /// Checks that an OffsetCommit may be stored (Kafka's `validateOffsetCommit` and the state
    /// check after it). A commit from a member also counts as a heartbeat.
    pub fn validate_commit(
        &mut self,
        now: Now,
        generation: i32,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation >= 0 || !member_id.is_empty() || instance.is_some() {
            self.validate_current_member(member_id, instance)?;
            if generation != self.generation {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if self.state != GroupState::Empty {
            // Only members may commit for a group that has members.
            return Err(ResponseError::UnknownMemberId);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Ok(()),
            GroupState::Stable | GroupState::PreparingRebalance => {
                self.schedule_heartbeat(now, member_id, None);
                Ok(())
            }
            GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
        }
    }

    /// A group record write requested in [`Outputs::persist`] finished.
    pub fn on_persisted(&mut self, now: Now, kind: PersistKind, result: Result<(), ResponseError>, out: &mut Outputs) {
        match kind {
            PersistKind::Assignment { generation, assignment } => {
                if self.storing_assignment == Some(generation) {
                    self.storing_assignment = None;
                }
                // Another member may have joined while the write was in flight.
                if self.state != GroupState::CompletingRebalance || generation != self.generation {
                    return;
                }
                match result {
                    Err(e) => {
                        tracing::warn!(group = %self.group_id, generation, error = %e, "storing the assignment failed; rebalancing");
                        self.reset_and_propagate_assignment_error(now, e, out);
                        self.maybe_prepare_rebalance(now, out);
                    }
                    Ok(()) => {
                        for (id, m) in self.members.iter_mut() {
                            m.assignment = assignment.get(id).cloned().unwrap_or_default();
                        }
                        self.propagate_assignment(now, None, out);
                        self.transition(now, GroupState::Stable);
                        tracing::info!(group = %self.group_id, generation, members = self.members.len(), "group is stable");
                    }
                }
            }
            PersistKind::StaticRejoin { waiter, generation, member_id, old_leader, skip_assignment } => {
                let still_valid = self.state == GroupState::Stable
                    && generation == self.generation
                    && self.members.contains_key(&member_id);
                let reply = match result {
                    Err(e) => JoinResult::error(member_id, e),
                    Ok(()) if !still_valid => JoinResult::error(member_id, ResponseError::RebalanceInProgress),
                    Ok(()) => {
                        let mut r = self.join_result_for_static(&member_id, skip_assignment, old_leader);
                        r.error = None;
                        r
                    }
                };
                out.replies.push(Reply::Join(waiter, reply));
            }
            PersistKind::Empty => {
                if let Err(e) = result {
                    tracing::warn!(group = %self.group_id, error = %e, "storing the empty group failed");
                }
            }
        }
    }

    /// The JoinGroup answer for a static member that rejoined a Stable group. A v9+ leader
    /// learns it leads but must not reassign; older clients are told the old leader id so they
    /// do not compute an assignment the Stable group would not distribute.
    fn join_result_for_static(&self, member_id: &str, skip_assignment: bool, old_leader: Option<String>) -> JoinResult {
        JoinResult {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: if skip_assignment { self.leader.clone() } else { old_leader }.unwrap_or_default(),
            skip_assignment,
            member_id: member_id.to_string(),
            members: if skip_assignment { self.current_member_metadata() } else { Vec::new() },
        }
    }

    pub(super) fn reset_and_propagate_assignment_error(&mut self, now: Now, e: ResponseError, out: &mut Outputs) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
        }
        self.propagate_assignment(now, Some(e), out);
    }

    /// Answers every waiting SyncGroup with the member's assignment (or `error`) and restarts
    /// those members' session timers.
    fn propagate_assignment(&mut self, now: Now, error: Option<ResponseError>, out: &mut Outputs) {
        let (protocol_type, protocol_name) = match error {
            None => (self.protocol_type.clone(), self.protocol_name.clone()),
            Some(_) => (None, None),
        };
        let mut answered = Vec::new();
        for m in self.members.values_mut() {
            if let Some(w) = m.awaiting_sync.take() {
                out.replies.push(Reply::Sync(
                    w,
                    SyncResult {
                        error,
                        protocol_type: protocol_type.clone(),
                        protocol_name: protocol_name.clone(),
                        assignment: m.assignment.clone(),
                    },
                ));
                answered.push(m.member_id.clone());
            }
        }
        for id in answered {
            self.schedule_heartbeat(now, &id, None);
        }
    }

    /// Members that never sent SyncGroup within the rebalance timeout are removed.
    pub(super) fn on_sync_timeout(&mut self, now: Now, out: &mut Outputs) {
        self.sync_deadline = None;
        if !matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable) || self.pending_sync.is_empty() {
            return;
        }
        let ids: Vec<String> = self.pending_sync.iter().cloned().collect();
        tracing::info!(group = %self.group_id, members = ?ids, "removing members that did not send SyncGroup in time");
        for id in ids {
            self.remove_member(&id, out);
        }
        self.maybe_prepare_rebalance(now, out);
    }
}
