//! Reads of one range: linearizable on the leader (ReadIndex, then the local state once
//! applied up to it), follower reads on any replica at its closed timestamp.

use super::*;
use crate::range::machine::View;

impl RangeGroup {
    /// Reads the range: on the leader after confirming its leadership with a quorum and
    /// applying up to the read index (linearizable); a follower read on any replica at its
    /// closed timestamp (`follower_read`).
    pub async fn read(&self, read: pb::RangeRead) -> Result<pb::RangeCallResponse, EtcdError> {
        if read.follower {
            return self.follower_read(&read);
        }
        self.record_load(&read.from);
        self.active_since_close.store(true, Ordering::Release);
        self.activity();
        let confirmed = tokio::time::timeout(
            self.request_timeout,
            self.raft.ensure_linearizable(ReadPolicy::ReadIndex),
        )
        .await;
        match confirmed {
            Err(_) => return Err(EtcdError::Timeout),
            Ok(Ok(_)) => {}
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_)))) => {
                return Ok(self.not_leader());
            }
            Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)))) => {
                return Err(EtcdError::NoLeader);
            }
            Ok(Err(RaftError::Fatal(_))) => return Err(EtcdError::Stopped),
        }
        self.machine
            .read_data(|machine, bucket, view| {
                self.serve_read(machine.state(), bucket, view, &read, NEWEST)
            })
            .map_err(internal)?
    }

    /// A follower read, on this replica whatever its role, as `ranges::follower_read`
    /// decides: at the range's closed timestamp when that is at most `max_staleness_ms` old
    /// by this member's clock; refused with `too_stale` otherwise (the caller reads from the
    /// leader instead), and by a replica still waiting for its first snapshot.
    fn follower_read(&self, read: &pb::RangeRead) -> Result<pb::RangeCallResponse, EtcdError> {
        let awaiting = self.awaiting_snapshot.load(Ordering::Acquire);
        #[cfg(feature = "canary")]
        let staleness = if self.canary == Some(crate::Canary::FollowerReadUnbounded) {
            u32::MAX // The planted bug: no bound.
        } else {
            read.max_staleness_ms
        };
        #[cfg(not(feature = "canary"))]
        let staleness = read.max_staleness_ms;
        let now = self.clock.physical_micros();
        let served = self.machine.read_data(|machine, bucket, view| {
            let state = machine.state();
            match ranges::follower_read(awaiting, state.closed(), now, staleness) {
                ranges::FollowerRead::At(at) => self.serve_read(state, bucket, view, read, at),
                ranges::FollowerRead::TooStale(closed) => Ok(refused(
                    pb::range_refusal::Why::TooStale(range_codec::ts_to_pb(closed)),
                )),
                ranges::FollowerRead::NoState => {
                    Ok(refused(pb::range_refusal::Why::NoReplica(self.range.0)))
                }
            }
        });
        served.map_err(internal).and_then(|served| served)
    }

    /// Serves `read` from `state` (its versions in `view`) at `at`.
    fn serve_read(
        &self,
        state: &RangeState,
        bucket: &str,
        view: &View,
        read: &pb::RangeRead,
        at: HlcTimestamp,
    ) -> Result<pb::RangeCallResponse, EtcdError> {
        let result = if read.scan {
            state
                .scan_bounded(
                    view,
                    &read.from,
                    read.to.as_deref(),
                    at,
                    read.limit as usize,
                    read.max_bytes,
                )
                .map_err(internal)?
                .map(|part| (part.entries, part.resume))
        } else {
            #[cfg(feature = "canary")]
            let found = if self.canary == Some(crate::Canary::SplitStaleRead)
                && !state.descriptor().contains(&read.from)
            {
                // The planted bug: a key split away reads as absent here.
                Ok(None)
            } else {
                state.get(view, &read.from, at).map_err(internal)?
            };
            #[cfg(not(feature = "canary"))]
            let found = state.get(view, &read.from, at).map_err(internal)?;
            found.map(|found| {
                (
                    found.map(|v| (read.from.clone(), v)).into_iter().collect(),
                    None,
                )
            })
        };
        Ok(match result {
            Ok((entries, resume)) => pb::RangeCallResponse {
                result: Some(pb::range_call_response::Result::Read(pb::RangeReadResult {
                    versions: entries
                        .into_iter()
                        .map(|(key, version)| pb::RangeVersion {
                            key,
                            value: version.value,
                            ts: Some(range_codec::ts_to_pb(version.ts)),
                        })
                        .collect(),
                    resume,
                    descriptor: Some(topology::descriptor_to_pb(bucket, state.descriptor())),
                })),
            },
            Err(error) => pb::RangeCallResponse {
                result: Some(pb::range_call_response::Result::Refused(
                    range_codec::refusal_to_pb(&error, bucket),
                )),
            },
        })
    }
}
