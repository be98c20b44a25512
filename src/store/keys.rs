//! An encrypted store's key on this device: export, import, and passphrase wraps kept in
//! the folder (`keys/`, docs/FORMAT.md §16).

use crate::error::{Error, Refusal, Result};
use crate::fs;
use std::sync::Arc;

use crate::folders::Folder;
use crate::local::keys::KeyPlace;
use crate::seal::{self, Keyring, StoreKey};
use crate::store::Store;

/// The regular files of `keys/` whose names end with `ext`, by path in the folder, sorted.
fn files_in_keys(folder: &dyn Folder, ext: &str) -> Vec<String> {
    let mut files: Vec<String> = folder
        .list(seal::KEYS_DIR)
        .into_iter()
        .flatten()
        .filter(|e| e.is_file() && e.name.ends_with(ext))
        .map(|e| crate::folder::layout::key_rel(&e.name))
        .collect();
    files.sort();
    files
}

/// The bytes of every rotation record in `keys/` (`*.rotated`).
pub(crate) fn rotation_records(folder: &dyn Folder) -> Vec<Vec<u8>> {
    files_in_keys(folder, seal::ROTATION_EXT)
        .into_iter()
        .filter_map(|rel| folder.read(&rel).ok())
        .collect()
}

/// The keyring of store `marker` on this device: its kept key and older keys, completed by
/// the rotation records in `folder`.
pub(crate) fn load_keyring(
    state: &crate::local::StateDir,
    folder: &dyn Folder,
    marker: &crate::format::marker::Marker,
) -> Option<Keyring> {
    let check = marker.sealed.as_ref()?;
    let kept = match state.kept_keys(&marker.store_id) {
        Ok(kept) => kept?,
        Err(reason) => {
            tracing::warn!(store = %marker.store_id, %reason, "this device's key of the store is not at hand: the store is locked");
            return None;
        }
    };
    Keyring::resolve(
        &kept.key,
        &kept.older,
        &marker.store_id,
        check,
        &rotation_records(folder),
    )
}

impl Store {
    /// The key of an encrypted store, when this device has it: hand it to another device
    /// as [`StoreKey::to_text`] or [`StoreKey::to_words`] (`crdtdir key export`). After a
    /// rotation ([`Store::rotate_key`]), the newest key this device has: it opens the older
    /// keys' files too, through the rotation records in `keys/`.
    ///
    /// [`StoreKey::to_text`]: crate::StoreKey::to_text
    /// [`StoreKey::to_words`]: crate::StoreKey::to_words
    pub fn key(&self) -> Option<StoreKey> {
        self.keyring().map(|ring| ring.current().clone())
    }

    /// The key of an encrypted store, or why this device has none at hand:
    /// [`Error::Locked`] (it was never given the key), [`Error::Keychain`] (it keeps it in
    /// the OS keychain, which did not give it), [`Refusal::NotEncrypted`].
    pub fn current_key(&self) -> Result<StoreKey> {
        Ok(self.keyring_or_error()?.current().clone())
    }

    /// Where this device keeps the keys of this store; `None`: it keeps none (a store that
    /// is not encrypted, or whose key it was never given).
    pub fn key_place(&self) -> Option<KeyPlace> {
        self.inner
            .state
            .dir()
            .key_place(&self.inner.marker.store_id)
    }

    /// Moves this device's keys of the store to `place` (from files in local state to the
    /// OS keychain, or back): the new place holds them, read back and compared, before the
    /// old place lets them go. Keys already there change nothing. Refused without the key
    /// (there is nothing to move) and on a store that is not encrypted; a keychain that
    /// does not answer is [`Error::Keychain`], and the keys stay where they were.
    pub fn move_key(&self, place: KeyPlace) -> Result<()> {
        // Under the writer lock, with the keys as they are now: a rotation in another
        // process of this device neither runs meanwhile nor is undone by the move.
        let _lock = self.inner.state.lock()?;
        self.refresh_keyring();
        let ring = self.keyring_or_error()?;
        if self.key_place() == Some(place) {
            return Ok(());
        }
        self.inner
            .state
            .keep_keys(ring.current(), &ring.older(), place)
    }

