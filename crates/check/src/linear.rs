//! Linearizability by the Wing–Gong search as improved by Lowe: operations become call and
//! return entries in one list ordered by time; the search repeatedly picks an operation whose
//! call precedes every pending return, applies it to the model and removes it, and
//! backtracks when it meets the return of an operation it has not placed. A cache of
//! (placed-set, model state) pairs already explored prunes the search (memoization), and
//! independent keys are searched separately (P-compositionality), so the cost is exponential
//! only in the concurrency on one key. The search is bounded by steps and cache entries, and
//! the whole check by the caller's [`Monitor`] (a wall-clock deadline, which this crate never
//! reads itself); a bound that runs out gives `Unknown`, never `Valid`.
//!
//! Operations with an unknown outcome (*indeterminate*: invoked, never completed) have no
//! return: each may be placed anywhere after its call, or left out (it never took effect).
//! Left to itself the search tries every subset of them, exponential in their number on one
//! key, which a whole-cluster kill makes large. Four rules keep it small, each of which only
//! ever leaves indeterminate operations out, and leaving one out is always sound: a legal
//! order of the rest is a legal order of the whole history in which that operation never took
//! effect. The risk they carry is a false `Invalid`, never a false `Valid`, and the arguments
//! below show they carry none:
//!
//! Take a legal order `L` of the history with the fewest indeterminate operations. Each
//! indeterminate `X` in `L`, leading from state `s` to `X(s)`, is immediately followed by an
//! operation `B` whose step from `s` differs from its step from `X(s)` (`B` *needs* `X`):
//! otherwise removing `X` from `L` leaves `B` the same step and everything after it the same
//! states, a legal order with fewer indeterminate operations. (`X` last in `L`, or `X(s) == s`,
//! are the degenerate cases of the same argument.) So the search may
//!
//! 1. never place an indeterminate operation that leaves the state as it was;
//! 2. after placing an indeterminate operation from state `s`, place next only an operation
//!    that needs it (the `obligation` of the search, part of its memoized configuration),
//!    and no completed one the indeterminate operation could as well have followed
//!    ([`needless`] says why that loses nothing either);
//! 3. drop before the search the indeterminate operations that no chain of needing operations
//!    can connect to a completed one ([`Model::unneeded`], which the model answers because
//!    only it knows what its operations observe).
//!
//! 4. of equal indeterminate operations that may go next, place only the one invoked last:
//!    in a legal order that uses an earlier invoked one `X` while a later invoked equal `Y`
//!    could go there too, `X` and `Y` can trade places (or `Y` take `X`'s, when unused), since
//!    `X` may go wherever `Y` may. Among the orders above, the one that puts, position by
//!    position, the latest invoked operations first never breaks this rule.
//!
//! Besides, the search tries the completed operations that can go next before the
//! indeterminate ones: that changes only the order in which it finds an answer, not the answer.

use std::collections::{HashMap, HashSet};

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

/// The caller's view of a running check and its way to stop it. The check crate reads no
/// clock, so a wall-clock deadline lives here: `should_stop` returns true once it has passed.
pub trait Monitor {
    /// Whether the check should stop now; asked before each key and every
    /// [`STOP_POLL_STEPS`] search steps. A stopped check is `Unknown` and names the keys
    /// it left unjudged.
    fn should_stop(&mut self) -> bool {
        false
    }

    /// Reports that `done` of `total` keys have been judged.
    fn progress(&mut self, done: usize, total: usize) {
        let _ = (done, total);
    }
}

/// The monitor of a check that runs to the end of its budget and reports nothing.
#[derive(Copy, Clone, Debug, Default)]
pub struct Unmonitored;

impl Monitor for Unmonitored {}

/// Search steps between two questions to [`Monitor::should_stop`].
pub const STOP_POLL_STEPS: u64 = 1 << 14;

/// How many operations the explanation of a failure lists.
const EXPLANATION_PREFIX_OPS: usize = 8;

