//! Listing the store folder: which entries are op files, and what everything else is.
//!
//! Scanning never fails because of one entry: an unreadable folder, a foreign file or a
//! folder where none belongs becomes a [`Problem`] and the scan goes on. The layout under
//! `ops/` is fixed at two levels (`ops/<actor>/<file>`), so the scan reads exactly those
//! folders; it allocates one string per op file, since a merge with nothing new costs
//! little more than this listing.

use std::path::Path;

use crate::folder::quirks::{self, Foreign};
use crate::folders::{Entry, Folder, Kind};
use crate::format::marker::{FEATURES_DIR, MARKER};
use crate::format::names;
use crate::format::pack::{self, PACKS_DIR};
use crate::format::snapshot::{self, SNAPSHOTS_DIR};
use crate::report::{Problem, ProblemKind};

/// Folder of op files.
use crate::format::names::OPS_DIR;
/// Names in the store root that belong to the format (now or in later versions).
const RESERVED_ROOT: &[&str] = &[
    MARKER,
    FEATURES_DIR,
    OPS_DIR,
    PACKS_DIR,
    SNAPSHOTS_DIR,
    snapshot::CHECKPOINTS_DIR,
    "devices",
    crate::seal::KEYS_DIR,
];

/// An op file found by the scan, not yet read: `ops/<actor>/<seq>-<hash>.op`, as a loose
/// file, as an entry of a pack, or both (the same bytes: the name carries their hash).
#[derive(Debug, Clone)]
pub(crate) struct OpEntry {
    /// Path relative to the store, `/`-separated: the loose file's, even when only a pack
    /// holds it.
    pub(crate) rel: String,
    pub(crate) seq: u64,
    actor_end: usize,
    /// The loose file is in the folder.
    pub(crate) loose: bool,
    /// A pack that holds it, and where: the biggest, when several do.
    pub(crate) packed: Option<Packed>,
    /// Other packs that hold it too (while a fold of packs is in progress): a reader tries
    /// them when the first does not read.
    pub(crate) also_packed: Vec<Packed>,
    /// The loose file's length, when the listing gave it (a bucket's does, a local
    /// folder's does not).
    pub(crate) len: Option<u64>,
}

impl OpEntry {
    /// Every pack that holds it, the first one first.
    pub(crate) fn packs(&self) -> impl Iterator<Item = &Packed> {
        self.packed.iter().chain(&self.also_packed)
    }
}

/// Where in a pack an op file's bytes are.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    /// The pack's path in the store.
    pub(crate) pack: std::sync::Arc<str>,
    pub(crate) row: pack::Row,
}

/// A pack found by the scan, with its index.
#[derive(Debug, Clone)]
pub(crate) struct PackListing {
    pub(crate) rel: String,
    pub(crate) actor: String,
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) rows: Vec<pack::Row>,
    /// The version the listing gave it, where a listing gives one (an object store's ETag):
    /// its fingerprint without a request of its own.
    pub(crate) version: Option<String>,
}

impl PackListing {
    /// The paths of the op files it holds.
    pub(crate) fn entry_rels(&self) -> impl Iterator<Item = String> + '_ {
        self.rows.iter().map(|r| {
            crate::folder::op_rel(
                &self.actor,
                &names::op_name_with_hash(r.seq, &r.name_hash()),
            )
        })
    }
}

impl OpEntry {
    /// The entry of a canonical op file path `ops/<actor>/[<doc>-]<seq>-<hash>.op`.
    pub(crate) fn parse(rel: &str) -> Option<OpEntry> {
        let (actor, name) = crate::folder::split_op_rel(rel)?;
        let op = names::parse_op_name(name)?;
        Some(OpEntry {
            rel: rel.to_string(),
            seq: op.seq,
            actor_end: OPS_DIR.len() + 1 + actor.len(),
            loose: true,
            packed: None,
            also_packed: Vec::new(),
            len: None,
        })
    }

    /// The actor folder's name.
    pub(crate) fn actor(&self) -> &str {
        &self.rel[OPS_DIR.len() + 1..self.actor_end]
    }

    /// The document of a change to a document beside the root one.
    pub(crate) fn doc(&self) -> Option<&str> {
        let name = &self.rel[self.actor_end + 1..];
        names::parse_op_name(name).and_then(|op| op.doc)
    }

