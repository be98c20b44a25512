//! Local, per-device state. Never inside the synced folder. Every file name in it is in
//! one table: `names.rs`.

pub(crate) mod beats;
pub(crate) mod cache;
pub(crate) mod forget;
pub(crate) mod kept;
pub(crate) mod keychain;
pub(crate) mod keys;
pub(crate) mod names;
pub(crate) mod outbox;
pub(crate) mod retention;
pub(crate) mod writer;

pub(crate) use self::writer::WriterRecord;

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fs;

/// Environment variable naming the state directory.
pub const STATE_DIR_ENV: &str = "CRDTDIR_STATE_DIR";
/// Environment variable naming this device.
pub const DEVICE_ENV: &str = "CRDTDIR_DEVICE";

/// The local state directory of one device.
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    root: PathBuf,
}

/// The exclusive writer lock of one store on this device; released on drop.
pub(crate) struct WriterLock {
    _file: File,
}

impl StateDir {
    /// Where local state is.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `explicit`, else `CRDTDIR_STATE_DIR`, else the OS data directory.
    pub(crate) fn resolve(explicit: Option<&Path>) -> Result<StateDir> {
        let root = match explicit {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os(STATE_DIR_ENV) {
                Some(p) if !p.is_empty() => PathBuf::from(p),
                _ => directories::ProjectDirs::from("", "", "crdtdir")
                    .map(|d| d.data_local_dir().to_path_buf())
                    .ok_or(Error::NoStateDir)?,
            },
        };
        Ok(StateDir { root })
    }

    /// Refuses a state dir inside the store's folder: the sync tool would carry this
    /// device's writer record, outbox and lock to every other device, and each would then
    /// write as this one.
    pub(crate) fn check_outside(&self, folder: &Path) -> Result<()> {
        let state = resolved(&self.root);
        let folder = resolved(folder);
        if state.starts_with(&folder) {
            return Err(Error::Refused(crate::error::Refusal::StateDirInFolder {
                state,
                folder,
            }));
        }
        Ok(())
    }

