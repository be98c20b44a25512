//! The store: a folder the sync tool carries, opened by one device.

mod check;
pub(crate) mod checkpoint;
mod compact;
pub(crate) mod compact_docs;
mod doc_packs;
pub(crate) mod documents;
pub(crate) mod journal;
pub(crate) mod keys;
pub(crate) mod memory;
pub(crate) mod notice;
mod open;
mod pack;
mod presence;
mod publish;
mod repair;
pub(crate) mod session;
mod status;
mod watch;
mod write;

pub use self::notice::Notice;
use self::status::history_of;
pub use self::status::{DeviceInfo, FileCounts, Status};
pub(crate) use self::write::fresh_record;
pub use self::write::{ChangeResult, WriteOutcome, Written};

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use automerge::{Automerge, ChangeHash};
use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::folder::scan::{self};
use crate::format::marker::{Marker, FORMAT_VERSION};
use crate::local::cache::listing_from;
use crate::merge;
use crate::merged::MergedState;
use crate::patch::{self, PatchError};
use crate::render;
use crate::report::{ChangeInfo, MergeReport, Problem};

/// How long a listing of the feature markers answers the checks of a store off the local
/// disk ([`Store::check_writable`]): one write checks several times.
const FEATURES_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// When the feature markers were listed, and the ones this build does not know.
pub(crate) type FeaturesSeen = (std::time::Instant, Vec<String>);

/// Environment variable that makes every store opened read-only when set to `1`.
pub const READ_ONLY_ENV: &str = "CRDTDIR_READ_ONLY";

/// Environment variable that keeps new keys in the OS keychain when set to `1`
/// ([`Options::keychain`]).
pub const KEYCHAIN_ENV: &str = "CRDTDIR_KEYCHAIN";

/// How a device opens a store.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Options {
    /// Local state directory; default: `CRDTDIR_STATE_DIR`, else the OS data directory.
    pub state_dir: Option<PathBuf>,
    /// Device display name; default: `CRDTDIR_DEVICE`, else the name kept in the state.
    pub device: Option<String>,
    /// A read-only device (a viewer, a NAS, a backup box, a sync daemon's "safe mode"):
    /// it merges, reads, shows status and watches, and writes nothing anywhere in the synced
    /// folder — no op file, no heartbeat, no snapshot, no temp. Writes, `compact` and
    /// `repair` are refused with [`Error::ReadOnly`]. Default: `CRDTDIR_READ_ONLY=1`.
    pub read_only: bool,
    /// For [`Store::init`]: make an encrypted store (see [`Options::encrypt`]).
    pub encrypt: bool,
    /// Changes per pack, and how many of its own loose op files a device lets pile up before
    /// it packs them ([`Store::pack`]); `Some(0)` never packs on its own. Default:
    /// `CRDTDIR_PACK_SIZE`, else [`crate::DEFAULT_PACK_SIZE`].
    pub pack_size: Option<usize>,
    /// How many changes the folder's newest checkpoint may lag behind this device's view
    /// before a write publishes a new one ([`Store::checkpoint`]); `Some(0)` never does on
    /// its own. Default: `CRDTDIR_CHECKPOINT_EVERY`, else [`crate::DEFAULT_CHECKPOINT_EVERY`].
    pub checkpoint_every: Option<u64>,
    /// How many packs fold into one bigger pack (default [`crate::REPACK_FAN`]); for tests
    /// that want many levels from few changes.
    #[doc(hidden)]
    pub repack_fan: Option<usize>,
    /// The field by which whole-value writes match list elements that are objects (records),
    /// so that an edited or moved record is recognised as itself: default `id`; `Some("")`
    /// matches by whole value only. A patch op's `key` overrides it.
    pub list_key: Option<String>,
    /// Keep an encrypted store's keys in the OS keychain (cargo feature `keychain`) when
    /// this device keeps new ones: at [`Store::init`] of an encrypted store and at
    /// [`Store::import_key`] / [`Store::import_passphrase`] (keys it kept before move there
    /// too). Default: `CRDTDIR_KEYCHAIN=1`; otherwise files in local state, or wherever
    /// this device keeps the store's keys already. [`Store::move_key`] moves them.
    pub keychain: bool,
    /// Told how far long work is ([`Options::progress`]).
    pub(crate) progress: Option<Arc<ProgressFn>>,
}

