//! The group-committing writer of a member's quorum objects: every replica write, merge and
//! hint goes through one thread that drains what is queued and applies it in one durable
//! transaction (one fsync for the batch), then answers each caller. Concurrent writes to one
//! key apply in queue order, each to the result of the one before.

use std::sync::Arc;

use storage::{Change, ChangeOutcome, ObjectStore, Slot};
use tokio::sync::{mpsc, oneshot};

/// Writes queued at most; callers wait for room beyond it.
const QUEUE_MAX: usize = 4096;
/// Changes applied in one transaction at most.
const BATCH_MAX: usize = 1024;

struct Job {
    slot: Slot,
    change: Change,
    reply: oneshot::Sender<Result<ChangeOutcome, String>>,
}

/// The handle of the writer thread (which ends when the last handle is dropped).
pub struct ObjectWriter {
    queue: mpsc::Sender<Job>,
}

impl ObjectWriter {
    /// Starts the writer thread of `store`.
    pub fn start(store: Arc<ObjectStore>) -> std::io::Result<ObjectWriter> {
        let (queue, jobs) = mpsc::channel(QUEUE_MAX);
        std::thread::Builder::new()
            .name("quorum-objects".into())
            .spawn(move || writer_loop(&store, jobs))?;
        Ok(ObjectWriter { queue })
    }

    /// Applies `change` to `slot` durably. The outer error is a storage failure of the batch
    /// (the change is not durable); the inner one the change's own refusal.
    pub async fn write(&self, slot: Slot, change: Change) -> Result<ChangeOutcome, String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                slot,
                change,
                reply,
            })
            .await
            .map_err(|_| "the object writer stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the object writer stopped".to_owned())?
    }
}

fn writer_loop(store: &ObjectStore, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let changes = batch
            .into_iter()
            .map(|job| {
                replies.push(job.reply);
                (job.slot, job.change)
            })
            .collect();
        match store.write_changes(changes) {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::error!(%error, "quorum: an object batch was not stored");
                for reply in replies {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
        }
    }
}
