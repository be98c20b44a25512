//! Typed errors for every operation that can fail as a whole.
//!
//! A damaged or foreign file inside the store is *not* an error: the reader skips it and
//! reports it as a [`crate::Problem`]. Errors are for what stops an operation outright.

use std::io;
use std::path::{Path, PathBuf};

/// What went wrong with a store operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The folder has no `crdtdir.store` marker.
    #[error("no crdtdir store at {}", path.display())]
    NoStore {
        /// The folder that was opened.
        path: PathBuf,
    },
    /// `init` on a folder that already is (or is becoming) a store.
    #[error("{}: {reason}", path.display())]
    AlreadyStore {
        /// The folder.
        path: PathBuf,
        /// Why it counts as a store already.
        reason: String,
    },
    /// The store uses a newer format version or a feature this build does not know.
    /// Reading still works; every write is refused.
    #[error("this store needs a newer crdtdir: {reason}")]
    NeedsNewer {
        /// The version or feature that is not understood.
        reason: String,
    },
    /// A file crdtdir itself owns (the store marker, local state) is unreadable.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file this device just published did not read back as written (the disk, or a
    /// sync tool, changed it): it was removed again, and nothing else changed.
    #[error("{}: did not read back as written ({reason}); removed, nothing else changed", path.display())]
    Unverified {
        /// The file.
        path: PathBuf,
        /// What the read-back found.
        reason: String,
    },
    /// No state dir was given and there is no home directory to put one in.
    #[error("no local state dir: there is no home directory")]
    NoStateDir,
    /// One of crdtdir's own invariants broke (a bug): the operation stopped before writing
    /// anything that depends on it.
    #[error("internal error (a bug): {what}; nothing was written after it")]
    Internal {
        /// What broke.
        what: String,
    },
    /// An I/O error on a path.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path the operation touched.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A patch or path that cannot be applied to the document; nothing was written.
    #[error(transparent)]
    Patch(#[from] crate::patch::PatchError),
    /// The caller's change closure returned an error; nothing was written.
    #[error("change aborted: {0}")]
    Aborted(Box<dyn std::error::Error + Send + Sync>),
    /// The store is encrypted and this device has no key: nothing that needs the
    /// plaintext runs, and nothing is written. Import the key ([`crate::Store::import_key`],
    /// `crdtdir key import`).
    #[error("this store is encrypted and this device has no key")]
    Locked,
    /// The OS keychain did not keep or give this device's keys of the store (no keychain
    /// service running, locked, the item deleted, or a build without the `keychain`
    /// feature); nothing was changed.
    #[error("the OS keychain: {reason}")]
    Keychain {
        /// What went wrong, in one line.
        reason: String,
    },
    /// A key that is not this store's (its check does not match the store marker), or a
    /// passphrase that opens none of its key files; nothing was kept.
    #[error("refused: {reason}")]
    WrongKey {
        /// Which.
        reason: String,
    },
    /// This device is read-only ([`crate::Options::read_only`]): it writes nothing to the
    /// folder, so writes, `compact` and `repair` are refused. Nothing was changed.
    #[error("refused: this device is read-only (--read-only or CRDTDIR_READ_ONLY=1): it writes nothing to the folder")]
    ReadOnly,
    /// Compaction was refused: another device looks online, and compaction deletes files a
    /// device that is still writing may build on. Nothing was changed.
    #[error(
        "refused: another device looks online: {}; compact when it is not",
        online_list(devices)
    )]
    NotAlone {
        /// The devices that look online.
        devices: Vec<crate::Presence>,
    },
    /// Compaction was refused: the user did not confirm it. Nothing was changed.
    #[error("refused: compaction was not confirmed; nothing changed")]
    NotConfirmed,
    /// Refused because this device's view may lack history the folder once had (a
    /// compaction record without its snapshot): compacting or repairing from it could drop
    /// what only another device still has. Nothing was changed.
    #[error("refused: this view is incomplete ({path}: {reason})")]
    Incomplete {
        /// The file that shows the gap (a compaction record, a heartbeat).
        path: String,
        /// What is missing.
        reason: String,
    },
    /// Refused to keep the user's data safe, or because the request does not fit this
    /// store (see [`Refusal`]). Nothing was changed.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The folder is a copy of another folder that holds the same store (`cp -r` of a store
    /// makes two folders with one store id, and they would share this device's history and
    /// local state); nothing was changed.
    #[error("{} is a copy of the store at {} (same store id {store_id}): crdtdir will not mix two folders of one store on one device", path.display(), other.display())]
    CopiedStore {
        /// The folder that was opened.
        path: PathBuf,
        /// The folder this device already uses for that store.
        other: PathBuf,
        /// The store id both carry.
        store_id: String,
    },
    /// `forget` named no other device this one knows (by display name or actor).
    #[error("no other device here is named {name:?}")]
    UnknownDevice {
        /// The name given.
        name: String,
    },
    /// No passphrase wrap in `keys/` has this id.
    #[error("no passphrase file here has the id {id:?}")]
    UnknownPassphrase {
        /// The id given.
        id: String,
    },
    /// This device holds local state of no store with this id (or of several that start
    /// with it).
    #[error("{}", if *matches == 0 { format!("this device holds no local state of a store {id}") } else { format!("{id} starts the ids of {matches} stores: give more of it") })]
    UnknownStore {
        /// The id given.
        id: String,
        /// How many stores' ids start with it.
        matches: usize,
    },
    /// No document of the store has this id (not created, not delivered yet, or not an id).
    #[error("no document {id} in this store{}", if *deleted { " (it was deleted)" } else { "" })]
    UnknownDocument {
        /// The id given.
        id: String,
        /// The document was there and is deleted.
        deleted: bool,
    },
    /// Not a document id: 32 lowercase hex digits, or `crdtdir:` and them.
    #[error("not a document id: {given:?} (32 lowercase hex digits, or crdtdir:<id>)")]
    DocId {
        /// What was given.
        given: String,
    },
    /// A device name that cannot be used.
    #[error("invalid device name {name:?}: {reason}")]
    DeviceName {
        /// The rejected name.
        name: String,
        /// Why.
        reason: &'static str,
    },
}

