//! Forks are rebased, never dropped.
//!
//! A fork is two different changes with one (actor, seq): a cloned disk, a VM snapshot or a
//! restored state dir wrote again under an actor that another copy of the device also used.
//! One Automerge document cannot hold both. At each forked (actor, seq), in (actor, seq)
//! order, the candidate with the lowest change hash keeps its place (one replaced by a
//! published rebase, below, ranks last: it lost where that rebase was made); every other candidate,
//! and every change that depends on one (a third device may have built on it), is *rebased*:
//! rewritten as the very same operations by a new actor, with seq 1.
//!
//! ```text
//! rebased actor   = BLAKE3("crdtdir fork rebase v1\0" || original change hash)[..16]
//! rebased change  = the original's ops, start op, time, message, with
//!                   actor := rebased actor of itself, seq := 1,
//!                   every dependency on a rebased change := that change's new hash,
//!                   every op id (object, element, pred) of a rebased change := the same
//!                   counter under that change's rebased actor
//! ```
//!
//! The rewrite is a pure function of the original bytes, so every device derives the same
//! changes from the same files (byte-identical output everywhere), and a rewrite made again
//! later, by this device or another, is the same change (deduplicated by hash). One actor per
//! rebased change keeps this true whatever order the files arrive in. The edits keep their
//! meaning: an insert stays an insert after the element it followed, a text splice stays a
//! splice, a map write becomes a concurrent write; nothing of either branch is lost.
//!
//! A change whose history is incomplete is not rewritten yet: it waits, like any change with
//! a missing dependency, and is rebased once its history has arrived.
//!
//! Which changes a rewrite touches still depends on what has arrived (a fork found later in
//! a change's history moves everything after it), so a writer never leaves a new change
//! depending on a rewrite only readers' memory holds: it first *publishes* the rebased
//! changes of its view as op files. A change with seq 1 under the rebased actor of a change
//! present here is such a published rebase; it replaces its original from then on, fork or no
//! fork, and when two were published for one original, the lowest hash stands for both.
//! See docs/FORMAT.md §9.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::merge::Loaded;
use crate::report::{Fork, Rebased};
use automerge::legacy::{ElementId, Key, ObjectId, OpId};
use automerge::{ActorId, Change, ChangeHash, ExpandedChange};

/// Domain separation for the rebased actor id.
const ACTOR_DOMAIN: &[u8] = b"crdtdir fork rebase v1\0";

/// The actor a rebased change is written under.
pub(crate) fn rebased_actor(original: &ChangeHash) -> ActorId {
    let hash = blake3::Hasher::new()
        .update(ACTOR_DOMAIN)
        .update(original.as_ref())
        .finalize();
    ActorId::from(&hash.as_bytes()[..16])
}

/// What rebasing did to a set of changes.
#[derive(Default)]
pub(crate) struct Outcome {
    /// The forks found, in (actor, seq) order.
    pub(crate) forks: Vec<Fork>,
    /// The changes rewritten (original and new hash).
    pub(crate) rebased: Vec<Rebased>,
    /// Indices of changes that lost a fork, or depend on one, whose history is incomplete
    /// (a missing dependency, or an op id whose change is not in their history): left as
    /// they are, never applied, they wait.
    pub(crate) deferred: HashSet<usize>,
    /// Indices of changes Automerge could not rewrite, with the reason.
    pub(crate) failed: Vec<(usize, String)>,
}

/// Finds the forks among `items` (deduplicated by hash) and rewrites every losing change and
/// every change that depends on one, in place: their `held` change, `hash` and `actor`.
/// Steps: the forked slots, their resolution ([`resolve`]), the rewrites ([`rewrite_all`]).
pub(crate) fn rebase_forks(items: &mut [Loaded]) -> Outcome {
    let mut out = Outcome::default();
    // Published rebases (see the module documentation): `alias[x]` is the published change
    // that stands for `x`, for an original and for every other published form of it.
    let (alias, published) = published_rebases(items);
    let forked = forked_slots(items, &published);
    if forked.is_empty() && alias.iter().all(Option::is_none) {
        return out;
    }
    let index: HashMap<ChangeHash, usize> =
        items.iter().enumerate().map(|(i, l)| (l.hash, i)).collect();
    let (tainted, forks) = resolve(items, &index, &alias, forked);
    out.forks = forks;
    rewrite_all(items, &index, &alias, &tainted, &mut out);
    out.rebased
        .sort_by(|a, b| (&a.path, &a.from).cmp(&(&b.path, &b.from)));
    out
}

