//! The store folder by document: every document's op files, loose in `ops/` or in
//! documents' packs (docs/FORMAT.md §18), from one listing — for the catalog of documents
//! and for `status`.

use std::collections::BTreeMap;

use crate::folder::scan::OpEntry;
use crate::folders::Folder;
use crate::format::names;
use crate::format::names::OPS_DIR;

/// One document's op files, loose in `ops/` or in documents' packs, as listed.
#[derive(Debug, Default)]
pub(crate) struct Files {
    /// Loose op files, sorted by path.
    loose: Vec<OpEntry>,
    /// Pack entries, each with its pack's entry count.
    packed: Vec<(OpEntry, usize)>,
}

impl Files {
    /// Its op files, one entry per path (`Scan::ops` of the document).
    pub(crate) fn entries(&self) -> Vec<OpEntry> {
        let mut loose = self.loose.clone();
        loose.sort_by(|a, b| a.rel.cmp(&b.rel));
        crate::folder::scan::with_packed(loose, self.packed.clone())
    }

    /// How many op files (each path once).
    pub(crate) fn count(&self) -> usize {
        self.entries().len()
    }
}

/// Document `doc`'s listing from its `files` of a listing made for every document (its op
/// files, and its own snapshots and the root document's): what [`crate::folder::scan::scan`]
/// lists for it, skipped files aside.
pub(crate) fn scan_of(folder: &dyn Folder, doc: &str, files: Files) -> crate::folder::scan::Scan {
    let (snapshots, records) = crate::folder::scan::snapshots_of(folder, Some(doc));
    crate::folder::scan::Scan {
        ops: files.entries(),
        snapshots,
        records,
        ..crate::folder::scan::Scan::default()
    }
}

/// How many op files each document has, loose or in documents' packs (`None`: the root
/// document's loose ones).
pub(crate) fn counts(folder: &dyn Folder) -> BTreeMap<Option<String>, usize> {
    listing(folder)
        .into_iter()
        .map(|(doc, files)| (doc, files.count()))
        .collect()
}

/// Every document's op files, by document (`None`: the root document, loose ones only).
pub(crate) fn listing(folder: &dyn Folder) -> BTreeMap<Option<String>, Files> {
    let mut out: BTreeMap<Option<String>, Files> = BTreeMap::new();
    for (actor, name) in crate::folder::listed_actor_files(folder, OPS_DIR) {
        let Some(op) = names::parse_op_name(&name) else {
            continue;
        };
        let doc = op.doc.map(str::to_string);
        if let Some(e) = OpEntry::parse(&crate::folder::op_rel(&actor, &name)) {
            out.entry(doc).or_default().loose.push(e);
        }
    }
    for actor in crate::folder::scan::pack_actors(folder) {
        for (rel, index) in crate::folder::scan::docs_packs(folder, &actor) {
            for (e, count) in crate::folder::scan::docs_pack_entries(&rel, &actor, index) {
                let doc = e.doc().map(str::to_string);
                out.entry(doc).or_default().packed.push((e, count));
            }
        }
    }
    out
}

/// The loose op files' paths in `ops/`, by document (`None`: the root document).
pub(crate) fn loose_listing(folder: &dyn Folder) -> BTreeMap<Option<String>, Vec<String>> {
    let mut out: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for (actor, name) in crate::folder::listed_actor_files(folder, OPS_DIR) {
        if let Some(op) = names::parse_op_name(&name) {
            let doc = op.doc.map(str::to_string);
            out.entry(doc)
                .or_default()
                .push(crate::folder::op_rel(&actor, &name));
        }
    }
    for rels in out.values_mut() {
        rels.sort_unstable();
    }
    out
}
