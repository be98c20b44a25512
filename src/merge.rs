//! The reader: every op file in the folder into one Automerge document, in a way no single
//! file can break.
//!
//! 1. Scan and classify ([`crate::scan`]); read each op file, check its BLAKE3 against its
//!    name, decode the envelope, parse the change, check its actor and seq against the path.
//! 2. Deduplicate by change hash. Resolve forks (two changes, one (actor, seq)) the same way
//!    on every device: at each forked (actor, seq), in order, keep the candidate with the
//!    lowest change hash and quarantine the others with everything that depends on them.
//! 3. Order the rest topologically; changes whose dependencies are absent wait.
//! 4. Apply all of them in ONE `apply_changes` (one call costs O(document); per-file calls
//!    are quadratic), under `catch_unwind`. If Automerge refuses or panics, bisect to find
//!    the changes it refuses, quarantine them and their dependents, apply the rest.
//!
//! The outcome depends only on the set of files, never on the order they arrived in.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc, TextEncoding};

use crate::cache::{Cached, Pending, Quarantined};
use crate::naming;
use crate::opfile;
use crate::report::{Fork, MergeReport, Problem, Waiting};
use crate::scan::{OpEntry, Scan};
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
    pub(crate) change: Change,
}

/// Reads and verifies one op file. `Err` carries the reason it is skipped.
pub(crate) fn load(store: &Path, entry: &OpEntry) -> Result<Loaded, String> {
    let bytes = std::fs::read(store.join(&entry.rel)).map_err(|e| format!("unreadable: {e}"))?;
    if naming::file_hash_hex(&bytes) != entry.hash() {
        return Err("content does not match the hash in its name (damaged or truncated)".into());
    }
    let envelope = opfile::decode(&bytes).map_err(|e| e.to_string())?;
    let change =
        Change::from_bytes(envelope.change).map_err(|e| format!("not an Automerge change: {e}"))?;
    let actor = change.actor_id().to_hex_string();
    if actor != entry.actor() {
        return Err(format!(
            "change belongs to actor {actor}, not to its folder"
        ));
    }
    if change.seq() != entry.seq {
        return Err(format!(
            "change has seq {}, not the seq in its name",
            change.seq()
        ));
    }
    Ok(Loaded {
        rel: entry.rel.clone(),
        device: envelope.device,
        change,
    })
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
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|e| {
                            load(store, e).map_err(|reason| Problem::new(e.rel.clone(), reason))
                        })
                        .collect()
                })
            })
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
    /// An empty document: a refused change is found by bisection and left out.
    Fresh,
    /// The cached document, taken by value (no copy): if Automerge refuses anything, the
    /// merge gives up (`None`) and the caller merges from nothing instead.
    Cached(Box<Automerge>),
}

/// Merges everything in the folder from nothing. `carry` is a cached state whose changes
/// stay in the result even when their files are gone (the view never goes back).
pub(crate) fn merge_cold(
    store: &Path,
    scan: &Scan,
    carry: Option<Cached>,
) -> (Cached, MergeReport) {
    let (mut loaded, problems) = load_all(store, &scan.ops);
    let mut devices = BTreeMap::new();
    if let Some(c) = carry {
        let have: HashSet<ChangeHash> = loaded.iter().map(|l| l.change.hash()).collect();
        for change in c.doc.get_changes(&[]) {
            if !have.contains(&change.hash()) {
                let actor = change.actor_id().to_hex_string();
                let device = c.devices.get(&actor).cloned().unwrap_or_default();
                loaded.push(Loaded {
                    rel: String::new(),
                    device,
                    change,
                });
            }
        }
        loaded.extend(pending(&c.waiting));
        devices = c.devices;
    }
    let merged = merge_loaded(Base::Fresh, loaded, scan_report(scan, problems))
        .expect("a merge from nothing always completes");
    let quarantined = merged
        .quarantined
        .iter()
        .map(|(&i, reason)| Quarantined {
            path: merged.items[i].rel.clone(),
            hash: merged.items[i].change.hash().to_string(),
            reason: reason.clone(),
        })
        .collect();
    let (mut state, report) = into_state(merged, Vec::new(), devices);
    state.quarantined = quarantined;
    (state, report)
}

