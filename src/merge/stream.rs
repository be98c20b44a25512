//! The streaming merge: a merge from nothing that reads the next step's files while Automerge
//! applies this step's, for folders without forks.

use crate::folder::Source;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::{Change, ChangeHash};

use super::report::scan_report;
use super::report::waiting_for;
use super::{load_all, new_doc, Loaded, Merged};
use crate::folder::scan::{OpEntry, Scan};
use crate::report::Problem;

/// Op files loaded per step of a streaming merge: a worker reads, verifies and decodes
/// the next step's files while Automerge applies this one.
pub(super) const STREAM_CHUNK: usize = 16384;

/// A merge from nothing that overlaps reading with applying and holds only a step's worth
/// of changes besides the document. Files are taken in (seq, actor) order, which is close to
/// causal order; a change whose dependencies come in a later step is held until they do.
/// Only for folders without forks in their names. `None` if Automerge refuses a change: the
/// caller then merges carefully.
pub(super) fn merge_streaming(store: &Source<'_>, scan: &Scan, step: usize) -> Option<Merged> {
    let mut order: Vec<&OpEntry> = scan.ops.iter().collect();
    order.sort_by(|a, b| (a.seq, a.actor()).cmp(&(b.seq, b.actor())));
    let (sender, receiver) = std::sync::mpsc::sync_channel::<(Vec<Loaded>, Vec<Problem>)>(1);
    let total = order.len();
    std::thread::scope(|s| {
        let order = &order;
        s.spawn(move || {
            for (i, part) in order.chunks(step).enumerate() {
                let part: Vec<OpEntry> = part.iter().map(|e| (*e).clone()).collect();
                // A step's reading says how far the whole merge is.
                let tell = |p: crate::Progress| {
                    if let crate::Progress::Reading { done, .. } = p {
                        store.tell(crate::Progress::Reading {
                            done: i * step + done,
                            total,
                        });
                    }
                };
                let source = Source {
                    progress: Some(&tell),
                    ..store.clone()
                };
                if sender.send(load_all(&source, &part)).is_err() {
                    break;
                }
            }
        });
        let mut doc = new_doc();
        let mut held = Held::with_capacity(order.len());
        let mut problems = Vec::new();
        for (loaded, load_problems) in receiver {
            problems.extend(load_problems);
            let mut changes: Vec<Change> = Vec::with_capacity(loaded.len());
            for l in loaded {
                held.take(l, &mut changes);
            }
            doc = catch_unwind(AssertUnwindSafe(move || {
                let mut doc = doc;
                doc.apply_changes(changes).map(|()| doc)
            }))
            .ok()?
            .ok()?;
        }
        Some(held.into_merged(doc, scan_report(scan, problems)))
    })
}

/// The changes a streaming merge has taken. A change goes to Automerge only once all its
/// dependencies have: until then it is held here (never in Automerge's own queue, which
/// would leak into every later question asked of the document), and what is still held at
/// the end waits.
struct Held {
    items: Vec<Loaded>,
    seen: HashMap<ChangeHash, usize>,
    applied: HashSet<ChangeHash>,
    /// A missing dependency → the held changes (indices into `items`) waiting for it.
    blocked_on: HashMap<ChangeHash, Vec<usize>>,
    /// A held change → how many of its dependencies are missing.
    unmet: HashMap<usize, usize>,
}

impl Held {
    fn with_capacity(n: usize) -> Held {
        Held {
            items: Vec::with_capacity(n),
            seen: HashMap::with_capacity(n),
            applied: HashSet::with_capacity(n),
            blocked_on: HashMap::new(),
            unmet: HashMap::new(),
        }
    }

    /// Takes one loaded change: into `ready` (with the held changes it releases) when its
    /// dependencies are applied, else held. The same change twice keeps the lower path.
    fn take(&mut self, mut l: Loaded, ready: &mut Vec<Change>) {
        match self.seen.entry(l.hash) {
            Entry::Occupied(slot) => {
                // The same change twice: keep the lower path, deterministically.
                let kept = &mut self.items[*slot.get()];
                if l.rel < kept.rel {
                    kept.rel = std::mem::take(&mut l.rel);
                    kept.device = std::mem::take(&mut l.device);
                }
            }
            Entry::Vacant(slot) => {
                let i = self.items.len();
                slot.insert(i);
                let change = l.held.take().expect("a loaded change");
                let missing: Vec<ChangeHash> = change
                    .deps()
                    .iter()
                    .filter(|d| !self.applied.contains(*d))
                    .copied()
                    .collect();
                let hash = l.hash;
                if missing.is_empty() {
                    ready.push(*change);
                    self.items.push(l);
                    let released = release(
                        hash,
                        &self.items,
                        &mut self.applied,
                        &mut self.blocked_on,
                        &mut self.unmet,
                    );
                    for j in released {
                        ready.push(*self.items[j].held.take().expect("a held change"));
                    }
                } else {
                    self.unmet.insert(i, missing.len());
                    for d in missing {
                        self.blocked_on.entry(d).or_default().push(i);
                    }
                    l.held = Some(change);
                    self.items.push(l);
                }
            }
        }
    }

    /// The merge: `doc` holds every change taken but those still held, which wait.
    fn into_merged(
        self,
        doc: automerge::Automerge,
        mut report: crate::report::MergeReport,
    ) -> Merged {
        let Held {
            mut items,
            applied: applied_set,
            unmet,
            ..
        } = self;
        let mut waiting: Vec<usize> = unmet.keys().copied().collect();
        waiting.sort_unstable();
        let waiting_hashes: HashSet<ChangeHash> = waiting.iter().map(|&i| items[i].hash).collect();
        report.waiting.extend(
            waiting
                .iter()
                .map(|&i| waiting_for(&items[i], |d| applied_set.contains(d))),
        );
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
        Merged {
            doc,
            report,
            items,
            applied,
            quarantined: BTreeMap::new(),
            waiting,
        }
    }
}

/// Marks a change applied; returns the held changes (indices into `items`) that this
/// makes ready, directly or in turn.
pub(super) fn release(
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
