//! The consensus replica's part in leases: the lessor task (deadlines on the leader only,
//! revokes and checkpoints through Raft) and keep-alive and time-to-live calls, answered on
//! the leader and forwarded to it from followers.

use base::EtcdError;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use proto::quorate::raft::v1 as pb;
use tokio::time::Instant;

use crate::lessor::{TICK, revoke_command};
use crate::network::PeerError;

use super::Replica;

impl Replica {
    /// The member's clock as the lessor reads it (skewed when the tester skews it).
    pub(super) fn clock_now(&self) -> Instant {
        Instant::from_std(self.clock.monotonic())
    }

    /// Drives the lease timers until the replica stops: revokes expired leases and records
    /// checkpoints, both through Raft, while this member leads.
    pub(super) async fn run_lessor(self) {
        let mut stop = self.stop.subscribe();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            // Leadership first, then the table: the table read is then at least as new as
            // the applied entry that made this member ready.
            let leading = self.leads_with_current_state();
            let leases = self.state.shared.lease_ttls();
            let work = self.lessor.tick(self.clock_now(), leading, &leases);
            for id in work.revokes {
                let replica = self.clone();
                tokio::spawn(async move {
                    match replica.propose_local(revoke_command(id)).await {
                        Ok(_) => tracing::info!(
                            lease = format_args!("{id:x}"),
                            "lease expired and revoked"
                        ),
                        Err(error) => tracing::debug!(%error, "lease revoke not committed"),
                    }
                    replica.lessor.revoke_done(id);
                });
            }
            if let Some(checkpoint) = work.checkpoint {
                let replica = self.clone();
                tokio::spawn(async move {
                    if let Err(error) = replica.propose_local(checkpoint).await {
                        tracing::debug!(%error, "lease checkpoint not committed");
                    }
                });
            }
        }
    }

    /// Returns true when this member leads and has applied an entry of its own term, so every
    /// committed lease change (grants, checkpoints) is in its state. A new leader's lease
    /// timers start only then.
    pub(super) fn leads_with_current_state(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        m.state == ServerState::Leader
            && m.last_applied
                .is_some_and(|applied| applied.leader_id.term == m.current_term)
    }

    /// Returns the smallest TTL a lease is granted, in seconds.
    pub fn lease_ttl_min(&self) -> i64 {
        self.lease_ttl_min
    }

    /// Returns every lease id in the local state.
    pub fn lease_ids(&self) -> Vec<i64> {
        self.state
            .shared
            .lease_ttls()
            .into_iter()
            .map(|(id, _, _)| id)
            .collect()
    }

    /// Answers a keep-alive or time-to-live call, which only the leader's timers can: here
    /// when this member leads, otherwise at the leader.
    pub async fn lease_call(
        &self,
        call: pb::lease_call_request::Call,
    ) -> Result<pb::lease_call_response::Reply, EtcdError> {
        self.at_leader(
            || self.lease_call_local(call),
            |url, remaining| {
                let request = pb::LeaseCallRequest {
                    group: 0,
                    call: Some(call),
                };
                async move {
                    let response = self.peers.lease_call(&url, request, remaining).await?;
                    response
                        .reply
                        .ok_or_else(|| PeerError::Remote("lease call answer without reply".into()))
                }
            },
        )
        .await
    }

    /// Answers a lease call on this member, which must lead.
    pub async fn lease_call_local(
        &self,
        call: pb::lease_call_request::Call,
    ) -> Result<pb::lease_call_response::Reply, EtcdError> {
        use pb::lease_call_request::Call;
        use pb::lease_call_response::Reply;
        use proto::etcdserverpb::{LeaseKeepAliveResponse, LeaseTimeToLiveResponse};
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        let now = self.clock_now();
        match call {
            Call::KeepAlive(request) => {
                let Some(lease) = self.state.shared.lease(request.id) else {
                    // etcd answers an unknown lease with TTL 0.
                    return Ok(Reply::KeepAlive(LeaseKeepAliveResponse {
                        header: None,
                        id: request.id,
                        ttl: 0,
                    }));
                };
                let ttl = match self.lessor.renew(now, lease.id, lease.ttl) {
                    Err(EtcdError::LeaseNotFound) => 0,
                    other => other?,
                };
                if ttl > 0 && lease.remaining != 0 {
                    // The checkpoint is stale now: a next leader must start from the full TTL.
                    let replica = self.clone();
                    let clear = pb::Command {
                        op: Some(pb::command::Op::LeaseCheckpoint(
                            proto::etcdserverpb::LeaseCheckpointRequest {
                                checkpoints: vec![proto::etcdserverpb::LeaseCheckpoint {
                                    id: lease.id,
                                    remaining_ttl: 0,
                                }],
                            },
                        )),
                    };
                    tokio::spawn(async move {
                        let _ = replica.propose_local(clear).await;
                    });
                }
                Ok(Reply::KeepAlive(LeaseKeepAliveResponse {
                    header: None,
                    id: request.id,
                    ttl,
                }))
            }
            Call::TimeToLive(request) => {
                // Linearizable: a revoke or expiry committed before the call is seen (the
                // leader may apply a little after its followers).
                let index = self.read_index().await?;
                let remaining = self.request_timeout;
                self.raft
                    .wait(Some(remaining))
                    .applied_index_at_least(Some(index), "time-to-live read index applied")
                    .await
                    .map_err(|_| EtcdError::Timeout)?;
                let now = self.clock_now();
                let Some(lease) = self.state.shared.lease(request.id) else {
                    return Ok(Reply::TimeToLive(LeaseTimeToLiveResponse {
                        header: None,
                        id: request.id,
                        ttl: -1,
                        granted_ttl: 0,
                        keys: Vec::new(),
                    }));
                };
                let remaining = self.lessor.remaining(now, lease.id)?.unwrap_or(lease.ttl);
                let keys = if request.keys {
                    lease.keys.into_iter().collect()
                } else {
                    Vec::new()
                };
                Ok(Reply::TimeToLive(LeaseTimeToLiveResponse {
                    header: None,
                    id: request.id,
                    ttl: remaining,
                    granted_ttl: lease.ttl,
                    keys,
                }))
            }
        }
    }
}