    /// Local state is private (0700 folders, 0600 files: it holds an encrypted store's
    /// plaintext and key). A state dir made before that is made private now: its `stores`
    /// tree and `device` file, and the state dir itself when it holds nothing else (a
    /// `--state-dir` that is some other folder keeps its own mode).
    pub(crate) fn make_private(&self) {
        let stores = self.root.join(names::STORES);
        let device = self.root.join(names::DEVICE);
        if fs::open_to_others(&stores) || fs::open_to_others(&device) {
            fs::make_private(&stores);
            fs::make_private(&device);
        }
        let only_ours = std::fs::read_dir(&self.root).is_ok_and(|entries| {
            entries.flatten().all(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name == "stores"
                    || name == "device"
                    || ((name.starts_with("device.") || name.starts_with("probe."))
                        && name.ends_with(".tmp"))
            })
        });
        if only_ours && fs::open_to_others(&self.root) {
            fs::make_private(&self.root);
        }
    }

    /// False when nothing can be written in the state dir (a read-only mount, no space, no
    /// permission): reads go on from what is there, writes will fail at the lock.
    pub(crate) fn writable(&self) -> bool {
        if fs::create_private_dir(&self.root).is_err() {
            return false;
        }
        let mut nonce = [0u8; 8];
        if getrandom::fill(&mut nonce).is_err() {
            return false;
        }
        let probe = self.root.join(format!("probe.{}.tmp", hex::encode(nonce)));
        let made = fs::open_private(&probe, true).is_ok();
        crate::fs::remove_or_log(&probe, "a write probe in the state dir");
        made
    }

    pub(crate) fn store_dir(&self, store_id: &str) -> PathBuf {
        self.root.join(names::STORES).join(store_id)
    }

    /// Refuses a bad explicit or `CRDTDIR_DEVICE` name, writing nothing.
    pub(crate) fn check_device_name(&self, explicit: Option<&str>) -> Result<()> {
        if let Some(name) = explicit {
            check_device_name(name)?;
        } else if let Ok(name) = std::env::var(DEVICE_ENV) {
            if !name.is_empty() {
                check_device_name(&name)?;
            }
        }
        Ok(())
    }

    /// This device's display name: `explicit`, else `CRDTDIR_DEVICE`, else the name kept in
    /// the state (made once from the host name and a few random characters).
    pub(crate) fn device_name(&self, explicit: Option<&str>) -> Result<String> {
        if let Some(name) = explicit {
            return check_device_name(name);
        }
        if let Ok(name) = std::env::var(DEVICE_ENV) {
            if !name.is_empty() {
                return check_device_name(&name);
            }
        }
        let path = self.root.join(names::DEVICE);
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(name) = check_device_name(text.trim()) {
                return Ok(name);
            }
        }
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let host: String = host
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-')
            .take(40)
            .collect();
        let mut nonce = [0u8; 2];
        getrandom::fill(&mut nonce).map_err(|e| Error::io(&path)(std::io::Error::other(e)))?;
        let name = format!(
            "{}-{}",
            if host.is_empty() { "device" } else { &host },
            hex::encode(nonce)
        );
        fs::replace_local(&path, format!("{name}\n").as_bytes()).map_err(Error::io(&path))?;
        Ok(name)
    }

    /// Claims `folder` as the one folder of `store_id` on this device. Refuses a second
    /// folder with the same store id while the first still holds that store (a `cp -r` of
    /// the folder); a store whose folder moved is simply claimed at its new place.
    pub(crate) fn claim_folder(&self, store_id: &str, folder: &Path) -> Result<()> {
        let here = std::fs::canonicalize(folder).map_err(Error::io(folder))?;
        self.claim(store_id, &here.to_string_lossy())
    }

    /// [`StateDir::claim_folder`] of the folder at `place`: a canonical local path, or a
    /// folder elsewhere as it describes itself (`s3://bucket/prefix`). The place claimed
    /// before may be of either kind: a copy of a bucket's store on a disk, or of a disk's
    /// store in a bucket, is a second folder all the same.
    pub(crate) fn claim(&self, store_id: &str, place: &str) -> Result<()> {
        let path = self.store_dir(store_id).join(names::FOLDER);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let other = text.trim_end_matches('\n');
            if other == place {
                return Ok(());
            }
            if crate::folders::holds_store(other, store_id) {
                return Err(Error::CopiedStore {
                    path: PathBuf::from(place),
                    other: PathBuf::from(other),
                    store_id: store_id.to_string(),
                });
            }
        }
        let text = format!("{place}\n");
        fs::replace_local(&path, text.as_bytes()).map_err(Error::io(&path))
    }

    /// Keeps a copy of the store's marker bytes (once: a marker is written once and never
    /// changes), so that a marker the folder loses can be written again exactly as it was.
    pub(crate) fn keep_marker(&self, store_id: &str, bytes: &[u8]) -> Result<()> {
        let path = self.store_dir(store_id).join(names::MARKER);
        if path.exists() {
            return Ok(());
        }
        fs::replace_local(&path, bytes).map_err(Error::io(&path))
    }

    /// The kept copy of the store's marker bytes.
    pub(crate) fn kept_marker(&self, store_id: &str) -> Option<Vec<u8>> {
        std::fs::read(self.store_dir(store_id).join(names::MARKER)).ok()
    }

    /// The store this device last used at `folder`, if any (from the `folder` records).
    pub(crate) fn store_for_folder(&self, folder: &Path) -> Option<String> {
        let here = std::fs::canonicalize(folder).ok()?;
        std::fs::read_dir(self.root.join(names::STORES))
            .ok()?
            .flatten()
            .find(|store| {
                std::fs::read_to_string(store.path().join(names::FOLDER))
                    .is_ok_and(|text| Path::new(text.trim_end_matches('\n')) == here)
            })
            .map(|store| store.file_name().to_string_lossy().into_owned())
    }

    /// Notes, durably, that this device is making store `store_id` (before its marker appears).
    pub(crate) fn begin_init(&self, store_id: &str) -> Result<()> {
        let path = self.store_dir(store_id).join(names::INIT_PENDING);
        fs::replace_local(&path, b"").map_err(Error::io(&path))
    }

    /// True while an `init` of `store_id` by this device has not finished.
    pub(crate) fn init_pending(&self, store_id: &str) -> bool {
        self.store_dir(store_id).join(names::INIT_PENDING).is_file()
    }

    /// The `init` of `store_id` finished.
    pub(crate) fn end_init(&self, store_id: &str) {
        crate::fs::remove_or_log(
            self.store_dir(store_id).join(names::INIT_PENDING),
            "the note of an init in progress",
        );
    }

    /// Takes the writer lock of `store_id`, waiting for another writer of this state to finish.
    pub(crate) fn lock(&self, store_id: &str) -> Result<WriterLock> {
        let dir = self.store_dir(store_id);
        fs::create_private_dir(&dir).map_err(Error::io(&dir))?;
        let path = dir.join(names::LOCK);
        let file = fs::open_private(&path, false).map_err(Error::io(&path))?;
        file.lock().map_err(Error::io(&path))?;
        Ok(WriterLock { _file: file })
    }

    /// The writer record, or `None` when there is none or it cannot be trusted (torn, foreign,
    /// unknown version): the caller then proves nothing and must use a fresh actor.
    pub(crate) fn read_record(&self, store_id: &str) -> Option<WriterRecord> {
        let bytes = std::fs::read(self.store_dir(store_id).join(names::WRITER)).ok()?;
        writer::decode(&bytes)
    }
}

