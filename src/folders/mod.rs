//! Where a store's synced folder lives, behind one seam ([`Folder`]): a folder on the local
//! file system ([`Local`]), in memory ([`Memory`], for tests: it can lag listings and
//! deletions as some object stores do), or a bucket of an S3-compatible object store
//! (`S3`, cargo feature `s3`).
//!
//! Every backend keeps the one promise the store's format is built on: a file is *created*
//! under its final name whole or not at all, and only if nothing is there yet
//! ([`Folder::create`]). Each device only ever creates its own uniquely named files, so no
//! lock, lease or compare-and-swap is needed anywhere (docs/FORMAT.md).
//!
//! Paths are relative to the folder's root and `/`-separated (`ops/<actor>/<name>.op`).

use std::io;
use std::ops::Range;

pub(crate) mod local;
mod memory;
#[cfg(feature = "s3")]
mod s3;

pub use local::Local;
pub use memory::{Lag, Memory};
#[cfg(feature = "s3")]
pub use s3::S3;

/// One entry of a listing ([`Folder::list`]) or a [`Folder::stat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name in the folder listed (no `/`).
    pub name: String,
    /// A file, a folder (on an object store: a common prefix of keys), or something else
    /// (a link, a pipe: never crdtdir's).
    pub kind: Kind,
    /// The file's length in bytes, when known: an object store's listing gives it, a local
    /// listing does not (it reads no metadata: 100,000 files would cost a stat each);
    /// [`Folder::stat`] always does. `None` for a folder.
    pub len: Option<u64>,
    /// What changes when the file's content may have changed without its name changing
    /// (a sync tool completing or restoring it in place; an object overwritten): size,
    /// times and inode on a local disk, the ETag on an object store. Known as `len` is.
    pub version: Option<String>,
}

/// What an [`Entry`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A file.
    File,
    /// A folder.
    Dir,
    /// Anything else a local folder can hold (a symbolic link, a pipe, a socket).
    Other,
}

impl Entry {
    /// A folder named `name`.
    pub fn dir(name: impl Into<String>) -> Entry {
        Entry {
            name: name.into(),
            kind: Kind::Dir,
            len: None,
            version: None,
        }
    }

    /// A file named `name`, with its length and version when known.
    pub fn file(name: impl Into<String>, len: Option<u64>, version: Option<String>) -> Entry {
        Entry {
            name: name.into(),
            kind: Kind::File,
            len,
            version,
        }
    }

    /// A folder.
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// A file.
    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }
}

/// What [`Folder::create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The file is there now, with the bytes given.
    New,
    /// Something was there already under that name; it was left untouched.
    Existed,
}

/// Every access crdtdir makes to a synced folder.
///
/// Implementations must be safe to share between threads. Errors are `io::Error`s; a file
/// or folder that does not exist is `io::ErrorKind::NotFound` (except where a method says
/// otherwise).
pub trait Folder: Send + Sync + std::fmt::Debug {
    /// Where the folder is, for messages: a path, or `s3://bucket/prefix`.
    fn describe(&self) -> String;

    /// The folder's path when it is on the local file system (file events, SQLite and the
    /// quirks of sync tools are then used directly); `None` elsewhere.
    fn local_path(&self) -> Option<&std::path::Path> {
        None
    }

    /// The entries of folder `dir` (`""`: the root), sorted by name. A folder that does not
    /// exist lists as `NotFound`. An object store may list a file created moments ago late,
    /// and a file deleted moments ago for a while ([`Memory`] with a [`Lag`] does both):
    /// callers never take a listing as the last word.
    fn list(&self, dir: &str) -> io::Result<Vec<Entry>>;

    /// The whole content of file `path`. A file created by [`Folder::create`] reads at once
    /// (read-after-write), whatever the listings say.
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;

    /// Bytes `range` of file `path` (a pack entry); fewer at the end of the file.
    fn read_range(&self, path: &str, range: Range<u64>) -> io::Result<Vec<u8>>;

    /// What a listing would say of `path`, read from the file itself (no lag); `None` when
    /// nothing is there.
    fn stat(&self, path: &str) -> io::Result<Option<Entry>>;

    /// Creates file `path` with `bytes` only if nothing is there yet, atomically: readers
    /// see the whole file under its name or nothing, never part of it, and a file already
    /// there is never overwritten ([`Created::Existed`]). Durable when it returns.
    /// `owner` (a device's actor, in hex) tags whatever the backend leaves behind if the
    /// process dies half-way (a local temp file), so that only its owner cleans it up.
    fn create(&self, path: &str, bytes: &[u8], owner: &str) -> io::Result<Created>;

    /// Puts `bytes` at `path` whether or not something is there: only over a copy known to
    /// be damaged (its bytes do not match its name), with the bytes the name promises.
    /// Atomic and durable like [`Folder::create`].
    fn replace(&self, path: &str, bytes: &[u8], owner: &str) -> io::Result<()>;

    /// Removes file `path`; a file already gone is no error.
    fn remove(&self, path: &str) -> io::Result<()>;
}

/// The parent folder of `path` (`""` for a name at the root).
pub(crate) fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// `Err` unless `path` is a relative `/`-separated path of plain names (no empty, `.` or
/// `..` part, no leading `/`): a backend never reaches outside its root.
pub(crate) fn check_path(path: &str) -> io::Result<()> {
    let bad = path.is_empty()
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == ".." || part.contains('\\'));
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a path inside the folder: {path:?}"),
        ));
    }
    Ok(())
}

/// Whether the folder at `place` (a local path, or an `s3://` URL with the client from the
/// environment) holds the store `store_id` now: it has a store marker with that id. A place
/// that cannot be read says no.
pub(crate) fn holds_store(place: &str, store_id: &str) -> bool {
    let marker_of = |folder: &dyn Folder| {
        folder
            .read(crate::format::marker::MARKER)
            .ok()
            .and_then(|bytes| crate::format::marker::decode(&bytes).ok())
            .is_some_and(|m| m.store_id == store_id)
    };
    if place.starts_with("s3://") {
        #[cfg(feature = "s3")]
        return S3::open_to_read(place).is_ok_and(|s3| marker_of(&s3));
        #[cfg(not(feature = "s3"))]
        return false;
    }
    let path = std::path::Path::new(place);
    // A path that is another's name for the place (a symbolic link) is not another place.
    std::fs::canonicalize(path).is_ok_and(|p| p == path) && marker_of(&Local::new(path))
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_stay_inside_the_folder() {
        for good in ["a", "ops/aa/1.op", "snapshots/x.sqlite"] {
            assert!(super::check_path(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a/", "a//b", "../a", "a/../b", "./a", "a\\b"] {
            assert!(super::check_path(bad).is_err(), "{bad}");
        }
        assert_eq!(super::parent("ops/aa/1.op"), "ops/aa");
        assert_eq!(super::parent("top"), "");
    }
}