    /// The hash part of the file name.
    pub(crate) fn hash(&self) -> &str {
        let end = self.rel.len() - names::OP_EXT.len();
        &self.rel[end - names::HASH_HEX_LEN..end]
    }
}

/// Everything a scan found.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scan {
    /// Op files, loose or in packs, sorted by path, each path once.
    pub(crate) ops: Vec<OpEntry>,
    /// Packs whose header reads, sorted by path.
    pub(crate) packs: Vec<PackListing>,
    /// Entries that are not op files, sorted by path.
    pub(crate) problems: Vec<Problem>,
    /// Feature markers this build does not know.
    pub(crate) unknown_features: Vec<String>,
    /// Every feature marker the listing found, known or not; `None` when `features/` did
    /// not list.
    pub(crate) features: Option<Vec<String>>,
    /// Snapshot files (`snapshots/<hash>.sqlite`) and compaction records
    /// (`snapshots/<hash>.record`), by path, sorted.
    pub(crate) snapshots: Vec<String>,
    pub(crate) records: Vec<String>,
    /// Checkpoints (`checkpoints/<hash>.sqlite`, docs/FORMAT.md §19), by path, sorted; the
    /// root document's listing only.
    pub(crate) checkpoints: Vec<String>,
}

impl Scan {
    /// Whether the store has feature marker `features/<feature>`: from this listing, or
    /// asked of `folder` when `features/` did not list.
    pub(crate) fn has_feature(&self, folder: &dyn Folder, feature: &str) -> bool {
        match &self.features {
            Some(present) => present.iter().any(|f| f == feature),
            None => super::has_feature(folder, feature),
        }
    }

    /// The snapshots and compaction records, each with its [`fingerprint`]: a merge made
    /// with one of them half-delivered is redone when the sync tool completes it in place.
    pub(crate) fn snapshot_fingerprints(&self, folder: &dyn Folder) -> Vec<String> {
        self.snapshots
            .iter()
            .chain(&self.records)
            .map(|rel| fingerprint(folder, rel))
            .collect()
    }
}

/// `rel` with what says its content may have changed without its name changing: size,
/// modification and status-change times, inode. A sync tool that completes or restores a
/// file in place changes at least one of them.
pub(crate) fn fingerprint(folder: &dyn Folder, rel: &str) -> String {
    match folder.stat(rel) {
        Ok(Some(Entry {
            version: Some(v), ..
        })) => format!("{rel} {v}"),
        _ => format!("{rel} gone"),
    }
}

/// Lists the folder for the root document (`doc` `None`) or for document `doc`: its op
/// files; the other documents' op files are neither listed nor reported. A document's
/// listing has its own snapshots and the root document's, which may hold a row of it (§18).
pub(crate) fn scan(store: &dyn Folder, doc: Option<&str>) -> Scan {
    scan_with(store, doc, None)
}

/// [`scan`] for document `doc`, with the index of documents' packs at `index` (a cache in
/// local state, `crate::folder::docs_index`): only the packs that hold the document are read.
pub(crate) fn scan_doc(store: &dyn Folder, doc: &str, index: &Path) -> Scan {
    scan_with(store, Some(doc), Some(index))
}

fn scan_with(store: &dyn Folder, doc: Option<&str>, index: Option<&Path>) -> Scan {
    let _span = tracing::debug_span!("listing").entered();
    let mut out = Scan::default();
    scan_root(store, &mut out);
    match super::read_features(store) {
        Ok(super::Features {
            present,
            unknown,
            clutter,
        }) => {
            out.unknown_features = unknown;
            out.features = Some(present);
            for name in clutter {
                out.problems
                    .push(quirks::problem(format!("{FEATURES_DIR}/{name}"), &name));
            }
        }
        Err(e) => out.problems.push(Problem::new(
            ProblemKind::Unreadable,
            FEATURES_DIR,
            e.to_string(),
        )),
    }
    scan_ops(store, doc, &mut out);
    scan_packs(store, doc, index, &mut out);
    scan_snapshots(store, doc, &mut out);
    if doc.is_none() {
        scan_checkpoints(store, &mut out);
    }
    out.problems.sort_by(|a, b| a.path.cmp(&b.path));
    tracing::debug!(
        ops = out.ops.len(),
        packs = out.packs.len(),
        snapshots = out.snapshots.len(),
        skipped = out.problems.len(),
        "folder listed"
    );
    out
}

