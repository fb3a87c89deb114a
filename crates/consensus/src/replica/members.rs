//! The consensus replica's membership: changes (add voter or learner, remove, promote, update
//! attributes — forwarded to the leader like writes and serialized, refused when they would
//! leave no quorum of started voters), the address book kept in step with the membership,
//! leader transfer, and the removal watch that tells the node this member was removed.

use std::collections::BTreeMap;
use std::time::Duration;

use base::EtcdError;
use openraft::async_runtime::WatchReceiver;
use proto::quorate::raft::v1 as pb;
use tokio::time::Instant;

use crate::codec;
use crate::network::{AddressBook, PeerError};
use crate::types::*;

use super::{Replica, internal};

impl Replica {
    /// Changes the group's membership through the leader and returns the membership once the
    /// change is committed.
    pub async fn change_members(
        &self,
        change: pb::MemberChange,
    ) -> Result<pb::Membership, EtcdError> {
        self.at_leader(
            || self.change_members_local(change.clone()),
            |url, remaining| {
                let request = pb::MemberChangeRequest {
                    group: 0,
                    change: Some(change.clone()),
                };
                async move {
                    let response = self.peers.change_members(&url, request, remaining).await?;
                    response.membership.ok_or_else(|| {
                        PeerError::Remote("member change answer without membership".into())
                    })
                }
            },
        )
        .await
    }

