//! One document as this device holds it between calls: the merged state in memory (one
//! checkout at a time), its cache files, the listing it stands for, the journal watchers
//! read, its rendered JSON, and the gate at which writes and watcher merges take turns.
//! Everything here is one document's; the folder and the device (marker, keys, state dir,
//! packs, presence) are [`super::Shared`]'s, beside it.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::local::cache::Cache;
use crate::merged::MergedState;
use crate::report::MergeReport;
use crate::store::journal::Journal;
use crate::store::Rendered;
use crate::watch::Watched;

/// One document's state on this device, shared by a store's clones.
#[derive(Debug)]
pub(crate) struct Memory {
    /// Its cache files.
    pub(crate) cache: Cache,
    /// The last merged state, kept between calls so that a long-lived `Store` neither
    /// reloads its document nor rescans the folder to write.
    state: Mutex<Option<Arc<MergedState>>>,
    /// The state in memory holds own changes the cache files do not have yet.
    pub(crate) dirty: AtomicBool,
    /// The listing digest (see the local cache's `view`) and report of the last merge of the
    /// state in memory.
    listed: Mutex<Option<(blake3::Hash, MergeReport)>>,
    /// Writes and watcher merges take turns on the state.
    gate: Mutex<()>,
    /// What happened to the state while watchers run.
    journal: Mutex<Journal>,
    /// What running watchers know of the folder.
    pub(crate) watched: Watched,
    /// The JSON of the document at some heads, shared by the views of those heads.
    pub(crate) rendered: Rendered,
    /// What this process last answered from the saved view without the document in memory:
    /// its heartbeat's heads and verified snapshots, so the beat after it lists nothing.
    served: Mutex<Option<(Vec<String>, Vec<String>)>>,
}

/// A poisoned lock still holds good data here (every writer leaves it consistent).
fn held<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Memory {
    pub(crate) fn new(cache: Cache) -> Memory {
        Memory {
            cache,
            state: Mutex::new(None),
            dirty: AtomicBool::new(false),
            listed: Mutex::new(None),
            gate: Mutex::new(()),
            journal: Mutex::default(),
            watched: Watched::default(),
            rendered: Rendered::default(),
            served: Mutex::new(None),
        }
    }

    /// The state, shared (cheap; it may be checked out meanwhile).
    pub(crate) fn peek(&self) -> Option<Arc<MergedState>> {
        held(&self.state).clone()
    }

    /// The state, owned: checked out until [`Memory::put`] (copied only if a `View` still
    /// shares it).
    pub(crate) fn take(&self) -> Option<MergedState> {
        let arc = held(&self.state).take()?;
        Some(Arc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone()))
    }

    /// Puts a state (back) in memory.
    pub(crate) fn put(&self, state: Arc<MergedState>) {
        *held(&self.state) = Some(state);
    }

    /// Waits for the merge or write in flight, and keeps others out while held.
    pub(crate) fn gate(&self) -> MutexGuard<'_, ()> {
        held(&self.gate)
    }

    /// This process answered from the saved view: what it says for a heartbeat.
    pub(crate) fn served(&self, beat: (Vec<String>, Vec<String>)) {
        *held(&self.served) = Some(beat);
    }

    /// What the last answer from the saved view says for a heartbeat, once.
    pub(crate) fn take_served(&self) -> Option<(Vec<String>, Vec<String>)> {
        held(&self.served).take()
    }

    pub(crate) fn journal(&self) -> MutexGuard<'_, Journal> {
        held(&self.journal)
    }

    /// The listing digest and report of the last merge of the state in memory.
    pub(crate) fn listed(&self) -> MutexGuard<'_, Option<(blake3::Hash, MergeReport)>> {
        held(&self.listed)
    }
}