fn scan_root(store: &dyn Folder, out: &mut Scan) {
    let Ok(entries) = store.list("") else {
        return;
    };
    for Entry { name, .. } in entries {
        if RESERVED_ROOT.contains(&name.as_str()) {
            continue;
        }
        // The root is the user's synced folder: unknown entries there (.stfolder, notes)
        // are none of crdtdir's business. Copies and temps of its own files are reported.
        match quirks::classify(&name) {
            Foreign::Unknown | Foreign::OsJunk => {}
            kind if name.contains("crdtdir") => {
                out.problems
                    .push(Problem::new(kind.into(), name, kind.reason()))
            }
            _ => {}
        }
    }
}

/// The entries of one of the store's folders; `None` when it does not exist, or when it
/// cannot be read (then reported as a problem at `rel`).
fn read_dir_or_report(store: &dyn Folder, rel: &str, out: &mut Scan) -> Option<Vec<Entry>> {
    match store.list(rel) {
        Ok(entries) => Some(entries),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            out.problems.push(Problem::unreadable(rel, &e));
            None
        }
    }
}

fn scan_ops(store: &dyn Folder, doc: Option<&str>, out: &mut Scan) {
    let Some(entries) = read_dir_or_report(store, OPS_DIR, out) else {
        return;
    };
    let mut actors = Vec::new();
    for entry in entries {
        if let Some(name) = actor_dir(entry, OPS_DIR, out) {
            actors.push(format!("{OPS_DIR}/{name}"));
        }
    }
    // Folder by folder, each listed sorted by name: the op list comes out sorted by path
    // without comparing the long shared prefixes.
    actors.sort_unstable();
    for rel in actors {
        let start = out.ops.len();
        scan_actor(store, &rel, doc, out);
        let skip = rel.len() + 1;
        let listed = &mut out.ops[start..];
        if !listed.is_sorted_by(|a, b| a.rel[skip..] <= b.rel[skip..]) {
            listed.sort_unstable_by(|a, b| a.rel[skip..].cmp(&b.rel[skip..]));
        }
    }
}

/// The name of `entry` of the folder `dir_rel` if it is an actor folder; anything else is
/// reported.
fn actor_dir(entry: Entry, dir_rel: &str, out: &mut Scan) -> Option<String> {
    let Entry { name, kind, .. } = entry;
    let rel = format!("{dir_rel}/{name}");
    if kind != Kind::Dir {
        out.problems.push(quirks::problem(rel, &name));
        None
    } else if !names::is_actor_dir(&name) {
        out.problems.push(Problem::new(
            ProblemKind::NotAFile,
            rel,
            "folder that is not an actor folder",
        ));
        None
    } else {
        Some(name)
    }
}

fn scan_actor(store: &dyn Folder, dir_rel: &str, doc: Option<&str>, out: &mut Scan) {
    let entries = match store.list(dir_rel) {
        Ok(entries) => entries,
        // Gone since its parent was listed: nothing in it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => return out.problems.push(Problem::unreadable(dir_rel, &e)),
    };
    for Entry {
        name, kind, len, ..
    } in entries
    {
        // Listing for one document: the others' op files (most of the folder) go at a glance.
        if doc.is_some_and(|d| !name.starts_with(d)) && name.ends_with(names::OP_EXT) {
            continue;
        }
        let mut rel = String::with_capacity(dir_rel.len() + 1 + name.len());
        rel.push_str(dir_rel);
        rel.push('/');
        rel.push_str(&name);
        match kind {
            Kind::Dir => {
                out.problems.push(Problem::new(
                    ProblemKind::NotAFile,
                    rel,
                    "folder inside an actor folder",
                ));
                continue;
            }
            Kind::File => {}
            Kind::Other => {
                out.problems.push(Problem::new(
                    ProblemKind::NotAFile,
                    rel,
                    "not a regular file",
                ));
                continue;
            }
        }
        match names::parse_op_name(&name) {
            Some(op) if op.doc != doc => {}
            Some(op) => out.ops.push(OpEntry {
                rel,
                seq: op.seq,
                actor_end: dir_rel.len(),
                loose: true,
                packed: None,
                also_packed: Vec::new(),
                len,
            }),
            None => out.problems.push(quirks::problem(rel, &name)),
        }
    }
}