/// How many unjudged keys a stopped check names; the rest are counted.
const KEYS_NAMED_MAX: usize = 20;

/// Checks a history against `model`, key by key, to the end of `budget`.
pub fn check_linearizable<M: Model>(model: &M, history: &History, budget: Budget) -> Report {
    check_linearizable_monitored(model, history, budget, &mut Unmonitored)
}

/// Checks a history against `model`, key by key, reporting progress to `monitor` and stopping
/// when it says so (the verdict is then `Unknown` unless a judged key was invalid).
pub fn check_linearizable_monitored<M: Model>(
    model: &M,
    history: &History,
    budget: Budget,
    monitor: &mut dyn Monitor,
) -> Report {
    let mut verdicts = Vec::new();
    let mut ops_checked = 0;
    let groups = history.by_key();
    let keys: Vec<Option<&str>> = groups.keys().map(Option::as_deref).collect();
    for (done, (key, ops)) in groups.iter().enumerate() {
        if monitor.should_stop() {
            verdicts.push(stopped(&keys[done..], keys.len()));
            break;
        }
        let converted = match convert(model, ops) {
            Ok(converted) => converted,
            // A key whose history does not fit the model cannot be judged at all.
            Err(reason) => {
                verdicts.push(Verdict::Unknown(reason));
                monitor.progress(done + 1, keys.len());
                continue;
            }
        };
        ops_checked += converted.len();
        let unneeded = model.unneeded(&converted);
        assert_eq!(unneeded.len(), converted.len(), "one flag per operation");
        let kept: Vec<(Operation, M::Op)> = converted
            .into_iter()
            .zip(unneeded)
            .filter(|((op, _), unneeded)| {
                if *unneeded {
                    // Only an indeterminate operation may be left out.
                    assert!(op.ret.is_none(), "{} is completed", op.describe());
                }
                !unneeded
            })
            .map(|(pair, _)| pair)
            .collect();
        match search(model, key.as_deref(), &kept, budget, monitor) {
            Some(verdict) => verdicts.push(verdict),
            None => {
                verdicts.push(stopped(&keys[done..], keys.len()));
                break;
            }
        }
        monitor.progress(done + 1, keys.len());
    }
    Report {
        checker: model.name().to_owned(),
        verdict: Verdict::combine(verdicts),
        ops_checked,
        parts: groups.len(),
    }
}

/// Converts one key's operations, or says which does not fit the model.
fn convert<M: Model>(model: &M, ops: &[&Operation]) -> Result<Vec<(Operation, M::Op)>, String> {
    let mut converted = Vec::new();
    for op in ops {
        match model.convert(op) {
            Ok(Some(model_op)) => converted.push(((*op).clone(), model_op)),
            Ok(None) => {}
            Err(reason) => {
                return Err(format!(
                    "operation {} does not fit the model: {reason}",
                    op.describe()
                ));
            }
        }
    }
    Ok(converted)
}

/// The verdict of a check the monitor stopped with `left` (of `total`) keys unjudged.
fn stopped(left: &[Option<&str>], total: usize) -> Verdict {
    let mut named: Vec<&str> = left
        .iter()
        .take(KEYS_NAMED_MAX)
        .map(|key| key.unwrap_or("-"))
        .collect();
    if left.len() > KEYS_NAMED_MAX {
        named.push("…");
    }
    Verdict::Unknown(format!(
        "the check was stopped (time limit) with {} of {total} keys unjudged: {}",
        left.len(),
        named.join(", ")
    ))
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
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
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

/// Which calls a scan of the candidates considers: the completed operations first, then the
/// indeterminate ones.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Phase {
    Completed,
    Indeterminate,
}

/// The state before the last placed operation and its index, when it is indeterminate.
type Obligation<S> = Option<(S, usize)>;

