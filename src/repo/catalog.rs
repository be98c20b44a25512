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
use crate::folder::scan::OpEntry;
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

/// One document's op files, loose in `ops/` or in documents' packs, as listed.
#[derive(Debug, Default)]
struct Files {
    /// Loose op files, sorted by path.
    loose: Vec<OpEntry>,
    /// Pack entries, each with its pack's entry count.
    packed: Vec<(OpEntry, usize)>,
}

impl Files {
    /// Its op files, one entry per path (`Scan::ops` of the document).
    fn entries(&self) -> Vec<OpEntry> {
        let mut loose = self.loose.clone();
        loose.sort_by(|a, b| a.rel.cmp(&b.rel));
        crate::folder::scan::with_packed(loose, self.packed.clone())
    }

    /// What the files hold now: a loose file's size (one `stat` each), else its entry's.
    fn bytes(&self, root: &Path) -> u64 {
        self.entries()
            .iter()
            .map(|e| match (&e.packed, e.loose) {
                (Some(p), _) if !root.join(&e.rel).is_file() => u64::from(p.row.len),
                _ => std::fs::metadata(root.join(&e.rel)).map_or(0, |m| m.len()),
            })
            .sum()
    }

    /// How many op files (each path once).
    fn count(&self) -> usize {
        self.entries().len()
    }

    /// The digest of the paths (sorted, each once): it changes when the files do.
    fn digest(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for e in self.entries() {
            hasher.update(e.rel.as_bytes());
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

/// The actors with a folder in `packs/`.
fn pack_actors(root: &Path) -> Vec<String> {
    std::fs::read_dir(crate::folder::layout::packs(root))
        .into_iter()
        .flatten()
        .flatten()
        .map(|a| a.file_name().to_string_lossy().into_owned())
        .filter(|a| names::is_actor_dir(a))
        .collect()
}

/// How many op files each document has, loose or in documents' packs (`None`: the root
/// document's loose ones).
pub(crate) fn counts(root: &Path) -> BTreeMap<Option<String>, usize> {
    listing(root)
        .into_iter()
        .map(|(doc, files)| (doc, files.count()))
        .collect()
}

/// Every document's op files, by document (`None`: the root document, loose ones only).
fn listing(root: &Path) -> BTreeMap<Option<String>, Files> {
    let mut out: BTreeMap<Option<String>, Files> = BTreeMap::new();
    for (actor, entry) in actor_entries(root) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(op) = names::parse_op_name(&name) else {
            continue;
        };
        let doc = op.doc.map(str::to_string);
        if let Some(e) = OpEntry::parse(&crate::folder::op_rel(&actor, &name)) {
            out.entry(doc).or_default().loose.push(e);
        }
    }
    for actor in pack_actors(root) {
        for (rel, index) in crate::folder::scan::docs_packs(root, &actor, None) {
            for (e, count) in crate::folder::scan::docs_pack_entries(&rel, &actor, index) {
                let doc = e.doc().map(str::to_string);
                out.entry(doc).or_default().packed.push((e, count));
            }
        }
    }
    out
}

/// What a document's view says of it; `listed`: its op files from a listing made for every
/// document, whose bytes it counts (`None`: list the folder for it, and count none).
fn entry_of(doc: &Store, files: String, listed: Option<&Files>) -> Result<Entry> {
    let view = match listed {
        None => doc.read()?,
        Some(listed) => {
            let scan = crate::folder::scan::Scan {
                ops: listed.entries(),
                ..crate::folder::scan::Scan::default()
            };
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
        files: files.count(),
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
    let root_files = listed.remove(&None).unwrap_or_default();
    let digest = root_files.digest();
    // The root document: its own view (cached), and its loose op files as listed.
    let mut root_entry = entry_of(root, digest, None)?;
    root_entry.bytes = root_files.bytes(root.path());
    let mut out = vec![info(root.doc_id(), true, &root_files, &root_entry)];
    let mut changed = false;
    let mut kept = BTreeMap::new();
    for (doc, files) in listed {
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
