//! The range nemeses, for the workloads on a consensus bucket (`workload::ranges`). For the
//! whole of its window, `split` splits ranges of the bucket at keys among the workload's (one
//! a second), `merge` merges a range with its right neighbour (one a second), and
//! `move-range` moves a replica of a range from one of its members to one without a replica,
//! one move after another (each lasts as long as its learner takes to catch up); `drain`
//! drains one member — its replicas and leaderships move to the others — and undoes that when
//! the window ends, so the rebalancer moves replicas back. Requests go to members drawn from
//! the window's pick, through the same `quorate.v1.Ranges` API the CLI uses. A refused request
//! (the range is changing already, a member is down) is counted, not an error: the run judges
//! the data, not the nemesis.

use std::sync::Arc;
use std::time::Duration;

use proto::quorate::v1 as pb;
use proto::quorate::v1::ranges_client::RangesClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tonic::transport::Channel;
use workload::nemesis::{FaultKind, FaultWindow, PlannedFault};
use workload::ranges::{BUCKET, split_key};

use crate::members::Members;

/// Pause between two splits or two merges of one window.
const RANGE_FAULT_PAUSE: Duration = Duration::from_secs(1);
/// Deadline of one split, merge or drain request.
pub(crate) const RANGE_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of one move (the server's own bound, and some).
const MOVE_CALL_TIMEOUT: Duration = Duration::from_secs(65);
/// Pause before asking again when no member answered a call.
const ASK_AGAIN_PAUSE: Duration = Duration::from_millis(200);
/// How long the end of a drain window keeps asking for the undo while no member answers.
const UNDO_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the window saw, for its description.
#[derive(Default)]
struct Tally {
    done: Vec<String>,
    refused: usize,
    last_refusal: Option<String>,
}

impl Tally {
    fn record(&mut self, kind: FaultKind, outcome: Result<String, tonic::Status>) {
        match outcome {
            Ok(done) => {
                tracing::info!(kind = kind.as_str(), %done, "range fault");
                self.done.push(done);
            }
            Err(status) => {
                tracing::info!(kind = kind.as_str(), code = ?status.code(), why = status.message(), "range fault refused");
                self.refused += 1;
                self.last_refusal = Some(status.message().to_owned());
            }
        }
    }

    fn describe(&self) -> String {
        let mut text = if self.done.is_empty() {
            "nothing done".to_owned()
        } else {
            self.done.join("; ")
        };
        if self.refused > 0 {
            text.push_str(&format!(
                " ({} refused, last: {})",
                self.refused,
                self.last_refusal.as_deref().unwrap_or("")
            ));
        }
        text
    }
}

/// A `Ranges` client on a running member drawn by `rng`.
pub(crate) async fn ranges_client(
    members: &Arc<Mutex<Members>>,
    rng: &mut StdRng,
    timeout: Duration,
) -> Option<RangesClient<Channel>> {
    up_channel(members, rng, timeout)
        .await
        .map(RangesClient::new)
}

/// A channel to a running member drawn by `rng`, whose calls time out after `timeout`.
pub(crate) async fn up_channel(
    members: &Arc<Mutex<Members>>,
    rng: &mut StdRng,
    timeout: Duration,
) -> Option<Channel> {
    let endpoint = {
        let guard = members.lock().await;
        let up: Vec<usize> = (0..guard.len()).filter(|&i| guard.is_up(i)).collect();
        if up.is_empty() {
            return None;
        }
        guard.endpoints()[up[rng.random_range(0..up.len())]].clone()
    };
    client::channels::connect(&endpoint, timeout, Some(timeout))
        .await
        .ok()
}

/// A key inside `range` (its start; the first range starts at the empty key, which no request
/// may name, so a key just above it).
fn key_inside(range: &pb::RangeInfo) -> Vec<u8> {
    if range.start.is_empty() {
        vec![0]
    } else {
        range.start.clone()
    }
}

fn shown(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

async fn split_once(
    ranges: &mut RangesClient<Channel>,
    rng: &mut StdRng,
) -> Result<String, tonic::Status> {
    let key = split_key(rng.random_range(0..1 << 20));
    let request = pb::SplitRangeRequest {
        bucket: BUCKET.to_owned(),
        key: key.clone(),
    };
    ranges.split(request).await?;
    Ok(format!("split at {}", shown(&key)))
}

async fn list(ranges: &mut RangesClient<Channel>) -> Result<Vec<pb::RangeInfo>, tonic::Status> {
    let request = pb::ListRangesRequest {
        bucket: BUCKET.to_owned(),
    };
    Ok(ranges.list(request).await?.into_inner().ranges)
}

async fn merge_once(
    ranges: &mut RangesClient<Channel>,
    rng: &mut StdRng,
) -> Result<String, tonic::Status> {
    let listed = list(ranges).await?;
    if listed.len() < 2 {
        return Err(tonic::Status::failed_precondition(
            "one range: nothing to merge",
        ));
    }
    let range = &listed[rng.random_range(0..listed.len() - 1)];
    let request = pb::MergeRangeRequest {
        bucket: BUCKET.to_owned(),
        key: key_inside(range),
    };
    ranges.merge(request).await?;
    Ok(format!("merged range {}", range.id))
}

async fn move_once(
    ranges: &mut RangesClient<Channel>,
    rng: &mut StdRng,
    ids: &[u64],
) -> Result<String, tonic::Status> {
    let listed = list(ranges).await?;
    let settled: Vec<&pb::RangeInfo> = listed.iter().filter(|r| r.learners.is_empty()).collect();
    if settled.is_empty() {
        return Err(tonic::Status::failed_precondition(
            "every range has a change in flight",
        ));
    }
    let range = settled[rng.random_range(0..settled.len())];
    // The leader half of the time: its replica can only go once it handed leadership over.
    let from = if range.leader != 0 && rng.random_bool(0.5) {
        range.leader
    } else {
        range.replicas[rng.random_range(0..range.replicas.len())]
    };
    let outside: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| !range.replicas.contains(id))
        .collect();
    if outside.is_empty() {
        return Err(tonic::Status::failed_precondition(
            "every member holds a replica",
        ));
    }
    let to = outside[rng.random_range(0..outside.len())];
    let request = pb::MoveRangeRequest {
        bucket: BUCKET.to_owned(),
        key: key_inside(range),
        from,
        to,
    };
    ranges.r#move(request).await?;
    Ok(format!("moved range {} from {from:x} to {to:x}", range.id))
}

/// Makes `call` on a running member drawn by `rng`, asking again (another draw, after
/// `ASK_AGAIN_PAUSE`) until one answers or `deadline` passes; else the last refusal.
pub(crate) async fn ask_any<T, Fut>(
    members: &Arc<Mutex<Members>>,
    rng: &mut StdRng,
    deadline: Instant,
    mut call: impl FnMut(Channel) -> Fut,
) -> Result<T, tonic::Status>
where
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut last = tonic::Status::unavailable("no member answered");
    while Instant::now() < deadline {
        if let Some(channel) = up_channel(members, rng, RANGE_CALL_TIMEOUT).await {
            match call(channel).await {
                Ok(answer) => return Ok(answer),
                Err(status) => last = status,
            }
        }
        tokio::time::sleep(ASK_AGAIN_PAUSE).await;
    }
    Err(last)
}

