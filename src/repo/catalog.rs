//! The catalog: what [`crate::Repo::docs`] lists, from one listing of `ops/` and what this
//! device learnt of each document the last time its files changed.
//!
//! ```text
//! STATE/stores/<store id>/catalog = JSON, a cache (unsynced, rebuilt when it does not read):
//!   {"v": 4, "listing": "<digest of every name in ops/, packs/, snapshots/>",
//!    "docs": {"<doc name>": {"id": "<doc id>", "files": "<digest of its files>",
//!                            "count": <n>, "bytes": <n>, "last_change": <secs>|null,
//!                            "title": "…"|null, "deleted": true|false}}}
//! ```
//! When no name in the folder changed since (`listing`), the catalog is the answer. Else a
//! document's digest covers its loose op files' names, the names of the documents' packs
//! that hold it (from the index of packs, `crate::folder::docs_index`), of the snapshots of
//! the root document with a row of it, and of its own snapshots; names carry the hashes of
//! their bytes, so the digest changes exactly when its files do: only then is the document
//! opened (merged) again.

use std::collections::BTreeMap;

use automerge::ReadDoc;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::folder::documents::{listing, loose_listing, scan_of};
use crate::format::names::OPS_DIR;
use crate::format::pack::PACKS_DIR;
use crate::format::snapshot::SNAPSHOTS_DIR;
use crate::store::Store;

use super::{DocId, DocInfo};
use crate::store::documents::is_deleted;

/// The version of the catalog file this build reads and writes (any other is rebuilt).
const VERSION: u32 = 4;

/// Above this many documents whose files changed since the last listing, a listing reads
/// every documents' pack header once instead of listing the folder for each document.
const FEW: usize = 16;

/// What the catalog keeps of one document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// The document's id (its name in file names is a keyed hash of it in an encrypted
    /// store).
    id: String,
    files: String,
    /// How many op files it has (each once, loose or packed).
    count: usize,
    /// The bytes of its op files (names carry their content's hash: same names, same bytes).
    bytes: u64,
    last_change: Option<i64>,
    title: Option<String>,
    deleted: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Catalog {
    v: u32,
    /// [`folder_digest`] when it was made: the same again, and nothing changed.
    #[serde(default)]
    listing: String,
    docs: BTreeMap<String, Entry>,
}

/// What a document's view says of it, from `scan` (its op files: listed for it, or taken
/// from a listing made for every document).
fn entry_of(
    doc: &Store,
    id: String,
    files: String,
    scan: &crate::folder::scan::Scan,
) -> Result<Entry> {
    let view = doc.read_listed(scan)?;
    let folder = &*doc.inner.folder;
    // The listing's length where it gave one (off the local disk a stat is a request).
    let loose_len = |e: &crate::folder::scan::OpEntry| -> Option<u64> {
        e.len.or_else(|| folder.stat(&e.rel).ok().flatten()?.len)
    };
    let bytes = scan
        .ops
        .iter()
        .map(|e| match (&e.packed, e.loose) {
            (Some(p), false) => u64::from(p.row.len),
            (Some(p), true) => loose_len(e).unwrap_or(u64::from(p.row.len)),
            (None, _) => loose_len(e).unwrap_or(0),
        })
        .sum();
    let automerge = view.doc();
    let last_change = automerge
        .get_heads()
        .iter()
        .filter_map(|h| automerge.get_change_by_hash(h).map(|c| c.timestamp()))
        .max();
    let title = view
        .json()
        .get("title")
        .and_then(|t| t.as_str())
        .map(str::to_string);
    Ok(Entry {
        id,
        files,
        count: scan.ops.len(),
        bytes,
        last_change,
        title,
        deleted: is_deleted(automerge),
    })
}

fn info(root: bool, entry: &Entry) -> DocInfo {
    DocInfo {
        id: DocId(entry.id.clone()),
        root,
        files: entry.count,
        bytes: entry.bytes,
        last_change: entry.last_change,
        title: entry.title.clone(),
        deleted: entry.deleted,
    }
}

/// What says which files each document beside the root one has, from one listing of the
/// folder: its loose op files, the documents' packs that hold it (from the index of
/// packs), the rows of snapshots of the root document, and its own snapshots.
pub(crate) struct Files {
    loose: BTreeMap<Option<String>, Vec<String>>,
    holding: BTreeMap<String, Vec<String>>,
    rows: Vec<crate::store::compact_docs::RowName>,
    own_snapshots: BTreeMap<String, Vec<String>>,
}

