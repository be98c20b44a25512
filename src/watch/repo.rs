//! One watcher for a repo's documents ([`Repo::watch`](crate::Repo::watch)): one notify
//! instance and one thread for the folder, each file event routed to the document its name
//! carries, and an event per document that changed ([`DocEvent`]).
//!
//! No document is kept in memory between its events: each merge opens it from its local
//! cache (which makes a merge with little new cost little) and lets it go, so watching ten
//! thousand documents holds what the app was last told of each (heads, report), not ten
//! thousand documents. A listing of the whole folder (the first one, rescans, the safety
//! listing, polling) finds the documents whose files changed from one listing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::run::{Follow, Target};
use super::{Event, Live};

/// What happened to one document of a repo: its id, and the [`Event`] as a watcher of it
/// alone would give it. A document's first event is `initial` (it carries the document):
/// for every document when the watcher starts, and for a document made (or delivered)
/// later when it first appears.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DocEvent {
    /// The document's id.
    pub id: String,
    /// It is the repo's root document.
    pub root: bool,
    /// It is deleted (docs/FORMAT.md §18): its last event.
    #[serde(default)]
    pub deleted: bool,
    /// What changed in it.
    #[serde(flatten)]
    pub event: Event,
}

/// What a repo's watcher needs of the root document's handle beside [`Live`].
pub(crate) trait Documents: Live {
    /// A handle of the document named `name` in file names (`None`: the root document), with
    /// its id (`id`, when known); `None` when it cannot be opened (no file of it reads).
    fn open_doc(&self, name: Option<&str>, id: Option<&str>) -> Option<(String, Self)>;
    /// Every document beside the root one, by name, with a digest of its files (from one
    /// listing of the folder).
    fn doc_digests(&self) -> BTreeMap<String, String>;
    /// Every document beside the root one, by name, with its listing, from one listing of
    /// the folder (skipped files aside).
    fn doc_scans(&self) -> BTreeMap<String, crate::folder::scan::Scan>;
    /// The names of the documents whose changes the documents' pack at `path` holds; `None`
    /// when its header does not read.
    fn docs_in_pack(&self, path: &Path) -> Option<Vec<String>>;
    /// True when `state`'s document is deleted.
    fn is_deleted(&self, state: &crate::merged::MergedState) -> bool;
}

/// Which documents a file event concerns.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// One document (`None`: the root one).
    Doc(Option<String>),
    /// The documents a documents' pack holds.
    Pack(PathBuf),
    /// Any of them (a snapshot of the root document, a feature, the marker).
    All,
    /// None (a temp, a heartbeat).
    Nothing,
}

/// The document a path in the folder concerns, by its name.
fn route(root: &Path, path: &Path) -> Route {
    let Ok(rel) = path.strip_prefix(root) else {
        return Route::All;
    };
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let file = parts.last().map(String::as_str).unwrap_or_default();
    if super::is_temp(path) {
        return Route::Nothing;
    }
    match parts.first().map(String::as_str) {
        Some(crate::format::names::OPS_DIR) if parts.len() == 3 => {
            match crate::format::names::parse_op_name(file) {
                Some(op) => Route::Doc(op.doc.map(str::to_string)),
                None => Route::Nothing,
            }
        }
        Some(crate::format::pack::PACKS_DIR) if parts.len() == 3 => {
            if crate::format::pack::parse_docs_name(file).is_some() {
                Route::Pack(path.to_path_buf())
            } else if crate::format::pack::parse_name(file).is_some() {
                Route::Doc(None)
            } else {
                Route::Nothing
            }
        }
        Some(crate::format::snapshot::SNAPSHOTS_DIR) if parts.len() == 2 => {
            match crate::format::snapshot::split_doc(file) {
                (Some(doc), _) => Route::Doc(Some(doc.to_string())),
                (None, _) => Route::All,
            }
        }
        Some("devices") => Route::Nothing,
        // A new actor folder (its first files may be in it before it is watched), the
        // marker, features.
        _ => Route::All,
    }
}

/// Above this many documents to merge at once, they are listed together.
const MANY: usize = 16;

/// One document followed: its id and what the app was last told of it.
struct Followed {
    id: String,
    follow: Follow,
}

/// A repo's documents watched: every one (`only` `None`) or some.
pub(crate) struct Many<D: Documents> {
    root: D,
    /// The names of the documents watched (`None` in it: the root one); `None`: all.
    only: Option<BTreeSet<Option<String>>>,
    follows: BTreeMap<Option<String>, Followed>,
    /// Each document's digest at the last listing.
    digests: BTreeMap<String, String>,
    document: bool,
}

impl<D: Documents> Many<D> {
    /// Watches `root`'s documents: the ones named in `only` (`None` in it: the root one), or
    /// all of them.
    pub(crate) fn new(root: D, only: Option<BTreeSet<Option<String>>>, document: bool) -> Self {
        Many {
            root,
            only,
            follows: BTreeMap::new(),
            digests: BTreeMap::new(),
            document,
        }
    }

