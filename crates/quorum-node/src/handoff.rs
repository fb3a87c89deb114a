//! Ring changes on one member. A change has two epochs: while the next ring is pending,
//! coordinators write to the replicas of both rings (W in each) and read from the current one,
//! and every member streams each object it stores to the replicas the next ring adds for it,
//! then records its handoff through Raft; the last required handoff switches the ring. After
//! a switch each member drops the objects it no longer replicates. Replica calls carry the
//! epoch they were placed at and a member at a later epoch refuses them, and the stream and
//! the cleanup start only after every call admitted under an older epoch finished (the gate),
//! so no write acknowledged under the old placement can land behind a stream or a cleanup.
//!
//! This module also serves `quorate.v1.Ring`: show, join, leave, abort, and the progress of
//! this member's part.

use std::collections::BTreeMap;

use base::limits::{HANDOFF_PAGE_OBJECTS, RING_CHANGE_CHECK_INTERVAL};
use proto::quorate::v1::ring_server::{Ring as RingRpc, RingServer};

use std::sync::Arc;

use base::NodeId;
use crdt::Conflicts;
use placement::Ring;
use proto::quorate::raft::v1 as raftpb;
use proto::quorate::v1 as pb;
use storage::Slot;
use tonic::{Request, Response, Status};

use crate::{
    Every, MergeCall, QuorumError, QuorumNode, bucket_def, ring_from, ring_of, ring_tokens,
};

/// This member's part in ring changes, for the Handoff call and metrics.
#[derive(Clone, Debug, Default)]
pub(super) struct Progress {
    /// The ring epoch of the last stream (0: none since start).
    epoch: u64,
    state: State,
    scanned: u64,
    total: u64,
    sent: u64,
    received: u64,
    created: u64,
    removed: u64,
    /// Why the last stream or handoff record failed, while retrying.
    error: String,
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Idle,
    Streaming,
    /// Streamed and recorded; waiting for the other required members.
    Done,
    Retrying,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Streaming => "streaming",
            State::Done => "done",
            State::Retrying => "retrying",
        }
    }
}

impl Progress {
    /// Another member's stream sent this member a copy; `created` when it held none.
    pub(super) fn received(&mut self, created: bool) {
        self.received += 1;
        self.created += u64::from(created);
    }
}

/// What a stream or a cleanup needs to know of a bucket.
pub(super) struct Held {
    pub(super) n: usize,
    pub(super) conflicts: Conflicts,
}

/// The buckets of `topology` by name (definitions that do not parse are skipped: they place
/// nothing).
pub(super) fn held_buckets(topology: &raftpb::Topology) -> BTreeMap<String, Held> {
    topology
        .buckets
        .iter()
        .filter_map(|b| {
            let def = bucket_def(b).ok()?;
            Some((
                def.name.clone(),
                Held {
                    n: def.n,
                    conflicts: def.conflicts,
                },
            ))
        })
        .collect()
}

/// A scan of a member's objects, `HANDOFF_PAGE_OBJECTS` at a time, each page read in its own
/// short transaction (streams, cleanups and reaping write while they scan).
pub(super) struct Pages {
    node: Arc<QuorumNode>,
    /// The last (bucket, key) returned.
    after: Option<(String, Vec<u8>)>,
    done: bool,
}