/// The (actor, seq) slots with two or more candidates (published rebases aside), in
/// (actor hex, seq) order.
fn forked_slots(items: &[Loaded], published: &[bool]) -> Vec<((String, u64), Vec<usize>)> {
    let mut slots: HashMap<(ActorId, u64), Vec<usize>> = HashMap::new();
    for (i, l) in items.iter().enumerate() {
        if !published[i] {
            slots
                .entry((l.actor.clone(), l.change().seq()))
                .or_default()
                .push(i);
        }
    }
    let mut forked: Vec<((String, u64), Vec<usize>)> = slots
        .into_iter()
        .filter(|(_, c)| c.len() > 1)
        .map(|((a, s), c)| ((a.to_hex_string(), s), c))
        .collect();
    forked.sort();
    forked
}

/// Resolves the forked slots in (actor, seq) order: the changes to rewrite (`tainted`: the
/// losers, the changes replaced by a published rebase, and everything that depends on
/// them), and the forks found.
fn resolve(
    items: &[Loaded],
    index: &HashMap<ChangeHash, usize>,
    alias: &[Option<usize>],
    forked: Vec<((String, u64), Vec<usize>)>,
) -> (Vec<bool>, Vec<Fork>) {
    // A candidate that already depends on a loser is rebased with it and takes no part in
    // later slots; everything that depends on a loser follows it.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); items.len()];
    for (i, l) in items.iter().enumerate() {
        for dep in l.change().deps() {
            if let Some(&d) = index.get(dep) {
                children[d].push(i);
            }
        }
    }
    let mut tainted = vec![false; items.len()];
    // Changes that lost a fork or depend on one: they take no part in later slots. A change
    // replaced by its published rebase does (it ranks last, see below), so `lost` is kept apart.
    let mut lost = vec![false; items.len()];
    let taint = |from: usize, tainted: &mut Vec<bool>| {
        let mut stack = vec![from];
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut tainted[i], true) {
                stack.extend_from_slice(&children[i]);
            }
        }
    };
    // A change a writer published a rebase of is replaced by it, fork or no fork here.
    for (i, a) in alias.iter().enumerate() {
        if a.is_some() {
            taint(i, &mut tainted);
        }
    }
    let mut forks = Vec::new();
    for ((actor, seq), mut candidates) in forked {
        // A candidate replaced by its published rebase, or built on one, still counts in the
        // fork (it is reported), but ranks after every other: a published rebase says that
        // its original lost where it was made, and a writer there built on the change that
        // won. Letting the original win here would rebase that change, and the write built
        // on it, once more.
        candidates.retain(|&i| !lost[i]);
        if candidates.len() < 2 {
            continue;
        }
        candidates.sort_by(|a, b| {
            (tainted[*a], items[*a].hash.as_ref()).cmp(&(tainted[*b], items[*b].hash.as_ref()))
        });
        forks.push(Fork {
            actor,
            seq,
            kept: items[candidates[0]].hash.to_string(),
            rebased: candidates[1..]
                .iter()
                .map(|&i| items[i].hash.to_string())
                .collect(),
        });
        for &i in &candidates[1..] {
            taint(i, &mut tainted);
            taint(i, &mut lost);
        }
    }
    (tainted, forks)
}

