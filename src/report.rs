//! What a merge found besides the document: skipped files, forks, quarantined and waiting
//! changes. Nothing here is an error; everything here is something `status` shows.

use serde::{Deserialize, Serialize};

/// A file the reader skipped, a change it left out, or a gap in its view, and why. The file
/// itself is left where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Problem {
    /// Path relative to the store, `/`-separated.
    pub path: String,
    /// What kind of problem it is, for programs.
    pub kind: ProblemKind,
    /// What is wrong with it, for people.
    pub reason: String,
}

/// What kind of [`Problem`] it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// A crdtdir temp file: a write in progress, or one a crash interrupted (its owner
    /// removes it).
    CrdtdirTemp,
    /// A sync tool's temp file or partial download.
    SyncTemp,
    /// A sync tool's conflict copy.
    ConflictCopy,
    /// A cloud service's placeholder for a file not downloaded yet.
    CloudPlaceholder,
    /// Operating-system clutter (`.DS_Store`, `Thumbs.db`…).
    OsJunk,
    /// A name that is none of crdtdir's.
    Foreign,
    /// A folder, FIFO or other non-file where a file belongs, or a folder where none does.
    NotAFile,
    /// A file or folder that could not be read.
    Unreadable,
    /// A crdtdir file whose bytes do not match its name or do not decode: damaged, truncated.
    Damaged,
    /// A file of a newer format version than this build reads.
    Newer,
    /// A file sealed with a key of this store that this device does not have (a rotation
    /// on another device made it).
    OtherKey,
    /// A valid change Automerge refused, or one depending on it (quarantined).
    Refused,
    /// History this view may lack (see `MergeReport::incomplete`).
    Gap,
}

impl ProblemKind {
    /// True for what goes away by itself (a write or download still in progress): a reader
    /// lists it in `status` but need not warn about it.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ProblemKind::CrdtdirTemp | ProblemKind::SyncTemp | ProblemKind::CloudPlaceholder
        )
    }
}

impl Problem {
    pub(crate) fn new(
        kind: ProblemKind,
        path: impl Into<String>,
        reason: impl Into<String>,
    ) -> Problem {
        Problem {
            path: path.into(),
            kind,
            reason: reason.into(),
        }
    }

    /// A file or folder that could not be read.
    pub(crate) fn unreadable(path: impl Into<String>, e: &std::io::Error) -> Problem {
        Problem::new(ProblemKind::Unreadable, path, format!("unreadable: {e}"))
    }
}

/// A change that lost a fork (or depends on one) and was rewritten under a new actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rebased {
    /// Path of the original op file ("" when known only from this device's cache).
    pub path: String,
    /// Automerge hash of the original change.
    pub from: String,
    /// Automerge hash of the rewritten change that carries its edits in the document.
    pub to: String,
}

/// Two or more different changes with one (actor, seq): a cloned disk, a VM snapshot or a
/// restored state dir. The change with the lowest Automerge change hash keeps its place on
/// every device; the others, and everything that depends on them, are rebased: the same
/// edits, rewritten under new actors (see [`Rebased`]), so no edit of any branch is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Fork {
    /// The actor, lowercase hex.
    pub actor: String,
    /// The seq both branches claim.
    pub seq: u64,
    /// Automerge hash of the change that was kept.
    pub kept: String,
    /// Automerge hashes of the competing changes, whose edits were rebased.
    pub rebased: Vec<String>,
}

/// A valid change that is not applied yet because a change it depends on has not arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Waiting {
    /// Path of its op file.
    pub path: String,
    /// Automerge hashes of the dependencies that are not applied.
    pub missing: Vec<String>,
}

/// One change that is part of the merged document (see `Store::history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChangeInfo {
    /// Path of its op file; empty when the file is gone from the folder and the change is
    /// known from this device's cache.
    pub path: String,
    /// Automerge change hash.
    pub hash: String,
    /// Actor, lowercase hex.
    pub actor: String,
    /// Seq within the actor.
    pub seq: u64,
    /// Display name of the device that wrote it.
    pub device: String,
    /// The change's own timestamp, seconds since the Unix epoch.
    pub time: i64,
    /// Number of operations in it.
    pub ops: usize,
    /// Its commit message, if the writer gave one ([`crate::Store::change_with_message`]).
    pub message: Option<String>,
}

