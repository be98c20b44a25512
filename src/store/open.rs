//! Opening a store: `init` (all or nothing) and `open` (with the marker, or this device's
//! copy of it when the folder's is gone).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value as Json;

use super::{Options, Shared, Store};
use crate::error::{Error, Result};
use crate::fault;
use crate::format::marker::{self, Marker, FORMAT_VERSION, MARKER};
use crate::fs::{self, TEMP_PREFIX, TEMP_SUFFIX};
use crate::local::cache::Cache;
use crate::local::StateDir;
use crate::patch::{PatchError, PatchOp};
use crate::report::{Problem, ProblemKind};

/// What a new store starts with.
pub(crate) enum Initial<'a> {
    /// Nothing: an empty document.
    Empty,
    /// This JSON object, as its first change.
    Json(&'a Json),
    /// Another store's whole history, as one snapshot.
    History {
        doc: &'a automerge::Automerge,
        devices: &'a std::collections::BTreeMap<String, String>,
    },
}

impl Store {
    /// Makes `path` a new store (creating the folder if needed). Nothing is written when it
    /// fails: an existing store, or a folder that holds op files whose marker has not arrived.
    ///
    /// With `initial`, the document's first change writes that JSON object, so every device
    /// starts from the same containers.
    pub fn init(path: impl AsRef<Path>, options: Options, initial: Option<&Json>) -> Result<Store> {
        let initial = match initial {
            Some(v) => Initial::Json(v),
            None => Initial::Empty,
        };
        Store::init_with(path.as_ref(), options, initial)
    }

