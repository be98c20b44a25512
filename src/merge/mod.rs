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

pub(crate) mod rebase;
pub(crate) mod state;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc, TextEncoding};

use self::state::{MergedState, Pending, Quarantined};
use crate::folder::names;
use crate::format::opfile;

use crate::folder::scan::{OpEntry, Scan};
use crate::report::{MergeReport, Problem, ProblemKind, Waiting};
use serde_bytes::ByteBuf;

/// The text encoding of every document crdtdir builds: positions are Unicode code points,
/// set explicitly so no Cargo feature elsewhere in an app can change it.
pub(crate) const TEXT_ENCODING: TextEncoding = TextEncoding::UnicodeCodePoint;

/// A new empty document with crdtdir's text encoding.
pub(crate) fn new_doc() -> Automerge {
    Automerge::new_with_encoding(TEXT_ENCODING)
}

/// A verified change and where it came from.
pub(crate) struct Loaded {
    pub(crate) rel: String,
    pub(crate) device: String,
    /// The change itself, until the merge hands it to Automerge (see [`Loaded::change`]).
    pub(crate) held: Option<Change>,
    pub(crate) hash: ChangeHash,
    pub(crate) actor: ActorId,
}

impl Loaded {
    pub(crate) fn new(rel: String, device: String, change: Change) -> Loaded {
        Loaded {
            rel,
            device,
            hash: change.hash(),
            actor: change.actor_id().clone(),
            held: Some(change),
        }
    }

    /// The change. Only a merge's apply step takes it out, after every other use.
    pub(crate) fn change(&self) -> &Change {
        self.held
            .as_ref()
            .expect("a change is read after it was applied")
    }
}

/// Reads and verifies one op file. `Err` says why it is skipped.
pub(crate) fn load(store: &Path, entry: &OpEntry) -> Result<Loaded, Problem> {
    let skip = |kind, reason: String| Problem::new(kind, entry.rel.clone(), reason);
    let bytes = std::fs::read(store.join(&entry.rel))
        .map_err(|e| skip(ProblemKind::Unreadable, format!("unreadable: {e}")))?;
    if names::file_hash_hex(&bytes) != entry.hash() {
        return Err(skip(
            ProblemKind::Damaged,
            "content does not match the hash in its name (damaged or truncated)".into(),
        ));
    }
    let envelope = opfile::decode(&bytes).map_err(|e| {
        let kind = match e {
            opfile::DecodeError::Newer(_) => ProblemKind::Newer,
            _ => ProblemKind::Damaged,
        };
        skip(kind, e.to_string())
    })?;
    let change = Change::from_bytes(envelope.change).map_err(|e| {
        skip(
            ProblemKind::Damaged,
            format!("not an Automerge change: {e}"),
        )
    })?;
    let actor = change.actor_id().to_hex_string();
    if actor != entry.actor() {
        return Err(skip(
            ProblemKind::Damaged,
            format!("change belongs to actor {actor}, not to its folder"),
        ));
    }
    if change.seq() != entry.seq {
        return Err(skip(
            ProblemKind::Damaged,
            format!("change has seq {}, not the seq in its name", change.seq()),
        ));
    }
    Ok(Loaded::new(entry.rel.clone(), envelope.device, change))
}

/// Reads and verifies op files on every core; results come back in the order of `entries`.
pub(crate) fn load_all(store: &Path, entries: &[OpEntry]) -> (Vec<Loaded>, Vec<Problem>) {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = entries.len().div_ceil(workers).max(256);
    let results: Vec<Vec<Result<Loaded, Problem>>> = std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|e| load(store, e)).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("loading op files panicked"))
            .collect()
    });
    let mut loaded = Vec::with_capacity(entries.len());
    let mut problems = Vec::new();
    for r in results.into_iter().flatten() {
        match r {
            Ok(l) => loaded.push(l),
            Err(p) => problems.push(p),
        }
    }
    (loaded, problems)
}