    /// The error for a store this device has no key of at hand: [`Error::Keychain`] when it
    /// keeps the key in the OS keychain and the keychain did not give it, else
    /// [`Error::Locked`].
    pub(crate) fn locked(&self) -> Error {
        match self
            .inner
            .state
            .dir()
            .kept_keys(&self.inner.marker.store_id)
        {
            Err(reason) => Error::Keychain { reason },
            Ok(_) => Error::Locked,
        }
    }

    /// Where keys this device is given go: the OS keychain when the options say so, or
    /// when it keeps the store's keys there and the keychain gives them; else files (so a
    /// device whose keychain is gone imports the key again into a file).
    fn place_for_keys(&self) -> KeyPlace {
        if self.inner.keychain
            || (self.key_place() == Some(KeyPlace::Keychain) && self.keyring().is_some())
        {
            return KeyPlace::Keychain;
        }
        KeyPlace::File
    }

    /// This device's keys of the store, or why it has none at hand ([`Store::current_key`]).
    fn keyring_or_error(&self) -> Result<Arc<Keyring>> {
        if !self.is_encrypted() {
            return Err(Error::Refused(Refusal::NotEncrypted));
        }
        self.keyring().ok_or_else(|| self.locked())
    }

    /// This device's keys of the store, if it has them.
    pub(crate) fn keyring(&self) -> Option<Arc<Keyring>> {
        self.inner
            .key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_keyring(&self, ring: Keyring) {
        *self.inner.key.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(ring));
    }

    /// Gives this device the key of an encrypted store (from [`Store::key`] on a device that
    /// has it): kept in local state, owner-only. A key that is not this store's is refused
    /// with [`Error::WrongKey`] and nothing is kept; a store that is not encrypted refuses.
    /// A newer key (a rotation's) becomes the one this device seals with, and the keys it
    /// had stay (they open what they sealed); a key this device has already changes nothing.
    pub fn import_key(&self, key: &StoreKey) -> Result<()> {
        let Some(check) = &self.inner.marker.sealed else {
            return Err(Error::Refused(Refusal::NotEncrypted));
        };
        let have = self.keyring();
        if have.as_ref().is_some_and(|ring| ring.has(key)) {
            // Asked for the keychain: the keys it has move there.
            if self.inner.keychain {
                self.move_key(KeyPlace::Keychain)?;
            }
            return Ok(());
        }
        let mut older = Vec::new();
        if let Some(ring) = &have {
            older.push(ring.current().clone());
            older.extend(ring.older());
        }
        let store_id = &self.inner.marker.store_id;
        let records = rotation_records(&*self.inner.folder);
        let Some(ring) = Keyring::resolve(key, &older, store_id, check, &records) else {
            return Err(Error::WrongKey {
                reason: "this key is not a key of this store (its check does not match the store marker, and no rotation record in keys/ leads from it to the store's first key: if it is a newer key, wait for keys/ to arrive)".into(),
            });
        };
        // The keys this device had first, then the new one: none is ever only in memory.
        self.inner
            .state
            .keep_keys(key, &ring.older(), self.place_for_keys())?;
        self.set_keyring(ring);
        self.keys_changed();
        Ok(())
    }