/// Lists `packs/<actor>/<first>-<last>-<hash>.pack`: reads each pack's header and adds its
/// entries to the op list under their loose names. An op file both loose and packed is
/// listed once. A pack whose header does not read is reported and its entries are not
/// listed (the loose files, or the device that wrote it, still hold them).
fn scan_packs(store: &dyn Folder, doc: Option<&str>, index: Option<&Path>, out: &mut Scan) {
    let Some(entries) = read_dir_or_report(store, PACKS_DIR, out) else {
        return;
    };
    let mut actors: Vec<String> = Vec::new();
    for entry in entries {
        if let Some(name) = actor_dir(entry, PACKS_DIR, out) {
            actors.push(name);
        }
    }
    actors.sort_unstable();
    // Each pack entry with the number of entries of its pack: the biggest pack first.
    let mut packed: Vec<(OpEntry, usize)> = Vec::new();
    if let Some(doc) = doc {
        packed = docs_pack_entries_of(store, &actors, doc, index, out);
        if !packed.is_empty() {
            interleave(out, packed);
        }
        return;
    }
    for actor in actors {
        for (rel, first, last, version) in actor_packs(store, &actor, out) {
            let index = match pack_index(store, &rel, &actor, first, last) {
                Ok(index) => index,
                Err((kind, reason)) => {
                    out.problems.push(Problem::new(kind, rel, reason));
                    continue;
                }
            };
            let shared: std::sync::Arc<str> = rel.as_str().into();
            let actor_end = OPS_DIR.len() + 1 + actor.len();
            for row in &index.rows {
                let name = names::op_name_with_hash(row.seq, &row.name_hash());
                let entry = OpEntry {
                    rel: crate::folder::op_rel(&actor, &name),
                    seq: row.seq,
                    actor_end,
                    loose: false,
                    packed: Some(Packed {
                        pack: shared.clone(),
                        row: row.clone(),
                    }),
                    also_packed: Vec::new(),
                    len: None,
                };
                packed.push((entry, index.rows.len()));
            }
            out.packs.push(PackListing {
                rel,
                actor: actor.clone(),
                first,
                last,
                rows: index.rows,
                version,
            });
        }
    }
    if !packed.is_empty() {
        interleave(out, packed);
    }
}

/// The entries of document `doc` in the documents' packs of `actors`: with an index
/// (`index`, loaded and saved here), only the packs it says hold the document, and those it
/// does not know yet, are read.
fn docs_pack_entries_of(
    store: &dyn Folder,
    actors: &[String],
    doc: &str,
    index: Option<&Path>,
    out: &mut Scan,
) -> Vec<(OpEntry, usize)> {
    use crate::folder::docs_index::{self, DocsPacks};
    let key = docs_index::key(doc);
    let mut known = index.map(DocsPacks::load).unwrap_or_default();
    let mut listed = std::collections::HashSet::new();
    let mut changed = false;
    let mut entries = Vec::new();
    for actor in actors {
        for rel in docs_pack_rels(store, actor) {
            listed.insert(rel.clone());
            if key.is_some_and(|k| known.holds(&rel, &k) == Some(false)) {
                continue;
            }
            let pack = match read_docs_pack(store, &rel, actor) {
                Ok(pack) => pack,
                Err((kind, reason)) => {
                    out.problems.push(Problem::new(kind, rel, reason));
                    continue;
                }
            };
            if !known.packs.contains_key(&rel) {
                known.packs.insert(rel.clone(), docs_index::docs_of(&pack));
                changed = true;
            }
            entries.extend(
                docs_pack_entries(&rel, actor, pack)
                    .into_iter()
                    .filter(|(e, _)| e.doc() == Some(doc)),
            );
        }
    }
    let before = known.packs.len();
    known.packs.retain(|rel, _| listed.contains(rel));
    if let Some(path) = index.filter(|_| changed || known.packs.len() != before) {
        known.save(path);
    }
    entries
}

