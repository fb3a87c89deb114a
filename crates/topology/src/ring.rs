//! Token-ring changes in the topology, in steps through the metadata group: a start (from the
//! epoch its proposer computed at, while no change is pending) records the next ring and the
//! members that must stream; each handoff counts for the pending change's epoch only; the last
//! required handoff switches the ring; an abort drops the pending ring. Every step that changes
//! placement moves the epoch on, which fences replica calls placed by the older ring.

use proto::quorate::raft::v1 as pb;
use proto::quorate::v1::Refusal;

/// The members that must stream for a change from `current` to `next` (every member of
/// either ring but `skip`, an unreachable one being removed), ascending.
pub fn required_handoffs(
    current: impl IntoIterator<Item = u64>,
    next: impl IntoIterator<Item = u64>,
    skip: Option<u64>,
) -> Vec<u64> {
    let mut required: Vec<u64> = current
        .into_iter()
        .chain(next)
        .filter(|m| Some(*m) != skip)
        .collect();
    required.sort_unstable();
    required.dedup();
    required
}

/// Applies a step of a ring change (see `RingChange` in raft.proto). A start needs the epoch
/// its proposer computed from and no change in progress; a member's handoff counts only for
/// the pending change's epoch, and the last required one switches the ring. Every step that
/// changes placement moves the epoch on; a refused step changes nothing.
pub fn apply_ring_change(
    topology: &mut pb::Topology,
    change: &pb::RingChange,
) -> pb::RingChangeResponse {
    use pb::ring_change::Step;
    let epoch = topology.epoch;
    let refuse = |kind: Refusal, refusal: String| pb::RingChangeResponse {
        refusal,
        refusal_kind: kind as i32,
        epoch,
    };
    match &change.step {
        Some(Step::Start(start)) => {
            if topology.ring.is_empty() {
                return refuse(
                    Refusal::Invalid,
                    "the cluster has no token ring yet".to_owned(),
                );
            }
            if let Some(pending) = &topology.pending {
                return refuse(
                    Refusal::Busy,
                    format!(
                        "a ring change is in progress ({}); wait for it or abort it",
                        pending.description
                    ),
                );
            }
            if start.from_epoch != epoch {
                return refuse(
                    Refusal::Stale,
                    format!(
                        "the ring moved on to epoch {epoch} since epoch {}; retry",
                        start.from_epoch
                    ),
                );
            }
            if start.next.is_empty() {
                return refuse(Refusal::Invalid, "the next ring has no members".to_owned());
            }
            topology.pending = Some(pb::PendingRing {
                next: start.next.clone(),
                required: start.required.clone(),
                done: Vec::new(),
                description: start.description.clone(),
            });
        }
        Some(Step::HandedOff(handed)) => {
            let Some(pending) = topology.pending.as_mut() else {
                return refuse(
                    Refusal::NotFound,
                    "no ring change is in progress".to_owned(),
                );
            };
            if handed.epoch != epoch {
                return refuse(
                    Refusal::Stale,
                    format!(
                        "the handoff is for epoch {}, the ring is at {epoch}",
                        handed.epoch
                    ),
                );
            }
            if !pending.required.contains(&handed.member) {
                return refuse(
                    Refusal::Invalid,
                    format!("member {:x} is not required to hand off", handed.member),
                );
            }
            if !pending.done.contains(&handed.member) {
                pending.done.push(handed.member);
            }
            if !pending.required.iter().all(|m| pending.done.contains(m)) {
                return pb::RingChangeResponse {
                    epoch,
                    ..Default::default()
                };
            }
            let finished = topology.pending.take().expect("pending checked above");
            topology.ring = finished.next;
        }
        Some(Step::Abort(_)) => {
            if topology.pending.take().is_none() {
                return refuse(
                    Refusal::NotFound,
                    "no ring change is in progress".to_owned(),
                );
            }
        }
        None => return refuse(Refusal::Invalid, "an empty ring change".to_owned()),
    }
    topology.epoch += 1;
    pb::RingChangeResponse {
        epoch: topology.epoch,
        ..Default::default()
    }
}
