//! The rebalancer's driver: on the member leading the metadata, once per
//! `RANGE_REBALANCE_INTERVAL`, it gathers what `ranges::plan` needs — the members with their
//! health (this member's probes: unreachable since when), every consensus range's descriptor
//! and its bucket's replica count, and from each live member the ranges it leads with their
//! caught-up learners — and carries the plan out: a replica change is committed in the
//! metadata for the generation it was planned for (the range's leader then brings its Raft
//! membership along, `splits::finish_change`), a leadership hand-over is asked of the range's
//! leader. Nothing is decided here; a step that failed or raced is planned again next round.

use proto::quorate::v1::Refusal;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base::NodeId;
use proto::quorate::raft::v1 as raftpb;
use ranges::{MemberHealth, MemberInfo, RangeInfo, RebalanceConfig, ReplicaChange, Step};

use crate::{RangeNode, RangeNodeError};

/// Steps carried out since start, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Moves {
    pub(crate) replica_changes: AtomicU64,
    pub(crate) leader_transfers: AtomicU64,
}

/// Intervals a settled rebalancer skips before it plans again anyway.
const RANGE_REBALANCE_IDLE_ROUNDS: u32 = 4;

/// How often a manual move looks at its range's descriptor while the learner catches up.
const MOVE_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// What the members leading ranges reported: per range, the leader with the highest term and
/// its caught-up learners.
type Leaders = HashMap<u64, (u64, NodeId, Vec<NodeId>)>;

