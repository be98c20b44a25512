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

use automerge::{Automerge, Change, ChangeHash, ReadDoc, TextEncoding};

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
pub(crate) fn load(entry: &OpEntry) -> Result<Loaded, String> {
    let bytes = std::fs::read(&entry.path).map_err(|e| format!("unreadable: {e}"))?;
    if naming::file_hash_hex(&bytes) != entry.name.hash {
        return Err("content does not match the hash in its name (damaged or truncated)".into());
    }
    let envelope = opfile::decode(&bytes).map_err(|e| e.to_string())?;
    let change =
        Change::from_bytes(envelope.change).map_err(|e| format!("not an Automerge change: {e}"))?;
    let actor = change.actor_id().to_hex_string();
    if actor != entry.actor {
        return Err(format!(
            "change belongs to actor {actor}, not to its folder"
        ));
    }
    if change.seq() != entry.name.seq {
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
pub(crate) fn load_all(entries: &[OpEntry]) -> (Vec<Loaded>, Vec<Problem>) {
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
                        .map(|e| load(e).map_err(|reason| Problem::new(e.rel.clone(), reason)))
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
    /// Every verified change of this merge, applied or not, by Automerge hash.
    pub(crate) all: HashMap<ChangeHash, Loaded>,
    /// Hashes of the changes this merge applied, in path order.
    pub(crate) applied: Vec<ChangeHash>,
    /// The verified changes left out: losing fork branches, refused changes, dependents.
    pub(crate) quarantined: BTreeMap<ChangeHash, String>,
    /// The verified changes waiting for dependencies.
    pub(crate) waiting: Vec<ChangeHash>,
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
pub(crate) fn merge_cold(scan: &Scan, carry: Option<Cached>) -> (Cached, MergeReport) {
    let (mut loaded, problems) = load_all(&scan.ops);
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
        .map(|(h, reason)| Quarantined {
            path: merged.all[h].rel.clone(),
            hash: h.to_string(),
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
    for h in &merged.applied {
        let l = &merged.all[h];
        if !l.rel.is_empty() {
            files.push(l.rel.clone());
        }
        devices.insert(l.change.actor_id().to_hex_string(), l.device.clone());
    }
    files.sort_unstable();
    let waiting = merged
        .waiting
        .iter()
        .map(|h| {
            let l = &merged.all[h];
            Pending {
                path: l.rel.clone(),
                device: l.device.clone(),
                change: ByteBuf::from(l.change.raw_bytes().to_vec()),
            }
        })
        .collect();
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
        w[0].actor == w[1].actor
            && w[0].name.seq == w[1].name.seq
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
    let (loaded, problems) = load_all(&new);
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
    // Deduplicate by change hash; `loaded` is in path order, so the kept path is stable.
    let mut all: HashMap<ChangeHash, Loaded> = HashMap::with_capacity(loaded.len());
    let mut order: Vec<ChangeHash> = Vec::with_capacity(loaded.len());
    for l in loaded {
        let hash = l.change.hash();
        match all.entry(hash) {
            Entry::Vacant(slot) => {
                order.push(hash);
                slot.insert(l);
            }
            // The same change in two places: a real file wins over a cached-only copy.
            Entry::Occupied(mut slot) => {
                if slot.get().rel.is_empty() && !l.rel.is_empty() {
                    slot.insert(l);
                }
            }
        }
    }
    order.sort_by(|a, b| all[a].rel.cmp(&all[b].rel));

    let mut children: HashMap<ChangeHash, Vec<ChangeHash>> = HashMap::new();
    for h in &order {
        for dep in all[h].change.deps() {
            if all.contains_key(dep) {
                children.entry(*dep).or_default().push(*h);
            }
        }
    }

    // Forks. BTreeMap: the order in which forks are resolved is fixed by (actor, seq).
    let mut by_slot: BTreeMap<(String, u64), Vec<ChangeHash>> = BTreeMap::new();
    for h in &order {
        let c = &all[h].change;
        by_slot
            .entry((c.actor_id().to_hex_string(), c.seq()))
            .or_default()
            .push(*h);
    }
    let mut quarantined: BTreeMap<ChangeHash, String> = BTreeMap::new();
    for ((actor, seq), mut candidates) in by_slot.into_iter().filter(|(_, v)| v.len() > 1) {
        candidates.retain(|h| !quarantined.contains_key(h));
        if candidates.len() < 2 {
            continue;
        }
        candidates.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        let kept = candidates[0];
        for loser in &candidates[1..] {
            let reason = format!("fork at actor {actor} seq {seq}: lost to change {kept}");
            quarantine_with_descendants(*loser, reason, &children, &mut quarantined);
        }
        report.forks.push(Fork {
            actor,
            seq,
            kept: kept.to_string(),
            quarantined: candidates[1..].iter().map(ChangeHash::to_string).collect(),
        });
    }

    // Already in the base document: nothing to do for those.
    let base_doc = match &base {
        Base::Fresh => None,
        Base::Cached(doc) => Some(doc),
    };
    let in_base = |h: &ChangeHash| base_doc.is_some_and(|d| d.get_change_by_hash(h).is_some());

    // Topological order (Kahn) of what is left; what never becomes ready waits.
    let mut indegree: HashMap<ChangeHash, usize> = HashMap::new();
    let mut blocked: HashSet<ChangeHash> = HashSet::new();
    let mut queue = VecDeque::new();
    for h in order
        .iter()
        .filter(|h| !quarantined.contains_key(h) && !in_base(h))
    {
        let mut pending = 0;
        for dep in all[h].change.deps() {
            if in_base(dep) {
                continue;
            }
            if all.contains_key(dep) && !quarantined.contains_key(dep) {
                pending += 1;
            } else {
                blocked.insert(*h);
            }
        }
        indegree.insert(*h, pending);
        if pending == 0 && !blocked.contains(h) {
            queue.push_back(*h);
        }
    }
    let mut ready = Vec::with_capacity(order.len());
    while let Some(h) = queue.pop_front() {
        ready.push(h);
        for child in children.get(&h).into_iter().flatten() {
            if let Some(d) = indegree.get_mut(child) {
                *d -= 1;
                if *d == 0 && !blocked.contains(child) {
                    queue.push_back(*child);
                }
            }
        }
    }
    let ready_set: HashSet<ChangeHash> = ready.iter().copied().collect();
    let mut waiting = Vec::new();
    for h in order
        .iter()
        .filter(|h| indegree.contains_key(h) && !ready_set.contains(h))
    {
        let missing = all[h]
            .change
            .deps()
            .iter()
            .filter(|d| !in_base(d) && !ready_set.contains(d))
            .map(ChangeHash::to_string)
            .collect();
        waiting.push(*h);
        report.waiting.push(Waiting {
            path: all[h].rel.clone(),
            missing,
        });
    }

    let doc = match base {
        Base::Fresh => apply_robust(&new_doc(), &ready, &all, &mut quarantined),
        Base::Cached(doc) => apply_once(*doc, &ready, &all)?,
    };

    for (h, reason) in &quarantined {
        report
            .quarantined
            .push(Problem::new(all[h].rel.clone(), reason.clone()));
    }
    report.quarantined.sort_by(|a, b| a.path.cmp(&b.path));
    report.waiting.sort_by(|a, b| a.path.cmp(&b.path));
    let applied = ready
        .into_iter()
        .filter(|h| !quarantined.contains_key(h))
        .collect();
    Some(Merged {
        doc,
        report,
        all,
        applied,
        quarantined,
        waiting,
    })
}

/// Applies `list` to `doc` in one call; `None` if Automerge refuses or panics.
fn apply_once(
    doc: Automerge,
    list: &[ChangeHash],
    all: &HashMap<ChangeHash, Loaded>,
) -> Option<Automerge> {
    if list.is_empty() {
        return Some(doc);
    }
    catch_unwind(AssertUnwindSafe(move || {
        let mut doc = doc;
        doc.apply_changes(list.iter().map(|h| all[h].change.clone()))
            .map(|()| doc)
    }))
    .ok()?
    .ok()
}

fn quarantine_with_descendants(
    root: ChangeHash,
    reason: String,
    children: &HashMap<ChangeHash, Vec<ChangeHash>>,
    quarantined: &mut BTreeMap<ChangeHash, String>,
) {
    let mut stack = vec![root];
    quarantined.insert(root, reason);
    while let Some(h) = stack.pop() {
        for child in children.get(&h).into_iter().flatten() {
            if !quarantined.contains_key(child) {
                quarantined.insert(*child, format!("depends on quarantined change {h}"));
                stack.push(*child);
            }
        }
    }
}

/// Applies `list` (in topological order) to a copy of `base` in one call; on refusal or
/// panic, bisects so that exactly the refused changes (and their dependents) are left out.
fn apply_robust(
    base: &Automerge,
    list: &[ChangeHash],
    all: &HashMap<ChangeHash, Loaded>,
    bad: &mut BTreeMap<ChangeHash, String>,
) -> Automerge {
    let list: Vec<ChangeHash> = list
        .iter()
        .copied()
        .filter(|h| {
            let refused_dep = all[h]
                .change
                .deps()
                .iter()
                .find(|d| bad.contains_key(d))
                .copied();
            match refused_dep {
                Some(d) => {
                    bad.insert(*h, format!("depends on quarantined change {d}"));
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
        doc.apply_changes(
            list.iter()
                .map(|h| all[h].change.clone())
                .collect::<Vec<_>>(),
        )
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
            let doc = apply_robust(base, left, all, bad);
            apply_robust(&doc, right, all, bad)
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