/// Rewrites every tainted change, in causal order (a change after every rebased change it
/// depends on), into `out`: rebased in place, failed, or deferred.
fn rewrite_all(
    items: &mut [Loaded],
    index: &HashMap<ChangeHash, usize>,
    alias: &[Option<usize>],
    tainted: &[bool],
    out: &mut Outcome,
) {
    // Which change owns an op id: by actor, the counter ranges of the changes present.
    let mut ranges: HashMap<&ActorId, Vec<(u64, u64, usize)>> = HashMap::new();
    for (i, l) in items.iter().enumerate() {
        let c = l.change();
        ranges
            .entry(&l.actor)
            .or_default()
            .push((c.start_op().get(), c.max_op(), i));
    }
    let ranges: HashMap<ActorId, Vec<(u64, u64, usize)>> =
        ranges.into_iter().map(|(a, r)| (a.clone(), r)).collect();
    let mut state: Vec<Rewrite> = vec![Rewrite::Todo; items.len()];
    let order: Vec<usize> = (0..items.len()).filter(|&i| tainted[i]).collect();
    let ctx = Context {
        index,
        tainted,
        alias,
        ranges: &ranges,
    };
    for &i in &order {
        rewrite_in_order(i, items, &ctx, &mut state);
    }
    for &i in &order {
        match std::mem::replace(&mut state[i], Rewrite::Todo) {
            Rewrite::Done(change) if change.hash() == items[i].hash => {
                // A rewrite this view held, standing for itself: nothing moved.
            }
            Rewrite::Done(change) => {
                let from = items[i].hash;
                let l = &mut items[i];
                l.hash = change.hash();
                l.actor = change.actor_id().clone();
                out.rebased.push(Rebased {
                    path: l.rel.clone(),
                    from: from.to_string(),
                    to: l.hash.to_string(),
                });
                l.held = Some(change);
            }
            Rewrite::Failed(reason) => out.failed.push((i, reason)),
            Rewrite::Deferred | Rewrite::Todo | Rewrite::Busy => {
                out.deferred.insert(i);
            }
        }
    }
}

/// The published rebases among `items`: changes with seq 1 under the rebased actor of a
/// change present here, carried by a file (an op file or a snapshot). Returns, per item, the
/// change that stands for it (for an original, its published form with the lowest hash; for
/// every other form of it, that one too; for a rewrite only this device's view held, the
/// original, as it ends up here), and which items take no part in forks for that reason.
fn published_rebases(items: &[Loaded]) -> (Vec<Option<usize>>, Vec<bool>) {
    let n = items.len();
    let mut alias = vec![None; n];
    let mut published = vec![false; n];
    if !items.iter().any(|l| l.change().seq() == 1) {
        return (alias, published);
    }
    let originals: HashMap<ActorId, usize> = items
        .iter()
        .enumerate()
        .map(|(i, l)| (rebased_actor(&l.hash), i))
        .collect();
    let mut forms: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut held = Vec::new();
    for (m, l) in items.iter().enumerate() {
        if l.change().seq() == 1 {
            if let Some(&x) = originals.get(&l.actor) {
                if l.rel.is_empty() {
                    held.push((m, x));
                } else {
                    forms.entry(x).or_default().push(m);
                }
            }
        }
    }
    if forms.is_empty() && held.is_empty() {
        return (alias, published);
    }
    // A published rebase stands for its original only once its whole history is here: it
    // was made where the forks before it were known, and until that history has arrived
    // this merge could not place the changes around it the same way.
    let complete = complete_histories(items);
    for (m, x) in held {
        // A rewrite only this device's own copy of its view holds (no file, no snapshot
        // carries it) stands for whatever its original becomes here, so every device,
        // whatever it held, ends with the same document — once the original's history is
        // here. Until then it is the only carrier of those edits, and stays.
        if complete[x] {
            alias[m] = Some(x);
            published[m] = true;
        }
    }
    for (x, mut ms) in forms {
        ms.sort_by(|a, b| items[*a].hash.as_ref().cmp(items[*b].hash.as_ref()));
        for &m in &ms {
            published[m] = true;
        }
        let Some(canonical) = ms.iter().copied().find(|&m| complete[m]) else {
            continue;
        };
        alias[x] = Some(canonical);
        for &m in &ms {
            if m != canonical {
                alias[m] = Some(canonical);
            }
        }
    }
    (alias, published)
}

