//! The lessor: lease deadlines, kept only by the leader. Renewals (keep-alives) move a deadline
//! in memory; expiry proposes a revoke through Raft, so only a leader a quorum still follows can
//! delete leased keys. On becoming leader, and after this process was paused, every deadline
//! is set from the remaining TTL plus an extension, so no lease expires because of the change
//! itself. Remaining TTLs are checkpointed through Raft so they survive leader changes and
//! restarts. It must never touch the keyspace except by proposing commands.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base::EtcdError;
use proto::etcdserverpb::{LeaseCheckpoint, LeaseCheckpointRequest, LeaseRevokeRequest};
use proto::quorate::raft::v1 as pb;
use tokio::time::Instant;

/// How often the lessor looks at deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// Revokes proposed in one tick at most; the rest wait for the next tick.
const REVOKES_PER_TICK: usize = 64;

/// Checkpoints carried by one Raft entry at most.
const CHECKPOINTS_PER_ENTRY: usize = 1000;

#[derive(Default)]
struct State {
    leading: bool,
    deadlines: BTreeMap<i64, Instant>,
    /// Leases whose deadline includes the extension (armed at promotion or after a pause and
    /// not renewed since). Checkpoints leave the extension out, so repeated leader changes do
    /// not add up extensions.
    extended: BTreeSet<i64>,
    revoking: BTreeSet<i64>,
    last_tick: Option<Instant>,
    last_checkpoint: Option<Instant>,
}

/// One member's lease timers (active only while it leads).
pub(crate) struct Lessor {
    state: Mutex<State>,
    /// Added to every remaining TTL when deadlines are (re)armed after a leader change or a
    /// pause, so clients have time to reach the new leader.
    extension: Duration,
    checkpoint_interval: Duration,
}

/// What a tick asks the replica to propose.
#[derive(Default)]
pub(crate) struct TickWork {
    pub(crate) revokes: Vec<i64>,
    pub(crate) checkpoint: Option<pb::Command>,
}

fn ceil_secs(duration: Duration) -> i64 {
    duration.as_millis().div_ceil(1000) as i64
}

impl Lessor {
    pub(crate) fn new(extension: Duration, checkpoint_interval: Duration) -> Lessor {
        Lessor {
            state: Mutex::new(State::default()),
            extension,
            checkpoint_interval,
        }
    }

    /// Advances the timers. `leases` is the replicated table: (id, granted TTL, checkpointed
    /// remaining TTL).
    pub(crate) fn tick(&self, now: Instant, leading: bool, leases: &[(i64, i64, i64)]) -> TickWork {
        let mut state = self.state.lock().expect("lessor lock poisoned");
        let paused = state
            .last_tick
            .is_some_and(|last| now.duration_since(last) > TICK + self.extension);
        state.last_tick = Some(now);
        if !leading {
            state.leading = false;
            state.deadlines.clear();
            state.extended.clear();
            state.revoking.clear();
            return TickWork::default();
        }
        let rearm = !state.leading || paused;
        if paused && state.leading {
            tracing::warn!(
                "lessor: this member was paused; extending every lease instead of expiring"
            );
        }
        state.leading = true;
        let known: BTreeSet<i64> = leases.iter().map(|(id, _, _)| *id).collect();
        state.deadlines.retain(|id, _| known.contains(id));
        state.extended.retain(|id| known.contains(id));
        state.revoking.retain(|id| known.contains(id));
        for (id, ttl, remaining) in leases {
            let left = if *remaining > 0 { *remaining } else { *ttl };
            let armed = now + Duration::from_secs(left.max(0) as u64) + self.extension;
            if rearm {
                let deadline = state.deadlines.entry(*id).or_insert(armed);
                *deadline = (*deadline).max(armed);
                state.extended.insert(*id);
            } else {
                // Granted while this member leads: the full TTL from now.
                state
                    .deadlines
                    .entry(*id)
                    .or_insert(now + Duration::from_secs((*ttl).max(0) as u64));
            }
        }
        let mut work = TickWork::default();
        let expired: Vec<i64> = state
            .deadlines
            .iter()
            .filter(|(id, deadline)| **deadline <= now && !state.revoking.contains(id))
            .map(|(id, _)| *id)
            .take(REVOKES_PER_TICK)
            .collect();
        for id in &expired {
            state.revoking.insert(*id);
        }
        work.revokes = expired;
        let due = state
            .last_checkpoint
            .is_none_or(|last| now.duration_since(last) >= self.checkpoint_interval);
        if due {
            state.last_checkpoint = Some(now);
            let checkpoints: Vec<LeaseCheckpoint> = state
                .deadlines
                .iter()
                .take(CHECKPOINTS_PER_ENTRY)
                .map(|(id, deadline)| {
                    let mut left = deadline.saturating_duration_since(now);
                    if state.extended.contains(id) {
                        left = left.saturating_sub(self.extension);
                    }
                    LeaseCheckpoint {
                        id: *id,
                        remaining_ttl: ceil_secs(left).max(1),
                    }
                })
                .collect();
            if !checkpoints.is_empty() {
                work.checkpoint = Some(pb::Command {
                    op: Some(pb::command::Op::LeaseCheckpoint(LeaseCheckpointRequest {
                        checkpoints,
                    })),
                });
            }
        }
        work
    }

