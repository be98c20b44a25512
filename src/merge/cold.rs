//! The cold merge: everything in the folder from nothing (or from a carried state), by one
//! of four strategies, quickest first:
//!
//! - **from a checkpoint**: nothing carried, a checkpoint that passes its checks
//!   ([`super::checkpoint`]) as the base with the snapshots, only the op files none of them
//!   covers read and applied on top; given up like the batched one;
//! - **streamed**: no snapshot, nothing carried, no two op files naming one (actor, seq):
//!   op files in chunks, never all in memory ([`merge_streaming`]);
//! - **batched on a base**: the snapshots (and the carried state) merged into one base, the
//!   op files they do not cover applied on top in one batch; given up on a fork, a refused
//!   change or anything left waiting;
//! - **careful**: every change in memory, forks resolved, refused changes found by
//!   bisection; it always completes.

use std::collections::{BTreeMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::load::pending;
use super::report::{finish, scan_report, unprovided};
use super::snapshots::{load_snapshots, Snapshots, ValidSnapshot};
use super::stream::{merge_streaming, STREAM_CHUNK};
use super::{has_fork_names, into_state, load_all, merge_loaded, Base, Loaded, Merged, Source};
use crate::doc::new_doc;
use crate::folder::scan::{OpEntry, Scan};
use crate::merged::{MergedState, Quarantined};
use crate::report::{MergeReport, Problem};

/// Merges everything in the folder from nothing. `carry` is a cached state whose changes
/// stay in the result even when their files are gone (the view never goes back); it is
/// left as it was (a caller may merge it again with more).
pub(crate) fn merge_cold(
    store: &Source<'_>,
    store_id: &str,
    scan: &Scan,
    carry: Option<&MergedState>,
) -> (MergedState, MergeReport) {
    let snaps = load_snapshots(store, store_id, scan);
    let carry = carry.filter(|c| !dropped(&snaps, c));
    // Op files a valid snapshot folds in are its to give: not read again.
    let covered: HashSet<&str> = snaps
        .valid
        .iter()
        .flat_map(|s| s.snapshot.folded_ops.iter().map(|(p, _)| p.as_str()))
        .collect();
    // Without a snapshot, every listed op file (borrowed: a copy of 100,000 entries is
    // 30 MB at the peak of a cold merge).
    let uncovered: std::borrow::Cow<'_, [OpEntry]> = if covered.is_empty() {
        std::borrow::Cow::Borrowed(&scan.ops)
    } else {
        scan.ops
            .iter()
            .filter(|o| !covered.contains(o.rel.as_str()))
            .cloned()
            .collect()
    };
    // A device that carries nothing may start from a checkpoint (a carried state is
    // quicker, and holds more).
    let (chosen, skipped) = if carry.is_none() {
        super::checkpoint::choose(store, store_id, scan, &snaps, &covered)
    } else {
        (None, Vec::new())
    };
    let input = Input {
        store,
        scan,
        snaps: &snaps,
        uncovered: &uncovered,
        carry,
    };
    let covered: Vec<String> = covered.iter().map(|p| p.to_string()).collect();
    let mut base = None;
    let merged = match chosen.and_then(|c| input.on_checkpoint(c)) {
        Some((merged, chosen_covered, checkpoint)) => {
            base = Some((checkpoint, chosen_covered));
            Some(merged)
        }
        None if snaps.valid.is_empty() && carry.is_none() => input.streamed(),
        None => input.batched_on_base(),
    }
    .unwrap_or_else(|| input.careful());
    let (mut state, mut report) = into_cold_state(store, scan, &snaps, merged, covered, carry);
    report.problems.extend(skipped);
    report.problems.sort_by(|a, b| a.path.cmp(&b.path));
    if let Some((checkpoint, chosen_covered)) = base {
        // The op files it covers count as applied (not as folded: a checkpoint is never
        // the copy that makes another copy unneeded, docs/FORMAT.md §19).
        state.files.extend(chosen_covered);
        state.files.sort_unstable();
        state.files.dedup();
        // Names the op files told, over the checkpoint's.
        for (actor, name) in checkpoint.snapshot.devices {
            state.devices.entry(actor).or_insert(name);
        }
        report.checkpoint = Some(checkpoint.rel);
    }
    (state, report)
}

/// What every strategy reads.
struct Input<'a> {
    store: &'a Source<'a>,
    scan: &'a Scan,
    snaps: &'a Snapshots,
    /// The op files no valid snapshot folds in.
    uncovered: &'a [OpEntry],
    carry: Option<&'a MergedState>,
}