impl Options {
    /// Tells `progress` how far long work of stores opened or made with these options is —
    /// as [`Store::set_progress`], from the start: [`Store::init`] says when it builds a
    /// first document ([`crate::Progress::Building`]).
    pub fn progress(
        mut self,
        progress: impl Fn(crate::Progress) + Send + Sync + 'static,
    ) -> Options {
        self.progress = Some(Arc::new(ProgressFn(Box::new(progress))));
        self
    }

    /// Options with every default.
    pub fn new() -> Options {
        Options::default()
    }

    /// Sets the local state directory.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Options {
        self.state_dir = Some(dir.into());
        self
    }

    /// True when this device is read-only: [`Options::read_only`], or `CRDTDIR_READ_ONLY=1`.
    pub fn is_read_only(&self) -> bool {
        self.read_only || std::env::var(READ_ONLY_ENV).is_ok_and(|v| v == "1")
    }

    /// Makes this device read-only (see [`Options::read_only`]).
    pub fn read_only(mut self, on: bool) -> Options {
        self.read_only = on;
        self
    }

    /// For [`Store::init`]: make the store encrypted end to end. A random 256-bit key is
    /// made and kept in this device's local state; every op file, heartbeat and snapshot in
    /// the folder is sealed with it (XChaCha20-Poly1305). Other devices need the key
    /// ([`Store::key`] here, [`Store::import_key`] there) before they can read or write.
    pub fn encrypt(mut self, on: bool) -> Options {
        self.encrypt = on;
        self
    }

    /// Sets the pack size (see [`Options::pack_size`]); 0 turns automatic packing off.
    pub fn pack_size(mut self, changes: usize) -> Options {
        self.pack_size = Some(changes);
        self
    }

    /// The pack size in effect: the option, else `CRDTDIR_PACK_SIZE`, else the default.
    pub fn effective_pack_size(&self) -> usize {
        self.pack_size
            .or_else(|| std::env::var(crate::PACK_SIZE_ENV).ok()?.parse().ok())
            .unwrap_or(crate::DEFAULT_PACK_SIZE)
    }

    /// Sets how often writes publish a checkpoint (see [`Options::checkpoint_every`]); 0
    /// turns automatic checkpoints off.
    pub fn checkpoint_every(mut self, changes: u64) -> Options {
        self.checkpoint_every = Some(changes);
        self
    }

    /// The checkpoint interval in effect: the option, else `CRDTDIR_CHECKPOINT_EVERY`, else
    /// the default.
    pub fn effective_checkpoint_every(&self) -> u64 {
        self.checkpoint_every
            .or_else(|| {
                std::env::var(crate::CHECKPOINT_EVERY_ENV)
                    .ok()?
                    .parse()
                    .ok()
            })
            .unwrap_or(crate::DEFAULT_CHECKPOINT_EVERY)
    }

    /// Keeps new keys in the OS keychain (see [`Options::keychain`]).
    pub fn keychain(mut self, on: bool) -> Options {
        self.keychain = on;
        self
    }

    /// True when new keys go to the OS keychain: [`Options::keychain`], or
    /// `CRDTDIR_KEYCHAIN=1`.
    pub fn is_keychain(&self) -> bool {
        self.keychain || std::env::var(KEYCHAIN_ENV).is_ok_and(|v| v == "1")
    }

    /// Sets the list key (see [`Options::list_key`]).
    pub fn list_key(mut self, field: impl Into<String>) -> Options {
        self.list_key = Some(field.into());
        self
    }

    /// Sets the device display name.
    pub fn device(mut self, name: impl Into<String>) -> Options {
        self.device = Some(name.into());
        self
    }
}

/// An open store.
///
/// Reading never writes. Every change goes through [`Store::change`] (or
/// [`Store::apply_patch`]) and is an op file in the folder before the call returns.
///
/// `Store` is `Send + Sync` and cheap to clone: clones share one in-memory document, so a
/// thread that writes and a thread that watches ([`Store::watch`]) see one view.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) inner: Arc<Shared>,
}

