//! Every name in the state dir, in one table (docs/FORMAT.md §11 and the sections of each
//! file). STATE is `--state-dir` / `CRDTDIR_STATE_DIR`, else the OS data directory.
//!
//! ```text
//! STATE/device                        this device's default display name
//! STATE/stores/<store id>/            one store's state (`STORES`):
//!   folder, marker, init-pending, lock, writer         (local/mod.rs, local/writer.rs)
//!   key, old-keys, keychain                             (local/keys.rs)
//!   view, cache, held                                   (local/cache.rs)
//!   beats, seen, forgotten, tidied                      (local/beats.rs)
//!   written-back                                        (store/repair.rs)
//!   checkpoint-seen                                     (store/checkpoint.rs)
//!   outbox/<actor>/<op file name>                       (local/outbox.rs)
//!   retention/<hash>.automerge                          (local/retention.rs)
//!   packs/<actor>/<pack name>[.settled], packs/through  (store/pack.rs)
//!   packs/<actor>/docs-<hash>.pack, packs/docs-written  (store/doc_packs.rs)
//!   docs/<doc id>/                                      a document's own state: writer,
//!                                                       view, cache, held, outbox (as above)
//!   catalog                                             what `docs` lists (repo/catalog.rs)
//!   docs-packs                                          documents each documents' pack holds
//!                                                       (folder/docs_index.rs)
//! ```

/// `STATE/device`: this device's default display name.
pub(crate) const DEVICE: &str = "device";
/// `STATE/stores/`: one folder per store id.
pub(crate) const STORES: &str = "stores";
/// The canonical path of the store's folder on this device.
pub(crate) const FOLDER: &str = "folder";
/// The bytes of the store marker as last read here.
pub(crate) const MARKER: &str = "marker";
/// This device's `init` of the store has not finished.
pub(crate) const INIT_PENDING: &str = "init-pending";
/// The change count of the newest checkpoint this device saw or published: a hint that
/// spares most writes a look at `checkpoints/`.
pub(crate) const CHECKPOINT_SEEN: &str = "checkpoint-seen";
/// Locked exclusively by the one writer.
pub(crate) const LOCK: &str = "lock";
/// The writer record.
pub(crate) const WRITER: &str = "writer";
/// An encrypted store's key, as text.
pub(crate) const KEY: &str = "key";
/// An encrypted store's older keys (rotated out), as key texts, one per line.
pub(crate) const OLD_KEYS: &str = "old-keys";
/// Where the keys are instead of `key` and `old-keys`, when this device keeps them in the
/// OS keychain: the keychain item's account, and the check of the current key.
pub(crate) const KEYCHAIN: &str = "keychain";
/// The cache's small part: all a merge with nothing new reads.
pub(crate) const VIEW: &str = "view";
/// The cache: the merged document and what is known of its files.
pub(crate) const CACHE: &str = "cache";
/// The document the folder lacks, held apart from the cache.
pub(crate) const HELD: &str = "held";
/// This device's own last beat.
pub(crate) const BEATS: &str = "beats";
/// Other devices' beat counters as this device saw them change.
pub(crate) const SEEN: &str = "seen";
/// The devices this device forgot.
pub(crate) const FORGOTTEN: &str = "forgotten";
/// What the last tidy step saw.
pub(crate) const TIDIED: &str = "tidied";
/// `STATE/stores/<id>/docs/`: one folder per document other than the root one.
pub(crate) const DOCS: &str = "docs";
/// In `packs/`: writes to documents beside the root one since their last packing (a hint).
pub(crate) const DOCS_WRITTEN: &str = "docs-written";
/// Which documents each documents' pack holds (local/docs_index.rs).
pub(crate) const DOCS_PACKS: &str = "docs-packs";
/// The catalog of documents as last listed.
pub(crate) const CATALOG: &str = "catalog";
/// When this device last wrote back what the folder lost.
pub(crate) const WRITTEN_BACK: &str = "written-back";
/// This device's op files until every device has them.
pub(crate) const OUTBOX: &str = "outbox";
/// Copies of what a compaction deleted.
pub(crate) const RETENTION: &str = "retention";
/// Kept copies of this device's packs, and `through`.
pub(crate) const PACKS: &str = "packs";
/// In `packs/`: how far packing has checked this device's actor.
pub(crate) const PACKED_THROUGH: &str = "through";
