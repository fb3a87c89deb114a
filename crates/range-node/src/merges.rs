//! Merges of adjacent consensus-bucket ranges, driven here and decided by the pure cores in
//! `ranges::merging`: `align_step` brings the right neighbour's replicas onto the left one's,
//! one metadata change at a time (which `right`'s leader carries into its group as any replica
//! change); `MergeRun` then sequences freeze, fetch, commit and apply, and the release of a
//! merge given up; `FreezeWatch` tells the leader of a frozen range when its freeze outlived
//! its merge. This file only carries the steps out: routes the commands, asks the metadata,
//! fetches the frozen state, and turns how a run ended into the client's answer.

use prost::Message;
use proto::quorate::raft::v1 as raftpb;
use proto::quorate::v1::Refusal;
use tokio::time::Instant;

use crate::gateway::{RangeOp, Served};
use crate::{RangeNode, RangeNodeError};

impl RangeNode {
    /// `quorate range merge`: merges the range of `bucket` holding `key` with its right
    /// neighbour, and waits (within the request timeout) until the merged range serves.
    pub(crate) async fn merge(
        &self,
        bucket: &str,
        key: &[u8],
    ) -> Result<raftpb::RangeDescriptor, RangeNodeError> {
        self.require_consensus(bucket, "range merge").await?;
        crate::services::check_key(key)?;
        let deadline = Instant::now() + self.config.request_timeout;
        self.replica.linearizable_barrier().await?;
        let (left, right) = loop {
            let (left, right) = self.neighbours(bucket, key)?;
            let aligned = self.align_for_merge(&left, &right).await?;
            if aligned {
                break (left, right);
            }
            if Instant::now() >= deadline {
                return Err(RangeNodeError::refused(
                    Refusal::Busy,
                    format!(
                        "ranges {} and {} are on different members: the replicas of {} are moving to those of {} for the merge; try again",
                        left.id, right.id, right.id, left.id
                    ),
                ));
            }
            tokio::time::sleep(base::limits::RANGE_RECONCILE_INTERVAL).await;
        };
        let (left, right) = (&left, &right);
        for range in [left, right] {
            self.await_serving(range, deadline).await;
            self.require_serving(range).await?;
        }
        let merged = self.merge_ranges(bucket, left, right).await?;
        self.await_serving(&merged, deadline).await;
        Ok(merged)
    }

    /// The range of `bucket` holding `key` and its right neighbour, as the metadata here has
    /// them.
    fn neighbours(
        &self,
        bucket: &str,
        key: &[u8],
    ) -> Result<(raftpb::RangeDescriptor, raftpb::RangeDescriptor), RangeNodeError> {
        let mut ranges = self.metadata_ranges(bucket);
        let at = ranges
            .iter()
            .position(|r| topology::descriptor_from_pb(r).contains(key))
            .ok_or_else(|| {
                RangeNodeError::Internal(format!("no range of {bucket:?} holds the key"))
            })?;
        if at + 1 >= ranges.len() {
            return Err(RangeNodeError::refused(
                Refusal::Invalid,
                format!(
                    "range {} is the last of the bucket: it has no right neighbour",
                    ranges[at].id
                ),
            ));
        }
        let right = ranges.remove(at + 1);
        Ok((ranges.swap_remove(at), right))
    }

