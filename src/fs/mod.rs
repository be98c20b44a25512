//! The one seam through which crdtdir changes the file system: every write and every
//! deletion, in the synced folder and in local state, goes through a function here.
//!
//! Every file crdtdir publishes in the synced folder appears under its final name only when
//! complete: write a temp file in the same folder, fsync it, make it read-only, rename it into
//! place, fsync the folder. Temp names start with [`TEMP_PREFIX`], carry the writer's actor and
//! end in `.tmp`, so readers skip them and only their owner ever removes them.
//!
//! The protocols built on these calls name their steps as fault points ([`crate::fault`]), so
//! tests can crash or fail them after any step and reopen what is left.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub mod fault;

/// Every temp file crdtdir creates in the synced folder starts with this.
pub(crate) const TEMP_PREFIX: &str = ".crdtdir-";
/// ...and ends with this.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// A file written and fsynced under a temp name, not yet visible under its final name.
pub(crate) struct Staged {
    temp: PathBuf,
}

/// Writes `bytes` to a fresh temp file in `dir` tagged with `owner` (an actor in hex), fsyncs
/// it and makes it read-only. The caller then [`publish`]es it.
pub(crate) fn stage(dir: &Path, owner: &str, bytes: &[u8]) -> io::Result<Staged> {
    create_dir_durably(dir)?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(io::Error::other)?;
    let temp = dir.join(format!(
        "{TEMP_PREFIX}{owner}-{}{TEMP_SUFFIX}",
        hex::encode(nonce)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        let mut perms = f.metadata()?.permissions();
        perms.set_readonly(true);
        f.set_permissions(perms)?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(Staged { temp })
}

/// Renames a staged file to `target` and fsyncs the folder. If `target` already exists it
/// holds the same bytes (its name carries their hash), so it is left untouched and the temp
/// is removed: a published file is never modified.
pub(crate) fn publish(staged: Staged, target: &Path) -> io::Result<()> {
    if target.exists() {
        fs::remove_file(&staged.temp)?;
        return Ok(());
    }
    fs::rename(&staged.temp, target)?;
    sync_dir(parent_of(target))
}

/// Renames a staged file over `target`, whose bytes do not match its name (a torn or
/// damaged copy: not a published file), and fsyncs the folder. The staged bytes are the
/// ones the name promises.
pub(crate) fn publish_over_damaged(staged: Staged, target: &Path) -> io::Result<()> {
    fs::rename(&staged.temp, target)?;
    sync_dir(parent_of(target))
}

/// Publishes a staged file only if `target` does not exist yet (no-clobber). Returns
/// `Ok(false)` when something else is already there; the temp is then removed.
pub(crate) fn publish_new(staged: Staged, target: &Path) -> io::Result<bool> {
    // A hard link fails if the target exists, which rename does not; where the file
    // system has no hard links, fall back to a checked rename.
    let published = match fs::hard_link(&staged.temp, target) {
        Ok(()) => {
            fs::remove_file(&staged.temp)?;
            true
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(&staged.temp)?;
            false
        }
        Err(_) if !target.exists() => {
            fs::rename(&staged.temp, target)?;
            true
        }
        Err(_) => {
            fs::remove_file(&staged.temp)?;
            false
        }
    };
    sync_dir(parent_of(target))?;
    Ok(published)
}

/// Creates `dir` and any missing parents, fsyncing each parent that gained an entry, so
/// a new folder survives a power cut together with the file about to be put in it.
pub(crate) fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(parent_of(dir))
}

/// The folder `path` is in; "." for a bare relative name (whose `parent()` is "").
pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl Staged {
    /// Removes the temp file (the write was abandoned before publishing).
    pub(crate) fn discard(self) {
        let _ = fs::remove_file(&self.temp);
    }
}

/// Atomically replaces a local (never synced) file: temp, fsync, rename, fsync the folder.
pub(crate) fn replace_local(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_of(path);
    fs::create_dir_all(dir)?;
    let temp = path.with_extension("tmp");
    {
        let mut f = File::create(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&temp, path)?;
    sync_dir(dir)
}

/// [`replace_local`] for a secret: the file is readable by its owner only (on Unix), from
/// the moment it exists.
pub(crate) fn replace_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_of(path);
    fs::create_dir_all(dir)?;
    let temp = path.with_extension("tmp");
    let _ = fs::remove_file(&temp);
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&temp, path)?;
    sync_dir(dir)
}

/// Replaces a local file that is only a cache: temp, rename, no fsync (a reader must
/// treat it as possibly torn).
pub(crate) fn replace_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_of(path);
    fs::create_dir_all(dir)?;
    let temp = path.with_extension("tmp");
    fs::write(&temp, bytes)?;
    fs::rename(&temp, path)
}

/// Fsyncs a folder so a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a directory as a file; renames are durable once the file
        // itself was flushed (MoveFileEx with write-through is what std uses).
        let _ = dir;
        Ok(())
    }
}

/// Removes a file crdtdir may remove: its own temps, op files and beats, the files a
/// verified compaction folds in, local state. A file already gone is no error.
pub(crate) fn remove(path: impl AsRef<Path>) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes a folder only if it is empty (one crdtdir made and left empty); a folder with
/// anything in it stays, and that is no error.
pub(crate) fn remove_empty_dir(path: &Path) {
    let _ = fs::remove_dir(path);
}

/// Removes a folder of local state and everything in it. Never used in the synced folder.
pub(crate) fn remove_local_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
