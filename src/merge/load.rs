//! Reading op files: each one verified (its hash against its name, the envelope, the change,
//! its actor and seq against its path) and loaded as a change, or skipped with the reason.

use std::path::Path;

use automerge::{ActorId, Change, ChangeHash};

use super::state::Pending;
use crate::folder::names;
use crate::folder::scan::OpEntry;
use crate::format::opfile;
use crate::report::{Problem, ProblemKind};

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
    let envelope = opfile::decode(&bytes).map_err(|e| skip(e.kind(), e.to_string()))?;
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

/// Cached waiting changes as loaded changes (they were verified when first read).
pub(super) fn pending(waiting: &[Pending]) -> Vec<Loaded> {
    waiting
        .iter()
        .filter_map(|p| {
            let change = Change::from_bytes(p.change.to_vec()).ok()?;
            Some(Loaded::new(p.path.clone(), p.device.clone(), change))
        })
        .collect()
}
