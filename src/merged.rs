//! The merged state: a document and what is known about the files it was made from. A
//! merge produces one; the local cache saves and loads it; the store keeps
//! the last one in memory.

use std::collections::BTreeMap;

use automerge::Automerge;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::report::{Fork, Rebased};

/// A verified change waiting for dependencies, kept whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) path: String,
    pub(crate) device: String,
    pub(crate) change: ByteBuf,
}

/// A verified change left out of the document, remembered so it is not re-read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Quarantined {
    pub(crate) path: String,
    pub(crate) hash: String,
    pub(crate) reason: String,
}

/// A merged document and what is known about the files it was made from.
#[derive(Clone, Debug)]
pub(crate) struct MergedState {
    pub(crate) doc: Automerge,
    pub(crate) files: Vec<String>,
    pub(crate) devices: BTreeMap<String, String>,
    pub(crate) quarantined: Vec<Quarantined>,
    pub(crate) forks: Vec<Fork>,
    /// Changes this state holds rewritten because they lost a fork, by original hash.
    pub(crate) rebased: Vec<Rebased>,
    pub(crate) waiting: Vec<Pending>,
    /// Op files that valid snapshots in the folder fold in (sorted): merged, never read.
    pub(crate) covered: Vec<String>,
    /// How many changes of the document neither an op file nor a valid snapshot in the
    /// folder provides any more (the folder lost them).
    pub(crate) unprovided: usize,
    /// The snapshots and compaction records in the folder when this state was made.
    pub(crate) snapshots: Vec<String>,
}

impl MergedState {
    /// The names of the snapshots this state was merged from (read and verified: they are
    /// among its files).
    pub(crate) fn verified_snapshots(&self) -> Vec<String> {
        self.files
            .iter()
            .filter_map(|f| crate::folder::snapshot_name(f))
            .map(str::to_string)
            .collect()
    }

    /// A state that knows only `doc`: every change in it is carried, no file is known.
    pub(crate) fn of(doc: Automerge) -> MergedState {
        MergedState {
            doc,
            files: Vec::new(),
            devices: BTreeMap::new(),
            quarantined: Vec::new(),
            forks: Vec::new(),
            rebased: Vec::new(),
            waiting: Vec::new(),
            covered: Vec::new(),
            unprovided: 0,
            snapshots: Vec::new(),
        }
    }
}
