//! The reader: every op file in the folder into one Automerge document, in a way no single
//! file can break.
//!
//! 1. Scan and classify ([`crate::folder::scan`]); read each op file, check its BLAKE3 against its
//!    name, decode the envelope, parse the change, check its actor and seq against the path.
//! 2. Deduplicate by change hash. Resolve forks (two changes, one (actor, seq)) the same way
//!    on every device: at each forked (actor, seq), in order, keep the candidate with the
//!    lowest change hash and rebase the others with everything that depends on them
//!    ([`rebase`]: rewritten, never dropped).
//! 3. Order the rest topologically; changes whose dependencies are absent wait.
//! 4. Apply all of them in ONE `apply_changes` (one call costs O(document); per-file calls
//!    are quadratic), under `catch_unwind`. If Automerge refuses or panics, bisect to find
//!    the changes it refuses, quarantine them and their dependents, apply the rest.
//!
//! The outcome depends only on the set of files, never on the order they arrived in.

mod apply;
pub(crate) mod checkpoint;
mod cold;
mod incremental;
pub(crate) mod load;
mod plan;
pub(crate) use self::apply::logging;
pub(crate) mod rebase;
mod report;
pub(crate) mod snapshots;
mod stream;

use self::apply::{apply_chunk, apply_once, seq_taken};
pub(crate) use self::cold::merge_cold;
pub(crate) use self::incremental::{merge_incremental, Incremental};
use self::load::pending;
pub(crate) use self::load::{load_all, Loaded};
use self::plan::dedup;

pub(crate) use self::snapshots::load_snapshots;
use self::snapshots::Snapshots;
pub(crate) use crate::folder::Source;

use std::collections::{BTreeMap, HashMap, HashSet};

use automerge::{ActorId, Automerge, ChangeHash, ReadDoc};

use crate::merged::{MergedState, Pending};

use crate::folder::scan::Scan;
use crate::report::{MergeReport, Problem, ProblemKind};
use serde_bytes::ByteBuf;

pub(crate) use crate::doc::new_doc;

/// The outcome of merging a set of verified changes.
pub(crate) struct Merged {
    pub(crate) doc: Automerge,
    pub(crate) report: MergeReport,
    /// Every verified change of this merge, applied or not, deduplicated, in path order.
    pub(crate) items: Vec<Loaded>,
    /// Indices into `items` of the changes this merge applied, and of the op files whose
    /// change the base held already, in path order.
    pub(crate) applied: Vec<usize>,
    /// The verified changes left out — losing fork branches, refused changes, their
    /// dependents — by index, with the reason.
    pub(crate) quarantined: BTreeMap<usize, String>,
    /// Indices of the verified changes waiting for dependencies.
    pub(crate) waiting: Vec<usize>,
}

/// The document to merge into.
pub(crate) enum Base {
    /// An empty document; a refused change is found by bisection and left out.
    Careful,
    /// The cached document, taken by value (no copy): if Automerge refuses anything, the
    /// merge gives up (`None`) and the caller merges from nothing instead.
    Cached(Box<Automerge>),
}

/// The cached state after a merge: `files` and `devices` of what came before, plus what
/// this merge applied.
fn into_state(
    mut merged: Merged,
    mut files: Vec<String>,
    mut devices: BTreeMap<String, String>,
) -> (MergedState, MergeReport) {
    let waiting = merged
        .waiting
        .iter()
        .map(|&i| {
            let l = &merged.items[i];
            Pending {
                path: l.rel.clone(),
                device: l.device.clone(),
                change: ByteBuf::from(l.change().raw_bytes().to_vec()),
            }
        })
        .collect();

    let mut last_actor: Option<(&ActorId, &str)> = None;
    for &i in &merged.applied {
        let l = &merged.items[i];
        // Consecutive changes mostly share an actor: one map insert per run.
        let (actor, device) = (&l.actor, l.device.as_str());
        if last_actor != Some((actor, device)) {
            devices.insert(actor.to_hex_string(), device.to_string());
            last_actor = Some((actor, device));
        }
    }
    let new: Vec<String> = merged
        .applied
        .iter()
        .map(|&i| std::mem::take(&mut merged.items[i].rel))
        .filter(|rel| !rel.is_empty())
        .collect();
    add_sorted(&mut files, new);
    let report = std::mem::take(&mut merged.report);
    let state = MergedState {
        doc: merged.doc,
        files,
        devices,
        quarantined: Vec::new(),
        forks: report.forks.clone(),
        rebased: report.rebased.clone(),
        waiting,
        snapshots: Vec::new(),
        covered: Vec::new(),
        unprovided: 0,
    };
    (state, report)
}

