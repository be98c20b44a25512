//! A document of a store as its handles know it: its id ([`DocId`]), its name in file names,
//! whether it is deleted. The folder-level handle, [`crate::Repo`], builds on these.

use std::fmt;
use std::str::FromStr;

use automerge::ReadDoc;

use crate::error::{Error, Result};
use crate::format::names;
use crate::store::Store;

/// The message of a document's deletion change (a change with no operations).
pub const DELETED: &str = "crdtdir: document deleted";

/// The prefix of a document's URL form, `crdtdir:<id>`.
const URL_PREFIX: &str = "crdtdir:";

/// A document's id: 128 random bits, as 32 lowercase hex digits. `crdtdir:<id>` is its URL
/// form, and either parses. The root document's id is its store's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct DocId(pub(crate) String);

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
