//! Planning a merge (pure: no file, no Automerge document is touched): deduplicate, find
//! what waits for dependencies, order the rest.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use automerge::ChangeHash;

use super::apply::quarantine_with_descendants;
use super::report::waiting_for;
use super::Loaded;
use crate::report::Waiting;

/// `loaded` without repeated changes, in path order; a real file wins over a cached-only
/// copy of the same change.
pub(super) fn dedup(loaded: Vec<Loaded>) -> Vec<Loaded> {
    let mut items: Vec<Loaded> = Vec::with_capacity(loaded.len());
    let mut seen: HashMap<ChangeHash, usize> = HashMap::with_capacity(loaded.len());
    for l in loaded {
        match seen.entry(l.hash) {
            Entry::Vacant(slot) => {
                slot.insert(items.len());
                items.push(l);
            }
            Entry::Occupied(slot) => {
                let kept = &mut items[*slot.get()];
                if kept.rel.is_empty() && !l.rel.is_empty() {
                    *kept = l;
                }
            }
        }
    }
    if !items.is_sorted_by(|a, b| a.rel <= b.rel) {
        items.sort_by(|a, b| a.rel.cmp(&b.rel));
    }
    items
}

/// What a merge of deduplicated changes will do.
pub(super) struct Plan {
    /// Change hash to index into the items.
    pub(super) index: HashMap<ChangeHash, usize>,
    /// The changes to apply, in topological order (none the base holds already).
    pub(super) to_apply: Vec<usize>,
    /// The changes that wait for dependencies, with what the report says of each.
    pub(super) waiting: Vec<(usize, Waiting)>,
    /// Changes left out before anything is applied (a rebase that failed), and everything
    /// that depends on them, with the reason.
    pub(super) quarantined: BTreeMap<usize, String>,
}

/// Orders `items` topologically (Kahn). `in_base` says which changes the document merged
/// into already holds; `deferred` changes never become ready (rewrites that must wait);
/// `cannot_rebase` changes are quarantined with their dependents. Whatever never becomes
/// ready waits.
pub(super) fn order(
    items: &[Loaded],
    in_base: impl Fn(&ChangeHash) -> bool,
    deferred: &HashSet<ChangeHash>,
    cannot_rebase: HashMap<ChangeHash, String>,
) -> Plan {
    let n = items.len();
    let index: HashMap<ChangeHash, usize> =
        items.iter().enumerate().map(|(i, l)| (l.hash, i)).collect();
    // Dependencies as indices; `missing`: one is neither here nor in the base.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut pending = vec![0usize; n];
    let mut missing = vec![false; n];
    let mut already = vec![false; n];
    for (i, l) in items.iter().enumerate() {
        already[i] = in_base(&l.hash);
        for dep in l.change().deps() {
            match index.get(dep) {
                Some(&d) => {
                    children[d].push(i);
                    pending[i] += 1;
                }
                None if in_base(dep) => {}
                None => missing[i] = true,
            }
        }
        if deferred.contains(&l.hash) {
            missing[i] = true;
        }
    }
    let mut quarantined: BTreeMap<usize, String> = BTreeMap::new();
    for (hash, reason) in cannot_rebase {
        if let Some(&i) = index.get(&hash) {
            quarantine_with_descendants(i, reason, items, &children, &mut quarantined);
        }
    }
    // Quarantined changes and their dependents never become ready (their dependents are
    // quarantined too).
    let mut queue: VecDeque<usize> = (0..n)
        .filter(|&i| pending[i] == 0 && !missing[i] && !quarantined.contains_key(&i))
        .collect();
    let mut ready = Vec::with_capacity(n);
    let mut is_ready = vec![false; n];
    while let Some(i) = queue.pop_front() {
        ready.push(i);
        is_ready[i] = true;
        for &c in &children[i] {
            pending[c] -= 1;
            if pending[c] == 0 && !missing[c] && !quarantined.contains_key(&c) {
                queue.push_back(c);
            }
        }
    }
    let applied = |d: &ChangeHash| in_base(d) || index.get(d).is_some_and(|&j| is_ready[j]);
    let waiting = (0..n)
        .filter(|&i| !is_ready[i] && !already[i] && !quarantined.contains_key(&i))
        .map(|i| (i, waiting_for(&items[i], applied)))
        .collect();
    let to_apply = ready.into_iter().filter(|&i| !already[i]).collect();
    Plan {
        index,
        to_apply,
        waiting,
        quarantined,
    }
}