/// What every clone of a [`Store`] shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) root: PathBuf,
    /// Every read of the synced folder goes through it (the folder at `root`).
    pub(crate) folder: Arc<dyn crate::folders::Folder>,
    /// The document this handle is of: `None` for the store's root document.
    pub(crate) doc: Option<String>,
    /// Its name in file names: its id in a plain store, a keyed hash of it in an encrypted
    /// one (docs/FORMAT.md §18); its local state is under this name too.
    pub(crate) doc_name: Option<String>,
    pub(crate) marker: Marker,
    pub(crate) state: crate::local::StoreState,
    pub(crate) device: Option<String>,
    /// Writes nothing in the synced folder ([`Options::read_only`]).
    pub(crate) read_only: bool,
    /// The document: its state in memory, cache, journal and gate.
    pub(crate) memory: memory::Memory,
    /// The folder's marker is missing or damaged: this store was opened from what this
    /// device knows, and only reads.
    pub(crate) marker_problem: Option<Problem>,
    /// An encrypted store's keys, once this device has them: shared by every handle of
    /// the store (documents too), and replaced when a key is imported or rotated.
    pub(crate) key: KeySlot,
    /// Changes per pack; 0: no automatic packing ([`Options::pack_size`]).
    pub(crate) pack_size: usize,
    /// Packs per bigger pack ([`crate::REPACK_FAN`]).
    pub(crate) repack_fan: usize,
    /// Changes a checkpoint may lag before a write publishes one; 0: never on its own.
    pub(crate) checkpoint_every: u64,
    /// The highest seq this device's current actor has in a pack, once looked up.
    pub(crate) packed_through: Mutex<Option<(String, u64)>>,
    /// The feature markers this build does not know, as the folder last listed them and
    /// when: off the local disk, a write's several checks within [`FEATURES_FRESH`] share
    /// one listing. Shared by the handles of every document of the store.
    pub(crate) features_seen: Arc<Mutex<Option<FeaturesSeen>>>,
    /// Whole-value writes match list records by this field; `None`: by whole value only.
    pub(crate) list_key: Option<String>,
    /// New keys go to the OS keychain ([`Options::keychain`]).
    pub(crate) keychain: bool,
    /// Told how far long work is ([`Store::set_progress`]).
    pub(crate) progress: std::sync::OnceLock<Arc<ProgressFn>>,
}

/// A progress callback.
/// Where a store's keyring lives (see [`Shared::key`]).
pub(crate) type KeySlot = Arc<std::sync::RwLock<Option<Arc<crate::seal::Keyring>>>>;

pub(crate) struct ProgressFn(pub(crate) Box<dyn Fn(crate::Progress) + Send + Sync>);

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}

/// A document's JSON and the heads it is of.
pub(crate) type Rendered = Arc<Mutex<Option<(Vec<ChangeHash>, Arc<Json>)>>>;

/// The merged document as this device sees it now, with what the merge found.
pub struct View {
    merged: Arc<MergedState>,
    report: MergeReport,
    /// Its JSON, once asked for.
    json: std::sync::OnceLock<Arc<Json>>,
    /// The JSON text the merge that made this view rendered, if it did: parsed (cheaper
    /// than rendering again) only when the JSON is asked for.
    text: Mutex<Option<String>>,
    /// The store's rendered JSON, reused when its heads are this view's.
    rendered: Rendered,
    /// Where each object of the document is, once asked for ([`View::touched_paths`]).
    objects: std::sync::OnceLock<std::collections::HashMap<String, String>>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("heads", &self.merged.doc.get_heads())
            .field("report", &self.report)
            .finish()
    }
}

impl View {
    /// The merged Automerge document.
    pub fn doc(&self) -> &Automerge {
        &self.merged.doc
    }

    /// The JSON Pointers change `hash` (hex) wrote to, where they are in this view: each map
    /// key it set or deleted, and each list or text it edited (an object the document no
    /// longer shows is left out). Empty for a hash this view does not hold.
    pub fn touched_paths(&self, hash: &str) -> Vec<String> {
        self.touched_paths_of(&[hash]).pop().unwrap_or_default()
    }

    /// [`View::touched_paths`] of many changes, in their order: much faster than one by one
    /// for a long history (Automerge rebuilds each change it is asked for).
    pub fn touched_paths_of(&self, hashes: &[&str]) -> Vec<Vec<String>> {
        let objects = self
            .objects
            .get_or_init(|| status::object_paths(&self.merged.doc));
        let parsed: Vec<ChangeHash> = hashes
            .iter()
            .map(|h| h.parse().unwrap_or(ChangeHash([0; 32])))
            .collect();
        status::touched(&self.merged.doc, objects, &parsed)
    }

