//! The folder as readers see it: its path, and what opens its sealed files.

use std::path::Path;

use crate::report::ProblemKind;
use crate::seal::Keyring;

/// The folder merges read, with what opens its sealed files (an encrypted store).
/// Dereferences to the folder's path.
#[derive(Clone)]
pub(crate) struct Source<'a> {
    pub(crate) root: &'a Path,
    /// Where every read of the folder goes (the folder at `root`).
    pub(crate) folder: std::sync::Arc<dyn crate::folders::Folder>,
    /// The store's keys, when this device has them.
    pub(crate) seal: Option<std::sync::Arc<Keyring>>,
    /// The store is encrypted: plain files are not trusted.
    pub(crate) sealed: bool,
    /// The name in file names of the document read (`None`: the root document; its id in a
    /// plain store, §18): an op file of another is not used.
    pub(crate) doc: Option<&'a str>,
    /// Told how far long work is ([`crate::Store::set_progress`]).
    pub(crate) progress: Option<&'a (dyn Fn(crate::Progress) + Send + Sync)>,
}

/// Why a file sealed with a key this device lacks is not used.
pub(crate) fn other_key() -> (ProblemKind, String) {
    (
        ProblemKind::OtherKey,
        "sealed with a newer key of this store (rotated on another device): import it there with `crdtdir key export`, here with `crdtdir key import`".to_string(),
    )
}

impl std::ops::Deref for Source<'_> {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.root
    }
}

impl<'a> Source<'a> {
    /// A plain store's folder.
    #[cfg(test)]
    pub(crate) fn plain(root: &'a Path) -> Source<'a> {
        Source {
            root,
            folder: std::sync::Arc::new(crate::folders::Local::new(root)),
            seal: None,
            sealed: false,
            doc: None,
            progress: None,
        }
    }

    /// The plain bytes of a file of `kind` at `context`: opened when the store is sealed,
    /// as they are otherwise. `Err` says why the file is not used.
    pub(crate) fn open<'b>(
        &self,
        kind: &str,
        context: &str,
        bytes: &'b [u8],
    ) -> Result<std::borrow::Cow<'b, [u8]>, (ProblemKind, String)> {
        let damaged = |reason: &str| (ProblemKind::Damaged, reason.to_string());
        match crate::seal::unwrap(bytes) {
            Err(e) => Err((e.kind(), e.to_string())),
            Ok(Some(sealed)) => match (&self.seal, self.sealed) {
                (Some(ring), _) => match ring.seal_for(sealed.key.as_deref()) {
                    Some(seal) => seal
                        .open(kind, context, &sealed.bytes)
                        .map(std::borrow::Cow::Owned)
                        .map_err(|r| (ProblemKind::Damaged, r)),
                    None => Err(other_key()),
                },
                (None, true) => Err(damaged("sealed, and this device has no key")),
                (None, false) => Err(damaged("a sealed file in a store that is not encrypted")),
            },
            Ok(None) if self.sealed => Err(damaged(
                "a plain file in an encrypted store: not used (a store is never half encrypted)",
            )),
            Ok(None) => Ok(std::borrow::Cow::Borrowed(bytes)),
        }
    }
}

impl Source<'_> {
    /// The document rows of the snapshot at `rel` in the folder: opened where it lies on the
    /// local disk, read whole from a folder elsewhere.
    pub(crate) fn doc_rows(
        &self,
        rel: &str,
    ) -> Result<crate::format::snapshot::DocRows, crate::format::DecodeError> {
        use crate::format::snapshot::DocRows;
        match self.folder.local_path() {
            Some(root) => DocRows::open(&root.join(rel)),
            None => {
                let bytes = self
                    .folder
                    .read(rel)
                    .map_err(|e| format!("unreadable: {e}"))?;
                DocRows::from_bytes(&bytes)
            }
        }
    }

    /// The change count the snapshot (or checkpoint) at `rel` claims in its `meta` (0 when
    /// it names none): on the local disk without reading the file whole.
    pub(crate) fn claimed_changes(&self, rel: &str) -> Result<u64, crate::format::DecodeError> {
        Ok(self
            .doc_rows(rel)?
            .meta("changes")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0))
    }

    /// Tells the progress callback, if any.
    pub(crate) fn tell(&self, p: crate::Progress) {
        if let Some(f) = self.progress {
            f(p);
        }
    }

    /// The name document `id` has in file names: its id in a plain store, a keyed hash of it
    /// in an encrypted one (`None` there without the key).
    pub(crate) fn doc_name(&self, id: &str) -> Option<String> {
        match (self.sealed, &self.seal) {
            (false, _) => Some(id.to_string()),
            (true, Some(ring)) => Some(ring.root_seal().doc_name(id)),
            (true, None) => None,
        }
    }

    /// Opens a snapshot of an encrypted store in place: its document and its device
    /// names. Nothing to do in a plain store.
    pub(crate) fn open_snapshot(
        &self,
        snapshot: &mut crate::format::snapshot::Snapshot,
    ) -> Result<(), (ProblemKind, String)> {
        if !self.sealed {
            return Ok(());
        }
        let ring = self.seal.as_ref().ok_or((
            ProblemKind::Damaged,
            "sealed, and this device has no key".to_string(),
        ))?;
        let seal = ring
            .seal_for(snapshot.key.as_deref())
            .ok_or_else(other_key)?;
        let damaged = |r: String| (ProblemKind::Damaged, r);
        // A repo snapshot's document row is bound to the document's name.
        if !snapshot.dropped {
            snapshot.automerge = seal
                .open(
                    "snapshot-document",
                    snapshot.doc.as_deref().unwrap_or(""),
                    &snapshot.automerge,
                )
                .map_err(damaged)?;
        }
        snapshot.devices = match &snapshot.sealed_devices {
            Some(hex_text) => {
                let sealed = hex::decode(hex_text)
                    .map_err(|_| damaged("its sealed device names are not hex".into()))?;
                let names = seal
                    .open("snapshot-devices", "", &sealed)
                    .map_err(damaged)?;
                serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&names)
                    .map_err(|e| damaged(format!("its device names do not decode: {e}")))?
                    .into_iter()
                    .collect()
            }
            None => Vec::new(),
        };
        Ok(())
    }
}