/// Per item: every change it depends on, directly or not, is among `items`.
fn complete_histories(items: &[Loaded]) -> Vec<bool> {
    let index: HashMap<ChangeHash, usize> =
        items.iter().enumerate().map(|(i, l)| (l.hash, i)).collect();
    // 0 unknown, 1 on the stack, 2 complete, 3 incomplete.
    let mut state = vec![0u8; items.len()];
    for start in 0..items.len() {
        let mut stack = vec![(start, false)];
        while let Some((i, deps_done)) = stack.pop() {
            if !deps_done {
                if state[i] != 0 {
                    continue;
                }
                state[i] = 1;
                stack.push((i, true));
                for d in items[i].change().deps() {
                    if let Some(&k) = index.get(d) {
                        if state[k] == 0 {
                            stack.push((k, false));
                        }
                    }
                }
                continue;
            }
            let ok = items[i]
                .change()
                .deps()
                .iter()
                .all(|d| index.get(d).is_some_and(|&k| state[k] == 2));
            state[i] = if ok { 2 } else { 3 };
        }
    }
    state.into_iter().map(|s| s == 2).collect()
}

#[derive(Clone)]
enum Rewrite {
    Todo,
    /// On the stack (a dependency cycle would be a forged history).
    Busy,
    Done(Box<Change>),
    Deferred,
    Failed(String),
}

/// What a rewrite needs to know about the changes around it.
struct Context<'a> {
    index: &'a HashMap<ChangeHash, usize>,
    tainted: &'a [bool],
    alias: &'a [Option<usize>],
    ranges: &'a HashMap<ActorId, Vec<(u64, u64, usize)>>,
}

impl Context<'_> {
    /// The actor the ops of change `k` end up under, when they move.
    fn moved_to(&self, mut k: usize, items: &[Loaded]) -> Option<ActorId> {
        if !self.tainted[k] {
            return None;
        }
        // A published form carries the ops under its own actor (itself rewritten if it
        // builds on a change that lost a fork since).
        while let Some(t) = self.alias[k] {
            if !self.tainted[t] {
                return Some(items[t].actor.clone());
            }
            k = t;
        }
        Some(rebased_actor(&items[k].hash))
    }
}

fn rewrite_in_order(i: usize, items: &[Loaded], ctx: &Context<'_>, state: &mut [Rewrite]) {
    let (index, tainted, ranges) = (ctx.index, ctx.tainted, ctx.ranges);
    // Iterative depth-first walk: long rebased chains must not overflow the stack.
    let mut stack = vec![(i, false)];
    while let Some((j, deps_done)) = stack.pop() {
        let change = items[j].change();
        if !deps_done {
            if !matches!(state[j], Rewrite::Todo) {
                continue;
            }
            state[j] = Rewrite::Busy;
            stack.push((j, true));
            let before: Vec<usize> = match ctx.alias[j] {
                Some(t) => vec![t],
                None => change
                    .deps()
                    .iter()
                    .filter_map(|d| index.get(d).copied())
                    .collect(),
            };
            for d in before {
                if tainted[d] && matches!(state[d], Rewrite::Todo) {
                    stack.push((d, false));
                }
            }
            continue;
        }
        if let Some(t) = ctx.alias[j] {
            // Replaced by its published form, as that form stands now.
            state[j] = if tainted[t] {
                match &state[t] {
                    Rewrite::Done(c) => Rewrite::Done(c.clone()),
                    Rewrite::Failed(reason) => Rewrite::Failed(reason.clone()),
                    _ => Rewrite::Deferred,
                }
            } else {
                Rewrite::Done(Box::new(items[t].change().clone()))
            };
            continue;
        }
        let mut new_deps = Vec::with_capacity(change.deps().len());
        let mut verdict = None;
        for dep in change.deps() {
            match index.get(dep) {
                None => verdict = Some(Rewrite::Deferred),
                Some(&d) if !tainted[d] => new_deps.push(*dep),
                Some(&d) => match &state[d] {
                    Rewrite::Done(c) => new_deps.push(c.hash()),
                    Rewrite::Failed(_) => {
                        verdict = Some(Rewrite::Failed(format!(
                            "depends on change {dep}, which could not be rebased"
                        )))
                    }
                    _ => verdict = verdict.or(Some(Rewrite::Deferred)),
                },
            }
        }
        state[j] = match verdict {
            Some(v) => v,
            None => {
                let history = history_of(j, items, index);
                let unresolved = std::cell::Cell::new(false);
                let rewritten = rewrite(change, new_deps, &|id: &OpId| match owner_of(
                    id, &history, items, ranges,
                ) {
                    Some(owner) => ctx.moved_to(owner, items),
                    None => {
                        unresolved.set(true);
                        None
                    }
                });
                if unresolved.get() {
                    Rewrite::Deferred
                } else {
                    rewritten
                }
            }
        };
    }
}