    /// Brings `right`'s replicas one change towards `left`'s (`ranges::align_step`); true
    /// once they match.
    async fn align_for_merge(
        &self,
        left: &raftpb::RangeDescriptor,
        right: &raftpb::RangeDescriptor,
    ) -> Result<bool, RangeNodeError> {
        let (l, r) = (
            topology::descriptor_from_pb(left),
            topology::descriptor_from_pb(right),
        );
        let draining: Vec<base::NodeId> = self
            .replica
            .topology()
            .draining
            .into_iter()
            .map(base::NodeId)
            .collect();
        let status = self.status_of(right).await;
        let view = status.as_ref().map(|s| ranges::GroupView {
            led: s.leader != 0,
            applied_generation: s.descriptor.as_ref().map_or(0, |d| d.generation),
        });
        let change = match ranges::align_step(&l, &r, &draining, view) {
            ranges::AlignStep::Aligned => return Ok(true),
            ranges::AlignStep::Wait => return Ok(false),
            ranges::AlignStep::Change(change) => change,
            ranges::AlignStep::PromoteIfCaughtUp(member) => {
                let leader = status.as_ref().map_or(0, |s| s.leader);
                if !self.caught_up(leader, right.id, member).await? {
                    return Ok(false);
                }
                ranges::ReplicaChange::Promote(member)
            }
        };
        tracing::info!(
            left = left.id,
            right = right.id,
            ?change,
            "replicas aligned for a merge"
        );
        let reply = self
            .commit_replica_change(right, right.generation, change)
            .await?;
        if !reply.refusal.is_empty() {
            tracing::debug!(range = right.id, refusal = %reply.refusal, "merge alignment refused");
        }
        Ok(false)
    }

    /// Whether `member`'s learner of `range` has caught up with the range's leader `leader`.
    async fn caught_up(
        &self,
        leader: u64,
        range: u64,
        member: base::NodeId,
    ) -> Result<bool, RangeNodeError> {
        let Some(url) = self.peer_url(leader) else {
            return Ok(false);
        };
        let led = self
            .peers
            .led_ranges(&url, self.config.request_timeout)
            .await
            .map_err(|e| RangeNodeError::Internal(e.to_string()))?;
        Ok(led
            .ranges
            .iter()
            .any(|x| x.range == range && x.caught_up.contains(&member.0)))
    }

    /// Fails unless a replica of `range` leads it at the generation the metadata gave it.
    async fn require_serving(&self, range: &raftpb::RangeDescriptor) -> Result<(), RangeNodeError> {
        let status = self.status_of(range).await;
        let serving = status.as_ref().is_some_and(|s| {
            s.leader != 0 && s.descriptor.as_ref().map(|d| d.generation) == Some(range.generation)
        });
        if serving {
            return Ok(());
        }
        Err(RangeNodeError::Unavailable {
            bucket: range.bucket.clone(),
            range: range.id,
            replicas: range.replicas.len(),
            answered: usize::from(status.is_some()),
            why: "its group is still applying an earlier change or has no leader".into(),
        })
    }

    /// Carries out a `ranges::MergeRun` of `left` and its right neighbour `right`, both as
    /// the metadata has them: the merged range once the merge committed, or why it did not.
    async fn merge_ranges(
        &self,
        bucket: &str,
        left: &raftpb::RangeDescriptor,
        right: &raftpb::RangeDescriptor,
    ) -> Result<raftpb::RangeDescriptor, RangeNodeError> {
        use ranges::{MergeEnd, MergeEvent, MergeStep};
        let (mut run, mut step) = ranges::MergeRun::start(
            &topology::descriptor_from_pb(left),
            &topology::descriptor_from_pb(right),
            base::limits::RANGE_MERGE_BYTES_MAX as u64,
        );
        // What the steps brought back, for the later steps and the answer.
        let mut snapshot = None;
        let mut merged = None;
        let mut why = None;
        loop {
            let event = match step {
                MergeStep::Freeze { .. } => {
                    let fate = self.freeze(bucket, left, right).await;
                    why = fate.as_ref().err().cloned();
                    MergeEvent::Frozen(command_fate(&fate))
                }
                MergeStep::Fetch { .. } => {
                    let fetched = self.fetch_frozen(bucket, right, left.id).await;
                    let size = fetched.as_ref().ok().map(|s| s.encoded_len() as u64);
                    match fetched {
                        Ok(state) => snapshot = Some(state),
                        Err(error) => why = Some(error),
                    }
                    MergeEvent::Fetched(size)
                }
                MergeStep::Commit { .. } => {
                    let committed = self.commit_merge(bucket, left, right).await;
                    let done = committed.is_ok();
                    match committed {
                        Ok(range) => merged = Some(range),
                        Err(error) => why = Some(error),
                    }
                    MergeEvent::Committed(done)
                }
                MergeStep::Apply => {
                    let (Some(range), Some(state)) = (merged.as_ref(), snapshot.take()) else {
                        return Err(RangeNodeError::Internal("a merge applied unfetched".into()));
                    };
                    let applied = self.propose_merge(bucket, range, state).await;
                    if let Err(error) = &applied {
                        tracing::debug!(range = left.id, %error, "merge not applied yet");
                    }
                    MergeEvent::Applied(command_fate(&applied))
                }
                MergeStep::Release { .. } => {
                    self.give_up(right).await;
                    MergeEvent::Released
                }
                MergeStep::End(MergeEnd::Merged | MergeEnd::Decided) => {
                    tracing::info!(left = left.id, right = right.id, "merge committed");
                    return merged.ok_or_else(|| {
                        RangeNodeError::Internal("a merge committed no range".into())
                    });
                }
                MergeStep::End(MergeEnd::NotMerged(failure)) => {
                    return Err(not_merged(failure, right.id, why));
                }
            };
            step = run.on(event);
        }
    }