    /// Rotates the key of an encrypted store: a new random key seals everything this
    /// device writes from now on, and a rotation record (`keys/<hash>.rotated`, the older
    /// keys sealed with the new one) lets a device that has only the new key open what the
    /// older keys sealed. Devices that have only an older key go on reading what it sealed
    /// and nothing sealed after (they report those files as sealed with a newer key); each
    /// device to keep gets the new key (`Store::key` here, [`Store::import_key`] there).
    /// Files already copied stay readable to whoever holds an older key, until a compaction
    /// seals history again with the new key.
    ///
    /// Crash-safe: the older keys are kept in local state before the new key replaces
    /// them, and the record is published before this returns (or by this device's next
    /// write, after a crash). Refused on a device that must not write, without the key, and
    /// on a store that is not encrypted.
    pub fn rotate_key(&self) -> Result<StoreKey> {
        self.check_writable()?;
        self.whole_store("key rotation")?;
        let Some(check) = self.inner.marker.sealed.clone() else {
            return Err(Error::Refused(Refusal::NotEncrypted));
        };
        let ring = self.keyring().ok_or_else(|| self.locked())?;
        // The writer lock: no write of this device seals with the old key meanwhile.
        let session = self.session(crate::store::session::Name::Check)?;
        let owner = self.owner_for(session.record.as_ref());
        let store_id = self.inner.marker.store_id.clone();
        let feature = crate::format::marker::ROTATED_FEATURE;
        crate::folder::layout::ensure_feature(
            &*self.inner.folder,
            &owner,
            feature,
            b"an encrypted store whose key was rotated: files sealed with a newer key name it (sealed-file version 2); a build that does not know rotation must not write\n",
        )
        .map_err(Error::io(crate::folder::layout::feature(&self.inner.root, feature)))?;
        let new = StoreKey::random().map_err(Error::io(self.local_dir()))?;
        let mut older = vec![ring.current().clone()];
        older.extend(ring.older());
        let place = self.key_place().unwrap_or(KeyPlace::File);
        self.inner.state.keep_keys(&new, &older, place)?;
        crate::fault::at("key-rotated-kept").map_err(Error::io(self.local_dir()))?;
        let records = rotation_records(&*self.inner.folder);
        let ring = Keyring::resolve(&new, &older, &store_id, &check, &records)
            .expect("the older keys include the store's first");
        self.set_keyring(ring);
        self.publish_rotation(&owner)?;
        if let Some(ring) = self.keyring() {
            ring.set_recorded();
        }
        drop(session);
        Ok(new)
    }