/// Whether operation `next`, which steps to `after` from the current state, does not need
/// the indeterminate operation `last` placed just before it from state `before` (rule 2 of
/// the header). It does not when it steps the same from `before`; and a completed `next`
/// does not either when `last` could as well follow it: from `before`, `next` then `last`
/// reach `after` too. (That order has as many indeterminate operations and one fewer
/// placed before a completed one; a legal order with the fewest of both never has such a
/// pair, so the search loses nothing. Two indeterminate ones swapped gain nothing, so the
/// second half of the rule is for completed ones only.)
fn needless<M: Model>(
    model: &M,
    before: &M::State,
    last: &M::Op,
    next: &M::Op,
    after: &M::State,
    next_indeterminate: bool,
) -> bool {
    match model.step(before, next) {
        None => false,
        Some(without) if &without == after => true,
        Some(_) if next_indeterminate => false,
        Some(without) => model.step(&without, last).as_ref() == Some(after),
    }
}

/// A placed operation, with what placing it replaced.
struct Placed<S> {
    /// Its call entry.
    call: usize,
    state: S,
    obligation: Obligation<S>,
    phase: Phase,
    window_end: usize,
}

/// For each indeterminate operation, the next one invoked with an equal model operation.
/// Among equal indeterminate operations that may go next, the search places only the one
/// invoked last (rule 4 of the header).
struct Twins {
    later: Vec<Option<usize>>,
    /// Each operation's call entry in the list's time order.
    call_entry: Vec<usize>,
}

impl Twins {
    fn new<Op: Eq + std::hash::Hash>(ops: &[(Operation, Op)], list: &List) -> Twins {
        let mut call_entry = vec![NIL; ops.len()];
        for (at, entry) in list.entries.iter().enumerate() {
            if entry.is_call {
                call_entry[entry.op] = at;
            }
        }
        let mut by_call: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].0.ret.is_none()).collect();
        by_call.sort_by_key(|&i| call_entry[i]);
        let mut later = vec![None; ops.len()];
        let mut last_seen: HashMap<&Op, usize> = HashMap::new();
        for i in by_call {
            if let Some(earlier) = last_seen.insert(&ops[i].1, i) {
                later[earlier] = Some(i);
            }
        }
        Twins { later, call_entry }
    }

    /// Whether a later invoked twin of `op`, not yet placed, is among the candidates, which
    /// end at entry `window_end`.
    fn shadowed(&self, op: usize, placed: &Bits, window_end: usize) -> bool {
        let mut twin = self.later[op];
        while let Some(later) = twin {
            if self.call_entry[later] >= window_end {
                return false;
            }
            if !placed.get(later) {
                return true;
            }
            twin = self.later[later];
        }
        false
    }
}

/// The deepest point the search reached, for the explanation of a failure.
struct Deepest<S> {
    placed: Vec<usize>,
    state: S,
    blocked: usize,
}