    /// Step 1: freezes `right` for a merge into `left`, in `right`'s group.
    async fn freeze(
        &self,
        bucket: &str,
        left: &raftpb::RangeDescriptor,
        right: &raftpb::RangeDescriptor,
    ) -> Result<(), RangeNodeError> {
        let freeze = raftpb::RangeCommand {
            op: Some(raftpb::range_command::Op::Freeze(raftpb::RangeFreeze {
                generation: right.generation,
                into: left.id,
            })),
            ..Default::default()
        };
        let frozen = self
            .route(bucket, &right.start, RangeOp::Write(Box::new(freeze)))
            .await?;
        command_done(frozen, right.id, "freeze")
    }

    /// Step 3: commits the merge in the metadata; the merged range, or the refusal.
    async fn commit_merge(
        &self,
        bucket: &str,
        left: &raftpb::RangeDescriptor,
        right: &raftpb::RangeDescriptor,
    ) -> Result<raftpb::RangeDescriptor, RangeNodeError> {
        let change = raftpb::RangeChange {
            bucket: bucket.to_owned(),
            range: left.id,
            generation: left.generation,
            change: Some(raftpb::range_change::Change::MergeRightGeneration(
                right.generation,
            )),
        };
        let reply = self.replica.change_range(change).await?;
        if !reply.refusal.is_empty() {
            return Err(RangeNodeError::from_reply(
                reply.refusal_kind,
                reply.refusal,
            ));
        }
        reply
            .ranges
            .into_iter()
            .next()
            .ok_or_else(|| RangeNodeError::Internal("a merge committed no range".into()))
    }

    /// Proposes step 4 in the group of `merged`'s range.
    async fn propose_merge(
        &self,
        bucket: &str,
        merged: &raftpb::RangeDescriptor,
        right: raftpb::RangeSnapshot,
    ) -> Result<(), RangeNodeError> {
        let command = raftpb::RangeCommand {
            op: Some(raftpb::range_command::Op::Merge(raftpb::RangeMerge {
                merged: Some(merged.clone()),
                right: Some(right),
            })),
            ..Default::default()
        };
        let applied = self
            .route(bucket, &merged.start, RangeOp::Write(Box::new(command)))
            .await?;
        command_done(applied, merged.id, "merge")
    }