    fn wanted(&self, name: &Option<String>) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(name))
    }

    /// The documents a merge after events about `paths` looks at (`None`: a full listing,
    /// which compares every document's digest with the last one).
    fn concerned(&mut self, paths: Option<&[PathBuf]>) -> BTreeSet<Option<String>> {
        let mut out = BTreeSet::new();
        let mut all = paths.is_none();
        for path in paths.unwrap_or_default() {
            match route(self.root.root(), path) {
                Route::Doc(name) => {
                    out.insert(name);
                }
                Route::Pack(pack) => match self.root.docs_in_pack(&pack) {
                    Some(names) => out.extend(names.into_iter().map(Some)),
                    None => all = true,
                },
                Route::All => all = true,
                Route::Nothing => {}
            }
        }
        if all {
            let digests = self.root.doc_digests();
            out.insert(None);
            for (name, digest) in &digests {
                if self.digests.get(name) != Some(digest) {
                    out.insert(Some(name.clone()));
                }
            }
            // Followed ones whose files all went (a compaction folded them): read again.
            out.extend(
                self.follows
                    .keys()
                    .filter(|n| n.as_ref().is_some_and(|n| !digests.contains_key(n)))
                    .cloned(),
            );
            self.digests = digests;
        }
        out.retain(|n| self.wanted(n));
        out
    }

    /// Merges document `name` (with `scan`, its listing, when one was made for all) and
    /// makes its event, if any.
    fn merge_one(
        &mut self,
        name: Option<String>,
        scan: Option<crate::folder::scan::Scan>,
        notices: &mut Vec<String>,
    ) -> Option<DocEvent> {
        let known = self.follows.get(&name).map(|f| f.id.clone());
        let (id, store) = self.root.open_doc(name.as_deref(), known.as_deref())?;
        let scan = scan.unwrap_or_else(|| store.scan());
        let (state, report) = store.merge_listed(&scan);
        let deleted = name.is_some() && self.root.is_deleted(&state);
        let followed = self
            .follows
            .entry(name.clone())
            .or_insert_with(|| Followed {
                id,
                follow: Follow::default(),
            });
        // A document deleted before the app heard of it is not news.
        if deleted && followed.follow.is_new() {
            self.follows.remove(&name);
            return None;
        }
        let event = followed
            .follow
            .event(&store, &state, report, self.document, notices)?;
        Some(DocEvent {
            id: followed.id.clone(),
            root: name.is_none(),
            deleted,
            event,
        })
    }
}

impl<D: Documents> Target for Many<D> {
    type Out = DocEvent;
    type L = D;

    fn live(&self) -> &D {
        &self.root
    }

    fn watching(&self, _started: bool) {}

    fn merge(
        &mut self,
        _initial: bool,
        paths: Option<&[PathBuf]>,
        notices: &mut Vec<String>,
    ) -> Vec<DocEvent> {
        let names = self.concerned(paths);
        // Many documents (the first merge, a listing of everything): one listing for all,
        // not one per document.
        let mut listed = (names.len() > MANY).then(|| self.root.doc_scans());
        let mut out = Vec::new();
        for name in names {
            let scan = listed
                .as_mut()
                .zip(name.as_ref())
                .and_then(|(all, n)| all.remove(n));
            out.extend(self.merge_one(name, scan, notices));
        }
        out
    }

    fn own_writes(&mut self, paths: &[PathBuf], notices: &mut Vec<String>) -> Vec<DocEvent> {
        self.merge(false, Some(paths), notices)
    }
}

#[cfg(test)]
mod tests {
    use super::{route, Route};
    use std::path::Path;

    /// File events go to the document their name carries; a snapshot of the root document
    /// to all of them; temps and heartbeats to none.
    #[test]
    fn events_are_routed_by_the_names_of_their_files() {
        let root = Path::new("/s");
        let doc = "0123456789abcdef0123456789abcdef";
        let hash = "fedcba9876543210fedcba9876543210";
        let at = |rel: &str| route(root, &root.join(rel));
        assert_eq!(
            at(&format!("ops/aa/{doc}-0000000001-{hash}.op")),
            Route::Doc(Some(doc.into()))
        );
        assert_eq!(
            at(&format!("ops/aa/0000000001-{hash}.op")),
            Route::Doc(None)
        );
        assert_eq!(at(&format!("snapshots/{hash}.sqlite")), Route::All);
        assert_eq!(
            at(&format!("snapshots/{doc}-{hash}.sqlite")),
            Route::Doc(Some(doc.into()))
        );
        assert_eq!(
            at(&format!("packs/aa/docs-{hash}.pack")),
            Route::Pack(root.join(format!("packs/aa/docs-{hash}.pack")))
        );
        assert_eq!(at("devices/aa/000000000001-x.beat"), Route::Nothing);
        assert_eq!(at("ops/aa/.crdtdir-aa-1.tmp"), Route::Nothing);
        assert_eq!(at("features/docs"), Route::All);
        assert_eq!(at("ops/bb"), Route::All, "a new actor folder");
    }
}
