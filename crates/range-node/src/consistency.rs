//! The replica consistency check (`quorate range check`), as CockroachDB's consistency
//! queue and etcd's HashKV do it: for every range of a bucket, its leader proposes a
//! `Checksum` entry; every replica, applying it, hashes its state as of that index (the same
//! point of the log everywhere, so equal states hash equal); the checksums are collected from
//! each replica and compared. The checksums the most replicas share are taken as the range's
//! state, any other replica is divergent: logged as an error with both figures and counted
//! (`quorate_range_checksum_mismatches`). When the majority is a quorum of the range's
//! replicas, one divergent replica is removed from the range in the metadata: it stops
//! serving once its group applies that, its files are voided when it retires, and the
//! rebalancer adds a replica back, which starts from a good replica's snapshot. The decision
//! which replicas diverge is the pure `divergent` below; this module only asks and collects.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proto::quorate::raft::v1 as raftpb;
use proto::quorate::v1 as pb;
use tokio::time::Instant;

use crate::gateway::{RangeOp, Served};
use crate::{RangeNode, RangeNodeError};

/// How often a replica that has not applied the checksum entry yet is asked again.
const CHECKSUM_POLL: Duration = Duration::from_millis(50);

/// Which replicas to remove: the divergent ones, when the checksum the others share is held by
/// more than half of the range's `replicas` (else nothing: no quorum vouches for a state).
pub fn to_rebuild(sums: &BTreeMap<u64, Vec<u8>>, replicas: usize) -> Vec<u64> {
    let bad = divergent(sums);
    let agreeing = sums.len() - bad.len();
    if bad.is_empty() || bad.len() == sums.len() || agreeing * 2 <= replicas {
        return Vec::new();
    }
    bad
}

/// The members whose checksum differs from the one most replicas reported (a tie has no
/// majority: every answering replica is then suspect). Replicas that gave none are not
/// judged here.
pub fn divergent(sums: &BTreeMap<u64, Vec<u8>>) -> Vec<u64> {
    let mut counts: BTreeMap<&[u8], usize> = BTreeMap::new();
    for sum in sums.values() {
        *counts.entry(sum.as_slice()).or_default() += 1;
    }
    if counts.len() <= 1 {
        return Vec::new();
    }
    let best = counts.values().copied().max().unwrap_or(0);
    let winners: Vec<&[u8]> = counts
        .iter()
        .filter(|(_, n)| **n == best)
        .map(|(sum, _)| *sum)
        .collect();
    let majority = (winners.len() == 1).then(|| winners[0]);
    sums.iter()
        .filter(|(_, sum)| Some(sum.as_slice()) != majority)
        .map(|(member, _)| *member)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl RangeNode {
    /// `quorate range check BUCKET`: checks every range of `bucket`.
    pub(crate) async fn check_ranges(
        &self,
        bucket: &str,
    ) -> Result<Vec<pb::RangeCheck>, RangeNodeError> {
        self.require_consensus(bucket, "range check").await?;
        self.replica.linearizable_barrier().await?;
        let mut checks = Vec::new();
        for range in self.metadata_ranges(bucket) {
            checks.push(self.check_range(bucket, &range).await);
        }
        Ok(checks)
    }

    async fn check_range(&self, bucket: &str, range: &raftpb::RangeDescriptor) -> pb::RangeCheck {
        let mut check = pb::RangeCheck {
            id: range.id,
            start: range.start.clone(),
            end: range.end.clone(),
            ..Default::default()
        };
        let command = raftpb::RangeCommand {
            op: Some(raftpb::range_command::Op::Checksum(raftpb::Blank {})),
            ..Default::default()
        };
        let index = match self
            .route(bucket, &range.start, RangeOp::Write(Box::new(command)))
            .await
        {
            Ok(Served::Written(written)) if written.index > 0 => written.index,
            Ok(other) => {
                check.error = format!("the checksum was not proposed: {}", served_text(&other));
                return check;
            }
            Err(error) => {
                check.error = error.to_string();
                return check;
            }
        };
        check.index = index;
        let deadline = Instant::now() + self.config.request_timeout;
        let mut sums = BTreeMap::new();
        for replica in &range.replicas {
            let answer = self
                .checksum_of(range.id, replica.member, index, deadline)
                .await;
            let mut entry = pb::ReplicaChecksum {
                member: replica.member,
                ..Default::default()
            };
            match answer {
                Ok(sum) => {
                    sums.insert(replica.member, sum.clone());
                    entry.sha256 = sum;
                }
                Err(why) => entry.error = why,
            }
            check.replicas.push(entry);
        }
        let bad = divergent(&sums);
        for entry in &mut check.replicas {
            entry.divergent = bad.contains(&entry.member);
        }
        if !bad.is_empty() {
            self.checksum_mismatches
                .fetch_add(bad.len() as u64, Ordering::Relaxed);
            let figures: Vec<String> = sums
                .iter()
                .map(|(member, sum)| format!("{member:x}={}", hex(sum)))
                .collect();
            tracing::error!(
                range = range.id,
                index,
                divergent = ?bad.iter().map(|m| format!("{m:x}")).collect::<Vec<_>>(),
                checksums = %figures.join(" "),
                "replicas of a range diverge: their states differ at the same log index"
            );
        }
        check.consistent = bad.is_empty() && sums.len() == range.replicas.len();
        if let Some(&member) = to_rebuild(&sums, range.replicas.len()).first() {
            self.rebuild(range, member, &mut check).await;
        }
        check
    }

    /// Removes `member`'s divergent replica of `range` from the metadata (one change; the
    /// rebalancer adds a replica back from a good replica's snapshot).
    async fn rebuild(
        &self,
        range: &raftpb::RangeDescriptor,
        member: u64,
        check: &mut pb::RangeCheck,
    ) {
        let change = ranges::ReplicaChange::Remove(base::NodeId(member));
        match self
            .commit_replica_change(range, range.generation, change)
            .await
        {
            Ok(reply) if reply.refusal.is_empty() => {
                tracing::error!(
                    range = range.id,
                    member = %format!("{member:x}"),
                    generation = range.generation,
                    "divergent replica removed from its range: it is rebuilt from a good \
                     replica's snapshot"
                );
                if let Some(entry) = check.replicas.iter_mut().find(|r| r.member == member) {
                    entry.removed = true;
                }
            }
            Ok(reply) => tracing::warn!(
                range = range.id,
                refusal = %reply.refusal,
                "divergent replica not removed"
            ),
            Err(error) => tracing::warn!(range = range.id, %error, "divergent replica not removed"),
        }
    }

    /// The checksum `member`'s replica of `range` computed at `index`, asked until it has
    /// applied it or the deadline passes.
    async fn checksum_of(
        &self,
        range: u64,
        member: u64,
        index: u64,
        deadline: Instant,
    ) -> Result<Vec<u8>, String> {
        loop {
            let status = if member == self.me() {
                self.groups
                    .get(range)
                    .map(|g| g.status())
                    .ok_or_else(|| "no replica here".to_owned())
            } else {
                match self.peer_url(member) {
                    None => Err("member unknown".to_owned()),
                    Some(url) => self
                        .peers
                        .range_status(&url, range, Duration::from_secs(1))
                        .await
                        .map_err(|e| e.to_string()),
                }
            };
            match status {
                Ok(status) => {
                    if let Some(sum) = status.checksums.iter().find(|c| c.index == index) {
                        return Ok(sum.sha256.clone());
                    }
                    if status.applied >= index {
                        return Err(format!(
                            "applied past index {index} without its checksum (restarted or \
                             took a snapshot since)"
                        ));
                    }
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "had applied only up to index {} of {index}",
                            status.applied
                        ));
                    }
                }
                Err(why) if Instant::now() >= deadline => return Err(why),
                Err(_) => {}
            }
            tokio::time::sleep(CHECKSUM_POLL).await;
        }
    }
}