impl Files {
    /// Lists the folder of `root`'s store.
    pub(crate) fn list(root: &Store) -> Files {
        let state = root.inner.state.path();
        let index = crate::folder::scan::docs_packs_index(
            &*root.inner.folder,
            &state.join(crate::local::names::DOCS_PACKS),
        );
        let mut holding: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (rel, docs) in &index.packs {
            for doc in docs {
                holding
                    .entry(hex::encode(doc))
                    .or_default()
                    .push(rel.clone());
            }
        }
        let mut own_snapshots: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let listed = root.inner.folder.list(SNAPSHOTS_DIR);
        for entry in listed.into_iter().flatten() {
            let file = entry.name;
            if let (Some(doc), _) = crate::format::snapshot::split_doc(&file) {
                own_snapshots
                    .entry(doc.to_string())
                    .or_default()
                    .push(file.clone());
            }
        }
        for files in own_snapshots.values_mut() {
            files.sort_unstable();
        }
        Files {
            loose: loose_listing(&*root.inner.folder),
            holding,
            rows: root.repo_snapshot_rows(),
            own_snapshots,
        }
    }

    /// The rows of snapshots of the root document, by document name.
    pub(crate) fn rows_by_name(&self) -> BTreeMap<&str, Vec<&crate::store::compact_docs::RowName>> {
        let mut out: BTreeMap<&str, Vec<&crate::store::compact_docs::RowName>> = BTreeMap::new();
        for row in &self.rows {
            out.entry(row.name.as_str()).or_default().push(row);
        }
        out
    }

    /// Every document beside the root one (by name) with a digest of its files: names carry
    /// the hashes of their bytes, so the digest changes exactly when its files do.
    pub(crate) fn digests(&self) -> BTreeMap<String, String> {
        let rows = self.rows_by_name();
        let mut docs: std::collections::BTreeSet<&str> =
            self.holding.keys().map(String::as_str).collect();
        docs.extend(self.loose.keys().filter_map(|d| d.as_deref()));
        docs.extend(rows.keys());
        docs.extend(self.own_snapshots.keys().map(String::as_str));
        docs.into_iter()
            .map(|doc| {
                let mut hasher = blake3::Hasher::new();
                for rel in self.loose.get(&Some(doc.to_string())).into_iter().flatten() {
                    hasher.update(rel.as_bytes());
                    hasher.update(b"\n");
                }
                for rel in self.holding.get(doc).into_iter().flatten() {
                    hasher.update(b"pack ");
                    hasher.update(rel.as_bytes());
                    hasher.update(b"\n");
                }
                for row in rows.get(doc).into_iter().flatten() {
                    hasher.update(b"snapshot ");
                    hasher.update(row.snapshot.as_bytes());
                    hasher.update(b"\n");
                }
                // Its own snapshots (write-backs) change its view too.
                for file in self.own_snapshots.get(doc).into_iter().flatten() {
                    hasher.update(b"own ");
                    hasher.update(file.as_bytes());
                    hasher.update(b"\n");
                }
                (
                    doc.to_string(),
                    hasher.finalize().to_hex()[..32].to_string(),
                )
            })
            .collect()
    }
}

