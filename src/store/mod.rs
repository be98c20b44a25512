//! The store: a folder the sync tool carries, opened by one device.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use automerge::transaction::{CommitOptions, Transaction};
use automerge::{ActorId, Automerge, ChangeHash, ReadDoc};
use serde::Serialize;
use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::fault;
use crate::folder::names;
use crate::folder::scan::{self, OPS_DIR};
use crate::format::beat;
use crate::format::marker::{self, Marker, FORMAT_VERSION, MARKER};
use crate::format::opfile;
use crate::fs::{self, TEMP_PREFIX, TEMP_SUFFIX};
use crate::local::cache::Cache;
use crate::local::outbox::Outbox;
use crate::local::{StateDir, WriterRecord};
use crate::merge;
use crate::merge::state::MergedState;
use crate::patch::{self, PatchError, PatchOp};
use crate::presence;
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

/// A change that was written as an op file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Written {
    /// Automerge hash of the change.
    pub hash: String,
    /// Actor it was written with, lowercase hex.
    pub actor: String,
    /// Its seq.
    pub seq: u64,
    /// Path of the op file relative to the store.
    pub path: String,
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WriteOutcome {
    /// The op files written, in seq order: empty when the change was a no-op. More than one
    /// when edits lost in a fork were written again first.
    pub written: Vec<Written>,
    /// Things the user should know, one line each (e.g. a fresh actor and why).
    pub notices: Vec<String>,
}

impl WriteOutcome {
    /// The hash of the caller's own change, if it changed anything.
    pub fn change(&self) -> Option<&str> {
        self.written.last().map(|w| w.hash.as_str())
    }
}

/// One device as seen in the folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// Display name.
    pub name: String,
    /// Actors written under this name.
    pub actors: Vec<String>,
    /// Changes in the merged document.
    pub ops: usize,
    /// Highest seq per actor.
    pub max_seq: BTreeMap<String, u64>,
}

/// Another device, as its heartbeats show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Presence {
    /// Its display name.
    pub name: String,
    /// Every actor it has written with (current first).
    pub actors: Vec<String>,
    /// Its latest beat file.
    pub beat: String,
    /// Seconds since its beat counter last changed, by this device's clock.
    pub seen_secs_ago: i64,
    /// Our clock minus its clock at its latest beat, in seconds (large when it is old, or
    /// when its clock is behind; negative when its clock is ahead).
    pub beat_secs_ago: i64,
    /// Whether it may be online (see the threshold given to [`Store::presence`]).
    pub online: bool,
    /// How many of this device's changes its latest beat does not include.
    pub unmerged: usize,
}

/// The default presence threshold, in seconds.
pub const DEFAULT_THRESHOLD_SECS: i64 = 300;
/// A retention copy of a compacted document is kept until every other device has verified
/// the snapshot, or this long (30 days) at most.
pub const RETENTION_SECS: i64 = 30 * 24 * 3600;

/// The snapshots every other device (by its latest readable beat) has verified; `None`
/// when there is no other device to ask.
fn out_verified(
    devices: &Path,
    own: &HashSet<String>,
    latest: impl Fn(&str) -> Option<(String, beat::Beat)>,
) -> Option<HashSet<String>> {
    let mut all: Option<HashSet<String>> = None;
    for entry in std::fs::read_dir(devices).into_iter().flatten().flatten() {
        let actor = entry.file_name().to_string_lossy().into_owned();
        if own.contains(&actor) || !names::is_actor_dir(&actor) {
            continue;
        }
        let Some((_, beat)) = latest(&actor) else {
            continue;
        };
        let verified: HashSet<String> = beat.verified.into_iter().collect();
        all = Some(match all {
            None => verified,
            Some(so_far) => so_far.intersection(&verified).cloned().collect(),
        });
    }
    all
}

/// A command publishes a new heartbeat when its view changed or the last is this old.
const BEAT_EVERY_SECS: i64 = 60;

