//! Many documents in one store folder (docs/FORMAT.md §18): a [`Repo`] is the folder, each
//! document a [`Store`] handle with the whole API of one (read, write, watch, history).
//!
//! A store's root document is the one format 1 knows: every store is a repo with it, and a
//! store of an older build is a repo of that one document. Other documents have a random
//! id ([`DocId`]); their changes go into the same per-actor folders as the root's, named
//! with their document (`ops/<actor>/<doc>-<seq>-<hash>.op`), so a device's changes to
//! every document share its one stream, and opening a document reads only its own files.
//!
//! A document is deleted by a change with no operations and the message [`DELETED`]: it is
//! deleted while every head of its history is such a change. A write concurrent with the
//! deletion (one that did not see it) keeps the document, with both.

pub(crate) mod catalog;

use std::path::Path;

use serde_json::Value as Json;

use crate::compact::Repaired;
use crate::error::{Error, Refusal, Result};
use crate::patch::PatchOp;
use crate::report::CheckReport;
use crate::store::documents::is_deleted;
pub use crate::store::documents::{DocId, DELETED};
use crate::store::{Options, Store};
use crate::watch::{DocEvent, WatchOptions, Watcher};

/// One document as [`Repo::docs`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DocInfo {
    /// Its id.
    pub id: DocId,
    /// It is the store's root document.
    pub root: bool,
    /// Its op files, loose or packed, each once (a compacted history is not counted).
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// When its latest change was made (seconds since the Unix epoch), as its author's
    /// clock said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_change: Option<i64>,
    /// Its `title` field, when that is a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// It is deleted ([`Repo::delete`]).
    pub deleted: bool,
}

/// A store folder as a repo of documents: its root document and any others.
///
/// ```
/// use crdtdir::{Options, Repo};
/// use serde_json::json;
/// # let dir = tempfile::tempdir().unwrap();
/// let repo = Repo::init(dir.path().join("notes"),
///                       Options::new().state_dir(dir.path().join("state")), None)?;
/// let id = repo.create(Some(&json!({"title": "Groceries", "items": []})))?;
/// let note = repo.find(&id)?;
/// note.apply_patch(&[crdtdir::PatchOp::insert("/items/-", json!("milk"))])?;
/// assert_eq!(note.read()?.get("/items/0")?, json!("milk"));
/// let listed = repo.docs()?;
/// assert!(listed.iter().any(|d| d.id == id && d.title.as_deref() == Some("Groceries")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Repo {
    root: Store,
}

impl From<Store> for Repo {
    /// The repo of a store's folder (any handle of the store will do).
    fn from(store: Store) -> Repo {
        Repo {
            root: store.for_doc(None),
        }
    }
}

impl Repo {
    /// Makes `path` a new store ([`Store::init`]); `initial` is its root document.
    pub fn init(path: impl AsRef<Path>, options: Options, initial: Option<&Json>) -> Result<Repo> {
        Store::init(path, options, initial).map(Repo::from)
    }

    /// Opens the store at `path` ([`Store::open`]).
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Repo> {
        Store::open(path, options).map(Repo::from)
    }

    /// The root document (the one a store of format 1 holds).
    pub fn root(&self) -> &Store {
        &self.root
    }

    /// Makes a new document, `initial` (a JSON object) or empty, and returns its id. Its
    /// first change is in the folder (or, when publishing failed, durable on this device and
    /// published with its next write) before this returns.
    pub fn create(&self, initial: Option<&Json>) -> Result<DocId> {
        self.root.check_writable()?;
        self.root.check_unlocked()?;
        if initial.is_some_and(|v| !v.is_object()) {
            return Err(crate::PatchError::Path {
                path: String::new(),
                reason: "the initial document must be a JSON object".into(),
            }
            .into());
        }
        let id = DocId::random()?;
        let doc = self.root.for_doc(Some(id.as_str()));
        let written = match initial {
            Some(v) => doc.apply_patch(&[PatchOp::set("", v.clone())])?.written,
            None => Vec::new(),
        };
        if written.is_empty() {
            doc.write_change(None, true, |_| Ok(()))?;
        }
        Ok(id)
    }

    /// The document `id`: a handle with the whole API of a [`Store`] (the root document's
    /// id gives the root one). It reads only that document's files. Refused for an id no
    /// file in the folder names (not created, or not delivered yet) and for a deleted one.
    pub fn find(&self, id: &DocId) -> Result<Store> {
        if id.as_str() == self.root.id() {
            return Ok(self.root.clone());
        }
        self.root.check_unlocked()?;
        let unknown = |deleted| Error::UnknownDocument {
            id: id.to_string(),
            deleted,
        };
        let doc = self.root.for_doc(Some(id.as_str()));
        // A document this device opened before has its local state; any other must have a
        // file in the folder (a mistyped id leaves nothing behind). One listing either way.
        let row = || doc.snapshot_row_of();
        let view = if doc.known_here() {
            doc.read()?
        } else {
            let scan = doc.scan();
            // Its files: op files, its own snapshots (write-backs), or a row of a snapshot
            // of the root document (a compaction).
            let own_snapshot = scan.snapshots.iter().any(|rel| {
                crate::folder::snapshot_name(rel)
                    .is_some_and(|n| crate::format::snapshot::split_doc(n).0.is_some())
            });
            if scan.ops.is_empty() && !own_snapshot && row().is_none() {
                return Err(unknown(false));
            }
            doc.read_listed(&scan)?
        };
        if is_deleted(view.doc()) {
            return Err(unknown(true));
        }
        // Nothing of it but a row of a compaction that dropped it (or no file at all).
        if view.doc().get_heads().is_empty() {
            return Err(unknown(row() == Some(true)));
        }
        Ok(doc)
    }