/// The documents of `root`'s store ([`crate::Repo::docs`]): one listing of `ops/`, the
/// index of documents' packs (headers read only for packs it does not know), and the
/// catalog; a document is opened only when its files changed since the last listing.
pub(crate) fn list(root: &Store) -> Result<Vec<DocInfo>> {
    let state = root.inner.state.path();
    let path = state.join(crate::local::names::CATALOG);
    let mut catalog: Catalog = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|c: &Catalog| c.v == VERSION)
        .unwrap_or_default();
    // The root document: its own view (cached) and listing.
    root.check_unlocked()?;
    let root_id = root.id().to_string();
    let mut out = vec![info(
        true,
        &entry_of(root, root_id, String::new(), &root.scan())?,
    )];
    // No file came or went since the catalog was made: it is the answer.
    let quick = folder_digest(&*root.inner.folder);
    if !catalog.listing.is_empty() && catalog.listing == quick {
        out.extend(catalog.docs.values().map(|e| info(false, e)));
        return Ok(out);
    }
    let files = Files::list(root);
    let digests = files.digests();
    let in_snapshots = files.rows_by_name();
    let stale = digests
        .iter()
        .filter(|(d, g)| catalog.docs.get(*d).is_none_or(|e| &e.files != *g))
        .count();
    // Many documents changed (a first listing): one read of every pack header for all.
    let mut everything = (stale > FEW).then(|| listing(&*root.inner.folder));
    let mut changed = false;
    let mut kept = BTreeMap::new();
    for (doc, digest) in &digests {
        let (doc, digest) = (doc.as_str(), digest.clone());
        let entry = match catalog.docs.remove(doc) {
            Some(entry) if entry.files == digest => entry,
            _ => {
                changed = true;
                // A handle by name lists the document's files; its id is in their envelopes.
                let named = root.for_doc_named(Some(doc), Some(doc));
                let scan = match everything.as_mut() {
                    Some(all) => scan_of(
                        &*root.inner.folder,
                        doc,
                        all.remove(&Some(doc.to_string())).unwrap_or_default(),
                    ),
                    None => named.scan(),
                };
                let rows = in_snapshots.get(doc).map(Vec::as_slice).unwrap_or_default();
                let id = id_of(&named, doc, &scan)
                    .or_else(|| rows.iter().find_map(|r| root.row_id(doc, &r.id)));
                let Some(id) = id else {
                    // No file of it opens (all damaged, or sealed by another key): not
                    // listed until one does.
                    continue;
                };
                let handle = root.for_doc_named(Some(&id), Some(doc));
                let mut entry = entry_of(&handle, id, digest, &scan)?;
                // A deleted document whose history a compaction dropped, and nothing since.
                entry.deleted |= entry.last_change.is_none() && rows.iter().any(|r| r.dropped);
                entry
            }
        };
        out.push(info(false, &entry));
        kept.insert(doc.to_string(), entry);
    }
    // Documents whose files all went (compacted away, or never delivered) are forgotten.
    changed |= !catalog.docs.is_empty() || catalog.listing != quick;
    if changed {
        let catalog = Catalog {
            v: VERSION,
            listing: quick,
            docs: kept,
        };
        let bytes = serde_json::to_vec(&catalog).expect("a catalog serializes");
        if let Err(e) = crate::fs::replace_unsynced(&path, &bytes) {
            tracing::debug!(error = %e, "the catalog was not saved (it is rebuilt next time)");
        }
    }
    Ok(out)
}

/// The id of the document named `name` in file names: the name itself in a plain store; in
/// an encrypted one, the id the envelope of one of its op files (`scan`) names, when its
/// keyed hash is the name.
fn id_of(named: &Store, name: &str, scan: &crate::folder::scan::Scan) -> Option<String> {
    if !named.is_encrypted() {
        return Some(name.to_string());
    }
    let source = named.source();
    scan.ops.iter().find_map(|e| {
        let bytes = e
            .loose
            .then(|| named.inner.folder.read(&e.rel).ok())
            .flatten()
            .or_else(|| {
                let p = e.packed.as_ref()?;
                let all = named.inner.folder.read(&p.pack).ok()?;
                crate::format::pack::entry(&all, &p.row)
                    .ok()
                    .map(<[u8]>::to_vec)
            })?;
        let context = crate::seal::op_context(Some(name), e.actor(), e.seq);
        let plain = source.open("op", &context, &bytes).ok()?;
        let id = crate::format::opfile::decode(&plain).ok()?.doc?;
        (source.doc_name(&id).as_deref() == Some(name)).then_some(id)
    })
}

/// The id of the document named `name` in file names (see [`id_of`]; or from a row of a
/// snapshot of the root document).
pub(crate) fn id_of_name(root: &Store, name: &str) -> Option<String> {
    if !root.is_encrypted() {
        return Some(name.to_string());
    }
    let named = root.for_doc_named(Some(name), Some(name));
    id_of(&named, name, &named.scan()).or_else(|| {
        root.repo_snapshot_rows()
            .iter()
            .filter(|r| r.name == name)
            .find_map(|r| root.row_id(name, &r.id))
    })
}

/// A digest of the names of every file in `ops/`, `packs/` and `snapshots/` (any
/// document's, and the root one's): names carry the hashes of their bytes, so the same
/// digest means the same files. Taken before a listing, so a file that comes during it
/// makes the next one list again.
fn folder_digest(folder: &dyn crate::folders::Folder) -> String {
    let mut names: Vec<String> = Vec::new();
    for top in [OPS_DIR, PACKS_DIR] {
        for (actor, file) in crate::folder::listed_actor_files(folder, top) {
            names.push(format!("{actor}/{file}"));
        }
    }
    for file in folder.list(SNAPSHOTS_DIR).into_iter().flatten() {
        names.push(format!("snapshots/{}", file.name));
    }
    names.sort_unstable();
    let mut hasher = blake3::Hasher::new();
    for name in &names {
        hasher.update(name.as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().to_hex()[..32].to_string()
}