/// This device's local state for one document of a store: a [`StateDir`] bound to a store
/// id and a document, so that nothing above has to pass them along. What is the store's
/// (its folder, marker, key, writer lock) is under `STATE/stores/<store id>/`; what is the
/// document's (writer record, cache, outbox…) there too for the root document, and under
/// `STATE/stores/<store id>/docs/<doc id>/` for any other.
#[derive(Debug, Clone)]
pub(crate) struct StoreState {
    dir: StateDir,
    store_id: String,
    doc: Option<String>,
}

impl std::ops::Deref for StoreState {
    type Target = StateDir;

    /// What does not depend on the store: the device's name, the state dir's checks.
    fn deref(&self) -> &StateDir {
        &self.dir
    }
}

impl StoreState {
    pub(crate) fn new(dir: StateDir, store_id: &str, doc: Option<&str>) -> StoreState {
        StoreState {
            dir,
            store_id: store_id.to_string(),
            doc: doc.map(str::to_string),
        }
    }

    /// The state dir.
    pub(crate) fn dir(&self) -> &StateDir {
        &self.dir
    }

    /// The same store's state for document `doc` (`None`: the root document).
    pub(crate) fn for_doc(&self, doc: Option<&str>) -> StoreState {
        StoreState::new(self.dir.clone(), &self.store_id, doc)
    }

    /// The document's state: `STATE/stores/<store id>/` for the root document,
    /// `STATE/stores/<store id>/docs/<doc id>/` for any other.
    pub(crate) fn path(&self) -> PathBuf {
        let store = self.dir.store_dir(&self.store_id);
        match &self.doc {
            None => store,
            Some(doc) => store.join(names::DOCS).join(doc),
        }
    }

    /// The writer lock of this store on this device (one for all its documents: their
    /// changes share this device's actor folders, and their temps).
    pub(crate) fn lock(&self) -> Result<WriterLock> {
        self.dir.lock(&self.store_id)
    }

    /// The writer record of the document, if it reads.
    pub(crate) fn read_record(&self) -> Option<WriterRecord> {
        let bytes = std::fs::read(self.path().join(names::WRITER)).ok()?;
        writer::decode(&bytes)
    }

    /// The writer record of the store's root document, if it reads.
    pub(crate) fn root_record(&self) -> Option<WriterRecord> {
        self.dir.read_record(&self.store_id)
    }

    /// Durably replaces the document's writer record.
    pub(crate) fn write_record(&self, record: &WriterRecord) -> Result<()> {
        let dir = self.path();
        if self.doc.is_some() {
            fs::create_private_dir_durably(&dir).map_err(Error::io(&dir))?;
        }
        let path = dir.join(names::WRITER);
        fs::replace_local(&path, &writer::encode(record)).map_err(Error::io(&path))
    }

    /// See [`StateDir::keep_keys`].
    pub(crate) fn keep_keys(
        &self,
        key: &crate::seal::StoreKey,
        older: &[crate::seal::StoreKey],
        place: keys::KeyPlace,
    ) -> Result<()> {
        self.dir.keep_keys(&self.store_id, key, older, place)
    }

    /// The marker as this device last read it.
    pub(crate) fn kept_marker(&self) -> Option<Vec<u8>> {
        self.dir.kept_marker(&self.store_id)
    }
}

fn check_device_name(name: &str) -> Result<String> {
    let bad = |reason| Error::DeviceName {
        name: name.to_string(),
        reason,
    };
    if name.trim().is_empty() {
        return Err(bad("it is empty"));
    }
    if name.chars().count() > 64 {
        return Err(bad("it is longer than 64 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("it contains control characters"));
    }
    Ok(name.to_string())
}

/// `path` made absolute through its longest existing ancestor (symlinks resolved), the
/// rest appended as written: it works for folders that do not exist yet.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // `a/../b` of a folder that does not exist yet: its `..` is taken as written.
    let mut normal = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    let absolute = normal;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn resolved_takes_parent_components_of_missing_folders_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir(&store).unwrap();
        assert_eq!(
            super::resolved(&store.join("../state/x")),
            real.join("state/x")
        );
        assert!(!super::resolved(&store.join("../state")).starts_with(real.join("store")));
        assert_eq!(
            super::resolved(&store.join("a/./b")),
            real.join("store/a/b")
        );
    }

    use super::*;

    #[test]
    fn device_names_are_checked() {
        assert!(check_device_name("laptop").is_ok());
        assert!(check_device_name("").is_err());
        assert!(check_device_name("a\nb").is_err());
        assert!(check_device_name(&"x".repeat(65)).is_err());
    }
}