    /// Makes a new store in `folder`, wherever it is ([`Store::open_in`]): the same as
    /// [`Store::init`] of its path for a folder on the local disk. Elsewhere, the store is
    /// made in local state first, then created in the folder file by file with the folder's
    /// atomic create, the marker first: a folder that already holds a marker is refused
    /// before anything is written, and a failure half-way removes what was created (the
    /// marker last), so a store appears whole or not at all but for what a crash leaves.
    pub fn init_in(
        folder: Arc<dyn crate::folders::Folder>,
        options: Options,
        initial: Option<&Json>,
    ) -> Result<Store> {
        if let Some(path) = folder.local_path() {
            return Store::init(path, options, initial);
        }
        let described = PathBuf::from(folder.describe());
        if options.is_read_only() {
            return Err(Error::ReadOnly);
        }
        match folder.stat(MARKER) {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Err(Error::AlreadyStore {
                    path: described,
                    reason: "it has a store marker".into(),
                })
            }
            Err(e) => return Err(Error::io(described.join(MARKER))(e)),
        }
        let state = StateDir::resolve(options.state_dir.as_deref())?;
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::io(state.root())(std::io::Error::other(e)))?;
        let made = state.root().join("staging").join(hex::encode(nonce));
        fs::create_private_dir_durably(&made).map_err(Error::io(&made))?;
        let result = Store::init_staged(&folder, &described, &made, options.clone(), initial);
        // What was made here was copied (or is not wanted): only local state. Gone before
        // the store is opened there, so it is not taken for a second folder of the store.
        let _ = fs::remove_local_tree(&made);
        result?;
        Store::open_in(folder, options)
    }

    /// [`Store::init_in`] of a folder elsewhere, the store made first in `made`.
    fn init_staged(
        folder: &Arc<dyn crate::folders::Folder>,
        described: &Path,
        made: &Path,
        options: Options,
        initial: Option<&Json>,
    ) -> Result<()> {
        let local = made.join("store");
        Store::init(&local, options.clone(), initial)?;
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for entry in walkdir::WalkDir::new(&local).min_depth(1) {
            let entry = entry.map_err(|e| Error::io(&local)(e.into()))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(&local).expect("under the store");
            let rel: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
            let bytes = std::fs::read(entry.path()).map_err(Error::io(entry.path()))?;
            files.push((rel.join("/"), bytes));
        }
        // The marker first: a store someone else made meanwhile is refused with nothing of
        // this one in its folder.
        files.sort_by_key(|(rel, _)| rel != MARKER);
        let mut created: Vec<&str> = Vec::new();
        let failed = files.iter().find_map(|(rel, bytes)| {
            match folder.create(rel, bytes, "init") {
                Ok(crate::folders::Created::New) => {
                    created.push(rel);
                    None
                }
                Ok(crate::folders::Created::Existed) if rel == MARKER => {
                    Some(Error::AlreadyStore {
                        path: described.to_path_buf(),
                        reason: "another device made a store there meanwhile".into(),
                    })
                }
                // A file of this store's own, with the same bytes (its name says them).
                Ok(crate::folders::Created::Existed) => None,
                Err(e) => Some(Error::io(described.join(rel))(e)),
            }
        });
        if let Some(e) = failed {
            for rel in created.iter().rev() {
                let _ = folder.remove(rel);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Makes `path` a new store holding the whole history of the store `source` (every
    /// change of every device, with its time, message and device name), encrypted or not by
    /// `options` — how a plain store becomes an encrypted one, or an encrypted one gets a new
    /// key, keeping its history. `source` is only read. All or nothing as [`Store::init`]:
    /// the history goes in as one snapshot, verified by reading it back, before `init`
    /// finishes; a crash lets the same call run again and finish it.
    ///
    /// Refused when `source`'s view is incomplete or holds changes waiting for others or
    /// quarantined (they would not come along), and when it holds documents beside its root
    /// one. Changes written to `source` afterwards are not in the new store: convert once
    /// every device has stopped writing there.
    pub fn init_from_store(
        path: impl AsRef<Path>,
        options: Options,
        source: &Store,
    ) -> Result<Store> {
        source.whole_store("a copy of the store")?;
        source.check_unlocked()?;
        let view = source.read()?;
        let report = view.report();
        let why = if !report.incomplete.is_empty() {
            Some(format!(
                "its view is incomplete ({}): `crdtdir status` there says what is missing",
                report
                    .incomplete
                    .iter()
                    .map(|p| p.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        } else if !report.waiting.is_empty() || !report.quarantined.is_empty() {
            Some(format!(
                "{} change(s) wait for others and {} are quarantined there: they would not come along (`crdtdir status` there)",
                report.waiting.len(),
                report.quarantined.len()
            ))
        } else if source.documents().0 > 1 {
            Some("it holds documents beside its root one, which a copy does not carry yet".into())
        } else {
            None
        };
        if let Some(reason) = why {
            return Err(Error::Refused(crate::error::Refusal::Source { reason }));
        }
        let merged = view.merged.clone();
        Store::init_with(
            path.as_ref(),
            options,
            Initial::History {
                doc: &merged.doc,
                devices: &merged.devices,
            },
        )
    }

    fn init_with(path: &Path, options: Options, initial: Initial<'_>) -> Result<Store> {
        let root = path.to_path_buf();
        if options.is_read_only() {
            return Err(Error::ReadOnly);
        }
        if let Initial::Json(v) = initial {
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
        state.make_private();
        // Resolve the device name first: a bad name must not leave a half-made store.
        state.device_name(options.device.as_deref())?;
        let (marker, fresh) = claim_marker(&root, &state, &options)?;
        let store_id = marker.store_id.clone();
        match Store::lay_out(&root, marker, &state, &options, initial) {
            Ok(store) => {
                remove_marker_temps(&root, &store_id);
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

    /// The store's folders and feature notes, this device's claim and kept marker, and
    /// the first document, once the marker is published: [`Store::init`]'s second half.
    fn lay_out(
        root: &Path,
        marker: Marker,
        state: &StateDir,
        options: &Options,
        initial: Initial<'_>,
    ) -> Result<Store> {
        let marker_path = crate::folder::layout::marker(root);
        fault::at("marker-published").map_err(Error::io(&marker_path))?;
        for dir in [
            crate::folder::layout::ops(root),
            crate::folder::layout::features(root),
        ] {
            fs::create_dir_durably(&dir).map_err(Error::io(&dir))?;
        }
        if marker.sealed.is_some() {
            // For builds that do not know encryption: an unknown feature, so they write
            // nothing (the marker's key check is what this build goes by).
            let note = b"an encrypted store: every op file, heartbeat and snapshot is sealed\n";
            crate::folder::layout::ensure_feature(
                &crate::folders::Local::new(root),
                &marker.store_id,
                crate::seal::FEATURE,
                note,
            )
            .map_err(Error::io(crate::folder::layout::feature(
                root,
                crate::seal::FEATURE,
            )))?;
        }
        state.claim_folder(&marker.store_id, root)?;
        state.keep_marker(&marker.store_id, &marker::encode(&marker))?;
        let store = Store::assemble(
            Arc::new(crate::folders::Local::new(root)),
            root.to_path_buf(),
            marker,
            state.clone(),
            options,
            None,
        );
        if !matches!(initial, Initial::Empty) {
            store.source().tell(crate::Progress::Building);
        }
        match initial {
            Initial::Empty => {}
            Initial::Json(v) => {
                let out = store.apply_patch(&[PatchOp::set("", v.clone())])?;
                // A store is made whole or not at all: its first document in the folder.
                if let Some(w) = out.written.iter().find(|w| w.unpublished.is_some()) {
                    let why = w.unpublished.clone().unwrap_or_default();
                    return Err(Error::io(root.join(&w.path))(std::io::Error::other(why)));
                }
            }
            Initial::History { doc, devices } => {
                // One snapshot that folds nothing (the new folder has no op file), read
                // back and verified before init is done; sealed in an encrypted store.
                let session = store.session(crate::store::session::Name::Resolve)?;
                let device = session.device.clone().unwrap_or_default();
                store.publish_snapshot(doc, &device, &[], &[], devices, &[])?;
            }
        }
        Ok(store)
    }

    /// Opens an existing store. Reads only.
    ///
    /// If the folder's marker is missing or damaged but this device knows the folder (it
    /// used it before), the store opens from what this device knows: reads serve its last
    /// view and report the marker, writes are refused until the marker is back.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let root = path.as_ref().to_path_buf();
        let state = StateDir::resolve(options.state_dir.as_deref())?;
        let read = crate::folder::read_marker(&root);
        // No store here and none this device knows here: say that first (a state dir
        // inside a folder that is no store, `$HOME`, is not the problem then).
        if matches!(read, Err(Error::NoStore { .. })) && state.store_for_folder(&root).is_none() {
            return Err(Error::NoStore {
                path: std::path::absolute(&root).unwrap_or(root),
            });
        }
        state.check_outside(&root)?;
        state.make_private();
        let (marker, marker_problem) = match read {
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
        // A state dir that cannot be written (a read-only mount, a full disk) still reads:
        // the claim and the kept marker are for writes, which need the state dir anyway
        // (the writer lock is there). A copied folder is refused all the same.
        match state.claim_folder(&marker.store_id, &root) {
            Err(e @ Error::CopiedStore { .. }) => return Err(e),
            Err(_) if !state.writable() => {}
            other => other?,
        }
        if marker_problem.is_none() {
            // The bytes as they are (a newer writer may have added keys).
            if let Ok(bytes) = std::fs::read(crate::folder::layout::marker(&root)) {
                if let Err(e) = state.keep_marker(&marker.store_id, &bytes) {
                    if state.writable() {
                        return Err(e);
                    }
                }
            }
        }
        Ok(Store::assemble(
            Arc::new(crate::folders::Local::new(root.clone())),
            root,
            marker,
            state,
            &options,
            marker_problem,
        ))
    }

    /// Opens an existing store in `folder`, wherever it is: a folder on the local disk
    /// ([`crate::folders::Local`]: the same as [`Store::open`] of its path), a bucket of an
    /// object store (`crate::folders::S3`), or memory ([`crate::folders::Memory`]). Local
    /// state is on the local disk as ever.
    ///
    /// A store elsewhere than on the local disk does all a store on a disk does; a watcher
    /// polls it instead of taking file events.
    pub fn open_in(folder: Arc<dyn crate::folders::Folder>, options: Options) -> Result<Store> {
        if let Some(path) = folder.local_path() {
            return Store::open(path, options);
        }
        let root = PathBuf::from(folder.describe());
        let state = StateDir::resolve(options.state_dir.as_deref())?;
        state.make_private();
        let marker = crate::folder::read_marker_in(&*folder, &root)?;
        // As on a disk: a second folder of one store (a copy) is refused; a store whose
        // folder moved is claimed at its new place.
        match state.claim(&marker.store_id, &folder.describe()) {
            Err(e @ Error::CopiedStore { .. }) => return Err(e),
            Err(_) if !state.writable() => {}
            other => other?,
        }
        if let Ok(bytes) = folder.read(MARKER) {
            if let Err(e) = state.keep_marker(&marker.store_id, &bytes) {
                if state.writable() {
                    return Err(e);
                }
            }
        }
        Ok(Store::assemble(folder, root, marker, state, &options, None))
    }

    /// The handle of the root document of the store in `folder` (named `root` in messages).
    fn assemble(
        folder: Arc<dyn crate::folders::Folder>,
        root: PathBuf,
        marker: Marker,
        state: StateDir,
        options: &Options,
        marker_problem: Option<Problem>,
    ) -> Store {
        let device = options.device.clone();
        let read_only = options.is_read_only();
        let state = crate::local::StoreState::new(state, &marker.store_id, None);
        let cache = Cache::new(state.path(), &marker.store_id);
        let ring = super::keys::load_keyring(state.dir(), &*folder, &marker);
        let key = Arc::new(std::sync::RwLock::new(ring.map(Arc::new)));
        let progress = std::sync::OnceLock::new();
        if let Some(f) = &options.progress {
            let _ = progress.set(Arc::clone(f));
        }
        Store {
            inner: Arc::new(Shared {
                progress,
                folder,
                root,
                doc: None,
                doc_name: None,
                marker,
                state,
                memory: super::memory::Memory::new(cache),
                device,
                read_only,
                marker_problem,
                key,
                pack_size: options.effective_pack_size(),
                checkpoint_every: options.effective_checkpoint_every(),
                repack_fan: options.repack_fan.unwrap_or(crate::REPACK_FAN).max(2),
                list_key: match options.list_key.as_deref() {
                    None => Some("id".to_string()),
                    Some("") => None,
                    Some(key) => Some(key.to_string()),
                },
                keychain: options.is_keychain(),
                packed_through: Mutex::new(None),
                features_seen: Default::default(),
            }),
        }
    }
}

impl Store {
    /// A handle of the same store for document `doc` (`None`: the root document), with its
    /// own memory and cache: nothing of the document is read until it is used.
    pub(crate) fn for_doc(&self, doc: Option<&str>) -> Store {
        // Its name in file names, and of its local state (the id itself without the key).
        let name = doc.map(|id| self.source().doc_name(id).unwrap_or_else(|| id.to_string()));
        self.for_doc_named(doc, name.as_deref())
    }

    /// [`Store::for_doc`] for document `doc` whose name in file names is `name`.
    pub(crate) fn for_doc_named(&self, doc: Option<&str>, name: Option<&str>) -> Store {
        let inner = &self.inner;
        let state = inner.state.for_doc(name);
        let cache = Cache::new(state.path(), &inner.marker.store_id);
        // One keyring for every handle of the store: a rotation reaches them all.
        let key = inner.key.clone();
        Store {
            inner: Arc::new(Shared {
                progress: std::sync::OnceLock::new(),
                root: inner.root.clone(),
                folder: Arc::clone(&inner.folder),
                doc: doc.map(str::to_string),
                doc_name: name.map(str::to_string),
                marker: inner.marker.clone(),
                state,
                memory: super::memory::Memory::new(cache),
                device: inner.device.clone(),
                read_only: inner.read_only,
                marker_problem: inner.marker_problem.clone(),
                key,
                pack_size: inner.pack_size,
                checkpoint_every: inner.checkpoint_every,
                repack_fan: inner.repack_fan,
                list_key: inner.list_key.clone(),
                keychain: inner.keychain,
                features_seen: Arc::clone(&inner.features_seen),
                packed_through: Mutex::new(None),
            }),
        }
    }
}

/// True when the folder holds an op file or a snapshot (this device's temps do not count).
fn has_history(root: &Path) -> bool {
    // A temp of an interrupted init that writes a snapshot is not history yet.
    let snapshots = std::fs::read_dir(crate::folder::layout::snapshots(root))
        .into_iter()
        .flatten()
        .flatten()
        .any(|f| !f.file_name().to_string_lossy().starts_with(TEMP_PREFIX));
    let ops = std::fs::read_dir(crate::folder::layout::ops(root))
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

/// The store marker `init` goes on with: a new one, published with the store's key kept
/// first (`true`: made here), or the one an interrupted `init` of this device published
/// (`false`). Refused when the folder is a store already or holds history.
fn claim_marker(root: &Path, state: &StateDir, options: &Options) -> Result<(Marker, bool)> {
    let marker_path = crate::folder::layout::marker(root);
    let claimed = match std::fs::read(&marker_path) {
        Ok(bytes) => {
            let marker = marker::decode(&bytes).map_err(|e| Error::Corrupt {
                path: marker_path.clone(),
                reason: e.to_string(),
            })?;
            // An init of this device that stopped half way (a crash) is finished now,
            // as long as nothing was written to the store since.
            if !state.init_pending(&marker.store_id) || has_history(root) {
                return Err(Error::AlreadyStore {
                    path: root.to_path_buf(),
                    reason: "already a crdtdir store".into(),
                });
            }
            (marker, false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if has_history(root) {
                return Err(Error::AlreadyStore {
                        path: root.to_path_buf(),
                        reason: "holds op files but no crdtdir.store yet: wait for the sync tool to deliver it"
                            .into(),
                    });
            }
            let mut id = [0u8; 16];
            getrandom::fill(&mut id).map_err(|e| Error::io(root)(std::io::Error::other(e)))?;
            let store_id = hex::encode(id);
            // An encrypted store's key is kept before its marker exists: no moment
            // where the store is there and its key is not.
            let sealed = if options.encrypt {
                let key = crate::seal::StoreKey::random().map_err(Error::io(root))?;
                let place = if options.is_keychain() {
                    crate::local::keys::KeyPlace::Keychain
                } else {
                    crate::local::keys::KeyPlace::File
                };
                state.keep_keys(&store_id, &key, &[], place)?;
                Some(key.check(&store_id))
            } else {
                None
            };
            let marker = Marker {
                format: FORMAT_VERSION,
                store_id,
                sealed,
            };
            // Recorded before the marker appears: a crash after it lets `init` finish.
            state.begin_init(&marker.store_id)?;
            let staged = fs::stage(root, &marker.store_id, &marker::encode(&marker))
                .map_err(Error::io(root))?;
            if !fs::publish_new(staged, &marker_path).map_err(Error::io(&marker_path))? {
                state.end_init(&marker.store_id);
                return Err(Error::AlreadyStore {
                    path: root.to_path_buf(),
                    reason: "another crdtdir init made it a store at the same moment".into(),
                });
            }
            (marker, true)
        }
        Err(e) => return Err(Error::io(&marker_path)(e)),
    };
    Ok(claimed)
}

/// Removes a marker temp an interrupted init of store `store_id` left behind (nobody else
/// stages files under a new store's id).
fn remove_marker_temps(root: &Path, store_id: &str) {
    let prefix = format!("{TEMP_PREFIX}{store_id}-");
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(TEMP_SUFFIX) {
            if let Err(e) = crate::fs::remove(entry.path()) {
                tracing::warn!(error = %e, "an interrupted init's temp was not removed (harmless: not a store file)");
            }
        }
    }
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
    for dir in std::fs::read_dir(crate::folder::layout::ops(root))
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
                crate::fs::remove_or_log(f.path(), "a file of an init that failed");
            }
        }
        // Only folders this init emptied go.
        crate::fs::remove_empty_dir(&dir.path());
    }
    // A snapshot this init wrote (the history of another store), its record and temps: the
    // folder held no history before, and the source store still holds all of it.
    for f in std::fs::read_dir(crate::folder::layout::snapshots(root))
        .into_iter()
        .flatten()
        .flatten()
    {
        crate::fs::remove_or_log(f.path(), "a snapshot of an init that failed");
    }
    crate::fs::remove_or_log(
        crate::folder::layout::feature(root, crate::format::snapshot::FEATURE),
        "the feature marker of an init that failed",
    );
    // The marker this init published goes, and the feature marker of an encrypted store
    // (written by this init after its marker: nobody else writes into a store this young).
    crate::fs::remove_or_log(
        crate::folder::layout::marker(root),
        "the marker of an init that failed",
    );
    crate::fs::remove_or_log(
        crate::folder::layout::feature(root, crate::seal::FEATURE),
        "the feature marker of an init that failed",
    );
    for dir in [
        crate::folder::layout::ops(root),
        crate::folder::layout::snapshots(root),
        crate::folder::layout::features(root),
    ] {
        crate::fs::remove_empty_dir(&dir);
    }
    crate::fs::sync_dir_or_log(root);
    if let Err(e) = crate::fs::remove_local_tree(&state.store_dir(store_id)) {
        tracing::warn!(error = %e, "the local state of an init that failed was not deleted (unused: the store id is gone)");
    }
}
