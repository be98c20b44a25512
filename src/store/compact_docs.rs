//! A repo's compaction folds every document (docs/FORMAT.md §18): the root document's
//! snapshot gets a row per document beside it, and the steps of §14 cover them all — the
//! snapshot is verified row by row before anything is recorded, each document's retention
//! copy is kept in its own local state, and only then the documents' op files, packs and
//! snapshots it folds go. A deleted document's history goes: its row keeps its name, heads
//! and folded files, not its changes.

use std::collections::{BTreeSet, HashSet};

use automerge::ReadDoc;

use crate::error::Result;
use crate::format::snapshot::{DocRow, SNAPSHOTS_DIR};
use crate::store::documents::is_deleted;
use crate::store::Store;

/// One document's part of a repo's compaction.
pub(crate) struct DocFold {
    /// The document's handle.
    handle: Store,
    /// Its row, as the snapshot holds it (sealed in an encrypted store).
    pub(crate) row: DocRow,
    /// Its save, in the plain (the retention copy).
    save: Option<Vec<u8>>,
    /// Its op files the snapshot folds (paths), loose or packed.
    pub(crate) ops: Vec<String>,
    /// Its own snapshots (`<name>-<hash>.sqlite`) the snapshot folds.
    pub(crate) snaps: Vec<String>,
}

/// A document's row in a snapshot of the root document, by name.
#[derive(Debug, Clone)]
pub(crate) struct RowName {
    /// The snapshot's file name.
    pub(crate) snapshot: String,
    /// The document's name in file names.
    pub(crate) name: String,
    /// Its id as written (sealed, in hex, in an encrypted store).
    pub(crate) id: String,
    /// A deleted document whose history the snapshot dropped.
    pub(crate) dropped: bool,
}

impl Store {
    /// Every document beside the root one, merged (`save`: its cache saved) and checked
    /// complete, as the rows of a repo's snapshot. Refused with [`Error::Incomplete`] when
    /// one document's view may lack compacted history, as for the root document.
    pub(crate) fn fold_documents(&self, save: bool) -> Result<Vec<DocFold>> {
        let feature = crate::format::marker::DOCS_FEATURE;
        if !crate::folder::has_feature(&*self.inner.folder, feature) {
            return Ok(Vec::new());
        }
        let tombstones = self.dropped_documents();
        let mut out = Vec::new();
        for info in crate::repo::catalog::list(self)? {
            if info.root {
                continue;
            }
            let handle = self.for_doc(Some(info.id.as_str()));
            out.push(handle.fold_one(save, &tombstones)?);
        }
        Ok(out)
    }

    /// This (document) handle's part of a repo's compaction.
    fn fold_one(&self, save: bool, tombstones: &HashSet<String>) -> Result<DocFold> {
        let (_, state, ops, snaps) = self.foldable(save)?;
        let name = self.inner.doc_name.clone().unwrap_or_default();
        let id = self.inner.doc.clone().unwrap_or_default();
        // Its own snapshots; the root document's are the root's to fold.
        let snaps: Vec<String> = snaps
            .into_iter()
            .filter(|s| {
                crate::folder::snapshot_name(s)
                    .is_some_and(|n| crate::format::snapshot::split_doc(n).0.is_some())
            })
            .collect();
        let folded_rows: Vec<(String, u64, String)> = ops
            .iter()
            .filter_map(|(rel, hash)| {
                let e = crate::folder::scan::OpEntry::parse(rel)?;
                Some((e.actor().to_string(), e.seq, hash.clone()))
            })
            .collect();
        let heads: Vec<String> = state
            .doc
            .get_heads()
            .iter()
            .map(ToString::to_string)
            .collect();
        // A deleted document's history goes; so does one that only a dropped row names.
        let dropped = is_deleted(&state.doc) || (heads.is_empty() && tombstones.contains(&name));
        let (content, save) = if dropped {
            (None, None)
        } else {
            let save = state.doc.save();
            let json = crate::render::document(&state.doc).to_string();
            (Some(self.seal_row(&name, &save, &json)?), Some(save))
        };
        Ok(DocFold {
            handle: self.clone(),
            row: DocRow {
                id: self.seal_id(&name, &id)?,
                name,
                heads,
                changes: if dropped {
                    0
                } else {
                    state.doc.stats().num_changes
                },
                content,
                folded: folded_rows,
            },
            save,
            ops: ops.into_iter().map(|(rel, _)| rel).collect(),
            snaps,
        })
    }

