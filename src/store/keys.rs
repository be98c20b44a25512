//! An encrypted store's key on this device: export, import, and passphrase wraps kept in
//! the folder (`keys/`, docs/FORMAT.md §16).

use crate::error::{Error, Refusal, Result};
use crate::fs;
use crate::seal::{self, StoreKey};
use crate::store::Store;

impl Store {
    /// The key of an encrypted store, when this device has it: hand it to another device
    /// as [`StoreKey::to_text`] or [`StoreKey::to_words`] (`crdtdir key export`).
    ///
    /// [`StoreKey::to_text`]: crate::StoreKey::to_text
    /// [`StoreKey::to_words`]: crate::StoreKey::to_words
    pub fn key(&self) -> Option<StoreKey> {
        self.inner.key.get().map(|(k, _)| k.clone())
    }

    /// Gives this device the key of an encrypted store (from [`Store::key`] on a device that
    /// has it): kept in local state, owner-only. A key that is not this store's is refused
    /// with [`Error::WrongKey`] and nothing is kept; a store that is not encrypted refuses.
    pub fn import_key(&self, key: &StoreKey) -> Result<()> {
        let Some(check) = &self.inner.marker.sealed else {
            return Err(Error::Refused(Refusal::NotEncrypted));
        };
        if key.check(&self.inner.marker.store_id) != *check {
            return Err(Error::WrongKey {
                reason: "this key is not the key of this store (its check does not match the store marker)".into(),
            });
        }
        if let Some((have, _)) = self.inner.key.get() {
            if have == key {
                return Ok(());
            }
        }
        self.inner.state.keep_key(key)?;
        // Set once: a store that already has its key keeps it (it is the same key, checked
        // against the marker above).
        let _ = self.inner.key.set((
            key.clone(),
            crate::seal::Seal::new(key, &self.inner.marker.store_id),
        ));
        Ok(())
    }

    /// Wraps this store's key with `passphrase` (Argon2id) into a file of its own in the
    /// folder, `keys/<hash>.key`: another device then joins with the passphrase alone
    /// ([`Store::import_passphrase`]). Several passphrases may wrap one key; each call adds
    /// one. Returns the file's path in the store. Needs the key and a passphrase of at least
    /// 8 characters; refused on a read-only device. The file is only as strong as the passphrase: anyone holding the folder can
    /// try passphrases against it.
    pub fn add_passphrase(&self, passphrase: &str) -> Result<String> {
        self.check_writable()?;
        let Some((key, _)) = self.inner.key.get() else {
            return Err(Error::Refused(Refusal::NotEncrypted));
        };
        if passphrase.chars().count() < 8 {
            return Err(Error::Refused(Refusal::ShortPassphrase));
        }
        let bytes = seal::wrap_key(key, &self.inner.marker.store_id, passphrase)
            .map_err(Error::io(crate::folder::layout::keys(&self.inner.root)))?;
        let dir = crate::folder::layout::keys(&self.inner.root);
        fs::create_dir_durably(&dir).map_err(Error::io(&dir))?;
        let name = format!("{}.key", &blake3::hash(&bytes).to_hex()[..32]);
        let owner = self
            .inner
            .state
            .read_record()
            .map_or_else(|| self.inner.marker.store_id.clone(), |r| r.actor);
        let staged = fs::stage(&dir, &owner, &bytes).map_err(Error::io(&dir))?;
        fs::publish_new(staged, &dir.join(&name)).map_err(Error::io(dir.join(&name)))?;
        Ok(crate::folder::layout::key_rel(&name))
    }

    /// The passphrase wraps in the folder (`keys/`), by id (the name of the file without
    /// `.key`), in id order. None in a store that is not encrypted.
    pub fn passphrases(&self) -> Vec<Passphrase> {
        let mut out: Vec<Passphrase> = self
            .key_files()
            .into_iter()
            .filter_map(|path| {
                let name = path.file_name()?.to_string_lossy().into_owned();
                let id = name.strip_suffix(".key")?.to_string();
                Some(Passphrase {
                    file: crate::folder::layout::key_rel(&name),
                    id,
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Removes the passphrase wrap `id` (see [`Store::passphrases`]) from the folder: that
    /// passphrase no longer lets a device join. Devices that have the key keep it.
    /// [`Error::UnknownPassphrase`] when there is none with that id; refused on a device
    /// that must not write.
    pub fn remove_passphrase(&self, id: &str) -> Result<()> {
        self.check_writable()?;
        let Some(found) = self.passphrases().into_iter().find(|p| p.id == id) else {
            return Err(Error::UnknownPassphrase { id: id.to_string() });
        };
        let path = self.inner.root.join(&found.file);
        crate::fs::remove(&path).map_err(Error::io(&path))?;
        crate::fs::sync_dir(&crate::folder::layout::keys(&self.inner.root))
            .map_err(Error::io(crate::folder::layout::keys(&self.inner.root)))
    }

    /// The `keys/*.key` files (regular files only), in name order.
    fn key_files(&self) -> Vec<std::path::PathBuf> {
        let dir = crate::folder::layout::keys(&self.inner.root);
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| e.file_name().to_string_lossy().ends_with(".key"))
            .map(|e| e.path())
            .collect();
        files.sort();
        files
    }

    /// Gives this device the store's key from a passphrase some device added
    /// ([`Store::add_passphrase`]): every `keys/*.key` file is tried. [`Error::WrongKey`]
    /// when none opens with it; nothing is kept then.
    pub fn import_passphrase(&self, passphrase: &str) -> Result<()> {
        if !self.is_encrypted() {
            return Err(Error::Refused(Refusal::NotEncrypted));
        }
        let files = self.key_files();
        if files.is_empty() {
            return Err(Error::Refused(Refusal::NoPassphrases));
        }
        for file in files {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            if let Ok(key) = seal::unwrap_key(&bytes, &self.inner.marker.store_id, passphrase) {
                if self.import_key(&key).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(Error::WrongKey {
            reason: "this passphrase opens none of the store's key files (keys/)".into(),
        })
    }
}

/// A passphrase wrap of the store's key in the folder (`keys/`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Passphrase {
    /// Its id: the name of its file without `.key`.
    pub id: String,
    /// Its path in the store.
    pub file: String,
}