/// The cached state after a merge: `files` and `devices` of what came before, plus what
/// this merge applied.
fn into_state(
    mut merged: Merged,
    mut files: Vec<String>,
    mut devices: BTreeMap<String, String>,
) -> (Cached, MergeReport) {
    let waiting = merged
        .waiting
        .iter()
        .map(|&i| {
            let l = &merged.items[i];
            Pending {
                path: l.rel.clone(),
                device: l.device.clone(),
                change: ByteBuf::from(l.change.raw_bytes().to_vec()),
            }
        })
        .collect();
    let was_sorted = files.is_sorted();
    files.reserve(merged.applied.len());
    let mut last_actor: Option<(&ActorId, &str)> = None;
    for &i in &merged.applied {
        let l = &merged.items[i];
        // Consecutive changes mostly share an actor: one map insert per run.
        let (actor, device) = (l.change.actor_id(), l.device.as_str());
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
    // Applied changes come in path order: a merge of two sorted runs.
    if !(was_sorted && files.is_sorted()) {
        files.sort_unstable();
    }
    let report = std::mem::take(&mut merged.report);
    let state = Cached {
        doc: merged.doc,
        files,
        devices,
        quarantined: Vec::new(),
        forks: report.forks.clone(),
        waiting,
    };
    (state, report)
}

/// Merges only what is new since `cached`. `None` when that might not give the answer a
/// merge from nothing would give — a fork may be forming, or Automerge refused a change —
/// and the caller must merge from nothing. The flag says whether anything changed.
pub(crate) fn merge_incremental(
    store: &Path,
    scan: &Scan,
    cached: Cached,
) -> Option<(Cached, MergeReport, bool)> {
    let known: HashSet<&str> = cached
        .files
        .iter()
        .map(String::as_str)
        .chain(cached.quarantined.iter().map(|q| q.path.as_str()))
        .chain(cached.waiting.iter().map(|p| p.path.as_str()))
        .collect();
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
    let present: HashSet<&str> = scan.ops.iter().map(|o| o.rel.as_str()).collect();
    let carried_quarantine: Vec<Problem> = cached
        .quarantined
        .iter()
        .filter(|q| present.contains(q.path.as_str()))
        .map(|q| Problem::new(q.path.clone(), q.reason.clone()))
        .collect();
    drop(known);
    drop(present);
    let (loaded, problems) = load_all(store, &new);
    let mut report = scan_report(scan, problems);
    report.forks = cached.forks.clone();
    report.quarantined = carried_quarantine;
    if loaded.is_empty() {
        // Nothing new to apply: what waits keeps waiting, as the cache already says.
        report.waiting = cached
            .waiting
            .iter()
            .map(|p| Waiting {
                path: p.path.clone(),
                missing: Vec::new(),
            })
            .collect();
        let changed = !new.is_empty();
        return Some((cached, report, changed));
    }
    let Cached {
        doc,
        files,
        devices,
        quarantined,
        forks,
        waiting,
    } = cached;
    let mut loaded = loaded;
    loaded.extend(pending(&waiting));
    let merged = merge_loaded(Base::Cached(Box::new(doc)), loaded, report)?;
    if !merged.quarantined.is_empty() || merged.report.forks.len() != forks.len() {
        return None;
    }
    let (mut state, report) = into_state(merged, files, devices);
    state.quarantined = quarantined;
    state.forks = forks;
    Some((state, report, true))
}

/// Cached waiting changes as loaded changes (they were verified when first read).
fn pending(waiting: &[Pending]) -> Vec<Loaded> {
    waiting
        .iter()
        .filter_map(|p| {
            let change = Change::from_bytes(p.change.to_vec()).ok()?;
            Some(Loaded {
                rel: p.path.clone(),
                device: p.device.clone(),
                change,
            })
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
    base: Base,
    loaded: Vec<Loaded>,
    mut report: MergeReport,
) -> Option<Merged> {
    // Deduplicate by change hash, keeping path order; a real file wins over a cached-only
    // copy of the same change.
    let mut items: Vec<Loaded> = Vec::with_capacity(loaded.len());
    {
        let mut seen: HashMap<ChangeHash, usize> = HashMap::with_capacity(loaded.len());
        for l in loaded {
            match seen.entry(l.change.hash()) {
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
    }
    if !items.is_sorted_by(|a, b| a.rel <= b.rel) {
        items.sort_by(|a, b| a.rel.cmp(&b.rel));
    }
    let n = items.len();
    let index: HashMap<ChangeHash, usize> = items
        .iter()
        .enumerate()
        .map(|(i, l)| (l.change.hash(), i))
        .collect();
    let base_doc = match &base {
        Base::Fresh => None,
        Base::Cached(doc) => Some(&**doc),
    };
    let in_base = |h: &ChangeHash| base_doc.is_some_and(|d| d.get_change_by_hash(h).is_some());

    // Dependencies as indices; `missing` counts those neither here nor in the base.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut pending = vec![0usize; n];
    let mut missing = vec![false; n];
    let mut already = vec![false; n];
    for (i, l) in items.iter().enumerate() {
        already[i] = base_doc.is_some() && in_base(&l.change.hash());
        for dep in l.change.deps() {
            match index.get(dep) {
                Some(&d) => {
                    children[d].push(i);
                    pending[i] += 1;
                }
                None if in_base(dep) => {}
                None => missing[i] = true,
            }
        }
    }

    // Forks: two changes with one (actor, seq). Resolved in (actor, seq) order, the same
    // on every device: the lowest change hash is kept, the rest quarantined with their
    // dependents.
    let mut first_in_slot: HashMap<(&ActorId, u64), usize> = HashMap::with_capacity(n);
    let mut forked: BTreeMap<(String, u64), Vec<usize>> = BTreeMap::new();
    for (i, l) in items.iter().enumerate() {
        let key = (l.change.actor_id(), l.change.seq());
        if let Some(&other) = first_in_slot.get(&key) {
            let slot = forked
                .entry((key.0.to_hex_string(), key.1))
                .or_insert_with(|| vec![other]);
            slot.push(i);
        } else {
            first_in_slot.insert(key, i);
        }
    }
    drop(first_in_slot);
    let mut quarantined: BTreeMap<usize, String> = BTreeMap::new();
    for ((actor, seq), mut candidates) in forked {
        candidates.retain(|i| !quarantined.contains_key(i));
        if candidates.len() < 2 {
            continue;
        }
        candidates.sort_by(|a, b| {
            items[*a]
                .change
                .hash()
                .as_ref()
                .cmp(items[*b].change.hash().as_ref())
        });
        let kept = items[candidates[0]].change.hash();
        for &loser in &candidates[1..] {
            let reason = format!("fork at actor {actor} seq {seq}: lost to change {kept}");
            quarantine_with_descendants(loser, reason, &items, &children, &mut quarantined);
        }
        report.forks.push(Fork {
            actor,
            seq,
            kept: kept.to_string(),
            quarantined: candidates[1..]
                .iter()
                .map(|&i| items[i].change.hash().to_string())
                .collect(),
        });
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
            .change
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
        Base::Fresh => apply_robust(&new_doc(), &to_apply, &items, &index, &mut quarantined),
        Base::Cached(doc) => apply_once(*doc, &to_apply, &items)?,
    };

    for (&i, reason) in &quarantined {
        report
            .quarantined
            .push(Problem::new(items[i].rel.clone(), reason.clone()));
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

/// Applies `list` to `doc` in one call; `None` if Automerge refuses or panics.
fn apply_once(doc: Automerge, list: &[usize], items: &[Loaded]) -> Option<Automerge> {
    if list.is_empty() {
        return Some(doc);
    }
    catch_unwind(AssertUnwindSafe(move || {
        let mut doc = doc;
        doc.apply_changes(list.iter().map(|&i| items[i].change.clone()))
            .map(|()| doc)
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
                let because = items[i].change.hash();
                slot.insert(format!("depends on quarantined change {because}"));
                stack.push(c);
            }
        }
    }
}

/// Applies `list` (in topological order) to a copy of `base` in one call; on refusal or
/// panic, bisects so that exactly the refused changes (and their dependents) are left out.
fn apply_robust(
    base: &Automerge,
    list: &[usize],
    items: &[Loaded],
    index: &HashMap<ChangeHash, usize>,
    bad: &mut BTreeMap<usize, String>,
) -> Automerge {
    let list: Vec<usize> = list
        .iter()
        .copied()
        .filter(|&i| {
            let refused_dep = items[i]
                .change
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
        return base.clone();
    }
    let attempt = catch_unwind(AssertUnwindSafe(|| {
        let mut doc = base.clone();
        doc.apply_changes(list.iter().map(|&i| items[i].change.clone()))
            .map(|()| doc)
    }));
    match attempt {
        Ok(Ok(doc)) => doc,
        _ if list.len() == 1 => {
            let reason = match attempt {
                Ok(Err(e)) => format!("Automerge refused the change: {e}"),
                Err(panic) => format!("Automerge failed on the change: {}", panic_text(&panic)),
                Ok(Ok(_)) => unreachable!(),
            };
            bad.insert(list[0], reason);
            base.clone()
        }
        _ => {
            let (left, right) = list.split_at(list.len() / 2);
            let doc = apply_robust(base, left, items, index, bad);
            apply_robust(&doc, right, items, index, bad)
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