fn served_text(served: &Served) -> String {
    match served {
        Served::Written(written) => format!("{:?}", written.outcome),
        Served::Read(_) => "answered by a read".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::divergent;
    use std::collections::BTreeMap;

    fn sums(pairs: &[(u64, &[u8])]) -> BTreeMap<u64, Vec<u8>> {
        pairs.iter().map(|(m, s)| (*m, s.to_vec())).collect()
    }

    #[test]
    fn only_a_quorum_that_agrees_gets_a_divergent_replica_rebuilt() {
        use super::to_rebuild;
        assert_eq!(
            to_rebuild(&sums(&[(1, b"a"), (2, b"b"), (3, b"a")]), 3),
            vec![2]
        );
        // Two of five agree: no quorum vouches for their state.
        assert!(to_rebuild(&sums(&[(1, b"a"), (2, b"b"), (3, b"a")]), 5).is_empty());
        assert!(to_rebuild(&sums(&[(1, b"a"), (2, b"b")]), 3).is_empty());
        assert!(to_rebuild(&sums(&[(1, b"a"), (2, b"a"), (3, b"a")]), 3).is_empty());
    }

    #[test]
    fn the_replica_that_differs_from_the_majority_is_divergent() {
        assert!(divergent(&sums(&[(1, b"a"), (2, b"a"), (3, b"a")])).is_empty());
        assert_eq!(
            divergent(&sums(&[(1, b"a"), (2, b"b"), (3, b"a")])),
            vec![2]
        );
        // No majority: every answering replica is suspect.
        assert_eq!(divergent(&sums(&[(1, b"a"), (2, b"b")])), vec![1, 2]);
        assert!(divergent(&sums(&[(1, b"a")])).is_empty());
    }
}