    /// Every document of the folder, the root one first, then by id, deleted ones too
    /// (marked). From one listing of `ops/` and a cached catalog in local state: only the
    /// documents whose files changed since the last listing are opened.
    pub fn docs(&self) -> Result<Vec<DocInfo>> {
        catalog::list(&self.root)
    }

    /// Watches every document of the repo with one watcher: one thread and one file event
    /// source for the whole folder, however many documents. Each file event goes to the
    /// document its file names, and each document that changed gives a [`DocEvent`] (its id
    /// and the [`Event`](crate::Event) a watcher of it alone would give). Every document
    /// gets an `initial` event first, when the watcher starts or when it first appears
    /// (made here, or delivered); a deletion is its last (`deleted`). No document stays in
    /// memory between its events. Otherwise as [`Store::watch`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use crdtdir::{Options, Repo, WatchOptions};
    /// use serde_json::json;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let folder = dir.path().join("notes");
    /// let laptop = Repo::init(&folder, Options::new().state_dir(dir.path().join("l")), None)?;
    /// let phone = Repo::open(&folder, Options::new().state_dir(dir.path().join("p")).device("phone"))?;
    /// let watcher = laptop.watch(WatchOptions::new())?;
    /// assert!(watcher.recv_timeout(Duration::from_secs(5)).unwrap().root);
    /// // The phone makes a note: the laptop's one watcher tells of it.
    /// let id = phone.create(Some(&json!({"title": "Groceries"})))?;
    /// let event = watcher.recv_timeout(Duration::from_secs(10)).expect("an event");
    /// assert_eq!(event.id, id.as_str());
    /// assert!(event.event.initial);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn watch(&self, options: WatchOptions) -> Result<Watcher<DocEvent>> {
        self.watch_some(options, None)
    }

    /// [`Repo::watch`] for the documents `ids` only (the root document's id is the store's).
    pub fn watch_docs(&self, options: WatchOptions, ids: &[DocId]) -> Result<Watcher<DocEvent>> {
        self.watch_some(options, Some(ids))
    }

    /// [`Repo::watch`] (`ids` `None`) or [`Repo::watch_docs`], calling `on_event` for every
    /// [`DocEvent`] on the watching thread; it stops when `on_event` returns `false`, or
    /// when the handle is dropped or stopped.
    pub fn watch_with(
        &self,
        options: WatchOptions,
        ids: Option<&[DocId]>,
        on_event: impl FnMut(&DocEvent) -> bool + Send + 'static,
    ) -> Result<crate::watch::WatchHandle> {
        let target = self.watch_target(&options, ids)?;
        crate::watch::spawn_target(target, options, on_event)
    }

    fn watch_some(
        &self,
        options: WatchOptions,
        ids: Option<&[DocId]>,
    ) -> Result<Watcher<DocEvent>> {
        let target = self.watch_target(&options, ids)?;
        Watcher::start_target(target, options)
    }

    /// What a watcher of the documents `ids` (`None`: all) watches.
    fn watch_target(
        &self,
        options: &WatchOptions,
        ids: Option<&[DocId]>,
    ) -> Result<crate::watch::repo::Many<Store>> {
        self.root.check_unlocked()?;
        // Errors (a folder that is gone) come back here.
        self.root.read()?;
        let only = ids.map(|ids| {
            ids.iter()
                .map(|id| {
                    (id.as_str() != self.root.id())
                        .then(|| self.root.source().doc_name(id.as_str()))
                        .map(|name| name.unwrap_or_else(|| id.to_string()))
                })
                .collect()
        });
        Ok(crate::watch::repo::Many::new(
            self.root.clone(),
            only,
            options.document,
        ))
    }

    /// Repairs every document this device holds changes of: [`Store::repair`] on the root
    /// document, then on each document with local state on this device (only those can
    /// hold what the folder lost). Returns the root document's outcome and the documents'
    /// that did something, by id.
    pub fn repair(&self) -> Result<(Repaired, Vec<(DocId, Repaired)>)> {
        let root = self.root.repair()?;
        let mut docs = Vec::new();
        let dir = self.root.inner.state.path().join(crate::local::names::DOCS);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| crate::format::names::is_doc_id(n))
            .collect();
        names.sort();
        for name in names {
            let Some(id) = catalog::id_of_name(&self.root, &name) else {
                tracing::warn!(name = %name, "a document this device has local state of has no file that names its id here: not repaired (repair it with its id)");
                continue;
            };
            let repaired = self.root.for_doc_named(Some(&id), Some(&name)).repair()?;
            if !repaired.is_empty() {
                docs.push((DocId(id), repaired));
            }
        }
        Ok((root, docs))
    }

    /// [`Store::check`] of the whole folder: the root document's files and every other
    /// document's (deleted ones too), in one report.
    pub fn check(&self) -> Result<CheckReport> {
        let mut report = self.root.check()?;
        for info in self.docs()? {
            if !info.root {
                report.add(self.root.for_doc(Some(info.id.as_str())).check()?);
            }
        }
        Ok(report)
    }

    /// Deletes the document `id`: a change with no operations and the message [`DELETED`].
    /// Its history stays in the folder (a deletion is a change like any other); a write that
    /// did not see the deletion keeps the document.
    pub fn delete(&self, id: &DocId) -> Result<()> {
        if id.as_str() == self.root.id() {
            return Err(Error::Refused(Refusal::RootDocument));
        }
        let doc = self.find(id)?;
        doc.write_change(Some(DELETED), true, |_| Ok(()))?;
        Ok(())
    }
}