    /// Publishes the rotation record of this device's current key unless the folder has
    /// one (or the key is the store's first): after [`Store::rotate_key`], and on a write
    /// after a crash that came before it.
    pub(crate) fn publish_rotation(&self, owner: &str) -> Result<()> {
        let Some(ring) = self.keyring() else {
            return Ok(());
        };
        let Some(check) = ring.current_check() else {
            return Ok(());
        };
        let store_id = &self.inner.marker.store_id;
        let here = rotation_records(&*self.inner.folder).iter().any(|bytes| {
            seal::read_rotation(bytes).is_ok_and(|(c, _)| c == check)
                && seal::open_rotation(bytes, ring.current(), store_id).is_ok()
        });
        if here {
            return Ok(());
        }
        let bytes = seal::rotation_record(ring.current(), &ring.older(), store_id);
        let dir = crate::folder::layout::keys(&self.inner.root);
        if self.is_local() {
            fs::create_dir_durably(&dir).map_err(Error::io(&dir))?;
            // A temp of this device's interrupted publish goes first.
            let prefix = format!("{}{owner}-", fs::TEMP_PREFIX);
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) && name.ends_with(fs::TEMP_SUFFIX) {
                    fs::remove_or_log(entry.path(), "a rotation record's temp");
                }
            }
        }
        let name = format!(
            "{}{}",
            &blake3::hash(&bytes).to_hex()[..32],
            seal::ROTATION_EXT
        );
        let staged = self.stage(&dir, owner, &bytes).map_err(Error::io(&dir))?;
        crate::fault::at("rotation-staged")
            .and_then(|()| self.publish_new(staged, &dir.join(&name)).map(drop))
            .map_err(Error::io(dir.join(&name)))
    }

    /// Before a write: the keys of this device as its local state holds them now (another
    /// process of the device may have rotated or imported one), and the rotation record of
    /// the current key published if a crash came before it.
    pub(crate) fn keys_for_write(&self, record: Option<&crate::local::WriterRecord>) -> Result<()> {
        if !self.is_encrypted() {
            return Ok(());
        }
        self.refresh_keyring();
        if let Some(ring) = self.keyring().filter(|r| !r.recorded()) {
            self.publish_rotation(&self.owner_for(record))?;
            ring.set_recorded();
        }
        Ok(())
    }

    /// The keys as local state holds them now: another process of this device may have
    /// imported or rotated one since this handle loaded them.
    pub(crate) fn refresh_keyring(&self) {
        if !self.is_encrypted() {
            return;
        }
        let state = self.inner.state.dir();
        let store_id = &self.inner.marker.store_id;
        let stale = match self.keyring() {
            Some(ring) => state.keeps_as_current(store_id, ring.current()) == Some(false),
            None => state.key_place(store_id).is_some(),
        };
        if stale {
            if let Some(ring) = load_keyring(
                self.inner.state.dir(),
                &*self.inner.folder,
                &self.inner.marker,
            ) {
                self.set_keyring(ring);
                self.keys_changed();
            }
        }
    }

    /// A key this device did not have opens files its last merges skipped (and snapshots
    /// they took for unreadable), though the folder lists the same: the views it remembers
    /// in memory and in its cache files (of every document) go, so the next read merges the
    /// folder again, carrying what this device holds (`held` stays: the cache only saves
    /// time).
    fn keys_changed(&self) {
        let _ = self.inner.memory.take();
        *self.inner.memory.listed() = None;
        let root = self
            .inner
            .state
            .dir()
            .store_dir(&self.inner.marker.store_id);
        for entry in walkdir::WalkDir::new(&root)
            .max_depth(3)
            .into_iter()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy();
            let cache = name == crate::local::names::CACHE || name == crate::local::names::VIEW;
            if cache && entry.file_type().is_file() {
                fs::remove_or_log(entry.path(), "a cache made without a key imported since");
            }
        }
    }

    /// What a saved or remembered view depends on besides the folder: the checks of the
    /// keys this device has (empty in a plain store). A key imported since opens files the
    /// last merge skipped, though the folder lists the same.
    pub(crate) fn key_digest(&self) -> String {
        if !self.is_encrypted() {
            return String::new();
        }
        self.keyring()
            .map(|ring| ring.checks().join(","))
            .unwrap_or_default()
    }

    /// The name this device's temps go under: its actor, or the store id before it has one.
    fn owner_for(&self, record: Option<&crate::local::WriterRecord>) -> String {
        record.map_or_else(|| self.inner.marker.store_id.clone(), |r| r.actor.clone())
    }

    /// Wraps this store's key with `passphrase` (Argon2id) into a file of its own in the
    /// folder, `keys/<hash>.key`: another device then joins with the passphrase alone
    /// ([`Store::import_passphrase`]). Several passphrases may wrap one key; each call adds
    /// one. Returns the file's path in the store. Needs the key and a passphrase of at least
    /// 8 characters; refused on a read-only device. The file is only as strong as the passphrase: anyone holding the folder can
    /// try passphrases against it.
    pub fn add_passphrase(&self, passphrase: &str) -> Result<String> {
        self.check_writable()?;
        let Some(ring) = self.keyring() else {
            return Err(Error::Refused(Refusal::NotEncrypted));
        };
        let key = ring.current();
        if passphrase.chars().count() < 8 {
            return Err(Error::Refused(Refusal::ShortPassphrase));
        }
        let bytes = seal::wrap_key(key, &self.inner.marker.store_id, passphrase)
            .map_err(Error::io(crate::folder::layout::keys(&self.inner.root)))?;
        let dir = crate::folder::layout::keys(&self.inner.root);
        if self.is_local() {
            fs::create_dir_durably(&dir).map_err(Error::io(&dir))?;
        }
        let name = format!("{}.key", &blake3::hash(&bytes).to_hex()[..32]);
        let owner = self.owner_for(self.inner.state.read_record().as_ref());
        let staged = self.stage(&dir, &owner, &bytes).map_err(Error::io(&dir))?;
        self.publish_new(staged, &dir.join(&name))
            .map_err(Error::io(dir.join(&name)))?;
        Ok(crate::folder::layout::key_rel(&name))
    }

    /// The passphrase wraps in the folder (`keys/`), by id (the name of the file without
    /// `.key`), in id order. None in a store that is not encrypted.
    pub fn passphrases(&self) -> Vec<Passphrase> {
        let mut out: Vec<Passphrase> = self
            .key_files()
            .into_iter()
            .filter_map(|file| {
                let id = file.rsplit('/').next()?.strip_suffix(".key")?.to_string();
                Some(Passphrase { file, id })
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
        self.remove_file(&path).map_err(Error::io(&path))?;
        self.sync_dir(&crate::folder::layout::keys(&self.inner.root))
            .map_err(Error::io(crate::folder::layout::keys(&self.inner.root)))
    }

    /// The `keys/*.key` files (regular files only), by path in the folder, in name order.
    fn key_files(&self) -> Vec<String> {
        files_in_keys(&*self.inner.folder, ".key")
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
            let Ok(bytes) = self.inner.folder.read(&file) else {
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
