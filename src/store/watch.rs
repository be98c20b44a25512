//! A store watched: [`Store::watch`] starts a watcher (`crate::watch`) over the store, which
//! provides what the watcher needs ([`Live`]).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use automerge::ChangeHash;

use crate::error::Result;
use crate::folder::scan::Scan;
use crate::merged::MergedState;
use crate::patch::json::JsonPatch;
use crate::presence::Due;
use crate::report::MergeReport;
use crate::store::Store;
use crate::watch::repo::Documents;
use crate::watch::{Event, Live, WatchHandle, WatchOptions, Watched, Watcher};

impl Store {
    /// Watches the folder: every batch of new files merged is an [`Event`] (heads, the
    /// changes, JSON Pointer patches, the report when it changed).
    ///
    /// File events only trigger a merge; a listing decides what is new, so lost events
    /// cost latency, never changes: any overflow lists again, a safety listing runs every
    /// [`WatchOptions::safety_listing`], and without file events (network file systems,
    /// FUSE mounts) the folder is listed every [`WatchOptions::poll`]. Events are debounced
    /// and one merge runs at a time. The document stays in memory, shared with this store's
    /// clones: writes through any of them come back as events marked `local`. While it runs,
    /// the watcher publishes this device's heartbeat at most once a minute.
    ///
    /// ```
    /// use std::time::Duration;
    /// use crdtdir::{Options, Store, WatchOptions};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let folder = dir.path().join("todo");
    /// let laptop = Store::init(&folder, Options::new().state_dir(dir.path().join("l")).device("laptop"),
    ///                          Some(&serde_json::json!({"items": []})))?;
    /// let phone = Store::open(&folder, Options::new().state_dir(dir.path().join("p")).device("phone"))?;
    /// let watcher = laptop.watch(WatchOptions::new())?;
    /// assert!(watcher.recv_timeout(Duration::from_secs(5)).unwrap().initial);
    /// // Another device's change arrives (here: written into the same folder).
    /// phone.apply_patch(&crdtdir::parse_patch(r#"[{"op":"add","path":"/items/-","value":"eggs"}]"#)?)?;
    /// let event = watcher.recv_timeout(Duration::from_secs(10)).expect("an event");
    /// assert!(!event.local);
    /// assert_eq!(event.changes[0].device, "phone");
    /// assert_eq!(serde_json::to_value(&event.patches[0])?["path"], "/items/0");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn watch(&self, options: WatchOptions) -> Result<Watcher> {
        self.check_unlocked()?;
        Watcher::start(self.clone(), options)
    }

    /// Watches the folder and calls `on_event` for every [`Event`], on the watching thread;
    /// the watcher stops when `on_event` returns `false`, when the handle is dropped or
    /// stopped.
    pub fn watch_with(
        &self,
        options: WatchOptions,
        on_event: impl FnMut(&Event) -> bool + Send + 'static,
    ) -> Result<WatchHandle> {
        self.check_unlocked()?;
        crate::watch::spawn(self.clone(), options, on_event)
    }
}

#[cfg(feature = "async")]
impl Store {
    /// [`Store::watch`] as a [`Stream`](futures_core::Stream) of [`Event`]s, for any async
    /// runtime. Dropping the stream stops the watcher.
    pub fn watch_stream(
        &self,
        options: WatchOptions,
    ) -> Result<crate::nonblocking::WatchStream<Event>> {
        crate::nonblocking::WatchStream::start(|on_event| self.watch_with(options, on_event))
    }

    /// This store's blocking calls as futures (each runs on the `blocking` crate's thread
    /// pool).
    pub fn nonblocking(&self) -> crate::nonblocking::NonBlocking {
        crate::nonblocking::NonBlocking {
            store: self.clone(),
        }
    }
}

impl Live for Store {
    fn local(&self) -> bool {
        self.is_local()
    }

    fn root(&self) -> &Path {
        &self.inner.root
    }

    fn scan(&self) -> crate::folder::scan::Scan {
        Store::scan(self)
    }

    fn scan_after(&self, last: Scan, paths: &[std::path::PathBuf]) -> Option<Scan> {
        crate::folder::scan::with_new_files(
            last,
            &self.inner.root,
            self.inner.doc_name.as_deref(),
            paths,
        )
    }

    fn watched(&self) -> &Watched {
        &self.inner.memory.watched
    }

    fn own_actors(&self) -> HashSet<String> {
        Store::own_actors(self)
    }

    fn watching(&self, started: bool) {
        let mut journal = self.journal();
        if started {
            journal.watcher_started();
        } else {
            journal.watcher_stopped();
        }
    }

    fn logged(&self, from: &[ChangeHash], to: &[ChangeHash]) -> Option<Vec<JsonPatch>> {
        self.journal().chain(from, to)
    }

    fn in_memory(&self) -> Option<Arc<MergedState>> {
        self.inner.memory.peek()
    }

    fn merge_listed(&self, scan: &Scan) -> (Arc<MergedState>, MergeReport) {
        let (state, report, _) = {
            // One at a time with writes: a write waits for this merge instead of finding
            // the document checked out.
            let _gate = self.inner.memory.gate();
            self.merged(scan, false)
        };
        (state, self.with_marker_problem(report))
    }

    fn touched(&self) -> std::io::Result<Option<String>> {
        Store::touched(self)
    }

    fn beat_if_stale(&self) -> Result<bool> {
        self.beat_when(Due::Stale)
    }

    fn upkeep_packs(&self) -> Result<()> {
        self.maintain_packs(true).map(drop)
    }

    fn write_back_lost(&self) -> Result<()> {
        Store::write_back_lost(self).map(drop)
    }
}

impl Documents for Store {
    fn open_doc(&self, name: Option<&str>, id: Option<&str>) -> Option<(String, Store)> {
        let Some(name) = name else {
            return Some((self.id().to_string(), self.clone()));
        };
        let id = match id {
            Some(id) => id.to_string(),
            None => crate::repo::catalog::id_of_name(self, name)?,
        };
        Some((id.clone(), self.for_doc_named(Some(&id), Some(name))))
    }

    fn doc_digests(&self) -> std::collections::BTreeMap<String, String> {
        crate::repo::catalog::Files::list(self).digests()
    }

    fn doc_scans(&self) -> std::collections::BTreeMap<String, Scan> {
        crate::folder::documents::listing(&*self.inner.folder)
            .into_iter()
            .filter_map(|(doc, files)| {
                let doc = doc?;
                let scan = crate::folder::documents::scan_of(&*self.inner.folder, &doc, files);
                Some((doc, scan))
            })
            .collect()
    }

    fn docs_in_pack(&self, path: &Path) -> Option<Vec<String>> {
        let rel = path.strip_prefix(&self.inner.root).ok()?.to_str()?;
        crate::folder::scan::docs_in_pack(&*self.inner.folder, rel)
    }

    fn is_deleted(&self, state: &MergedState) -> bool {
        crate::store::documents::is_deleted(&state.doc)
    }
}
