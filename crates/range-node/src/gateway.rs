//! The gateway: every member routes a client's request on a consensus bucket to the leader of
//! the key's range, by its routing cache of that bucket (`ranges::RangeCache`, filled from the
//! applied metadata) and `ranges::Route`, which learns from each typed refusal — `range moved`
//! with the replica's descriptor, `not leader` with the leader it knows, no replica here,
//! unreachable — until a replica serves it or the deadline passes.
//!
//! A write is sent again only when it certainly did not apply: refused before proposing (any
//! refusal above) or not delivered. A write handed to a leader that then did not answer is
//! indeterminate and reported so; it is never retried blindly.

use std::time::Duration;

use base::NodeId;
use consensus::PeerError;
use proto::quorate::raft::v1 as raftpb;
use ranges::{Next, RangeCache, RangeId, Route, RouteFailure};
use tokio::time::Instant;

use crate::{RangeNode, RangeNodeError};

/// How long a request waits before trying again after an answer that means "not now" (no
/// leader yet, the replica is starting, unreachable).
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// Follower reads this member's gateway served from its own replica, and those it handed to
/// the range's leader (its replica too far behind, or none here), since start.
#[derive(Debug, Default)]
pub(crate) struct FollowerReads {
    pub(crate) local: std::sync::atomic::AtomicU64,
    pub(crate) on_leader: std::sync::atomic::AtomicU64,
}

/// What one request does on its range.
#[derive(Clone, Debug)]
pub(crate) enum RangeOp {
    Write(Box<raftpb::RangeCommand>),
    Read(raftpb::RangeRead),
}

impl RangeOp {
    fn is_write(&self) -> bool {
        matches!(self, RangeOp::Write(_))
    }

    fn is_follower_read(&self) -> bool {
        matches!(self, RangeOp::Read(read) if read.follower)
    }

    /// A follower read as a linearizable read on the leader (which satisfies any staleness).
    fn on_leader(self) -> RangeOp {
        match self {
            RangeOp::Read(mut read) => {
                read.follower = false;
                read.max_staleness_ms = 0;
                RangeOp::Read(read)
            }
            write => write,
        }
    }

    fn request(&self, range: RangeId) -> raftpb::RangeCallRequest {
        use raftpb::range_call_request::Op;
        raftpb::RangeCallRequest {
            range: range.0,
            op: Some(match self {
                RangeOp::Write(command) => Op::Write((**command).clone()),
                RangeOp::Read(read) => Op::Read(read.clone()),
            }),
        }
    }
}

/// What a replica served.
pub(crate) enum Served {
    Written(raftpb::RangeCommandResponse),
    Read(raftpb::RangeReadResult),
}

/// What the last failed attempt was, for the error when the request gives up.
#[derive(Default)]
struct Failures {
    range: u64,
    replicas: usize,
    /// The members that answered (with a refusal or an error).
    answered: std::collections::BTreeSet<u64>,
    why: String,
}

impl RangeNode {
    /// Refills `bucket`'s routing cache from the applied metadata (after a linearizable
    /// barrier on the metadata when `fresh`: the local copy may be behind a split).
    async fn refresh_cache(&self, bucket: &str, fresh: bool) -> Result<(), RangeNodeError> {
        if fresh {
            self.replica.linearizable_barrier().await?;
        }
        let ranges = self.metadata_ranges(bucket);
        if ranges.is_empty() {
            return Err(RangeNodeError::NoBucket(bucket.to_owned()));
        }
        self.with_cache(bucket, |cache| {
            for range in &ranges {
                cache.insert(topology::descriptor_from_pb(range), None);
            }
        });
        Ok(())
    }

    /// Runs `f` on `bucket`'s routing cache (made empty on first use).
    fn with_cache<T>(&self, bucket: &str, f: impl FnOnce(&mut RangeCache) -> T) -> T {
        let mut caches = self.caches.lock().expect("routing caches poisoned");
        f(caches.entry(bucket.to_owned()).or_default())
    }

    fn next(&self, bucket: &str, route: &mut Route) -> Next {
        self.with_cache(bucket, |cache| route.next(cache))
    }

    fn learn(
        &self,
        bucket: &str,
        route: &mut Route,
        sent: (RangeId, u64, NodeId),
        failure: RouteFailure,
    ) {
        let (range, generation, member) = sent;
        self.with_cache(bucket, |cache| {
            route.failed(cache, range, generation, member, failure)
        });
    }

