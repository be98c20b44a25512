//! Retention copies: the document of each snapshot this device made, kept in local state
//! until the other devices have verified the snapshot.
//!
//! ```text
//! STATE/stores/<store id>/retention/<hash>.automerge   Automerge save() of the document
//!   compacted into snapshots/<hash>.sqlite (the same <hash>), written durably before the
//!   compaction record is published
//! ```
//! A copy goes once every other device whose beat this device can read has verified its
//! snapshot, or once it is older than [`RETENTION_SECS`] with its snapshot in the folder: age
//! alone never drops the only copy, whatever the clock did.

use std::io;
use std::path::{Path, PathBuf};

use automerge::Automerge;

use crate::format::snapshot;
use crate::fs;
use crate::merge::TEXT_ENCODING;

/// A retention copy of a compacted document is kept until every other device has verified
/// the snapshot, or this long (30 days) at most.
pub const RETENTION_SECS: i64 = 30 * 24 * 3600;

const EXT: &str = ".automerge";

/// One retention copy.
pub(crate) struct Retained {
    path: PathBuf,
    /// The name of the snapshot it is the document of.
    pub(crate) snapshot: String,
}

impl Retained {
    /// Seconds since it was written (0 if the clock says it is from the future).
    pub(crate) fn age_secs(&self) -> i64 {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or(0, |d| d.as_secs() as i64)
    }

    /// Deletes it.
    pub(crate) fn release(&self) {
        let _ = fs::remove(&self.path);
    }
}

/// This device's retention copies of one store.
pub(crate) struct Retention {
    dir: PathBuf,
}

impl Retention {
    pub(crate) fn new(store_state: &Path) -> Retention {
        Retention {
            dir: store_state.join("retention"),
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
                    path: e.path(),
                    snapshot,
                })
            })
            .collect()
    }

    /// The documents of every retention copy that loads.
    pub(crate) fn documents(&self) -> Vec<Automerge> {
        self.entries()
            .iter()
            .filter_map(|r| std::fs::read(&r.path).ok())
            .filter_map(|b| {
                Automerge::load_with_options(
                    &b,
                    automerge::LoadOptions::new().text_encoding(TEXT_ENCODING),
                )
                .ok()
            })
            .collect()
    }
}
