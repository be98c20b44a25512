//! The local cache: this device's merged document of one store, so that a merge costs what
//! is new, never the whole history. Local state, never in the synced folder; deleting it
//! changes nothing but speed.
//!
//! ```text
//! STATE/stores/<store id>/view    CBOR map, small: all the nothing-new path reads
//!   "v"        unsigned   CACHE_VERSION
//!   "store"    text       store id (a cache of another store is ignored)
//!   "listing"  bytes(32)  BLAKE3 of the folder listing the view was made from (see `listing`)
//!   "json"     text       the rendered document
//!   "report"   map        what the merge found (serde form of MergeReport)
//!   "heads"    array      hex heads of the merged document
//!   "verified" array      names of the snapshots the merge read and verified
//!                         (heads and verified are what a heartbeat says: a beat of a
//!                         folder that lists the same needs no document)
//! STATE/stores/<store id>/cache   CBOR map
//!   "v", "store"          as above
//!   "doc"      bytes      Automerge `save()` of the merged document: a SUPERSET of the
//!                         folder (changes whose files disappeared stay: the view never
//!                         goes back)
//!   "files"    text       '\n'-joined op file and snapshot paths whose changes are in "doc"
//!   "covered"  text       '\n'-joined op file paths that valid snapshots fold in
//!   "unprovided" unsigned changes in "doc" the folder no longer provides (it lost them)
//!   "devices"  map        actor hex -> device display name
//!   "quarantined" array   {path, hash, reason} of verified changes left out
//!   "forks"    array      the forks found (serde form of Fork)
//!   "rebased"  array      changes rewritten because they lost a fork (serde form of Rebased)
//!   "waiting"  array      {path, device, change: bytes} of verified changes waiting for
//!                         dependencies: kept so that they are not lost if their files go
//!   "snapshots" array     the snapshots and compaction records it was made with, each as
//!                         "<path> <size> <mtime ns> <ctime ns> <inode>" (a file completed
//!                         or restored in place under its name is merged again)
//! STATE/stores/<store id>/held    Automerge save() of the merged document, kept only while
//!                                 the folder lacks changes it holds (`unprovided` > 0)
//! ```
//! All three are replaced durably (temp, fsync, rename, fsync the folder); still, anything
//! torn, foreign, of another version or undecodable is ignored and rebuilt from the folder,
//! never trusted. Deleting `view` and `cache` costs only speed, since what the folder lost is
//! also in `held`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use automerge::Automerge;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::folder::scan::Scan;
use crate::fs;
use crate::merged::{MergedState, Pending, Quarantined};
use crate::report::{Fork, MergeReport, Rebased};

/// Version of both cache files.
const CACHE_VERSION: u32 = 4;

#[derive(Serialize, Deserialize)]
struct ViewFile {
    v: u32,
    store: String,
    listing: ByteBuf,
    json: String,
    report: MergeReport,
    heads: Vec<String>,
    verified: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    v: u32,
    store: String,
    doc: ByteBuf,
    files: String,
    devices: BTreeMap<String, String>,
    quarantined: Vec<Quarantined>,
    forks: Vec<Fork>,
    rebased: Vec<Rebased>,
    waiting: Vec<Pending>,
    snapshots: Vec<String>,
    covered: String,
    unprovided: usize,
}

/// The saved view of a folder listing.
pub(crate) struct SavedView {
    pub(crate) json: String,
    pub(crate) report: MergeReport,
    /// What a heartbeat says of it: its heads and the snapshots it verified (hex, names).
    pub(crate) beat: (Vec<String>, Vec<String>),
}

/// The cache files of one store on this device.
#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
    store_id: String,
}

impl Cache {
    pub(crate) fn new(dir: PathBuf, store_id: &str) -> Cache {
        Cache {
            dir,
            store_id: store_id.to_string(),
        }
    }