impl Input<'_> {
    /// The report of what the scan, the snapshots and the loading (`load`) found.
    fn report(&self, load: Vec<Problem>) -> MergeReport {
        scan_report(
            self.scan,
            load.into_iter()
                .chain(self.snaps.problems.iter().cloned())
                .collect(),
        )
    }

    /// The usual case: no snapshot, nothing carried. `None` when two op files name one
    /// (actor, seq), or the stream gave up (a fork, a refused change).
    fn streamed(&self) -> Option<Merged> {
        if has_fork_names(self.scan) {
            tracing::debug!("cold merge: two op files name one (actor, seq), not streamed");
            return None;
        }
        tracing::debug!(ops = self.scan.ops.len(), "cold merge: streaming");
        let Some(mut m) = merge_streaming(self.store, self.scan, STREAM_CHUNK) else {
            tracing::debug!("the streaming merge gave up (a fork or a refused change)");
            return None;
        };
        // The stream reported what the scan and the loading found; the snapshots add theirs.
        m.report
            .problems
            .extend(self.snaps.problems.iter().cloned());
        m.report.problems.sort_by(|a, b| a.path.cmp(&b.path));
        Some(m)
    }

    /// Snapshots (and what the cache knows) as the base, the op files they do not cover on
    /// top, in one batch. One snapshot is the base as it is; others (and the carried state)
    /// merge into it. `None` when the bases do not merge, on a fork, a refused change, or
    /// anything left waiting (it may wait for a change that only a rebase provides).
    fn batched_on_base(&self) -> Option<Merged> {
        let (mut base, rest) = match (self.carry, self.snaps.valid.split_first()) {
            (None, Some((first, rest))) => (first.doc.clone(), rest),
            (Some(c), _) => (c.doc.clone(), &self.snaps.valid[..]),
            (None, None) => (new_doc(), &self.snaps.valid[..]),
        };
        let merged_bases = rest.iter().all(|s| {
            let mut other = s.doc.clone();
            catch_unwind(AssertUnwindSafe(|| base.merge(&mut other).is_ok())).unwrap_or(false)
        });
        tracing::debug!(
            snapshots = self.snaps.valid.len(),
            carried = self.carry.is_some(),
            "cold merge: snapshots and carried state as the base, op files on top"
        );
        if !merged_bases || has_fork_names(self.scan) {
            return None;
        }
        let (mut loaded, problems) = load_all(self.store, self.uncovered);
        if let Some(c) = self.carry {
            loaded.extend(pending(&c.waiting));
        }
        merge_loaded(Base::Cached(Box::new(base)), loaded, self.report(problems)).filter(|m| {
            m.report.forks.is_empty() && m.quarantined.is_empty() && m.waiting.is_empty()
        })
    }

    /// The checkpoint as the base, the snapshots merged into it, the op files none of them
    /// covers on top in one batch. `None` as for [`Input::batched_on_base`]: any fork,
    /// refusal or waiting change is left to the careful merge, which reads every op file
    /// and ignores the checkpoint. The checkpoint comes back (without its document) with
    /// the op files it covered.
    fn on_checkpoint(
        &self,
        chosen: super::checkpoint::Chosen,
    ) -> Option<(Merged, Vec<String>, ValidSnapshot)> {
        if has_fork_names(self.scan) {
            return None;
        }
        let super::checkpoint::Chosen {
            mut checkpoint,
            covered,
        } = chosen;
        let mut base = std::mem::replace(&mut checkpoint.doc, new_doc());
        let merged_bases = self.snaps.valid.iter().all(|s| {
            let mut other = s.doc.clone();
            catch_unwind(AssertUnwindSafe(|| base.merge(&mut other).is_ok())).unwrap_or(false)
        });
        if !merged_bases {
            return None;
        }
        // Both sorted by path: the op files it does not cover, in one walk.
        let mut skip = covered.iter().peekable();
        let rest: Vec<OpEntry> = self
            .uncovered
            .iter()
            .filter(|o| {
                while skip.next_if(|c| c.as_str() < o.rel.as_str()).is_some() {}
                skip.next_if(|c| **c == o.rel).is_none()
            })
            .cloned()
            .collect();
        tracing::debug!(
            checkpoint = %checkpoint.rel,
            covered = covered.len(),
            rest = rest.len(),
            "cold merge: from a checkpoint"
        );
        let (loaded, problems) = load_all(self.store, &rest);
        let merged = merge_loaded(Base::Cached(Box::new(base)), loaded, self.report(problems))
            .filter(|m| {
                m.report.forks.is_empty() && m.quarantined.is_empty() && m.waiting.is_empty()
            })?;
        Some((merged, covered, checkpoint))
    }

    /// Everything in memory, forks resolved, refused changes found by bisection: for forks,
    /// changes known only from the cache or a snapshot, and anything the quick ways refuse.
    fn careful(&self) -> Merged {
        tracing::debug!(
            "cold merge: careful (every change in memory, forks resolved, refusals bisected)"
        );
        let (mut loaded, problems) = load_all(self.store, self.uncovered);
        let mut have: HashSet<automerge::ChangeHash> = loaded.iter().map(|l| l.hash).collect();
        let mut devices = snapshot_devices(self.snaps);
        if let Some(c) = self.carry {
            devices.extend(c.devices.iter().map(|(a, n)| (a.clone(), n.clone())));
        }
        let mut extra = |doc: &automerge::Automerge, rel: &str| {
            for change in doc.get_changes(&[]) {
                if have.insert(change.hash()) {
                    let actor = change.actor_id().to_hex_string();
                    let device = devices.get(&actor).cloned().unwrap_or_default();
                    loaded.push(Loaded::new(rel.to_string(), device, change));
                }
            }
        };
        for s in &self.snaps.valid {
            extra(&s.doc, &s.rel);
        }
        if let Some(c) = self.carry {
            extra(&c.doc, "");
            loaded.extend(pending(&c.waiting));
        }
        merge_loaded(Base::Careful, loaded, self.report(problems))
            .expect("a careful merge always completes")
    }
}