    /// The final state of the range of `bucket` starting at `start`, frozen for a merge into
    /// `into` at `generation`, from this member's replica or any of `replicas`.
    async fn frozen_state(
        &self,
        bucket: &str,
        start: &[u8],
        (into, generation): (u64, u64),
        replicas: &[raftpb::RangeReplica],
    ) -> Option<raftpb::RangeSnapshot> {
        if let Some(snapshot) = self.groups.frozen(bucket, start, into, generation) {
            return Some(snapshot);
        }
        for replica in replicas {
            if replica.member == self.me() {
                continue;
            }
            let Some(url) = self.peer_url(replica.member) else {
                continue;
            };
            let request = raftpb::FrozenRangeRequest {
                bucket: bucket.to_owned(),
                start: start.to_vec(),
                into,
                generation,
            };
            if let Ok(snapshot) = self
                .peers
                .frozen_range(&url, request, self.config.request_timeout)
                .await
            {
                return Some(snapshot);
            }
        }
        None
    }

    /// Step 2, right after `right`'s leader applied the freeze.
    async fn fetch_frozen(
        &self,
        bucket: &str,
        right: &raftpb::RangeDescriptor,
        into: u64,
    ) -> Result<raftpb::RangeSnapshot, RangeNodeError> {
        self.frozen_state(
            bucket,
            &right.start,
            (into, right.generation),
            &right.replicas,
        )
        .await
        .ok_or_else(|| RangeNodeError::Unavailable {
            bucket: bucket.to_owned(),
            range: right.id,
            replicas: right.replicas.len(),
            answered: 0,
            why: "no replica gave its frozen state".into(),
        })
    }

    /// Releases `right` from a merge that will not commit: its next generation in the
    /// metadata makes the merge's commit impossible, and its group thaws when it applies it.
    async fn give_up(&self, right: &raftpb::RangeDescriptor) {
        let change = raftpb::RangeChange {
            bucket: right.bucket.clone(),
            range: right.id,
            generation: right.generation,
            change: Some(raftpb::range_change::Change::Bump(true)),
        };
        match self.replica.change_range(change).await {
            Ok(reply) if reply.refusal.is_empty() => {
                tracing::info!(range = right.id, "merge given up: range released");
            }
            // Changed since (by a commit that already released it), or the metadata is
            // unreachable now: the range's leader releases it after RANGE_FREEZE_MAX.
            Ok(reply) => tracing::debug!(range = right.id, refusal = %reply.refusal, "release"),
            Err(error) => tracing::debug!(range = right.id, %error, "release"),
        }
    }

    /// On the leader of `left` at the end of a load window: merges it with its right
    /// neighbour when `ranges::merge_fits` says so and their replicas are aligned (asking the neighbour's leader for its
    /// size and load only when `left` alone is small and quiet enough).
    pub(crate) async fn merge_if_small(
        &self,
        group: &consensus::RangeGroup,
        left: &raftpb::RangeDescriptor,
        right: &raftpb::RangeDescriptor,
        split: &ranges::SplitConfig,
    ) {
        let mut config =
            ranges::MergeConfig::for_bucket(split.range_max_bytes, split.load_split_qps);
        config.merge_max_bytes = config
            .merge_max_bytes
            .min(base::limits::RANGE_MERGE_BYTES_MAX as u64 / 2);
        // A split by hand is kept: decided before the status, which costs a copy per window.
        if right.sticky {
            return;
        }
        let own = group.status();
        let (bytes, load) = (own.bytes, own.load);
        if bytes > config.merge_max_bytes || load > config.merge_max_qps {
            return;
        }
        let Some(status) = self.status_of(right).await else {
            return;
        };
        let current = status.descriptor.as_ref().map(|d| d.generation) == Some(right.generation);
        if !current || status.merging_into != 0 || status.leader == 0 {
            return;
        }
        let fits = ranges::merge_fits(
            &topology::descriptor_from_pb(left),
            &topology::descriptor_from_pb(right),
            (bytes, load),
            (status.bytes, status.load),
            &config,
        );
        if !fits {
            return;
        }
        match self.align_for_merge(left, right).await {
            Ok(true) => {}
            // One change on its way; the next window goes on.
            Ok(false) => return,
            Err(error) => {
                tracing::debug!(left = left.id, right = right.id, %error, "merge alignment");
                return;
            }
        }
        tracing::info!(left = left.id, right = right.id, "small neighbours merge");
        if let Err(error) = self.merge_ranges(&left.bucket, left, right).await {
            tracing::debug!(left = left.id, right = right.id, %error, "merge not done");
        }
    }