    /// The saved view, if the folder listing is exactly the one it was made from: the
    /// rendered document and report, and what a heartbeat says of it (no document loaded).
    pub(crate) fn view(
        &self,
        store: &dyn crate::folders::Folder,
        scan: &Scan,
        keys: &str,
    ) -> Option<SavedView> {
        let bytes = std::fs::read(self.dir.join(crate::local::names::VIEW)).ok()?;
        let view: ViewFile = ciborium::from_reader(&bytes[..]).ok()?;
        if view.v != CACHE_VERSION || view.store != self.store_id {
            return None;
        }
        (view.listing.as_ref() == listing(store, scan, &view.report, keys).as_bytes()).then_some(
            SavedView {
                json: view.json,
                report: view.report,
                beat: (view.heads, view.verified),
            },
        )
    }

    /// The cached document and what it covers, or `None` if there is none to trust.
    pub(crate) fn load(&self) -> Option<MergedState> {
        let bytes = std::fs::read(self.dir.join(crate::local::names::CACHE)).ok()?;
        let file: CacheFile = ciborium::from_reader(&bytes[..]).ok()?;
        if file.v != CACHE_VERSION || file.store != self.store_id {
            return None;
        }
        let doc = crate::doc::load(&file.doc).ok()?;
        Some(MergedState {
            doc,
            files: file.files.lines().map(str::to_string).collect(),
            devices: file.devices,
            quarantined: file.quarantined,
            forks: file.forks,
            rebased: file.rebased,
            waiting: file.waiting,
            snapshots: file.snapshots,
            covered: file.covered.lines().map(str::to_string).collect(),
            unprovided: file.unprovided,
        })
    }

    /// The document of the last merge that found the folder had lost changes it holds, or
    /// `None`. Kept apart from the cache, so that losing the cache files while the folder
    /// lacks history loses nothing but speed.
    pub(crate) fn load_held(&self) -> Option<MergedState> {
        let bytes = std::fs::read(self.dir.join(crate::local::names::HELD)).ok()?;
        let doc = crate::doc::load(&bytes).ok()?;
        Some(MergedState::of(doc))
    }

    /// The cache, with the held document merged into it: everything this device still has.
    pub(crate) fn load_all(&self) -> Option<MergedState> {
        match (self.load(), self.load_held()) {
            (Some(mut cached), Some(mut held)) => {
                // A held document Automerge cannot merge is worth less than the cache.
                let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    cached.doc.merge(&mut held.doc)
                }));
                if !matches!(merged, Ok(Ok(_))) {
                    tracing::warn!(
                        "the held document did not merge into the cache: the cache alone is used"
                    );
                }
                Some(cached)
            }
            (cached, held) => cached.or(held),
        }
    }

    /// Keeps `doc` durably as the held document (the folder lacks changes it holds), or
    /// forgets it (`None`: the folder provides everything again).
    pub(crate) fn hold(&self, doc: Option<&Automerge>) -> std::io::Result<()> {
        let path = self.dir.join(crate::local::names::HELD);
        match doc {
            Some(doc) => {
                fs::replace_local(&path, &doc.save()).and_then(|()| crate::fault::at("held-saved"))
            }
            None => fs::remove(&path),
        }
    }

    /// Replaces both files: the cache first, then the view that points at the same state.
    pub(crate) fn save(
        &self,
        store: &dyn crate::folders::Folder,
        cached: &MergedState,
        scan: &Scan,
        json: &str,
        report: &MergeReport,
        keys: &str,
    ) -> std::io::Result<()> {
        let file = CacheFile {
            v: CACHE_VERSION,
            store: self.store_id.clone(),
            // Uncompressed: five times faster to write, and loading costs the same.
            doc: ByteBuf::from(cached.doc.save_nocompress()),
            files: cached.files.join("\n"),
            devices: cached.devices.clone(),
            quarantined: cached.quarantined.clone(),
            forks: cached.forks.clone(),
            rebased: cached.rebased.clone(),
            waiting: cached.waiting.clone(),
            snapshots: cached.snapshots.clone(),
            covered: cached.covered.join("\n"),
            unprovided: cached.unprovided,
        };
        let mut out = Vec::new();
        ciborium::into_writer(&file, &mut out).map_err(std::io::Error::other)?;
        fs::replace_local(&self.dir.join(crate::local::names::CACHE), &out)?;
        crate::fault::at("cache-saved")?;
        let view = ViewFile {
            v: CACHE_VERSION,
            store: self.store_id.clone(),
            listing: ByteBuf::from(listing(store, scan, report, keys).as_bytes().to_vec()),
            json: json.to_string(),
            report: report.clone(),
            heads: cached
                .doc
                .get_heads()
                .iter()
                .map(ToString::to_string)
                .collect(),
            verified: cached.verified_snapshots(),
        };
        let mut out = Vec::new();
        ciborium::into_writer(&view, &mut out).map_err(std::io::Error::other)?;
        fs::replace_local(&self.dir.join(crate::local::names::VIEW), &out)
    }
}

