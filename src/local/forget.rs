//! Forgetting a store this device left: its local state (`STATE/stores/<id>/`), once the
//! store's folder is gone from where this device used it.

use std::path::PathBuf;

use serde::Serialize;

use super::{names, StateDir};
use crate::error::{Error, Refusal, Result};

/// A store this device holds local state for ([`local_stores`]), and what that state
/// holds that may be found nowhere else.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LocalStore {
    /// The store's id.
    pub id: String,
    /// Where this device last used it, if it recorded that.
    pub folder: Option<PathBuf>,
    /// That folder still holds this store: its local state is in use.
    pub in_use: bool,
    /// Changes this device wrote that it keeps until other devices have them (its outbox).
    pub unpublished: usize,
    /// Copies of history kept after a compaction until other devices verified it.
    pub retained: usize,
    /// It holds this device's view of the document (a copy of its whole history).
    pub view: bool,
    /// Where this device keeps the key of an encrypted store, if it keeps one (the OS
    /// keychain's item goes with the rest when the store is forgotten).
    pub key: Option<super::keys::KeyPlace>,
}

/// Every store the state dir of `options` holds local state for, by id.
pub fn local_stores(options: &crate::Options) -> Result<Vec<LocalStore>> {
    let state = StateDir::resolve(options.state_dir.as_deref())?;
    Ok(ids(&state).iter().map(|id| describe(&state, id)).collect())
}

/// The store this device holds local state for whose id is `id`, or the one whose id
/// starts with it (4 hex digits or more); [`Error::UnknownStore`] otherwise.
pub fn local_store(options: &crate::Options, id: &str) -> Result<LocalStore> {
    let state = StateDir::resolve(options.state_dir.as_deref())?;
    find(&state, id)
}

/// The ids of the stores `state` holds local state for, sorted.
fn ids(state: &StateDir) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(state.root.join(names::STORES))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn describe(state: &StateDir, id: &str) -> LocalStore {
    let dir = state.store_dir(id);
    let folder = std::fs::read_to_string(dir.join(names::FOLDER))
        .ok()
        .map(|t| PathBuf::from(t.trim_end_matches('\n')));
    let in_use = folder
        .as_ref()
        .is_some_and(|f| crate::folder::read_marker(f).is_ok_and(|m| m.store_id == id));
    let count = |sub: &str| {
        walkdir::WalkDir::new(dir.join(sub))
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .count()
    };
    LocalStore {
        id: id.to_string(),
        folder,
        in_use,
        unpublished: count(names::OUTBOX),
        retained: count(names::RETENTION),
        view: dir.join(names::HELD).exists() || dir.join(names::VIEW).exists(),
        key: state.key_place(id),
    }
}

/// Deletes this device's local state of the store `id` (or the one store whose id starts
/// with it): its cache and view, its writer record, its outbox and retention copies, and an
/// encrypted store's key (its item in the OS keychain too, when it is kept there). What it
/// describes is gone from this device for good, so the caller asks first. Refused while the
/// folder this device used still holds the store ([`Refusal::InUse`]);
/// [`Error::UnknownStore`] when no store's state matches.
pub fn forget_local(options: &crate::Options, id: &str) -> Result<LocalStore> {
    let state = StateDir::resolve(options.state_dir.as_deref())?;
    let found = find(&state, id)?;
    if found.in_use {
        return Err(Error::Refused(Refusal::InUse {
            folder: found.folder.clone().unwrap_or_default(),
        }));
    }
    let dir = state.store_dir(&found.id);
    // Under the writer lock, so no process of this device is writing it meanwhile.
    let lock = state.lock(&found.id)?;
    // The keychain's item first: the state that names it goes after it.
    state.forget_keychain_item(&found.id);
    crate::fs::remove_local_tree(&dir).map_err(Error::io(&dir))?;
    drop(lock);
    Ok(found)
}

/// See [`local_store`].
fn find(state: &StateDir, id: &str) -> Result<LocalStore> {
    let all: Vec<LocalStore> = ids(state)
        .into_iter()
        .filter(|name| name == id || (id.len() >= 4 && name.starts_with(id)))
        .map(|name| describe(state, &name))
        .collect();
    match <[LocalStore; 1]>::try_from(all) {
        Ok([one]) => Ok(one),
        Err(all) => Err(Error::UnknownStore {
            id: id.to_string(),
            matches: all.len(),
        }),
    }
}
