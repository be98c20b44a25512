//! Writing: the one write path (lock, merge, a provable actor, the change, persist), and
//! what keeps this device's changes in the folder (the outbox, republishing, published
//! rebases).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use automerge::transaction::{CommitOptions, Transaction};
use automerge::{ActorId, Automerge, ChangeHash, ReadDoc};
use serde::Serialize;

use super::now;
use crate::error::{Error, Result};
use crate::fault;
use crate::folder::scan;
use crate::format::names;
use crate::format::opfile;
use crate::fs::{self, TEMP_PREFIX, TEMP_SUFFIX};
use crate::local::outbox::Outbox;
use crate::local::WriterRecord;
use crate::merge;
use crate::merged::MergedState;
use crate::patch::{self, PatchOp};
use crate::presence::Due;
use crate::store::notice::Notice;
use crate::store::session::Name;
use crate::store::Store;

/// A change that was written as an op file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Written {
    /// Automerge hash of the change.
    pub hash: String,
    /// Actor it was written with, lowercase hex.
    pub actor: String,
    /// Its seq.
    pub seq: u64,
    /// Path of the op file relative to the store.
    pub path: String,
    /// Why the op file is not in the folder yet, when publishing it kept failing after the
    /// change was made durable (in this device's record and outbox): the change stands, and
    /// the next write, `repair` or packing of this device publishes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpublished: Option<String>,
}

/// How often a write tries to publish its op file once the change is durable.
const PUBLISH_TRIES: usize = 3;

/// What a write did, with the value the change closure returned (`()` for patches).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WriteOutcome<T = ()> {
    /// The op files written, in seq order: empty when the change was a no-op. More than one
    /// when edits lost in a fork were written again first.
    pub written: Vec<Written>,
    /// Things the user should know (e.g. a fresh actor and why): typed, each one line as
    /// text.
    pub notices: Vec<Notice>,
    /// What the change closure returned (an id it made, a count…).
    #[serde(skip)]
    pub value: T,
}

impl<T> WriteOutcome<T> {
    /// The hash of the caller's own change, if it changed anything.
    pub fn change(&self) -> Option<&str> {
        self.written.last().map(|w| w.hash.as_str())
    }
}

/// What a change closure returns: any error (`?` on Automerge's own errors works, and so
/// does `Err("why".into())`) aborts the change, and nothing is written.
pub type ChangeResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A typed value as the JSON a write takes; one that is not JSON is a malformed patch.
fn typed_json<T: Serialize + ?Sized>(path: &str, value: &T) -> Result<serde_json::Value> {
    patch::typed::to_json(value).map_err(|e| {
        Error::Patch(patch::PatchError::Malformed(format!(
            "the value for {path:?} is not JSON: {e}"
        )))
    })
}

pub(crate) fn fresh_record(old: Option<WriterRecord>) -> WriterRecord {
    let mut retired = Vec::new();
    if let Some(old) = old {
        retired = old.retired;
        retired.push(old.actor);
    }
    WriterRecord {
        actor: ActorId::random().to_hex_string(),
        seq: 0,
        hash: String::new(),
        retired,
    }
}

