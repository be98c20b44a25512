//! What a watcher needs of what it watches: the folder, this device's actors, the document
//! in memory and its journal, a merge of a listing, and the device's upkeep. [`Store`]
//! provides it (in `store/`), so the watcher does not reach into the store.
//!
//! [`Store`]: crate::Store

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use automerge::ChangeHash;

use crate::error::Result;
use crate::folder::scan::Scan;
use crate::merged::MergedState;
use crate::patch::json::JsonPatch;
use crate::report::MergeReport;

/// What a watcher watches.
pub(crate) trait Live: Clone + Send + 'static {
    /// The synced folder.
    /// The folder is on the local disk: file events can tell of its changes.
    fn local(&self) -> bool;
    fn root(&self) -> &Path;
    /// Lists the folder for the watched document.
    fn scan(&self) -> Scan;
    /// `last` with the new op files `paths` of the watched document, when every path is
    /// one (see `crate::folder::scan::with_new_files`); `None`: list instead.
    fn scan_after(&self, last: Scan, paths: &[std::path::PathBuf]) -> Option<Scan>;
    /// The counters that running watchers share with writers.
    fn watched(&self) -> &Watched;
    /// This device's actors, hex (events in their folders are its own writes).
    fn own_actors(&self) -> HashSet<String>;
    /// A watcher starts (`true`) or stops: the journal records while one runs.
    fn watching(&self, started: bool);
    /// The patches from `from` to `to` when the journal chains them.
    fn logged(&self, from: &[ChangeHash], to: &[ChangeHash]) -> Option<Vec<JsonPatch>>;
    /// The document in memory, if any.
    fn in_memory(&self) -> Option<Arc<MergedState>>;
    /// Merges what `scan` lists (one at a time with writes); the report as a read gives it.
    fn merge_listed(&self, scan: &Scan) -> (Arc<MergedState>, MergeReport);
    /// The version of the folder's change hint (`None`: no device wrote one), for a
    /// watcher that polls a folder elsewhere than on the local disk.
    fn touched(&self) -> std::io::Result<Option<String>>;
    /// Publishes this device's heartbeat if it is stale; true when one was published.
    fn beat_if_stale(&self) -> Result<bool>;
    /// Packing upkeep: packs loose files, deletes what other devices acknowledged, restores
    /// a lost pack.
    fn upkeep_packs(&self) -> Result<()>;
    /// Writes back what the folder lost and this device holds.
    fn write_back_lost(&self) -> Result<()>;
}

/// What running watchers know of the folder, shared by a store's clones: a write may skip
/// its listing while a watcher with file events has merged every event it was told of
/// (files this process published excepted: the writer knows them).
#[derive(Debug, Default)]
pub(crate) struct Watched {
    /// Watchers running with file events.
    pub(crate) live: AtomicUsize,
    /// File events about files this process did not publish, counted by the event source.
    pub(crate) events: AtomicU64,
    /// The count of events the last finished merge had seen before it listed the folder.
    pub(crate) merged: AtomicU64,
    /// The files this process published lately in this device's own folders: events about
    /// them are its own. (Another process of this device writes in the same folders, and
    /// its files are news here.)
    recent: std::sync::Mutex<std::collections::VecDeque<std::path::PathBuf>>,
}

/// How many of its own recent publications a process remembers (events come within
/// moments of them).
const RECENT: usize = 1024;

impl Watched {
    /// This process published `path` (an op file or a pack of its own).
    pub(crate) fn published(&self, path: std::path::PathBuf) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(path);
    }

    /// True when this process published `path` lately.
    pub(crate) fn published_here(&self, path: &Path) -> bool {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|p| p == path)
    }

    /// True when a watcher with file events runs and has merged every event so far.
    pub(crate) fn quiet(&self) -> bool {
        self.live.load(Ordering::SeqCst) > 0
            && self.events.load(Ordering::SeqCst) == self.merged.load(Ordering::SeqCst)
    }
}