/// The outcome of merging a set of verified changes.
pub(crate) struct Merged {
    pub(crate) doc: Automerge,
    pub(crate) report: MergeReport,
    /// Every verified change of this merge, applied or not, deduplicated, in path order.
    pub(crate) items: Vec<Loaded>,
    /// Indices into `items` of the changes this merge applied, in path order.
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

/// Merges everything in the folder from nothing. `carry` is a cached state whose changes
/// stay in the result even when their files are gone (the view never goes back).
pub(crate) fn merge_cold(
    store: &Path,
    store_id: &str,
    scan: &Scan,
    carry: Option<MergedState>,
) -> (MergedState, MergeReport) {
    let snaps = load_snapshots(store, store_id, scan);
    // Op files a valid snapshot folds in are its to give: not read again.
    let covered: HashSet<&str> = snaps
        .valid
        .iter()
        .flat_map(|s| s.snapshot.folded_ops.iter().map(|(p, _)| p.as_str()))
        .collect();
    let ops: Vec<OpEntry> = scan
        .ops
        .iter()
        .filter(|o| !covered.contains(o.rel.as_str()))
        .cloned()
        .collect();
    let uncovered = Scan {
        ops,
        ..Scan::default()
    };
    // What the scan, the snapshots and the loading (`load`) found.
    let report = |load: Vec<Problem>| {
        scan_report(
            scan,
            load.into_iter()
                .chain(snaps.problems.iter().cloned())
                .collect(),
        )
    };
    // Everything in memory, forks resolved, refused changes found by bisection: for forks,
    // changes known only from the cache or a snapshot, and anything the quick ways refuse.
    let careful = || {
        let (mut loaded, problems) = load_all(store, &uncovered.ops);
        let mut have: HashSet<ChangeHash> = loaded.iter().map(|l| l.hash).collect();
        let devices = carry
            .as_ref()
            .map(|c| c.devices.clone())
            .unwrap_or_default();
        let mut extra = |doc: &Automerge, rel: &str| {
            for change in doc.get_changes(&[]) {
                if have.insert(change.hash()) {
                    let actor = change.actor_id().to_hex_string();
                    let device = devices.get(&actor).cloned().unwrap_or_default();
                    loaded.push(Loaded::new(rel.to_string(), device, change));
                }
            }
        };
        for s in &snaps.valid {
            extra(&s.doc, &s.rel);
        }
        if let Some(c) = &carry {
            extra(&c.doc, "");
            loaded.extend(pending(&c.waiting));
        }
        merge_loaded(Base::Careful, loaded, report(problems))
            .expect("a careful merge always completes")
    };
    let merged = if snaps.valid.is_empty() && carry.is_none() {
        // The usual case streams.
        let streamed = if has_fork_names(scan) {
            None
        } else {
            merge_streaming(store, scan, STREAM_CHUNK)
        };
        streamed.map(|mut m| {
            // The stream reported what the scan and the loading found; the snapshots add theirs.
            m.report.problems.extend(snaps.problems.iter().cloned());
            m.report.problems.sort_by(|a, b| a.path.cmp(&b.path));
            m
        })
    } else {
        // Snapshots (and what the cache knows) as the base, the op files they do not cover
        // on top, in one batch.
        // One snapshot is the base as it is; others (and the cache) merge into it.
        let (mut base, rest) = match (&carry, snaps.valid.split_first()) {
            (None, Some((first, rest))) => (first.doc.clone(), rest),
            (Some(c), _) => (c.doc.clone(), &snaps.valid[..]),
            (None, None) => (new_doc(), &snaps.valid[..]),
        };
        let merged_bases = rest.iter().all(|s| {
            let mut other = s.doc.clone();
            catch_unwind(AssertUnwindSafe(|| base.merge(&mut other).is_ok())).unwrap_or(false)
        });
        if merged_bases && !has_fork_names(scan) {
            let (mut loaded, problems) = load_all(store, &uncovered.ops);
            if let Some(c) = &carry {
                loaded.extend(pending(&c.waiting));
            }
            // Anything left waiting may wait for a change that only a rebase provides.
            merge_loaded(Base::Cached(Box::new(base)), loaded, report(problems)).filter(|m| {
                m.report.forks.is_empty() && m.quarantined.is_empty() && m.waiting.is_empty()
            })
        } else {
            None
        }
    };
    let merged = merged.unwrap_or_else(careful);
    let quarantined = merged
        .quarantined
        .iter()
        .map(|(&i, reason)| Quarantined {
            path: merged.items[i].rel.clone(),
            hash: merged.items[i].hash.to_string(),
            reason: reason.clone(),
        })
        .collect();
    let unprovided = carry.as_ref().map_or(0, |c| {
        unprovided(&c.doc, &snaps, &merged.items, &merged.report.rebased, scan)
    });
    let (devices, carried_rebased) = carry.map(|c| (c.devices, c.rebased)).unwrap_or_default();
    let files: Vec<String> = snaps.valid.iter().map(|s| s.rel.clone()).collect();
    let (mut state, mut report) = into_state(merged, files, devices);
    // What the snapshots fold in counts as merged: their op files are never read again.
    state.covered = covered.iter().map(|p| p.to_string()).collect();
    state.covered.sort_unstable();
    state.unprovided = unprovided;
    report.unprovided = unprovided;
    report.incomplete = gaps(store, scan, &state);
    state.quarantined = quarantined;
    // Rewrites this device made before stay known even when their originals are gone.
    for r in carried_rebased {
        if !state.rebased.iter().any(|k| k.from == r.from) {
            state.rebased.push(r);
        }
    }
    state.snapshots = scan.snapshot_fingerprints(store);
    (state, report)
}

/// How many changes of `carry` (what this device held before) neither a valid snapshot nor
/// an op file in the folder provides: the folder lost them.
fn unprovided(
    carry: &Automerge,
    snaps: &Snapshots,
    items: &[Loaded],
    rebased: &[crate::merge::rebase::Rebased],
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
pub(crate) fn gaps(store: &Path, scan: &Scan, state: &MergedState) -> Vec<Problem> {
    let mut out = Vec::new();
    for rel in &scan.records {
        let Some(record) = std::fs::read(store.join(rel))
            .ok()
            .and_then(|b| crate::format::snapshot::decode_record(&b))
        else {
            continue; // reported as a problem file
        };
        let snapshot_rel = format!(
            "{}/{}",
            crate::format::snapshot::SNAPSHOTS_DIR,
            record.snapshot
        );
        if state.files.contains(&snapshot_rel) {
            continue;
        }
        let held = record.heads.iter().all(|h| {
            h.parse::<ChangeHash>()
                .is_ok_and(|h| state.doc.get_change_meta_by_hash(&h).is_some())
        });
        if !held {
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
        || store
            .join(crate::format::marker::FEATURES_DIR)
            .join(crate::format::snapshot::FEATURE)
            .is_file();
    if compacted && out.is_empty() {
        for actor in crate::format::beat::actors(store) {
            let Some((rel, beat)) = crate::format::beat::latest(store, &actor) else {
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

/// A snapshot read back from the folder and verified.
pub(crate) struct ValidSnapshot {
    pub(crate) rel: String,
    pub(crate) snapshot: crate::format::snapshot::Snapshot,
    pub(crate) doc: Automerge,
}

/// The folder's snapshots: the valid ones, and the problems.
pub(crate) struct Snapshots {
    pub(crate) valid: Vec<ValidSnapshot>,
    pub(crate) problems: Vec<Problem>,
}

/// Reads and verifies every snapshot: its hash against its name, SQLite's integrity
/// check, its schema version, its store id, and that Automerge loads its document.
pub(crate) fn load_snapshots(store: &Path, store_id: &str, scan: &Scan) -> Snapshots {
    let mut out = Snapshots {
        valid: Vec::new(),
        problems: Vec::new(),
    };
    for rel in &scan.snapshots {
        let verdict = (|| -> Result<ValidSnapshot, (ProblemKind, String)> {
            let damaged = |reason: String| (ProblemKind::Damaged, reason);
            let bytes = std::fs::read(store.join(rel))
                .map_err(|e| (ProblemKind::Unreadable, format!("unreadable: {e}")))?;
            let name = rel.rsplit('/').next().unwrap_or_default();
            if crate::format::snapshot::file_name(&bytes) != name {
                return Err(damaged(
                    "content does not match the hash in its name (damaged)".into(),
                ));
            }
            let snapshot = crate::format::snapshot::read(&bytes).map_err(|e| {
                let kind = if e.newer {
                    ProblemKind::Newer
                } else {
                    ProblemKind::Damaged
                };
                (kind, e.reason)
            })?;
            if snapshot.store != store_id {
                return Err((ProblemKind::Foreign, "snapshot of another store".into()));
            }
            let doc = catch_unwind(|| {
                Automerge::load_with_options(
                    &snapshot.automerge,
                    automerge::LoadOptions::new()
                        .on_partial_load(automerge::OnPartialLoad::Error)
                        .text_encoding(TEXT_ENCODING),
                )
            })
            .map_err(|_| damaged("Automerge failed on the snapshot's document".into()))?
            .map_err(|e| damaged(format!("the snapshot's document does not load: {e}")))?;
            let mut heads: Vec<String> =
                doc.get_heads().iter().map(ChangeHash::to_string).collect();
            let mut claimed = snapshot.heads.clone();
            heads.sort();
            claimed.sort();
            if heads != claimed {
                return Err(damaged(
                    "the snapshot's document does not have the heads it claims".into(),
                ));
            }
            Ok(ValidSnapshot {
                rel: rel.clone(),
                snapshot,
                doc,
            })
        })();
        match verdict {
            Ok(v) => out.valid.push(v),
            Err((kind, reason)) => out.problems.push(Problem::new(kind, rel.clone(), reason)),
        }
    }
    for rel in &scan.records {
        let readable = std::fs::read(store.join(rel))
            .ok()
            .and_then(|b| crate::format::snapshot::decode_record(&b));
        if readable.is_none() {
            out.problems.push(Problem::new(
                ProblemKind::Damaged,
                rel.clone(),
                "not a readable compaction record (damaged, or of a newer version)",
            ));
        }
    }
    out
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

    files.reserve(merged.applied.len());
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
    for &i in &merged.applied {
        let rel = std::mem::take(&mut merged.items[i].rel);
        if !rel.is_empty() {
            files.push(rel);
        }
    }
    // Applied changes come in path order, often after what came before: sort only if not.
    if !files.is_sorted() {
        files.sort_unstable();
    }
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

/// True if two op file names claim one (actor, seq): a fork, or the start of one.
fn has_fork_names(scan: &Scan) -> bool {
    scan.ops
        .windows(2)
        .any(|w| w[0].actor() == w[1].actor() && w[0].seq == w[1].seq)
}

/// Op files loaded per step of a streaming merge: a worker reads, verifies and decodes
/// the next step's files while Automerge applies this one.
const STREAM_CHUNK: usize = 16384;

/// A merge from nothing that overlaps reading with applying and holds only a step's worth
/// of changes besides the document. Files are taken in (seq, actor) order, which is close to
/// causal order; Automerge holds a change whose dependencies come in a later step until
/// they do. Only for folders without forks in their names. `None` if Automerge refuses a
/// change: the caller then merges carefully.
fn merge_streaming(store: &Path, scan: &Scan, step: usize) -> Option<Merged> {
    let mut order: Vec<&OpEntry> = scan.ops.iter().collect();
    order.sort_by(|a, b| (a.seq, a.actor()).cmp(&(b.seq, b.actor())));
    let (sender, receiver) = std::sync::mpsc::sync_channel::<(Vec<Loaded>, Vec<Problem>)>(1);
    std::thread::scope(|s| {
        let order = &order;
        s.spawn(move || {
            for step in order.chunks(step) {
                let step: Vec<OpEntry> = step.iter().map(|e| (*e).clone()).collect();
                if sender.send(load_all(store, &step)).is_err() {
                    break;
                }
            }
        });
        let mut doc = new_doc();
        let mut items: Vec<Loaded> = Vec::with_capacity(order.len());
        let mut seen: HashMap<ChangeHash, usize> = HashMap::with_capacity(order.len());
        let mut problems = Vec::new();
        // A change goes to Automerge only once all its dependencies have: until then it is
        // held here (never in Automerge's own queue, which would leak into every later
        // question asked of the document), and what is still held at the end waits.
        let mut applied_set: HashSet<ChangeHash> = HashSet::with_capacity(order.len());
        let mut blocked_on: HashMap<ChangeHash, Vec<usize>> = HashMap::new();
        let mut unmet: HashMap<usize, usize> = HashMap::new();
        for (loaded, load_problems) in receiver {
            problems.extend(load_problems);
            let mut changes: Vec<Change> = Vec::with_capacity(loaded.len());
            for mut l in loaded {
                match seen.entry(l.hash) {
                    Entry::Occupied(slot) => {
                        // The same change twice: keep the lower path, deterministically.
                        let kept = &mut items[*slot.get()];
                        if l.rel < kept.rel {
                            kept.rel = std::mem::take(&mut l.rel);
                            kept.device = std::mem::take(&mut l.device);
                        }
                    }
                    Entry::Vacant(slot) => {
                        let i = items.len();
                        slot.insert(i);
                        let change = l.held.take().expect("a loaded change");
                        let missing: Vec<ChangeHash> = change
                            .deps()
                            .iter()
                            .filter(|d| !applied_set.contains(*d))
                            .copied()
                            .collect();
                        let hash = l.hash;
                        if missing.is_empty() {
                            changes.push(change);
                            items.push(l);
                            let released = release(
                                hash,
                                &items,
                                &mut applied_set,
                                &mut blocked_on,
                                &mut unmet,
                            );
                            for j in released {
                                changes.push(items[j].held.take().expect("a held change"));
                            }
                        } else {
                            unmet.insert(i, missing.len());
                            for d in missing {
                                blocked_on.entry(d).or_default().push(i);
                            }
                            l.held = Some(change);
                            items.push(l);
                        }
                    }
                }
            }
            doc = catch_unwind(AssertUnwindSafe(move || {
                let mut doc = doc;
                doc.apply_changes(changes).map(|()| doc)
            }))
            .ok()?
            .ok()?;
        }
        let mut report = scan_report(scan, problems);
        let mut waiting: Vec<usize> = unmet.keys().copied().collect();
        waiting.sort_unstable();
        let waiting_hashes: HashSet<ChangeHash> = waiting.iter().map(|&i| items[i].hash).collect();
        for &i in &waiting {
            let missing = items[i]
                .change()
                .deps()
                .iter()
                .filter(|d| !applied_set.contains(*d))
                .map(ChangeHash::to_string)
                .collect();
            report.waiting.push(Waiting {
                path: items[i].rel.clone(),
                missing,
            });
        }
        report.waiting.sort_by(|a, b| a.path.cmp(&b.path));
        // Path order, as every other merge reports it.
        items.sort_by(|a, b| a.rel.cmp(&b.rel));
        let mut applied = Vec::with_capacity(items.len());
        let mut waiting = Vec::new();
        for (i, l) in items.iter().enumerate() {
            if waiting_hashes.contains(&l.hash) {
                waiting.push(i);
            } else {
                applied.push(i);
            }
        }
        Some(Merged {
            doc,
            report,
            items,
            applied,
            quarantined: BTreeMap::new(),
            waiting,
        })
    })
}

/// Marks a change applied; returns the held changes (indices into `items`) that this
/// makes ready, directly or in turn.
fn release(
    hash: ChangeHash,
    items: &[Loaded],
    applied: &mut HashSet<ChangeHash>,
    blocked_on: &mut HashMap<ChangeHash, Vec<usize>>,
    unmet: &mut HashMap<usize, usize>,
) -> Vec<usize> {
    let mut released = Vec::new();
    let mut stack = vec![hash];
    while let Some(hash) = stack.pop() {
        applied.insert(hash);
        for j in blocked_on.remove(&hash).unwrap_or_default() {
            let left = unmet.get_mut(&j).expect("a held change");
            *left -= 1;
            if *left == 0 {
                unmet.remove(&j);
                released.push(j);
                stack.push(items[j].hash);
            }
        }
    }
    released
}

/// Merges only what is new since `cached`. `None` when that might not give the answer a
/// merge from nothing would give — a fork may be forming, or Automerge refused a change —
/// and the caller must merge from nothing. The flag says whether anything changed.
pub(crate) fn merge_incremental(
    store: &Path,
    scan: &Scan,
    cached: MergedState,
) -> Option<(MergedState, MergeReport, bool)> {
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
        return None;
    }
    let present: HashSet<&str> = scan.ops.iter().map(|o| o.rel.as_str()).collect();
    // Op files this view merged left the folder without a snapshot that folds them (a
    // rollback, a lost snapshot, a sync tool): count from everything what the folder lost.
    let gone = cached
        .files
        .iter()
        .any(|f| f.starts_with(crate::folder::scan::OPS_DIR) && !present.contains(f.as_str()));
    if gone {
        return None;
    }
    // Two names for one (actor, seq), one of them new: a fork may be forming.
    let forming = scan.ops.windows(2).any(|w| {
        w[0].actor() == w[1].actor()
            && w[0].seq == w[1].seq
            && !(known.contains(w[0].rel.as_str()) && known.contains(w[1].rel.as_str()))
    });
    if forming {
        return None;
    }
    let new: Vec<OpEntry> = scan
        .ops
        .iter()
        .filter(|o| !known.contains(o.rel.as_str()))
        .cloned()
        .collect();
    // The folder had lost changes this view holds: new files may bring them back.
    if cached.unprovided > 0 && !new.is_empty() {
        return None;
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
    report.unprovided = cached.unprovided;
    if loaded.is_empty() {
        // Nothing new to apply: what waits keeps waiting, as the cache already says.
        report.waiting = pending(&cached.waiting)
            .iter()
            .map(|l| Waiting {
                path: l.rel.clone(),
                missing: l
                    .change()
                    .deps()
                    .iter()
                    .filter(|d| {
                        !cached
                            .doc
                            .get_missing_deps(std::slice::from_ref(*d))
                            .is_empty()
                    })
                    .map(ChangeHash::to_string)
                    .collect(),
            })
            .collect();
        let changed = !new.is_empty();
        report.incomplete = gaps(store, scan, &cached);
        return Some((cached, report, changed));
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
        return None;
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
            return None;
        }
    }
    let merged = merge_loaded(Base::Cached(Box::new(doc)), loaded, report)?;
    if !merged.quarantined.is_empty() || merged.report.forks.len() != forks.len() {
        return None;
    }
    let (mut state, mut report) = into_state(merged, files, devices);
    state.quarantined = quarantined;
    state.forks = forks;
    report.rebased = rebased.clone();
    state.rebased = rebased;
    state.snapshots = snapshots;
    state.covered = covered;
    state.unprovided = unprovided;
    report.incomplete = gaps(store, scan, &state);
    Some((state, report, true))
}

/// Cached waiting changes as loaded changes (they were verified when first read).
fn pending(waiting: &[Pending]) -> Vec<Loaded> {
    waiting
        .iter()
        .filter_map(|p| {
            let change = Change::from_bytes(p.change.to_vec()).ok()?;
            Some(Loaded::new(p.path.clone(), p.device.clone(), change))
        })
        .collect()
}

/// The report of what the scan and the loading found.
fn scan_report(scan: &Scan, load_problems: Vec<Problem>) -> MergeReport {
    let mut report = MergeReport {
        problems: scan.problems.clone(),
        unknown_features: scan.unknown_features.clone(),
        ..MergeReport::default()
    };
    report.problems.extend(load_problems);
    report.problems.sort_by(|a, b| a.path.cmp(&b.path));
    report
}

/// Merges verified changes into `base`. `None` only for a cached base that Automerge
/// refused to extend.
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
        let mut first_new: HashMap<&ActorId, u64> = HashMap::new();
        for l in &items {
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
        if !first_new.is_empty() && seq_taken(doc, &first_new) {
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
    let n = items.len();
    let index: HashMap<ChangeHash, usize> =
        items.iter().enumerate().map(|(i, l)| (l.hash, i)).collect();
    let base_doc = match &base {
        Base::Careful => None,
        Base::Cached(doc) => Some(&**doc),
    };
    // `get_missing_deps` asks the change graph; `get_change_by_hash` would rebuild the change.
    let in_base = |h: &ChangeHash| {
        base_doc.is_some_and(|d| d.get_missing_deps(std::slice::from_ref(h)).is_empty())
    };

    // Dependencies as indices; `missing` counts those neither here nor in the base.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut pending = vec![0usize; n];
    let mut missing = vec![false; n];
    let mut already = vec![false; n];
    for (i, l) in items.iter().enumerate() {
        already[i] = base_doc.is_some() && in_base(&l.hash);
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
            quarantine_with_descendants(i, reason, &items, &children, &mut quarantined);
        }
    }

    // Topological order (Kahn); what never becomes ready waits. Quarantined changes and
    // their dependents never become ready (their dependents are quarantined too).
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
    let mut waiting = Vec::new();
    for i in 0..n {
        if is_ready[i] || already[i] || quarantined.contains_key(&i) {
            continue;
        }
        waiting.push(i);
        let missing = items[i]
            .change()
            .deps()
            .iter()
            .filter(|d| !in_base(d) && !index.get(*d).is_some_and(|&j| is_ready[j]))
            .map(ChangeHash::to_string)
            .collect();
        report.waiting.push(Waiting {
            path: items[i].rel.clone(),
            missing,
        });
    }

    let to_apply: Vec<usize> = ready.into_iter().filter(|&i| !already[i]).collect();
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
        .filter(|i| !quarantined.contains_key(i))
        .collect();
    applied.sort_unstable();
    Some(Merged {
        doc,
        report,
        items,
        applied,
        quarantined,
        waiting,
    })
}

/// `loaded` without repeated changes, in path order; a real file wins over a cached-only
/// copy of the same change.
fn dedup(loaded: Vec<Loaded>) -> Vec<Loaded> {
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

/// Applies `list` to `doc` in one call, handing the changes over (no copies); `None` if
/// Automerge refuses or panics.
fn apply_once(doc: Automerge, list: &[usize], items: &mut [Loaded]) -> Option<Automerge> {
    if list.is_empty() {
        return Some(doc);
    }
    let changes: Vec<Change> = list.iter().filter_map(|&i| items[i].held.take()).collect();
    catch_unwind(AssertUnwindSafe(move || {
        let mut doc = doc;
        doc.apply_changes(changes).map(|()| doc)
    }))
    .ok()?
    .ok()
}

fn quarantine_with_descendants(
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

/// Applies `list` (in topological order) to `doc` in one call; on refusal or panic,
/// bisects so that exactly the refused changes (and their dependents) are left out.
/// True when `doc` already holds, for one of these actors, a change at or beyond the seq
/// (seq 1: any change of that actor).
fn seq_taken(doc: &mut Automerge, first_new: &[(ActorId, u64)]) -> bool {
    let actor = doc.get_actor().clone();
    let taken = first_new.iter().any(|(a, seq)| {
        doc.set_actor(a.clone());
        doc.get_last_local_change().is_some_and(|c| c.seq() >= *seq)
    });
    doc.set_actor(actor);
    taken
}

fn apply_chunk(
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

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

#[cfg(test)]
mod tests {
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
                let op = PatchOp::Insert {
                    path: "/l/0".into(),
                    value: serde_json::json!(format!("{d}{round}")),
                    scalar: false,
                };
                s.apply_patch(&[op]).unwrap();
            }
        }
        // Make one change wait forever: remove the file of a change others depend on.
        let victim = crate::folder::scan::scan(&store).ops[4].rel.clone();
        std::fs::remove_file(store.join(&victim)).unwrap();
        let scan = crate::folder::scan::scan(&store);
        let (loaded, problems) = load_all(&store, &scan.ops);
        let careful = merge_loaded(Base::Careful, loaded, scan_report(&scan, problems)).unwrap();
        assert!(!careful.waiting.is_empty());
        for step in [1, 2, 3, 7, 1000] {
            let streamed = merge_streaming(&store, &scan, step).unwrap();
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