impl Store {
    /// Changes the document: `f` edits a transaction on the merged document; its change is
    /// an op file in the folder before this returns, and [`WriteOutcome::value`] is what `f`
    /// returned. A change with no operations writes nothing. If `f` fails, nothing is
    /// written and the error comes back as [`Error::Aborted`].
    ///
    /// ```
    /// use automerge::{transaction::Transactable, ObjType, ROOT};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let opts = crdtdir::Options::new().state_dir(dir.path().join("state")).device("laptop");
    /// let store = crdtdir::Store::init(dir.path().join("store"), opts, None)?;
    /// let outcome = store.change(|tx| {
    ///     tx.put(ROOT, "title", "Groceries")?;
    ///     let items = tx.put_object(ROOT, "items", ObjType::List)?;
    ///     Ok(items)
    /// })?;
    /// assert_eq!(outcome.written.len(), 1);
    /// let _items = outcome.value; // the list's id, for later changes
    /// assert_eq!(store.read()?.to_json(), serde_json::json!({"items": [], "title": "Groceries"}));
    /// # Ok::<(), crdtdir::Error>(())
    /// ```
    pub fn change<T>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> ChangeResult<T>,
    ) -> Result<WriteOutcome<T>> {
        self.change_with_message(None, f)
    }

    /// [`Store::change`] with a commit message, kept in the change and shown by
    /// [`Store::history`] (and `crdtdir log`).
    ///
    /// ```
    /// use automerge::{transaction::Transactable, ROOT};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let opts = crdtdir::Options::new().state_dir(dir.path().join("state")).device("laptop");
    /// let store = crdtdir::Store::init(dir.path().join("store"), opts, None)?;
    /// store.change_with_message(Some("rename"), |tx| {
    ///     tx.put(ROOT, "title", "Groceries")?;
    ///     Ok(())
    /// })?;
    /// assert_eq!(store.history()?[0].message.as_deref(), Some("rename"));
    /// # Ok::<(), crdtdir::Error>(())
    /// ```
    pub fn change_with_message<T>(
        &self,
        message: Option<&str>,
        f: impl FnOnce(&mut Transaction<'_>) -> ChangeResult<T>,
    ) -> Result<WriteOutcome<T>> {
        self.write(message, |tx| f(tx).map_err(Error::Aborted))
            .map(|out| self.after_write(out))
    }

    /// Applies a patch (see [`crate::PatchOp`]) as one change: all of it or, on any failing
    /// op (a failed `test` included), nothing.
    pub fn apply_patch(&self, ops: &[PatchOp]) -> Result<WriteOutcome> {
        self.apply_patch_with_message(ops, None)
    }

    /// Makes the value at a JSON Pointer equal to any `serde` value, as one change that
    /// writes only what differs (a `set`, [`PatchOp::set`]): a map key is added or replaced,
    /// a list index replaced; fields and elements that did not change are not touched, lists
    /// are compared by their longest common subsequence (records by their `id`,
    /// [`crate::Options::list_key`]), and a counter moves by the difference.
    ///
    /// Strings: a `String` is an atomic scalar (ids, dates, names: concurrent sets keep one
    /// of them, never a mix), a [`crate::Text`] is collaborative text. Read it back with
    /// [`crate::View::get_as`].
    ///
    /// `put` makes the value *equal*: a field this device's copy no longer has is deleted,
    /// and a field another device changed after this device read its copy goes back to this
    /// copy's value. For a value read, edited and written back, use [`Store::update`] (read
    /// and write under the write lock) or [`Store::put_from`] (a copy held for a while, such
    /// as an open form): they write only the edit. `put` is right when the value is this
    /// device's to decide as a whole (an import, a reset, a value nobody else edits).
    pub fn put<T: Serialize + ?Sized>(&self, path: &str, value: &T) -> Result<WriteOutcome> {
        let value = typed_json(path, value)?;
        self.write_typed(|tx, style| Ok(patch::write(tx, path, &value, style, patch::Mode::Set)?))
    }

    /// Writes the edit a device made to a value it read earlier: only what differs between
    /// `as_read` and `edited` is written, onto the value as it is now, so edits other devices
    /// made since (to other fields, other list elements, other parts of a text) survive. For
    /// a value held across time, e.g. a form open for minutes. A list element another device
    /// deleted meanwhile stays deleted; a value that is gone altogether is written anew.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let opts = crdtdir::Options::new().state_dir(dir.path().join("state")).device("laptop");
    /// #[derive(serde::Serialize, serde::Deserialize, Clone)]
    /// struct Settings { theme: String, lang: String }
    ///
    /// let store = crdtdir::Store::init(dir.path().join("store"), opts, None)?;
    /// store.put("/settings", &Settings { theme: "dark".into(), lang: "en".into() })?;
    /// let as_read: Settings = store.read()?.get_as("/settings")?; // the form opens
    /// store.apply_patch(&[crdtdir::PatchOp::set("/settings/lang", "de".into())])?; // arrives
    /// let mut form = as_read.clone();
    /// form.theme = "light".into(); // the user edits the form, then saves
    /// store.put_from("/settings", &as_read, &form)?;
    /// assert_eq!(store.read()?.get("/settings")?, serde_json::json!({"lang": "de", "theme": "light"}));
    /// # Ok::<(), crdtdir::Error>(())
    /// ```
    pub fn put_from<T: Serialize + ?Sized>(
        &self,
        path: &str,
        as_read: &T,
        edited: &T,
    ) -> Result<WriteOutcome> {
        let base = typed_json(path, as_read)?;
        let value = typed_json(path, edited)?;
        self.write_typed(|tx, style| {
            Ok(patch::write_from(
                tx,
                path,
                Some(&base),
                &value,
                style,
                patch::Mode::Set,
            )?)
        })
    }

    /// Reads the value at a JSON Pointer as a `T`, lets `f` edit it, and writes only the
    /// edit (see [`Store::put_from`]), all under the write lock on the current document:
    /// nothing another device wrote is reverted, and fields `T` does not know are left alone.
    /// A missing value reads as `None` when `T` is an `Option`, else the write fails with
    /// [`crate::PatchError::Missing`]. Returns what `f` returned in [`WriteOutcome::value`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let opts = crdtdir::Options::new().state_dir(dir.path().join("state")).device("laptop");
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Todo { id: String, title: crdtdir::Text, done: bool }
    ///
    /// let store = crdtdir::Store::init(dir.path().join("store"), opts, None)?;
    /// store.put("/todos", &Vec::<Todo>::new())?;
    /// store.push("/todos", &Todo { id: "t1".into(), title: "milk".into(), done: false })?;
    /// let left = store.update("/todos", |todos: &mut Vec<Todo>| {
    ///     todos[0].done = true;
    ///     todos.iter().filter(|t| !t.done).count()
    /// })?;
    /// assert_eq!(left.value, 0);
    /// assert_eq!(store.read()?.get("/todos/0/done")?, serde_json::json!(true));
    /// # Ok::<(), crdtdir::Error>(())
    /// ```
    pub fn update<T, R>(&self, path: &str, f: impl FnOnce(&mut T) -> R) -> Result<WriteOutcome<R>>
    where
        T: Serialize + serde::de::DeserializeOwned,
    {
        self.write_typed(|tx, style| {
            let mut value: T = patch::typed::read(tx, path)?;
            let base = typed_json(path, &value)?;
            let out = f(&mut value);
            let edited = typed_json(path, &value)?;
            patch::write_from(tx, path, Some(&base), &edited, style, patch::Mode::Set)?;
            Ok(out)
        })
    }

    /// Inserts a typed value into a list at an index, or at the end with `-`
    /// (`/todos/0`, `/todos/-`). Strings as in [`Store::put`].
    pub fn insert<T: Serialize + ?Sized>(&self, path: &str, value: &T) -> Result<WriteOutcome> {
        let value = typed_json(path, value)?;
        self.write_typed(|tx, style| {
            Ok(patch::write(tx, path, &value, style, patch::Mode::Insert)?)
        })
    }

    /// Appends a typed value to the list at `list` ([`Store::insert`] at `-`).
    pub fn push<T: Serialize + ?Sized>(&self, list: &str, value: &T) -> Result<WriteOutcome> {
        self.insert(&format!("{list}/-"), value)
    }

    /// Deletes a map key or list element ([`PatchOp::remove`]).
    pub fn remove(&self, path: &str) -> Result<WriteOutcome> {
        self.apply_patch(&[PatchOp::remove(path)])
    }

    /// One write of a typed value: `f` writes it in the typed style (plain strings scalar).
    fn write_typed<R>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>, patch::Style<'_>) -> Result<R>,
    ) -> Result<WriteOutcome<R>> {
        let style = patch::typed::style(self.inner.list_key.as_deref());
        self.write(None, |tx| f(tx, style))
            .map(|out| self.after_write(out))
    }

    /// [`Store::apply_patch`] with a commit message (see [`Store::change_with_message`]).
    pub fn apply_patch_with_message(
        &self,
        ops: &[PatchOp],
        message: Option<&str>,
    ) -> Result<WriteOutcome> {
        let key = self.inner.list_key.as_deref();
        self.write(message, |tx| {
            patch::apply(tx, ops, key).map_err(Error::from)
        })
        .map(|out| self.after_write(out))
    }

    /// The one write path: lock, merge, pick a provable actor, run `f`, persist.
    /// The actors this device writes or wrote this store with.
    pub(crate) fn own_actors(&self) -> std::collections::HashSet<String> {
        self.inner
            .state
            .read_record()
            .map(|r| std::iter::once(r.actor).chain(r.retired).collect())
            .unwrap_or_default()
    }

    /// A written change says this device is alive: a heartbeat, at most one a minute
    /// ([`crate::presence`]), so another device's `compact` sees an app that only writes.
    fn after_write<T>(&self, mut out: WriteOutcome<T>) -> WriteOutcome<T> {
        if !out.written.is_empty() {
            let beat = match self.beat_when(Due::Stale) {
                Ok(published) => published,
                Err(e) => {
                    out.notices.push(Notice::NoBeat {
                        error: e.to_string(),
                    });
                    false
                }
            };
            // The change is written whatever packing does: a failure is a notice.
            if let Err(e) = self.maintain_packs(beat) {
                out.notices.push(Notice::PackingStopped {
                    error: e.to_string(),
                });
            }
            // A checkpoint only spares new devices work: a failure is a notice.
            match self.maintain_checkpoint() {
                Ok(Some(c)) => {
                    tracing::info!(checkpoint = ?c.checkpoint, skipped = ?c.skipped, changes = c.changes, "checkpoint")
                }
                Ok(None) => {}
                Err(e) => out.notices.push(Notice::CheckpointFailed {
                    error: e.to_string(),
                }),
            }
            match self.write_back_lost() {
                Ok(Some(r)) => out.notices.push(Notice::WroteBack {
                    snapshot: r.snapshot,
                }),
                Ok(None) => {}
                Err(e) => out.notices.push(Notice::WriteBackFailed {
                    error: e.to_string(),
                }),
            }
        }
        out
    }

    /// A write, as its steps: merge the current folder ([`Store::current_state`]), publish
    /// again own op files the folder lost, prove the writer record's actor
    /// ([`Store::prove_actor`]), run the transaction, then make the change durable and
    /// published ([`Store::land`]).
    pub(crate) fn write<T>(
        &self,
        message: Option<&str>,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<WriteOutcome<T>> {
        self.write_change(message, false, f)
    }

    /// [`Store::write`]; with `empty`, a change with no operations is written too (a
    /// document's first change, a deletion).
    pub(crate) fn write_change<T>(
        &self,
        message: Option<&str>,
        empty: bool,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<WriteOutcome<T>> {
        // A bad name is refused now; a default name is made and kept only once there is a
        // change to write (a refused patch leaves the local state as it was).
        let session = self.session(Name::Check)?;
        // A watcher's merge in flight finishes first: the document is not copied or reloaded.
        let _gate = self.inner.memory.gate();
        let record = session.record.clone();
        self.keys_for_write(record.as_ref())?;
        // The highest seq the folder names for the record's actor, before anything is
        // republished.
        let record_max = record.as_ref().map_or(0, |r| self.actor_max_seq(&r.actor));
        let (mut state, mut listed_scan) = self.current_state(record.as_ref());
        if let Some(r) = &record {
            self.remove_stale_temps(r);
        }
        let mut notices = Vec::new();
        // Own op files the folder lost come back first, under their own names: the record
        // can then prove its last seq, and changes built on them stop waiting.
        let republished =
            self.republish_lost(record.as_ref(), state, listed_scan.as_ref(), &mut notices)?;
        if let Some((merged, scan)) = republished {
            (state, listed_scan) = (merged, Some(scan));
        } else {
            state = self
                .inner
                .memory
                .take()
                .expect("kept in memory while republishing");
        }
        if state.unprovided > 0 {
            notices.push(Notice::FolderLost {
                count: state.unprovided,
            });
        }
        let mut record = self.prove_actor(record, record_max, &mut state, &mut notices);
        let actor: ActorId = record.actor.parse().map_err(|_| Error::Corrupt {
            path: self.inner.state.path().join(crate::local::names::WRITER),
            reason: "the writer record's actor is not an actor id".into(),
        })?;
        state.doc.set_actor(actor);

        // While a watcher runs, the change's patches are logged for it.
        let recording = self.journal().recording();
        let before = state.doc.get_heads();
        let (value, hash, mut log) = match transact(&mut state, recording, message, empty, f) {
            Ok(done) => done,
            Err(e) => {
                // The transaction was rolled back: the state is as it was.
                self.inner.memory.put(Arc::new(state));
                return Err(e);
            }
        };
        let mut written = Vec::new();
        if let Some(hash) = hash {
            // On error the state (holding a change that is not on disk) is dropped here, so
            // nothing is ever built on top of it.
            let w = self.land(&mut state, hash, &mut record, &mut notices)?;
            if let (Some(scan), None) = (listed_scan.as_mut(), &w.unpublished) {
                self.vouch_listing(scan, &w.path);
            }
            written.push(w);
            if recording {
                let patches = crate::patch::json::convert(state.doc.make_patches(&mut log));
                self.journal()
                    .push(before, state.doc.get_heads(), Some(patches));
            }
        }
        self.inner.memory.dirty.store(true, Ordering::Relaxed);
        self.inner.memory.put(Arc::new(state));
        Ok(WriteOutcome {
            written,
            notices,
            value,
        })
    }

    /// The document a write starts from, and the listing it was merged from when this step
    /// made one. What other devices wrote since the last merge is merged first (from memory,
    /// only what is new), so a `test` op and the new change see every change that has
    /// arrived. A running watcher with file events vouches that nothing arrived since its
    /// last merge: then not even a listing is needed. Another process of this device may
    /// have written since: then the memory lacks the recorded last change, and the folder is
    /// merged. A write leaves the cache files alone: a refused write changes nothing on disk.
    fn current_state(&self, record: Option<&WriterRecord>) -> (MergedState, Option<scan::Scan>) {
        let knows_last = |state: &MergedState| {
            record.is_none_or(|r| {
                r.hash.parse::<ChangeHash>().is_ok_and(|h| {
                    state
                        .doc
                        .get_missing_deps(std::slice::from_ref(&h))
                        .is_empty()
                })
            })
        };
        let quiet = self.inner.memory.watched.quiet();
        match self.inner.memory.take() {
            Some(state) if quiet && knows_last(&state) => (state, None),
            other => {
                if let Some(state) = other {
                    self.inner.memory.put(Arc::new(state));
                }
                let (state, scan) = self.merge_and_check_out();
                (state, Some(scan))
            }
        }
    }

    /// Publishes again this device's op files the folder lost ([`Store::republish`]);
    /// when there were any, the folder merged again and its listing. `state` stays in memory
    /// either way.
    fn republish_lost(
        &self,
        record: Option<&WriterRecord>,
        state: MergedState,
        listed: Option<&scan::Scan>,
        notices: &mut Vec<Notice>,
    ) -> Result<Option<(MergedState, scan::Scan)>> {
        self.inner.memory.put(Arc::new(state));
        let republished = self.republish(record, listed)?;
        if republished.is_empty() {
            return Ok(None);
        }
        notices.push(Notice::Republished {
            count: republished.len(),
        });
        Ok(Some(self.merge_and_check_out()))
    }

    /// Lists and merges the folder, then checks the merged state out of memory (with the
    /// listing it stands for).
    pub(crate) fn merge_and_check_out(&self) -> (MergedState, scan::Scan) {
        let scan = self.scan();
        (self.check_out_merged(&scan), scan)
    }

    /// Merges what `scan` lists, then checks the merged state out of memory.
    pub(crate) fn check_out_merged(&self, scan: &scan::Scan) -> MergedState {
        drop(self.merged(scan, false));
        self.inner
            .memory
            .take()
            .expect("a merge leaves its state in memory")
    }

    /// The writer record to write with: the kept one when `state` proves its last seq (the
    /// change is there under that seq, or the actor never wrote), else a fresh actor, with a
    /// notice saying why — a seq is never used twice. `record_max`: the highest seq the
    /// folder names for the record's actor.
    fn prove_actor(
        &self,
        record: Option<WriterRecord>,
        record_max: u64,
        state: &mut MergedState,
        notices: &mut Vec<Notice>,
    ) -> WriterRecord {
        let Some(r) = record else {
            return fresh_record(None);
        };
        let last: Option<ChangeHash> = r.hash.parse().ok();
        let in_doc = last.is_some_and(|h| {
            state
                .doc
                .get_change_meta_by_hash(&h)
                .is_some_and(|c| c.seq == r.seq)
        });
        let rebased = state.rebased.iter().find(|x| x.from == r.hash);
        // Compaction may have taken the actor's op files: the document knows its seqs.
        let doc_max = r.actor.parse::<ActorId>().ok().and_then(|a| {
            state.doc.set_actor(a);
            state.doc.get_last_local_change().map(|c| c.seq())
        });
        if let Some(rebased) = rebased {
            // Our last change lost a fork, or was built on a change that did: its
            // edits are in the document, rewritten under another actor.
            notices.push(Notice::Rebased {
                actor: r.actor.clone(),
                kept_as: rebased.to.clone(),
            });
            fresh_record(Some(r))
        } else if record_max.max(doc_max.unwrap_or(0)) > r.seq {
            notices.push(Notice::BeyondRecord {
                actor: r.actor.clone(),
            });
            fresh_record(Some(r))
        } else if in_doc || (r.seq == 0 && r.hash.is_empty()) {
            // (An actor made for heartbeats, never written with, has nothing to prove.)
            r
        } else {
            notices.push(Notice::Unproven {
                actor: r.actor.clone(),
            });
            fresh_record(Some(r))
        }
    }

    /// Lands the change `hash` just committed in `state`: the rebased changes it builds on
    /// are published first (so it never waits for a rebase that readers derive differently
    /// later), then it is made durable and published ([`Store::persist`]).
    fn land(
        &self,
        state: &mut MergedState,
        hash: ChangeHash,
        record: &mut WriterRecord,
        notices: &mut Vec<Notice>,
    ) -> Result<Written> {
        let device = self.inner.state.device_name(self.inner.device.as_deref())?;
        let published = self.publish_rebased(state, &device, &record.actor)?;
        if published > 0 {
            notices.push(Notice::PublishedRebases { count: published });
        }
        let written = self.persist(&state.doc, hash, &device, record)?;
        if let Some(why) = &written.unpublished {
            notices.push(Notice::Unpublished { why: why.clone() });
        }
        state.files.push(written.path.clone());
        state.devices.insert(record.actor.clone(), device);
        Ok(written)
    }

    /// After this device's own write, the folder lists what the write merged plus the new
    /// op file: that listing is recorded as the one the document in memory stands for, so
    /// the next read or write of an unchanged folder lists it and stops, instead of checking
    /// every known file again. If anything else changed meanwhile (another device's file,
    /// a published rebase, a removed temp), the next listing differs and merges as usual.
    fn vouch_listing(&self, scan: &mut scan::Scan, rel: &str) {
        let Some(entry) = scan::OpEntry::parse(rel) else {
            return;
        };
        let mut listed = self.inner.memory.listed();
        let Some((_, report)) = listed.as_ref() else {
            return;
        };
        let at = scan.ops.partition_point(|o| o.rel.as_str() < rel);
        if scan.ops.get(at).is_some_and(|o| o.rel == rel) {
            return;
        }
        scan.ops.insert(at, entry);
        let digest =
            crate::local::cache::listing(&*self.inner.folder, scan, report, &self.key_digest());
        *listed = Some((digest, report.clone()));
    }

    /// Publishes, as op files, the rebased changes of this view that no op file in the folder
    /// carries yet (docs/FORMAT.md §9). Returns how many it wrote.
    pub(crate) fn publish_rebased(
        &self,
        state: &MergedState,
        device: &str,
        owner: &str,
    ) -> Result<usize> {
        let mut written = 0;
        for r in &state.rebased {
            let Ok(to) = r.to.parse::<ChangeHash>() else {
                continue;
            };
            let Some(change) = state.doc.get_change_by_hash(&to) else {
                continue;
            };
            let actor = change.actor_id().to_hex_string();
            let dir = crate::folder::layout::actor_ops(&self.inner.root, &actor);
            let bytes = self.op_file_bytes(device, &change)?;
            let doc = self.inner.doc_name.as_deref();
            let name = names::op_file_name(doc, change.seq(), &blake3::hash(&bytes));
            let path = dir.join(&name);
            // Usually this device published it before: one stat. Otherwise another device
            // may have (its file names differ by the device name in the envelope).
            let dir_rel = crate::folder::layout::actor_ops_rel(&actor);
            let folder = &self.inner.folder;
            let carried = self.has_file(&format!("{dir_rel}/{name}"))
                || folder
                    .list(&dir_rel)
                    .into_iter()
                    .flatten()
                    .filter(|e| {
                        names::parse_op_name(&e.name)
                            .is_some_and(|op| op.doc == doc && op.seq == change.seq())
                    })
                    .filter_map(|e| folder.read(&format!("{dir_rel}/{}", e.name)).ok())
                    .filter_map(|bytes| {
                        let context = crate::seal::op_context(doc, &actor, change.seq());
                        let plain = self.source().open("op", &context, &bytes).ok()?;
                        opfile::decode(&plain).ok()
                    })
                    .filter_map(|env| automerge::Change::from_bytes(env.change).ok())
                    .any(|c| c.hash() == to);
            if carried {
                continue;
            }
            let staged = self.stage(&dir, owner, &bytes).map_err(Error::io(&dir))?;
            if self.publish_new(staged, &path).map_err(Error::io(&path))? {
                written += 1;
            }
        }
        Ok(written)
    }

    /// The op file of `change`: its envelope, sealed in an encrypted store.
    pub(crate) fn op_file_bytes(
        &self,
        device: &str,
        change: &automerge::Change,
    ) -> Result<Vec<u8>> {
        let actor = change.actor_id().to_hex_string();
        let name = self.inner.doc_name.as_deref();
        let context = crate::seal::op_context(name, &actor, change.seq());
        let doc = self.inner.doc.as_deref();
        self.sealed_file(
            "op",
            &context,
            opfile::encode(device, doc, change.raw_bytes()),
        )
    }

    /// A file's bytes as the folder gets them: sealed in an encrypted store (kind and
    /// context as in src/seal.rs), as they are otherwise.
    pub(crate) fn sealed_file(&self, kind: &str, context: &str, plain: Vec<u8>) -> Result<Vec<u8>> {
        if !self.is_encrypted() {
            return Ok(plain);
        }
        let ring = self.keyring().ok_or_else(|| self.locked())?;
        Ok(crate::seal::wrap(
            ring.current_check(),
            ring.seal().seal(kind, context, &plain),
        ))
    }

    /// The highest seq of any op file or pack name under `actor`, listing only its folders.
    pub(crate) fn actor_max_seq(&self, actor: &str) -> u64 {
        let names_in = |dir: Option<String>| {
            dir.and_then(|d| self.inner.folder.list(&d).ok())
                .into_iter()
                .flatten()
                .map(|e| e.name)
        };
        let doc = self.inner.doc_name.as_deref();
        let ops = Some(crate::folder::layout::actor_ops_rel(actor));
        let loose = names_in(ops).filter_map(|n| {
            names::parse_op_name(&n)
                .filter(|o| o.doc == doc)
                .map(|o| o.seq)
        });
        // Its packs' names say their last seq: packed changes count as much as loose ones.
        // (Packs hold the root document's changes only.)
        let packs = match doc {
            None => Some(crate::folder::layout::actor_packs_rel(actor)),
            Some(_) => None,
        };
        let packed =
            names_in(packs).filter_map(|n| crate::format::pack::parse_name(&n).map(|p| p.1));
        loose.chain(packed).max().unwrap_or(0)
    }

    /// Writes one own change: temp file (fsynced), then the record (fsynced), then the rename.
    pub(crate) fn persist(
        &self,
        doc: &Automerge,
        hash: ChangeHash,
        device: &str,
        record: &mut WriterRecord,
    ) -> Result<Written> {
        let change = doc
            .get_change_by_hash(&hash)
            .ok_or_else(|| Error::Internal {
                what: "a committed change vanished".into(),
            })?;
        let seq = change.seq();
        if seq != record.seq + 1 {
            return Err(Error::Internal {
                what: format!(
                    "the new change has seq {seq} but the writer record's last is {}",
                    record.seq
                ),
            });
        }
        // A fresh actor is recorded before its first temp file appears, so that a crash
        // leaves no temp this device does not know to remove.
        if record.seq == 0 {
            self.inner.state.write_record(record)?;
        }
        if self.inner.doc.is_some() {
            // Before a document's first op file: a build that knows no documents must not
            // write (it would see none of their changes).
            let root = &self.inner.root;
            let note = b"documents beside the root one (ops/<actor>/<doc>-<seq>-<hash>.op): a build that does not know them must not write\n";
            let feature = crate::format::marker::DOCS_FEATURE;
            crate::folder::layout::ensure_feature(
                &*self.inner.folder,
                &record.actor,
                feature,
                note,
            )
            .map_err(Error::io(crate::folder::layout::feature(root, feature)))?;
        }
        let bytes = self.op_file_bytes(device, &change)?;
        let dir = crate::folder::layout::actor_ops(&self.inner.root, &record.actor);
        let name = names::op_file_name(self.inner.doc_name.as_deref(), seq, &blake3::hash(&bytes));
        let staged = self
            .stage(&dir, &record.actor, &bytes)
            .map_err(Error::io(&dir))?;
        // The outbox copy exists before the record names the seq: whatever happens to the
        // folder from here on, this device can publish the same file again.
        let kept = fault::at("op-staged")
            .and_then(|()| self.outbox().keep(&record.actor, &name, &bytes))
            .and_then(|()| fault::at("op-kept"));
        if let Err(e) = kept {
            staged.discard();
            return Err(Error::io(self.outbox_dir())(e));
        }
        record.seq = seq;
        record.hash = hash.to_string();
        if let Err(e) = self.inner.state.write_record(record) {
            staged.discard();
            return Err(e);
        }
        // From here on the change is durable: the record names it and the outbox holds its
        // bytes, so it stands whatever happens to the folder, and the write must not report
        // failure (a caller that retries would write it twice).
        let target = dir.join(&name);
        // Noted first: a running watcher's event for it may come before this call returns.
        self.inner.memory.watched.published(target.clone());
        let unpublished = self
            .publish_durable(staged, &dir, &record.actor, &bytes, &target)
            .err();
        Ok(Written {
            hash: hash.to_string(),
            actor: record.actor.clone(),
            seq,
            path: crate::folder::op_rel(&record.actor, &name),
            unpublished: unpublished.map(|e| e.to_string()),
        })
    }

    pub(crate) fn outbox(&self) -> Outbox {
        Outbox::new(&self.inner.state.path())
    }

    pub(crate) fn outbox_dir(&self) -> PathBuf {
        self.inner.state.path().join(crate::local::names::OUTBOX)
    }

    /// Publishes again, with the same bytes and name, every op file of this device's outbox
    /// that the folder lost and no valid snapshot in the folder folds in. An entry beyond the
    /// record's seq was never acknowledged (a crash came before the record) and is dropped.
    /// `scan`: a listing of the folder just made, which answers for the actor folders.
    /// Returns the paths published.
    pub(crate) fn republish(
        &self,
        record: Option<&WriterRecord>,
        scan: Option<&scan::Scan>,
    ) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        // Off the local disk a request per kept file adds up: one listing of each actor
        // folder first (the scan's, when there is one), and a stat (read-after-write, unlike
        // a listing) only for what the listing lacks.
        let loose: Option<HashSet<&str>> = scan.filter(|_| !self.is_local()).map(|scan| {
            scan.ops
                .iter()
                .filter(|o| o.loose)
                .map(|o| o.rel.as_str())
                .collect()
        });
        let mut listed: std::collections::HashMap<String, HashSet<String>> = Default::default();
        for kept in self.outbox().entries() {
            if record.is_some_and(|r| r.actor == kept.actor && kept.seq > r.seq) {
                kept.release();
                continue;
            }
            let in_scan = loose
                .as_ref()
                .is_some_and(|l| l.contains(kept.rel().as_str()));
            let in_listing = in_scan
                || (loose.is_none() && !self.is_local())
                    && listed
                        .entry(kept.actor.clone())
                        .or_insert_with(|| {
                            let dir = crate::folder::layout::actor_ops_rel(&kept.actor);
                            let entries = self.inner.folder.list(&dir).unwrap_or_default();
                            entries.into_iter().map(|e| e.name).collect()
                        })
                        .contains(&kept.name);
            if !in_listing && !self.has_file(&kept.rel()) {
                missing.push(kept);
            }
        }
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let scan = self.scan();
        // A pack in the folder holds it, and its entry reads: not missing.
        let packed: std::collections::HashMap<&str, &scan::OpEntry> = scan
            .ops
            .iter()
            .filter(|o| o.packed.is_some())
            .map(|o| (o.rel.as_str(), o))
            .collect();
        let mut packs: std::collections::HashMap<&str, Option<Vec<u8>>> = Default::default();
        missing.retain(|kept| {
            let Some(entry) = packed.get(kept.rel().as_str()) else {
                return true;
            };
            !entry.packs().any(|p| {
                let bytes = packs
                    .entry(&p.pack)
                    .or_insert_with(|| self.inner.folder.read(&p.pack).ok());
                bytes
                    .as_ref()
                    .is_some_and(|b| crate::format::pack::entry(b, &p.row).is_ok())
            })
        });
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let covered: HashSet<String> =
            merge::load_snapshots(&self.source(), &self.inner.marker.store_id, &scan)
                .valid
                .into_iter()
                .flat_map(|s| s.snapshot.folded_ops.into_iter().map(|(p, _)| p))
                .collect();
        let mut published = Vec::new();
        for kept in missing {
            let rel = kept.rel();
            if covered.contains(&rel) {
                continue;
            }
            let Some(bytes) = kept.bytes() else {
                continue;
            };
            let dir = crate::folder::layout::actor_ops(&self.inner.root, &kept.actor);
            let staged = self
                .stage(&dir, &kept.actor, &bytes)
                .map_err(Error::io(&dir))?;
            let target = dir.join(&kept.name);
            self.publish(staged, &target)
                .and_then(|()| fault::at("republished"))
                .map_err(Error::io(&target))?;
            published.push(rel);
        }
        Ok(published)
    }

    /// Removes temp files this device left behind in a crash (only its own actors' temps).
    pub(crate) fn remove_stale_temps(&self, record: &WriterRecord) {
        for actor in std::iter::once(&record.actor).chain(&record.retired) {
            let prefix = format!("{TEMP_PREFIX}{actor}-");
            // Everywhere this device stages files under that actor: op files, heartbeats,
            // snapshots, records and feature markers.
            for dir in [
                crate::folder::layout::actor_ops(&self.inner.root, actor),
                crate::folder::layout::actor_packs(&self.inner.root, actor),
                crate::folder::layout::actor_beats(&self.inner.root, actor),
                crate::folder::layout::snapshots(&self.inner.root),
                crate::folder::layout::checkpoints(&self.inner.root),
                crate::folder::layout::features(&self.inner.root),
            ] {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with(&prefix) && name.ends_with(TEMP_SUFFIX) {
                        crate::fs::remove_or_log(entry.path(), "a stale temp of this device");
                    }
                }
            }
        }
    }
}

