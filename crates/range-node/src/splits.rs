//! Splits of consensus-bucket ranges, as the member leading a range drives them: a split is
//! committed in the metadata first (refused there unless made for the range's current
//! generation, which serializes splits of one range), then in the range's own group, which
//! cuts its state and leaves the right half as the seed of the new range's group on every
//! replica. Each pass, the leader of every range runs the duties `ranges::leader_duties`
//! names (`run_duty`): it finishes the change the metadata is ahead by (`ranges::classify`),
//! so a split or merge whose proposer died halfway is finished by whoever leads next; proposes
//! new splits when `ranges::decide_split` says so (size past the bucket's `range_max_bytes`,
//! or sustained load, at the key that balances it); closes timestamps, merges small
//! neighbours, collects old versions; and sends snapshots to followers that cannot take the
//! log (`ranges::StuckWatch`).

use proto::quorate::v1::Refusal;
use std::time::Duration;

use proto::quorate::raft::v1 as raftpb;
use proto::quorate::v1 as pb;
use ranges::SplitConfig;
use tokio::time::Instant;

use crate::groups::MetadataView;
use crate::{RangeNode, RangeNodeError};

use base::limits::{
    RANGE_GC_PASSES, RANGE_LOAD_WINDOW_PASSES as LOAD_WINDOW_PASSES, RANGE_STUCK_FOLLOWER_PASSES,
};

impl RangeNode {
    /// One pass over the groups this member leads: each runs the duties
    /// `ranges::leader_duties` names for this pass, in order.
    pub(crate) async fn follow_splits(&self, pass: u64, view: &MetadataView) {
        let periods = ranges::DutyPeriods {
            close: base::limits::RANGE_CLOSE_PASSES,
            window: LOAD_WINDOW_PASSES,
            gc: self.gc_passes(),
        };
        for group in self.groups.leaders() {
            let id = group.range().0;
            let Some(meta) = view.range(id) else {
                continue;
            };
            let held = group.descriptor();
            let leader = ranges::LeaderView {
                range: group.range(),
                pending: ranges::classify(
                    &topology::descriptor_from_pb(meta),
                    &topology::descriptor_from_pb(&held),
                ),
                frozen: group.merging_into().is_some(),
                wants_close: group.wants_close(),
                has_right: view.right_of(id).is_some(),
            };
            if !leader.frozen {
                // A freeze that ended (committed or released) is timed no more.
                self.forget_freeze(id);
            }
            for duty in ranges::leader_duties(periods, pass, leader) {
                if !self.run_duty(duty, &group, meta, &held, view).await || duty.ends_pass() {
                    break;
                }
            }
        }
    }

    /// Carries out one duty of a range this member leads; false when the pass ends for the
    /// range here (not aligned yet, a split proposed, no bucket).
    async fn run_duty(
        &self,
        duty: ranges::Duty,
        group: &consensus::RangeGroup,
        meta: &raftpb::RangeDescriptor,
        held: &raftpb::RangeDescriptor,
        view: &MetadataView,
    ) -> bool {
        let id = meta.id;
        let config = view
            .topology
            .buckets
            .iter()
            .find(|b| b.name == meta.bucket)
            .map(split_config);
        match duty {
            ranges::Duty::HelpStuck => self.help_stuck(group),
            ranges::Duty::Close => {
                // Off the pass: a close waits for its commit like any proposal.
                let closer = group.clone();
                tokio::spawn(async move {
                    if let Err(error) = closer.close_timestamp().await {
                        tracing::debug!(range = closer.range().0, %error, "close not committed");
                    }
                });
            }
            ranges::Duty::Finish(pending) => {
                self.finish_change(group, meta, held, pending, &view.topology)
                    .await;
            }
            ranges::Duty::AlignReplicas => match group.align_replicas(meta).await {
                Ok(aligned) => return aligned,
                Err(error) => {
                    tracing::debug!(range = id, %error, "replicas not aligned yet");
                    return false;
                }
            },
            ranges::Duty::WatchFreeze => self.release_stale_freeze(&group.status(), meta).await,
            ranges::Duty::EndLoadWindow => {
                let Some(config) = config else { return false };
                let window = base::limits::RANGE_RECONCILE_INTERVAL * LOAD_WINDOW_PASSES as u32;
                group.end_load_window(window.as_secs_f64(), &config);
            }
            ranges::Duty::Split => {
                let Some(config) = config else { return false };
                if let Some(split) = group.split_decision(&config) {
                    tracing::info!(range = id, reason = ?split.reason, "range splits");
                    if let Err(error) = self.propose_split(meta, &split.at, false).await {
                        tracing::debug!(range = id, %error, "proposed split not committed");
                    }
                    return false;
                }
            }
            ranges::Duty::MergeIfSmall => {
                if let (Some(config), Some(right)) = (config, view.right_of(id)) {
                    self.merge_if_small(group, meta, right, &config).await;
                }
            }
            ranges::Duty::CollectGarbage => {
                match group.collect_garbage(self.config.version_ttl).await {
                    Ok(true) => tracing::debug!(range = id, "old versions collected"),
                    Ok(false) => {}
                    Err(error) => tracing::debug!(range = id, %error, "version GC not committed"),
                }
            }
        }
        true
    }

