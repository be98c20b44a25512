//! What a merge found besides the document: skipped files, forks, quarantined and waiting
//! changes. Nothing here is an error; everything here is something `status` shows.

use serde::{Deserialize, Serialize};

/// A file the reader skipped, and why. The file itself is left where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Problem {
    /// Path relative to the store, `/`-separated.
    pub path: String,
    /// What is wrong with it, for people.
    pub reason: String,
}

impl Problem {
    pub(crate) fn new(path: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Two or more different changes with one (actor, seq): a cloned device or a bug.
/// The branch whose first divergent change has the lowest Automerge change hash is kept on
/// every device; the others, and everything that depends on them, are quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Fork {
    /// The actor, lowercase hex.
    pub actor: String,
    /// The seq both branches claim.
    pub seq: u64,
    /// Automerge hash of the change that was kept.
    pub kept: String,
    /// Automerge hashes of the competing changes that were quarantined.
    pub quarantined: Vec<String>,
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
}

/// Everything a merge reports besides the document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MergeReport {
    /// Files skipped before they could count as changes (foreign, damaged, newer versions).
    pub problems: Vec<Problem>,
    /// Forks found and how they were resolved.
    pub forks: Vec<Fork>,
    /// Valid changes left out of the document: losing fork branches, changes Automerge
    /// refused, and everything depending on those.
    pub quarantined: Vec<Problem>,
    /// Changes waiting for dependencies that have not arrived.
    pub waiting: Vec<Waiting>,
    /// Feature markers this build does not understand (the store is then read-only here).
    pub unknown_features: Vec<String>,
    /// Compaction records whose snapshot is missing or invalid: history this folder once
    /// had may be missing from this view (`crdtdir repair` on a device that still has it
    /// writes it back).
    #[serde(default)]
    pub incomplete: Vec<Problem>,
}
