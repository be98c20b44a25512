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

/// A file written and fsynced under a temp name, not yet visible under its final name; or,
/// for a folder that is not on the local disk, its bytes, which the folder creates at once
/// when the file is published ([`Staged::pending`]).
pub(crate) struct Staged {
    temp: PathBuf,
    pending: Option<Vec<u8>>,
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
        // The error that matters is the write's; a temp left behind is removed by a later
        // run of its writer (temps are named by their owner).
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(Staged {
        temp,
        pending: None,
    })
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
    create_dir_durably_as(dir, false)
}

/// [`create_dir_durably`] for local state: the folders it makes are private (0700).
pub(crate) fn create_private_dir_durably(dir: &Path) -> io::Result<()> {
    create_dir_durably_as(dir, true)
}

fn create_dir_durably_as(dir: &Path, private: bool) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably_as(parent, private)?;
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    if private {
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR);
    }
    match builder.create(dir) {
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
    /// The bytes of a file for a folder with no temp files (an object store creates a file
    /// whole or not at all): published by the folder's own create.
    pub(crate) fn pending(bytes: &[u8]) -> Staged {
        Staged {
            temp: PathBuf::new(),
            pending: Some(bytes.to_vec()),
        }
    }

    /// The bytes of a [`Staged::pending`] file (`None` for a local temp).
    pub(crate) fn into_pending(self) -> Result<Vec<u8>, Staged> {
        match self.pending {
            Some(bytes) => Ok(bytes),
            None => Err(self),
        }
    }

    /// Removes the temp file (the write was abandoned before publishing).
    pub(crate) fn discard(self) {
        if self.pending.is_some() {
            return;
        }
        // A temp left behind is removed by a later run of its writer (named by its owner).
        let _ = fs::remove_file(&self.temp);
    }
}

/// Local state (never synced) is private: it holds the plaintext of encrypted stores, keys,
/// and this device's record. Its folders are 0700 and its files 0600 (on Unix), from the
/// moment they exist.
#[cfg(unix)]
const PRIVATE_DIR: u32 = 0o700;
#[cfg(unix)]
const PRIVATE_FILE: u32 = 0o600;

/// Creates a folder of local state and its missing parents, private.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR);
    builder.create(dir)
}

/// Opens (creating, private) a file of local state for writing; `fresh`: it must not exist.
pub(crate) fn open_private(path: &Path, fresh: bool) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.write(true);
    if fresh {
        options.create_new(true);
    } else {
        options.create(true).truncate(false);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, PRIVATE_FILE);
    options.open(path)
}

/// Writes a private temp file beside `path` and renames it over `path`. The temp's name is
/// unique (`NAME.<random>.tmp`), so processes of one device that write the same file at once
/// (an app's watcher and a CLI merge on a fresh state dir) never remove or rename each
/// other's temp: the last rename wins, and every rename finds its own file.
fn replace_private_file(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let dir = parent_of(path);
    create_private_dir(dir)?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(io::Error::other)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!("{name}.{}{TEMP_SUFFIX}", hex::encode(nonce)));
    let written = (|| {
        let mut f = open_private(&temp, true)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        // The error that matters is the write's; a local temp left behind is harmless.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Atomically replaces a local (never synced) file, private: temp, fsync, rename, fsync the
/// folder.
pub(crate) fn replace_local(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_private_file(path, bytes, true)
}

/// Replaces a local file that is only a cache: temp, rename, no fsync (a reader must
/// treat it as possibly torn).
pub(crate) fn replace_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_private_file(path, bytes, false)
}

/// Makes every folder under `root` (itself included) 0700 and every file 0600 where they
/// are open to others: local state made before it was private. Best effort: an entry that
/// cannot be changed (a read-only state dir) stays as it is. Returns how many changed.
pub(crate) fn make_private(root: &Path) -> usize {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut changed = 0;
        for entry in walkdir::WalkDir::new(root)
            .into_iter()
            .filter_map(Result::ok)
        {
            let Ok(meta) = entry.metadata() else { continue };
            let mode = meta.permissions().mode();
            let want = if meta.is_dir() {
                PRIVATE_DIR
            } else if meta.is_file() {
                PRIVATE_FILE
            } else {
                continue;
            };
            if mode & 0o077 != 0 {
                let perms = fs::Permissions::from_mode((mode & !0o777) | want);
                if fs::set_permissions(entry.path(), perms).is_ok() {
                    changed += 1;
                }
            }
        }
        changed
    }
    #[cfg(not(unix))]
    {
        let _ = root;
        0
    }
}

/// True when `path` exists and is open to others (group or world bits; on Unix).
pub(crate) fn open_to_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
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

/// Removes a file that may go (`what` names it for the log). A failure is logged, never
/// fatal: every file crdtdir deletes is redundant where it stays (a folded op file, a
/// superseded pack or beat, a stale temp, a released local copy), readers tolerate it, and
/// the step that deletes it runs again.
pub(crate) fn remove_or_log(path: impl AsRef<Path>, what: &str) {
    let path = path.as_ref();
    if let Err(e) = remove(path) {
        tracing::warn!(path = %path.display(), error = %e, "{what} was not deleted (harmless where it is; tried again later)");
    }
}

/// Makes the deletions in `dir` durable. A failure is logged, never fatal: after a crash the
/// deleted files may come back, and they were redundant (see [`remove_or_log`]).
pub(crate) fn sync_dir_or_log(dir: impl AsRef<Path>) {
    let dir = dir.as_ref();
    if let Err(e) = sync_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "the deletions in a folder were not made durable (files deleted may come back after a crash; they are redundant)");
    }
}

/// Removes a folder only if it is empty (one crdtdir made and left empty); a folder with
/// anything in it stays, and that is no error.
pub(crate) fn remove_empty_dir(path: &Path) {
    // Failing (not empty, gone) is the point of asking: nothing to report.
    let _ = fs::remove_dir(path);
}

/// Removes a folder of local state and everything in it. Never used in the synced folder.
pub(crate) fn remove_local_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
