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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::{Automerge, Change, ChangeHash, ReadDoc, TextEncoding};

use crate::naming;
use crate::opfile;
use crate::report::{ChangeInfo, Fork, MergeReport, Problem, Waiting};
use crate::scan::{OpEntry, Scan};

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

/// The merged document and what the merge found.
pub(crate) struct Merged {
    pub(crate) doc: Automerge,
    pub(crate) report: MergeReport,
    /// Every verified change, applied or not, by Automerge hash (forks and recovery use it).
    pub(crate) all: HashMap<ChangeHash, Loaded>,
    /// The verified changes left out: losing fork branches, refused changes, dependents.
    pub(crate) quarantined: BTreeMap<ChangeHash, String>,
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

/// Merges everything a scan found, from nothing.
pub(crate) fn merge(scan: Scan) -> Merged {
    let (loaded, problems) = load_all(&scan.ops);
    let mut report = MergeReport {
        problems: scan.problems,
        unknown_features: scan.unknown_features,
        ..MergeReport::default()
    };
    report.problems.extend(problems);
    report.problems.sort_by(|a, b| a.path.cmp(&b.path));
    merge_loaded(new_doc(), loaded, report)
}

/// Merges verified changes into `base` (which may already hold some of them).
pub(crate) fn merge_loaded(
    base: Automerge,
    loaded: Vec<Loaded>,
    mut report: MergeReport,
) -> Merged {
    // Deduplicate by change hash; `loaded` is in path order, so the kept path is stable.
    let mut all: HashMap<ChangeHash, Loaded> = HashMap::with_capacity(loaded.len());
    let mut order: Vec<ChangeHash> = Vec::with_capacity(loaded.len());
    for l in loaded {
        let hash = l.change.hash();
        if let std::collections::hash_map::Entry::Vacant(slot) = all.entry(hash) {
            order.push(hash);
            slot.insert(l);
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
    let in_base = |h: &ChangeHash| base.get_change_by_hash(h).is_some();

    // Topological order (Kahn) of what is left; what never becomes ready waits.
    let mut indegree: HashMap<ChangeHash, usize> = HashMap::new();
    let mut blocked: HashMap<ChangeHash, Vec<ChangeHash>> = HashMap::new();
    let mut queue = VecDeque::new();
    for h in order.iter().filter(|h| !quarantined.contains_key(h)) {
        let mut pending = 0;
        for dep in all[h].change.deps() {
            if in_base(dep) {
                continue;
            }
            if all.contains_key(dep) && !quarantined.contains_key(dep) {
                pending += 1;
            } else {
                blocked.entry(*h).or_default().push(*dep);
            }
        }
        indegree.insert(*h, pending);
        if pending == 0 && !blocked.contains_key(h) {
            queue.push_back(*h);
        }
    }
    let mut ready = Vec::with_capacity(order.len());
    while let Some(h) = queue.pop_front() {
        ready.push(h);
        for child in children.get(&h).into_iter().flatten() {
            if let Some(d) = indegree.get_mut(child) {
                *d -= 1;
                if *d == 0 && !blocked.contains_key(child) {
                    queue.push_back(*child);
                }
            }
        }
    }
    let ready_set: std::collections::HashSet<ChangeHash> = ready.iter().copied().collect();
    for h in order
        .iter()
        .filter(|h| !quarantined.contains_key(h) && !ready_set.contains(h))
    {
        let missing = all[h]
            .change
            .deps()
            .iter()
            .filter(|d| !in_base(d) && !ready_set.contains(d))
            .map(ChangeHash::to_string)
            .collect();
        report.waiting.push(Waiting {
            path: all[h].rel.clone(),
            missing,
        });
    }

    let to_apply: Vec<ChangeHash> = ready.into_iter().filter(|h| !in_base(h)).collect();
    let doc = apply_robust(&base, &to_apply, &all, &mut quarantined);

    for (h, reason) in &quarantined {
        report
            .quarantined
            .push(Problem::new(all[h].rel.clone(), reason.clone()));
    }
    report.quarantined.sort_by(|a, b| a.path.cmp(&b.path));
    report.waiting.sort_by(|a, b| a.path.cmp(&b.path));
    for h in &order {
        if doc.get_change_by_hash(h).is_some() {
            let l = &all[h];
            report.applied.push(ChangeInfo {
                path: l.rel.clone(),
                hash: h.to_string(),
                actor: l.change.actor_id().to_hex_string(),
                seq: l.change.seq(),
                device: l.device.clone(),
                time: l.change.timestamp(),
                ops: l.change.len(),
            });
        }
    }
    Merged {
        doc,
        report,
        all,
        quarantined,
    }
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
