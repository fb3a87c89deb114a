//! Linearizability by the Wing–Gong search as improved by Lowe: operations become call and
//! return entries in one list ordered by time; the search repeatedly picks an operation whose
//! call precedes every pending return, applies it to the model and removes it, and
//! backtracks when it meets the return of an operation it has not placed. A cache of
//! (placed-set, model state) pairs already explored prunes the search (memoization), and
//! independent keys are searched separately (P-compositionality), so the cost is exponential
//! only in the concurrency on one key. The search is bounded by steps and cache entries; a
//! bound that runs out gives `Unknown`, never `Valid`.
//!
//! Operations with an unknown outcome have no return: they may be placed anywhere after their
//! call, including after everything (which means they never took effect).

use std::collections::HashSet;

use crate::history::{History, Operation};
use crate::model::Model;
use crate::verdict::{Anomaly, AnomalyKind, Report, Verdict};

/// Bounds of one search (per key).
#[derive(Copy, Clone, Debug)]
pub struct Budget {
    /// Search steps (entries visited) before the search gives up.
    pub steps_max: u64,
    /// Memoized configurations before the search gives up (each costs about the size of the
    /// model state plus one bit per operation on the key).
    pub cache_entries_max: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            steps_max: 50_000_000,
            cache_entries_max: 4_000_000,
        }
    }
}

/// How many placed operations the explanation of a failure lists.
const EXPLANATION_PREFIX_OPS: usize = 8;

/// Checks a history against `model`, key by key.
pub fn check_linearizable<M: Model>(model: &M, history: &History, budget: Budget) -> Report {
    let mut verdicts = Vec::new();
    let mut ops_checked = 0;
    let groups = history.by_key();
    for (key, ops) in &groups {
        let mut converted = Vec::new();
        let mut misfit = None;
        for op in ops {
            match model.convert(op) {
                Ok(Some(model_op)) => converted.push(((*op).clone(), model_op)),
                Ok(None) => {}
                Err(reason) => {
                    misfit = Some(format!(
                        "operation {} does not fit the model: {reason}",
                        op.describe()
                    ));
                    break;
                }
            }
        }
        // A key whose history does not fit the model cannot be judged at all.
        if let Some(reason) = misfit {
            verdicts.push(Verdict::Unknown(reason));
            continue;
        }
        ops_checked += converted.len();
        verdicts.push(search(model, key.as_deref(), &converted, budget));
    }
    Report {
        checker: model.name().to_owned(),
        verdict: Verdict::combine(verdicts),
        ops_checked,
        parts: groups.len(),
    }
}

/// A growable set of operation indices, hashable for the cache.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Self {
        Bits(vec![0; len.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// One entry of the list: the call or the return of operation `op`.
#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return entry.
    partner: usize,
}

/// The doubly linked list of entries, with a head sentinel at index `len`.
struct List {
    entries: Vec<Entry>,
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
}

const NIL: usize = usize::MAX;

impl List {
    /// Orders calls and returns by time; at equal times calls come first, so operations that
    /// touch at one instant count as concurrent (the lenient reading of a coarse clock).
    fn new(ops: &[Operation]) -> List {
        let mut timed: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            timed.push((op.call, 0, i));
            timed.push((op.ret.unwrap_or(u64::MAX), 1, i));
        }
        timed.sort_unstable();
        let mut entries: Vec<Entry> = timed
            .iter()
            .map(|&(_, kind, op)| Entry {
                op,
                is_call: kind == 0,
                partner: NIL,
            })
            .collect();
        let mut return_at = vec![NIL; ops.len()];
        for (at, entry) in entries.iter().enumerate() {
            if !entry.is_call {
                return_at[entry.op] = at;
            }
        }
        for entry in &mut entries {
            if entry.is_call {
                entry.partner = return_at[entry.op];
            }
        }
        let len = entries.len();
        let head = len;
        // Entry i follows i - 1, and the first follows the head.
        let mut next: Vec<usize> = (1..=len).collect();
        next[len - 1] = NIL;
        next.push(0);
        let mut prev: Vec<usize> = (0..len).map(|at| at.wrapping_sub(1)).collect();
        prev[0] = head;
        prev.push(NIL);
        List {
            entries,
            next,
            prev,
            head,
        }
    }

    fn first(&self) -> usize {
        self.next[self.head]
    }

    fn unlink(&mut self, at: usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, at: usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        self.next[p] = at;
        if n != NIL {
            self.prev[n] = at;
        }
    }

    /// Removes a call and its return.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.entries[call].partner);
    }

    /// Undoes `lift`, in reverse order.
    fn unlift(&mut self, call: usize) {
        self.relink(self.entries[call].partner);
        self.relink(call);
    }
}

