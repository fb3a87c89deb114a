//! Drives `quorum`'s write and read coordinators for one client request: turns each command
//! into a call to a replica (local or over the network) in a task of its own, bounded by the
//! request's deadline, and feeds each call's one answer back, with `Deadline` when the
//! request's time is up. The reply goes to the client as soon as the coordinator gives it;
//! the loop goes on in the background until the coordinator has no call outstanding
//! (replication to the remaining replicas, hints, background read repair). No decision is
//! made here.

use quorum::{
    Plan, ReadCommand, ReadCoordinator, ReadDone, ReadError, ReadInput, ReadSpec, ReplicaError,
    WriteCommand, WriteCoordinator, WriteDone, WriteInput, WriteSpec,
};
use tokio::sync::oneshot;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base::NodeId;
use base::limits::SUSPECT_REPLICA_TIMEOUT;
use crdt::VersionVector;
use proto::quorate::replica::v1 as replicapb;
use tokio::sync::mpsc;

use crate::{MergeCall, Placed, QuorumError, QuorumNode, conflicts_to_pb};
use quorum::{BucketDef, NotEnoughReplicas};

/// Inputs of one request's coordinator queued at most; every call task sends one, so a task
/// waits for room only while the loop is busy with another input.
const INPUT_QUEUE: usize = 64;
/// The shortest time a call gets: replication and hints that go on after the deadline still
/// get this long.
const CALL_TIMEOUT_MIN: Duration = Duration::from_millis(200);

impl QuorumNode {
    /// How long a call may take: what is left of the request's time (at least
    /// `CALL_TIMEOUT_MIN`), and no more than `SUSPECT_REPLICA_TIMEOUT` for a suspect.
    fn call_timeout(deadline: tokio::time::Instant, short: bool) -> Duration {
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(CALL_TIMEOUT_MIN);
        if short {
            left.min(SUSPECT_REPLICA_TIMEOUT)
        } else {
            left
        }
    }

    /// The members of `plan` this member suspects now.
    fn suspects_of(&self, plan: &Plan) -> BTreeSet<NodeId> {
        plan.replicas
            .iter()
            .chain(&plan.next)
            .copied()
            .filter(|m| self.suspects(*m))
            .collect()
    }