/// Why a request was refused (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The store is not encrypted: it has no key to export, wrap or import.
    #[error("this store is not encrypted: it has no key")]
    NotEncrypted,
    /// A passphrase shorter than 8 characters.
    #[error("a passphrase needs at least 8 characters")]
    ShortPassphrase,
    /// No device has added a passphrase to this store (`keys/` is empty).
    #[error("no device has added a passphrase to this store (keys/ is empty)")]
    NoPassphrases,
    /// The store marker is gone or damaged: writes wait until it is back.
    #[error("{0}")]
    Marker(String),
    /// A device name that names more than one device (give its actor instead).
    #[error("{name:?} names {} devices (actors {}): name the one by its actor", actors.len(), actors.join(", "))]
    AmbiguousDevice {
        /// The name given.
        name: String,
        /// The start of each actor it names.
        actors: Vec<String>,
    },
    /// An operation of the whole store asked of one document's handle.
    #[error("{what} works on the whole store, not on one document")]
    WholeStore {
        /// The operation.
        what: &'static str,
    },
    /// The store a new one would copy its history from cannot give all of it.
    #[error("the store to copy from cannot give its whole history: {reason}")]
    Source {
        /// Why.
        reason: String,
    },
    /// The store's local state is in use: the folder this device used still holds it.
    #[error("the folder {} still holds this store: its local state is in use", folder.display())]
    InUse {
        /// The folder.
        folder: PathBuf,
    },
    /// The root document is the store's own: it is never deleted.
    #[error("the root document is the store's own: it cannot be deleted")]
    RootDocument,
    /// The local state dir is inside the synced folder: the sync tool would carry this
    /// device's writer record to every other device.
    #[error("the local state dir {} is inside the synced folder {}: every device would get this one's writer record", state.display(), folder.display())]
    StateDirInFolder {
        /// The state dir.
        state: PathBuf,
        /// The synced folder.
        folder: PathBuf,
    },
}

impl Error {
    /// The path this error is about, where there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::NoStore { path }
            | Error::AlreadyStore { path, .. }
            | Error::Corrupt { path, .. }
            | Error::Unverified { path, .. }
            | Error::Io { path, .. }
            | Error::CopiedStore { path, .. } => Some(path),
            _ => None,
        }
    }

    /// A stable, machine-readable name for the kind of error (the CLI prints it with
    /// `--json`): `no-store`, `already-store`, `needs-newer`, `corrupt`, `unverified`,
    /// `no-state-dir`, `internal`, `io`, `patch`, `aborted`, `read-only`, `locked`,
    /// `wrong-key`, `not-alone`, `not-confirmed`, `incomplete`, `refused`, `copied-store`,
    /// `device-name`, `unknown-device`, `unknown-passphrase`, `unknown-document`, `doc-id`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NoStore { .. } => "no-store",
            Error::AlreadyStore { .. } => "already-store",
            Error::NeedsNewer { .. } => "needs-newer",
            Error::Corrupt { .. } => "corrupt",
            Error::Unverified { .. } => "unverified",
            Error::NoStateDir => "no-state-dir",
            Error::Internal { .. } => "internal",
            Error::Io { .. } => "io",
            Error::Patch(_) => "patch",
            Error::Aborted(_) => "aborted",
            Error::ReadOnly => "read-only",
            Error::Locked => "locked",
            Error::WrongKey { .. } => "wrong-key",
            Error::Keychain { .. } => "keychain",
            Error::NotAlone { .. } => "not-alone",
            Error::NotConfirmed => "not-confirmed",
            Error::Incomplete { .. } => "incomplete",
            Error::Refused(_) => "refused",
            Error::CopiedStore { .. } => "copied-store",
            Error::DeviceName { .. } => "device-name",
            Error::UnknownDevice { .. } => "unknown-device",
            Error::UnknownPassphrase { .. } => "unknown-passphrase",
            Error::UnknownStore { .. } => "unknown-store",
            Error::UnknownDocument { .. } => "unknown-document",
            Error::DocId { .. } => "doc-id",
        }
    }

    /// True when the operation was refused to protect the store (not a failure of the input
    /// or of the machine): the CLI maps it to its own exit code.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::NeedsNewer { .. }
                | Error::ReadOnly
                | Error::Locked
                | Error::WrongKey { .. }
                | Error::NotAlone { .. }
                | Error::NotConfirmed
                | Error::Incomplete { .. }
                | Error::Refused(_)
                | Error::CopiedStore { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

fn online_list(devices: &[crate::Presence]) -> String {
    let names: Vec<String> = devices
        .iter()
        .map(|p| format!("{} (beat changed {} s ago)", p.name, p.seen_secs_ago))
        .collect();
    names.join(", ")
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