/// The deepest point the search reached, for the explanation of a failure.
struct Deepest<S> {
    placed: Vec<usize>,
    state: S,
    blocked: usize,
}

fn search<M: Model>(
    model: &M,
    key: Option<&str>,
    ops: &[(Operation, M::Op)],
    budget: Budget,
) -> Verdict {
    if ops.is_empty() {
        return Verdict::Valid;
    }
    let history_ops: Vec<Operation> = ops.iter().map(|(op, _)| op.clone()).collect();
    let mut list = List::new(&history_ops);
    let mut state = model.init();
    let mut placed = Bits::new(ops.len());
    let mut cache: HashSet<(Bits, M::State)> = HashSet::new();
    let mut calls: Vec<(usize, M::State)> = Vec::new();
    let mut deepest: Option<Deepest<M::State>> = None;
    let mut steps = 0u64;
    let mut entry = list.first();
    while list.first() != NIL {
        steps += 1;
        if steps > budget.steps_max || cache.len() > budget.cache_entries_max {
            return Verdict::Unknown(format!(
                "key {}: the search budget ({} steps, {} cached configurations) ran out with {} \
                 of {} operations placed",
                key.unwrap_or("-"),
                budget.steps_max,
                budget.cache_entries_max,
                deepest.as_ref().map_or(0, |d| d.placed.len()),
                ops.len()
            ));
        }
        let current = list.entries[entry];
        if current.is_call {
            if let Some(next_state) = model.step(&state, &ops[current.op].1) {
                let mut next_placed = placed.clone();
                next_placed.set(current.op);
                if cache.insert((next_placed.clone(), next_state.clone())) {
                    calls.push((entry, std::mem::replace(&mut state, next_state)));
                    placed = next_placed;
                    list.lift(entry);
                    entry = list.first();
                    continue;
                }
            }
            entry = list.next[entry];
        } else {
            // The return of an operation not yet placed: nothing placed so far can be
            // followed by it. Remember the deepest such point, then backtrack.
            if deepest
                .as_ref()
                .is_none_or(|d| calls.len() > d.placed.len())
            {
                deepest = Some(Deepest {
                    placed: calls.iter().map(|&(at, _)| list.entries[at].op).collect(),
                    state: state.clone(),
                    blocked: current.op,
                });
            }
            let Some((call, previous)) = calls.pop() else {
                return Verdict::Invalid(vec![explain(model, key, &history_ops, deepest)]);
            };
            state = previous;
            placed.clear(list.entries[call].op);
            list.unlift(call);
            entry = list.next[call];
        }
    }
    Verdict::Valid
}

fn explain<M: Model>(
    model: &M,
    key: Option<&str>,
    ops: &[Operation],
    deepest: Option<Deepest<M::State>>,
) -> Anomaly {
    let deepest = deepest.expect("a failed search met at least one return");
    let shown = deepest.placed.len().saturating_sub(EXPLANATION_PREFIX_OPS);
    let mut text = format!(
        "{} operations can be placed in a legal order at most; the longest such prefix ends",
        deepest.placed.len()
    );
    if deepest.placed.is_empty() {
        text = "no operation can be placed first".to_owned();
    }
    for &op in &deepest.placed[shown..] {
        text.push_str(&format!("\n    {}", ops[op].describe()));
    }
    text.push_str(&format!(
        "\n  leaving the model in state {}; then this operation cannot be placed:\n    {}",
        model.describe(&deepest.state),
        ops[deepest.blocked].describe()
    ));
    let mut involved: Vec<usize> = deepest.placed[shown..].iter().map(|&i| ops[i].id).collect();
    involved.push(ops[deepest.blocked].id);
    Anomaly {
        kind: AnomalyKind::NotLinearizable,
        key: key.map(str::to_owned),
        ops: involved,
        explanation: text,
    }
}
