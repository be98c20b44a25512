//! Choosing a checkpoint to start a cold merge from (docs/FORMAT.md §19): the newest one that
//! verifies, covers op files the snapshots do not, and passes the checks that keep a damaged,
//! stale or lying checkpoint from hiding a change. A checkpoint that fails is reported and
//! skipped; the merge then reads every op file as it would without it.

use std::collections::{BTreeMap, HashSet};

use automerge::ReadDoc;

use super::snapshots::{read_whole, Snapshots, ValidSnapshot};
use super::{load_all, Source};
use crate::folder::scan::{OpEntry, Scan};
use crate::report::{Problem, ProblemKind};

/// A verified checkpoint and the op files of this listing it covers (beyond the snapshots).
pub(crate) struct Chosen {
    pub(crate) checkpoint: ValidSnapshot,
    /// Paths of the listed op files whose changes the checkpoint holds, sorted.
    pub(crate) covered: Vec<String>,
}

/// The checkpoint to start from, if any is worth it, and what was wrong with those skipped.
/// Candidates go newest first (by the change count each claims); the first that passes
/// every check is chosen, so a damaged newest one costs one extra read, not the checkpoint.
pub(crate) fn choose(
    store: &Source<'_>,
    store_id: &str,
    scan: &Scan,
    snaps: &Snapshots,
    snap_covered: &HashSet<&str>,
) -> (Option<Chosen>, Vec<Problem>) {
    let mut problems = Vec::new();
    if scan.checkpoints.is_empty() || store.doc.is_some() {
        return (None, problems);
    }
    let mut candidates: Vec<(u64, &String)> = Vec::new();
    for rel in &scan.checkpoints {
        match store.claimed_changes(rel) {
            Ok(claimed) => candidates.push((claimed, rel)),
            // Torn, or not SQLite: reported without reading further.
            Err(e) => problems.push(Problem::new(
                e.kind(),
                rel.clone(),
                format!("checkpoint skipped: {e}"),
            )),
        }
    }
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let most_in_snapshots = snaps
        .valid
        .iter()
        .map(|s| s.snapshot.changes)
        .max()
        .unwrap_or(0);
    for (claimed, rel) in candidates {
        // One no bigger than a snapshot adds nothing a snapshot does not (and a claim that
        // lies low only loses its own turn).
        if claimed <= most_in_snapshots {
            continue;
        }
        match verify(store, store_id, scan, rel, snap_covered) {
            Ok(Some(chosen)) => return (Some(chosen), problems),
            Ok(None) => {}
            Err((kind, reason)) => problems.push(Problem::new(
                kind,
                rel.clone(),
                format!("checkpoint skipped: {reason}"),
            )),
        }
    }
    (None, problems)
}

/// Verifies the checkpoint at `rel`: read whole as a snapshot is (hash, integrity, schema,
/// store, the document loads with its heads), it says it is a checkpoint, holds as many
/// changes as it claims and names as many op files, covers at most one op file per (actor,
/// seq), every one of them is here (or folded by a snapshot), and it holds the change
/// of the newest op file it covers of each actor (read from that file, which brings the
/// actor's earlier changes along: each change depends on its actor's previous one).
/// `Ok(None)` when it covers an op file this listing lacks (and no snapshot folds), or
/// none that a snapshot does not.
pub(crate) fn verify(
    store: &Source<'_>,
    store_id: &str,
    scan: &Scan,
    rel: &str,
    snap_covered: &HashSet<&str>,
) -> Result<Option<Chosen>, (ProblemKind, String)> {
    let damaged = |reason: &str| (ProblemKind::Damaged, reason.to_string());
    let valid = read_whole(store, store_id, rel)?;
    if valid.snapshot.checkpoint.is_none() {
        return Err(damaged("it does not say it is a checkpoint"));
    }
    if valid.doc.stats().num_changes != valid.snapshot.changes {
        return Err(damaged(
            "its document does not hold the number of changes it claims",
        ));
    }
    if valid.snapshot.folded_ops.len() as u64 != valid.snapshot.changes {
        return Err(damaged(&format!(
            "it names {} op files for {} changes",
            valid.snapshot.folded_ops.len(),
            valid.snapshot.changes
        )));
    }
    // Both lists are sorted by path (actor, then seq): one walk over each, no sets.
    let named = &valid.snapshot.folded_ops;
    fn slot(path: &str) -> Option<&str> {
        path.rsplit_once('-').map(|(slot, _)| slot)
    }
    if named.windows(2).any(|w| slot(&w[0].0) == slot(&w[1].0)) {
        return Err(damaged("it covers two op files of one (actor, seq)"));
    }
    // Every op file it covers must be here (or folded by a snapshot): otherwise it holds
    // changes this folder does not provide (a file still on its way, or one the folder
    // lost), and this device would read a document the others do not.
    let mut covered: Vec<&OpEntry> = Vec::with_capacity(named.len());
    let mut listed = scan.ops.iter().peekable();
    for (path, _) in named {
        while listed.next_if(|o| o.rel.as_str() < path.as_str()).is_some() {}
        match listed.next_if(|o| &o.rel == path) {
            Some(o) if !snap_covered.contains(path.as_str()) => covered.push(o),
            Some(_) => {}
            None if snap_covered.contains(path.as_str()) => {}
            None => {
                tracing::debug!(
                    checkpoint = rel,
                    absent = %path,
                    "a checkpoint covers an op file not here: not used"
                );
                return Ok(None);
            }
        }
    }
    if covered.is_empty() {
        return Ok(None);
    }
    // The newest covered op file of each actor (entries are sorted by path: actor, then seq).
    let mut newest: BTreeMap<&str, &OpEntry> = BTreeMap::new();
    for o in &covered {
        newest.insert(o.actor(), o);
    }
    let probes: Vec<OpEntry> = newest.values().map(|o| (*o).clone()).collect();
    let (loaded, failed) = load_all(store, &probes);
    if let Some(p) = failed.first() {
        return Err(damaged(&format!(
            "{} it covers could not be checked: {}",
            p.path, p.reason
        )));
    }
    if let Some(l) = loaded
        .iter()
        .find(|l| valid.doc.get_change_meta_by_hash(&l.hash).is_none())
    {
        return Err(damaged(&format!(
            "it does not hold the change of {}, which it says it covers",
            l.rel
        )));
    }
    Ok(Some(Chosen {
        covered: covered.iter().map(|o| o.rel.clone()).collect(),
        checkpoint: valid,
    }))
}
