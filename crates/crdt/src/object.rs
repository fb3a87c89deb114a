//! The state of one key on one replica: the writes it has seen (a version vector) and the
//! writes still standing (siblings, each named by its dot). Owns the update rule a coordinator
//! applies, the merge rule replicas sync by, and tombstone pruning. Pure: timestamps come in
//! as arguments, never from a clock.

use base::HlcTimestamp;

use crate::vv::{Dot, VersionVector};

pub use base::limits::CLAIMED_COUNTER_MAX;

/// One write still standing: its dot, the coordinator's timestamp and the value (`None` is a
/// tombstone, the trace of a delete).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sibling {
    /// The write's name, unique across replicas.
    pub dot: Dot,
    /// When the coordinator took the write, by its hybrid logical clock.
    pub timestamp: HlcTimestamp,
    /// The value written, or `None` for a delete.
    pub value: Option<Vec<u8>>,
}

impl Sibling {
    /// Returns whether this sibling records a delete.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Returns the order last-writer-wins picks by: timestamp, then actor, then counter, so
    /// every replica picks the same winner even for equal timestamps.
    fn lww_rank(&self) -> (HlcTimestamp, u64, u64) {
        (self.timestamp, self.dot.actor, self.dot.counter)
    }
}

/// How a bucket resolves concurrent writes to one key.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Conflicts {
    /// Keep every concurrent write as a sibling; the next write that read them replaces them.
    Siblings,
    /// Keep only the write with the greatest (timestamp, actor, counter). Concurrent writes
    /// with smaller timestamps are lost by design, and so is a causally later write whose
    /// coordinator's clock ran behind.
    Lww,
}

/// The state of one key on one replica.
///
/// Invariants, kept by every method and checked by the decoder: `siblings` is sorted by dot
/// without duplicates (so equal states are `==`), and every sibling's dot is covered by
/// `context`. The fields are public for reading; build states through [`Object::update`],
/// [`Object::merge`] and the codec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Object {
    /// Every write this replica has seen for the key, standing or superseded.
    pub context: VersionVector,
    /// The writes still standing, sorted by dot.
    pub siblings: Vec<Sibling>,
}

impl Object {
    /// Returns the state of a key nothing is known about.
    pub fn new() -> Object {
        Object::default()
    }

    /// Applies a write coordinated by `actor` whose client had read `context`, and returns the
    /// new write's dot.
    ///
    /// The dot's counter is one past the larger of this replica's and the context's counter for
    /// `actor`, so a replica that lost its state cannot reuse a dot a client has seen.
    ///
    /// With [`Conflicts::Siblings`] the write removes exactly the siblings `context` covers
    /// (the client saw them) and joins `context` into this replica's, so those writes stay
    /// superseded when they arrive again from elsewhere. Siblings the client did not see stay.
    ///
    /// With [`Conflicts::Lww`] the write competes with the standing sibling on
    /// (timestamp, actor, counter) and only the greater stays; the client's context picks the
    /// counter but is not joined. Joining it would let a write with a smaller timestamp
    /// supersede a greater one here but not elsewhere, and then the merge result would depend
    /// on merge order (the test `lww_merge_order_does_not_matter_when_a_later_write_has_an_
    /// earlier_clock` is that case).
    pub fn update(
        &mut self,
        context: &VersionVector,
        actor: u64,
        timestamp: HlcTimestamp,
        value: Option<Vec<u8>>,
        conflicts: Conflicts,
    ) -> Dot {
        let context = context.clamped(CLAIMED_COUNTER_MAX);
        // Saturating only matters for corrupt stored counters near u64::MAX; honest and
        // clamped ones cannot get there.
        let counter = self
            .context
            .get(actor)
            .max(context.get(actor))
            .saturating_add(1);
        let dot = Dot { actor, counter };
        if conflicts == Conflicts::Siblings {
            self.siblings
                .retain(|sibling| !context.covers(&sibling.dot));
            self.context.join(&context);
        }
        self.context.add_dot(&dot);
        let sibling = Sibling {
            dot,
            timestamp,
            value,
        };
        match self.siblings.binary_search_by_key(&dot, |s| s.dot) {
            Ok(at) => self.siblings[at] = sibling,
            Err(at) => self.siblings.insert(at, sibling),
        }
        if conflicts == Conflicts::Lww {
            self.keep_last_writer();
        }
        dot
    }