    /// Runs `call` in a task of its own, bounded by `timeout`, and sends its answer (as made
    /// by `answer`) to the coordinator's queue.
    fn spawn_call<T, I>(
        &self,
        inputs: &mpsc::Sender<I>,
        timeout: Duration,
        call: impl std::future::Future<Output = Result<T, ReplicaError>> + Send + 'static,
        answer: impl FnOnce(Result<T, ReplicaError>) -> I + Send + 'static,
    ) where
        T: Send + 'static,
        I: Send + 'static,
    {
        let inputs = inputs.clone();
        tokio::spawn(async move {
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(result) => result,
                Err(_) => Err(ReplicaError::Timeout),
            };
            let _ = inputs.send(answer(result)).await;
        });
    }

    /// After a stale-epoch refusal: waits for a newer ring and feeds the new placement, or
    /// `Deadline` when none came in time (or the key can no longer be placed).
    fn spawn_place_again<I: Send + 'static>(
        self: &Arc<Self>,
        inputs: &mpsc::Sender<I>,
        placed: (String, Vec<u8>, u64),
        deadline: tokio::time::Instant,
        to_input: impl FnOnce(Option<Plan>) -> I + Send + 'static,
    ) {
        let (node, inputs) = (self.clone(), inputs.clone());
        let (bucket, key, after_epoch) = placed;
        tokio::spawn(async move {
            let plan = if node.await_epoch_after(after_epoch, deadline).await {
                node.place(&bucket, &key).ok().map(|placed| placed.plan)
            } else {
                None
            };
            let _ = inputs.send(to_input(plan)).await;
        });
    }

    /// A put (a value) or a delete (`None`) of `key`, as `placed`, needing `w`
    /// acknowledgements by `deadline`.
    pub(super) async fn coordinate_write(
        self: &Arc<Self>,
        placed: Placed,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        context: VersionVector,
        w: usize,
        deadline: tokio::time::Instant,
    ) -> Result<WriteDone, QuorumError> {
        let spec = WriteSpec {
            me: self.me(),
            w,
            sloppy: placed.def.sloppy,
            suspects: self.suspects_of(&placed.plan),
        };
        let mut core = WriteCoordinator::new(spec, placed.plan);
        let (reply_tx, reply) = oneshot::channel();
        let node = self.clone();
        let def = placed.def;
        tokio::spawn(async move {
            let (inputs, mut queue) = mpsc::channel(INPUT_QUEUE);
            let mut reply_tx = Some(reply_tx);
            let mut commands = core.start();
            let mut deadline_fed = false;
            loop {
                for command in commands.drain(..) {
                    let reply = node
                        .write_command(command, &def, &key, &value, &context, &inputs, deadline);
                    // The coordinator replies once; the sender goes with it.
                    if let Some(reply) = reply
                        && let Some(tx) = reply_tx.take()
                    {
                        let _ = tx.send(reply);
                    }
                }
                if core.is_finished() {
                    break;
                }
                let input = tokio::select! {
                    _ = tokio::time::sleep_until(deadline), if !deadline_fed => {
                        deadline_fed = true;
                        WriteInput::Deadline
                    }
                    input = queue.recv() => input.expect("the loop holds a sender"),
                };
                commands = core.handle(input);
            }
        });
        match reply.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(shortfall)) => Err(shortfall.into()),
            Err(_) => Err(QuorumError::Internal(
                "the write's coordinator stopped".to_owned(),
            )),
        }
    }

    /// Carries out one write command; returns the reply when it is one.
    #[allow(clippy::too_many_arguments)]
    fn write_command(
        self: &Arc<Self>,
        command: WriteCommand,
        def: &BucketDef,
        key: &[u8],
        value: &Option<Vec<u8>>,
        context: &VersionVector,
        inputs: &mpsc::Sender<WriteInput>,
        deadline: tokio::time::Instant,
    ) -> Option<Result<WriteDone, NotEnoughReplicas>> {
        match command {
            WriteCommand::Coordinate {
                call,
                to,
                epoch,
                short,
            } => {
                let request = replicapb::CoordinateRequest {
                    bucket: def.name.clone(),
                    key: key.to_vec(),
                    value: value.clone(),
                    context: context.to_token(),
                    conflicts: conflicts_to_pb(def.conflicts),
                    epoch,
                };
                let timeout = Self::call_timeout(deadline, short);
                let (node, context, conflicts) = (self.clone(), context.clone(), def.conflicts);
                let task = async move {
                    node.coordinate_at(to, request, context, conflicts, timeout)
                        .await
                };
                self.spawn_call(inputs, timeout, task, move |result| match result {
                    Ok(object) => WriteInput::Coordinated { call, object },
                    Err(error) => WriteInput::Failed { call, error },
                });
            }
            WriteCommand::Merge {
                call,
                to,
                object,
                epoch,
                short,
            } => {
                let merge = MergeCall {
                    bucket: def.name.clone(),
                    key: key.to_vec(),
                    object,
                    conflicts: def.conflicts,
                    epoch,
                    handoff: false,
                };
                let timeout = Self::call_timeout(deadline, short);
                let task = self.clone().merge_at(to, merge, timeout);
                self.spawn_call(inputs, timeout, task, move |result| match result {
                    Ok(()) => WriteInput::Merged { call },
                    Err(error) => WriteInput::Failed { call, error },
                });
            }
            WriteCommand::Hint {
                call,
                at,
                target,
                object,
            } => {
                let timeout = Self::call_timeout(deadline, false);
                let (node, bucket, key) = (self.clone(), def.name.clone(), key.to_vec());
                let conflicts = def.conflicts;
                let task = async move {
                    node.hint_at(at, target, bucket, key, object, conflicts, timeout)
                        .await
                };
                self.spawn_call(inputs, timeout, task, move |result| match result {
                    Ok(stored) => WriteInput::Hinted { call, stored },
                    Err(error) => WriteInput::Failed { call, error },
                });
            }
            WriteCommand::KeepHint { target, object } => {
                let (node, bucket, key) = (self.clone(), def.name.clone(), key.to_vec());
                let conflicts = def.conflicts;
                tokio::spawn(async move {
                    if let Err(error) = node
                        .store_hint(target, bucket, key, object, conflicts)
                        .await
                    {
                        tracing::warn!(member = %target, %error, "quorum: keeping a hint failed");
                    }
                });
            }
            WriteCommand::PlaceAgain { after_epoch } => {
                let placed = (def.name.clone(), key.to_vec(), after_epoch);
                self.spawn_place_again(inputs, placed, deadline, |plan| match plan {
                    Some(plan) => WriteInput::Placed(plan),
                    None => WriteInput::Deadline,
                });
            }
            WriteCommand::Reply(reply) => return Some(reply),
        }
        None
    }

    /// A read of `key`, as `placed`, needing `r` answers by `deadline`; `monotonic` repairs
    /// the stale replicas it read before replying.
    pub(super) async fn coordinate_read(
        self: &Arc<Self>,
        placed: Placed,
        key: Vec<u8>,
        r: usize,
        monotonic: bool,
        deadline: tokio::time::Instant,
    ) -> Result<ReadDone, QuorumError> {
        let spec = ReadSpec {
            r,
            conflicts: placed.def.conflicts,
            repair_before_reply: monotonic,
        };
        let mut core = ReadCoordinator::new(spec, placed.plan);
        let (reply_tx, reply) = oneshot::channel();
        let node = self.clone();
        let def = placed.def;
        tokio::spawn(async move {
            let (inputs, mut queue) = mpsc::channel(INPUT_QUEUE);
            let mut reply_tx = Some(reply_tx);
            let mut commands = core.start();
            let mut deadline_fed = false;
            loop {
                for command in commands.drain(..) {
                    let reply = node.read_command(command, &def, &key, &inputs, deadline);
                    // The coordinator replies once; the sender goes with it.
                    if let Some(reply) = reply
                        && let Some(tx) = reply_tx.take()
                    {
                        let _ = tx.send(reply);
                    }
                }
                if core.is_finished() {
                    break;
                }
                let input = tokio::select! {
                    _ = tokio::time::sleep_until(deadline), if !deadline_fed => {
                        deadline_fed = true;
                        ReadInput::Deadline
                    }
                    input = queue.recv() => input.expect("the loop holds a sender"),
                };
                commands = core.handle(input);
            }
        });
        match reply.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(QuorumError::Internal(
                "the read's coordinator stopped".to_owned(),
            )),
        }
    }

    /// Carries out one read command; returns the reply when it is one.
    fn read_command(
        self: &Arc<Self>,
        command: ReadCommand,
        def: &BucketDef,
        key: &[u8],
        inputs: &mpsc::Sender<ReadInput>,
        deadline: tokio::time::Instant,
    ) -> Option<Result<ReadDone, ReadError>> {
        match command {
            ReadCommand::Read { call, to, epoch } => {
                let timeout = Self::call_timeout(deadline, false);
                let task = self
                    .clone()
                    .read_at(to, def.name.clone(), key.to_vec(), epoch, timeout);
                self.spawn_call(inputs, timeout, task, move |result| match result {
                    Ok(copy) => ReadInput::Copy { call, copy },
                    Err(error) => ReadInput::Failed { call, error },
                });
            }
            ReadCommand::Repair {
                call,
                to,
                object,
                epoch,
            } => {
                self.read_repairs.fetch_add(1, Ordering::Relaxed);
                let merge = MergeCall {
                    bucket: def.name.clone(),
                    key: key.to_vec(),
                    object,
                    conflicts: def.conflicts,
                    epoch,
                    handoff: false,
                };
                let timeout = Self::call_timeout(deadline, false);
                let task = self.clone().merge_at(to, merge, timeout);
                self.spawn_call(inputs, timeout, task, move |result| match result {
                    Ok(()) => ReadInput::Repaired { call },
                    Err(error) => {
                        tracing::debug!(member = %to, %error, "quorum: read repair failed");
                        ReadInput::Failed { call, error }
                    }
                });
            }
            ReadCommand::PlaceAgain { after_epoch } => {
                let placed = (def.name.clone(), key.to_vec(), after_epoch);
                self.spawn_place_again(inputs, placed, deadline, |plan| match plan {
                    Some(plan) => ReadInput::Placed(plan),
                    None => ReadInput::Deadline,
                });
            }
            ReadCommand::Reply(reply) => return Some(reply),
        }
        None
    }
}
