//! The outbox: this device's own op files, kept byte for byte in local state until the other
//! devices have them, so that a file the folder loses (a sync tool that deletes before it
//! delivers, `rclone bisync --resync`, a folder restored from a backup, a crash between the
//! writer record and the rename) is published again under the same name instead of being
//! lost with the actor.
//!
//! ```text
//! STATE/stores/<store id>/outbox/<actor>/<seq>-<hash>.op
//!   the exact bytes of the op file ops/<actor>/<seq>-<hash>.op (docs/FORMAT.md §5), written
//!   durably (temp, fsync, rename, fsync the folder) BEFORE the writer record names its seq
//! ```
//! An entry beyond the writer record's seq of its actor was never acknowledged (a crash came
//! before the record): it is dropped, and that seq is used again by the next write. An entry
//! goes when every other device's latest heartbeat includes its change, when a snapshot this
//! device made folds it, or after [`crate::RETENTION_SECS`].

use std::path::{Path, PathBuf};

use automerge::{Change, ChangeHash};

use crate::format::names;
use crate::format::opfile;
use crate::fs;

/// One kept op file.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    pub(crate) actor: String,
    pub(crate) seq: u64,
    /// The op file name (`<seq>-<hash>.op`).
    pub(crate) name: String,
    pub(crate) file: crate::local::kept::KeptFile,
}

impl Kept {
    /// Its path in the store, `/`-separated.
    pub(crate) fn rel(&self) -> String {
        crate::folder::op_rel(&self.actor, &self.name)
    }

    /// Its bytes, if they still match the hash in its name.
    pub(crate) fn bytes(&self) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.file.path()).ok()?;
        let name = names::parse_op_name(&self.name)?;
        (names::file_hash_hex(&bytes) == name.hash).then_some(bytes)
    }

    /// Its change, if it reads (and opens, in an encrypted store).
    pub(crate) fn change(&self, store: &crate::folder::Source<'_>) -> Option<Change> {
        let bytes = self.bytes()?;
        let name = names::parse_op_name(&self.name)?;
        let context = crate::seal::op_context(name.doc, &self.actor, name.seq);
        let plain = store.open("op", &context, &bytes).ok()?;
        let envelope = opfile::decode(&plain).ok()?;
        Change::from_bytes(envelope.change).ok()
    }

    /// The Automerge hash of its change.
    pub(crate) fn change_hash(&self, store: &crate::folder::Source<'_>) -> Option<ChangeHash> {
        Some(self.change(store)?.hash())
    }

    /// Forgets it.
    pub(crate) fn release(&self) {
        self.file.release("a released outbox entry");
    }
}

/// The outbox of one store on this device.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub(crate) fn new(store_state: &Path) -> Outbox {
        Outbox {
            dir: store_state.join(crate::local::names::OUTBOX),
        }
    }

    /// Keeps the bytes of op file `name` of `actor`, durably.
    pub(crate) fn keep(&self, actor: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let dir = self.dir.join(actor);
        fs::create_private_dir_durably(&dir)?;
        fs::replace_local(&dir.join(name), bytes)
    }

    /// Every kept op file, by actor and seq.
    pub(crate) fn entries(&self) -> Vec<Kept> {
        let mut out = Vec::new();
        for (actor, file) in crate::folder::actor_files(&self.dir) {
            let name = file.file_name().to_string_lossy().into_owned();
            let is_file = file.file_type().is_ok_and(|t| t.is_file());
            if let Some(op) = names::parse_op_name(&name).filter(|_| is_file) {
                out.push(Kept {
                    actor,
                    seq: op.seq,
                    file: crate::local::kept::KeptFile::new(file.path()),
                    name,
                });
            }
        }
        out.sort_by(|a, b| (&a.actor, a.seq).cmp(&(&b.actor, b.seq)));
        out
    }
}