    /// Takes in the state another replica holds for the same key.
    ///
    /// A sibling of this state stays unless `other` has seen its write without keeping it
    /// (someone superseded it); a sibling of `other` is added unless this state has seen its
    /// write already. Contexts join. The result does not depend on merge order or repetition.
    pub fn merge(&mut self, other: &Object, conflicts: Conflicts) {
        let holds = |object: &Object, dot: &Dot| object.siblings.iter().any(|s| s.dot == *dot);
        let mut siblings: Vec<Sibling> = std::mem::take(&mut self.siblings)
            .into_iter()
            .filter(|s| holds(other, &s.dot) || !other.context.covers(&s.dot))
            .collect();
        for sibling in &other.siblings {
            let known =
                self.context.covers(&sibling.dot) || siblings.iter().any(|s| s.dot == sibling.dot);
            if !known {
                siblings.push(sibling.clone());
            }
        }
        siblings.sort_by_key(|s| s.dot);
        self.siblings = siblings;
        self.context.join(&other.context);
        if conflicts == Conflicts::Lww {
            self.keep_last_writer();
        }
    }

    /// Keeps only the sibling with the greatest (timestamp, actor, counter).
    fn keep_last_writer(&mut self) {
        if let Some(winner) = self.siblings.iter().max_by_key(|s| s.lww_rank()) {
            self.siblings = vec![winner.clone()];
        }
    }

    /// Returns the standing siblings that hold a value (not tombstones), in dot order.
    pub fn live_values(&self) -> Vec<&Sibling> {
        self.siblings.iter().filter(|s| !s.is_tombstone()).collect()
    }

    /// Returns whether the key reads as absent: no standing sibling holds a value.
    pub fn is_deleted(&self) -> bool {
        self.siblings.iter().all(Sibling::is_tombstone)
    }

    /// Returns the dots of the standing siblings, in order.
    pub fn dots(&self) -> impl Iterator<Item = Dot> + '_ {
        self.siblings.iter().map(|s| s.dot)
    }

    /// Returns whether merging `other` into this state would leave it unchanged, that is this
    /// replica has nothing to learn from `other` (read repair skips it).
    pub fn supersedes_or_equals(&self, other: &Object) -> bool {
        let holds = |object: &Object, dot: &Dot| object.siblings.iter().any(|s| s.dot == *dot);
        self.context.descends(&other.context)
            && self
                .siblings
                .iter()
                .all(|s| holds(other, &s.dot) || !other.context.covers(&s.dot))
            && other
                .siblings
                .iter()
                .all(|s| self.context.covers(&s.dot) || holds(self, &s.dot))
    }

    /// Drops the siblings when every one is a tombstone written before `older_than`, and
    /// returns whether no sibling is left (the key's entry can go).
    ///
    /// The context stays: it is what stops another replica's older copy of a deleted value
    /// from coming back on merge. A caller that drops the whole entry must be sure every
    /// replica has pruned (or seen the delete) first; the grace period behind `older_than`
    /// is that assurance, and a replica partitioned for longer can resurrect the value. In LWW
    /// buckets the same premise also keeps merges order-independent: a pruned copy racing an
    /// unseen older write can otherwise decide the key differently by merge order.
    pub fn prune_tombstones(&mut self, older_than: HlcTimestamp) -> bool {
        if self
            .siblings
            .iter()
            .all(|s| s.is_tombstone() && s.timestamp < older_than)
        {
            self.siblings.clear();
        }
        self.siblings.is_empty()
    }
}
