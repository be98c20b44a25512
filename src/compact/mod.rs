//! Compaction: the safety order is documented on [`Store::compact`], where docs.rs shows it;
//! [`Store::compact_if_alone`] adds the checks a user's request needs. Repair
//! ([`repair`]) shares its snapshot publishing.

pub(crate) mod repair;

pub use self::repair::Repaired;

use std::collections::BTreeMap;

use automerge::{ChangeHash, ReadDoc};
use serde::Serialize;

use crate::error::Result;
use crate::folder::scan::Scan;
use crate::folders::{Folder, Kind};
use crate::format::names::OPS_DIR;
use crate::format::pack::PACKS_DIR;
use crate::format::snapshot::{self, SNAPSHOTS_DIR};
use crate::merged::MergedState;
use crate::presence::Presence;

/// What a compaction would fold, and who else might be around.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CompactPlan {
    /// Op files it would fold in and delete.
    pub op_files: usize,
    /// Their size in bytes.
    pub op_bytes: u64,
    /// Older snapshots it would fold in and delete.
    pub snapshots: usize,
    /// Their size in bytes.
    pub snapshot_bytes: u64,
    /// The size of the snapshot it would write, in bytes (built in memory to know it).
    pub new_snapshot_bytes: u64,
    /// The other devices, as their heartbeats show them.
    pub others: Vec<Presence>,
    /// Devices whose changes are in the folder but which publish no heartbeat at all
    /// (name, or actor when unnamed): whether they are online cannot be told. A sync tool
    /// that does not carry `devices/` (a `.stignore`, a selective sync) does this, and
    /// then every device believes it is alone.
    pub silent: Vec<String>,
}

impl CompactPlan {
    /// True when the new snapshot would take more bytes than the files it replaces (a
    /// small store: SQLite's pages cost more than a few tiny op files). Worth asking about.
    pub fn grows(&self) -> bool {
        self.new_snapshot_bytes > self.op_bytes + self.snapshot_bytes
    }
}

/// Where long work is: a compaction ([`Store::compact_with_progress`]), or, through
/// [`Store::set_progress`], a merge from nothing and packing.
///
/// [`Store::compact_with_progress`]: crate::Store::compact_with_progress
/// [`Store::set_progress`]: crate::Store::set_progress
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// Building, publishing, verifying and recording the snapshot.
    Snapshot,
    /// Deleting the op files the recorded snapshot folds in.
    Deleting {
        /// Deleted so far.
        done: usize,
        /// To delete.
        total: usize,
    },
    /// Reading and checking the op files of a merge (of all of them, from nothing).
    Reading {
        /// Read so far.
        done: usize,
        /// To read.
        total: usize,
    },
    /// Building and publishing the document a new store starts with (`init` from a JSON
    /// object, or from another store's history): told once, before that work, which is the
    /// rest of `init`.
    Building,
    /// Packing this device's loose op files.
    Packing {
        /// Packed so far.
        done: usize,
        /// To pack.
        total: usize,
    },
}

/// What a compaction did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CompactOutcome {
    /// The new snapshot (path in the store), if anything was folded.
    pub snapshot: Option<String>,
    /// Files under `ops/` and `snapshots/` before and after.
    pub files_before: usize,
    /// As above, after.
    pub files_after: usize,
    /// Their bytes before.
    pub bytes_before: u64,
    /// Their bytes after.
    pub bytes_after: u64,
    /// Wall time taken, in milliseconds.
    pub millis: u128,
}

/// The op files and snapshots a compaction of `state` folds in. Op files of changes that
/// lost a fork stay: a change built on one that arrives later can only be rebased with it.
pub(crate) fn folded(scan: &Scan, state: &MergedState) -> (Vec<(String, String)>, Vec<String>) {
    let merged: std::collections::HashSet<&str> = state
        .files
        .iter()
        .chain(&state.covered)
        .map(String::as_str)
        .collect();
    let rebased: std::collections::HashSet<&str> =
        state.rebased.iter().map(|r| r.path.as_str()).collect();
    let ops = scan
        .ops
        .iter()
        .filter(|o| merged.contains(o.rel.as_str()) && !rebased.contains(o.rel.as_str()))
        .map(|o| (o.rel.clone(), o.hash().to_string()))
        .collect();
    let snaps = scan
        .snapshots
        .iter()
        .filter(|s| merged.contains(s.as_str()))
        .cloned()
        .collect();
    (ops, snaps)
}

/// Reads a published snapshot (at `rel` in the folder) back and checks it holds exactly the
/// folded document.
pub(crate) fn verify(
    source: &crate::folder::Source<'_>,
    rel: &str,
    name: &str,
    heads: &[ChangeHash],
    changes: u64,
) -> Result<(), String> {
    let bytes = source
        .folder
        .read(rel)
        .map_err(|e| format!("cannot read it back: {e}"))?;
    if snapshot::file_name(&bytes) != snapshot::split_doc(name).1 {
        return Err("read back with other bytes".into());
    }
    let mut snap = snapshot::decode(&bytes).map_err(|e| e.to_string())?;
    source.open_snapshot(&mut snap).map_err(|(_, r)| r)?;
    // The reader's own rule (strict load, crdtdir's text encoding), so what compaction
    // verifies is what every reader will accept.
    let doc = crate::doc::load(&snap.automerge).map_err(|e| format!("its document: {e}"))?;
    let mut got = doc.get_heads();
    let mut want = heads.to_vec();
    got.sort();
    want.sort();
    if got != want || doc.stats().num_changes != changes || snap.changes != changes {
        return Err("read back with other heads or another number of changes".into());
    }
    Ok(())
}

/// Every file under `ops/`, `packs/` and `snapshots/` of `folder`, by its path in the
/// folder, with its length (the listing's where it has one, else the file's own).
pub(crate) fn sizes(folder: &dyn Folder) -> BTreeMap<String, u64> {
    fn walk(folder: &dyn Folder, dir: &str, out: &mut BTreeMap<String, u64>) {
        for e in folder.list(dir).unwrap_or_default() {
            let rel = format!("{dir}/{}", e.name);
            match e.kind {
                Kind::Dir => walk(folder, &rel, out),
                Kind::File => {
                    // A file gone since the listing (or one a listing still shows after its
                    // deletion) is not counted.
                    if let Some(len) = e.len.or_else(|| folder.stat(&rel).ok().flatten()?.len) {
                        out.insert(rel, len);
                    }
                }
                Kind::Other => {}
            }
        }
    }
    let mut out = BTreeMap::new();
    for dir in [OPS_DIR, PACKS_DIR, SNAPSHOTS_DIR] {
        walk(folder, dir, &mut out);
    }
    out
}

/// Files and bytes under `ops/`, `packs/` and `snapshots/`.
pub(crate) fn usage(folder: &dyn Folder) -> (usize, u64) {
    let sizes = sizes(folder);
    (sizes.len(), sizes.values().sum())
}
