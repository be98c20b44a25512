//! What this device keeps of its own files until no device needs them — outbox entries
//! (`outbox.rs`), kept pack copies (`crate::pack`), retention copies (`retention.rs`): one
//! file type with one age, and one release rule.

use std::path::{Path, PathBuf};

use crate::local::retention::RETENTION_SECS;

/// A kept copy on the local disk.
#[derive(Debug, Clone)]
pub(crate) struct KeptFile {
    path: PathBuf,
}

impl KeptFile {
    pub(crate) fn new(path: PathBuf) -> KeptFile {
        KeptFile { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Seconds since it was kept (its modification time): 0 when unknown, or when the clock
    /// says it is from the future.
    pub(crate) fn age_secs(&self) -> u64 {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or(0, |d| d.as_secs())
    }

    /// True while it is younger than [`RETENTION_SECS`].
    pub(crate) fn within_retention(&self) -> bool {
        i64::try_from(self.age_secs()).is_ok_and(|age| age < RETENTION_SECS)
    }

    /// Deletes it (`what` names it for the log).
    pub(crate) fn release(&self, what: &str) {
        crate::fs::remove_or_log(&self.path, what);
    }
}

/// Why a kept copy may go.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Release {
    /// Every other device acknowledged all it holds (their beats say so).
    pub(crate) acknowledged: bool,
    /// Something this device made holds all of it (a snapshot that folds it, a later copy).
    pub(crate) held_elsewhere: bool,
    /// The folder holds it, readably.
    pub(crate) in_folder: bool,
    /// It may age out: an outbox entry or a kept pack may, a retention copy never does.
    pub(crate) may_age: bool,
}

impl Release {
    /// The one release rule: a copy goes when every other device acknowledged what it holds,
    /// when something this device made holds all of it, or — for copies that may age — when
    /// it is older than [`RETENTION_SECS`] while the folder holds it. Age alone never
    /// releases a copy, whatever the clock did.
    pub(crate) fn allows(self, kept: &KeptFile) -> bool {
        self.acknowledged
            || self.held_elsewhere
            || (self.may_age && self.in_folder && !kept.within_retention())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Age alone never releases a copy; an old copy the folder holds goes only if it may
    /// age (never a retention copy); acknowledgement or another holder always lets it go.
    #[test]
    fn the_release_rule() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy");
        std::fs::write(&path, b"x").unwrap();
        let young = KeptFile::new(path.clone());
        let old_path = dir.path().join("old");
        let f = std::fs::File::create(&old_path).unwrap();
        let long_ago = std::time::SystemTime::now()
            - std::time::Duration::from_secs(RETENTION_SECS as u64 + 3600);
        f.set_modified(long_ago).unwrap();
        let old = KeptFile::new(old_path);
        assert!(young.within_retention() && !old.within_retention());
        let aging = Release {
            in_folder: true,
            may_age: true,
            ..Release::default()
        };
        assert!(aging.allows(&old));
        assert!(!aging.allows(&young));
        assert!(
            !Release {
                in_folder: false,
                ..aging
            }
            .allows(&old),
            "age alone"
        );
        assert!(
            !Release {
                may_age: false,
                ..aging
            }
            .allows(&old),
            "a copy that never ages"
        );
        for why in [
            Release {
                acknowledged: true,
                ..Release::default()
            },
            Release {
                held_elsewhere: true,
                ..Release::default()
            },
        ] {
            assert!(why.allows(&young));
        }
    }
}