impl Pages {
    /// The next page; None once every object was returned.
    pub(super) async fn next(&mut self) -> Result<Option<Vec<storage::StoredObject>>, String> {
        if self.done {
            return Ok(None);
        }
        let (node, after) = (self.node.clone(), self.after.take());
        let page = tokio::task::spawn_blocking(move || {
            let after = after.as_ref().map(|(b, k)| (b.as_str(), k.as_slice()));
            node.store.objects_after(after, HANDOFF_PAGE_OBJECTS)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("reading stored objects: {e}"))?;
        match page.last() {
            Some(last) => self.after = Some((last.bucket.clone(), last.key.clone())),
            None => self.done = true,
        }
        Ok((!self.done).then_some(page))
    }
}

impl QuorumNode {
    /// Takes this member's part in ring changes until `stop` turns true: streams for a pending
    /// change it is required for and records its handoff, and cleans up once after every
    /// switch (and once at start, in case it stopped mid-cleanup).
    pub async fn run_ring_changes(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let mut every = Every::new(RING_CHANGE_CHECK_INTERVAL, stop);
        // The epoch this member streamed for (its handoff may still need recording), and the
        // epoch it last cleaned up at.
        let mut streamed: Option<u64> = None;
        let mut cleaned: Option<u64> = None;
        while every.tick().await {
            let topology = self.replica.topology();
            if topology.ring.is_empty() {
                continue;
            }
            let me = self.me().0;
            let Some(pending) = &topology.pending else {
                if cleaned != Some(topology.epoch) {
                    match self.clean_up(&topology).await {
                        Ok(()) => cleaned = Some(topology.epoch),
                        Err(error) => {
                            tracing::warn!(%error, "ring change: cleanup failed; retrying")
                        }
                    }
                }
                continue;
            };
            if !pending.required.contains(&me) || pending.done.contains(&me) {
                continue;
            }
            if streamed != Some(topology.epoch) {
                match self.stream(&topology).await {
                    Ok(true) => streamed = Some(topology.epoch),
                    // The change ended (switched or aborted) under the stream.
                    Ok(false) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "ring change: stream failed; retrying");
                        let mut progress = self.handoff.lock().expect("handoff poisoned");
                        progress.state = State::Retrying;
                        progress.error = error;
                        continue;
                    }
                }
            }
            let step = raftpb::RingChange {
                step: Some(raftpb::ring_change::Step::HandedOff(raftpb::HandedOff {
                    epoch: topology.epoch,
                    member: me,
                })),
            };
            let recorded = self.replica.change_ring(step).await;
            let mut progress = self.handoff.lock().expect("handoff poisoned");
            match recorded {
                Ok(reply) if reply.refusal.is_empty() => {
                    progress.state = State::Done;
                    progress.error.clear();
                    tracing::info!(epoch = topology.epoch, "ring change: handoff recorded");
                }
                // Refused: the change moved on meanwhile; the next tick sees how.
                Ok(reply) => tracing::info!(refusal = %reply.refusal, "ring change: handoff"),
                Err(error) => {
                    progress.state = State::Retrying;
                    progress.error = format!("recording the handoff: {error}");
                }
            }
        }
    }

    /// Sends every object this member stores to the replicas the pending ring of `topology`
    /// adds for it. Ok(false) when the change ended before the stream did.
    async fn stream(self: &Arc<Self>, topology: &raftpb::Topology) -> Result<bool, String> {
        let epoch = topology.epoch;
        let pending = topology
            .pending
            .as_ref()
            .expect("streams only for a pending ring");
        let current = ring_of(topology).map_err(|e| e.to_string())?;
        let next = ring_from(&pending.next).map_err(|e| e.to_string())?;
        let buckets = held_buckets(topology);
        // One plan per replica count, from the ranges whose replicas the change moves.
        let plans: BTreeMap<usize, quorum::HandoffPlan> = buckets
            .values()
            .map(|held| (held.n, quorum::HandoffPlan::new(&current, &next, held.n)))
            .collect();
        // Every call admitted under an older epoch has finished once the gate is ours.
        drop(self.gate.write().await);
        let total = self.stored_objects().await?;
        {
            let mut progress = self.handoff.lock().expect("handoff poisoned");
            progress.epoch = epoch;
            progress.state = State::Streaming;
            progress.scanned = 0;
            progress.total = total;
            progress.error.clear();
        }
        tracing::info!(epoch, total, change = %pending.description, "ring change: streaming");
        let me = self.me();
        let mut pages = self.pages();
        loop {
            if self.replica.topology_epoch() != epoch {
                return Ok(false);
            }
            let Some(page) = pages.next().await? else {
                return Ok(true);
            };
            let mut sends = tokio::task::JoinSet::new();
            let scanned = page.len() as u64;
            for stored in page {
                let Some(held) = buckets.get(&stored.bucket) else {
                    continue; // the bucket was deleted: nothing places this object
                };
                let token = placement::key_token(&stored.bucket, &stored.key);
                let targets = plans[&held.n].targets(token, me);
                if targets.is_empty() {
                    continue;
                }
                let object = crdt::codec::decode_object(&stored.object).map_err(|e| {
                    format!(
                        "object {:?} of bucket {:?} does not decode: {e}",
                        String::from_utf8_lossy(&stored.key),
                        stored.bucket
                    )
                })?;
                let call = MergeCall {
                    bucket: stored.bucket,
                    key: stored.key,
                    object,
                    conflicts: held.conflicts,
                    epoch,
                    handoff: true,
                };
                for target in targets {
                    let (node, call) = (self.clone(), call.clone());
                    let timeout = self.request_timeout;
                    sends
                        .spawn(async move { (target, node.merge_at(target, call, timeout).await) });
                }
            }
            while let Some(sent) = sends.join_next().await {
                match sent {
                    Ok((_, Ok(()))) => {
                        self.handoff.lock().expect("handoff poisoned").sent += 1;
                    }
                    Ok((target, Err(why))) => {
                        return Err(format!("sending a copy to member {target}: {why}"));
                    }
                    Err(error) => return Err(format!("a send task failed: {error}")),
                }
            }
            self.handoff.lock().expect("handoff poisoned").scanned += scanned;
        }
    }

    /// Removes every object this member no longer replicates under the ring of `topology`
    /// (none is pending). Objects of deleted buckets stay: no ring places them.
    async fn clean_up(self: &Arc<Self>, topology: &raftpb::Topology) -> Result<(), String> {
        let ring = ring_of(topology).map_err(|e| e.to_string())?;
        let buckets = held_buckets(topology);
        drop(self.gate.write().await);
        let me = self.me();
        let mut pages = self.pages();
        let mut removed = 0u64;
        loop {
            if self.replica.topology_epoch() != topology.epoch {
                return Err("the ring changed during the cleanup".to_owned());
            }
            let Some(page) = pages.next().await? else {
                break;
            };
            for stored in page {
                let Some(held) = buckets.get(&stored.bucket) else {
                    continue;
                };
                let token = placement::key_token(&stored.bucket, &stored.key);
                if quorum::keeps(&ring, token, held.n, me) {
                    continue;
                }
                let slot = Slot::Object {
                    bucket: stored.bucket,
                    key: stored.key,
                };
                // A copy that changed since the scan read it is left for the next cleanup.
                let change = storage::remove_if_unchanged(stored.object);
                if let Ok(Ok((_, None))) = self.writer.write(slot, change).await {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, epoch = topology.epoch, "ring change: cleaned up");
            self.handoff.lock().expect("handoff poisoned").removed += removed;
        }
        Ok(())
    }

    async fn stored_objects(self: &Arc<Self>) -> Result<u64, String> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || node.store.len())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// A paged scan of every object this member stores.
    pub(super) fn pages(self: &Arc<Self>) -> Pages {
        Pages {
            node: self.clone(),
            after: None,
            done: false,
        }
    }

    /// The counters of ring changes: (sent, received, created, removed).
    pub(super) fn handoff_counts(&self) -> (u64, u64, u64, u64) {
        let progress = self.handoff.lock().expect("handoff poisoned");
        (
            progress.sent,
            progress.received,
            progress.created,
            progress.removed,
        )
    }

    /// Starts a ring change to `next` (computed from the ring at `from_epoch`).
    async fn start_ring_change(
        &self,
        from_epoch: u64,
        current: &Ring,
        next: &Ring,
        skip: Option<NodeId>,
        description: String,
    ) -> Result<u64, QuorumError> {
        let members = |ring: &Ring| ring.members().into_iter().map(|m| m.0);
        let required =
            topology::required_handoffs(members(current), members(next), skip.map(|m| m.0));
        let step = raftpb::RingChange {
            step: Some(raftpb::ring_change::Step::Start(raftpb::RingStart {
                from_epoch,
                next: ring_tokens(next),
                required,
                description,
            })),
        };
        self.ring_step(step).await
    }

    async fn ring_step(&self, step: raftpb::RingChange) -> Result<u64, QuorumError> {
        let reply = self
            .replica
            .change_ring(step)
            .await
            .map_err(|e| QuorumError::Proposal(e.to_string()))?;
        if !reply.refusal.is_empty() {
            return Err(QuorumError::refused(reply.refusal_kind, reply.refusal));
        }
        Ok(reply.epoch)
    }

    async fn join_ring(&self, member: NodeId) -> Result<u64, QuorumError> {
        let topology = self.replica.topology();
        let current = ring_of(&topology)?;
        if !self.replica.membership().nodes.contains_key(&member.0) {
            return Err(QuorumError::NotClusterMember(member));
        }
        let next = current
            .with_member(member)
            .map_err(|e| QuorumError::RingRefused(e.to_string()))?;
        self.start_ring_change(
            topology.epoch,
            &current,
            &next,
            None,
            format!("add member {member}"),
        )
        .await
    }

    async fn leave_ring(&self, member: NodeId, unreachable: bool) -> Result<u64, QuorumError> {
        let topology = self.replica.topology();
        let current = ring_of(&topology)?;
        let next = current
            .without_member(member)
            .map_err(|e| QuorumError::RingRefused(e.to_string()))?;
        if let Some(bucket) = held_buckets(&topology)
            .iter()
            .find(|(_, held)| held.n > next.member_count())
        {
            return Err(QuorumError::RingTooSmall {
                bucket: bucket.0.clone(),
                n: bucket.1.n,
                members: next.member_count(),
            });
        }
        let skip = unreachable.then_some(member);
        let description = if unreachable {
            format!("remove unreachable member {member}")
        } else {
            format!("remove member {member}")
        };
        self.start_ring_change(topology.epoch, &current, &next, skip, description)
            .await
    }

    fn show_ring(&self) -> pb::ShowRingResponse {
        let topology = self.replica.topology();
        let members = |tokens: &[raftpb::RingToken]| {
            let mut ids: Vec<u64> = tokens.iter().map(|t| t.member).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        pb::ShowRingResponse {
            epoch: topology.epoch,
            members: members(&topology.ring),
            vnodes: topology.vnodes,
            pending: topology.pending.map(|p| pb::RingChangeStatus {
                description: p.description,
                members: members(&p.next),
                required: p.required,
                done: p.done,
            }),
        }
    }

    async fn handoff_status(self: &Arc<Self>) -> Result<pb::HandoffResponse, QuorumError> {
        let objects = self.stored_objects().await.map_err(QuorumError::Internal)?;
        let progress = self.handoff.lock().expect("handoff poisoned").clone();
        Ok(pb::HandoffResponse {
            member: self.me().0,
            epoch: progress.epoch,
            state: progress.state.as_str().to_owned(),
            objects,
            scanned: progress.scanned,
            total: progress.total,
            sent: progress.sent,
            received: progress.received,
            created: progress.created,
            removed: progress.removed,
            error: progress.error,
        })
    }

    /// The `quorate.v1.Ring` service of this node.
    pub fn ring_service(self: &Arc<Self>) -> RingServer<RingService> {
        RingServer::new(RingService(self.clone()))
    }
}

