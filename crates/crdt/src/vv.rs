//! Dots and version vectors: which writes a replica or a client has seen, and how two such
//! histories relate. Pure value types; nothing here knows about values or timestamps.

use std::collections::BTreeMap;
use std::fmt;

/// One write, named by the replica that coordinated it (`actor`) and that replica's count of
/// writes to the key so far (`counter`, starting at 1).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dot {
    /// The id of the replica that coordinated the write.
    pub actor: u64,
    /// The coordinator's count of writes to the key, this one included; at least 1.
    pub counter: u64,
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}:{}", self.actor, self.counter)
    }
}

/// How two version vectors relate.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Causality {
    /// Both have seen exactly the same writes.
    Equal,
    /// The left side has seen a strict subset of the right side's writes.
    Before,
    /// The left side has seen a strict superset of the right side's writes.
    After,
    /// Each side has seen a write the other has not.
    Concurrent,
}

/// A set of dots closed downwards per actor: `actor -> n` stands for the dots `(actor, 1..=n)`.
/// Entries with counter 0 are never stored, so equal sets are equal values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VersionVector {
    pub(crate) entries: BTreeMap<u64, u64>,
}

impl VersionVector {
    /// Returns the empty vector: nothing seen.
    pub fn new() -> VersionVector {
        VersionVector::default()
    }

    /// Returns the highest counter seen from `actor` (0 when none).
    pub fn get(&self, actor: u64) -> u64 {
        self.entries.get(&actor).copied().unwrap_or(0)
    }

    /// Returns whether the write `dot` is among the writes this vector has seen.
    pub fn covers(&self, dot: &Dot) -> bool {
        self.get(dot.actor) >= dot.counter
    }

    /// Records `dot` (and with it every earlier dot of its actor) as seen.
    pub fn add_dot(&mut self, dot: &Dot) {
        if dot.counter > self.get(dot.actor) {
            self.entries.insert(dot.actor, dot.counter);
        }
    }

    /// Records everything `other` has seen: the pointwise maximum.
    pub fn join(&mut self, other: &VersionVector) {
        for (&actor, &counter) in &other.entries {
            self.add_dot(&Dot { actor, counter });
        }
    }

    /// Returns whether this vector has seen every write `other` has (pointwise `>=`).
    pub fn descends(&self, other: &VersionVector) -> bool {
        other
            .entries
            .iter()
            .all(|(&actor, &counter)| self.get(actor) >= counter)
    }

    /// Returns how this vector relates to `other` (`Before`: `other` strictly descends it).
    pub fn compare(&self, other: &VersionVector) -> Causality {
        match (self.descends(other), other.descends(self)) {
            (true, true) => Causality::Equal,
            (true, false) => Causality::After,
            (false, true) => Causality::Before,
            (false, false) => Causality::Concurrent,
        }
    }

    /// Returns whether nothing has been seen.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the `(actor, counter)` entries in ascending actor order, zeros omitted.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.entries
            .iter()
            .map(|(&actor, &counter)| (actor, counter))
    }

    /// Returns this vector with every counter lowered to at most `max`.
    pub(crate) fn clamped(&self, max: u64) -> VersionVector {
        let entries = self
            .entries
            .iter()
            .map(|(&actor, &counter)| (actor, counter.min(max)))
            .collect();
        VersionVector { entries }
    }
}

impl FromIterator<Dot> for VersionVector {
    /// Returns the smallest vector covering every given dot.
    fn from_iter<I: IntoIterator<Item = Dot>>(dots: I) -> VersionVector {
        let mut vv = VersionVector::new();
        for dot in dots {
            vv.add_dot(&dot);
        }
        vv
    }
}