/// The index of documents' packs at `index` brought up to the folder: the headers of packs
/// it does not know yet are read, packs the folder no longer lists are dropped, and it is
/// saved when it changed. A pack whose header does not read is left out (and read again
/// next time).
pub(crate) fn docs_packs_index(
    store: &dyn Folder,
    index: &Path,
) -> crate::folder::docs_index::DocsPacks {
    use crate::folder::docs_index::{self, DocsPacks};
    let mut known = DocsPacks::load(index);
    let actors = pack_actors(store);
    let mut listed = std::collections::HashSet::new();
    let mut changed = false;
    for actor in &actors {
        for rel in docs_pack_rels(store, actor) {
            listed.insert(rel.clone());
            if known.packs.contains_key(&rel) {
                continue;
            }
            if let Ok(pack) = read_docs_pack(store, &rel, actor) {
                known.packs.insert(rel, docs_index::docs_of(&pack));
                changed = true;
            }
        }
    }
    let before = known.packs.len();
    known.packs.retain(|rel, _| listed.contains(rel));
    if changed || known.packs.len() != before {
        known.save(index);
    }
    known
}

/// The paths of `actor`'s documents' packs, in path order.
fn docs_pack_rels(store: &dyn Folder, actor: &str) -> Vec<String> {
    let dir_rel = format!("{PACKS_DIR}/{actor}");
    let mut rels: Vec<String> = store
        .list(&dir_rel)
        .into_iter()
        .flatten()
        .filter(Entry::is_file)
        .map(|f| f.name)
        .filter(|name| pack::parse_docs_name(name).is_some())
        .map(|name| format!("{dir_rel}/{name}"))
        .collect();
    rels.sort_unstable();
    rels
}

/// The index of the documents' pack at `rel` of `actor`, when its header reads and holds
/// that actor's changes to documents.
fn read_docs_pack(
    store: &dyn Folder,
    rel: &str,
    actor: &str,
) -> Result<pack::Index, (ProblemKind, String)> {
    let index = match read_pack_header(store, rel) {
        Ok(bytes) => pack::decode_index(&bytes).map_err(|e| (e.kind(), e.to_string()))?,
        Err(e) => return Err((ProblemKind::Unreadable, format!("unreadable: {e}"))),
    };
    let whole = index.actor == actor && index.rows.iter().all(|r| r.doc.is_some());
    whole.then_some(index).ok_or((
        ProblemKind::Damaged,
        "pack does not hold the actor and documents its name says".to_string(),
    ))
}

/// The entries of the documents' pack at `rel` of `actor`, under their loose names, each
/// with the pack's entry count.
pub(crate) fn docs_pack_entries(
    rel: &str,
    actor: &str,
    index: pack::Index,
) -> Vec<(OpEntry, usize)> {
    let shared: std::sync::Arc<str> = rel.into();
    let actor_end = OPS_DIR.len() + 1 + actor.len();
    let count = index.rows.len();
    index
        .rows
        .into_iter()
        .map(|row| {
            let doc = row.doc.clone().unwrap_or_default();
            let name = format!(
                "{doc}-{}",
                names::op_name_with_hash(row.seq, &row.name_hash())
            );
            let entry = OpEntry {
                rel: crate::folder::op_rel(actor, &name),
                seq: row.seq,
                actor_end,
                loose: false,
                packed: Some(Packed {
                    pack: shared.clone(),
                    row,
                }),
                also_packed: Vec::new(),
                len: None,
            };
            (entry, count)
        })
        .collect()
}

/// `loose` op files (sorted by path) with the pack entries `packed` among them: one path,
/// one entry, with every pack that holds it.
pub(crate) fn with_packed(loose: Vec<OpEntry>, packed: Vec<(OpEntry, usize)>) -> Vec<OpEntry> {
    let mut out = Scan {
        ops: loose,
        ..Scan::default()
    };
    interleave(&mut out, packed);
    out.ops
}

/// The documents' packs of `actor` (`packs/<actor>/docs-<hash>.pack`, docs/FORMAT.md §18)
/// whose header reads, with their index, in path order (one that does not read is left out:
/// a document's listing reports it).
pub(crate) fn docs_packs(store: &dyn Folder, actor: &str) -> Vec<(String, pack::Index)> {
    docs_pack_rels(store, actor)
        .into_iter()
        .filter_map(|rel| {
            let index = read_docs_pack(store, &rel, actor).ok()?;
            Some((rel, index))
        })
        .collect()
}