    /// Passes between a leader's looks for versions to collect: a tenth of the version TTL,
    /// at most `RANGE_GC_PASSES`.
    fn gc_passes(&self) -> u64 {
        let tenth = self.config.version_ttl.as_millis() as u64
            / 10
            / base::limits::RANGE_RECONCILE_INTERVAL.as_millis() as u64;
        tenth.clamp(1, RANGE_GC_PASSES)
    }

    /// Sends snapshots from `group` (which this member leads) while a follower stays stuck,
    /// when `ranges::StuckWatch` says so.
    fn help_stuck(&self, group: &consensus::RangeGroup) {
        let id = group.range().0;
        let followers = group.stuck_followers();
        let learner = followers.iter().any(|(_, learner)| *learner);
        let periods = ranges::StuckPeriods {
            learner_first: base::limits::RANGE_STUCK_LEARNER_PASSES,
            every: RANGE_STUCK_FOLLOWER_PASSES,
        };
        let send = self.with_led(id, |led| {
            led.stuck.observe(!followers.is_empty(), learner, periods)
        });
        if send {
            let group = group.clone();
            tokio::spawn(async move { group.send_snapshots().await });
        }
    }

    /// Proposes in `group` the change the metadata committed for it, as `ranges::classify`
    /// named it: a change that keeps its span (a replica change, the bump releasing a frozen
    /// range), a merge (`meta` spans it and its old right neighbour), or a split (`meta` is
    /// its left half).
    async fn finish_change(
        &self,
        group: &consensus::RangeGroup,
        meta: &raftpb::RangeDescriptor,
        held: &raftpb::RangeDescriptor,
        pending: ranges::Pending,
        topology: &raftpb::Topology,
    ) {
        let right = || {
            meta.end.as_ref().and_then(|end| {
                topology
                    .ranges
                    .iter()
                    .find(|r| r.bucket == meta.bucket && &r.start == end)
            })
        };
        match pending {
            ranges::Pending::Nothing | ranges::Pending::GroupAhead => {}
            ranges::Pending::SameSpan => {
                // A replica change reaches the group's Raft membership first, a step per
                // pass; the range's state records the descriptor once the membership matches.
                match group.align_replicas(meta).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => {
                        tracing::debug!(range = meta.id, %error, "replica change not applied yet");
                        return;
                    }
                }
                match group.set_descriptor(meta.clone()).await {
                    Ok(_) => tracing::info!(
                        range = meta.id,
                        generation = meta.generation,
                        "range changed"
                    ),
                    Err(error) => {
                        tracing::debug!(range = meta.id, %error, "change not applied yet");
                    }
                }
            }
            ranges::Pending::Merge => self.finish_merge(group, meta, held).await,
            ranges::Pending::Split if right().is_some() => {
                let right = right().expect("checked above");
                match group.apply_split(meta.clone(), right.clone()).await {
                    Ok(_) => {
                        tracing::info!(left = meta.id, right = right.id, "split applied");
                        // Its seed is saved: start the right half here now, as its first
                        // leader, rather than at the next pass.
                        if self.groups.get(right.id).is_none() {
                            self.try_start(right).await;
                        }
                    }
                    Err(error) => tracing::debug!(range = meta.id, %error, "split not applied yet"),
                }
            }
            ranges::Pending::Split | ranges::Pending::Unknown => tracing::warn!(
                range = meta.id,
                held = held.generation,
                metadata = meta.generation,
                "range changed in the metadata in a way this member cannot carry out yet"
            ),
        }
    }

    /// Commits in the metadata a split of `range` (as this member saw it) at `at`, once the
    /// range's group has applied every earlier change of it.
    async fn propose_split(
        &self,
        range: &raftpb::RangeDescriptor,
        at: &[u8],
        by_hand: bool,
    ) -> Result<Vec<raftpb::RangeDescriptor>, RangeNodeError> {
        use raftpb::range_change::Change;
        let change = raftpb::RangeChange {
            bucket: range.bucket.clone(),
            range: range.id,
            generation: range.generation,
            change: Some(if by_hand {
                Change::SplitByHandAt(at.to_vec())
            } else {
                Change::SplitAt(at.to_vec())
            }),
        };
        let reply = self.replica.change_range(change).await?;
        if !reply.refusal.is_empty() {
            return Err(RangeNodeError::from_reply(
                reply.refusal_kind,
                reply.refusal,
            ));
        }
        Ok(reply.ranges)
    }

    /// `quorate range split`: splits the range of `bucket` holding `key` at `key`, and waits
    /// (within the request timeout) until both halves serve.
    pub(crate) async fn split(
        &self,
        bucket: &str,
        key: &[u8],
    ) -> Result<Vec<raftpb::RangeDescriptor>, RangeNodeError> {
        self.require_consensus(bucket, "range split").await?;
        crate::services::check_key(key)?;
        let deadline = Instant::now() + self.config.request_timeout;
        self.replica.linearizable_barrier().await?;
        let ranges = self.metadata_ranges(bucket);
        let range = ranges
            .iter()
            .find(|r| topology::descriptor_from_pb(r).contains(key))
            .ok_or_else(|| {
                RangeNodeError::Internal(format!("no range of {bucket:?} holds the key"))
            })?;
        if range.start == key {
            return Err(RangeNodeError::refused(
                Refusal::AlreadySplit,
                format!("range {} already starts at that key", range.id),
            ));
        }
        // A range just created or changed may still be electing or applying: wait for it
        // (within the request timeout) rather than refuse at once.
        self.await_serving(range, deadline).await;
        let status = self.status_of(range).await;
        let applied = status
            .as_ref()
            .and_then(|s| s.descriptor.as_ref())
            .map(|d| d.generation);
        if applied != Some(range.generation) {
            return Err(RangeNodeError::Unavailable {
                bucket: bucket.to_owned(),
                range: range.id,
                replicas: range.replicas.len(),
                answered: usize::from(status.is_some()),
                why: "its group is still applying an earlier change or has no leader".into(),
            });
        }
        let halves = self.propose_split(range, key, true).await?;
        for half in &halves {
            self.await_serving(half, deadline).await;
        }
        Ok(halves)
    }

    /// Waits until a replica of `range` leads it at the generation the metadata gave it, or
    /// the deadline passes.
    pub(crate) async fn await_serving(&self, range: &raftpb::RangeDescriptor, deadline: Instant) {
        while Instant::now() < deadline {
            let status = self.status_of(range).await;
            let serving = status.as_ref().is_some_and(|s| {
                s.leader != 0
                    && s.descriptor.as_ref().map(|d| d.generation) == Some(range.generation)
            });
            if serving {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The status of `range` from the replica that leads it (else from any that answered).
    pub(crate) async fn status_of(
        &self,
        range: &raftpb::RangeDescriptor,
    ) -> Option<raftpb::RangeStatusResponse> {
        let mut answers = Vec::new();
        for replica in &range.replicas {
            let answer = if replica.member == self.me() {
                self.groups.get(range.id).map(|g| g.status())
            } else if let Some(url) = self.peer_url(replica.member) {
                self.peers
                    .range_status(&url, range.id, Duration::from_secs(1))
                    .await
                    .ok()
            } else {
                None
            };
            if let Some(status) = answer {
                if status.leader == replica.member {
                    return Some(status);
                }
                answers.push(status);
            }
        }
        answers.into_iter().next()
    }

    pub(crate) async fn require_consensus(
        &self,
        bucket: &str,
        operation: &'static str,
    ) -> Result<pb::Bucket, RangeNodeError> {
        self.consensus_bucket(bucket)
            .await?
            .ok_or_else(|| RangeNodeError::NotConsensus {
                bucket: bucket.to_owned(),
                operation,
            })
    }
}

/// When ranges of `bucket` split.
fn split_config(bucket: &pb::Bucket) -> SplitConfig {
    SplitConfig {
        range_max_bytes: if bucket.range_max_bytes == 0 {
            base::limits::RANGE_MAX_BYTES_DEFAULT
        } else {
            bucket.range_max_bytes
        },
        ..SplitConfig::default()
    }
}
