//! `/metrics` (Prometheus text format) and `/health` (etcd's JSON shape) over HTTP.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use consensus::Replica;
use prometheus_client::encoding::text::encode;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use quorum_node::QuorumNode;
use range_node::RangeNode;

/// Returns the HTTP routes of the metrics listener.
pub fn router(replica: Arc<Replica>, quorum: Arc<QuorumNode>, ranges: Arc<RangeNode>) -> Router {
    let for_metrics = replica.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || metrics(for_metrics.clone(), quorum.clone(), ranges.clone())),
        )
        .route("/health", get(move || health(replica.clone())))
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let gauge: Gauge = Gauge::default();
    gauge.set(value);
    registry.register(name, help, gauge);
}

/// Renders `/metrics`.
///
/// Long because it is the list of every metric the member exports, one registration each.
async fn metrics(
    replica: Arc<Replica>,
    quorum: Arc<QuorumNode>,
    ranges: Arc<RangeNode>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let status = replica.status();
    let mut registry = Registry::with_prefix("quorate");
    let stats = quorum.stats();
    let range_stats = ranges.stats();
    for (name, help, value) in [
        (
            "range_replicas",
            "Consensus-range replicas this member runs",
            range_stats.replicas,
        ),
        (
            "range_leaders",
            "Consensus ranges this member leads",
            range_stats.leaders,
        ),
        (
            "range_quiesced",
            "Consensus-range replicas asleep (no heartbeats while idle)",
            range_stats.quiesced,
        ),
        (
            "range_learners_in_flight",
            "Consensus ranges with a replica still catching up as a learner",
            range_stats.learners,
        ),
        (
            "range_draining",
            "1 while this member is draining (quorate member drain)",
            u64::from(range_stats.draining),
        ),
        (
            "range_replica_changes",
            "Replica changes this member's rebalancer committed since start",
            range_stats.replica_changes,
        ),
        (
            "range_leader_transfers",
            "Range leaderships this member's rebalancer had handed over since start",
            range_stats.leader_transfers,
        ),
        (
            "range_follower_reads_local",
            "Follower reads this member served from its own range replicas since start",
            range_stats.follower_reads_local,
        ),
        (
            "range_checksum_mismatches",
            "Divergent range replicas the consistency checks run from this member found",
            range_stats.checksum_mismatches,
        ),
        (
            "range_follower_reads_on_leader",
            "Follower reads this member handed to the range's leader (replica behind or absent)",
            range_stats.follower_reads_on_leader,
        ),
        (
            "quorum_hint_bytes",
            "Bytes of hints held for unreachable replicas",
            stats.hint_bytes,
        ),
        (
            "quorum_hints_stored",
            "Hints stored since start",
            stats.hints_stored,
        ),
        (
            "quorum_hints_delivered",
            "Hints handed to their replica since start",
            stats.hints_delivered,
        ),
        (
            "quorum_hints_dropped",
            "Hints not kept (bound full, bucket gone) since start",
            stats.hints_dropped,
        ),
        (
            "quorum_read_repairs",
            "Stale replicas sent the merge of a read since start",
            stats.read_repairs,
        ),
        (
            "quorum_tombstones_reaped",
            "Deleted keys whose entry was dropped after the grace period, since start",
            stats.tombstones_reaped,
        ),
        (
            "quorum_ring_epoch",
            "The token ring epoch this member has applied",
            stats.ring_epoch,
        ),
        (
            "quorum_handoff_sent",
            "Copies sent to new replicas by ring-change streams since start",
            stats.handoff_sent,
        ),
        (
            "quorum_handoff_received",
            "Copies received from other members' ring-change streams since start",
            stats.handoff_received,
        ),
        (
            "quorum_handoff_created",
            "Received ring-change copies of keys this member held no copy of, since start",
            stats.handoff_created,
        ),
        (
            "quorum_handoff_removed",
            "Objects dropped after ring changes as no longer replicated here, since start",
            stats.handoff_removed,
        ),
    ] {
        gauge(&mut registry, name, help, value as i64);
    }
    let phi = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
    for (peer, level, _) in quorum.liveness() {
        phi.get_or_create(&vec![("peer".to_owned(), format!("{:x}", peer.0))])
            .set(level);
    }
    registry.register(
        "peer_phi",
        "Phi-accrual suspicion of each other member (8 and above: suspect)",
        phi,
    );
    let swim = Family::<Vec<(String, String)>, Gauge>::default();
    for (peer, liveness) in quorum.swim_liveness() {
        let value = match liveness {
            quorum_node::SwimLiveness::Alive => 0,
            quorum_node::SwimLiveness::Suspect => 1,
            quorum_node::SwimLiveness::Down => 2,
        };
        swim.get_or_create(&vec![("peer".to_owned(), format!("{:x}", peer.0))])
            .set(value);
    }
    registry.register(
        "peer_swim",
        "How SWIM gossip sees each other member: 0 alive, 1 suspect, 2 down",
        swim,
    );
    gauge(
        &mut registry,
        "raft_term",
        "Current Raft term",
        status.term as i64,
    );
    gauge(
        &mut registry,
        "raft_applied_index",
        "Last Raft index applied",
        status.applied_index as i64,
    );
    gauge(
        &mut registry,
        "raft_committed_index",
        "Last Raft index known committed",
        status.committed_index as i64,
    );
    gauge(
        &mut registry,
        "raft_last_log_index",
        "Last Raft index in the local log",
        status.last_log_index as i64,
    );
    gauge(
        &mut registry,
        "raft_has_leader",
        "1 when a leader is known",
        i64::from(status.leader.is_some()),
    );
    gauge(
        &mut registry,
        "raft_is_leader",
        "1 when this member leads",
        i64::from(status.leader == Some(status.id)),
    );
    gauge(
        &mut registry,
        "raft_purged_index",
        "Last Raft index purged from the log behind a snapshot",
        status.purged_index as i64,
    );
    gauge(
        &mut registry,
        "raft_snapshots_installed",
        "Snapshots received from a leader and installed since start",
        replica.snapshots_installed() as i64,
    );
    gauge(
        &mut registry,
        "mvcc_revision",
        "Current etcd revision",
        status.revision,
    );
    gauge(
        &mut registry,
        "mvcc_compacted_revision",
        "Compacted etcd revision",
        status.compacted_revision,
    );
    gauge(
        &mut registry,
        "mvcc_db_size_bytes",
        "Size of the state file on disk",
        status.db_size as i64,
    );
    gauge(
        &mut registry,
        "mvcc_db_size_in_use_bytes",
        "Bytes of the state file holding live data",
        status.db_size_in_use as i64,
    );
    gauge(
        &mut registry,
        "mvcc_records",
        "Stored MVCC records",
        status.record_count as i64,
    );
    let mut body = String::new();
    match encode(&mut body, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            body,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            error.to_string(),
        ),
    }
}

async fn health(replica: Arc<Replica>) -> (StatusCode, String) {
    if replica.leader().is_some() {
        (
            StatusCode::OK,
            r#"{"health":"true","reason":""}"#.to_string(),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"health":"false","reason":"RAFT NO LEADER"}"#.to_string(),
        )
    }
}
