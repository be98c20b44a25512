//! The incremental merge: only what is new since the cached state, or why only a merge of
//! everything gives the right answer ([`Incremental`]).

use crate::folder::Source;
use std::collections::HashSet;

use automerge::{ActorId, ReadDoc};

use crate::merged::MergedState;

use super::report::waiting_for;
use super::report::{finish, scan_report};
use super::{into_state, load_all, merge_loaded, pending, seq_taken, Base};
use crate::folder::scan::{OpEntry, Scan};
use crate::report::{MergeReport, Problem, ProblemKind};

/// What an incremental merge came to.
pub(crate) enum Incremental {
    /// Merged what was new (`changed`: anything at all).
    Merged {
        state: Box<MergedState>,
        report: MergeReport,
        changed: bool,
    },
    /// Only a merge of everything gives the right answer; here is the cached state, not
    /// touched (the caller carries it into that merge: the view never goes back), and why.
    StartOver(Box<MergedState>, &'static str),
    /// The same, once the cached state was taken apart: merge from the cache files.
    StartOverFromCacheFiles(&'static str),
}

/// Merges only what is new since `cached`, unless that might not give the answer a merge
/// from nothing would give — files gone, a fork forming, Automerge refusing a change.
pub(crate) fn merge_incremental(
    store: &Source<'_>,
    scan: &Scan,
    cached: MergedState,
) -> Incremental {
    let (new, gone) = compare(scan, &cached);
    tracing::debug!(new = new.len(), "incremental merge: new files found");
    if let Some(why) = start_over(store, scan, &cached, &new, gone) {
        return Incremental::StartOver(Box::new(cached), why);
    }
    let listed = |path: &str| {
        scan.ops
            .binary_search_by(|o| o.rel.as_str().cmp(path))
            .is_ok()
    };
    let carried_quarantine: Vec<Problem> = cached
        .quarantined
        .iter()
        .filter(|q| listed(q.path.as_str()))
        .map(|q| Problem::new(ProblemKind::Refused, q.path.clone(), q.reason.clone()))
        .collect();
    let (loaded, problems) = load_all(store, &new);
    let mut report = scan_report(scan, problems);
    report.forks = cached.forks.clone();
    report.rebased = cached.rebased.clone();
    report.quarantined = carried_quarantine;
    if loaded.is_empty() {
        // Nothing new to apply: what waits keeps waiting, as the cache already says.
        report.waiting = pending(&cached.waiting)
            .iter()
            .map(|l| {
                waiting_for(l, |d| {
                    cached
                        .doc
                        .get_missing_deps(std::slice::from_ref(d))
                        .is_empty()
                })
            })
            .collect();
        let changed = !new.is_empty();
        let report = finish(report, store, scan, &cached);
        return Incremental::Merged {
            state: Box::new(cached),
            report,
            changed,
        };
    }
    extend(store, scan, cached, loaded, report)
}

/// The listed op files `cached` did not merge (applied, folded by a snapshot, refused or
/// waiting), and whether an op file it applied is no longer listed. The listing and the
/// state's lists are sorted by path: one walk over each (at 100,000 files, sets of every
/// path cost tens of milliseconds a merge; the walk a few).
fn compare(scan: &Scan, cached: &MergedState) -> (Vec<OpEntry>, bool) {
    fn sorted(paths: &[String]) -> std::borrow::Cow<'_, [String]> {
        if paths.is_sorted() {
            std::borrow::Cow::Borrowed(paths)
        } else {
            let mut copy = paths.to_vec();
            copy.sort_unstable();
            std::borrow::Cow::Owned(copy)
        }
    }
    let (files, covered) = (sorted(&cached.files), sorted(&cached.covered));
    let others: HashSet<&str> = cached
        .quarantined
        .iter()
        .map(|q| q.path.as_str())
        .chain(cached.waiting.iter().map(|p| p.path.as_str()))
        .collect();
    let ops_prefix = format!("{}/", crate::folder::OPS_DIR);
    let mut applied = files
        .iter()
        .filter(|p| p.starts_with(&ops_prefix))
        .peekable();
    let mut folded = covered.iter().peekable();
    let mut new = Vec::new();
    let mut gone = false;
    for o in &scan.ops {
        let rel = o.rel.as_str();
        while applied.next_if(|p| p.as_str() < rel).is_some() {
            gone = true;
        }
        let was_applied = applied.next_if(|p| p.as_str() == rel).is_some();
        while folded.next_if(|p| p.as_str() < rel).is_some() {}
        let was_folded = folded.next_if(|p| p.as_str() == rel).is_some();
        if !was_applied && !was_folded && !others.contains(rel) {
            new.push(o.clone());
        }
    }
    (new, gone || applied.next().is_some())
}

/// Why only a merge of everything gives the right answer for this listing, if it does
/// (`new`: the listed op files `cached` did not merge; `gone`: an op file it applied is not
/// listed any more).
fn start_over(
    store: &Source<'_>,
    scan: &Scan,
    cached: &MergedState,
    new: &[OpEntry],
    gone: bool,
) -> Option<&'static str> {
    if scan.snapshot_fingerprints(&*store.folder) != cached.snapshots {
        return Some("snapshots or compaction records came, went or changed in place");
    }
    // Counted from everything: what the folder lost (a rollback, a lost snapshot, a sync tool).
    if gone {
        return Some("op files this view merged left the folder without a snapshot folding them");
    }
    // Names of one (actor, seq) sit side by side in the sorted listing: a new file's
    // neighbours tell (a walk of all 100,000 costs more than the rest of a small merge).
    let same = |a: &OpEntry, b: &OpEntry| a.actor() == b.actor() && a.seq == b.seq;
    let forming = new.iter().any(|n| {
        let Ok(at) = scan.ops.binary_search_by(|o| o.rel.cmp(&n.rel)) else {
            return false;
        };
        (at > 0 && same(&scan.ops[at - 1], n))
            || scan.ops.get(at + 1).is_some_and(|next| same(next, n))
    });
    if forming {
        return Some("two names for one (actor, seq), one of them new: a fork may be forming");
    }
    if cached.unprovided > 0 && !new.is_empty() {
        return Some(
            "the folder had lost changes this view holds, and new files may bring them back",
        );
    }
    None
}

