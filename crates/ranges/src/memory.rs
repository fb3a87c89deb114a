//! A range replica whose versions are in memory: a `RangeMachine` with its own ordered map as
//! the store. What the range simulation runs and the rules' tests use; a member keeps its
//! replicas' versions in its storage engine instead, through the same code.

use std::collections::BTreeMap;

use base::HlcTimestamp;
use versioned::Version;

use crate::machine::{FrozenRange, Outcome, RangeCommand, RangeMachine, RequestId};
use crate::state::{RangeOpError, RangeState, ScanPart};

/// An ordered map of stored versions (`versioned::stored`'s entries).
pub type MemStore = BTreeMap<Vec<u8>, Vec<u8>>;

/// A range replica in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemRange {
    machine: RangeMachine,
    store: MemStore,
}

/// A memory store fails only on bytes it was never given.
const INFALLIBLE: &str = "a memory store holds only versions it was given";

impl MemRange {
    pub fn new(state: RangeState) -> MemRange {
        MemRange {
            machine: RangeMachine::new(state),
            store: MemStore::new(),
        }
    }

    pub fn machine(&self) -> &RangeMachine {
        &self.machine
    }

    pub fn state(&self) -> &RangeState {
        self.machine.state()
    }

    pub fn applied(&self) -> u64 {
        self.machine.applied()
    }

    /// Applies the command at log `index`.
    pub fn apply(
        &mut self,
        index: u64,
        request: Option<RequestId>,
        command: RangeCommand,
    ) -> Outcome {
        let outcome = self
            .machine
            .apply(&mut self.store, index, request, command)
            .expect(INFALLIBLE);
        self.machine.take_changed_sessions();
        outcome
    }

    /// See `RangeMachine::would_change`.
    pub fn would_change(&self, command: &RangeCommand) -> Result<bool, RangeOpError> {
        self.machine.would_change(command)
    }

    /// The right half of a split this replica applied (`Outcome::Split`), on the same store:
    /// the new range's replica on this member.
    pub fn half(&self, right: RangeMachine) -> MemRange {
        MemRange {
            machine: right,
            store: self.store.clone(),
        }
    }

    /// This range as a merge takes it (it should be frozen).
    pub fn frozen(&self) -> FrozenRange {
        FrozenRange {
            machine: self.machine.clone(),
            versions: self.state().list(&self.store).expect(INFALLIBLE),
        }
    }

    pub fn get(&self, key: &[u8], ts: HlcTimestamp) -> Result<Option<Version>, RangeOpError> {
        self.state().get(&self.store, key, ts).expect(INFALLIBLE)
    }

    pub fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        ts: HlcTimestamp,
        limit: usize,
    ) -> Result<ScanPart, RangeOpError> {
        self.state()
            .scan(&self.store, from, to, ts, limit)
            .expect(INFALLIBLE)
    }

    pub fn newest(&self, key: &[u8]) -> Option<HlcTimestamp> {
        self.state().newest(&self.store, key).expect(INFALLIBLE)
    }

    pub fn middle_key(&self) -> Option<Vec<u8>> {
        self.state().middle_key(&self.store).expect(INFALLIBLE)
    }
}