/// The search over one key's operations: its verdict, or `None` when the monitor stopped it.
///
/// Long because the search is one loop over the list whose cursor, stack and cache belong
/// together; its rules are in the module header.
fn search<M: Model>(
    model: &M,
    key: Option<&str>,
    ops: &[(Operation, M::Op)],
    budget: Budget,
    monitor: &mut dyn Monitor,
) -> Option<Verdict> {
    let history_ops: Vec<Operation> = ops.iter().map(|(op, _)| op.clone()).collect();
    let mut completed_left = history_ops.iter().filter(|op| op.ret.is_some()).count();
    if completed_left == 0 {
        // Every operation may be left out.
        return Some(Verdict::Valid);
    }
    let mut list = List::new(&history_ops);
    let mut state = model.init();
    // The state before the last placed operation, and that operation, when it is
    // indeterminate: the next placed operation must need it (rule 2 of the header).
    let mut obligation: Obligation<M::State> = None;
    let mut placed = Bits::new(ops.len());
    let mut cache: HashSet<(Bits, M::State, Obligation<M::State>)> = HashSet::new();
    let mut calls: Vec<Placed<M::State>> = Vec::new();
    let mut deepest: Option<Deepest<M::State>> = None;
    let mut steps = 0u64;
    let mut entry = list.first();
    let mut phase = Phase::Completed;
    // Where the candidates end (the first pending return), known once the scan passed it.
    let mut window_end = NIL;
    let twins = Twins::new(ops, &list);
    while completed_left > 0 {
        steps += 1;
        if steps > budget.steps_max || cache.len() > budget.cache_entries_max {
            return Some(Verdict::Unknown(format!(
                "key {}: the search budget ({} steps, {} cached configurations) ran out with {} \
                 of {} operations placed",
                key.unwrap_or("-"),
                budget.steps_max,
                budget.cache_entries_max,
                deepest.as_ref().map_or(0, |d| d.placed.len()),
                ops.len()
            )));
        }
        if steps.is_multiple_of(STOP_POLL_STEPS) && monitor.should_stop() {
            return None;
        }
        // A pending completed operation always leaves a return entry ahead of the cursor.
        assert_ne!(entry, NIL, "the scan passed every return");
        let current = list.entries[entry];
        if current.is_call {
            let (op, model_op) = &ops[current.op];
            let indeterminate = op.ret.is_none();
            if indeterminate != (phase == Phase::Indeterminate)
                || (indeterminate && twins.shadowed(current.op, &placed, window_end))
            {
                entry = list.next[entry];
                continue;
            }
            if let Some(next_state) = model.step(&state, model_op) {
                // Rule 1: an indeterminate operation that changes nothing is never needed.
                let useless = indeterminate && next_state == state;
                // Rule 2: after an indeterminate operation, only one that needs it.
                let unneeding = obligation.as_ref().is_some_and(|(before, last)| {
                    needless(
                        model,
                        before,
                        &ops[*last].1,
                        model_op,
                        &next_state,
                        indeterminate,
                    )
                });
                if !useless && !unneeding {
                    let next_obligation = indeterminate.then(|| (state.clone(), current.op));
                    let mut next_placed = placed.clone();
                    next_placed.set(current.op);
                    let config = (next_placed, next_state, next_obligation);
                    if cache.insert(config.clone()) {
                        let (next_placed, next_state, next_obligation) = config;
                        calls.push(Placed {
                            call: entry,
                            state: std::mem::replace(&mut state, next_state),
                            obligation: std::mem::replace(&mut obligation, next_obligation),
                            phase,
                            window_end,
                        });
                        placed = next_placed;
                        completed_left -= usize::from(!indeterminate);
                        list.lift(entry);
                        entry = list.first();
                        phase = Phase::Completed;
                        continue;
                    }
                }
            }
            entry = list.next[entry];
        } else if phase == Phase::Completed {
            // Every completed candidate tried: now the indeterminate ones.
            window_end = entry;
            entry = list.first();
            phase = Phase::Indeterminate;
        } else {
            // The return of an operation not yet placed: nothing placed so far can be
            // followed by it. Remember the deepest such point, then backtrack.
            if deepest
                .as_ref()
                .is_none_or(|d| calls.len() > d.placed.len())
            {
                deepest = Some(Deepest {
                    placed: calls.iter().map(|p| list.entries[p.call].op).collect(),
                    state: state.clone(),
                    blocked: current.op,
                });
            }
            let Some(last) = calls.pop() else {
                return Some(Verdict::Invalid(vec![explain(
                    model,
                    key,
                    &history_ops,
                    deepest,
                )]));
            };
            let op = list.entries[last.call].op;
            state = last.state;
            obligation = last.obligation;
            phase = last.phase;
            window_end = last.window_end;
            placed.clear(op);
            completed_left += usize::from(history_ops[op].ret.is_some());
            list.unlift(last.call);
            entry = list.next[last.call];
        }
    }
    Some(Verdict::Valid)
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
