//! Retention copies: the document of each snapshot this device made, kept in local state
//! until the other devices have verified the snapshot.
//!
//! ```text
//! STATE/stores/<store id>/retention/<hash>.automerge   Automerge save() of the document
//!   compacted into snapshots/<hash>.sqlite (the same <hash>), written durably before the
//!   compaction record is published
//! ```
//! A copy goes once every other device whose beat this device can read has verified its
//! snapshot, or once another copy holds every change it holds. Age never releases a copy,
//! whatever the clock did.

use std::io;
use std::path::{Path, PathBuf};

use automerge::{Automerge, ReadDoc};

use crate::format::snapshot;
use crate::fs;

/// How long this device keeps a copy of its own changes (an outbox entry, a kept pack) that
/// the folder holds but some other device has not acknowledged: 30 days. (A retention copy
/// of a compacted document is kept until the other devices verified its snapshot, however
/// long that takes.)
pub const RETENTION_SECS: i64 = 30 * 24 * 3600;

const EXT: &str = ".automerge";

/// One retention copy.
pub(crate) struct Retained {
    file: crate::local::kept::KeptFile,
    /// The name of the snapshot it is the document of.
    pub(crate) snapshot: String,
}

impl Retained {
    /// Deletes it.
    pub(crate) fn release(&self) {
        self.file.release("a released retention copy");
    }

    pub(crate) fn file(&self) -> &crate::local::kept::KeptFile {
        &self.file
    }
}

/// This device's retention copies of one store.
pub(crate) struct Retention {
    dir: PathBuf,
}

impl Retention {
    pub(crate) fn new(store_state: &Path) -> Retention {
        Retention {
            dir: store_state.join(crate::local::names::RETENTION),
        }
    }

    /// Keeps `doc` (Automerge bytes) as the document of the snapshot named `snapshot`,
    /// durably; returns the copy's path.
    pub(crate) fn keep(&self, snapshot: &str, doc: &[u8]) -> io::Result<PathBuf> {
        let Some((hash, false)) = snapshot::parse_name(snapshot) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{snapshot:?} is not a snapshot name"),
            ));
        };
        let path = self.dir.join(format!("{hash}{EXT}"));
        fs::replace_local(&path, doc)?;
        Ok(path)
    }

    /// Every retention copy, by the snapshot it belongs to.
    pub(crate) fn entries(&self) -> Vec<Retained> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let hash = name.strip_suffix(EXT)?;
                let snapshot = format!("{hash}.sqlite");
                matches!(snapshot::parse_name(&snapshot), Some((_, false))).then(|| Retained {
                    file: crate::local::kept::KeptFile::new(e.path()),
                    snapshot,
                })
            })
            .collect()
    }

    /// Releases, with the root document's copy of `snapshot` (this retention is the root
    /// document's), every other document's copy of the same snapshot (a repo's compaction
    /// keeps one per document, in the document's own local state).
    pub(crate) fn release_documents(&self, snapshot: &str) {
        let Some((hash, false)) = snapshot::parse_name(snapshot) else {
            return;
        };
        let Some(store_state) = self.dir.parent() else {
            return;
        };
        let docs = store_state.join(crate::local::names::DOCS);
        for doc in std::fs::read_dir(docs).into_iter().flatten().flatten() {
            let copy = doc
                .path()
                .join(crate::local::names::RETENTION)
                .join(format!("{hash}{EXT}"));
            if copy.is_file() {
                fs::remove_or_log(&copy, "a released retention copy");
            }
        }
    }

    /// The snapshots whose copy another copy holds whole (every change of its document is
    /// in the other's; of two copies with the same changes, the one with the smaller name).
    pub(crate) fn superseded(&self) -> std::collections::HashSet<String> {
        let loaded: Vec<(String, Automerge)> = self
            .entries()
            .into_iter()
            .filter_map(|r| {
                let bytes = std::fs::read(r.file.path()).ok()?;
                let doc = crate::doc::salvage(&bytes)?;
                Some((r.snapshot, doc))
            })
            .collect();
        let mut out = std::collections::HashSet::new();
        for (name, doc) in &loaded {
            let heads = doc.get_heads();
            let held_by_another = loaded.iter().any(|(other, by)| {
                other != name
                    && heads.iter().all(|h| by.get_change_by_hash(h).is_some())
                    && (by.get_heads() != heads || other > name)
            });
            if held_by_another {
                out.insert(name.clone());
            }
        }
        out
    }

    /// The documents of every retention copy that loads.
    pub(crate) fn documents(&self) -> Vec<Automerge> {
        self.entries()
            .iter()
            .filter_map(|r| std::fs::read(r.file.path()).ok())
            .filter_map(|b| crate::doc::salvage(&b))
            .collect()
    }
}