/// Adds `new` to `files`, keeping it sorted: a few new paths (a watcher's merge of one file
/// into 100,000) go in where they belong, which costs far less than sorting them all again;
/// many are appended and sorted, unless they already follow in order.
fn add_sorted(files: &mut Vec<String>, new: Vec<String>) {
    if new.len() <= 64 && files.is_sorted() {
        for rel in new {
            let at = files.partition_point(|f| *f < rel);
            files.insert(at, rel);
        }
        return;
    }
    files.extend(new);
    if !files.is_sorted() {
        files.sort_unstable();
    }
}

/// True if two op file names claim one (actor, seq): a fork, or the start of one.
fn has_fork_names(scan: &Scan) -> bool {
    scan.ops
        .windows(2)
        .any(|w| w[0].actor() == w[1].actor() && w[0].seq == w[1].seq)
}

/// Merges verified changes into `base`. `None` only for a cached base that Automerge
/// refused to extend.
///
/// (Over 80 lines: one pipeline — dedup, rebase forks, plan, apply, report — whose steps
/// share the items' indices.)
pub(crate) fn merge_loaded(
    mut base: Base,
    loaded: Vec<Loaded>,
    mut report: MergeReport,
) -> Option<Merged> {
    let mut items = dedup(loaded);
    // Forks are rebased. A cached base holds changes the rebase must see: give up on it.
    let rebased = rebase::rebase_forks(&mut items);
    // A rewrite resolves op ids against the whole history: only a merge of every change
    // (no cached base) has it.
    if (!rebased.forks.is_empty() || !rebased.rebased.is_empty() || !rebased.deferred.is_empty())
        && matches!(base, Base::Cached(_))
    {
        return None;
    }
    // Rewrites that must wait (see `rebase::Outcome::deferred`) are never applied as they are.
    let deferred: HashSet<ChangeHash> = rebased.deferred.iter().map(|&i| items[i].hash).collect();
    // A change for an (actor, seq) the base already holds under another hash (a rewrite the
    // base derived, a fork whose other side has no file here): one document cannot hold
    // both, and Automerge must never be asked to. Decide from everything.
    if let Base::Cached(doc) = &mut base {
        if takes_a_held_seq(doc, &items) {
            return None;
        }
    }
    let cannot_rebase: HashMap<ChangeHash, String> = rebased
        .failed
        .iter()
        .map(|(i, reason)| (items[*i].hash, reason.clone()))
        .collect();
    report.forks.extend(rebased.forks);
    report.rebased = rebased.rebased;
    // A rewritten change may already be here, carried from the cache.
    if !report.rebased.is_empty() {
        items = dedup(items);
    }
    let base_doc = match &base {
        Base::Careful => None,
        Base::Cached(doc) => Some(&**doc),
    };
    // `get_missing_deps` asks the change graph; `get_change_by_hash` would rebuild the change.
    let in_base = |h: &ChangeHash| {
        base_doc.is_some_and(|d| d.get_missing_deps(std::slice::from_ref(h)).is_empty())
    };
    // Op files whose change the base already holds are merged too (they provide it): a
    // compaction folds them, and the folder is not taken to lack them.
    let held: Vec<usize> = (0..items.len())
        .filter(|&i| !items[i].rel.is_empty() && in_base(&items[i].hash))
        .collect();
    let plan::Plan {
        index,
        to_apply,
        waiting,
        mut quarantined,
    } = plan::order(&items, in_base, &deferred, cannot_rebase);
    report
        .waiting
        .extend(waiting.iter().map(|(_, w)| w.clone()));
    let waiting: Vec<usize> = waiting.into_iter().map(|(i, _)| i).collect();
    let doc = match base {
        Base::Careful => apply_chunk(new_doc(), &to_apply, &mut items, &index, &mut quarantined),
        Base::Cached(doc) => apply_once(*doc, &to_apply, &mut items)?,
    };

    for (&i, reason) in &quarantined {
        report.quarantined.push(Problem::new(
            ProblemKind::Refused,
            items[i].rel.clone(),
            reason.clone(),
        ));
    }
    report.quarantined.sort_by(|a, b| a.path.cmp(&b.path));
    report.waiting.sort_by(|a, b| a.path.cmp(&b.path));
    let mut applied: Vec<usize> = to_apply
        .into_iter()
        .chain(held)
        .filter(|i| !quarantined.contains_key(i))
        .collect();
    applied.sort_unstable();
    applied.dedup();
    Some(Merged {
        doc,
        report,
        items,
        applied,
        quarantined,
        waiting,
    })
}