    /// A document's save and JSON as its row holds them: sealed (bound to its name) in an
    /// encrypted store.
    fn seal_row(&self, name: &str, save: &[u8], json: &str) -> Result<(Vec<u8>, String)> {
        if !self.is_encrypted() {
            return Ok((save.to_vec(), json.to_string()));
        }
        let ring = self.keyring().ok_or_else(|| self.locked())?;
        let seal = ring.seal();
        Ok((
            seal.seal("snapshot-document", name, save),
            hex::encode(seal.seal("snapshot-json", name, json.as_bytes())),
        ))
    }

    /// A document's id as its row holds it: sealed, in hex, in an encrypted store.
    fn seal_id(&self, name: &str, id: &str) -> Result<String> {
        if !self.is_encrypted() {
            return Ok(id.to_string());
        }
        let ring = self.keyring().ok_or_else(|| self.locked())?;
        Ok(hex::encode(ring.seal().seal(
            "snapshot-doc-id",
            name,
            id.as_bytes(),
        )))
    }

    /// The names of the documents whose history a snapshot of the root document dropped
    /// (deleted ones).
    fn dropped_documents(&self) -> HashSet<String> {
        self.repo_snapshot_rows()
            .into_iter()
            .filter(|r| r.dropped)
            .map(|r| r.name)
            .collect()
    }

    /// Every document row of the root document's snapshots in the folder (of this store;
    /// one that does not open has none).
    pub(crate) fn repo_snapshot_rows(&self) -> Vec<RowName> {
        let mut out = Vec::new();
        let source = self.source();
        let listed = self.inner.folder.list(SNAPSHOTS_DIR).unwrap_or_default();
        for entry in listed.into_iter().filter(|e| e.is_file()) {
            let file = entry.name;
            let root_snapshot =
                matches!(crate::format::snapshot::parse_name(&file), Some((_, false)))
                    && crate::format::snapshot::split_doc(&file).0.is_none();
            if !root_snapshot {
                continue;
            }
            let Ok(rows) = source.doc_rows(&crate::folder::snapshot_rel(&file)) else {
                continue;
            };
            if rows.store() != self.inner.marker.store_id {
                continue;
            }
            for (name, id, dropped) in rows.names().unwrap_or_default() {
                out.push(RowName {
                    snapshot: file.clone(),
                    name,
                    id,
                    dropped,
                });
            }
        }
        out
    }

    /// Whether a snapshot of the root document has a row of this (document) handle's
    /// document: `Some(true)` when it dropped its history (deleted), `None` for no row.
    pub(crate) fn snapshot_row_of(&self) -> Option<bool> {
        let name = self.inner.doc_name.as_deref()?;
        let (snapshots, _) = crate::folder::scan::snapshots_of(&*self.inner.folder, None);
        let mut out = None;
        for rel in snapshots {
            let Ok(rows) = self.source().doc_rows(&rel) else {
                continue;
            };
            if let Ok(Some(row)) = rows.row(name) {
                out = Some(out.unwrap_or(true) && row.dropped);
            }
        }
        out
    }

    /// The id of a document from a row's id as written (opened in an encrypted store, and
    /// only when its name is the id's keyed hash).
    pub(crate) fn row_id(&self, name: &str, written: &str) -> Option<String> {
        if !self.is_encrypted() {
            return Some(written.to_string());
        }
        let source = self.source();
        let sealed = hex::decode(written).ok()?;
        // Sealed with whichever key sealed its snapshot: any this device has may open it.
        let ring = self.keyring()?;
        let id = ring
            .seals()
            .find_map(|seal| seal.open("snapshot-doc-id", name, &sealed).ok())?;
        let id = String::from_utf8(id).ok()?;
        (source.doc_name(&id).as_deref() == Some(name)).then_some(id)
    }
}