    /// The document as JSON (keys sorted; identical on every device for the same changes).
    /// Rendered once per document state: later calls, and other views of the same heads
    /// from this `Store`, reuse it. [`View::json`] borrows it without a copy.
    pub fn to_json(&self) -> Json {
        self.json().clone()
    }

    /// The document as JSON, borrowed (see [`View::to_json`]).
    pub fn json(&self) -> &Json {
        self.json.get_or_init(|| {
            let heads = self.merged.doc.get_heads();
            let mut slot = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((h, json)) = slot.as_ref() {
                if *h == heads {
                    return Arc::clone(json);
                }
            }
            // The text the merge rendered, parsed; a document too deep for the parser (or
            // none rendered) is rendered from the document.
            let text = self.text.lock().unwrap_or_else(|p| p.into_inner()).take();
            let json = Arc::new(
                text.and_then(|t| serde_json::from_str::<Json>(&t).ok())
                    .unwrap_or_else(|| render::document(&self.merged.doc)),
            );
            *slot = Some((heads, Arc::clone(&json)));
            json
        })
    }

    /// The JSON value at a JSON Pointer.
    pub fn get(&self, path: &str) -> Result<Json, PatchError> {
        patch::lookup(&self.merged.doc, path)
    }

    /// The value at a JSON Pointer as a `T` (any `serde` type; `""` is the whole document).
    /// A missing value is `None` when `T` is an `Option`, else [`PatchError::Missing`]; a
    /// value that does not fit `T` is [`PatchError::Type`] naming the pointer.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let opts = crdtdir::Options::new().state_dir(dir.path().join("state")).device("laptop");
    /// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    /// struct Settings { theme: String, font_size: u32 }
    ///
    /// let store = crdtdir::Store::init(dir.path().join("store"), opts, None)?;
    /// store.put("/settings", &Settings { theme: "dark".into(), font_size: 14 })?;
    /// let view = store.read()?;
    /// let settings: Settings = view.get_as("/settings")?;
    /// assert_eq!(settings.font_size, 14);
    /// assert_eq!(view.get_as::<Option<Settings>>("/other")?, None);
    /// assert!(matches!(view.get_as::<Settings>("/other"), Err(crdtdir::PatchError::Missing { .. })));
    /// assert!(matches!(view.get_as::<u32>("/settings"), Err(crdtdir::PatchError::Type { .. })));
    /// # Ok::<(), crdtdir::Error>(())
    /// ```
    pub fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, PatchError> {
        patch::typed::read(&self.merged.doc, path)
    }

    /// What the merge found: skipped files, forks, quarantined and waiting changes.
    pub fn report(&self) -> &MergeReport {
        &self.report
    }

    /// False when a compaction record names a snapshot this folder does not have (or has
    /// damaged): history may be missing from this view until a device runs `repair`.
    pub fn is_complete(&self) -> bool {
        self.report.incomplete.is_empty()
    }

    /// The heads of the merged document.
    pub fn heads(&self) -> Vec<ChangeHash> {
        self.merged.doc.get_heads()
    }
}

impl Store {
    /// The report, with the marker's problem if it has one.
    pub(crate) fn with_marker_problem(&self, mut report: MergeReport) -> MergeReport {
        if let Some(p) = &self.inner.marker_problem {
            report.problems.insert(0, p.clone());
        }
        report
    }

