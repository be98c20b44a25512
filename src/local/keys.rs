//! Where this device keeps an encrypted store's keys: owner-only files in local state
//! (`key`, `old-keys`), or one item in the OS keychain that local state names (`keychain`,
//! see `keychain.rs`). Either way the current key and every older key are kept together, and
//! no key is ever only in memory.

use serde::Serialize;

use super::{names, StateDir};
use crate::error::{Error, Result};
use crate::fs;
use crate::seal::StoreKey;

use super::keychain;

/// Where a device keeps an encrypted store's keys ([`crate::Store::key_place`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeyPlace {
    /// Owner-only files in the device's local state (the default).
    File,
    /// The OS keychain (cargo feature `keychain`): the Secret Service on Linux, the login
    /// keychain on macOS, the Credential Manager on Windows. Local state only names the
    /// item.
    Keychain,
}

impl std::fmt::Display for KeyPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyPlace::File => "file",
            KeyPlace::Keychain => "keychain",
        })
    }
}

/// The keys a device keeps: the one it seals with, and the older ones (a rotation's).
pub(crate) struct Kept {
    pub(crate) key: StoreKey,
    pub(crate) older: Vec<StoreKey>,
}

/// The `keychain` file: the item's account, and the check of the key it holds first.
struct Pointer {
    account: String,
    check: String,
}

/// Keys as lines of text, one key per line.
fn lines<'k>(keys: impl IntoIterator<Item = &'k StoreKey>) -> String {
    keys.into_iter()
        .map(|k| format!("{}\n", k.to_text()))
        .collect()
}

/// Deletes the keychain item `account`; a keychain that does not answer is logged.
fn delete_item(account: &str) {
    if let Err(e) = keychain::delete(account) {
        tracing::warn!(account, error = %e, "the keys' item in the OS keychain was not deleted (delete it by hand)");
    }
}

impl StateDir {
    fn pointer(&self, store_id: &str) -> Option<Pointer> {
        let text = std::fs::read_to_string(self.store_dir(store_id).join(names::KEYCHAIN)).ok()?;
        let mut lines = text.lines();
        let account = lines.next()?.to_string();
        let check = lines.next().unwrap_or("").to_string();
        (!account.is_empty()).then_some(Pointer { account, check })
    }

    /// The account of this state dir's keychain item for `store_id`: the store id and a
    /// digest of the state dir's path, so two state dirs of one user (two devices on one
    /// machine) never share an item, and a retry after a crash reuses the one it made.
    fn account(&self, store_id: &str) -> String {
        let root = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        let digest = blake3::hash(root.to_string_lossy().as_bytes());
        format!("{store_id}/{}", &digest.to_hex()[..16])
    }

    /// Where this device keeps the keys of `store_id`, if it keeps any.
    pub(crate) fn key_place(&self, store_id: &str) -> Option<KeyPlace> {
        if self.pointer(store_id).is_some() {
            return Some(KeyPlace::Keychain);
        }
        self.store_dir(store_id)
            .join(names::KEY)
            .exists()
            .then_some(KeyPlace::File)
    }