/// Compaction's step 2 for the documents: each row of the published snapshot at `path`
/// reads back as folded (same heads and number of changes, a dropped one dropped).
pub(crate) fn verify_rows(
    source: &crate::folder::Source<'_>,
    rel: &str,
    docs: &[DocFold],
) -> std::result::Result<(), String> {
    if docs.is_empty() {
        return Ok(());
    }
    let rows = source.doc_rows(rel).map_err(|e| e.to_string())?;
    for d in docs {
        let mut snap = rows
            .row(&d.row.name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("document {} has no row", d.row.name))?;
        if snap.dropped != d.row.content.is_none() || snap.changes != d.row.changes {
            return Err(format!("document {} read back otherwise", d.row.name));
        }
        let want: HashSet<String> = snap.folded_ops.iter().map(|(p, _)| p.clone()).collect();
        if want.len() != d.ops.len() || !d.ops.iter().all(|p| want.contains(p)) {
            return Err(format!(
                "document {} read back with other folded files",
                d.row.name
            ));
        }
        if snap.dropped {
            continue;
        }
        let doc_source = crate::folder::Source {
            doc: Some(&d.row.name),
            ..source.clone()
        };
        doc_source.open_snapshot(&mut snap).map_err(|(_, r)| r)?;
        let doc = crate::doc::load(&snap.automerge).map_err(|e| format!("its document: {e}"))?;
        let mut got: Vec<String> = doc.get_heads().iter().map(ToString::to_string).collect();
        let mut want = d.row.heads.clone();
        got.sort();
        want.sort();
        if got != want || doc.stats().num_changes != d.row.changes {
            return Err(format!(
                "document {} read back with other heads or another number of changes",
                d.row.name
            ));
        }
    }
    Ok(())
}

impl Store {
    /// Compaction's step 3 for the documents: each one's retention copy, in its own local
    /// state (a repair of it writes back from there).
    pub(crate) fn retain_documents(&self, snapshot: &str, docs: &[DocFold]) -> Result<()> {
        for d in docs {
            if let Some(save) = &d.save {
                d.handle.retain(snapshot, save)?;
            }
        }
        Ok(())
    }

    /// Compaction's last step for the documents: their folded op files (loose), the
    /// documents' packs every entry of which is folded (any device's), their folded
    /// snapshots with their records; the outbox entries the snapshot holds are released.
    pub(crate) fn delete_folded_documents(&self, docs: &[DocFold]) {
        let root = &self.inner.root;
        let folded: HashSet<&str> = docs
            .iter()
            .flat_map(|d| &d.ops)
            .map(String::as_str)
            .collect();
        let mut dirs = BTreeSet::new();
        for d in docs {
            for rel in &d.ops {
                let path = root.join(rel);
                if self.has_file(rel) {
                    self.remove_or_log(&path, "a folded op file");
                    if let Some(dir) = path.parent() {
                        dirs.insert(dir.to_path_buf());
                    }
                }
            }
            for kept in d.handle.outbox().entries() {
                if folded.contains(kept.rel().as_str()) {
                    kept.release();
                }
            }
            for old in &d.snaps {
                self.remove_or_log(root.join(old), "a folded snapshot");
                if let Some(record) = crate::folder::record_rel(old) {
                    self.remove_or_log(root.join(record), "a folded compaction record");
                }
            }
        }
        let folder = &*self.inner.folder;
        for actor in crate::folder::scan::pack_actors(folder) {
            for (rel, index) in crate::folder::scan::docs_packs(folder, &actor) {
                let entries = crate::folder::scan::docs_pack_entries(&rel, &actor, index);
                if !entries.is_empty()
                    && entries.iter().all(|(e, _)| folded.contains(e.rel.as_str()))
                {
                    self.remove_or_log(root.join(&rel), "a folded documents' pack");
                    dirs.insert(crate::folder::layout::actor_packs(root, &actor));
                }
            }
        }
        for dir in dirs {
            self.sync_dir_or_log(dir);
        }
    }
}