/// Everything a merge reports besides the document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MergeReport {
    /// Files skipped before they could count as changes (foreign, damaged, newer versions).
    pub problems: Vec<Problem>,
    /// Forks found and how they were resolved.
    pub forks: Vec<Fork>,
    /// Valid changes left out of the document: changes Automerge refused, and everything
    /// depending on those.
    pub quarantined: Vec<Problem>,
    /// Changes that lost a fork, or depend on one, rewritten under new actors: their edits
    /// are in the document.
    #[serde(default)]
    pub rebased: Vec<Rebased>,
    /// Changes waiting for dependencies that have not arrived.
    pub waiting: Vec<Waiting>,
    /// Feature markers this build does not understand (the store is then read-only here).
    pub unknown_features: Vec<String>,
    /// Compaction records whose snapshot is missing or invalid: history this folder once
    /// had may be missing from this view (`crdtdir repair` on a device that still has it
    /// writes it back).
    #[serde(default)]
    pub incomplete: Vec<Problem>,
    /// Changes in this view that neither an op file nor a valid snapshot in the folder
    /// provides any more: the folder lost them (a folder restored from a backup, a lost
    /// snapshot, files a sync tool deleted). `crdtdir repair` writes them back at once; this
    /// device's next write, or its running watcher, does it on its own (at most once an hour).
    #[serde(default)]
    pub unprovided: usize,
    /// The checkpoint (docs/FORMAT.md §19) this merge started from, by path: a device with
    /// no local state read only the op files it does not cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// What [`Store::check`](crate::Store::check) read again, and what it found wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// Documents checked.
    pub documents: usize,
    /// Copies of op files read and verified: loose files and pack entries, each on its own.
    pub op_files: usize,
    /// Packs read whole.
    pub packs: usize,
    /// Snapshots (and write-back snapshots).
    pub snapshots: usize,
    /// Compaction records.
    pub records: usize,
    /// Checkpoints.
    pub checkpoints: usize,
    /// Heartbeats.
    pub heartbeats: usize,
    /// Passphrase files and rotation records (`keys/`).
    pub keys: usize,
    /// Damaged or unreadable files, by path: what a reader skips.
    pub damaged: Vec<Problem>,
    /// What is not damage: temps, conflict copies, files crdtdir did not write, files of a
    /// newer format, a checkpoint of op files the folder does not hold.
    pub noticed: Vec<Problem>,
}

impl CheckReport {
    /// True when no file is damaged.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
    }

    /// Files checked: op file copies, packs, snapshots, records, checkpoints, heartbeats
    /// and passphrase files.
    pub fn files(&self) -> usize {
        self.op_files
            + self.packs
            + self.snapshots
            + self.records
            + self.checkpoints
            + self.heartbeats
            + self.keys
    }

    /// Files as damaged or noticed, by kind.
    pub(crate) fn found(&mut self, p: Problem) {
        match p.kind {
            ProblemKind::Damaged | ProblemKind::Unreadable => self.damaged.push(p),
            _ => self.noticed.push(p),
        }
    }

    /// Another document's report added to this one.
    pub(crate) fn add(&mut self, other: CheckReport) {
        self.documents += other.documents;
        self.op_files += other.op_files;
        self.packs += other.packs;
        self.snapshots += other.snapshots;
        self.records += other.records;
        self.checkpoints += other.checkpoints;
        self.heartbeats += other.heartbeats;
        self.keys += other.keys;
        self.damaged.extend(other.damaged);
        self.noticed.extend(other.noticed);
        self.sort();
    }

    /// By path, each problem once.
    pub(crate) fn sort(&mut self) {
        for list in [&mut self.damaged, &mut self.noticed] {
            list.sort_by(|a, b| a.path.cmp(&b.path).then(a.reason.cmp(&b.reason)));
            list.dedup();
        }
    }
}
