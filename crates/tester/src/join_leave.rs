//! The `join-leave` nemesis: a new member joins the cluster — added as a voter through the
//! etcd Cluster API and started as a member of the existing cluster, after which the
//! rebalancer gives it range replicas and leaderships — and, when the window ends (and it
//! holds a replica of the workload's consensus bucket, if there is one), leaves:
//! drained (everything moves off it, for at most `LEAVE_DRAIN_TIMEOUT`), removed from the
//! cluster, stopped and its directory wiped, so the next join is a new member again. The
//! clients never talk to it: what it holds they reach through the other members' gateways.

use std::sync::Arc;
use std::time::Duration;

use proto::etcdserverpb::cluster_client::ClusterClient;
use proto::etcdserverpb::{MemberAddRequest, MemberRemoveRequest};
use proto::quorate::v1 as pb;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::Mutex;
use tokio::time::Instant;
use workload::nemesis::{FaultWindow, PlannedFault};

use crate::error::CheckError;
use crate::members::Members;
use crate::range_faults::{RANGE_CALL_TIMEOUT, ask_any, drain, ranges_client};

/// How long a leaving member may take to hand everything over before it is removed anyway
/// (the rebalancer then re-creates what it held from the other replicas).
const LEAVE_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long adding or removing the member is asked for while no member can do it.
const MEMBER_CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Adds the member with `peer_url` through any running member; returns its id.
async fn add(
    members: &Arc<Mutex<Members>>,
    rng: &mut StdRng,
    peer_url: &str,
) -> Result<u64, tonic::Status> {
    let deadline = Instant::now() + MEMBER_CHANGE_TIMEOUT;
    ask_any(members, rng, deadline, |channel| async move {
        let request = MemberAddRequest {
            peer_ur_ls: vec![peer_url.to_owned()],
            is_learner: false,
        };
        let added = ClusterClient::new(channel).member_add(request).await?;
        added
            .into_inner()
            .member
            .map(|member| member.id)
            .ok_or_else(|| tonic::Status::internal("the member add answered no member"))
    })
    .await
}

/// Removes member `id` through any running member.
async fn remove(
    members: &Arc<Mutex<Members>>,
    rng: &mut StdRng,
    id: u64,
) -> Result<(), tonic::Status> {
    let deadline = Instant::now() + MEMBER_CHANGE_TIMEOUT;
    ask_any(members, rng, deadline, |channel| async move {
        let request = MemberRemoveRequest { id };
        ClusterClient::new(channel).member_remove(request).await?;
        Ok(())
    })
    .await
}

/// How long past its window a joiner may wait for its first replica of the workload's
/// consensus bucket (the rebalancer first has to see it live), so that it leaves holding some.
const JOIN_RECEIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Replicas of the workload's consensus bucket on member `id` (`None` without such a bucket).
async fn replicas_on(members: &Arc<Mutex<Members>>, rng: &mut StdRng, id: u64) -> Option<usize> {
    let mut ranges = ranges_client(members, rng, RANGE_CALL_TIMEOUT).await?;
    let request = pb::ListRangesRequest {
        bucket: workload::ranges::BUCKET.to_owned(),
    };
    match ranges.list(request).await {
        Ok(listed) => Some(
            listed
                .into_inner()
                .ranges
                .iter()
                .filter(|r| r.replicas.contains(&id) || r.learners.contains(&id))
                .count(),
        ),
        Err(status) if status.code() == tonic::Code::NotFound => None,
        Err(_) => Some(0),
    }
}

/// Waits for the window's end and, on a run with a consensus bucket, until member `id`
/// holds a replica of it (for at most `JOIN_RECEIVE_TIMEOUT` more).
async fn wait_for_replicas(members: &Arc<Mutex<Members>>, rng: &mut StdRng, id: u64, end: Instant) {
    tokio::time::sleep_until(end).await;
    let deadline = end + JOIN_RECEIVE_TIMEOUT;
    while Instant::now() < deadline {
        match replicas_on(members, rng, id).await {
            None => return,
            Some(n) if n > 0 => return,
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Replicas and leaderships on a member.
type Held = (u32, u32);

/// Drains member `id` until nothing is left on it or the drain timeout passes; returns what
/// it held when the drain began and what was left at the end.
async fn drain_all(members: &Arc<Mutex<Members>>, rng: &mut StdRng, id: u64) -> (Held, Held) {
    let deadline = Instant::now() + LEAVE_DRAIN_TIMEOUT;
    let mut held = None;
    let mut left = (u32::MAX, u32::MAX);
    // A drain no member answers before the deadline ends the wait.
    while let Ok(answer) = drain(members, rng, id, false, deadline).await {
        left = (answer.replicas_left, answer.leaders_left);
        held.get_or_insert(left);
        if left == (0, 0) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (held.unwrap_or(left), left)
}

/// Runs one join-leave window; returns it on the run's clock (from `start`).
pub(crate) async fn hold(
    fault: &PlannedFault,
    members: &Arc<Mutex<Members>>,
    start: Instant,
) -> Result<FaultWindow, CheckError> {
    let since = |at: Instant| (at - start).as_nanos() as u64;
    let began = since(Instant::now());
    let end = Instant::now() + fault.duration;
    let mut rng = StdRng::seed_from_u64(fault.pick as u64 ^ 0x6a6f_696e);
    let (name, peer_url) = members.lock().await.prepare_joiner()?;
    tracing::info!(kind = fault.kind.as_str(), member = %name, "fault begins");
    let shown = match add(members, &mut rng, &peer_url).await {
        Err(why) => format!("{name} could not join: {}", why.message()),
        Ok(id) => {
            members.lock().await.spawn_joiner()?;
            wait_for_replicas(members, &mut rng, id, end).await;
            let ((held_replicas, held_leaders), (replicas, leaders)) =
                drain_all(members, &mut rng, id).await;
            let drained = if (replicas, leaders) == (0, 0) {
                format!("held {held_replicas} replicas and {held_leaders} leaderships, drained")
            } else {
                format!("{replicas} replicas and {leaders} leaderships still on it")
            };
            let removed = match remove(members, &mut rng, id).await {
                Ok(()) => "removed".to_owned(),
                Err(why) => format!("not removed: {}", why.message()),
            };
            members.lock().await.stop_joiner().await;
            format!("{name} ({id:x}) joined, then left: {drained}, {removed}")
        }
    };
    tracing::info!(kind = fault.kind.as_str(), what = %shown, "fault healed");
    Ok(FaultWindow {
        kind: fault.kind,
        members: vec![shown],
        start: began,
        end: since(Instant::now()),
    })
}
