//! Replica and leader moves of one range's group: the leader brings its Raft membership to the
//! replicas the metadata lists, one step per call, and hands leadership to a voter that can
//! take over at once (asking the next one should the target not), for the rebalancer. The
//! decisions are `ranges::membership`'s; this file reads openraft's metrics and acts.

use openraft::async_runtime::WatchReceiver;
use openraft::{ReadPolicy, ServerState};

use super::*;

impl RangeGroup {
    /// On the leader: brings the group's Raft membership to the replicas `meta` lists (the
    /// metadata committed the change first), one step per call — a learner added, the voters
    /// replaced (joint consensus inside openraft), a learner dropped. True once the
    /// membership matches, when the caller may record `meta` in the range's state. A leader
    /// `meta` makes a non-voter hands leadership to a voter first (and answers false).
    pub async fn align_replicas(&self, meta: &pb::RangeDescriptor) -> Result<bool, EtcdError> {
        let current = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            let membership = m.membership_config.membership();
            ranges::RaftMembership {
                voters: membership.voter_ids().map(base::NodeId).collect(),
                nodes: membership
                    .nodes()
                    .map(|(id, _)| base::NodeId(*id))
                    .collect(),
                settled: m.membership_config.log_id().as_ref().map(|l| l.index)
                    <= m.local_committed.as_ref().map(|l| l.index),
            }
        };
        let desc = topology::descriptor_from_pb(meta);
        let step = match ranges::membership_step(&desc, base::NodeId(self.member), &current) {
            ranges::MembershipStep::Done => return Ok(true),
            ranges::MembershipStep::Wait => {
                tracing::debug!(
                    range = self.range.0,
                    "replica change waits: membership change in flight"
                );
                return Ok(false);
            }
            ranges::MembershipStep::HandOver(voters) => {
                tracing::debug!(
                    range = self.range.0,
                    "replica change waits: leader hands over first"
                );
                for to in voters {
                    if self.transfer_leader(to.0).await.is_ok() {
                        break;
                    }
                }
                return Ok(false);
            }
            ranges::MembershipStep::AddLearner(learner) => {
                openraft::ChangeMembers::AddNodes([(learner.0, Member::default())].into())
            }
            ranges::MembershipStep::ReplaceVoters(voters) => {
                openraft::ChangeMembers::ReplaceAllVoters(voters.iter().map(|v| v.0).collect())
            }
            ranges::MembershipStep::Remove(extra) => {
                openraft::ChangeMembers::RemoveNodes([extra.0].into())
            }
        };
        // A quiesced leader, or one that just took over by a transfer, holds no leader lease,
        // and openraft refuses membership changes without one (`LeaseExpired`, no leader
        // named): wake the group and renew the lease with one acknowledged round first.
        self.activity();
        let renewed = tokio::time::timeout(
            self.request_timeout,
            self.raft.ensure_linearizable(ReadPolicy::ReadIndex),
        )
        .await;
        match renewed {
            Ok(Ok(_)) => {}
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_)))) => {
                return Err(EtcdError::NotLeader);
            }
            // No quorum answered in time: try again on the next pass.
            _ => return Ok(false),
        }
        let changed = self.raft.change_membership(step, false).await;
        tracing::debug!(
            range = self.range.0,
            ok = changed.is_ok(),
            "replica change step"
        );
        match changed {
            Ok(_) => Ok(false),
            // The lease lapsed again between the round and the change: next pass.
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))
                if forward.leader_id.is_none() && self.is_leader() =>
            {
                Ok(false)
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(EtcdError::NotLeader)
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                openraft::errors::ChangeMembershipError::InProgress(_),
            ))) => Ok(false),
            Err(RaftError::APIError(other)) => Err(internal(other)),
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped),
        }
    }

    /// On the leader: hands leadership to voter `to` (openraft's transfer: the leader stops
    /// taking writes and tells `to` to elect itself at once). Refused unless `to` is a voter
    /// whose log matches all of the leader's: a leader that marked a transfer proposes
    /// nothing more, so a target that cannot win would leave the range without writes. Should
    /// the target still not take over within the request timeout (it died as it was asked),
    /// the next voter that could is asked, in turn, until leadership moved.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), EtcdError> {
        if to == self.member {
            return Ok(());
        }
        if !can_take_over(&self.raft, to) {
            return Err(EtcdError::BadLeaderTransferee);
        }
        self.activity();
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|_| EtcdError::Stopped)?;
        let (me, range, raft, patience) = (
            self.member,
            self.range.0,
            self.raft.clone(),
            self.request_timeout,
        );
        tokio::spawn(async move {
            // The target may die as it is asked: the leader proposes nothing more and sends
            // no heartbeats, and sleeping followers would not notice. Ask each other voter in
            // turn, once `patience` passed without a new leader.
            let mut tried = vec![to];
            loop {
                let moved = raft
                    .wait(Some(patience))
                    .metrics(|m| m.current_leader != Some(me), "range leadership moved")
                    .await;
                match moved {
                    Err(openraft::metrics::WaitError::Timeout(..)) => {}
                    _ => return,
                }
                let voters: Vec<base::NodeId> = raft
                    .metrics()
                    .borrow_watched()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .map(base::NodeId)
                    .collect();
                let asked: Vec<base::NodeId> = tried.iter().copied().map(base::NodeId).collect();
                let Some(next) = ranges::next_transferee(&voters, base::NodeId(me), &asked, |v| {
                    can_take_over(&raft, v.0)
                })
                .map(|v| v.0) else {
                    tracing::warn!(
                        range,
                        ?tried,
                        "range leadership transfer: no voter can take over yet"
                    );
                    // Ask them all again next time: one may have come back.
                    tried.clear();
                    continue;
                };
                tracing::warn!(range, from = ?tried, to = next, "range leadership transfer did not finish: asking another voter");
                tried.push(next);
                if raft.trigger().transfer_leader(next).await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }

    /// Handles the leader's request to let this replica take over.
    pub async fn handle_transfer_leader(
        &self,
        request: pb::TransferLeaderRequest,
    ) -> Result<pb::TransferLeaderResponse, String> {
        crate::peer_messages::transfer_leader(&self.raft, request).await
    }

    /// On the leader: the learners whose log matches the leader's up to its commit index,
    /// ready to be promoted; empty elsewhere.
    pub fn caught_up_learners(&self) -> Vec<NodeId> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        if m.state != ServerState::Leader {
            return Vec::new();
        }
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let committed = m.local_committed.map(|l| l.index);
        m.replication
            .iter()
            .flat_map(|r| r.iter())
            .filter(|(id, matched)| {
                !voters.contains(id) && matched.map(|l| l.index) >= committed && committed.is_some()
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The term of the leader this replica knows of (0 before any).
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }
}

/// On a leader: whether voter `to` could take over at once (its log matches all of the
/// leader's). A leader that marked a transfer proposes nothing more, so a target that cannot
/// win would leave the range without writes.
fn can_take_over(raft: &RangeRaft, to: NodeId) -> bool {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    let follower = ranges::Follower {
        voter: m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == to),
        matched: m
            .replication
            .as_ref()
            .and_then(|r| r.get(&to))
            .and_then(|matched| matched.map(|l| l.index)),
    };
    ranges::takes_over_at_once(m.state == ServerState::Leader, follower, m.last_log_index)
}