/// Applies the new changes `loaded` onto the cached document, unless they meet a rebase
/// (a published rebase, a change built on a rebased one) or Automerge refuses one.
fn extend(
    store: &Source<'_>,
    scan: &Scan,
    cached: MergedState,
    mut loaded: Vec<super::Loaded>,
    report: MergeReport,
) -> Incremental {
    let MergedState {
        mut doc,
        files,
        covered,
        devices,
        quarantined,
        forks,
        rebased,
        waiting,
        snapshots,
        unprovided,
    } = cached;
    loaded.extend(pending(&waiting));
    // A published rebase, or an original whose published rebase the document holds, must
    // meet the other in the rebase: that takes every change.
    let first_changes: HashSet<&ActorId> = loaded
        .iter()
        .filter(|l| l.change().seq() == 1 && !doc.get_missing_deps(&[l.hash]).is_empty())
        .map(|l| &l.actor)
        .collect();
    let publishes = !first_changes.is_empty()
        && doc
            .get_changes_meta(&[])
            .iter()
            .map(|m| m.hash)
            .chain(loaded.iter().map(|l| l.hash))
            .any(|h| first_changes.contains(&crate::merge::rebase::rebased_actor(&h)));
    let rebased_actors: Vec<(ActorId, u64)> = loaded
        .iter()
        .map(|l| (crate::merge::rebase::rebased_actor(&l.hash), 1))
        .collect();
    if publishes || seq_taken(&mut doc, &rebased_actors) {
        return Incremental::StartOverFromCacheFiles("a published rebase meets its original");
    }
    // A change built on a rebased one must be rebased too: that takes every change.
    if !rebased.is_empty() {
        let from: HashSet<String> = rebased.iter().map(|r| r.from.clone()).collect();
        if loaded.iter().any(|l| {
            l.change()
                .deps()
                .iter()
                .any(|d| from.contains(&d.to_string()))
        }) {
            return Incremental::StartOverFromCacheFiles("a new change builds on a rebased one");
        }
    }
    tracing::debug!("incremental merge: checked for rebases");
    let Some(merged) = merge_loaded(Base::Cached(Box::new(doc)), loaded, report) else {
        return Incremental::StartOverFromCacheFiles(
            "the cached document cannot take the new changes",
        );
    };
    if !merged.quarantined.is_empty() || merged.report.forks.len() != forks.len() {
        return Incremental::StartOverFromCacheFiles("a new change was refused or forms a fork");
    }
    tracing::debug!("incremental merge: applied");
    let (mut state, mut report) = into_state(merged, files, devices);
    state.quarantined = quarantined;
    state.forks = forks;
    report.rebased.clone_from(&rebased);
    state.rebased = rebased;
    state.snapshots = snapshots;
    state.covered = covered;
    state.unprovided = unprovided;
    let report = finish(report, store, scan, &state);
    Incremental::Merged {
        state: Box::new(state),
        report,
        changed: true,
    }
}
