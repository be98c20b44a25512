//! crdtdir: sync an Automerge document through any file-sync tool, with no server.
//!
//! Every change is a new immutable file that only its author ever writes
//! (`STORE/ops/<actor>/<seq>-<hash>.op`), so a sync tool (Syncthing, Dropbox, iCloud,
//! rclone, Unison…) never sees two versions of one file; every reader merges all files into
//! one Automerge document, so concurrent edits combine instead of colliding.
//!
//! ```
//! use crdtdir::{Options, PatchOp, Store};
//! use serde_json::json;
//! # let dir = tempfile::tempdir().unwrap();
//! # let (store_dir, laptop_state, phone_state) =
//! #     (dir.path().join("todo"), dir.path().join("laptop"), dir.path().join("phone"));
//! // Two devices share one folder (here on one disk; normally through a sync tool).
//! let laptop = Store::init(&store_dir, Options::new().state_dir(&laptop_state).device("laptop"),
//!                          Some(&json!({"items": []})))?;
//! let phone = Store::open(&store_dir, Options::new().state_dir(&phone_state).device("phone"))?;
//! laptop.apply_patch(&[PatchOp::insert("/items/-", json!("milk"))])?;
//! phone.apply_patch(&crdtdir::parse_patch(r#"[{"op":"add","path":"/items/-","value":"eggs"}]"#)?)?;
//! let items = phone.read()?.get("/items")?;
//! assert_eq!(items.as_array().unwrap().len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Writing, three ways, each one change and one op file:
//! - [`Store::apply_patch`]: a JSON Patch ([`PatchOp`]: RFC 6902 plus splice, increment, set,
//!   insert).
//! - [`Store::change`]: edit an Automerge transaction; the closure's return value comes back
//!   in [`WriteOutcome::value`], and a plain `Ok(())` compiles ([`ChangeResult`]).
//!   [`Store::change_with_message`] keeps a commit message that [`Store::history`] shows.
//! - Typed values over `serde`: [`Store::update`] (read, edit, write the edit),
//!   [`Store::put_from`] (the edit of a copy held for a while), [`Store::put`] (make it
//!   equal), [`Store::insert`], [`Store::push`], [`Store::remove`]; read with
//!   [`View::get_as`]. A `String` is an atomic scalar, a [`Text`] collaborative text.
//!   (The README has an autosurgeon recipe too.)
//!
//! Every whole-value write changes only what differs, so concurrent edits of other parts
//! survive: lists are compared by their longest common subsequence (records by their `id`,
//! [`Options::list_key`]), never by position; texts by splices; counters by the difference.
//! The rules are on [`PatchOp`].
//!
//! Reading: [`Store::read`] gives a [`View`] (the document, its JSON, what the merge
//! found); [`Store::watch`] follows the folder as files arrive, as [`Event`]s whose
//! [`JsonPatch`]es an app applies to its copy ([`JsonPatch::apply_all`]); [`View::doc`]`.save()`
//! is the document in Automerge's own format (`crdtdir export`).
//!
//! Keeping the folder small: each device folds its own op files into packs as it writes
//! (every [`DEFAULT_PACK_SIZE`] changes, [`Options::pack_size`]; [`Store::pack`] by hand),
//! with no need for the other devices to be offline; [`Store::compact`] folds everything into
//! one snapshot when this device is alone.
//!
//! Threat model: crdtdir protects a user's data against accidents — sync tools, crashes,
//! full disks, cloned disks, bit rot — not against a hostile device with write access to the
//! folder. Damaged and foreign files are skipped and reported ([`MergeReport`]), never
//! deleted, and never make a merge fail.
//!
//! # Concepts, and where each lives
//!
//! The on-disk format is `docs/FORMAT.md`; each file of `src/format/` opens with its layout.
//!
//! | concept | what it is | module |
//! |---|---|---|
//! | store marker, features | `crdtdir.store` (id, format version); `features/` names what a reader must understand | `format/marker.rs` |
//! | op file | one Automerge change, immutable, named `<seq>-<hash>.op` under its actor | `format/opfile.rs`, `format/names.rs` |
//! | pack | many op files of one actor in one file, each entry byte for byte | `format/pack.rs`, `pack.rs`, `store/pack.rs` |
//! | snapshot + record | a compaction's SQLite file and the note naming what it folds | `format/snapshot.rs`, `format/record.rs`, `compact/`, `store/compact.rs` |
//! | beat | a device's heartbeat: alive, and the heads it has merged | `format/beat.rs`, `presence/`, `store/presence.rs` |
//! | sealed file | an op file, pack or snapshot encrypted under the store key | `seal.rs`, `store/keys.rs` |
//! | the folder | listing (`Scan`), reading (`Source`), sync-tool quirks | `folder/` |
//! | writer record | this device's actor and last seq, never reused | `local/writer.rs`, `store/write.rs` |
//! | cache | the merged document and view, so a merge costs what is new | `local/cache.rs`, `merged.rs` |
//! | outbox | this device's op files until every device has them | `local/outbox.rs` |
//! | retention copy | the files a compaction deleted, kept until verified elsewhere | `local/retention.rs` |
//! | merge | scan → load → resolve forks → apply, streaming or careful | `merge/` (`rebase.rs`: forks) |
//! | document | the one way to make and load an Automerge document | `doc.rs` |
//! | patch | JSON Patch in, minimal Automerge edits out; JSON Pointer patches back | `patch/` |
//! | watcher | merges what arrives, as events | `watch/`, `store/watch.rs` |
//! | repo, document | a folder of many documents; each a `Store` handle, its id, deletion | `repo/`, `store/documents.rs` |
//! | document name | a document's op files, snapshots and pack rows carry it (a keyed hash of its id when encrypted) | `format/names.rs`, `seal.rs` |
//! | documents' pack | a device's changes to many documents in one file; which documents each holds | `store/doc_packs.rs`, `folder/docs_index.rs` |
//! | catalog | what `docs` lists, without opening documents whose files did not change | `repo/catalog.rs`, `folder/documents.rs` |
//! | files on disk | temp + fsync + rename, and the named crash points | `fs/` |
//! | where the folder lives | one trait for a folder on disk, in memory or in an S3 bucket ([`folders`]); a store's writes through it | `folders/`, `store/publish.rs` |
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]

