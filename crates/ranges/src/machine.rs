//! The state machine of one range's Raft group: what applying a committed command does to the
//! replica's `RangeState`, identically on every replica. Two rules make a command safe to
//! retry across leader changes, splits and moves:
//!
//! - **Sessions.** A command may carry a request id (client, sequence). Each range keeps, per
//!   client, the highest sequence applied and its outcome; a command whose sequence is not
//!   above that is not applied again — the same sequence gets the saved outcome, an older one
//!   `Duplicate`. A refused command changed nothing and is not remembered. A split copies the sessions to both halves and a merge unites them (keeping
//!   each client's highest), so a retry that lands on either range after the split is still
//!   recognised. Sessions are bounded: past `SESSIONS_MAX` the least recently used goes.
//! - **Timestamps.** A plain (non-transactional) write carries the leader's HLC reading but is
//!   applied at the first timestamp above the key's newest version, the GC threshold and the
//!   closed timestamp (`RangeCommand::Close`) if its own is not above them all, and the
//!   outcome says at which: the Raft order decides what the write follows, the timestamp only
//!   versions it, and every replica computes the same one.

use std::collections::{BTreeMap, BTreeSet};

use base::HlcTimestamp;

use versioned::OrderedStoreMut;

use crate::descriptor::{RangeDescriptor, RangeId};
use crate::state::{ListedVersion, RangeOpError, RangeState};

/// Client sessions a range remembers.
pub const SESSIONS_MAX: usize = 10_000;

/// Who sent a command, and which of its commands it is (sequences grow per client).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId {
    pub client: u64,
    pub sequence: u64,
}

/// A command of a range's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeCommand {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        ts: HlcTimestamp,
    },
    Delete {
        key: Vec<u8>,
        ts: HlcTimestamp,
    },
    /// The metadata committed this split; the range becomes `left`.
    Split {
        left: RangeDescriptor,
        right: RangeDescriptor,
    },
    /// The metadata committed a replica change.
    SetDescriptor(RangeDescriptor),
    /// Drop versions no read at or above `threshold` sees.
    Gc {
        threshold: HlcTimestamp,
    },
    /// The leader's promise: no write applied from here on is at or below `ts` (later writes
    /// are bumped above it), so replicas that applied it serve reads at `ts`.
    Close {
        ts: HlcTimestamp,
    },
    /// Freeze the range (at `generation`) for a merge into its left neighbour `into`.
    Freeze {
        generation: u64,
        into: RangeId,
    },
    /// The metadata committed this merge: the range becomes `merged`, taking `right`, its
    /// right neighbour's state frozen for it.
    Merge {
        merged: RangeDescriptor,
        right: Box<FrozenRange>,
    },
    /// Changes nothing: every replica checksums its state as of this entry (the replica
    /// consistency check), which the driver computes.
    Checksum,
}

/// What applying a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A write, applied at this timestamp.
    Written { ts: HlcTimestamp },
    /// A split; the right half's state starts the new range's group on this replica.
    Split { right: Box<RangeMachine> },
    /// A descriptor change or GC.
    Done,
    /// Refused; nothing changed.
    Refused(RangeOpError),
    /// A request applied before, with an older sequence than the client's last.
    Duplicate,
}

impl Outcome {
    /// Whether this outcome of a split or merge means the replica's state and its log
    /// disagree: the metadata committed the change, every replica applies it from the same
    /// log, and one newer than the state (older ones are `Done`, `already_applied`) that does
    /// not fit can only meet a state that is not the one the log was written for. The driver
    /// stops the replica rather than let it diverge silently.
    pub fn breaks_invariant(&self) -> bool {
        matches!(self, Outcome::Refused(RangeOpError::BadChange { .. }))
    }
}

/// A range frozen for a merge, as its left neighbour takes it: its machine (record and
/// sessions) and every version of its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrozenRange {
    pub machine: RangeMachine,
    pub versions: Vec<ListedVersion>,
}

/// One client's session: its last applied sequence, that command's outcome, and when it was
/// last used (the applied index), for eviction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub sequence: u64,
    pub outcome: Outcome,
    pub used: u64,
}

/// The state machine of one range on one replica: its record and client sessions (its
/// versions are in the store each `apply` is given).
#[derive(Clone, Debug)]
pub struct RangeMachine {
    state: RangeState,
    /// The last applied log index.
    applied: u64,
    sessions: BTreeMap<u64, Session>,
    /// (last use, client) of every session, for eviction in order of use.
    by_use: BTreeSet<(u64, u64)>,
    /// Clients whose session changed (or went) since `take_changed_sessions`: what the
    /// driver writes with the batch.
    changed: BTreeSet<u64>,
}

