//! A synced folder on the local file system: what every sync tool (Syncthing, Dropbox,
//! rclone, Unison…) gives. A created file is written under a temp name, fsynced, made
//! read-only and linked into place, and the folder fsynced ([`crate::fs`]).

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{check_path, parent, Created, Entry, Folder, Kind};

/// A folder on the local file system.
#[derive(Debug, Clone)]
pub struct Local {
    root: PathBuf,
}

impl Local {
    /// The folder at `root` (it need not exist yet: files created make their folders).
    pub fn new(root: impl Into<PathBuf>) -> Local {
        Local { root: root.into() }
    }

    fn path(&self, rel: &str) -> io::Result<PathBuf> {
        check_path(rel)?;
        Ok(self.root.join(rel))
    }

    fn dir(&self, rel: &str) -> io::Result<PathBuf> {
        if rel.is_empty() {
            Ok(self.root.clone())
        } else {
            self.path(rel)
        }
    }
}

/// The [`Entry`] of `name` with its metadata.
fn entry(name: String, meta: &std::fs::Metadata) -> Entry {
    match kind(meta.file_type()) {
        Kind::File => Entry::file(name, Some(meta.len()), Some(version(meta))),
        kind => Entry {
            kind,
            ..Entry::dir(name)
        },
    }
}

fn kind(t: std::fs::FileType) -> Kind {
    if t.is_dir() {
        Kind::Dir
    } else if t.is_file() {
        Kind::File
    } else {
        Kind::Other
    }
}

/// Size, modification and status-change times and inode: a sync tool that completes or
/// restores a file in place changes at least one of them.
pub(crate) fn version(meta: &std::fs::Metadata) -> String {
    let nanos = |t: std::io::Result<std::time::SystemTime>| {
        t.ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos())
    };
    #[cfg(unix)]
    let (ctime, inode) = {
        use std::os::unix::fs::MetadataExt;
        (
            i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            meta.ino(),
        )
    };
    #[cfg(not(unix))]
    let (ctime, inode) = (nanos(meta.created()) as i128, 0u64);
    format!("{} {} {ctime} {inode}", meta.len(), nanos(meta.modified()))
}

impl Folder for Local {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn local_path(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn list(&self, dir: &str) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.dir(dir)?)? {
            let e = e?;
            // A name that is not UTF-8 is none crdtdir writes: listed as near as it can be,
            // so that readers report it. The kind comes with the listing (lengths and
            // versions would cost a stat each); one that does not read is no file.
            out.push(Entry {
                kind: e.file_type().map_or(Kind::Other, kind),
                ..Entry::dir(e.file_name().to_string_lossy())
            });
        }
        // Names in one folder are unique.
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.path(path)?)
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek};
        let mut file = std::fs::File::open(self.path(path)?)?;
        file.seek(io::SeekFrom::Start(range.start))?;
        let mut out = Vec::new();
        file.take(range.end.saturating_sub(range.start))
            .read_to_end(&mut out)?;
        Ok(out)
    }

    fn stat(&self, path: &str) -> io::Result<Option<Entry>> {
        let full = self.path(path)?;
        match std::fs::metadata(&full) {
            Ok(meta) => Ok(Some(entry(
                path.rsplit('/').next().unwrap_or(path).to_string(),
                &meta,
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create(&self, path: &str, bytes: &[u8], owner: &str) -> io::Result<Created> {
        let target = self.path(path)?;
        let staged = crate::fs::stage(&self.dir(parent(path))?, owner, bytes)?;
        Ok(if crate::fs::publish_new(staged, &target)? {
            Created::New
        } else {
            Created::Existed
        })
    }

    fn replace(&self, path: &str, bytes: &[u8], owner: &str) -> io::Result<()> {
        let target = self.path(path)?;
        let staged = crate::fs::stage(&self.dir(parent(path))?, owner, bytes)?;
        crate::fs::publish_over_damaged(staged, &target)
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        crate::fs::remove(self.path(path)?)
    }
}