/// The change (an index) that made op `id`, in a history (`history_of`): among the changes
/// of that actor whose counter range holds it, the one in the history (two can claim the
/// counter only across a fork, and no history holds both sides). `None` when no change of
/// the history claims it: the change that made it is missing, and the rewrite must wait.
fn owner_of(
    id: &OpId,
    history: &HashSet<usize>,
    items: &[Loaded],
    ranges: &HashMap<ActorId, Vec<(u64, u64, usize)>>,
) -> Option<usize> {
    let mut candidates: Vec<usize> = ranges
        .get(id.actor())?
        .iter()
        .filter(|(start, max, _)| (*start..=*max).contains(&id.counter()))
        .map(|&(_, _, k)| k)
        .filter(|k| history.contains(k))
        .collect();
    candidates.sort_by(|a, b| items[*a].hash.as_ref().cmp(items[*b].hash.as_ref()));
    candidates.first().copied()
}

/// `j` and every change it depends on, directly or not, among `items`.
fn history_of(j: usize, items: &[Loaded], index: &HashMap<ChangeHash, usize>) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut stack = vec![j];
    while let Some(k) = stack.pop() {
        if seen.insert(k) {
            stack.extend(
                items[k]
                    .change()
                    .deps()
                    .iter()
                    .filter_map(|d| index.get(d).copied()),
            );
        }
    }
    seen
}

/// Rewrites `change` under its rebased actor with seq 1, the given dependencies, and every op
/// id that `renamed` maps moved to that actor.
fn rewrite(
    change: &Change,
    mut deps: Vec<ChangeHash>,
    renamed: &dyn Fn(&OpId) -> Option<ActorId>,
) -> Rewrite {
    let own = rebased_actor(&change.hash());
    let (start, max) = (change.start_op().get(), change.max_op());
    let old_actor = change.actor_id().clone();
    let map = |id: &OpId| -> OpId {
        if id.actor() == &old_actor && (start..=max).contains(&id.counter()) {
            return OpId(id.counter(), own.clone());
        }
        match renamed(id) {
            Some(actor) => OpId(id.counter(), actor),
            None => id.clone(),
        }
    };
    let attempt = catch_unwind(AssertUnwindSafe(|| {
        let mut expanded: ExpandedChange = change.decode();
        for op in &mut expanded.operations {
            if let ObjectId::Id(id) = &op.obj {
                op.obj = ObjectId::Id(map(id));
            }
            if let Key::Seq(ElementId::Id(id)) = &op.key {
                op.key = Key::Seq(ElementId::Id(map(id)));
            }
            op.pred = op.pred.iter().map(map).collect();
        }
        deps.sort_unstable();
        expanded.actor_id = own.clone();
        expanded.seq = 1;
        expanded.deps = deps;
        expanded.hash = None;
        Change::from(expanded)
    }));
    match attempt {
        Ok(c) => Rewrite::Done(Box::new(c)),
        Err(_) => Rewrite::Failed("Automerge could not rewrite the change".into()),
    }
}
