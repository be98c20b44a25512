//! Applying changes to Automerge, which may refuse or panic on a forged change: one call in
//! the usual case, bisection to find the refused changes otherwise.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::Loaded;
use automerge::{ActorId, Automerge, Change, ChangeHash};

/// Applies `list` to `doc` in one call, handing the changes over (no copies); `None` if
/// Automerge refuses or panics.
pub(super) fn apply_once(
    doc: Automerge,
    list: &[usize],
    items: &mut [Loaded],
) -> Option<Automerge> {
    if list.is_empty() {
        return Some(doc);
    }
    let changes: Vec<Change> = list
        .iter()
        .filter_map(|&i| items[i].held.take().map(|c| *c))
        .collect();
    let log = LOG.with(|l| l.borrow_mut().take());
    let (doc, log) = catch_unwind(AssertUnwindSafe(move || {
        let mut doc = doc;
        match log {
            Some(mut log) => {
                let applied = doc.apply_changes_log_patches(changes, &mut log);
                applied.map(|()| (doc, Some(log)))
            }
            None => doc.apply_changes(changes).map(|()| (doc, None)),
        }
    }))
    .ok()?
    .ok()?;
    LOG.with(|l| *l.borrow_mut() = log);
    Some(doc)
}

thread_local! {
    /// The patch log of a merge that records its patches (see [`logging`]).
    static LOG: std::cell::RefCell<Option<automerge::PatchLog>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (a merge onto a document kept in memory) recording the patches of the changes it
/// applies in one batch; the log, when it was used and not lost to a failed apply.
pub(crate) fn logging<T>(f: impl FnOnce() -> T) -> (T, Option<automerge::PatchLog>) {
    LOG.with(|l| *l.borrow_mut() = Some(automerge::PatchLog::active()));
    let out = f();
    (out, LOG.with(|l| l.borrow_mut().take()))
}

/// Quarantines `root` with `reason`, and every change that depends on it.
pub(super) fn quarantine_with_descendants(
    root: usize,
    reason: String,
    items: &[Loaded],
    children: &[Vec<usize>],
    quarantined: &mut BTreeMap<usize, String>,
) {
    let mut stack = vec![root];
    quarantined.insert(root, reason);
    while let Some(i) = stack.pop() {
        for &c in &children[i] {
            if let std::collections::btree_map::Entry::Vacant(slot) = quarantined.entry(c) {
                let because = items[i].hash;
                slot.insert(format!("depends on quarantined change {because}"));
                stack.push(c);
            }
        }
    }
}

/// True when `doc` already holds, for one of these actors, a change at or beyond the seq
/// (seq 1: any change of that actor).
pub(super) fn seq_taken(doc: &mut Automerge, first_new: &[(ActorId, u64)]) -> bool {
    let actor = doc.get_actor().clone();
    let taken = first_new.iter().any(|(a, seq)| {
        doc.set_actor(a.clone());
        doc.get_last_local_change().is_some_and(|c| c.seq() >= *seq)
    });
    doc.set_actor(actor);
    taken
}

/// Applies `list` (in topological order) to `doc` in one call; on refusal or panic,
/// bisects so that exactly the refused changes (and their dependents) are left out.
pub(super) fn apply_chunk(
    doc: Automerge,
    list: &[usize],
    items: &mut [Loaded],
    index: &HashMap<ChangeHash, usize>,
    bad: &mut BTreeMap<usize, String>,
) -> Automerge {
    let list: Vec<usize> = list
        .iter()
        .copied()
        .filter(|&i| {
            let refused_dep = items[i]
                .change()
                .deps()
                .iter()
                .find(|d| index.get(*d).is_some_and(|j| bad.contains_key(j)))
                .copied();
            match refused_dep {
                Some(d) => {
                    bad.insert(i, format!("depends on quarantined change {d}"));
                    false
                }
                None => true,
            }
        })
        .collect();
    if list.is_empty() {
        return doc;
    }
    let before = doc.clone();
    let changes: Vec<Change> = list.iter().map(|&i| items[i].change().clone()).collect();
    let attempt = catch_unwind(AssertUnwindSafe(move || {
        let mut doc = doc;
        doc.apply_changes(changes).map(|()| doc)
    }));
    match attempt {
        Ok(Ok(doc)) => {
            for &i in &list {
                items[i].held = None;
            }
            doc
        }
        _ if list.len() == 1 => {
            let reason = match attempt {
                Ok(Err(e)) => format!("Automerge refused the change: {e}"),
                Err(panic) => format!("Automerge failed on the change: {}", panic_text(&panic)),
                Ok(Ok(_)) => unreachable!(),
            };
            bad.insert(list[0], reason);
            before
        }
        _ => {
            let (left, right) = list.split_at(list.len() / 2);
            let doc = apply_chunk(before, left, items, index, bad);
            apply_chunk(doc, right, items, index, bad)
        }
    }
}

pub(super) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}