impl RangeNode {
    /// Plans once per `RANGE_REBALANCE_INTERVAL` while there is something to do; a round that
    /// found nothing to do, with the metadata and the members' health unchanged since, is
    /// repeated only every `RANGE_REBALANCE_IDLE_ROUNDS` intervals (leaderships can still
    /// drift without either changing), so a settled cluster of many ranges costs little.
    pub(crate) async fn rebalance_loop(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut settled: Option<(u64, Vec<(u64, bool)>)> = None;
        let mut idle_rounds = 0u32;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(base::limits::RANGE_REBALANCE_INTERVAL) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            if !self.replica.is_leader() {
                settled = None;
                continue;
            }
            let seen = (self.replica.topology_version(), self.member_health());
            if settled.as_ref() == Some(&seen) && idle_rounds < RANGE_REBALANCE_IDLE_ROUNDS {
                idle_rounds += 1;
                continue;
            }
            idle_rounds = 0;
            let steps = self.rebalance_round().await;
            settled = (steps == 0).then_some(seen);
        }
    }

    /// Each member of the main group and whether this member holds it live.
    fn member_health(&self) -> Vec<(u64, bool)> {
        let me = self.me();
        self.replica
            .status()
            .members
            .keys()
            .map(|&id| (id, id == me || self.liveness.live(id)))
            .collect()
    }

    /// One round of the plan (see the module documentation); returns the steps it took.
    async fn rebalance_round(&self) -> usize {
        let topology = self.replica.topology();
        if topology.ranges.is_empty() {
            return 0;
        }
        let me = self.me();
        let members: Vec<MemberInfo> = self
            .replica
            .status()
            .members
            .keys()
            .map(|&id| MemberInfo {
                id: NodeId(id),
                health: if id == me || self.liveness.live(id) {
                    MemberHealth::Live
                } else {
                    MemberHealth::Unreachable {
                        since: self.liveness.silent_for(id),
                    }
                },
                draining: topology.draining.contains(&id),
            })
            .collect();
        let draining_me = topology.draining.contains(&me);
        if draining_me {
            self.hand_over_metadata(&members).await;
        }
        let leaders = self.led_ranges(&members).await;
        let replicas: HashMap<&str, usize> = topology
            .buckets
            .iter()
            .map(|b| (b.name.as_str(), b.n as usize))
            .collect();
        let ranges: Vec<RangeInfo> = topology
            .ranges
            .iter()
            .map(|r| {
                let led = leaders.get(&r.id);
                RangeInfo {
                    descriptor: topology::descriptor_from_pb(r),
                    leader: led.map(|(_, leader, _)| *leader),
                    caught_up: led.map(|(_, _, c)| c.clone()).unwrap_or_default(),
                    replicas: replicas.get(r.bucket.as_str()).copied().filter(|&n| n > 0),
                }
            })
            .collect();
        let config = RebalanceConfig {
            dead_member_timeout: self.config.dead_member_timeout,
            ..RebalanceConfig::default()
        };
        let steps = ranges::plan(&members, &ranges, &config);
        let taken = steps.len();
        for step in steps {
            self.take_step(step, &topology, &leaders).await;
        }
        // A draining leader of the metadata hands over: not settled while it still leads.
        taken + usize::from(draining_me)
    }

    /// This member leads the metadata but drains: hands the metadata leadership to a live
    /// voter that does not (the next leader's rebalancer carries the plan on).
    async fn hand_over_metadata(&self, members: &[MemberInfo]) {
        let status = self.replica.status();
        let to = members.iter().find(|m| {
            m.id.0 != self.me()
                && m.health == MemberHealth::Live
                && !m.draining
                && status.members.contains_key(&m.id.0)
                && !status.learners.contains(&m.id.0)
        });
        let Some(to) = to else {
            tracing::warn!(
                "draining the metadata leader: no live member that is not draining can lead"
            );
            return;
        };
        match self.replica.move_leader(to.id.0).await {
            Ok(()) => tracing::info!(to = to.id.0, "draining: metadata leadership handed over"),
            Err(error) => tracing::debug!(%error, "draining: metadata leadership hand-over"),
        }
    }

    /// `quorate member drain`: marks `member` as draining (or, with `undo`, not), then says
    /// what is left on it — replicas by the metadata, leaderships by the member's own report.
    pub(crate) async fn drain(
        &self,
        member: u64,
        undo: bool,
    ) -> Result<proto::quorate::v1::DrainMemberResponse, RangeNodeError> {
        let change = raftpb::MemberDrain {
            member,
            draining: !undo,
        };
        let reply = self.replica.change_drain(change).await?;
        if !reply.refusal.is_empty() {
            return Err(RangeNodeError::NoMember(member));
        }
        let replicas_left = topology::replicas_on(&self.replica.topology(), member);
        let leaders_left = match self.peer_url(member) {
            Some(url) => self
                .peers
                .led_ranges(&url, self.config.request_timeout)
                .await
                .map_or(0, |answer| answer.ranges.len()),
            None => 0,
        };
        Ok(proto::quorate::v1::DrainMemberResponse {
            draining: reply.draining.contains(&member),
            replicas_left: replicas_left as u32,
            leaders_left: leaders_left as u32,
        })
    }

    /// Commits one replica change of `meta`'s range in the metadata, for `generation` (refused,
    /// with why in the reply, if the range moved on since).
    pub(crate) async fn commit_replica_change(
        &self,
        meta: &raftpb::RangeDescriptor,
        generation: u64,
        change: ReplicaChange,
    ) -> Result<raftpb::RangeChangeResponse, base::EtcdError> {
        let proposed = raftpb::RangeChange {
            bucket: meta.bucket.clone(),
            range: meta.id,
            generation,
            change: Some(topology::replica_change_to_pb(change)),
        };
        self.replica.change_range(proposed).await
    }

    /// Asks every live member which ranges it leads.
    async fn led_ranges(&self, members: &[MemberInfo]) -> Leaders {
        let asks = members
            .iter()
            .filter(|m| m.health == MemberHealth::Live)
            .filter_map(|m| self.peer_url(m.id.0))
            .map(|url| self.peers.led_ranges(&url, self.config.request_timeout));
        let mut leaders: Leaders = HashMap::new();
        for answer in futures::future::join_all(asks).await {
            let Ok(answer) = answer else { continue };
            for led in answer.ranges {
                let known = leaders.get(&led.range).map(|(term, _, _)| *term);
                if known.is_none_or(|term| led.term > term) {
                    let caught_up = led.caught_up.into_iter().map(NodeId).collect();
                    leaders.insert(led.range, (led.term, NodeId(answer.member), caught_up));
                }
            }
        }
        leaders
    }

    /// `quorate range move`: moves the replica of the range of `bucket` holding `key` from
    /// member `from` to member `to`, step by step as `ranges::move_step` says (the rebalancer
    /// promotes the learner once it has caught up); answers with the range once done.
    pub(crate) async fn move_replica(
        &self,
        bucket: &str,
        key: &[u8],
        from: u64,
        to: u64,
    ) -> Result<raftpb::RangeDescriptor, RangeNodeError> {
        let definition = self.require_consensus(bucket, "range move").await?;
        crate::services::check_key(key)?;
        let deadline = tokio::time::Instant::now() + base::limits::RANGE_MOVE_TIMEOUT;
        self.replica.linearizable_barrier().await?;
        let members = self.replica.status().members;
        for member in [from, to] {
            if !members.contains_key(&member) {
                return Err(RangeNodeError::NoMember(member));
            }
        }
        let id = self
            .metadata_ranges(bucket)
            .iter()
            .find(|r| topology::descriptor_from_pb(r).contains(key))
            .map(|r| r.id)
            .ok_or_else(|| {
                RangeNodeError::Internal(format!("no range of {bucket:?} holds the key"))
            })?;
        let target = definition.n as usize;
        let mut started = false;
        // A change refused for the generation it was planned at is planned again once; refused
        // again at the same generation, it is refused for good.
        let mut refused_at: Option<u64> = None;
        loop {
            let topology = self.replica.topology();
            let Some(meta) = topology.ranges.iter().find(|r| r.id == id).cloned() else {
                return Err(RangeNodeError::refused(
                    Refusal::NotFound,
                    format!("range {id} was merged away during the move"),
                ));
            };
            if !started && topology.draining.contains(&to) {
                return Err(RangeNodeError::refused(
                    Refusal::Invalid,
                    format!("member {to:x} is draining: it takes no new replicas"),
                ));
            }
            let desc = topology::descriptor_from_pb(&meta);
            match ranges::move_step(&desc, NodeId(from), NodeId(to), target, started) {
                ranges::MoveStep::Done => {
                    self.await_serving(&meta, deadline).await;
                    return Ok(meta);
                }
                ranges::MoveStep::Refuse(why) => return Err(why.into()),
                ranges::MoveStep::Wait => {}
                ranges::MoveStep::Change(change) => {
                    let reply = self
                        .commit_replica_change(&meta, meta.generation, change)
                        .await?;
                    if reply.refusal.is_empty() {
                        self.moves.replica_changes.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(range = id, ?change, "range move: replica change committed");
                        started |= matches!(change, ReplicaChange::AddLearner(_));
                    } else if refused_at == Some(meta.generation) {
                        return Err(RangeNodeError::from_reply(
                            reply.refusal_kind,
                            reply.refusal,
                        ));
                    } else {
                        refused_at = Some(meta.generation);
                    }
                    // Read the change (or what raced it) back before the next step.
                    self.replica.linearizable_barrier().await?;
                    continue;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RangeNodeError::Indeterminate(format!(
                    "the learner of range {id} on member {to:x} has not caught up within {:?}; \
                     the rebalancer promotes it once it has, then sheds a replica",
                    base::limits::RANGE_MOVE_TIMEOUT
                )));
            }
            tokio::time::sleep(MOVE_POLL).await;
        }
    }

    async fn take_step(&self, step: Step, topology: &raftpb::Topology, leaders: &Leaders) {
        match step {
            Step::Change {
                range,
                generation,
                change,
            } => {
                let Some(meta) = topology.ranges.iter().find(|r| r.id == range.0) else {
                    return;
                };
                match self.commit_replica_change(meta, generation, change).await {
                    Ok(reply) if reply.refusal.is_empty() => {
                        self.moves.replica_changes.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(range = range.0, ?change, "replica change committed");
                    }
                    Ok(reply) => {
                        tracing::debug!(range = range.0, refusal = %reply.refusal, "replica change refused");
                    }
                    Err(error) => tracing::debug!(range = range.0, %error, "replica change"),
                }
            }
            Step::TransferLeader { range, to } => {
                let Some((_, leader, _)) = leaders.get(&range.0) else {
                    return;
                };
                let Some(url) = self.peer_url(leader.0) else {
                    return;
                };
                let request = raftpb::TransferRangeRequest {
                    range: range.0,
                    to: to.0,
                };
                match self
                    .peers
                    .transfer_range(&url, request, self.config.request_timeout)
                    .await
                {
                    Ok(answer) if answer.refused.is_empty() => {
                        self.moves.leader_transfers.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(range = range.0, to = to.0, "range leadership handed over");
                    }
                    Ok(answer) => {
                        tracing::debug!(range = range.0, refused = %answer.refused, "leadership hand-over refused");
                    }
                    Err(error) => tracing::debug!(range = range.0, %error, "leadership hand-over"),
                }
            }
        }
    }
}
