//! The store: a folder the sync tool carries, opened by one device.

mod status;
mod write;

use self::status::history_of;
pub use self::status::{DeviceInfo, Status};
pub(crate) use self::write::fresh_record;
pub use self::write::{WriteOutcome, Written};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use automerge::{Automerge, ChangeHash};
use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::fault;
use crate::folder::scan::{self, OPS_DIR};
use crate::format::marker::{self, Marker, FORMAT_VERSION, MARKER};
use crate::fs::{self, TEMP_PREFIX, TEMP_SUFFIX};
use crate::local::cache::Cache;
use crate::local::StateDir;
use crate::merge;
use crate::merge::state::MergedState;
use crate::patch::{self, PatchError, PatchOp};
use crate::render;
use crate::report::{ChangeInfo, MergeReport, Problem, ProblemKind};

/// How a device opens a store.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Options {
    /// Local state directory; default: `CRDTDIR_STATE_DIR`, else the OS data directory.
    pub state_dir: Option<PathBuf>,
    /// Device display name; default: `CRDTDIR_DEVICE`, else the name kept in the state.
    pub device: Option<String>,
}

impl Options {
    /// Options with every default.
    pub fn new() -> Options {
        Options::default()
    }

    /// Sets the local state directory.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Options {
        self.state_dir = Some(dir.into());
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
#[derive(Debug)]
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) marker: Marker,
    pub(crate) state: StateDir,
    cache: Cache,
    pub(crate) device: Option<String>,
    /// The last merged state, kept between calls so that a long-lived `Store` neither
    /// reloads its document nor rescans the folder to write.
    mem: Mutex<Option<Arc<MergedState>>>,
    /// The in-memory state holds own changes the cache files do not have yet.
    mem_dirty: AtomicBool,
    /// The folder's marker is missing or damaged: this store was opened from what this
    /// device knows, and only reads.
    pub(crate) marker_problem: Option<Problem>,
}

/// The merged document as this device sees it now, with what the merge found.
pub struct View {
    state: Arc<MergedState>,
    report: MergeReport,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("heads", &self.state.doc.get_heads())
            .field("report", &self.report)
            .finish()
    }
}

impl View {
    /// The merged Automerge document.
    pub fn doc(&self) -> &Automerge {
        &self.state.doc
    }

    /// The document as JSON (keys sorted; identical on every device for the same changes).
    pub fn to_json(&self) -> Json {
        render::document(&self.state.doc)
    }

    /// The JSON value at a JSON Pointer.
    pub fn get(&self, path: &str) -> Result<Json, PatchError> {
        patch::lookup(&self.state.doc, path)
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
        self.state.doc.get_heads()
    }
}

impl Store {
    /// Makes `path` a new store (creating the folder if needed). Nothing is written when it
    /// fails: an existing store, or a folder that holds op files whose marker has not arrived.
    ///
    /// With `initial`, the document's first change writes that JSON object, so every device
    /// starts from the same containers.
    pub fn init(path: impl AsRef<Path>, options: Options, initial: Option<&Json>) -> Result<Store> {
        let root = path.as_ref().to_path_buf();
        if let Some(v) = initial {
            if !v.is_object() {
                return Err(PatchError::Path {
                    path: String::new(),
                    reason: "the initial document must be a JSON object".into(),
                }
                .into());
            }
        }
        let state = StateDir::resolve(options.state_dir.as_deref())?;
        state.check_outside(&root)?;
        // Resolve the device name first: a bad name must not leave a half-made store.
        state.device_name(options.device.as_deref())?;
        let marker_path = root.join(MARKER);
        let (marker, fresh) = match std::fs::read(&marker_path) {
            Ok(bytes) => {
                let marker = marker::decode(&bytes).map_err(|e| Error::Corrupt {
                    path: marker_path.clone(),
                    reason: e.to_string(),
                })?;
                // An init of this device that stopped half way (a crash) is finished now,
                // as long as nothing was written to the store since.
                if !state.init_pending(&marker.store_id) || has_history(&root) {
                    return Err(Error::AlreadyStore {
                        path: root,
                        reason: "already a crdtdir store".into(),
                    });
                }
                (marker, false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if has_history(&root) {
                    return Err(Error::AlreadyStore {
                        path: root,
                        reason: "holds op files but no crdtdir.store yet: wait for the sync tool to deliver it"
                            .into(),
                    });
                }
                let mut id = [0u8; 16];
                getrandom::fill(&mut id).map_err(|e| Error::io(&root)(std::io::Error::other(e)))?;
                let marker = Marker {
                    format: FORMAT_VERSION,
                    store_id: hex::encode(id),
                };
                // Recorded before the marker appears: a crash after it lets `init` finish.
                state.begin_init(&marker.store_id)?;
                let staged = fs::stage(&root, &marker.store_id, &marker::encode(&marker))
                    .map_err(Error::io(&root))?;
                if !fs::publish_new(staged, &marker_path).map_err(Error::io(&marker_path))? {
                    state.end_init(&marker.store_id);
                    return Err(Error::AlreadyStore {
                        path: root,
                        reason: "another crdtdir init made it a store at the same moment".into(),
                    });
                }
                (marker, true)
            }
            Err(e) => return Err(Error::io(&marker_path)(e)),
        };
        let store_id = marker.store_id.clone();
        let made = (|| {
            fault::at("marker-published").map_err(Error::io(&marker_path))?;
            for dir in [OPS_DIR, marker::FEATURES_DIR] {
                fs::create_dir_durably(&root.join(dir)).map_err(Error::io(root.join(dir)))?;
            }
            state.claim_folder(&marker.store_id, &root)?;
            state.keep_marker(&marker.store_id, &marker::encode(&marker))?;
            let store = Store::assemble(root.clone(), marker, state.clone(), options.device);
            if let Some(v) = initial {
                store.apply_patch(&[PatchOp::Set {
                    path: String::new(),
                    value: v.clone(),
                    scalar: false,
                }])?;
            }
            Ok(store)
        })();
        match made {
            Ok(store) => {
                // A marker temp an interrupted init of this store left behind (nobody else
                // stages files under a new store's id).
                let prefix = format!("{TEMP_PREFIX}{store_id}-");
                for entry in std::fs::read_dir(&store.root)
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with(&prefix) && name.ends_with(TEMP_SUFFIX) {
                        let _ = crate::fs::remove(entry.path());
                    }
                }
                state.end_init(&store_id);
                Ok(store)
            }
            Err(e) => {
                // All or nothing: a store made here that could not be finished goes again.
                if fresh {
                    undo_init(&root, &state, &store_id);
                }
                Err(e)
            }
        }
    }

