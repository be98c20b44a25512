//! The catalog: what [`crate::Repo::docs`] lists, from one listing of `ops/` and what this
//! device learnt of each document the last time its files changed.
//!
//! ```text
//! STATE/stores/<store id>/catalog = JSON, a cache (unsynced, rebuilt when it does not read):
//!   {"v": 1, "docs": {"<doc id>": {"files": "<digest of its op file names>", "bytes": <n>,
//!                                  "last_change": <secs>|null, "title": "…"|null,
//!                                  "deleted": true|false}}}
//! ```
//! A document's op file names carry the hashes of their bytes, so the digest of its names
//! changes exactly when its files do: only then is the document opened (merged) again.

use std::collections::BTreeMap;
use std::path::Path;

use automerge::ReadDoc;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::format::names;
use crate::store::Store;

use super::{is_deleted, DocId, DocInfo};

/// What the catalog keeps of one document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    files: String,
    /// The bytes of its op files (names carry their content's hash: same names, same bytes).
    bytes: u64,
    last_change: Option<i64>,
    title: Option<String>,
    deleted: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Catalog {
    v: u32,
    docs: BTreeMap<String, Entry>,
}

/// One document's op files in `ops/`, as listed.
#[derive(Debug, Default)]
struct Files {
    /// `<actor>/<name>` of each.
    names: Vec<String>,
}

impl Files {
    /// What the files hold now (one `stat` each).
    fn bytes(&self, root: &Path) -> u64 {
        let ops = crate::folder::layout::ops(root);
        self.names
            .iter()
            .filter_map(|rel| std::fs::metadata(ops.join(rel)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// The digest of the names (sorted): it changes when the files do.
    fn digest(&mut self) -> String {
        self.names.sort_unstable();
        let mut hasher = blake3::Hasher::new();
        for name in &self.names {
            hasher.update(name.as_bytes());
            hasher.update(b"\n");
        }
        hasher.finalize().to_hex()[..32].to_string()
    }
}

/// The entries of every actor folder of `ops/`, with the folder's name.
fn actor_entries(root: &Path) -> impl Iterator<Item = (String, std::fs::DirEntry)> {
    std::fs::read_dir(crate::folder::layout::ops(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|actor| {
            let name = actor.file_name().to_string_lossy().into_owned();
            names::is_actor_dir(&name).then(|| (name, actor.path()))
        })
        .flat_map(|(actor, path)| {
            std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(move |entry| (actor.clone(), entry))
        })
}

/// How many op files each document has in `ops/` (`None`: the root document).
pub(crate) fn counts(root: &Path) -> BTreeMap<Option<String>, usize> {
    let mut out = BTreeMap::new();
    for (_, entry) in actor_entries(root) {
        if let Some(op) = names::parse_op_name(&entry.file_name().to_string_lossy()) {
            *out.entry(op.doc.map(str::to_string)).or_default() += 1;
        }
    }
    out
}

/// Every document's op files, by document (`None`: the root document).
fn listing(root: &Path) -> BTreeMap<Option<String>, Files> {
    let mut out: BTreeMap<Option<String>, Files> = BTreeMap::new();
    for (actor, entry) in actor_entries(root) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(op) = names::parse_op_name(&name) else {
            continue;
        };
        let doc = op.doc.map(str::to_string);
        out.entry(doc)
            .or_default()
            .names
            .push(format!("{actor}/{name}"));
    }
    out
}

/// What a document's view says of it; `listed`: its op files from a listing made for every
/// document, whose bytes it counts (`None`: list the folder for it, and count none).
fn entry_of(doc: &Store, files: String, listed: Option<&Files>) -> Result<Entry> {
    let view = match listed {
        None => doc.read()?,
        Some(listed) => {
            let mut scan = crate::folder::scan::Scan::default();
            scan.ops = listed
                .names
                .iter()
                .filter_map(|rel| {
                    crate::folder::scan::OpEntry::parse(&format!("{}/{rel}", names::OPS_DIR))
                })
                .collect();
            scan.ops.sort_by(|a, b| a.rel.cmp(&b.rel));
            doc.read_listed(&scan)?
        }
    };
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
        bytes: listed.map_or(0, |l| l.bytes(doc.path())),
        files,
        last_change,
        title,
        deleted: is_deleted(automerge),
    })
}

fn info(id: DocId, root: bool, files: &Files, entry: &Entry) -> DocInfo {
    DocInfo {
        id,
        root,
        files: files.names.len(),
        bytes: entry.bytes,
        last_change: entry.last_change,
        title: entry.title.clone(),
        deleted: entry.deleted,
    }
}

/// The documents of `root`'s store ([`crate::Repo::docs`]).
pub(crate) fn list(root: &Store) -> Result<Vec<DocInfo>> {
    let path = root.inner.state.path().join(crate::local::names::CATALOG);
    let mut catalog: Catalog = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|c: &Catalog| c.v == 1)
        .unwrap_or_default();
    let mut listed = listing(root.path());
    let mut root_files = listed.remove(&None).unwrap_or_default();
    let digest = root_files.digest();
    // The root document: its own view (cached), and its loose op files as listed.
    let mut root_entry = entry_of(root, digest, None)?;
    root_entry.bytes = root_files.bytes(root.path());
    let mut out = vec![info(root.doc_id(), true, &root_files, &root_entry)];
    let mut changed = false;
    let mut kept = BTreeMap::new();
    for (doc, mut files) in listed {
        let Some(doc) = doc else { continue };
        let digest = files.digest();
        let entry = match catalog.docs.remove(&doc) {
            Some(entry) if entry.files == digest => entry,
            _ => {
                changed = true;
                entry_of(&root.for_doc(Some(&doc)), digest, Some(&files))?
            }
        };
        out.push(info(DocId(doc.clone()), false, &files, &entry));
        kept.insert(doc, entry);
    }
    // Documents whose files all went (compacted away, or never delivered) are forgotten.
    changed |= !catalog.docs.is_empty();
    if changed {
        let catalog = Catalog { v: 1, docs: kept };
        let bytes = serde_json::to_vec(&catalog).expect("a catalog serializes");
        if let Err(e) = crate::fs::replace_unsynced(&path, &bytes) {
            tracing::debug!(error = %e, "the catalog was not saved (it is rebuilt next time)");
        }
    }
    Ok(out)
}