/// True when a change of `items` the document `doc` lacks has an (actor, seq) `doc` holds
/// under another hash.
fn takes_a_held_seq(doc: &mut Automerge, items: &[Loaded]) -> bool {
    let mut first_new: HashMap<&ActorId, u64> = HashMap::new();
    for l in items {
        if doc
            .get_missing_deps(std::slice::from_ref(&l.hash))
            .is_empty()
        {
            continue;
        }
        let seq = l.change().seq();
        first_new
            .entry(&l.actor)
            .and_modify(|s| *s = (*s).min(seq))
            .or_insert(seq);
    }
    let first_new: Vec<(ActorId, u64)> =
        first_new.into_iter().map(|(a, s)| (a.clone(), s)).collect();
    !first_new.is_empty() && seq_taken(doc, &first_new)
}

#[cfg(test)]
mod tests {
    use super::report::scan_report;
    use super::stream::merge_streaming;
    use super::*;
    use crate::{render, Options, PatchOp, Store};

    /// Streaming in steps of any size gives what the careful merge gives, including a
    /// change that waits for a dependency in a later step or one that never arrives.
    #[test]
    fn streaming_in_small_steps_equals_the_careful_merge() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let device = |n: &str| Options::new().state_dir(dir.path().join(n)).device(n);
        Store::init(&store, device("a"), Some(&serde_json::json!({"l": []}))).unwrap();
        for round in 0..6 {
            for d in ["a", "b", "c"] {
                let s = Store::open(&store, device(d)).unwrap();
                let op = PatchOp::insert("/l/0", serde_json::json!(format!("{d}{round}")));
                s.apply_patch(&[op]).unwrap();
            }
        }
        // Make one change wait forever: remove the file of a change others depend on.
        let victim = crate::folder::scan::scan(&crate::folders::Local::new(&store), None).ops[4]
            .rel
            .clone();
        std::fs::remove_file(store.join(&victim)).unwrap();
        let scan = crate::folder::scan::scan(&crate::folders::Local::new(&store), None);
        let (loaded, problems) = load_all(&Source::plain(&store), &scan.ops);
        let careful = merge_loaded(Base::Careful, loaded, scan_report(&scan, problems)).unwrap();
        assert!(!careful.waiting.is_empty());
        for step in [1, 2, 3, 7, 1000] {
            let streamed = merge_streaming(&Source::plain(&store), &scan, step).unwrap();
            assert_eq!(
                render::document(&streamed.doc),
                render::document(&careful.doc),
                "step {step}"
            );
            assert_eq!(streamed.report, careful.report, "step {step}");
            assert_eq!(streamed.applied, careful.applied, "step {step}");
            assert_eq!(streamed.waiting, careful.waiting, "step {step}");
        }
    }
}