/// Runs `f` in a transaction on `state`'s document and commits it (with `message`): the
/// value `f` returned, the change's hash (`None`: `f` changed nothing), and the patch log
/// (active when `recording`). When `f` fails the transaction is rolled back.
fn transact<T>(
    state: &mut MergedState,
    recording: bool,
    message: Option<&str>,
    empty: bool,
    f: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
) -> Result<(T, Option<ChangeHash>, automerge::PatchLog)> {
    let mut tx = if recording {
        // A fresh log belongs to no document yet: this never fails.
        state
            .doc
            .transaction_log_patches(automerge::PatchLog::active())
            .map_err(|e| Error::Internal {
                what: format!("Automerge patch log: {e}"),
            })?
    } else {
        state.doc.transaction()
    };
    // On failure, dropping the transaction rolls it back.
    let value = f(&mut tx)?;
    let commit = || {
        let commit = CommitOptions::default().with_time(now());
        match message {
            Some(message) => commit.with_message(message.to_string()),
            None => commit,
        }
    };
    let (hash, log) = tx.commit_with(commit());
    let hash = match hash {
        None if empty => Some(state.doc.empty_commit(commit())),
        hash => hash,
    };
    Ok((value, hash, log))
}

impl Store {
    /// Publishes the op file `bytes` of a durable change as `target` (`staged` first): a temp a
    /// sync tool deleted before the rename (rclone bisync, a cleaner), or a passing error, is
    /// staged again, [`PUBLISH_TRIES`] times in all.
    fn publish_durable(
        &self,
        staged: fs::Staged,
        dir: &std::path::Path,
        actor: &str,
        bytes: &[u8],
        target: &std::path::Path,
    ) -> Result<()> {
        let mut staged = Some(staged);
        let mut last = Ok(());
        for _ in 0..PUBLISH_TRIES {
            let attempt = match staged.take() {
                Some(s) => Ok(s),
                None => self.stage(dir, actor, bytes),
            };
            let published = attempt
                .and_then(|s| match fault::at("record-written") {
                    Ok(()) => Ok(s),
                    Err(e) => {
                        s.discard();
                        Err(e)
                    }
                })
                .and_then(|s| self.publish(s, target))
                .and_then(|()| fault::at("op-published"));
            match published {
                Ok(()) => return Ok(()),
                Err(e) => last = Err(Error::io(target)(e)),
            }
        }
        last
    }
}
