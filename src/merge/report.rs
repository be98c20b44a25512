//! The report builder: what the scan and the loading found, one rule for "waiting", one
//! rule for "incomplete" (gaps), one count of what the folder no longer provides.

use std::collections::HashSet;

use automerge::{ActorId, Automerge, ChangeHash};

use crate::merged::MergedState;

use super::{Loaded, Snapshots};
use crate::folder::scan::Scan;
use crate::report::{MergeReport, Problem, ProblemKind, Waiting};

/// How many changes of `carry` (what this device held before) neither a valid snapshot nor
/// an op file in the folder provides: the folder lost them.
pub(super) fn unprovided(
    carry: &Automerge,
    snaps: &Snapshots,
    items: &[Loaded],
    rebased: &[crate::report::Rebased],
    scan: &Scan,
) -> usize {
    let mut present: HashSet<&str> = scan.ops.iter().map(|o| o.rel.as_str()).collect();
    present.extend(snaps.valid.iter().map(|s| s.rel.as_str()));
    let mut provided: HashSet<ChangeHash> = items
        .iter()
        .filter(|l| present.contains(l.rel.as_str()))
        .map(|l| l.hash)
        .collect();
    for s in &snaps.valid {
        provided.extend(s.doc.get_changes_meta(&[]).iter().map(|m| m.hash));
    }
    // A change a rebase replaced here is provided when its op file is here or its rewrite
    // is provided; so is any rewrite of it (whichever form the rewrite took before).
    let mut rewritten: HashSet<ActorId> = HashSet::new();
    for r in rebased {
        let (Ok(from), Ok(to)) = (r.from.parse::<ChangeHash>(), r.to.parse::<ChangeHash>()) else {
            continue;
        };
        if present.contains(r.path.as_str()) || provided.contains(&to) {
            provided.insert(from);
            rewritten.insert(crate::merge::rebase::rebased_actor(&from));
        }
    }
    carry
        .get_changes_meta(&[])
        .iter()
        .filter(|m| !provided.contains(&m.hash) && !rewritten.contains(m.actor.as_ref()))
        .count()
}

/// Why this view may lack history the folder once had — one rule for every merge:
/// - a compaction record whose snapshot this view has not merged, unless the document holds
///   every head the record names (a repair, or a newer snapshot, brought them back);
/// - otherwise, in a store that has compacted (a snapshot, a record or
///   `features/snapshots`), another device's latest heartbeat naming heads this view lacks:
///   the sync tool may have delivered compaction's deletions before its snapshot and record.
pub(crate) fn gaps(store: &super::Source<'_>, scan: &Scan, state: &MergedState) -> Vec<Problem> {
    let mut out = Vec::new();
    for rel in &scan.records {
        let Some(record) = store
            .folder
            .read(rel)
            .ok()
            .and_then(|b| crate::format::record::decode(&b).ok())
        else {
            continue; // reported as a problem file
        };
        let snapshot_rel = crate::folder::snapshot_rel(&record.snapshot);
        if state.files.contains(&snapshot_rel) {
            continue;
        }
        let held = record.heads.iter().all(|h| {
            h.parse::<ChangeHash>()
                .is_ok_and(|h| state.doc.get_change_meta_by_hash(&h).is_some())
        });
        // A later snapshot this view merged folds it (a record the sync tool brought back).
        let folded = || {
            state
                .files
                .iter()
                .filter(|f| crate::folder::snapshot_name(f).is_some())
                .any(|f| {
                    store
                        .doc_rows(f)
                        .is_ok_and(|rows| rows.folds(&record.snapshot))
                })
        };
        if !held && !folded() {
            out.push(Problem::new(
                ProblemKind::Gap,
                rel.clone(),
                format!("{snapshot_rel} is missing or invalid: this view may lack history that was compacted"),
            ));
        }
    }
    // In a store that has compacted, heads another device's latest beat names that this
    // view lacks may be history whose files compaction deleted and whose snapshot has not
    // arrived. (Elsewhere they are only files still on their way: the usual sync lag.)
    let compacted = !scan.snapshots.is_empty()
        || !scan.records.is_empty()
        || scan.has_feature(&*store.folder, crate::format::snapshot::FEATURE);
    // Heartbeats name the root document's heads only: a document's reader has no such rule
    // (docs/FORMAT.md §18).
    if compacted && out.is_empty() && store.doc.is_none() {
        for actor in crate::folder::beat_actors(&*store.folder) {
            let Some((rel, beat)) = crate::folder::latest_beat(store, &actor) else {
                continue;
            };
            let lacking = beat
                .heads
                .iter()
                .filter(|h| {
                    h.parse::<ChangeHash>()
                        .map_or(true, |h| state.doc.get_change_meta_by_hash(&h).is_none())
                })
                .count();
            if lacking > 0 {
                out.push(Problem::new(
                    ProblemKind::Gap,
                    rel,
                    format!(
                        "{} has {lacking} change(s) at its heads that this view lacks, in a store that has compacted: this view may lack history that was compacted",
                        beat.device
                    ),
                ));
            }
        }
    }
    out
}

/// The report of what the scan and the loading found.
pub(super) fn scan_report(scan: &Scan, load_problems: Vec<Problem>) -> MergeReport {
    let mut report = MergeReport {
        problems: scan.problems.clone(),
        unknown_features: scan.unknown_features.clone(),
        ..MergeReport::default()
    };
    report.problems.extend(load_problems);
    report.problems.sort_by(|a, b| a.path.cmp(&b.path));
    report
}

/// The one "waiting" rule: a verified change that is not applied waits for those of its
/// dependencies that are not applied (`applied` says which are, in the base or in this
/// merge). Every merge reports waiting changes through this.
pub(super) fn waiting_for(l: &Loaded, applied: impl Fn(&ChangeHash) -> bool) -> Waiting {
    Waiting {
        path: l.rel.clone(),
        missing: l
            .change()
            .deps()
            .iter()
            .filter(|d| !applied(d))
            .map(ChangeHash::to_string)
            .collect(),
    }
}

/// The last step of every merge's report, one rule for all: what the folder no longer
/// provides (the state's count), and why the view may be incomplete ([`gaps`]).
pub(super) fn finish(
    mut report: MergeReport,
    store: &super::Source<'_>,
    scan: &Scan,
    state: &MergedState,
) -> MergeReport {
    report.unprovided = state.unprovided;
    report.incomplete = gaps(store, scan, state);
    report
}