    /// The keys of `store_id` this device keeps: `Ok(None)` when it keeps none; an error
    /// when the keychain holds them and did not give them (not running, locked, the item
    /// deleted) and no file holds them either.
    pub(crate) fn kept_keys(&self, store_id: &str) -> std::result::Result<Option<Kept>, String> {
        let files = || {
            let dir = self.store_dir(store_id);
            let text = std::fs::read_to_string(dir.join(names::KEY)).ok()?;
            let key = StoreKey::parse(&text).ok()?;
            let older = std::fs::read_to_string(dir.join(names::OLD_KEYS))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| StoreKey::parse(l).ok())
                .collect();
            Some(Kept { key, older })
        };
        let Some(pointer) = self.pointer(store_id) else {
            return Ok(files());
        };
        let from_keychain = match keychain::get(&pointer.account) {
            Ok(Some(text)) => {
                let mut keys = text.lines().map(StoreKey::parse);
                match keys.next() {
                    Some(Ok(key)) => Ok(Kept {
                        key,
                        older: keys.filter_map(|k| k.ok()).collect(),
                    }),
                    _ => Err(format!(
                        "its item {}/{} in the OS keychain holds no key",
                        keychain::SERVICE,
                        pointer.account
                    )),
                }
            }
            Ok(None) => Err(format!(
                "its item {}/{} is not in the OS keychain (deleted, or in a keyring that is locked)",
                keychain::SERVICE,
                pointer.account
            )),
            Err(e) => Err(format!("the OS keychain did not give it: {e}")),
        };
        // Files left by a move that stopped half way hold the same keys.
        match (from_keychain, files()) {
            (Ok(kept), _) => Ok(Some(kept)),
            (Err(_), Some(kept)) => Ok(Some(kept)),
            (Err(e), None) => Err(format!("this device keeps the store's key there, but {e}")),
        }
    }

    /// Whether the keys kept for `store_id` have `key` as their current one, read without
    /// asking the keychain (the key file, or the check the `keychain` file names): false
    /// after another process of the device rotated or imported one. `None`: none kept.
    pub(crate) fn keeps_as_current(&self, store_id: &str, key: &StoreKey) -> Option<bool> {
        if let Some(pointer) = self.pointer(store_id) {
            return Some(pointer.check == key.check(store_id));
        }
        let text = std::fs::read_to_string(self.store_dir(store_id).join(names::KEY)).ok()?;
        Some(StoreKey::parse(&text).is_ok_and(|kept| &kept == key))
    }

    /// Keeps the keys of `store_id` at `place`: `key` the one it seals with, `older` the
    /// ones it had (they open what they sealed). In files, the older keys are written first;
    /// in the keychain, all of them at once, read back and compared before local state
    /// names the item. Moving from one place to the other keeps the new place's copy before
    /// the old place's goes.
    pub(crate) fn keep_keys(
        &self,
        store_id: &str,
        key: &StoreKey,
        older: &[StoreKey],
        place: KeyPlace,
    ) -> Result<()> {
        let dir = self.store_dir(store_id);
        let pointer_path = dir.join(names::KEYCHAIN);
        match place {
            KeyPlace::File => {
                let old = dir.join(names::OLD_KEYS);
                fs::replace_local(&old, lines(older).as_bytes()).map_err(Error::io(&old))?;
                crate::fault::at("keys-kept-older").map_err(Error::io(&old))?;
                let path = dir.join(names::KEY);
                fs::replace_local(&path, lines([key]).as_bytes()).map_err(Error::io(&path))?;
                if let Some(pointer) = self.pointer(store_id) {
                    fs::remove(&pointer_path)
                        .and_then(|()| fs::sync_dir(&dir))
                        .map_err(Error::io(&pointer_path))?;
                    delete_item(&pointer.account);
                }
            }
            KeyPlace::Keychain => {
                let account = self
                    .pointer(store_id)
                    .map_or_else(|| self.account(store_id), |p| p.account);
                let label = format!("crdtdir: the key of store {store_id}");
                keychain::set(&account, &label, &lines(std::iter::once(key).chain(older)))
                    .map_err(|reason| Error::Keychain { reason })?;
                crate::fault::at("keys-kept-older").map_err(Error::io(&pointer_path))?;
                let text = format!("{account}\n{}\n", key.check(store_id));
                fs::replace_local(&pointer_path, text.as_bytes())
                    .map_err(Error::io(&pointer_path))?;
                for name in [names::KEY, names::OLD_KEYS] {
                    let path = dir.join(name);
                    fs::remove(&path).map_err(Error::io(&path))?;
                }
                fs::sync_dir(&dir).map_err(Error::io(&dir))?;
            }
        }
        Ok(())
    }

    /// Deletes the keychain item that holds the keys of `store_id`, if there is one (when
    /// the device forgets the store). A keychain that does not answer is logged.
    pub(crate) fn forget_keychain_item(&self, store_id: &str) {
        if let Some(pointer) = self.pointer(store_id) {
            delete_item(&pointer.account);
        }
    }
}