mod compact;
mod doc;
mod error;
mod folder;
pub mod folders;
mod format;
mod fs;
#[doc(hidden)]
pub use fs::fault;
mod local;
mod merge;
mod merged;
#[cfg(feature = "async")]
pub mod nonblocking;
mod pack;
mod patch;
mod presence;
mod render;
mod repo;
mod report;
mod seal;
mod store;
mod watch;

pub use automerge;
pub use compact::{CompactOutcome, CompactPlan, Progress, Repaired};
pub use error::{Error, Refusal, Result};
pub use folder::layout::find_store;
pub use format::marker::FORMAT_VERSION;
pub use local::forget::{forget_local, local_store, local_stores, LocalStore};
pub use local::keys::KeyPlace;
pub use local::retention::RETENTION_SECS;
pub use local::{DEVICE_ENV, STATE_DIR_ENV};
pub use pack::{
    pack_folder_actor, pack_folder_docs_actor, PackOutcome, PackPlan, DEFAULT_PACK_SIZE,
    PACK_GRACE_SECS, PACK_SIZE_ENV, REPACK_FAN,
};
pub use patch::typed::Text;
pub use patch::{parse_patch, PatchError, PatchOp};
pub use presence::{Forgotten, Presence, DEFAULT_THRESHOLD_SECS};
pub use repo::{DocId, DocInfo, Repo, DELETED};
pub use report::{
    ChangeInfo, CheckReport, Fork, MergeReport, Problem, ProblemKind, Rebased, Waiting,
};
#[doc(hidden)]
pub use seal::seal_op_file;
pub use seal::StoreKey;
pub use store::checkpoint::{CheckpointOutcome, CHECKPOINT_EVERY_ENV, DEFAULT_CHECKPOINT_EVERY};
pub use store::keys::Passphrase;
pub use store::{
    ChangeResult, DeviceInfo, FileCounts, Notice, Options, Status, Store, View, WriteOutcome,
    Written, KEYCHAIN_ENV, READ_ONLY_ENV,
};
pub use watch::{
    DocEvent, Event, EventChange, JsonPatch, Stopper, WatchHandle, WatchOptions, Watcher,
};

/// The Rust examples of README.md, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