/// The actors with a folder in `packs/`.
pub(crate) fn pack_actors(store: &dyn Folder) -> Vec<String> {
    store
        .list(PACKS_DIR)
        .into_iter()
        .flatten()
        .map(|a| a.name)
        .filter(|a| names::is_actor_dir(a))
        .collect()
}

/// The packs of `actor` by (path, first seq, last seq), in path order; anything else in
/// its folder is reported (documents' packs are not the root document's business).
#[allow(clippy::type_complexity)]
fn actor_packs(
    store: &dyn Folder,
    actor: &str,
    out: &mut Scan,
) -> Vec<(String, u64, u64, Option<String>)> {
    let dir_rel = format!("{PACKS_DIR}/{actor}");
    let Some(files) = read_dir_or_report(store, &dir_rel, out) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for file in files {
        let is_file = file.is_file();
        let name = file.name;
        let rel = format!("{dir_rel}/{name}");
        match pack::parse_name(&name) {
            _ if pack::parse_docs_name(&name).is_some() => {}
            Some((first, last, _)) if is_file => found.push((rel, first, last, file.version)),
            Some(_) => out.problems.push(Problem::new(
                ProblemKind::NotAFile,
                rel,
                "not a regular file",
            )),
            None => out.problems.push(quirks::problem(rel, &name)),
        }
    }
    found.sort_unstable();
    found
}

/// The index of the pack at `rel`, when it reads and holds the actor and seqs its name says.
fn pack_index(
    store: &dyn Folder,
    rel: &str,
    actor: &str,
    first: u64,
    last: u64,
) -> Result<pack::Index, (ProblemKind, String)> {
    let index = match read_pack_header(store, rel) {
        Ok(bytes) => pack::decode_index(&bytes).map_err(|e| (e.kind(), e.to_string()))?,
        Err(e) => return Err((ProblemKind::Unreadable, format!("unreadable: {e}"))),
    };
    let rows = &index.rows;
    if index.actor != actor
        || rows.iter().any(|r| r.doc.is_some())
        || rows.first().map(|r| r.seq) != Some(first)
        || rows.last().map(|r| r.seq) != Some(last)
    {
        return Err((
            ProblemKind::Damaged,
            "pack does not hold the actor and seqs its name says".to_string(),
        ));
    }
    Ok(index)
}

/// Merges the pack entries (`packed`, each with its pack's entry count) into the sorted
/// loose op files of `out`: one path, one entry, with every pack that holds it.
fn interleave(out: &mut Scan, mut packed: Vec<(OpEntry, usize)>) {
    packed.sort_by(|(a, an), (b, bn)| a.rel.cmp(&b.rel).then(bn.cmp(an)));
    let loose = std::mem::take(&mut out.ops);
    let mut merged: Vec<OpEntry> = Vec::with_capacity(loose.len() + packed.len());
    let mut packed = packed.into_iter().map(|(e, _)| e).peekable();
    for entry in loose {
        while let Some(p) = packed.next_if(|p| p.rel < entry.rel) {
            push_unique(&mut merged, p);
        }
        merged.push(entry);
        while let Some(p) = packed.next_if(|p| p.rel == merged[merged.len() - 1].rel) {
            push_unique(&mut merged, p);
        }
    }
    for p in packed {
        push_unique(&mut merged, p);
    }
    out.ops = merged;
}

/// Appends a pack entry, or adds its pack to the last entry when that is the same op file
/// (loose too, or in another pack).
fn push_unique(list: &mut Vec<OpEntry>, entry: OpEntry) {
    match list.last_mut() {
        Some(last) if last.rel == entry.rel => {
            let pack = entry.packed.expect("a pack entry");
            if last.packed.is_none() {
                last.packed = Some(pack);
            } else {
                last.also_packed.push(pack);
            }
        }
        _ => list.push(entry),
    }
}

/// The first bytes of a pack, enough for its header (or all of it, when shorter).
/// The documents (names) whose changes the documents' pack at `path` holds, from its
/// header; `None` when it does not read.
pub(crate) fn docs_in_pack(store: &dyn Folder, rel: &str) -> Option<Vec<String>> {
    let bytes = read_pack_header(store, rel).ok()?;
    let index = pack::decode_index(&bytes).ok()?;
    let mut names: Vec<String> = index.rows.into_iter().filter_map(|r| r.doc).collect();
    names.dedup();
    Some(names)
}

