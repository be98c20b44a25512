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

mod catalog;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use automerge::ReadDoc;
use serde_json::Value as Json;

use crate::error::{Error, Refusal, Result};
use crate::format::names;
use crate::patch::PatchOp;
use crate::store::{Options, Store};

/// The message of a document's deletion change (a change with no operations).
pub const DELETED: &str = "crdtdir: document deleted";

/// The prefix of a document's URL form, `crdtdir:<id>`.
const URL_PREFIX: &str = "crdtdir:";

/// A document's id: 128 random bits, as 32 lowercase hex digits. `crdtdir:<id>` is its URL
/// form, and either parses. The root document's id is its store's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct DocId(String);

impl DocId {
    /// A new random id (from the OS random number generator).
    pub fn random() -> Result<DocId> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| Error::Internal {
            what: format!("no random numbers: {e}"),
        })?;
        Ok(DocId(hex::encode(bytes)))
    }

    /// The 32 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL form, `crdtdir:<id>`.
    pub fn url(&self) -> String {
        format!("{URL_PREFIX}{}", self.0)
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DocId {
    type Err = Error;

    /// 32 lowercase hex digits, or `crdtdir:` and them.
    fn from_str(s: &str) -> Result<DocId> {
        let id = s.strip_prefix(URL_PREFIX).unwrap_or(s);
        if names::is_doc_id(id) {
            Ok(DocId(id.to_string()))
        } else {
            Err(Error::DocId {
                given: s.to_string(),
            })
        }
    }
}

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
        let view = if doc.known_here() {
            doc.read()?
        } else {
            let scan = doc.scan();
            if scan.ops.is_empty() {
                return Err(unknown(false));
            }
            doc.read_listed(&scan)?
        };
        if is_deleted(view.doc()) {
            return Err(unknown(true));
        }
        Ok(doc)
    }

    /// Every document of the folder, the root one first, then by id, deleted ones too
    /// (marked). From one listing of `ops/` and a cached catalog in local state: only the
    /// documents whose files changed since the last listing are opened.
    pub fn docs(&self) -> Result<Vec<DocInfo>> {
        catalog::list(&self.root)
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

impl Store {
    /// The id of this handle's document: its store's id for the root document.
    pub fn doc_id(&self) -> DocId {
        DocId(
            self.inner
                .doc
                .clone()
                .unwrap_or_else(|| self.id().to_string()),
        )
    }

    /// True for the store's root document.
    pub fn is_root_doc(&self) -> bool {
        self.inner.doc.is_none()
    }

    /// True when this device has local state of this document (it read or wrote it).
    pub(crate) fn known_here(&self) -> bool {
        self.inner.state.path().is_dir()
    }
}

/// True when every head of `doc` is a deletion: a change with no operations and the message
/// [`DELETED`].
pub(crate) fn is_deleted(doc: &automerge::Automerge) -> bool {
    let heads = doc.get_heads();
    !heads.is_empty()
        && heads.iter().all(|h| {
            doc.get_change_by_hash(h)
                .is_some_and(|c| c.is_empty() && c.message() == Some(DELETED))
        })
}
