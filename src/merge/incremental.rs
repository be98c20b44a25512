//! The incremental merge: only what is new since the cached state, or `None` when only a
//! merge of everything gives the right answer.

use crate::folder::Source;
use std::collections::HashSet;

use automerge::{ActorId, ReadDoc};

use crate::merged::MergedState;

use super::report::waiting_for;
use super::{finish, into_state, load_all, merge_loaded, pending, scan_report, seq_taken, Base};
use crate::folder::scan::{OpEntry, Scan};
use crate::report::{MergeReport, Problem, ProblemKind};

/// Merges only what is new since `cached`. `Err` when that might not give the answer a
/// merge from nothing would give — files gone, a fork forming, Automerge refusing a change —
/// and the caller must merge from nothing; the error gives `cached` back when it was not
/// touched yet (the caller carries it into that merge: the view never goes back). The flag
/// says whether anything changed.
pub(crate) fn merge_incremental(
    store: &Source<'_>,
    scan: &Scan,
    cached: MergedState,
) -> Result<(MergedState, MergeReport, bool), Option<Box<MergedState>>> {
    let known: HashSet<&str> = cached
        .files
        .iter()
        .map(String::as_str)
        .chain(cached.covered.iter().map(String::as_str))
        .chain(cached.quarantined.iter().map(|q| q.path.as_str()))
        .chain(cached.waiting.iter().map(|p| p.path.as_str()))
        .collect();
    // Snapshots or compaction records came, went or changed in place: decide from
    // everything.
    if scan.snapshot_fingerprints(store) != cached.snapshots {
        drop(known);
        return Err(Some(Box::new(cached)));
    }
    let present: HashSet<&str> = scan.ops.iter().map(|o| o.rel.as_str()).collect();
    // Op files this view merged left the folder without a snapshot that folds them (a
    // rollback, a lost snapshot, a sync tool): count from everything what the folder lost.
    let gone = cached
        .files
        .iter()
        .any(|f| f.starts_with(crate::folder::OPS_DIR) && !present.contains(f.as_str()));
    if gone {
        drop((known, present));
        return Err(Some(Box::new(cached)));
    }
    // Two names for one (actor, seq), one of them new: a fork may be forming.
    let forming = scan.ops.windows(2).any(|w| {
        w[0].actor() == w[1].actor()
            && w[0].seq == w[1].seq
            && !(known.contains(w[0].rel.as_str()) && known.contains(w[1].rel.as_str()))
    });
    if forming {
        drop((known, present));
        return Err(Some(Box::new(cached)));
    }
    let new: Vec<OpEntry> = scan
        .ops
        .iter()
        .filter(|o| !known.contains(o.rel.as_str()))
        .cloned()
        .collect();
    // The folder had lost changes this view holds: new files may bring them back.
    if cached.unprovided > 0 && !new.is_empty() {
        drop((known, present));
        return Err(Some(Box::new(cached)));
    }
    let carried_quarantine: Vec<Problem> = cached
        .quarantined
        .iter()
        .filter(|q| present.contains(q.path.as_str()))
        .map(|q| Problem::new(ProblemKind::Refused, q.path.clone(), q.reason.clone()))
        .collect();
    drop(known);
    drop(present);
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
        return Ok((cached, report, changed));
    }
    let MergedState {
        doc,
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
    let mut loaded = loaded;
    loaded.extend(pending(&waiting));
    // A published rebase, or an original whose published rebase the document holds, must
    // meet the other in the rebase: that takes every change.
    let mut doc = doc;
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
        return Err(None);
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
            return Err(None);
        }
    }
    let merged = merge_loaded(Base::Cached(Box::new(doc)), loaded, report).ok_or(None)?;
    if !merged.quarantined.is_empty() || merged.report.forks.len() != forks.len() {
        return Err(None);
    }
    let (mut state, mut report) = into_state(merged, files, devices);
    state.quarantined = quarantined;
    state.forks = forks;
    report.rebased.clone_from(&rebased);
    state.rebased = rebased;
    state.snapshots = snapshots;
    state.covered = covered;
    state.unprovided = unprovided;
    let report = finish(report, store, scan, &state);
    Ok((state, report, true))
}