    fn served_by(&self, bucket: &str, range: RangeId, member: NodeId) {
        let mut caches = self.caches.lock().expect("routing caches poisoned");
        if let Some(cache) = caches.get_mut(bucket) {
            cache.set_leader(range, member);
        }
    }

    /// Sends `op` to `member`'s replica of `range`: through the local group when that is this
    /// member, else over the peer connection.
    async fn send(
        &self,
        member: NodeId,
        range: RangeId,
        op: &RangeOp,
        remaining: Duration,
    ) -> Result<raftpb::RangeCallResponse, PeerError> {
        if member.0 == self.me() {
            let Some(group) = self.groups.get(range.0) else {
                return Ok(raftpb::RangeCallResponse {
                    result: Some(raftpb::range_call_response::Result::Refused(
                        raftpb::RangeRefusal {
                            why: Some(raftpb::range_refusal::Why::NoReplica(range.0)),
                        },
                    )),
                });
            };
            let answer = match op {
                RangeOp::Write(command) => group.write((**command).clone()).await,
                RangeOp::Read(read) => group.read(read.clone()).await,
            };
            return answer.map_err(|e| PeerError::Remote(e.to_string()));
        }
        let Some(url) = self.peer_url(member.0) else {
            return Err(PeerError::Unreachable(format!(
                "member {member} has no peer URL"
            )));
        };
        self.peers
            .range_call(&url, op.request(range), remaining)
            .await
    }

    /// Routes `op` on `key` of `bucket` to a replica that serves it. A follower read goes to
    /// this member's own replica when it has one; refused there (too stale, or anything but
    /// `range moved`) or sent elsewhere and refused, it becomes a linearizable read and is
    /// routed as one.
    pub(crate) async fn route(
        &self,
        bucket: &str,
        key: &[u8],
        mut op: RangeOp,
    ) -> Result<Served, RangeNodeError> {
        let deadline = Instant::now() + self.config.request_timeout;
        let mut route = Route::new(key, base::limits::RANGE_ROUTE_ATTEMPTS);
        let mut failures = Failures::default();
        let mut asked_metadata = false;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(unavailable(bucket, failures));
            }
            let (range, generation, member) = match self.next(bucket, &mut route) {
                Next::AskMetadata => {
                    self.refresh_cache(bucket, asked_metadata).await?;
                    asked_metadata = true;
                    continue;
                }
                Next::GiveUp => return Err(unavailable(bucket, failures)),
                Next::Send {
                    range,
                    generation,
                    member,
                } => (range, generation, member),
            };
            let member = if op.is_follower_read() && self.groups.get(range.0).is_some() {
                NodeId(self.me())
            } else {
                member
            };
            if failures.range != range.0 {
                failures = Failures {
                    range: range.0,
                    replicas: self.voter_count(bucket, range),
                    ..Failures::default()
                };
            }
            let sent = (range, generation, member);
            let answer = self.send(member, range, &op, remaining).await;
            if op.is_follower_read() && !matches!(answer, Ok(ref a) if served_or_moved(a)) {
                tracing::debug!(range = range.0, %member, "follower read goes to the leader");
                let counted = &self.follower_reads.on_leader;
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                op = op.on_leader();
                if let Ok(ref answer) = answer
                    && too_stale(answer)
                {
                    continue;
                }
            }
            let failure = match answer {
                Ok(answer) => match self.judge(bucket, range, member, answer, &mut failures)? {
                    Ok(served) => {
                        if op.is_follower_read() && member.0 == self.me() {
                            let counted = &self.follower_reads.local;
                            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        return Ok(served);
                    }
                    Err(failure) => failure,
                },
                Err(PeerError::Unreachable(why)) => {
                    // Its ranges' followers here need not wait out the probe window to wake.
                    self.liveness.lost(member.0);
                    failures.why = format!("member {member}: {why}");
                    RouteFailure::Unavailable
                }
                Err(PeerError::Remote(why)) if op.is_write() => {
                    // Handed over and then lost: it may have applied.
                    tracing::debug!(range = range.0, %member, %why, "range write indeterminate");
                    return Err(RangeNodeError::Indeterminate(format!(
                        "range {}, member {member}: {why}",
                        range.0
                    )));
                }
                Err(PeerError::Remote(why)) => {
                    failures.answered.insert(member.0);
                    failures.why = format!("member {member}: {why}");
                    RouteFailure::Unavailable
                }
            };
            // Only a range moved to a newer descriptor is retried at once: the refusal carried
            // what routes the next attempt. Replicas between leaders can point at each other
            // for a while, and a replica that has not applied a committed merge or split yet
            // answers with a descriptor older than the metadata's.
            let pause = !matches!(
                &failure,
                RouteFailure::RangeMoved(Some(descriptor)) if descriptor.generation > sent.1
            );
            tracing::debug!(range = range.0, %member, why = %failures.why, "range attempt failed");
            self.learn(bucket, &mut route, sent, failure);
            if pause {
                let remaining = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
            }
        }
    }

    /// What one replica's answer means: served, or the refusal that routes the next attempt.
    fn judge(
        &self,
        bucket: &str,
        range: RangeId,
        member: NodeId,
        answer: raftpb::RangeCallResponse,
        failures: &mut Failures,
    ) -> Result<Result<Served, RouteFailure>, RangeNodeError> {
        use raftpb::range_call_response::Result as R;
        use raftpb::range_refusal::Why;
        failures.answered.insert(member.0);
        // A write the range's state machine refused (the key moved out of it before the
        // write applied) changed nothing: route it again like a refusal before proposing.
        let refusal = match answer.result {
            Some(R::Written(written)) => match written.outcome {
                Some(raftpb::range_command_response::Outcome::Refused(refusal))
                    if routing_refusal(&refusal) =>
                {
                    refusal
                }
                // Served, or refused for a reason of the command itself (a stale generation,
                // a write under a newer version): the caller reads the outcome.
                _ => {
                    self.served_by(bucket, range, member);
                    return Ok(Ok(Served::Written(written)));
                }
            },
            Some(R::Read(read)) => {
                self.served_by(bucket, range, member);
                return Ok(Ok(Served::Read(read)));
            }
            Some(R::Refused(refusal)) => refusal,
            None => {
                return Err(RangeNodeError::Internal(format!(
                    "range {} answered nothing",
                    range.0
                )));
            }
        };
        let failure = match refusal.why {
            Some(Why::Moved(descriptor)) => {
                failures.why = format!("member {member}: range moved");
                RouteFailure::RangeMoved(Some(topology::descriptor_from_pb(&descriptor)))
            }
            Some(Why::NotLeader(leader)) => {
                failures.why = format!("member {member}: not leader");
                RouteFailure::NotLeader((leader != 0).then_some(NodeId(leader)))
            }
            Some(Why::NoReplica(_)) => {
                failures.why = format!("member {member}: no replica of the range");
                RouteFailure::Stale
            }
            Some(Why::Merging(into)) => {
                failures.why = format!("member {member}: range merging into range {into}");
                RouteFailure::Stale
            }
            other => {
                return Err(RangeNodeError::Internal(format!(
                    "range {} refused: {other:?}",
                    range.0
                )));
            }
        };
        Ok(Err(failure))
    }

    fn voter_count(&self, bucket: &str, range: RangeId) -> usize {
        let caches = self.caches.lock().expect("routing caches poisoned");
        caches
            .get(bucket)
            .and_then(|cache| {
                cache
                    .iter()
                    .find(|c| c.descriptor.id == range)
                    .map(|c| c.descriptor.voters().count())
            })
            .unwrap_or(0)
    }
}

