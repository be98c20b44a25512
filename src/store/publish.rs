//! Publishing and removing files of the synced folder through its [`crate::folders::Folder`]:
//! on the local disk exactly as [`crate::fs`] does (a temp file fsynced, then linked or
//! renamed into place, the folder fsynced), elsewhere by the folder's own atomic create.
//! The protocols keep their steps (and fault points) whichever the folder is: staging a file
//! for a folder with no temp files only holds its bytes.

use std::io;
use std::path::Path;

use super::Store;
use crate::folders::Created;
use crate::format::beat::TOUCHED;
use crate::format::names::OPS_DIR;
use crate::format::pack::PACKS_DIR;
use crate::format::snapshot::{CHECKPOINTS_DIR, SNAPSHOTS_DIR};
use crate::fs::{self, Staged};

impl Store {
    /// `path` (under the store's root) as a path inside the folder.
    fn rel_of(&self, path: &Path) -> io::Result<String> {
        let rel = path.strip_prefix(&self.inner.root).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not in the store's folder", path.display()),
            )
        })?;
        let parts: Option<Vec<&str>> = rel.iter().map(|c| c.to_str()).collect();
        parts
            .map(|p| p.join("/"))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a path that is not UTF-8"))
    }

    /// Whether a file is at `rel` in the folder.
    pub(crate) fn has_file(&self, rel: &str) -> bool {
        self.inner
            .folder
            .stat(rel)
            .is_ok_and(|e| e.is_some_and(|e| e.is_file()))
    }

    /// Whether the folder is on the local disk (temps, fsync and file events apply).
    pub(crate) fn is_local(&self) -> bool {
        self.inner.folder.local_path().is_some()
    }

    /// [`fs::stage`] in folder `dir` of the store: a temp file on the local disk, the bytes
    /// alone for a folder elsewhere.
    pub(crate) fn stage(&self, dir: &Path, owner: &str, bytes: &[u8]) -> io::Result<Staged> {
        if self.is_local() {
            fs::stage(dir, owner, bytes)
        } else {
            Ok(Staged::pending(bytes))
        }
    }

    /// [`fs::publish`]: a file already there holds the same bytes (its name carries their
    /// hash) and stays untouched.
    pub(crate) fn publish(&self, staged: Staged, target: &Path) -> io::Result<()> {
        match staged.into_pending() {
            Ok(bytes) => self.create(target, &bytes).map(drop),
            Err(staged) => fs::publish(staged, target),
        }
    }

    /// The folder's atomic create of `bytes` at `target` (under the store's root). A new
    /// file that brings changes (an op file, a pack, a snapshot or a checkpoint) then
    /// touches the folder's change hint.
    fn create(&self, target: &Path, bytes: &[u8]) -> io::Result<Created> {
        let rel = self.rel_of(target)?;
        let created = self
            .inner
            .folder
            .create(&rel, bytes, &self.inner.marker.store_id)?;
        let news = [OPS_DIR, PACKS_DIR, SNAPSHOTS_DIR, CHECKPOINTS_DIR]
            .iter()
            .any(|dir| rel.strip_prefix(dir).is_some_and(|r| r.starts_with('/')));
        if created == Created::New && news {
            self.touch();
        }
        Ok(created)
    }

    /// Writes new random bytes over the folder's change hint ([`TOUCHED`]): devices that
    /// poll the folder see its version change and list it. A hint that is not written
    /// costs them a wait for their next full listing, never a change.
    pub(crate) fn touch(&self) {
        let mut nonce = [0u8; 16];
        let touched = getrandom::fill(&mut nonce)
            .map_err(io::Error::other)
            .and_then(|()| {
                let body = format!("{}\n", hex::encode(nonce));
                self.inner
                    .folder
                    .replace(TOUCHED, body.as_bytes(), &self.inner.marker.store_id)
            });
        if let Err(e) = touched {
            tracing::debug!(error = %e, "the folder's change hint was not written");
        }
    }

    /// The version of the folder's change hint ([`TOUCHED`]); `None` while no device wrote
    /// one.
    pub(crate) fn touched(&self) -> io::Result<Option<String>> {
        Ok(self.inner.folder.stat(TOUCHED)?.and_then(|e| e.version))
    }

    /// [`fs::publish_new`]: `false` when something was there already (left untouched).
    pub(crate) fn publish_new(&self, staged: Staged, target: &Path) -> io::Result<bool> {
        match staged.into_pending() {
            Ok(bytes) => Ok(self.create(target, &bytes)? == Created::New),
            Err(staged) => fs::publish_new(staged, target),
        }
    }

    /// [`fs::publish_over_damaged`]: the bytes its name promises, over a damaged copy.
    pub(crate) fn publish_over_damaged(&self, staged: Staged, target: &Path) -> io::Result<()> {
        match staged.into_pending() {
            Ok(bytes) => {
                let rel = self.rel_of(target)?;
                let owner = &self.inner.marker.store_id;
                self.inner.folder.replace(&rel, &bytes, owner)
            }
            Err(staged) => fs::publish_over_damaged(staged, target),
        }
    }

    /// [`fs::remove`] of a file of the folder: a file already gone is no error.
    pub(crate) fn remove_file(&self, path: &Path) -> io::Result<()> {
        if self.is_local() {
            fs::remove(path)
        } else {
            self.inner.folder.remove(&self.rel_of(path)?)
        }
    }

    /// [`fs::remove_or_log`] of a file of the folder (`what` names it for the log).
    pub(crate) fn remove_or_log(&self, path: impl AsRef<Path>, what: &str) {
        let path = path.as_ref();
        if let Err(e) = self.remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "{what} was not deleted (harmless where it is; tried again later)");
        }
    }

    /// [`fs::sync_dir_or_log`] of a folder of the store: nothing to do for a folder that is
    /// not on the local disk (its removals are durable when they return).
    pub(crate) fn sync_dir_or_log(&self, dir: impl AsRef<Path>) {
        if self.is_local() {
            fs::sync_dir_or_log(dir);
        }
    }

    /// [`fs::sync_dir`] of a folder of the store (nothing to do off the local disk).
    pub(crate) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.is_local() {
            fs::sync_dir(dir)
        } else {
            Ok(())
        }
    }
}
