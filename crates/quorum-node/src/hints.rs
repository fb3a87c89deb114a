//! Hinted handoff on one member: keeping a hint for a replica that did not take a write
//! (within the hint book's bound per target), and delivering held hints every
//! `HINT_DELIVERY_INTERVAL` — each merged into its target's copy (or, when the ring moved the
//! key, into every current owner's), then removed here if unchanged. The accounting and where
//! a hint goes are `quorum::HintBook`'s and `quorum::delivery_targets`'s.

use quorum::ReplicaError;

use std::sync::Arc;

use base::NodeId;
use base::limits::{HINT_DELIVERY_BATCH, HINT_DELIVERY_INTERVAL};
use crdt::{Conflicts, Object};
use quorum::Plan;
use storage::{Change, Slot};

use crate::{Every, MergeCall, QuorumNode, decode_stored};

impl QuorumNode {
    /// Delivers held hints every `HINT_DELIVERY_INTERVAL` until `stop` turns true.
    pub async fn deliver_hints(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let mut every = Every::new(HINT_DELIVERY_INTERVAL, stop);
        while every.tick().await {
            let targets = self.hints.lock().expect("hint book poisoned").targets();
            for target in targets {
                self.deliver_to(target).await;
            }
        }
    }

    /// One delivery round to `target`: each hint is merged into the target's copy, then
    /// removed here; the round stops at the first failure (the target is still away).
    async fn deliver_to(self: &Arc<Self>, target: NodeId) {
        let node = self.clone();
        let hints = match tokio::task::spawn_blocking(move || {
            node.store.hints_for(target.0, HINT_DELIVERY_BATCH)
        })
        .await
        {
            Ok(Ok(hints)) => hints,
            Ok(Err(error)) => {
                tracing::error!(%error, %target, "quorum: reading hints failed");
                return;
            }
            Err(_) => return,
        };
        for hint in hints {
            let object = match crdt::codec::decode_object(&hint.object) {
                Ok(object) => object,
                Err(error) => {
                    tracing::error!(%error, %target, "quorum: a hint does not decode; dropped");
                    self.forget_hint(hint, false).await;
                    continue;
                }
            };
            let Ok(placed) = self.place(&hint.bucket, &hint.key) else {
                // The bucket was deleted (or the ring is gone): nothing to hand over.
                self.forget_hint(hint, false).await;
                continue;
            };
            let call = MergeCall {
                bucket: hint.bucket.clone(),
                key: hint.key.clone(),
                object,
                conflicts: placed.def.conflicts,
                epoch: placed.plan.epoch,
                handoff: false,
            };
            match self.deliver_hint(target, &placed.plan, call).await {
                Ok(()) => self.forget_hint(hint, true).await,
                Err(why) => {
                    tracing::debug!(%target, %why, "quorum: hint delivery waits");
                    return;
                }
            }
        }
    }

    /// Hands one hint over to where `quorum::delivery_targets` says, all of which must take
    /// it. The delivery is placed (and fenced) at the ring epoch of `plan`, so it never lands
    /// on a member that has cleaned up after a newer ring; refused, it waits for the next round.
    async fn deliver_hint(
        self: &Arc<Self>,
        target: NodeId,
        plan: &Plan,
        call: MergeCall,
    ) -> Result<(), ReplicaError> {
        for member in quorum::delivery_targets(plan, target) {
            self.clone()
                .merge_at(member, call.clone(), self.request_timeout)
                .await?;
        }
        Ok(())
    }

    /// Removes a hint (if unchanged since read) through the writer and accounts for it.
    async fn forget_hint(&self, hint: storage::Hint, delivered: bool) {
        let size = hint.object.len() as u64;
        let target = NodeId(hint.target);
        let change = storage::remove_if_unchanged(hint.object.clone());
        let removed = self.writer.write(hint.slot(), change).await;
        if let Ok(Ok((_, None))) = removed {
            let mut book = self.hints.lock().expect("hint book poisoned");
            book.removed(target, size, delivered);
        }
    }

    /// Keeps `object` as a hint for `target`, merged with any hint already held for the key.
    /// Returns false (and counts a drop) when the target's hint bound is full: the write is
    /// then left to read repair, and no client write fails because of it.
    pub(super) async fn store_hint(
        self: &Arc<Self>,
        target: NodeId,
        bucket: String,
        key: Vec<u8>,
        object: Object,
        conflicts: Conflicts,
    ) -> Result<bool, ReplicaError> {
        let encoded = crdt::codec::encode_object(&object);
        let admitted = self
            .hints
            .lock()
            .expect("hint book poisoned")
            .admit(target, encoded.len() as u64);
        if !admitted {
            tracing::debug!(%target, "quorum: hint bound full; hint dropped");
            return Ok(false);
        }
        let slot = Slot::Hint {
            target: target.0,
            bucket,
            key,
        };
        let change: Change = Box::new(move |old| {
            let old = old.map(decode_stored).transpose()?;
            let hint = quorum::replica::merge(old, &object, conflicts);
            Ok(Some(crdt::codec::encode_object(&hint)))
        });
        let (old, new) = self.apply(slot, change).await?;
        let new = new.map_or(0, |bytes| bytes.len() as u64);
        self.hints
            .lock()
            .expect("hint book poisoned")
            .stored(target, old, new);
        Ok(true)
    }
}