/// A digest of what a merge depends on in the folder: every op file name, every other
/// entry with its classification, the features, the snapshots and records with their
/// fingerprints; and, for op files the last merge could not read, their fingerprints (a sync
/// tool may still complete or restore one in place: size, times or inode change).
/// The digest of a folder listing: op file paths (and fingerprints of the damaged ones),
/// problem files, snapshot fingerprints and unknown features. A folder that lists the same
/// merges to the same view.
/// `keys`: the checks of the keys this device has (empty in a plain store): a key imported
/// since opens files the listing did not change for.
pub(crate) fn listing(
    store: &dyn crate::folders::Folder,
    scan: &Scan,
    report: &MergeReport,
    keys: &str,
) -> blake3::Hash {
    listing_from(&listed_ops(scan), store, scan, report, keys)
}

/// The first part of a [`listing`] digest, its op file paths: most of its cost at 100,000
/// files, so a merge that takes the digest of one listing twice (before and after) hashes
/// them once.
pub(crate) fn listed_ops(scan: &Scan) -> blake3::Hasher {
    // One buffer, one hash: many tiny updates cost more than the listing itself.
    let mut buf = Vec::with_capacity(scan.ops.iter().map(|o| o.rel.len() + 1).sum::<usize>() + 64);
    for op in &scan.ops {
        buf.extend_from_slice(op.rel.as_bytes());
        buf.push(b'\n');
    }
    let mut h = blake3::Hasher::new();
    h.update(&buf);
    h
}

/// The [`listing`] digest of `scan`, its op file paths already hashed into `ops`
/// ([`listed_ops`] of the same listing).
pub(crate) fn listing_from(
    ops: &blake3::Hasher,
    store: &dyn crate::folders::Folder,
    scan: &Scan,
    report: &MergeReport,
    keys: &str,
) -> blake3::Hash {
    let damaged: std::collections::HashSet<&str> =
        report.problems.iter().map(|p| p.path.as_str()).collect();
    let mut h = ops.clone();
    for op in scan.ops.iter().filter(|_| !damaged.is_empty()) {
        if damaged.contains(op.rel.as_str()) {
            h.update(crate::folder::scan::fingerprint(store, &op.rel).as_bytes());
            h.update(b"\n");
        }
    }
    h.update(b"\0");
    for p in &scan.problems {
        h.update(p.path.as_bytes());
        h.update(b"\t");
        h.update(p.reason.as_bytes());
        h.update(b"\n");
    }
    h.update(b"\0");
    for f in scan.snapshot_fingerprints(store) {
        h.update(f.as_bytes());
        h.update(b"\n");
    }
    // A pack completed or restored in place keeps its name.
    for p in &scan.packs {
        match &p.version {
            Some(v) => h.update(format!("{} {v}", p.rel).as_bytes()),
            None => h.update(crate::folder::scan::fingerprint(store, &p.rel).as_bytes()),
        };
        h.update(b"\n");
    }
    h.update(b"\0");
    for f in &scan.unknown_features {
        h.update(f.as_bytes());
        h.update(b"\n");
    }
    h.update(b"\0");
    h.update(keys.as_bytes());
    h.finalize()
}