    /// Forgets an in-flight revoke (it committed or failed; the next tick decides again).
    pub(crate) fn revoke_done(&self, id: i64) {
        let mut state = self.state.lock().expect("lessor lock poisoned");
        state.revoking.remove(&id);
    }

    /// Renews lease `id` of TTL `ttl` on the leader; returns the TTL granted anew.
    pub(crate) fn renew(&self, now: Instant, id: i64, ttl: i64) -> Result<i64, EtcdError> {
        let mut state = self.state.lock().expect("lessor lock poisoned");
        if !state.leading {
            return Err(EtcdError::NotLeader);
        }
        if state.revoking.contains(&id) {
            // Already expired: its revoke is on the way.
            return Err(EtcdError::LeaseNotFound);
        }
        state
            .deadlines
            .insert(id, now + Duration::from_secs(ttl.max(0) as u64));
        state.extended.remove(&id);
        Ok(ttl)
    }

    /// Returns the seconds left of lease `id` on the leader (None: not armed yet).
    pub(crate) fn remaining(&self, now: Instant, id: i64) -> Result<Option<i64>, EtcdError> {
        let state = self.state.lock().expect("lessor lock poisoned");
        if !state.leading {
            return Err(EtcdError::NotLeader);
        }
        Ok(state
            .deadlines
            .get(&id)
            .map(|deadline| ceil_secs(deadline.saturating_duration_since(now))))
    }
}

/// Returns the revoke command of lease `id`.
pub(crate) fn revoke_command(id: i64) -> pb::Command {
    pb::Command {
        op: Some(pb::command::Op::LeaseRevoke(LeaseRevokeRequest { id })),
    }
}

/// Shared handle (the replica and its tick task).
pub(crate) type SharedLessor = Arc<Lessor>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_leader_expires_and_a_new_leader_extends_first() {
        // Goal: the timer rules. Method: drive ticks by hand on a paused clock.
        let lessor = Lessor::new(Duration::from_secs(2), Duration::from_secs(3600));
        let start = Instant::now();
        let leases = [(1, 5, 0), (2, 10, 3)];
        assert!(lessor.tick(start, false, &leases).revokes.is_empty());
        assert_eq!(lessor.renew(start, 1, 5), Err(EtcdError::NotLeader));
        // Promotion: deadlines are remaining (or TTL) + extension.
        let mut now = start;
        let step = |now: &mut Instant| {
            *now += Duration::from_millis(100);
            lessor.tick(*now, true, &leases).revokes
        };
        assert!(step(&mut now).is_empty());
        assert_eq!(lessor.remaining(now, 2), Ok(Some(5)));
        // Lease 2 (3 s checkpointed + 2 s) expires before lease 1 (5 s + 2 s).
        for _ in 0..49 {
            assert!(step(&mut now).is_empty());
        }
        assert_eq!(step(&mut now), vec![2]);
        assert!(step(&mut now).is_empty(), "one revoke in flight");
        // A renewal of lease 1 moves its deadline.
        lessor.renew(now, 1, 5).expect("renew on the leader");
        for _ in 0..49 {
            assert!(!step(&mut now).contains(&1));
        }
        assert_eq!(step(&mut now), vec![1]);
    }

    #[test]
    fn a_pause_extends_instead_of_expiring() {
        // Goal: a leader that was stopped for longer than the TTLs revokes nothing on waking.
        let lessor = Lessor::new(Duration::from_secs(1), Duration::from_secs(3600));
        let leases = [(7, 2, 0)];
        let start = Instant::now();
        lessor.tick(start, true, &leases);
        let woke = start + Duration::from_secs(30);
        assert!(lessor.tick(woke, true, &leases).revokes.is_empty());
        // Re-armed at wake-up: TTL (2 s) + extension (1 s), counted from then.
        let mut now = woke;
        for _ in 0..29 {
            now += TICK;
            assert!(lessor.tick(now, true, &leases).revokes.is_empty());
        }
        now += TICK * 2;
        assert_eq!(lessor.tick(now, true, &leases).revokes, vec![7]);
    }

    #[test]
    fn checkpoints_carry_the_remaining_ttl() {
        let lessor = Lessor::new(Duration::from_secs(1), Duration::from_secs(10));
        let start = Instant::now();
        let work = lessor.tick(start, true, &[(3, 60, 0)]);
        let Some(pb::Command {
            op: Some(pb::command::Op::LeaseCheckpoint(request)),
        }) = work.checkpoint
        else {
            panic!("expected a checkpoint");
        };
        // Armed at promotion with the 1 s extension, which checkpoints leave out.
        assert_eq!(request.checkpoints[0].remaining_ttl, 60);
        let work = lessor.tick(start + Duration::from_secs(1), true, &[(3, 60, 0)]);
        assert!(work.checkpoint.is_none(), "not due yet");
    }
}
