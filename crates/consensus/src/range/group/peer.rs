//! A range replica's side of its group's Raft messages from peers: appends refused while the
//! replica waits for its leader's snapshot, votes, snapshots.

use super::*;

impl RangeGroup {
    /// Handles a peer's AppendEntries for this range (refused while this replica waits for
    /// the leader's snapshot).
    pub async fn handle_append(
        &self,
        request: pb::AppendEntriesRequest,
    ) -> Result<pb::AppendEntriesResponse, String> {
        let mut request = request;
        if self.awaiting_snapshot.load(Ordering::Acquire) && !request.entries.is_empty() {
            if !self.said_waiting.swap(true, Ordering::AcqRel) {
                tracing::info!(
                    range = self.range.0,
                    "range replica has no state here yet: waiting for its leader's snapshot"
                );
            }
            if request.prev_log_id.is_none() {
                return Err(format!(
                    "range {} has no state on this member yet: it needs a snapshot",
                    self.range.0
                ));
            }
            // Without the entries, openraft answers the conflict this empty log has with any
            // earlier entry: the leader searches back to its first entry and, once that is
            // purged, sends a snapshot (an error would make it retry the same entries).
            request.entries.clear();
        }
        self.heard_from_leader.store(true, Ordering::Release);
        crate::peer_messages::append(&self.raft, request).await
    }

    /// Handles a peer's (pre-)vote request for this range.
    pub async fn handle_vote(&self, request: pb::VoteRequest) -> Result<pb::VoteResponse, String> {
        crate::peer_messages::vote(&self.raft, request).await
    }

    /// Handles a snapshot of this range sent by its leader.
    pub async fn handle_snapshot(
        &self,
        vote: pb::Vote,
        meta: pb::SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<pb::SnapshotResponse, String> {
        self.heard_from_leader.store(true, Ordering::Release);
        self.vet_snapshot(&data)?;
        let response = crate::peer_messages::snapshot(&self.raft, vote, meta, data).await?;
        self.awaiting_snapshot.store(false, Ordering::Release);
        Ok(response)
    }

    /// Refuses a snapshot whose span another live replica on this member still holds (one
    /// that has not applied the split or move that ends its claim): both would write the same
    /// keys. The leader sends it again later, once that replica has shrunk or left.
    fn vet_snapshot(&self, data: &[u8]) -> Result<(), String> {
        let snapshot: pb::RangeSnapshotHead =
            crate::codec::decode(data, "range snapshot").map_err(|e| e.to_string())?;
        let Some(descriptor) = snapshot.descriptor else {
            return Err(format!(
                "range {}: a snapshot without a descriptor",
                self.range.0
            ));
        };
        match self.machine.files().overlapping(&descriptor) {
            Ok(None) => Ok(()),
            Ok(Some(other)) => {
                tracing::info!(
                    range = self.range.0,
                    other,
                    "range snapshot refused: another replica here still holds part of its span"
                );
                Err(format!(
                    "range {}: replica of range {other} on this member still holds part of the \
                     span; try later",
                    self.range.0
                ))
            }
            Err(error) => Err(error.to_string()),
        }
    }
}