/// The state and report of a cold merge: what it applied, what the snapshots fold in
/// (`covered`) and name, and what the carried state knew (devices, its own rewrites).
fn into_cold_state(
    store: &Source<'_>,
    scan: &Scan,
    snaps: &Snapshots,
    merged: Merged,
    covered: Vec<String>,
    carry: Option<&MergedState>,
) -> (MergedState, MergeReport) {
    let quarantined = merged
        .quarantined
        .iter()
        .map(|(&i, reason)| Quarantined {
            path: merged.items[i].rel.clone(),
            hash: merged.items[i].hash.to_string(),
            reason: reason.clone(),
        })
        .collect();
    let unprovided = carry.map_or(0, |c| {
        unprovided(&c.doc, snaps, &merged.items, &merged.report.rebased, scan)
    });
    let (carried_devices, carried_rebased) = carry
        .map(|c| (c.devices.clone(), c.rebased.clone()))
        .unwrap_or_default();
    // Names of folded changes come from the snapshots; what this device knew, and the op
    // files applied now, name actors over them.
    let mut devices = snapshot_devices(snaps);
    devices.extend(carried_devices);
    let files: Vec<String> = snaps.valid.iter().map(|s| s.rel.clone()).collect();
    let (mut state, report) = into_state(merged, files, devices);
    // What the snapshots fold in counts as merged: their op files are never read again.
    state.covered = covered;
    state.covered.sort_unstable();
    state.unprovided = unprovided;
    state.quarantined = quarantined;
    // Rewrites this device made before stay known even when their originals are gone.
    for r in carried_rebased {
        if !state.rebased.iter().any(|k| k.from == r.from) {
            state.rebased.push(r);
        }
    }
    state.snapshots = scan.snapshot_fingerprints(&*store.folder);
    let report = finish(report, store, scan, &state);
    (state, report)
}

/// The device names the valid snapshots carry, actor (hex) → name.
fn snapshot_devices(snaps: &Snapshots) -> BTreeMap<String, String> {
    snaps
        .valid
        .iter()
        .flat_map(|s| s.snapshot.devices.iter().cloned())
        .collect()
}

/// True when a compaction dropped the history `carry` holds: a valid snapshot's row says the
/// document was deleted at exactly the heads `carry` has (docs/FORMAT.md §18). A carried
/// state with anything more (a write that did not see the deletion) is kept.
fn dropped(snaps: &Snapshots, carry: &MergedState) -> bool {
    let mut heads = crate::doc::heads_hex(&carry.doc.get_heads());
    heads.sort();
    !heads.is_empty()
        && snaps.valid.iter().any(|s| {
            let mut at = s.snapshot.heads.clone();
            at.sort();
            s.snapshot.dropped && at == heads
        })
}