/// `quorate.v1.Ring`: the token ring and its changes.
pub struct RingService(Arc<QuorumNode>);

#[tonic::async_trait]
impl RingRpc for RingService {
    async fn show(
        &self,
        _request: Request<pb::ShowRingRequest>,
    ) -> Result<Response<pb::ShowRingResponse>, Status> {
        Ok(Response::new(self.0.show_ring()))
    }

    async fn join(
        &self,
        request: Request<pb::JoinRingRequest>,
    ) -> Result<Response<pb::RingChangeReply>, Status> {
        let epoch = self
            .0
            .join_ring(NodeId(request.into_inner().member))
            .await?;
        Ok(Response::new(pb::RingChangeReply { epoch }))
    }

    async fn leave(
        &self,
        request: Request<pb::LeaveRingRequest>,
    ) -> Result<Response<pb::RingChangeReply>, Status> {
        let request = request.into_inner();
        let epoch = self
            .0
            .leave_ring(NodeId(request.member), request.unreachable)
            .await?;
        Ok(Response::new(pb::RingChangeReply { epoch }))
    }

    async fn abort(
        &self,
        _request: Request<pb::AbortRingRequest>,
    ) -> Result<Response<pb::RingChangeReply>, Status> {
        let step = raftpb::RingChange {
            step: Some(raftpb::ring_change::Step::Abort(true)),
        };
        let epoch = self.0.ring_step(step).await?;
        Ok(Response::new(pb::RingChangeReply { epoch }))
    }

    async fn handoff(
        &self,
        _request: Request<pb::HandoffRequest>,
    ) -> Result<Response<pb::HandoffResponse>, Status> {
        Ok(Response::new(self.0.handoff_status().await?))
    }
}
