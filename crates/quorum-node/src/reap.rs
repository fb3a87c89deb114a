//! Tombstone reaping: a deleted key's entry (its tombstones and causal context) goes once the
//! delete is older than the grace period and every replica of the key answers with the same
//! delete (or no entry). A replica that does not answer, or answers with a copy that lacks the
//! delete, keeps the entry everywhere — the lagging one gets the delete and the next round
//! tries again — so a stale copy of a deleted value never finds a replica without the delete.
//!
//! Dropping the context would let this member reuse one of its own dots for the key, which a
//! replica that still holds the tombstone has seen and would drop as superseded. So before an
//! entry goes, the member raises a durable floor above its own counter in that context, and a
//! write to a key it holds no entry for starts its dot above the floor.

use std::time::Duration;

use base::HlcTimestamp;

use super::handoff::{Held, held_buckets};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crdt::Object;
use placement::Ring;
use storage::{Change, Slot, StorageError};

use crate::{Every, MergeCall, QuorumNode, ring_of};

/// The meta value holding the reaped counter floor (a big-endian u64).
pub(super) const FLOOR: &str = "reaped_counter_floor";

pub(super) fn decode_floor(bytes: &[u8]) -> Result<u64, StorageError> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| StorageError::Corrupt {
        what: "reaped counter floor".into(),
        detail: format!("{} bytes, 8 expected", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

impl QuorumNode {
    /// Reaps tombstones older than the grace period until `stop` turns true, looking a few
    /// times per grace period (at least every minute, at most four times a second).
    pub async fn reap_tombstones(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let period =
            (self.tombstone_grace / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
        let mut every = Every::new(period, stop);
        while every.tick().await {
            match self.reap_round().await {
                Ok(0) => {}
                Ok(reaped) => tracing::info!(reaped, "quorum: reaped tombstones"),
                Err(error) => tracing::warn!(%error, "quorum: tombstone reaping failed"),
            }
        }
    }

    /// One pass over this member's objects; returns how many entries went. Nothing is reaped
    /// during a ring change (the streams carry entries between members).
    async fn reap_round(self: &Arc<Self>) -> Result<u64, String> {
        let topology = self.replica.topology();
        if topology.ring.is_empty() || topology.pending.is_some() {
            return Ok(0);
        }
        let ring = ring_of(&topology).map_err(|e| e.to_string())?;
        let buckets = held_buckets(&topology);
        let grace = u64::try_from(self.tombstone_grace.as_micros()).unwrap_or(u64::MAX);
        let Some(before) = self.clock.physical_micros().checked_sub(grace) else {
            return Ok(0);
        };
        let older_than = HlcTimestamp {
            physical: before,
            logical: 0,
        };
        let mut reaped = 0;
        let mut pages = self.pages();
        while let Some(page) = pages.next().await? {
            for stored in page {
                let Some(held) = buckets.get(&stored.bucket) else {
                    continue;
                };
                let Ok(object) = crdt::codec::decode_object(&stored.object) else {
                    continue; // refused (and reported) when a request reads it
                };
                if quorum::reap::reapable(&object, older_than)
                    && self
                        .reap_one(&ring, held, stored, object, topology.epoch)
                        .await?
                {
                    reaped += 1;
                }
            }
        }
        Ok(reaped)
    }

    /// Reaps one entry if every other replica holds the same delete or nothing; repairs a
    /// replica that lacks the delete instead (`quorum::reap::decide`). Returns whether the
    /// entry went.
    async fn reap_one(
        self: &Arc<Self>,
        ring: &Ring,
        held: &Held,
        stored: storage::StoredObject,
        object: Object,
        epoch: u64,
    ) -> Result<bool, String> {
        let me = self.me();
        let token = placement::key_token(&stored.bucket, &stored.key);
        let mut answers = Vec::new();
        for member in ring.preference_list(token, held.n) {
            if member == me {
                continue;
            }
            let copy = self
                .clone()
                .read_at(
                    member,
                    stored.bucket.clone(),
                    stored.key.clone(),
                    epoch,
                    self.request_timeout,
                )
                .await;
            answers.push((member, copy));
        }
        let floor = match quorum::reap::decide(me, &object, &answers) {
            quorum::reap::Reap::Remove { floor } => floor,
            quorum::reap::Reap::Keep { repair } => {
                for member in repair {
                    let call = MergeCall {
                        bucket: stored.bucket.clone(),
                        key: stored.key.clone(),
                        object: object.clone(),
                        conflicts: held.conflicts,
                        epoch,
                        handoff: false,
                    };
                    let _ = self
                        .clone()
                        .merge_at(member, call, self.request_timeout)
                        .await;
                }
                return Ok(false);
            }
        };
        self.raise_reaped_floor(floor).await?;
        let slot = Slot::Object {
            bucket: stored.bucket,
            key: stored.key,
        };
        // A write that arrived since the scan keeps the entry.
        let removed = self
            .writer
            .write(slot, storage::remove_if_unchanged(stored.object))
            .await;
        let gone = matches!(removed, Ok(Ok((_, None))));
        if gone {
            self.reaped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(gone)
    }

    /// Makes the reaped counter floor at least `counter`, durably, before an entry holding it
    /// goes.
    async fn raise_reaped_floor(&self, counter: u64) -> Result<(), String> {
        if counter <= self.reaped_floor.load(Ordering::Acquire) {
            return Ok(());
        }
        let change: Change = Box::new(move |old| {
            let old = match old {
                Some(bytes) => decode_floor(bytes).map_err(|e| e.to_string())?,
                None => 0,
            };
            Ok(Some(old.max(counter).to_be_bytes().to_vec()))
        });
        match self.writer.write(Slot::Meta { name: FLOOR }, change).await {
            Ok(Ok((_, Some(bytes)))) => {
                let floor = decode_floor(&bytes).map_err(|e| e.to_string())?;
                self.reaped_floor.fetch_max(floor, Ordering::AcqRel);
                Ok(())
            }
            Ok(Ok((_, None))) => Err("the reaped counter floor was not stored".to_owned()),
            Ok(Err(refusal)) => Err(format!("reaped counter floor: {refusal}")),
            Err(error) => Err(format!("reaped counter floor: {error}")),
        }
    }
}
