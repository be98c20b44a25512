//! Where each kind of file lives in a store folder (docs/FORMAT.md §2): the one place that
//! joins a store's root with the layout's folder names. Everything else asks here.

use std::path::{Path, PathBuf};

use crate::format::beat::DEVICES_DIR;
use crate::format::marker::{FEATURES_DIR, MARKER};
use crate::format::names::OPS_DIR;
use crate::format::pack::PACKS_DIR;
use crate::format::snapshot::{CHECKPOINTS_DIR, SNAPSHOTS_DIR};
use crate::seal::KEYS_DIR;

/// `crdtdir.store`.
pub(crate) fn marker(root: &Path) -> PathBuf {
    root.join(MARKER)
}

/// `features/`.
pub(crate) fn features(root: &Path) -> PathBuf {
    root.join(FEATURES_DIR)
}

/// `features/<feature>`.
pub(crate) fn feature(root: &Path, feature: &str) -> PathBuf {
    features(root).join(feature)
}

/// `ops/`.
pub(crate) fn ops(root: &Path) -> PathBuf {
    root.join(OPS_DIR)
}

/// `ops/<actor>/`: an actor's op files.
pub(crate) fn actor_ops(root: &Path, actor: &str) -> PathBuf {
    ops(root).join(actor)
}

/// `packs/`.
pub(crate) fn packs(root: &Path) -> PathBuf {
    root.join(PACKS_DIR)
}

/// `packs/<actor>/`: an actor's packs.
pub(crate) fn actor_packs(root: &Path, actor: &str) -> PathBuf {
    packs(root).join(actor)
}

/// `devices/<actor>/`: the heartbeats a device publishes under one of its actors.
pub(crate) fn actor_beats(root: &Path, actor: &str) -> PathBuf {
    root.join(DEVICES_DIR).join(actor)
}

/// `snapshots/`: snapshots and compaction records.
pub(crate) fn snapshots(root: &Path) -> PathBuf {
    root.join(SNAPSHOTS_DIR)
}

/// `checkpoints/`: checkpoints (docs/FORMAT.md §19).
pub(crate) fn checkpoints(root: &Path) -> PathBuf {
    root.join(CHECKPOINTS_DIR)
}

/// `checkpoints/<name>`: the path of a checkpoint, relative to the store.
pub(crate) fn checkpoint_rel(name: &str) -> String {
    format!("{CHECKPOINTS_DIR}/{name}")
}

/// `keys/`: passphrase wraps of an encrypted store's key.
pub(crate) fn keys(root: &Path) -> PathBuf {
    root.join(KEYS_DIR)
}

/// Publishes `features/<feature>` with `note` in `folder` unless it is there (the one writer
/// of feature markers), with the folder's create: on the local disk a temp named by `owner`
/// (this device's actor or the store id), so only its owner ever removes a leftover one.
pub(crate) fn ensure_feature(
    folder: &dyn crate::folders::Folder,
    owner: &str,
    name: &str,
    note: &[u8],
) -> std::io::Result<()> {
    if crate::folder::has_feature(folder, name) {
        return Ok(());
    }
    folder
        .create(&format!("{FEATURES_DIR}/{name}"), note, owner)
        .map(drop)
}

/// `ops/<actor>`, relative to the store.
pub(crate) fn actor_ops_rel(actor: &str) -> String {
    format!("{OPS_DIR}/{actor}")
}

/// `packs/<actor>`, relative to the store.
pub(crate) fn actor_packs_rel(actor: &str) -> String {
    format!("{PACKS_DIR}/{actor}")
}

/// `devices/<actor>`, relative to the store.
pub(crate) fn actor_beats_rel(actor: &str) -> String {
    format!("{DEVICES_DIR}/{actor}")
}

/// `packs/<actor>/<name>`: the path of a pack, relative to the store.
pub(crate) fn pack_rel(actor: &str, name: &str) -> String {
    format!("{PACKS_DIR}/{actor}/{name}")
}

/// `keys/<name>`: the path of a passphrase wrap, relative to the store.
pub(crate) fn key_rel(name: &str) -> String {
    format!("{KEYS_DIR}/{name}")
}

/// The nearest folder at or above `start` that holds a store marker (`crdtdir.store`), as
/// `git` and `jj` find their repository: a command run inside a store's `ops/` acts on the
/// store. `None` when no folder up to the root holds one.
pub fn find_store(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| marker(dir).is_file())
        .map(Path::to_path_buf)
}