fn read_pack_header(store: &dyn Folder, rel: &str) -> std::io::Result<Vec<u8>> {
    const FIRST: u64 = 16 * 1024;
    let mut bytes = store.read_range(rel, 0..FIRST)?;
    if let Some(len) = pack::header_len(&bytes).filter(|&l| l > bytes.len()) {
        // A damaged count must not make the reader allocate without bound: the rest is
        // read by range, and a file ends where it ends.
        bytes.extend(store.read_range(rel, bytes.len() as u64..len as u64)?);
    }
    Ok(bytes)
}

/// `last` (a listing of document `doc`) brought up to date after file events that name
/// `paths`, listing only what they name: a new op file of the document is added; for any
/// other file in an actor folder (a temp, coming or going: a rename's destination is not
/// always reported), that actor folder is listed again and its new op files added. `None`
/// for anything else (an op file that went, a pack, a snapshot, another folder): the caller
/// lists the folder.
pub(crate) fn with_new_files(
    mut last: Scan,
    store: &Path,
    doc: Option<&str>,
    paths: &[std::path::PathBuf],
) -> Option<Scan> {
    let mut relist: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut added: Vec<OpEntry> = Vec::new();
    // Events name paths under the folder the watcher watches: the store's path made
    // absolute (a store opened as `--store notes` is watched as /home/me/notes).
    let mut roots = std::iter::once(store.to_path_buf())
        .chain(std::iter::once_with(|| std::path::absolute(store).ok()).flatten())
        .chain(std::iter::once_with(|| std::fs::canonicalize(store).ok()).flatten());
    let mut root = roots.next().expect("the store's path");
    for path in paths {
        let rel = loop {
            match path.strip_prefix(&root) {
                Ok(rel) => break rel,
                Err(_) => root = roots.next()?,
            }
        };
        let parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
        let [OPS_DIR, actor, name] = parts.as_slice() else {
            return None;
        };
        if !names::is_actor_dir(actor) {
            return None;
        }
        match names::parse_op_name(name) {
            Some(op) if op.doc == doc && path.is_file() => {
                added.push(OpEntry::parse(&super::op_rel(actor, name))?);
            }
            // Another document's new file is not this one's business.
            Some(op) if op.doc != doc && path.is_file() => {}
            // A temp (or any other file that is no op file): its actor folder is listed
            // again. Skipped files in it are reported by the next listing of everything.
            None => {
                relist.insert((*actor).to_string());
            }
            _ => return None,
        }
    }
    for actor in relist {
        let dir = super::layout::actor_ops(store, &actor);
        let mut here = std::collections::HashSet::new();
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if names::parse_op_name(&name).is_some_and(|op| op.doc == doc) {
                here.insert(super::op_rel(&actor, &name));
            }
        }
        // A loose file of it that went (packing, compaction): a listing says what stands.
        let went = last
            .ops
            .iter()
            .filter(|o| o.actor() == actor && o.packed.is_none())
            .any(|o| !here.contains(&o.rel));
        if went {
            return None;
        }
        added.extend(here.iter().filter_map(|rel| OpEntry::parse(rel)));
    }
    for entry in added {
        if let Err(at) = last.ops.binary_search_by(|o| o.rel.cmp(&entry.rel)) {
            last.ops.insert(at, entry);
        }
    }
    // A skipped file that went since (a sync tool's temp, renamed into an op file) is no
    // longer reported.
    last.problems.retain(|p| store.join(&p.path).exists());
    Some(last)
}

/// The snapshots and compaction records a listing of document `doc` has (its own and the
/// root document's; `None`: the root document's), as [`scan`] lists them.
pub(crate) fn snapshots_of(store: &dyn Folder, doc: Option<&str>) -> (Vec<String>, Vec<String>) {
    let mut out = Scan::default();
    scan_snapshots(store, doc, &mut out);
    (out.snapshots, out.records)
}