    /// Applies a membership change on this member, which must lead.
    pub async fn change_members_local(
        &self,
        change: pb::MemberChange,
    ) -> Result<pb::Membership, EtcdError> {
        let changed = tokio::time::timeout(self.request_timeout, async {
            // Checks and change under one lock, so they see the membership they change.
            let _serialized = self.membership_changes.lock().await;
            // A voter that has not acknowledged this leader yet (a fresh leader, a member
            // just restarted) gets one election timeout to do so before it counts as down.
            let patience = Instant::now() + self.election_timeout;
            loop {
                let plan = self.member_change_plan(change.change.clone());
                let (changes, retain) = match plan {
                    Err(EtcdError::Unhealthy | EtcdError::NotEnoughStartedMembers)
                        if Instant::now() < patience =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    other => other?,
                };
                match self.raft.change_membership(changes, retain).await {
                    // The previous change (or, on a fresh leader, the initial membership) is
                    // not committed yet: wait for it instead of failing the request.
                    Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                        openraft::errors::ChangeMembershipError::InProgress(_),
                    ))) => tokio::time::sleep(Duration::from_millis(50)).await,
                    other => return Ok(other),
                }
            }
        })
        .await;
        let Ok(changed) = changed else {
            return Err(EtcdError::Timeout);
        };
        let changed: Result<_, EtcdError> = changed;
        let changed = changed?;
        match changed {
            Ok(response) => {
                let membership = response
                    .membership
                    .ok_or_else(|| internal("membership change committed without membership"))?;
                Ok(codec::membership_to_pb(&membership))
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(EtcdError::NotLeader)
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                Err(EtcdError::Timeout)
            }
            Err(RaftError::APIError(other)) => Err(internal(other)),
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped),
        }
    }

    /// Checks a membership change against the current membership and returns openraft's
    /// change and whether removed voters stay as learners.
    ///
    /// Long because it is one table of change kinds (add voter or learner, remove, promote,
    /// update), each arm with etcd's refusal for that kind.
    pub(super) fn member_change_plan(
        &self,
        change: Option<pb::member_change::Change>,
    ) -> Result<(openraft::ChangeMembers<NodeId, Member>, bool), EtcdError> {
        use pb::member_change::Change;
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched().clone();
        let membership = m.membership_config.membership();
        let known = |id: &NodeId| membership.get_node(id).is_some();
        let voter = |id: &NodeId| membership.voter_ids().any(|v| v == *id);
        // As etcd's strict reconfiguration check: a voter counts as started when it is this
        // leader or acknowledged it within an election timeout.
        let started = |id: &NodeId| {
            *id == self.id
                || m.heartbeat
                    .as_ref()
                    .and_then(|acks| acks.get(id).cloned().flatten())
                    .is_some_and(|ack| openraft::Instant::elapsed(&*ack) < self.election_timeout)
        };
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let quorum = |voters: usize| voters / 2 + 1;
        Ok(match change {
            Some(Change::SetMember(set)) => {
                let member = set
                    .member
                    .as_ref()
                    .ok_or_else(|| internal("set_member without member"))?;
                if !known(&set.id) {
                    return Err(EtcdError::MemberNotFound);
                }
                let nodes = BTreeMap::from([(set.id, codec::member_from_pb(member))]);
                (openraft::ChangeMembers::SetNodes(nodes), true)
            }
            Some(Change::AddMember(add)) => {
                let member = codec::member_from_pb(
                    add.member
                        .as_ref()
                        .ok_or_else(|| internal("add_member without member"))?,
                );
                let taken = membership.nodes().any(|(_, existing)| {
                    existing
                        .peer_urls
                        .iter()
                        .any(|u| member.peer_urls.contains(u))
                });
                if taken || known(&add.id) {
                    return Err(EtcdError::PeerUrlExists);
                }
                if !voters.iter().all(started) {
                    return Err(EtcdError::Unhealthy);
                }
                // The new voter is not started yet: the others must still make a quorum (a
                // single member may take a second, as etcd allows, to rebuild a cluster).
                if !add.learner && voters.len() > 1 && voters.len() < quorum(voters.len() + 1) {
                    return Err(EtcdError::NotEnoughStartedMembers);
                }
                let nodes = BTreeMap::from([(add.id, member)]);
                if add.learner {
                    (openraft::ChangeMembers::AddNodes(nodes), true)
                } else {
                    (openraft::ChangeMembers::AddVoters(nodes), true)
                }
            }
            Some(Change::RemoveMember(id)) => {
                if !known(&id) {
                    return Err(EtcdError::MemberNotFound);
                }
                if voter(&id) {
                    let remaining: Vec<&NodeId> = voters.iter().filter(|v| **v != id).collect();
                    let up = remaining.iter().filter(|v| started(v)).count();
                    if up < quorum(remaining.len()) {
                        return Err(EtcdError::NotEnoughStartedMembers);
                    }
                    let ids = std::collections::BTreeSet::from([id]);
                    (openraft::ChangeMembers::RemoveVoters(ids), false)
                } else {
                    let ids = std::collections::BTreeSet::from([id]);
                    (openraft::ChangeMembers::RemoveNodes(ids), false)
                }
            }
            Some(Change::PromoteMember(id)) => {
                if !known(&id) {
                    return Err(EtcdError::MemberNotFound);
                }
                if voter(&id) {
                    return Err(EtcdError::MemberNotLearner);
                }
                // As etcd: the learner must have 90% of the leader's log.
                let last = m.last_log_index.unwrap_or(0);
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map_or(0, |log_id| log_id.index);
                if matched * 10 < last * 9 {
                    return Err(EtcdError::LearnerNotReady);
                }
                let ids = std::collections::BTreeSet::from([id]);
                (openraft::ChangeMembers::AddVoterIds(ids), true)
            }
            None => return Err(internal("empty member change")),
        })
    }

    /// Keeps the address book the network uses in step with the membership's peer URLs.
    pub(super) async fn follow_addresses(self, book: AddressBook) {
        let mut metrics = self.raft.metrics();
        let mut stop = self.stop.subscribe();
        loop {
            {
                let m = metrics.borrow_watched();
                let urls: std::collections::BTreeMap<NodeId, String> = m
                    .membership_config
                    .membership()
                    .nodes()
                    .filter_map(|(id, member)| Some((*id, member.peer_urls.first()?.clone())))
                    .collect();
                if *book.read().expect("address book poisoned") != urls {
                    *book.write().expect("address book poisoned") = urls;
                }
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Returns true when this member is a learner of the group.
    pub fn is_learner(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        membership.get_node(&self.id).is_some() && !membership.voter_ids().any(|v| v == self.id)
    }

    /// Hands leadership to voter `to` (etcd's MoveLeader) and waits until it leads. Only the
    /// leader can; a learner or unknown member is a bad transferee.
    pub async fn move_leader(&self, to: NodeId) -> Result<(), EtcdError> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        let is_voter = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v == to)
        };
        if !is_voter {
            return Err(EtcdError::BadLeaderTransferee);
        }
        if to == self.id {
            return Ok(());
        }
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|_| EtcdError::Stopped)?;
        self.raft
            .wait(Some(self.request_timeout))
            .metrics(|m| m.current_leader == Some(to), "leader transferred")
            .await
            .map(|_| ())
            .map_err(|_| EtcdError::LeaderTransferTimeout)
    }

    /// Handles the leader's request to let another member take over.
    pub async fn handle_transfer_leader(
        &self,
        request: pb::TransferLeaderRequest,
    ) -> Result<pb::TransferLeaderResponse, String> {
        crate::peer_messages::transfer_leader(&self.raft, request).await
    }

    /// Resolves once this member learns it was removed from the group, with the evidence.
    pub async fn removed(&self) -> String {
        let mut removed = self.removed.subscribe();
        match removed.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The sender lives as long as the replica; never resolve without evidence.
            Err(_) => std::future::pending().await,
        }
    }

    /// Returns the members committed membership changes removed.
    pub fn removed_members(&self) -> Vec<NodeId> {
        self.state.shared.removed_members().into_iter().collect()
    }

    /// Watches for this member's removal: every member records the ids committed membership
    /// changes removed. A removed member may never apply the change that removed it (the
    /// leader stops replicating to it as soon as it appends that entry), so besides its own
    /// record it asks one peer per check (ids are never reused, so a peer's record is proof).
    pub(super) async fn watch_removal(self) {
        let mut stop = self.stop.subscribe();
        let mut ticker = tokio::time::interval(base::limits::REMOVAL_CHECK_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_peer = 0usize;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            if self.state.shared.removed_members().contains(&self.id) {
                self.declare_removed("this member applied the change that removed it".into());
                return;
            }
            if self.is_leader() {
                continue;
            }
            let urls: Vec<(NodeId, String)> = self
                .membership()
                .nodes
                .iter()
                .filter(|(id, _)| **id != self.id)
                .filter_map(|(id, member)| Some((*id, member.peer_urls.first()?.clone())))
                .collect();
            if urls.is_empty() {
                continue;
            }
            let (peer, url) = &urls[next_peer % urls.len()];
            next_peer = next_peer.wrapping_add(1);
            let Ok(answer) = self
                .peers
                .members(url, base::limits::REMOVAL_CHECK_INTERVAL)
                .await
            else {
                continue;
            };
            let same_cluster = self.cluster_id == 0 || answer.cluster_id == self.cluster_id;
            if same_cluster && answer.removed.contains(&self.id) {
                self.declare_removed(format!(
                    "member {peer:x} applied the change that removed this member"
                ));
                return;
            }
        }
    }

    pub(super) fn declare_removed(&self, reason: String) {
        tracing::error!(%reason, "this member was removed from the cluster");
        self.removed.send_replace(Some(reason));
    }
}