/// Marks member `id` as draining (or not, with `undo`) through any member (`ask_any`);
/// returns what is left on it.
pub(crate) async fn drain(
    members: &Arc<Mutex<Members>>,
    rng: &mut StdRng,
    id: u64,
    undo: bool,
    deadline: Instant,
) -> Result<pb::DrainMemberResponse, tonic::Status> {
    ask_any(members, rng, deadline, |channel| async move {
        let request = pb::DrainMemberRequest { member: id, undo };
        Ok(RangesClient::new(channel)
            .drain(request)
            .await?
            .into_inner())
    })
    .await
}

/// A drain's answer, for the window's description.
fn drained(id: u64, undo: bool, left: &pb::DrainMemberResponse) -> String {
    if undo {
        format!("member {id:x} no longer drains")
    } else {
        format!(
            "member {id:x} drains ({} replicas, {} leaderships to move)",
            left.replicas_left, left.leaders_left
        )
    }
}

/// Runs one range fault for its window; returns the window on the run's clock (from `start`).
pub(crate) async fn hold(
    fault: &PlannedFault,
    members: &Arc<Mutex<Members>>,
    start: Instant,
) -> FaultWindow {
    let since = |at: Instant| (at - start).as_nanos() as u64;
    let began = since(Instant::now());
    let end = Instant::now() + fault.duration;
    let mut rng = StdRng::seed_from_u64(fault.pick as u64 ^ 0x7261_6e67_6573);
    let mut tally = Tally::default();
    let ids: Vec<u64> = {
        let guard = members.lock().await;
        let mut ids = Vec::new();
        for i in 0..guard.len() {
            if let Some(id) = guard.member_id(i).await {
                ids.push(id);
            }
        }
        ids
    };
    tracing::info!(kind = fault.kind.as_str(), "fault begins");
    if fault.kind == FaultKind::Drain {
        if let Some(&id) = ids.get(fault.pick % ids.len().max(1)) {
            let marked = drain(members, &mut rng, id, false, end).await;
            tally.record(fault.kind, marked.map(|left| drained(id, false, &left)));
            tokio::time::sleep_until(end).await;
            let undo_by = Instant::now() + UNDO_DRAIN_TIMEOUT;
            let undone = drain(members, &mut rng, id, true, undo_by).await;
            tally.record(fault.kind, undone.map(|left| drained(id, true, &left)));
        } else {
            tally.record(
                fault.kind,
                Err(tonic::Status::unavailable("no member id known")),
            );
        }
    } else {
        while Instant::now() < end {
            let timeout = if fault.kind == FaultKind::MoveRange {
                MOVE_CALL_TIMEOUT
            } else {
                RANGE_CALL_TIMEOUT
            };
            let outcome = match ranges_client(members, &mut rng, timeout).await {
                None => Err(tonic::Status::unavailable("no member is up")),
                Some(mut ranges) => match fault.kind {
                    FaultKind::Split => split_once(&mut ranges, &mut rng).await,
                    FaultKind::Merge => merge_once(&mut ranges, &mut rng).await,
                    _ => move_once(&mut ranges, &mut rng, &ids).await,
                },
            };
            tally.record(fault.kind, outcome);
            if fault.kind != FaultKind::MoveRange {
                let next = (Instant::now() + RANGE_FAULT_PAUSE).min(end);
                tokio::time::sleep_until(next).await;
            }
        }
    }
    tracing::info!(kind = fault.kind.as_str(), "fault healed");
    FaultWindow {
        kind: fault.kind,
        members: vec![tally.describe()],
        start: began,
        end: since(Instant::now()),
    }
}