/// What `status` shows.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// The store id.
    pub store_id: String,
    /// The store's format version.
    pub format: u64,
    /// Why this build refuses to write, if it does.
    pub read_only: Option<String>,
    /// Changes in the merged document.
    pub changes: usize,
    /// Heads of the merged document.
    pub heads: Vec<String>,
    /// Devices, by name.
    pub devices: Vec<DeviceInfo>,
    /// Other devices' heartbeats, judged with the default threshold.
    pub presence: Vec<Presence>,
    /// What the merge found.
    #[serde(flatten)]
    pub report: MergeReport,
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
                let marker = marker::decode(&bytes, &marker_path)?;
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
                        let _ = std::fs::remove_file(entry.path());
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
        let (marker, marker_problem) = match marker::read(&root) {
            Ok(marker) => (marker, None),
            Err(e @ (Error::NoStore { .. } | Error::Corrupt { .. })) => {
                let known = state.store_for_folder(&root).and_then(|id| {
                    let kept = state.kept_marker(&id)?;
                    let marker = marker::decode(&kept, &root.join(MARKER)).ok()?;
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
    fn with_marker_problem(&self, mut report: MergeReport) -> MergeReport {
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
    fn take_mem(&self) -> Option<MergedState> {
        let arc = self.mem.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        Some(Arc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone()))
    }

    fn put_mem(&self, state: Arc<MergedState>) {
        *self.mem.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    }

    /// `Err(NeedsNewer)` when this build must not write to the store.
    pub fn check_writable(&self) -> Result<()> {
        if let Some(p) = &self.marker_problem {
            // `repair` may have put a missing marker back since.
            if !marker::read(&self.root).is_ok_and(|m| m.store_id == self.marker.store_id) {
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
        let (unknown, _) = marker::read_features(&self.root)?;
        if let Some(feature) = unknown.first() {
            return Err(Error::NeedsNewer {
                reason: format!("it uses the feature {feature:?}"),
            });
        }
        Ok(())
    }

    /// Changes the document: `f` edits a transaction on the merged document; its change is
    /// an op file in the folder before this returns. A change with no operations writes
    /// nothing. If `f` fails, nothing is written.
    ///
    /// ```
    /// use automerge::{transaction::Transactable, ROOT};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let opts = crdtdir::Options::new().state_dir(dir.path().join("state")).device("laptop");
    /// let store = crdtdir::Store::init(dir.path().join("store"), opts, None)?;
    /// let outcome = store.change(|tx| tx.put(ROOT, "title", "Groceries"))?;
    /// assert_eq!(outcome.written.len(), 1);
    /// assert_eq!(store.read()?.to_json(), serde_json::json!({"title": "Groceries"}));
    /// # Ok::<(), crdtdir::Error>(())
    /// ```
    pub fn change<F, E>(&self, f: F) -> Result<WriteOutcome>
    where
        F: FnOnce(&mut Transaction<'_>) -> std::result::Result<(), E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.write(|tx| f(tx).map_err(|e| Error::Aborted(e.into())))
    }

    /// Applies a patch (see [`crate::PatchOp`]) as one change: all of it or, on any failing
    /// op (a failed `test` included), nothing.
    pub fn apply_patch(&self, ops: &[PatchOp]) -> Result<WriteOutcome> {
        self.write(|tx| patch::apply(tx, ops).map_err(Error::from))
    }

    /// Status: devices, problems, forks, quarantined and waiting changes.
    pub fn status(&self) -> Result<Status> {
        // One scan and one merge serve the history, the presence and the report.
        let (state, report, _) = self.merged(&scan::scan(&self.root), true);
        let history = history_of(&state);
        let mut by_actor: BTreeMap<String, (String, u64, usize)> = BTreeMap::new();
        for c in &history {
            let e = by_actor
                .entry(c.actor.clone())
                .or_insert((c.device.clone(), 0, 0));
            if c.seq >= e.1 {
                e.0 = c.device.clone();
                e.1 = c.seq;
            }
            e.2 += 1;
        }
        let mut devices: BTreeMap<String, DeviceInfo> = BTreeMap::new();
        for (actor, (name, max_seq, ops)) in by_actor {
            let d = devices.entry(name.clone()).or_insert_with(|| DeviceInfo {
                name,
                actors: Vec::new(),
                ops: 0,
                max_seq: BTreeMap::new(),
            });
            d.actors.push(actor.clone());
            d.ops += ops;
            d.max_seq.insert(actor, max_seq);
        }
        Ok(Status {
            store_id: self.marker.store_id.clone(),
            format: self.marker.format,
            read_only: self.check_writable().err().map(|e| e.to_string()),
            changes: history.len(),
            heads: state
                .doc
                .get_heads()
                .iter()
                .map(ChangeHash::to_string)
                .collect(),
            devices: devices.into_values().collect(),
            presence: self.presence_of(&state, DEFAULT_THRESHOLD_SECS),
            report: self.with_marker_problem(report),
        })
    }

    /// Publishes this device's heartbeat (its name, actors, a counter that only increases,
    /// its clock and the heads of its merged view) as a new immutable file, then deletes its
    /// older beats. Skipped (returns `false`) when the view did not change and the last beat
    /// is recent, and when this build must not write to the store.
    pub fn beat(&self) -> Result<bool> {
        if self.check_writable().is_err() {
            return Ok(false);
        }
        let device = self.state.device_name(self.device.as_deref())?;
        let _lock = self.state.lock(&self.marker.store_id)?;
        let record = match self.state.read_record(&self.marker.store_id) {
            Some(r) => r,
            None => {
                let r = fresh_record(None);
                self.state.write_record(&self.marker.store_id, &r)?;
                r
            }
        };
        let state = match self.take_mem() {
            Some(state) => state,
            None => {
                drop(self.merged(&scan::scan(&self.root), false));
                self.take_mem().expect("a merge leaves its state in memory")
            }
        };
        let heads: Vec<String> = state
            .doc
            .get_heads()
            .iter()
            .map(ChangeHash::to_string)
            .collect();
        // Snapshots this device read and verified are among its merged files.
        let verified: Vec<String> = state
            .files
            .iter()
            .filter(|f| f.starts_with("snapshots/"))
            .map(|f| f.trim_start_matches("snapshots/").to_string())
            .collect();
        self.put_mem(Arc::new(state));
        let local = self.state.store_dir(&self.marker.store_id);
        let mut own = presence::read_own(&local);
        let now = now();
        let dir = self.root.join(beat::DEVICES_DIR).join(&record.actor);
        let previous = own.counter > 0 && self.own_beat_exists(&dir, own.counter);
        let same = own.heads == heads && own.verified == verified;
        if previous && same && (0..BEAT_EVERY_SECS).contains(&(now - own.at)) {
            return Ok(false);
        }
        own = presence::OwnBeats {
            v: 1,
            counter: own.counter + 1,
            at: now,
            heads: heads.clone(),
            verified: verified.clone(),
        };
        // The counter is recorded before the beat that uses it appears: it never repeats.
        presence::write_own(&local, &own)
            .and_then(|()| fault::at("beat-counted"))
            .map_err(Error::io(&local))?;
        let mut actors = vec![record.actor.clone()];
        actors.extend(record.retired.iter().rev().cloned());
        let bytes = beat::encode(&beat::Beat {
            device,
            actors,
            counter: own.counter,
            time: now,
            heads,
            verified,
        });
        let name = beat::file_name(own.counter, &bytes);
        let staged = fs::stage(&dir, &record.actor, &bytes).map_err(Error::io(&dir))?;
        fs::publish(staged, &dir.join(&name))
            .and_then(|()| fault::at("beat-published"))
            .map_err(Error::io(&dir))?;
        // Then the older beats go: only this device's own, under any actor it had.
        for actor in std::iter::once(&record.actor).chain(&record.retired) {
            let d = self.root.join(beat::DEVICES_DIR).join(actor);
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let n = entry.file_name().to_string_lossy().into_owned();
                let stale_temp =
                    n.starts_with(&format!("{TEMP_PREFIX}{actor}-")) && n.ends_with(TEMP_SUFFIX);
                if (beat::parse_name(&n).is_some() && n != name) || stale_temp {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(true)
    }

    fn own_beat_exists(&self, dir: &Path, counter: u64) -> bool {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                beat::parse_name(&e.file_name().to_string_lossy())
                    .is_some_and(|(c, _)| c == counter)
            })
    }

    /// The other devices' latest heartbeats, judged by this device's clock: a device may be
    /// online if its beat counter changed within `threshold_secs` as this device observed it
    /// (a device seen for the first time counts as just seen), or if its own clock at its
    /// latest beat is within `threshold_secs` of ours. Remembers what it saw (local state).
    pub fn presence(&self, threshold_secs: i64) -> Result<Vec<Presence>> {
        let (state, _, _) = self.merged(&scan::scan(&self.root), true);
        Ok(self.presence_of(&state, threshold_secs))
    }

    pub(crate) fn presence_of(&self, state: &MergedState, threshold_secs: i64) -> Vec<Presence> {
        let record = self.state.read_record(&self.marker.store_id);
        let own: HashSet<String> = record
            .iter()
            .flat_map(|r| std::iter::once(r.actor.clone()).chain(r.retired.iter().cloned()))
            .collect();
        let local = self.state.store_dir(&self.marker.store_id);
        let mut seen = presence::read_seen(&local);
        let now = now();
        let mut out = Vec::new();
        let devices = self.root.join(beat::DEVICES_DIR);
        let dirs: Vec<String> = beat::actors(&self.root)
            .into_iter()
            .filter(|n| !own.contains(n))
            .collect();
        let mut not_merged_by_some: HashSet<ChangeHash> = HashSet::new();
        for actor in dirs {
            let Some((rel, beat)) = self.latest_beat(&actor) else {
                continue;
            };
            let changed_at = presence::observe(&mut seen, &actor, beat.counter, now);
            let known: Vec<ChangeHash> = beat
                .heads
                .iter()
                .filter_map(|h| h.parse().ok())
                .filter(|h| {
                    state
                        .doc
                        .get_missing_deps(std::slice::from_ref(h))
                        .is_empty()
                })
                .collect();
            let not_merged: Vec<ChangeHash> = state
                .doc
                .get_changes_meta(&known)
                .iter()
                .filter(|m| own.contains(&m.actor.to_hex_string()))
                .map(|m| m.hash)
                .collect();
            let unmerged = not_merged.len();
            not_merged_by_some.extend(not_merged);
            out.push(Presence {
                name: beat.device,
                actors: beat.actors,
                beat: rel,
                seen_secs_ago: now - changed_at,
                beat_secs_ago: now - beat.time,
                online: presence::looks_online(changed_at, beat.time, now, threshold_secs),
                unmerged,
            });
        }
        // What was seen is remembered; failing to remember only makes devices look fresher.
        let _ = presence::write_seen(&local, &seen);
        self.release_retention(&out_verified(&devices, &own, |a| self.latest_beat(a)));
        self.release_outbox(state, (!out.is_empty()).then_some(&not_merged_by_some));
        out
    }

    /// Forgets outbox entries every other device has merged (`not_merged_by_some` holds the
    /// own changes some other device's latest beat lacks; `None` when no other device beats),
    /// and entries older than [`RETENTION_SECS`] whose op file the folder holds (or a snapshot
    /// folds): age alone never drops the only copy, whatever the clock did.
    fn release_outbox(
        &self,
        state: &MergedState,
        not_merged_by_some: Option<&HashSet<ChangeHash>>,
    ) {
        for kept in self.outbox().entries() {
            let merged_everywhere = not_merged_by_some.is_some_and(|missing| {
                kept.change_hash().is_some_and(|h| {
                    state.doc.get_change_meta_by_hash(&h).is_some() && !missing.contains(&h)
                })
            });
            let rel = kept.rel();
            let in_folder = self.root.join(&rel).is_file() || state.covered.contains(&rel);
            if merged_everywhere || (in_folder && kept.age_secs() > RETENTION_SECS as u64) {
                kept.release();
            }
        }
    }

    /// Deletes retention copies that are no longer needed: every other device whose beat
    /// this device can read has verified the snapshot, or the copy is older than
    /// [`RETENTION_SECS`] and its snapshot is in the folder (a clock that jumps ahead must not
    /// drop the only copy).
    fn release_retention(&self, verified_by_all: &Option<HashSet<String>>) {
        let dir = self
            .state
            .store_dir(&self.marker.store_id)
            .join("retention");
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry
                .file_name()
                .to_string_lossy()
                .replace(".automerge", ".sqlite");
            let acknowledged = verified_by_all.as_ref().is_some_and(|v| v.contains(&name));
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .map_or(0, |d| d.as_secs() as i64);
            let in_folder = self
                .root
                .join(crate::format::snapshot::SNAPSHOTS_DIR)
                .join(&name)
                .is_file();
            if acknowledged || (in_folder && age > RETENTION_SECS) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn latest_beat(&self, actor: &str) -> Option<(String, beat::Beat)> {
        beat::latest(&self.root, actor)
    }

    /// The one write path: lock, merge, pick a provable actor, run `f`, persist.
    fn write(&self, f: impl FnOnce(&mut Transaction<'_>) -> Result<()>) -> Result<WriteOutcome> {
        self.check_writable()?;
        // A bad name is refused now; a default name is made and kept only once there is a
        // change to write (a refused patch leaves the local state as it was).
        self.state.check_device_name(self.device.as_deref())?;
        let _lock = self.state.lock(&self.marker.store_id)?;
        let record = self.state.read_record(&self.marker.store_id);
        let record_max = record.as_ref().map(|r| self.actor_max_seq(&r.actor));
        // Write on top of the state this `Store` merged last; without one, merge first. What
        // other devices wrote since is merged by the next read. A write leaves the cache
        // files alone: a refused write changes nothing on disk at all.
        // Another process of this device may have written since: then the memory lacks the
        // recorded last change, and the folder is merged again rather than doubting the record.
        let knows_last = |state: &MergedState| {
            record.as_ref().is_none_or(|r| {
                r.hash.parse::<ChangeHash>().is_ok_and(|h| {
                    state
                        .doc
                        .get_missing_deps(std::slice::from_ref(&h))
                        .is_empty()
                })
            })
        };
        let mut state = match self.take_mem() {
            Some(state) if knows_last(&state) => state,
            _ => {
                drop(self.merged(&scan::scan(&self.root), false));
                self.take_mem().expect("a merge leaves its state in memory")
            }
        };
        if let Some(r) = &record {
            self.remove_stale_temps(r);
        }
        let mut outcome = WriteOutcome::default();
        // Own op files the folder lost come back first, under their own names: the record
        // can then prove its last seq, and changes built on them stop waiting.
        let republished = self.republish(record.as_ref())?;
        if !republished.is_empty() {
            outcome.notices.push(format!(
                "{} of this device's op files were missing from the folder (deleted by a sync tool, or a restored backup?): published them again",
                republished.len()
            ));
            self.put_mem(Arc::new(state));
            drop(self.merged(&scan::scan(&self.root), false));
            state = self.take_mem().expect("a merge leaves its state in memory");
        }

        if state.unprovided > 0 {
            outcome.notices.push(format!(
                "the folder lost {} change(s) this device still has (a restored backup, a lost snapshot, files deleted by a sync tool?): run `crdtdir repair` here to write them back",
                state.unprovided
            ));
        }
        // Can the record prove its last seq? Otherwise a fresh actor: never reuse a seq.
        let mut record = match record {
            None => fresh_record(None),
            Some(r) => {
                let last: Option<ChangeHash> = r.hash.parse().ok();
                let in_doc = last.is_some_and(|h| {
                    state
                        .doc
                        .get_change_meta_by_hash(&h)
                        .is_some_and(|c| c.seq == r.seq)
                });
                let rebased = state.rebased.iter().find(|x| x.from == r.hash);
                // Compaction may have taken the actor's op files: the document knows its seqs.
                let doc_max = r.actor.parse::<ActorId>().ok().and_then(|a| {
                    state.doc.set_actor(a);
                    state.doc.get_last_local_change().map(|c| c.seq())
                });
                if let Some(rebased) = rebased {
                    // Our last change lost a fork, or was built on a change that did: its
                    // edits are in the document, rewritten under another actor.
                    outcome.notices.push(format!(
                        "this device's last change under actor {} was rebased (it lost a fork, or was built on a change that lost one: a cloned disk or restored state?); its edits are kept as change {}: writing with a fresh actor",
                        r.actor, rebased.to
                    ));
                    fresh_record(Some(r))
                } else if record_max.unwrap_or(0).max(doc_max.unwrap_or(0)) > r.seq {
                    outcome.notices.push(format!(
                        "actor {} has changes beyond this device's record (a cloned disk or restored state?): writing with a fresh actor",
                        r.actor
                    ));
                    fresh_record(Some(r))
                } else if in_doc {
                    r
                } else if r.seq == 0 && r.hash.is_empty() {
                    // An actor made for heartbeats, never written with: nothing to prove.
                    r
                } else {
                    outcome.notices.push(format!(
                        "cannot prove the last change of actor {} (its file is missing or waiting): writing with a fresh actor",
                        r.actor
                    ));
                    fresh_record(Some(r))
                }
            }
        };
        let actor: ActorId = record.actor.parse().map_err(|_| Error::Corrupt {
            path: self.root.clone(),
            reason: "bad actor id".into(),
        })?;
        state.doc.set_actor(actor);

        let mut tx = state.doc.transaction();
        if let Err(e) = f(&mut tx) {
            // Dropping the transaction rolls it back: the state is as it was.
            drop(tx);
            self.put_mem(Arc::new(state));
            return Err(e);
        }
        if let Some(hash) = tx.commit_with(CommitOptions::default().with_time(now())).0 {
            // On error the state (holding a change that is not on disk) is dropped here, so
            // nothing is ever built on top of it.
            let device = self.state.device_name(self.device.as_deref())?;
            // The new change depends on the rebased changes in this view: they become files
            // first, so that it never waits for a rebase that readers derive differently later.
            let published = self.publish_rebased(&state, &device, &record.actor)?;
            if published > 0 {
                outcome.notices.push(format!(
                    "published {published} rebased change(s) this change builds on (they carry edits of a fork's losing side)"
                ));
            }
            let written = self.persist(&state.doc, hash, &device, &mut record)?;
            state.files.push(written.path.clone());
            outcome.written.push(written);
            state.devices.insert(record.actor.clone(), device);
        }
        self.mem_dirty.store(true, Ordering::Relaxed);
        self.put_mem(Arc::new(state));
        Ok(outcome)
    }

    /// Publishes, as op files, the rebased changes of this view that no op file in the folder
    /// carries yet (docs/FORMAT.md §9). Returns how many it wrote.
    fn publish_rebased(&self, state: &MergedState, device: &str, owner: &str) -> Result<usize> {
        let mut written = 0;
        for r in &state.rebased {
            let Ok(to) = r.to.parse::<ChangeHash>() else {
                continue;
            };
            let Some(change) = state.doc.get_change_by_hash(&to) else {
                continue;
            };
            let actor = change.actor_id().to_hex_string();
            let dir = self.root.join(OPS_DIR).join(&actor);
            let bytes = opfile::encode(device, change.raw_bytes());
            let path = dir.join(names::op_file_name(change.seq(), &blake3::hash(&bytes)));
            // Usually this device published it before: one stat. Otherwise another device
            // may have (its file names differ by the device name in the envelope).
            let carried = path.exists()
                || std::fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".op"))
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .filter_map(|bytes| opfile::decode(&bytes).ok())
                    .filter_map(|env| automerge::Change::from_bytes(env.change).ok())
                    .any(|c| c.hash() == to);
            if carried {
                continue;
            }
            let staged = fs::stage(&dir, owner, &bytes).map_err(Error::io(&dir))?;
            if fs::publish_new(staged, &path).map_err(Error::io(&path))? {
                written += 1;
            }
        }
        Ok(written)
    }

    /// The highest seq of any op file name under `actor`, listing only its folder.
    fn actor_max_seq(&self, actor: &str) -> u64 {
        let Ok(entries) = std::fs::read_dir(self.root.join(OPS_DIR).join(actor)) else {
            return 0;
        };
        entries
            .flatten()
            .filter_map(|e| names::parse_op_name(&e.file_name().to_string_lossy()).map(|n| n.seq))
            .max()
            .unwrap_or(0)
    }

    /// Writes one own change: temp file (fsynced), then the record (fsynced), then the rename.
    fn persist(
        &self,
        doc: &Automerge,
        hash: ChangeHash,
        device: &str,
        record: &mut WriterRecord,
    ) -> Result<Written> {
        let change = doc
            .get_change_by_hash(&hash)
            .ok_or_else(|| Error::Corrupt {
                path: self.root.clone(),
                reason: "a committed change vanished".into(),
            })?;
        let seq = change.seq();
        if seq != record.seq + 1 {
            return Err(Error::Corrupt {
                path: self.root.clone(),
                reason: format!(
                    "the new change has seq {seq} but the writer record's last is {} (nothing was written)",
                    record.seq
                ),
            });
        }
        // A fresh actor is recorded before its first temp file appears, so that a crash
        // leaves no temp this device does not know to remove.
        if record.seq == 0 {
            self.state.write_record(&self.marker.store_id, record)?;
        }
        let bytes = opfile::encode(device, change.raw_bytes());
        let dir = self.root.join(OPS_DIR).join(&record.actor);
        let name = names::op_file_name(seq, &blake3::hash(&bytes));
        let staged = fs::stage(&dir, &record.actor, &bytes).map_err(Error::io(&dir))?;
        // The outbox copy exists before the record names the seq: whatever happens to the
        // folder from here on, this device can publish the same file again.
        let kept = fault::at("op-staged")
            .and_then(|()| self.outbox().keep(&record.actor, &name, &bytes))
            .and_then(|()| fault::at("op-kept"));
        if let Err(e) = kept {
            staged.discard();
            return Err(Error::io(self.outbox_dir())(e));
        }
        record.seq = seq;
        record.hash = hash.to_string();
        if let Err(e) = self.state.write_record(&self.marker.store_id, record) {
            staged.discard();
            return Err(e);
        }
        let target = dir.join(&name);
        fault::at("record-written")
            .and_then(|()| fs::publish(staged, &target))
            .and_then(|()| fault::at("op-published"))
            .map_err(Error::io(&target))?;
        Ok(Written {
            hash: hash.to_string(),
            actor: record.actor.clone(),
            seq,
            path: format!("{OPS_DIR}/{}/{name}", record.actor),
        })
    }

    pub(crate) fn outbox(&self) -> Outbox {
        Outbox::new(&self.state.store_dir(&self.marker.store_id))
    }

    fn outbox_dir(&self) -> PathBuf {
        self.state.store_dir(&self.marker.store_id).join("outbox")
    }

    /// Publishes again, with the same bytes and name, every op file of this device's outbox
    /// that the folder lost and no valid snapshot in the folder folds in. An entry beyond the
    /// record's seq was never acknowledged (a crash came before the record) and is dropped.
    /// Returns the paths published.
    pub(crate) fn republish(&self, record: Option<&WriterRecord>) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        for kept in self.outbox().entries() {
            if record.is_some_and(|r| r.actor == kept.actor && kept.seq > r.seq) {
                kept.release();
                continue;
            }
            if !self.root.join(kept.rel()).is_file() {
                missing.push(kept);
            }
        }
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let scan = scan::scan(&self.root);
        let covered: HashSet<String> =
            merge::load_snapshots(&self.root, &self.marker.store_id, &scan)
                .valid
                .into_iter()
                .flat_map(|s| s.snapshot.folded_ops.into_iter().map(|(p, _)| p))
                .collect();
        let mut published = Vec::new();
        for kept in missing {
            let rel = kept.rel();
            if covered.contains(&rel) {
                continue;
            }
            let Some(bytes) = kept.bytes() else {
                continue;
            };
            let dir = self.root.join(OPS_DIR).join(&kept.actor);
            let staged = fs::stage(&dir, &kept.actor, &bytes).map_err(Error::io(&dir))?;
            let target = dir.join(&kept.name);
            fs::publish(staged, &target)
                .and_then(|()| fault::at("republished"))
                .map_err(Error::io(&target))?;
            published.push(rel);
        }
        Ok(published)
    }

    /// Removes temp files this device left behind in a crash (only its own actors' temps).
    pub(crate) fn remove_stale_temps(&self, record: &WriterRecord) {
        for actor in std::iter::once(&record.actor).chain(&record.retired) {
            let prefix = format!("{TEMP_PREFIX}{actor}-");
            // Everywhere this device stages files under that actor: op files, heartbeats,
            // snapshots, records and feature markers.
            for dir in [
                self.root.join(OPS_DIR).join(actor),
                self.root.join(beat::DEVICES_DIR).join(actor),
                self.root.join(crate::format::snapshot::SNAPSHOTS_DIR),
                self.root.join(marker::FEATURES_DIR),
            ] {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with(&prefix) && name.ends_with(TEMP_SUFFIX) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
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
                let _ = std::fs::remove_file(f.path());
            }
        }
        // Only folders this init emptied go.
        let _ = std::fs::remove_dir(dir.path());
    }
    let _ = std::fs::remove_file(root.join(MARKER));
    for dir in [OPS_DIR, marker::FEATURES_DIR] {
        let _ = std::fs::remove_dir(root.join(dir));
    }
    let _ = fs::sync_dir(root);
    let _ = std::fs::remove_dir_all(state.store_dir(store_id));
}

/// Every change in `state`'s document, in causal order, with its file and device.
fn history_of(state: &MergedState) -> Vec<ChangeInfo> {
    let mut paths: HashMap<(&str, u64), &str> =
        HashMap::with_capacity(state.files.len() + state.covered.len());
    for rel in state.files.iter().chain(&state.covered) {
        let mut parts = rel.split('/').skip(1);
        if let (Some(actor), Some(name)) = (parts.next(), parts.next()) {
            if let Some(op) = names::parse_op_name(name) {
                paths.insert((actor, op.seq), rel);
            }
        }
    }
    state
        .doc
        .get_changes_meta(&[])
        .into_iter()
        .map(|m| {
            let actor = m.actor.to_hex_string();
            ChangeInfo {
                path: paths
                    .get(&(actor.as_str(), m.seq))
                    .map_or(String::new(), |p| p.to_string()),
                hash: m.hash.to_string(),
                device: state.devices.get(&actor).cloned().unwrap_or_default(),
                actor,
                seq: m.seq,
                time: m.timestamp,
                ops: (m.max_op + 1).saturating_sub(m.start_op) as usize,
            }
        })
        .collect()
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn fresh_record(old: Option<WriterRecord>) -> WriterRecord {
    let mut retired = Vec::new();
    if let Some(old) = old {
        retired = old.retired;
        retired.push(old.actor);
    }
    WriterRecord {
        actor: ActorId::random().to_hex_string(),
        seq: 0,
        hash: String::new(),
        retired,
    }
}