impl PartialEq for RangeMachine {
    fn eq(&self, other: &RangeMachine) -> bool {
        self.state == other.state
            && self.applied == other.applied
            && self.sessions == other.sessions
    }
}

impl Eq for RangeMachine {}

impl RangeMachine {
    pub fn new(state: RangeState) -> RangeMachine {
        RangeMachine {
            state,
            applied: 0,
            sessions: BTreeMap::new(),
            by_use: BTreeSet::new(),
            changed: BTreeSet::new(),
        }
    }

    pub fn state(&self) -> &RangeState {
        &self.state
    }

    /// The remembered sessions, by client: (client, sequence, outcome, last use), what a
    /// snapshot stores.
    pub fn sessions(&self) -> impl Iterator<Item = (u64, u64, &Outcome, u64)> + '_ {
        self.sessions
            .iter()
            .map(|(client, s)| (*client, s.sequence, &s.outcome, s.used))
    }

    /// A machine from a snapshot's parts: its state, last applied index and sessions
    /// (client, sequence, outcome, last use); beyond `SESSIONS_MAX` the least recently used
    /// are dropped, as they would have been.
    pub fn restore(
        state: RangeState,
        applied: u64,
        sessions: impl IntoIterator<Item = (u64, u64, Outcome, u64)>,
    ) -> RangeMachine {
        let mut machine = RangeMachine::new(state);
        machine.applied = applied;
        for (client, sequence, outcome, used) in sessions {
            machine.keep(
                client,
                Session {
                    sequence,
                    outcome,
                    used,
                },
            );
        }
        machine.changed.clear();
        machine
    }

    /// The sessions changed since the last call, by client (`None`: evicted), to store with
    /// the batch that changed them.
    pub fn take_changed_sessions(&mut self) -> Vec<(u64, Option<Session>)> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .map(|client| (client, self.sessions.get(&client).cloned()))
            .collect()
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Applies the command at log `index` (each index once, in order), the range's versions
    /// being in `store`. An error is the store's: the apply is then void (the caller drops the
    /// batch's transaction and stops the replica).
    pub fn apply<S: OrderedStoreMut>(
        &mut self,
        store: &mut S,
        index: u64,
        request: Option<RequestId>,
        command: RangeCommand,
    ) -> Result<Outcome, S::Error> {
        debug_assert!(index > self.applied, "entries apply once, in order");
        self.applied = index;
        if let Some(id) = request
            && let Some(session) = self.sessions.get_mut(&id.client)
        {
            if id.sequence < session.sequence {
                return Ok(Outcome::Duplicate);
            }
            if id.sequence == session.sequence {
                self.by_use.remove(&(session.used, id.client));
                self.by_use.insert((index, id.client));
                session.used = index;
                self.changed.insert(id.client);
                return Ok(session.outcome.clone());
            }
        }
        let outcome = self.execute(store, command)?;
        // A refused command changed nothing, so running it again is safe (and after a merge
        // the same request may well succeed); only effects are remembered.
        if let Some(id) = request
            && matches!(outcome, Outcome::Written { .. } | Outcome::Done)
        {
            self.remember(id, outcome.clone(), index);
        }
        Ok(outcome)
    }

    /// Whether `command`, proposed now, would apply as a change (a leader asks before
    /// proposing a split or merge, so a refusal on apply can only mean a broken invariant):
    /// `Ok(false)` when it is already applied, the refusal when it does not fit.
    pub fn would_change(&self, command: &RangeCommand) -> Result<bool, RangeOpError> {
        match command {
            RangeCommand::Split { left, .. } if self.already_applied(left.generation) => Ok(false),
            RangeCommand::Merge { merged, .. } if self.already_applied(merged.generation) => {
                Ok(false)
            }
            RangeCommand::Split { left, right } => {
                self.state.fits_split(left, right).map(|()| true)
            }
            RangeCommand::Merge { merged, right } => self
                .state
                .fits_merge(merged, &right.machine.state)
                .map(|()| true),
            _ => Ok(true),
        }
    }

    /// Whether a descriptor change for `generation` is already in this state: the state's
    /// generation is at or past it. The metadata orders each range's changes by generation, so
    /// a change the state is past is one applied before (a proposal retried by a driver or a
    /// new leader): applying it is no change, and answered `Done`.
    fn already_applied(&self, generation: u64) -> bool {
        self.state.descriptor().generation >= generation
    }

    fn execute<S: OrderedStoreMut>(
        &mut self,
        store: &mut S,
        command: RangeCommand,
    ) -> Result<Outcome, S::Error> {
        match &command {
            RangeCommand::Split { left, .. } if self.already_applied(left.generation) => {
                return Ok(Outcome::Done);
            }
            RangeCommand::Merge { merged, .. } if self.already_applied(merged.generation) => {
                return Ok(Outcome::Done);
            }
            RangeCommand::SetDescriptor(descriptor)
                if self.already_applied(descriptor.generation) =>
            {
                return Ok(Outcome::Done);
            }
            _ => {}
        }
        let result = match command {
            RangeCommand::Put { key, value, ts } => {
                let at = self.write_ts(store, &key, ts)?;
                self.state
                    .put(store, &key, at, &value)?
                    .map(|()| Outcome::Written { ts: at })
            }
            RangeCommand::Delete { key, ts } => {
                let at = self.write_ts(store, &key, ts)?;
                self.state
                    .delete(store, &key, at)?
                    .map(|()| Outcome::Written { ts: at })
            }
            RangeCommand::Split { left, right } => {
                self.state.split(store, left, right)?.map(|right| {
                    let mut half = RangeMachine {
                        state: right,
                        applied: 0,
                        sessions: self.sessions.clone(),
                        by_use: self.by_use.clone(),
                        changed: BTreeSet::new(),
                    };
                    // Every session is new to the right half's records.
                    half.changed = half.sessions.keys().copied().collect();
                    Outcome::Split {
                        right: Box::new(half),
                    }
                })
            }
            RangeCommand::SetDescriptor(descriptor) => self
                .state
                .set_descriptor(descriptor)
                .map(|()| Outcome::Done),
            RangeCommand::Gc { threshold } => {
                self.state.gc(store, threshold)?.map(|_| Outcome::Done)
            }
            RangeCommand::Close { ts } => {
                self.state.close(ts);
                Ok(Outcome::Done)
            }
            RangeCommand::Freeze { generation, into } => {
                self.state.freeze(generation, into).map(|()| Outcome::Done)
            }
            RangeCommand::Merge { merged, right } => {
                self.merge(store, merged, *right)?.map(|()| Outcome::Done)
            }
            RangeCommand::Checksum => Ok(Outcome::Done),
        };
        Ok(result.unwrap_or_else(Outcome::Refused))
    }

    /// The timestamp a plain write to `key` proposed at `proposed` applies at: above the
    /// key's newest version, the GC threshold and the closed timestamp.
    fn write_ts<S: OrderedStoreMut>(
        &self,
        store: &S,
        key: &[u8],
        proposed: HlcTimestamp,
    ) -> Result<HlcTimestamp, S::Error> {
        let floor = self
            .state
            .newest(store, key)?
            .max(Some(self.state.gc_threshold()))
            .max(Some(self.state.closed()));
        Ok(match floor {
            Some(floor) if floor >= proposed => floor.successor(),
            _ => proposed,
        })
    }

    fn remember(&mut self, id: RequestId, outcome: Outcome, index: u64) {
        let session = Session {
            sequence: id.sequence,
            outcome,
            used: index,
        };
        self.keep(id.client, session);
    }

    /// Stores `client`'s session (replacing its old one) and evicts the least recently used
    /// sessions beyond the bound.
    fn keep(&mut self, client: u64, session: Session) {
        let used = session.used;
        if let Some(old) = self.sessions.insert(client, session) {
            self.by_use.remove(&(old.used, client));
        }
        self.by_use.insert((used, client));
        self.changed.insert(client);
        while self.sessions.len() > SESSIONS_MAX {
            let (_, oldest) = self.by_use.pop_first().expect("one entry per session");
            self.sessions.remove(&oldest);
            self.changed.insert(oldest);
        }
    }

    /// Applies a committed merge: takes `right`'s versions and sessions (each client's
    /// highest); `right` must be frozen for this range.
    fn merge<S: OrderedStoreMut>(
        &mut self,
        store: &mut S,
        merged: RangeDescriptor,
        right: FrozenRange,
    ) -> Result<Result<(), RangeOpError>, S::Error> {
        if let Err(refused) =
            self.state
                .merge(store, merged, &right.machine.state, &right.versions)?
        {
            return Ok(Err(refused));
        }
        for (client, session) in right.machine.sessions {
            if self
                .sessions
                .get(&client)
                .is_some_and(|own| own.sequence >= session.sequence)
            {
                continue;
            }
            self.keep(client, session);
        }
        Ok(Ok(()))
    }
}