    /// Opens an existing store. Reads only.
    ///
    /// If the folder's marker is missing or damaged but this device knows the folder (it
    /// used it before), the store opens from what this device knows: reads serve its last
    /// view and report the marker, writes are refused until the marker is back.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let root = path.as_ref().to_path_buf();
        let state = StateDir::resolve(options.state_dir.as_deref())?;
        state.check_outside(&root)?;
        let (marker, marker_problem) = match crate::folder::read_marker(&root) {
            Ok(marker) => (marker, None),
            Err(e @ (Error::NoStore { .. } | Error::Corrupt { .. })) => {
                let known = state.store_for_folder(&root).and_then(|id| {
                    let kept = state.kept_marker(&id)?;
                    let marker = marker::decode(&kept).ok()?;
                    (marker.store_id == id).then_some(marker)
                });
                match known {
                    Some(marker) => {
                        let store_id = &marker.store_id;
                        let what = match &e {
                            Error::NoStore { .. } => "is missing".to_string(),
                            other => format!("is damaged ({other})"),
                        };
                        let problem = Problem::new(
                            ProblemKind::Damaged,
                            MARKER,
                            format!(
                                "the store marker {what}: this is this device's last view of store {store_id}; writes are refused until the marker is back"
                            ),
                        );
                        (marker, Some(problem))
                    }
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        state.claim_folder(&marker.store_id, &root)?;
        if marker_problem.is_none() {
            // The bytes as they are (a newer writer may have added keys).
            if let Ok(bytes) = std::fs::read(root.join(MARKER)) {
                state.keep_marker(&marker.store_id, &bytes)?;
            }
        }
        let mut store = Store::assemble(root, marker, state, options.device);
        store.marker_problem = marker_problem;
        Ok(store)
    }

    fn assemble(root: PathBuf, marker: Marker, state: StateDir, device: Option<String>) -> Store {
        let cache = Cache::new(state.store_dir(&marker.store_id), &marker.store_id);
        Store {
            root,
            marker,
            state,
            cache,
            device,
            mem: Mutex::new(None),
            mem_dirty: AtomicBool::new(false),
            marker_problem: None,
        }
    }

    /// The report, with the marker's problem if it has one.
    pub(crate) fn with_marker_problem(&self, mut report: MergeReport) -> MergeReport {
        if let Some(p) = &self.marker_problem {
            report.problems.insert(0, p.clone());
        }
        report
    }

    /// The store folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The store's random id.
    pub fn id(&self) -> &str {
        &self.marker.store_id
    }

    /// The merged document: the local cache plus only what is new in the folder.
    pub fn read(&self) -> Result<View> {
        let (state, report, _) = self.merged(&scan::scan(&self.root), true);
        let report = self.with_marker_problem(report);
        Ok(View { state, report })
    }

    /// The merged document as compact JSON text, and what the merge found. When nothing
    /// changed in the folder since the last merge, this only lists the folder.
    pub fn read_json(&self) -> Result<(String, MergeReport)> {
        let scan = scan::scan(&self.root);
        if let Some((json, report)) = self.cache.view(&self.root, &scan) {
            return Ok((json, self.with_marker_problem(report)));
        }
        let (state, report, json) = self.merged(&scan, true);
        let json = json.unwrap_or_else(|| render::document(&state.doc).to_string());
        Ok((json, self.with_marker_problem(report)))
    }

    /// Every change in the merged document, in causal order.
    pub fn history(&self) -> Result<Vec<ChangeInfo>> {
        let (state, _, _) = self.merged(&scan::scan(&self.root), true);
        Ok(history_of(&state))
    }

    /// Merges through the cache and (with `save`) refreshes it; the JSON when it had to be
    /// rendered.
    pub(crate) fn merged(
        &self,
        scan: &scan::Scan,
        save: bool,
    ) -> (Arc<MergedState>, MergeReport, Option<String>) {
        let base = self.take_mem().or_else(|| self.cache.load());
        let (state, report, changed) = match base {
            Some(cached) => match merge::merge_incremental(&self.root, scan, cached) {
                Some(done) => done,
                // A fork, a refused change, files gone: decide from everything, keeping what
                // this device has even if its files are gone.
                None => {
                    let (s, r) = merge::merge_cold(
                        &self.root,
                        &self.marker.store_id,
                        scan,
                        self.cache.load_all(),
                    );
                    (s, r, true)
                }
            },
            None => {
                let (s, r) = merge::merge_cold(
                    &self.root,
                    &self.marker.store_id,
                    scan,
                    self.cache.load_held(),
                );
                (s, r, true)
            }
        };
        let changed = changed || self.mem_dirty.load(Ordering::Relaxed);
        let state = Arc::new(state);
        self.put_mem(Arc::clone(&state));
        if !changed || !save {
            return (state, report, None);
        }
        self.mem_dirty.store(false, Ordering::Relaxed);
        let json = render::document(&state.doc).to_string();
        // What the folder lost is held apart from the cache, and first.
        let _ = self
            .cache
            .hold((state.unprovided > 0).then_some(&state.doc));
        // The cache only saves time: a cache that cannot be written is rebuilt next time.
        let _ = self.cache.save(&self.root, &state, scan, &json, &report);
        (state, report, Some(json))
    }

    /// The in-memory state, owned (copied only if a `View` still shares it).
    pub(crate) fn take_mem(&self) -> Option<MergedState> {
        let arc = self.mem.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        Some(Arc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone()))
    }

    pub(crate) fn put_mem(&self, state: Arc<MergedState>) {
        *self.mem.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    }

    /// `Err(NeedsNewer)` when this build must not write to the store.
    pub fn check_writable(&self) -> Result<()> {
        if let Some(p) = &self.marker_problem {
            // `repair` may have put a missing marker back since.
            if !crate::folder::read_marker(&self.root)
                .is_ok_and(|m| m.store_id == self.marker.store_id)
            {
                return Err(Error::Refused {
                    reason: p.reason.clone(),
                });
            }
        }
        if self.marker.format > FORMAT_VERSION {
            return Err(Error::NeedsNewer {
                reason: format!(
                    "format version {} (this build knows {FORMAT_VERSION})",
                    self.marker.format
                ),
            });
        }
        let (unknown, _) = crate::folder::read_features(&self.root)?;
        if let Some(feature) = unknown.first() {
            return Err(Error::NeedsNewer {
                reason: format!("it uses the feature {feature:?}"),
            });
        }
        Ok(())
    }
}

/// True when the folder holds an op file or a snapshot (this device's temps do not count).
fn has_history(root: &Path) -> bool {
    let snapshots = std::fs::read_dir(root.join(crate::format::snapshot::SNAPSHOTS_DIR))
        .is_ok_and(|mut d| d.next().is_some());
    let ops = std::fs::read_dir(root.join(OPS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .any(|actor| {
            std::fs::read_dir(actor.path())
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| !f.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
                || !actor.file_type().is_ok_and(|t| t.is_dir())
        });
    snapshots || ops
}

/// Takes back what a failed `init` made: the marker, this device's files of the new store
/// (the folder held no history before, so nothing else is there), the folders it created if
/// they are empty, and the store's local state.
fn undo_init(root: &Path, state: &StateDir, store_id: &str) {
    let mut actors = Vec::new();
    if let Some(r) = state.read_record(store_id) {
        actors.push(r.actor);
        actors.extend(r.retired);
    }
    for dir in std::fs::read_dir(root.join(OPS_DIR))
        .into_iter()
        .flatten()
        .flatten()
    {
        let ours = actors
            .iter()
            .any(|a| *a == *dir.file_name().to_string_lossy());
        for f in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if ours || f.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = crate::fs::remove(f.path());
            }
        }
        // Only folders this init emptied go.
        crate::fs::remove_empty_dir(&dir.path());
    }
    let _ = crate::fs::remove(root.join(MARKER));
    for dir in [OPS_DIR, marker::FEATURES_DIR] {
        crate::fs::remove_empty_dir(&root.join(dir));
    }
    let _ = fs::sync_dir(root);
    let _ = crate::fs::remove_local_tree(&state.store_dir(store_id));
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