    /// On the leader of a range the metadata merged with its right neighbour: step 4.
    pub(crate) async fn finish_merge(
        &self,
        group: &consensus::RangeGroup,
        meta: &raftpb::RangeDescriptor,
        held: &raftpb::RangeDescriptor,
    ) {
        let Some(start) = held.end.as_deref() else {
            return;
        };
        let frozen_at = (meta.id, meta.merged_right_generation);
        let Some(right) = self
            .frozen_state(&meta.bucket, start, frozen_at, &held.replicas)
            .await
        else {
            tracing::warn!(
                range = meta.id,
                "merge committed, no frozen right neighbour found yet"
            );
            return;
        };
        match group.apply_merge(meta.clone(), right).await {
            Ok(_) => tracing::info!(range = meta.id, "merge applied"),
            Err(error) => tracing::debug!(range = meta.id, %error, "merge not applied yet"),
        }
    }

    /// On the leader of a frozen range: releases it once it stayed frozen longer than
    /// `RANGE_FREEZE_MAX` while the metadata still has it at the frozen generation (the merge
    /// neither committed nor was given up: its driver is gone). `ranges::FreezeWatch` decides.
    pub(crate) async fn release_stale_freeze(
        &self,
        status: &raftpb::RangeStatusResponse,
        meta: &raftpb::RangeDescriptor,
    ) {
        let frozen_at = (status.merging_into != 0)
            .then(|| status.descriptor.as_ref().map_or(0, |d| d.generation));
        let now = self.started.elapsed();
        let release = self.with_led(meta.id, |led| {
            led.freeze.observe(
                frozen_at,
                meta.generation,
                now,
                base::limits::RANGE_FREEZE_MAX,
            )
        });
        if release {
            self.give_up(meta).await;
        }
    }
}

/// What a command's result says of it: applied, certainly not applied, or unknown.
fn command_fate<T>(result: &Result<T, RangeNodeError>) -> ranges::CommandFate {
    match result {
        Ok(_) => ranges::CommandFate::Done,
        Err(RangeNodeError::Indeterminate(_) | RangeNodeError::Internal(_)) => {
            ranges::CommandFate::Unknown
        }
        Err(_) => ranges::CommandFate::NotApplied,
    }
}

/// The client's answer for a merge that did not happen: the error of the step that failed,
/// or the run's own reason.
fn not_merged(
    failure: ranges::MergeFailure,
    right: u64,
    why: Option<RangeNodeError>,
) -> RangeNodeError {
    match (failure, why) {
        (ranges::MergeFailure::TooLarge { bytes, max }, _) => RangeNodeError::refused(
            Refusal::Invalid,
            format!(
                "range {right} holds {bytes} bytes: a merge carries at most {max} (RANGE_MERGE_BYTES_MAX)"
            ),
        ),
        (_, Some(error)) => error,
        (failure, None) => RangeNodeError::Internal(format!("merge of range {right}: {failure:?}")),
    }
}

/// Checks that a command routed to a range's leader was applied.
fn command_done(served: Served, range: u64, what: &str) -> Result<(), RangeNodeError> {
    use raftpb::range_command_response::Outcome;
    use raftpb::range_refusal::Why;
    let Served::Written(written) = served else {
        return Err(RangeNodeError::Internal(format!(
            "a range {what} was answered by a read"
        )));
    };
    match written.outcome {
        Some(Outcome::Done(_)) => Ok(()),
        Some(Outcome::Refused(raftpb::RangeRefusal {
            why: Some(Why::Stale(current)),
        })) => Err(RangeNodeError::refused(
            Refusal::Stale,
            format!("range {range} changed meanwhile (now at generation {current}): try again"),
        )),
        other => Err(RangeNodeError::refused(
            Refusal::Busy,
            format!("range {range} refused the {what}: {other:?}"),
        )),
    }
}
