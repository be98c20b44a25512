//! What a write tells the app besides what it wrote: typed, so an app can act on the kind
//! (and show its own words), with a `Display` for one line of text. None says what command to
//! run: the CLI adds that.

use serde::Serialize;

/// One thing the user should know about a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Notice {
    /// This device's last change lost a fork (or was built on a change that did: a cloned
    /// disk, restored state); its edits are kept as change `kept_as`, and this write uses a
    /// fresh actor.
    Rebased {
        /// The actor given up.
        actor: String,
        /// The change that carries the edits now.
        kept_as: String,
    },
    /// The folder names changes of the record's actor beyond this device's record (a cloned
    /// disk, restored state): this write uses a fresh actor.
    BeyondRecord {
        /// The actor given up.
        actor: String,
    },
    /// The last change of the record's actor is not in the view (its file is missing or
    /// waiting): this write uses a fresh actor, so no seq is ever used twice.
    Unproven {
        /// The actor given up.
        actor: String,
    },
    /// This device's op files the folder had lost were published again.
    Republished {
        /// How many.
        count: usize,
    },
    /// The folder lost changes this device still has; `repair` writes them back.
    FolderLost {
        /// How many.
        count: usize,
    },
    /// Rebased changes this change builds on were published first.
    PublishedRebases {
        /// How many.
        count: usize,
    },
    /// The change is durable on this device but its op file is not in the folder yet; the
    /// next command of this device publishes it.
    Unpublished {
        /// Why publishing failed.
        why: String,
    },
    /// What the folder had lost was written back (as a snapshot, when one was needed).
    WroteBack {
        /// The snapshot written, if any.
        snapshot: Option<String>,
    },
    /// The folder lost changes this device holds, and writing them back failed.
    WriteBackFailed {
        /// Why.
        error: String,
    },
    /// No heartbeat was published.
    NoBeat {
        /// Why.
        error: String,
    },
    /// Packing stopped (the change is written).
    PackingStopped {
        /// Why.
        error: String,
    },
    /// No checkpoint was published (the change is written; new devices read more files).
    CheckpointFailed {
        /// Why.
        error: String,
    },
}

impl Notice {
    /// True when this write gave up the record's actor for a fresh one.
    pub fn fresh_actor(&self) -> bool {
        matches!(
            self,
            Notice::Rebased { .. } | Notice::BeyondRecord { .. } | Notice::Unproven { .. }
        )
    }
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Rebased { actor, kept_as } => write!(
                f,
                "this device's last change under actor {actor} was rebased (it lost a fork, or was built on a change that lost one: a cloned disk or restored state?); its edits are kept as change {kept_as}: writing with a fresh actor"
            ),
            Notice::BeyondRecord { actor } => write!(
                f,
                "actor {actor} has changes beyond this device's record (a cloned disk or restored state?): writing with a fresh actor"
            ),
            Notice::Unproven { actor } => write!(
                f,
                "cannot prove the last change of actor {actor} (its file is missing or waiting): writing with a fresh actor"
            ),
            Notice::Republished { count } => write!(
                f,
                "{count} of this device's op files were missing from the folder (deleted by a sync tool, or a restored backup?): published them again"
            ),
            Notice::FolderLost { count } => write!(
                f,
                "the folder lost {count} change(s) this device still has (a restored backup, a lost snapshot, files deleted by a sync tool?): a repair here writes them back"
            ),
            Notice::PublishedRebases { count } => write!(
                f,
                "published {count} rebased change(s) this change builds on (they carry edits of a fork's losing side)"
            ),
            Notice::Unpublished { why } => write!(
                f,
                "the change is saved on this device but its op file is not in the folder yet ({why}): the next command of this device publishes it"
            ),
            Notice::WroteBack { snapshot } => {
                write!(
                    f,
                    "the folder had lost changes this device holds (a folder restored from a backup, a lost snapshot?): wrote them back"
                )?;
                match snapshot {
                    Some(s) => write!(f, " as {s}"),
                    None => Ok(()),
                }
            }
            Notice::WriteBackFailed { error } => write!(
                f,
                "the folder lost changes this device holds, and writing them back failed ({error})"
            ),
            Notice::NoBeat { error } => write!(f, "no heartbeat published: {error}"),
            Notice::PackingStopped { error } => write!(f, "packing stopped: {error}"),
            Notice::CheckpointFailed { error } => write!(f, "no checkpoint published: {error}"),
        }
    }
}