fn scan_snapshots(store: &dyn Folder, doc: Option<&str>, out: &mut Scan) {
    let Some(entries) = read_dir_or_report(store, SNAPSHOTS_DIR, out) else {
        return;
    };
    for entry in entries {
        let is_file = entry.is_file();
        let name = entry.name;
        let rel = super::snapshot_rel(&name);
        match snapshot::parse_name(&name) {
            // Another document's snapshot or record: not this document's business. The
            // root document's are every document's: they may hold rows of them (§18).
            Some(_)
                if snapshot::split_doc(&name)
                    .0
                    .is_some_and(|named| Some(named) != doc) => {}
            Some((_, false)) if is_file => out.snapshots.push(rel),
            Some((_, true)) if is_file => out.records.push(rel),
            _ => out.problems.push(quirks::problem(rel, &name)),
        }
    }
    out.snapshots.sort();
    out.records.sort();
}

/// The checkpoints in `checkpoints/` (paths, sorted), listed as a merge lists them.
pub(crate) fn checkpoints(store: &dyn Folder) -> Vec<String> {
    let mut out = Scan::default();
    scan_checkpoints(store, &mut out);
    out.checkpoints
}

/// The checkpoints of the root document (docs/FORMAT.md §19). A crdtdir temp there is a
/// checkpoint being written (its owner removes a leftover one); other names are reported.
fn scan_checkpoints(store: &dyn Folder, out: &mut Scan) {
    let Some(entries) = read_dir_or_report(store, snapshot::CHECKPOINTS_DIR, out) else {
        return;
    };
    for entry in entries {
        let is_file = entry.is_file();
        let name = entry.name;
        let rel = super::layout::checkpoint_rel(&name);
        match snapshot::parse_name(&name) {
            Some((_, false)) if is_file && snapshot::split_doc(&name).0.is_none() => {
                out.checkpoints.push(rel)
            }
            _ => out.problems.push(quirks::problem(rel, &name)),
        }
    }
    out.checkpoints.sort();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing brought up to date with new op files equals a new listing; anything but a
    /// new op file of the document (a temp, another document's file, a file that is gone)
    /// asks for a listing instead.
    #[test]
    fn new_files_named_by_events_update_the_last_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path();
        let local = crate::folders::Local::new(store);
        let actor = "0123456789abcdef0123456789abcdef";
        let ops = store.join("ops").join(actor);
        std::fs::create_dir_all(&ops).unwrap();
        let name = |seq: u64| names::op_name_with_hash(seq, &format!("{seq:032x}"));
        std::fs::write(ops.join(name(1)), b"1").unwrap();
        std::fs::write(ops.join(name(3)), b"3").unwrap();
        let last = scan(&local, None);
        assert_eq!(last.ops.len(), 2);
        // Seq 2 arrives between the two: in its place, as a new listing has it.
        std::fs::write(ops.join(name(2)), b"2").unwrap();
        let updated = with_new_files(last, store, None, &[ops.join(name(2))]).unwrap();
        let fresh = scan(&local, None);
        let rels = |s: &Scan| s.ops.iter().map(|o| o.rel.clone()).collect::<Vec<_>>();
        assert_eq!(rels(&updated), rels(&fresh));
        // A temp that is gone (renamed: the destination may not be named): its actor
        // folder is listed again.
        std::fs::write(ops.join(name(4)), b"4").unwrap();
        let went = ops.join(".syncthing.y.tmp");
        let relisted = with_new_files(updated.clone(), store, None, &[went]).unwrap();
        assert_eq!(rels(&relisted), rels(&scan(&local, None)));
        // A store opened by a relative path (`--store notes`) gets events under its
        // absolute path: they update the listing all the same.
        let cwd = std::env::current_dir().unwrap();
        let relative: std::path::PathBuf = cwd
            .components()
            .skip(1)
            .map(|_| std::path::Component::ParentDir)
            .chain(store.components().skip(1))
            .collect();
        assert!(relative.is_relative());
        std::fs::write(ops.join(name(5)), b"5").unwrap();
        let updated = with_new_files(relisted, &relative, None, &[ops.join(name(5))])
            .expect("events under the absolute path of a relative store");
        assert_eq!(rels(&updated), rels(&scan(&local, None)));
        // An op file that went, a snapshot: list instead.
        let gone = ops.join(name(9));
        for path in [gone, store.join("snapshots/x.sqlite")] {
            assert!(
                with_new_files(scan(&local, None), store, None, std::slice::from_ref(&path))
                    .is_none(),
                "{}",
                path.display()
            );
        }
    }
}