/// Whether a replica served a read, or refused it as outside its range (which routes the
/// next attempt, follower read or not).
fn served_or_moved(answer: &raftpb::RangeCallResponse) -> bool {
    use raftpb::range_call_response::Result as R;
    match &answer.result {
        Some(R::Read(_)) => true,
        Some(R::Refused(refusal)) => {
            matches!(refusal.why, Some(raftpb::range_refusal::Why::Moved(_)))
        }
        _ => false,
    }
}

/// Whether a follower read was refused only for its staleness (nothing to learn from it).
fn too_stale(answer: &raftpb::RangeCallResponse) -> bool {
    use raftpb::range_call_response::Result as R;
    matches!(&answer.result, Some(R::Refused(refusal))
        if matches!(refusal.why, Some(raftpb::range_refusal::Why::TooStale(_))))
}

/// Whether a refused command is refused for where it was sent (route it again), not for
/// what it asks.
fn routing_refusal(refusal: &raftpb::RangeRefusal) -> bool {
    use raftpb::range_refusal::Why;
    matches!(
        refusal.why,
        Some(Why::Moved(_) | Why::NotLeader(_) | Why::NoReplica(_) | Why::Merging(_))
    )
}

fn unavailable(bucket: &str, failures: Failures) -> RangeNodeError {
    RangeNodeError::Unavailable {
        bucket: bucket.to_owned(),
        range: failures.range,
        replicas: failures.replicas,
        answered: failures.answered.len(),
        why: if failures.why.is_empty() {
            "no attempt".to_owned()
        } else {
            failures.why
        },
    }
}