    /// The folder as merges read it (with the seal of an encrypted store).
    pub(crate) fn source(&self) -> crate::folder::Source<'_> {
        crate::folder::Source {
            root: &self.inner.root,
            folder: Arc::clone(&self.inner.folder),
            seal: self.keyring(),
            sealed: self.inner.marker.sealed.is_some(),
            doc: self.inner.doc_name.as_deref(),
            progress: self.inner.progress.get().map(|f| &*f.0),
        }
    }

    /// Tells `progress` how far long work of this handle is: reading the op files of a
    /// merge from nothing (a new device, a folder that changed a lot), and packing —
    /// for a progress bar. Once per handle (and its clones): `false` when one was set.
    pub fn set_progress(&self, progress: impl Fn(crate::Progress) + Send + Sync + 'static) -> bool {
        self.inner
            .progress
            .set(Arc::new(ProgressFn(Box::new(progress))))
            .is_ok()
    }

    /// Refuses `what`, an operation of the whole store, on a document's handle.
    pub(crate) fn whole_store(&self, what: &'static str) -> Result<()> {
        match self.inner.doc {
            None => Ok(()),
            Some(_) => Err(Error::Refused(crate::error::Refusal::WholeStore { what })),
        }
    }

    /// Lists the folder for this handle's document.
    pub(crate) fn scan(&self) -> crate::folder::scan::Scan {
        let scan = match self.inner.doc_name.as_deref() {
            None => crate::folder::scan::scan(&*self.inner.folder, None),
            Some(doc) => {
                let index = self.inner.state.for_doc(None).path();
                let index = index.join(crate::local::names::DOCS_PACKS);
                crate::folder::scan::scan_doc(&*self.inner.folder, doc, &index)
            }
        };
        if scan.features.is_some() && !self.is_local() {
            self.features_seen(scan.unknown_features.clone());
        }
        scan
    }

    /// The feature markers in the folder this build does not know. Off the local disk, the
    /// answer of a listing younger than [`FEATURES_FRESH`] (a scan's, or an earlier check's)
    /// stands: a marker that appears meanwhile is as if the sync tool delivered it a moment
    /// later.
    fn unknown_features(&self) -> Result<Vec<String>> {
        if !self.is_local() {
            let seen = self
                .inner
                .features_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some((at, unknown)) = seen.as_ref() {
                if at.elapsed() < FEATURES_FRESH {
                    return Ok(unknown.clone());
                }
            }
        }
        let unknown = crate::folder::read_features(&*self.inner.folder)?.unknown;
        if !self.is_local() {
            self.features_seen(unknown.clone());
        }
        Ok(unknown)
    }

    fn features_seen(&self, unknown: Vec<String>) {
        *self
            .inner
            .features_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((std::time::Instant::now(), unknown));
    }

    /// True for an encrypted store ([`crate::Options::encrypt`]).
    pub fn is_encrypted(&self) -> bool {
        self.inner.marker.sealed.is_some()
    }

    /// `Err(Locked)` when the store is encrypted and this device has no key: nothing that
    /// needs the plaintext can run.
    pub(crate) fn check_unlocked(&self) -> Result<()> {
        if self.is_encrypted() && self.keyring().is_none() {
            return Err(self.locked());
        }
        Ok(())
    }

    /// The store folder.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// The store's random id.
    pub fn id(&self) -> &str {
        &self.inner.marker.store_id
    }

    /// This device's local state for the store (`STATE/stores/<store id>/`, outside the
    /// synced folder, private to this user): where a tool of this device that serves the
    /// store puts what other processes of the device find (`crdtdir serve`'s socket).
    pub fn local_dir(&self) -> PathBuf {
        self.inner
            .state
            .dir()
            .store_dir(&self.inner.marker.store_id)
    }

    /// The merged document: the local cache plus only what is new in the folder. While a
    /// watcher of this store (or a clone) runs with file events and has merged every event
    /// it was told of, the document in memory is that, and nothing is listed (as a write
    /// then skips its listing; the watcher's safety listing covers events the system lost).
    pub fn read(&self) -> Result<View> {
        self.refresh_keyring();
        if let Some(view) = self.read_from_memory()? {
            return Ok(view);
        }
        self.read_listed(&self.scan())
    }

    /// The document in memory as a view, when a running watcher keeps it current.
    fn read_from_memory(&self) -> Result<Option<View>> {
        self.check_unlocked()?;
        if !self.inner.memory.watched.quiet() {
            return Ok(None);
        }
        let Some(state) = self.inner.memory.peek() else {
            return Ok(None);
        };
        let Some((_, report)) = self.inner.memory.listed().clone() else {
            return Ok(None);
        };
        tracing::debug!("a watcher keeps the document in memory current: no listing");
        Ok(Some(View {
            merged: state,
            report: self.with_marker_problem(report),
            json: std::sync::OnceLock::new(),
            text: Mutex::new(None),
            rendered: Arc::clone(&self.inner.memory.rendered),
            objects: std::sync::OnceLock::new(),
        }))
    }

    /// [`Store::read`] of what `scan` lists (a listing made for many documents at once).
    pub(crate) fn read_listed(&self, scan: &crate::folder::scan::Scan) -> Result<View> {
        self.check_unlocked()?;
        let (state, report, text) = self.merged(scan, true);
        let report = self.with_marker_problem(report);
        Ok(View {
            merged: state,
            report,
            json: std::sync::OnceLock::new(),
            text: Mutex::new(text),
            rendered: Arc::clone(&self.inner.memory.rendered),
            objects: std::sync::OnceLock::new(),
        })
    }

    /// The merged document as compact JSON text, and what the merge found. When nothing
    /// changed in the folder since the last merge, this only lists the folder.
    pub fn read_json(&self) -> Result<(String, MergeReport)> {
        self.refresh_keyring();
        self.check_unlocked()?;
        let scan = self.scan();
        if let Some(view) =
            self.inner
                .memory
                .cache
                .view(&*self.inner.folder, &scan, &self.key_digest())
        {
            tracing::debug!("the saved view stands for this listing: no merge");
            self.inner.memory.served(view.beat);
            return Ok((view.json, self.with_marker_problem(view.report)));
        }
        let (state, report, json) = self.merged(&scan, true);
        let json = json.unwrap_or_else(|| render::document(&state.doc).to_string());
        Ok((json, self.with_marker_problem(report)))
    }

    /// Every change in the merged document, in causal order.
    pub fn history(&self) -> Result<Vec<ChangeInfo>> {
        self.check_unlocked()?;
        let (state, _, _) = self.merged(&self.scan(), true);
        Ok(history_of(&state))
    }

    /// Merges through the cache and (with `save`) refreshes it; the JSON when it had to be
    /// rendered. Steps: nothing to merge when the folder lists as at the last merge in
    /// memory; else a base (memory, the cache files), a merge from it ([`Store::merge_from`])
    /// logged for running watchers, and the cache saved ([`Store::finish_merge`]).
    pub(crate) fn merged(
        &self,
        scan: &scan::Scan,
        save: bool,
    ) -> (Arc<MergedState>, MergeReport, Option<String>) {
        // A key another process of this device imported is taken before anything is read.
        self.refresh_keyring();
        let _span = tracing::debug_span!("merge", ops = scan.ops.len()).entered();
        let ops = crate::local::cache::listed_ops(scan);
        if let Some((state, report)) = self.unchanged_since_last_merge(&ops, scan) {
            tracing::debug!("the folder lists as at the last merge in memory: nothing to merge");
            return self.finish_merge(state, report, false, scan, save);
        }
        let base = match self.inner.memory.take() {
            Some(mem) => {
                tracing::debug!("base: the document in memory");
                Some(mem)
            }
            None => {
                let cached = self.inner.memory.cache.load();
                tracing::debug!(found = cached.is_some(), "base: the cache files");
                cached
            }
        };
        // While a watcher runs, the patches of an incremental merge are logged for it.
        let before = base.as_ref().map(|s| s.doc.get_heads()).unwrap_or_default();
        let recording = self.journal().recording();
        let run = || self.merge_from(scan, base);
        let ((state, report, changed, incremental), log) = if recording {
            merge::logging(run)
        } else {
            (run(), None)
        };
        if recording {
            let patches = log
                .filter(|_| incremental)
                .map(|mut log| crate::patch::json::convert(state.doc.make_patches(&mut log)));
            self.journal().push(before, state.doc.get_heads(), patches);
        }
        *self.inner.memory.listed() = Some((
            listing_from(&ops, &*self.inner.folder, scan, &report, &self.key_digest()),
            report.clone(),
        ));
        let state = Arc::new(state);
        self.inner.memory.put(Arc::clone(&state));
        self.finish_merge(state, report, changed, scan, save)
    }

    /// The state in memory and its report when the folder lists as it did at its merge:
    /// nothing to merge. (Never in a compacted store, where other devices' beats can change
    /// the report.)
    fn unchanged_since_last_merge(
        &self,
        ops: &blake3::Hasher,
        scan: &scan::Scan,
    ) -> Option<(Arc<MergedState>, MergeReport)> {
        let uncompacted = scan.snapshots.is_empty()
            && scan.records.is_empty()
            && !scan.has_feature(&*self.inner.folder, crate::format::snapshot::FEATURE);
        if !uncompacted {
            return None;
        }
        let (digest, report) = self.inner.memory.listed().clone()?;
        let state = self.inner.memory.peek()?;
        (listing_from(ops, &*self.inner.folder, scan, &report, &self.key_digest()) == digest)
            .then_some((state, report))
    }

    /// Merges the folder as `scan` lists it onto `base`: only what is new when it can, from
    /// everything otherwise (carrying what this device had), and with this device's own
    /// changes the folder lost. Also says whether the state changed and whether the merge
    /// was incremental (its patch log then holds what changed).
    fn merge_from(
        &self,
        scan: &scan::Scan,
        base: Option<MergedState>,
    ) -> (MergedState, MergeReport, bool, bool) {
        let cold = |carry: Option<&MergedState>| {
            let (s, r) =
                merge::merge_cold(&self.source(), &self.inner.marker.store_id, scan, carry);
            (s, r, true)
        };
        let mut incremental = false;
        // What a merge from scratch carried, as it went in (see below).
        let mut carried: Option<MergedState> = None;
        let merged = match base {
            Some(cached) => {
                match merge::merge_incremental(&self.source(), scan, cached) {
                    merge::Incremental::Merged {
                        state,
                        report,
                        changed,
                    } => {
                        tracing::debug!(changed, "incremental merge");
                        incremental = true;
                        (*state, report, changed)
                    }
                    // Keep what this device has even if its files are gone — the state it had
                    // (newer than the cache files when it wrote since), with what the folder lost.
                    merge::Incremental::StartOver(mut had, why) => {
                        tracing::debug!(why, "incremental merge not possible: merging from scratch, carrying this device's state");
                        if let Some(mut held) = self.inner.memory.cache.load_held() {
                            let merged =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    had.doc.merge(&mut held.doc)
                                }));
                            if !matches!(merged, Ok(Ok(_))) {
                                tracing::warn!("the held document did not merge into this device's state: merged without it");
                            }
                        }
                        carried = Some(*had);
                        cold(carried.as_ref())
                    }
                    merge::Incremental::StartOverFromCacheFiles(why) => {
                        tracing::debug!(why, "incremental merge not possible: merging from scratch with the cache files");
                        carried = self.inner.memory.cache.load_all();
                        cold(carried.as_ref())
                    }
                }
            }
            None => {
                tracing::debug!("no base: merging from scratch");
                carried = self.inner.memory.cache.load_held();
                cold(carried.as_ref())
            }
        };
        let (state, report, changed) = merged;
        let own = self.outbox_missing(&state);
        if own.is_empty() {
            return (state, report, changed, incremental);
        }
        // Own changes join the state the merge from scratch carried, not its result: that
        // merge may have rewritten changes only the carried state held (a fork's losing side,
        // whose op files the folder lost), and its result holds their rewrites alone. An own
        // change built on such a change (written after the cache was saved, its op file lost
        // too) finds its dependency there, and is rebased along with it; on the result it
        // would wait for a change no copy holds any more.
        let mut carry = carried.unwrap_or(state);
        self.with_own_changes(&mut carry, own);
        let (s, r, changed) = cold(Some(&carry));
        (s, r, changed, false)
    }

    /// This device's own changes the folder lost (a sync tool lost its packs or op files;
    /// nothing it had saved holds them; [`Store::outbox_missing`]) stay in its view, from its
    /// outbox, and count as lost from the folder (the next write publishes them): added to
    /// `carry`, which must then be merged again.
    fn with_own_changes(&self, carry: &mut MergedState, own: Vec<(String, automerge::Change)>) {
        tracing::debug!(
            changes = own.len(),
            "own changes from the outbox the folder lacks: merged again with them"
        );
        let changes: Vec<automerge::Change> = own.iter().map(|(_, c)| c.clone()).collect();
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            carry.doc.apply_changes(changes)
        }));
        if !matches!(applied, Ok(Ok(()))) {
            tracing::warn!(
                "own changes from the outbox refused by the document (merged as waiting changes)"
            );
        }
        // A change built on one this merge replaced (the losing side of a fork) cannot go
        // into the document as it is: it joins the merge as a waiting change, so the rebase
        // of its fork carries it along, as it would its op file.
        let device = self
            .inner
            .state
            .device_name(self.inner.device.as_deref())
            .unwrap_or_default();
        for (rel, change) in own {
            if automerge::ReadDoc::get_change_by_hash(&carry.doc, &change.hash()).is_none() {
                carry.waiting.push(crate::merged::Pending {
                    path: rel,
                    device: device.clone(),
                    change: serde_bytes::ByteBuf::from(change.raw_bytes().to_vec()),
                });
            }
        }
    }

    /// The changes of this device's outbox that `state` neither merged from the folder nor
    /// holds: listed by name first (no file is read while the folder has them all). Only
    /// changes that stood: the writer record names them.
    fn outbox_missing(&self, state: &MergedState) -> Vec<(String, automerge::Change)> {
        let entries = self.outbox().entries();
        if entries.is_empty() {
            return Vec::new();
        }
        // Every file the merge saw: applied, folded, rebased (a fork's losing side),
        // refused or waiting.
        let known: std::collections::HashSet<&str> = state
            .files
            .iter()
            .chain(&state.covered)
            .map(String::as_str)
            .chain(state.rebased.iter().map(|r| r.path.as_str()))
            .chain(state.quarantined.iter().map(|q| q.path.as_str()))
            .chain(state.waiting.iter().map(|w| w.path.as_str()))
            .collect();
        let unseen: Vec<&crate::local::outbox::Kept> = entries
            .iter()
            .filter(|k| !known.contains(k.rel().as_str()))
            .collect();
        if unseen.is_empty() {
            return Vec::new();
        }
        // An entry past the writer record's seq is a write that failed before the record
        // named it (kept, then a crash or a full disk): it never stood.
        let record = self.inner.state.read_record();
        let stood = |k: &&&crate::local::outbox::Kept| {
            record
                .as_ref()
                .is_some_and(|r| k.actor != r.actor || k.seq <= r.seq)
        };
        let source = self.source();
        unseen
            .iter()
            .filter(stood)
            .filter_map(|k| Some((k.rel(), k.change(&source)?)))
            .filter(|(_, c)| {
                automerge::ReadDoc::get_change_by_hash(&state.doc, &c.hash()).is_none()
            })
            .collect()
    }

    pub(crate) fn journal(&self) -> std::sync::MutexGuard<'_, crate::store::journal::Journal> {
        self.inner.memory.journal()
    }

    /// Saves the cache files when the state changed (or holds own writes they lack) and
    /// `save` asks for it; the JSON when it had to be rendered.
    fn finish_merge(
        &self,
        state: Arc<MergedState>,
        report: MergeReport,
        changed: bool,
        scan: &scan::Scan,
        save: bool,
    ) -> (Arc<MergedState>, MergeReport, Option<String>) {
        let changed = changed || self.inner.memory.dirty.load(Ordering::Relaxed);
        if !changed || !save {
            return (state, report, None);
        }
        self.inner.memory.dirty.store(false, Ordering::Relaxed);
        let json = render::document(&state.doc).to_string();
        // What the folder lost is held apart from the cache, and first.
        if let Err(e) = self
            .inner
            .memory
            .cache
            .hold((state.unprovided > 0).then_some(&state.doc))
        {
            // The changes stay in memory and in the outbox; the next merge tries again.
            tracing::warn!(error = %e, "the document the folder lacks was not held in local state");
        }
        // The cache only saves time: a cache that cannot be written is rebuilt next time.
        match self.inner.memory.cache.save(
            &*self.inner.folder,
            &state,
            scan,
            &json,
            &report,
            &self.key_digest(),
        ) {
            Ok(()) => tracing::debug!("cache saved"),
            Err(e) => tracing::warn!(
                error = %e,
                "the cache was not saved (it only saves time: the next merge rebuilds it)"
            ),
        }
        (state, report, Some(json))
    }

    /// `Err(NeedsNewer)` when this build must not write to the store.
    pub fn check_writable(&self) -> Result<()> {
        if self.inner.read_only {
            return Err(Error::ReadOnly);
        }
        self.check_unlocked()?;
        if let Some(p) = &self.inner.marker_problem {
            // `repair` may have put a missing marker back since.
            if !crate::folder::read_marker_in(&*self.inner.folder, &self.inner.root)
                .is_ok_and(|m| m.store_id == self.inner.marker.store_id)
            {
                return Err(Error::Refused(crate::error::Refusal::Marker(
                    p.reason.clone(),
                )));
            }
        }
        if self.inner.marker.format > FORMAT_VERSION {
            return Err(Error::NeedsNewer {
                reason: format!(
                    "format version {} (this build knows {FORMAT_VERSION})",
                    self.inner.marker.format
                ),
            });
        }
        let unknown = self.unknown_features()?;
        if let Some(feature) = unknown.first() {
            return Err(Error::NeedsNewer {
                reason: format!("it uses the feature {feature:?}"),
            });
        }
        Ok(())
    }
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    /// A `Store` goes to other threads and clones cheaply.
    #[test]
    fn store_is_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<super::Store>();
    }
}
