//! End-to-end encryption of a store (docs/FORMAT.md §16): the store key, its text and word
//! forms, and the sealed envelope every encrypted file uses.
//!
//! ```text
//! store key      32 random bytes, made by `init --encrypt`, kept in this device's local
//!                state (STATE/stores/<id>/key, owner-only), handed to other devices as text
//! subkeys        BLAKE3 derive_key of the store key:
//!                  "crdtdir 2026-12 seal"       the XChaCha20-Poly1305 key
//!                  "crdtdir 2026-12 nonce"      the key of the synthetic nonce
//!                  "crdtdir 2026-12 key check"  the key of the marker's key check
//! key check      first 16 bytes (hex) of keyed BLAKE3 of the store id: in the marker, so a
//!                wrong key is refused at import, before it opens (or fails to open) anything
//! sealed bytes   nonce (24 bytes) || XChaCha20-Poly1305 ciphertext and tag
//!   aad          "crdtdir sealed 1" 0 <kind> 0 <store id> 0 <context>
//!                kind: "op" (context "<actor>/<seq>"), "beat" ("<actor>/<counter>"),
//!                "snapshot-document", "snapshot-json", "snapshot-devices" ("")
//!   nonce        first 24 bytes of keyed BLAKE3 (nonce key) of len(aad) as u64 LE || aad ||
//!                plaintext: a synthetic nonce, so sealing the same plaintext in the same
//!                place gives the same bytes (an op file stays a pure function of its change)
//!                and different plaintexts never share a nonce
//! sealed file    CBOR map {"v": 1, "sealed": bytes}: op files and beats of an encrypted store
//! text form      "crdtdir-key-1-" <64 hex digits of the key> "-" <8 hex digits: BLAKE3 of
//!                the key>: the checksum catches a mistyped or cut key
//! words          the key as 24 BIP39 English words (its own checksum)
//! keys/<hash>.key  the key wrapped with a passphrase (several may wrap one key):
//!                CBOR map {"v": 1, "kdf": "argon2id", "m": KiB, "t": passes, "p": lanes,
//!                "salt": 16 random bytes, "nonce": 24 random bytes, "sealed": bytes}
//!                sealed = XChaCha20-Poly1305(argon2id(passphrase, salt), nonce, the 32 key
//!                bytes, aad "crdtdir key wrap 1" 0 <store id>); <hash> as for snapshots
//! ```
//! The file names stay BLAKE3 of the file bytes: devices and blind relays verify files
//! without the key.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ciborium::Value;

/// The feature marker of an encrypted store: builds that do not know it read nothing they
/// can use and write nothing.
pub(crate) const FEATURE: &str = crate::format::marker::ENCRYPTED_FEATURE;
/// The sealed-file version of files sealed with the store's first key.
pub(crate) const SEALED_VERSION: u64 = 1;
/// The sealed-file version of files sealed with a key a rotation made: they name it.
pub(crate) const ROTATED_SEALED_VERSION: u64 = 2;
const TEXT_PREFIX: &str = "crdtdir-key-1-";

/// A store's encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreKey([u8; 32]);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(…)")
    }
}

impl StoreKey {
    /// A new random key.
    pub(crate) fn random() -> std::io::Result<StoreKey> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(std::io::Error::other)?;
        Ok(StoreKey(key))
    }

    /// The key as text with a checksum: `crdtdir-key-1-<64 hex>-<8 hex>`.
    pub fn to_text(&self) -> String {
        format!(
            "{TEXT_PREFIX}{}-{}",
            hex::encode(self.0),
            &blake3::hash(&self.0).to_hex()[..8]
        )
    }

    /// The key as 24 BIP39 English words.
    pub fn to_words(&self) -> String {
        bip39::Mnemonic::from_entropy(&self.0)
            .expect("32 bytes are a valid BIP39 entropy")
            .to_string()
    }

    /// Reads a key from its text form or its 24 words (whitespace and case do not matter).
    pub fn parse(input: &str) -> Result<StoreKey, String> {
        let flat: String = input.split_whitespace().collect::<Vec<_>>().join(" ");
        let lower = flat.to_lowercase();
        if let Some(rest) = lower.replace(' ', "").strip_prefix(TEXT_PREFIX) {
            let (hex_key, sum) = rest
                .split_once('-')
                .ok_or("the key text is cut short (no checksum)")?;
            let bytes: [u8; 32] = hex::decode(hex_key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or("the key text does not hold 64 hex digits")?;
            if blake3::hash(&bytes).to_hex()[..8] != *sum {
                return Err(
                    "the key text's checksum does not match (a typo, or a cut key?)".into(),
                );
            }
            return Ok(StoreKey(bytes));
        }
        let count = lower.split(' ').filter(|w| !w.is_empty()).count();
        if count != 24 {
            return Err(format!(
                "not a crdtdir key: expected the key text ({TEXT_PREFIX}…) or 24 recovery words, got {count} word(s)"
            ));
        }
        let words = bip39::Mnemonic::parse_normalized(&lower)
            .map_err(|e| format!("the 24 recovery words do not decode ({e}): a typo?"))?;
        let entropy = words.to_entropy();
        let bytes: [u8; 32] = entropy
            .try_into()
            .map_err(|_| "recovery words of a store key are 24 words".to_string())?;
        Ok(StoreKey(bytes))
    }

    fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0)
    }

    /// The key check the marker of store `store_id` carries.
    pub(crate) fn check(&self, store_id: &str) -> String {
        let k = self.derive("crdtdir 2026-12 key check");
        hex::encode(&blake3::keyed_hash(&k, store_id.as_bytes()).as_bytes()[..16])
    }
}

/// Seals and opens the files of one store.
pub(crate) struct Seal {
    aead: XChaCha20Poly1305,
    nonce_key: [u8; 32],
    /// Keys the names documents have in file names (docs/FORMAT.md §18).
    name_key: [u8; 32],
    store_id: String,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seal(…)")
    }
}

impl Seal {
    pub(crate) fn new(key: &StoreKey, store_id: &str) -> Seal {
        let seal_key = key.derive("crdtdir 2026-12 seal");
        Seal {
            aead: XChaCha20Poly1305::new(&seal_key.into()),
            nonce_key: key.derive("crdtdir 2026-12 nonce"),
            name_key: key.derive("crdtdir 2026-12 document name"),
            store_id: store_id.to_string(),
        }
    }

    /// The name document `id` has in file names of an encrypted store: 32 hex digits of a
    /// keyed hash, so the folder shows no document id (docs/FORMAT.md §18).
    pub(crate) fn doc_name(&self, id: &str) -> String {
        blake3::keyed_hash(&self.name_key, id.as_bytes()).to_hex()[..32].to_string()
    }

    fn aad(&self, kind: &str, context: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(48 + kind.len() + context.len());
        aad.extend_from_slice(b"crdtdir sealed 1\0");
        aad.extend_from_slice(kind.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.store_id.as_bytes());
        aad.push(0);
        aad.extend_from_slice(context.as_bytes());
        aad
    }

    /// Seals `plain` as a `kind` of file at `context`.
    pub(crate) fn seal(&self, kind: &str, context: &str, plain: &[u8]) -> Vec<u8> {
        let aad = self.aad(kind, context);
        let mut h = blake3::Hasher::new_keyed(&self.nonce_key);
        h.update(&(aad.len() as u64).to_le_bytes());
        h.update(&aad);
        h.update(plain);
        let nonce: [u8; 24] = h.finalize().as_bytes()[..24].try_into().expect("24 bytes");
        let nonce = XNonce::from(nonce);
        let sealed = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any length a file can have");
        let mut out = Vec::with_capacity(24 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`Seal::seal`] made for the same kind and context; `Err` when the key is
    /// not this store's, or the bytes were changed, or they belong elsewhere.
    pub(crate) fn open(&self, kind: &str, context: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let refused = || {
            "does not open with the store key (damaged, moved from another actor or seq, from another store, or sealed with another key)".to_string()
        };
        if sealed.len() < 24 + 16 {
            return Err(refused());
        }
        let (nonce, body) = sealed.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().expect("24 bytes");
        let aad = self.aad(kind, context);
        self.aead
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| refused())
    }
}

/// The context of a sealed op file or heartbeat: `<actor>/<seq>` or `<actor>/<counter>`.
pub(crate) fn context(actor: &str, n: u64) -> String {
    format!("{actor}/{n}")
}

/// The context of a sealed op file of document `doc` (`None`: the root document, whose
/// context is format 1's `<actor>/<seq>`): `<doc>/<actor>/<seq>`, so a file moved to
/// another document does not open.
pub(crate) fn op_context(doc: Option<&str>, actor: &str, seq: u64) -> String {
    match doc {
        None => context(actor, seq),
        Some(doc) => format!("{doc}/{actor}/{seq}"),
    }
}

/// The sealed op file, in the encrypted store `store_id` whose key is `key`, of a plain op
/// file (`plain`) of the change at `actor`/`seq`: for tools and benchmarks that build stores
/// file by file. Stores write their own files.
#[doc(hidden)]
pub fn seal_op_file(
    key: &StoreKey,
    store_id: &str,
    actor: &str,
    seq: u64,
    plain: &[u8],
) -> Vec<u8> {
    wrap(
        None,
        Seal::new(key, store_id).seal("op", &context(actor, seq), plain),
    )
}

/// Folder of passphrase-wrapped keys.
pub(crate) const KEYS_DIR: &str = "keys";
/// Argon2id cost of a new wrap: 64 MiB, 3 passes, 1 lane (RFC 9106's second choice).
const WRAP_COST: (u32, u32, u32) = (64 * 1024, 3, 1);

fn passphrase_key(
    passphrase: &str,
    salt: &[u8],
    (m, t, p): (u32, u32, u32),
) -> Result<[u8; 32], String> {
    let params = argon2::Params::new(m, t, p, Some(32)).map_err(|e| e.to_string())?;
    let mut out = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn wrap_aad(store_id: &str) -> Vec<u8> {
    let mut aad = b"crdtdir key wrap 1\0".to_vec();
    aad.extend_from_slice(store_id.as_bytes());
    aad
}

/// `key` wrapped with `passphrase`: the bytes of a `keys/<hash>.key` file.
pub(crate) fn wrap_key(
    key: &StoreKey,
    store_id: &str,
    passphrase: &str,
) -> std::io::Result<Vec<u8>> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut salt).map_err(std::io::Error::other)?;
    getrandom::fill(&mut nonce).map_err(std::io::Error::other)?;
    let kek = passphrase_key(passphrase, &salt, WRAP_COST).map_err(std::io::Error::other)?;
    let sealed = XChaCha20Poly1305::new(&kek.into())
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &key.0,
                aad: &wrap_aad(store_id),
            },
        )
        .map_err(|_| std::io::Error::other("sealing the key failed"))?;
    let (m, t, p) = WRAP_COST;
    let text = |s: &str| Value::Text(s.into());
    let value = Value::Map(vec![
        (text("v"), Value::Integer(1.into())),
        (text("kdf"), text("argon2id")),
        (text("m"), Value::Integer(m.into())),
        (text("t"), Value::Integer(t.into())),
        (text("p"), Value::Integer(p.into())),
        (text("salt"), Value::Bytes(salt.to_vec())),
        (text("nonce"), Value::Bytes(nonce.to_vec())),
        (text("sealed"), Value::Bytes(sealed)),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).expect("writing CBOR to a Vec cannot fail");
    Ok(out)
}

/// A `keys/<hash>.key` file, read but not opened.
struct KeyFile {
    cost: (u32, u32, u32),
    salt: Vec<u8>,
    nonce: [u8; 24],
    sealed: Vec<u8>,
}

impl KeyFile {
    fn parse(file: &[u8]) -> Result<KeyFile, String> {
        let Ok(Value::Map(entries)) = ciborium::from_reader::<Value, _>(file) else {
            return Err("not a key file".into());
        };
        let field = |name: &str| crate::format::cbor::field(&entries, name);
        let int = |name: &str| match field(name) {
            Some(Value::Integer(i)) => u32::try_from(*i).map_err(|_| format!("bad {name}")),
            _ => Err(format!("no {name}")),
        };
        let bytes = |name: &str| match field(name) {
            Some(Value::Bytes(b)) => Ok(b.clone()),
            _ => Err(format!("no {name}")),
        };
        if int("v")? != 1 || !matches!(field("kdf"), Some(Value::Text(k)) if k == "argon2id") {
            return Err("a key file of another version or kind".into());
        }
        // Costs come from the file: a forged file must not make a reader spend hours or
        // gigabytes.
        let cost = (int("m")?, int("t")?, int("p")?);
        if cost.0 > 1024 * 1024 || cost.1 > 16 || cost.2 > 16 {
            return Err("a key file asking for an unreasonable Argon2 cost".into());
        }
        let nonce: [u8; 24] = bytes("nonce")?.try_into().map_err(|_| "bad nonce")?;
        let sealed = bytes("sealed")?;
        // The 32 key bytes and the 16-byte tag.
        if sealed.len() != 48 {
            return Err("it does not hold a sealed 32-byte key".into());
        }
        Ok(KeyFile {
            cost,
            salt: bytes("salt")?,
            nonce,
            sealed,
        })
    }
}

/// Checks a `keys/<hash>.key` file's structure without a passphrase (`crdtdir check`).
pub(crate) fn check_key_file(file: &[u8]) -> Result<(), String> {
    KeyFile::parse(file).map(|_| ())
}

/// The key a `keys/<hash>.key` file wraps, if `passphrase` opens it.
pub(crate) fn unwrap_key(
    file: &[u8],
    store_id: &str,
    passphrase: &str,
) -> Result<StoreKey, String> {
    let file = KeyFile::parse(file)?;
    let kek = passphrase_key(passphrase, &file.salt, file.cost)?;
    let plain = XChaCha20Poly1305::new(&kek.into())
        .decrypt(
            &XNonce::from(file.nonce),
            Payload {
                msg: &file.sealed,
                aad: &wrap_aad(store_id),
            },
        )
        .map_err(|_| "the passphrase does not open it".to_string())?;
    let key: [u8; 32] = plain
        .try_into()
        .map_err(|_| "it does not hold a 32-byte key")?;
    Ok(StoreKey(key))
}

/// A sealed file: `{"v": 1, "sealed": bytes}` when sealed with the store's first key,
/// `{"v": 2, "key": <key check>, "sealed": bytes}` with a key a rotation made.
pub(crate) fn wrap(key: Option<&str>, sealed: Vec<u8>) -> Vec<u8> {
    let text = |s: &str| Value::Text(s.into());
    let value = match key {
        None => Value::Map(vec![
            (text("v"), Value::Integer(SEALED_VERSION.into())),
            (text("sealed"), Value::Bytes(sealed)),
        ]),
        Some(check) => Value::Map(vec![
            (text("v"), Value::Integer(ROTATED_SEALED_VERSION.into())),
            (text("key"), text(check)),
            (text("sealed"), Value::Bytes(sealed)),
        ]),
    };
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// The bytes of a sealed file and the check of the key that sealed them (`None`: the
/// store's first key).
pub(crate) struct Sealed {
    pub(crate) key: Option<String>,
    pub(crate) bytes: Vec<u8>,
}

/// What a file holds: its sealed bytes if it is a sealed file, `None` if it is not one (a
/// plain file). `Err` for a sealed file of a newer version.
pub(crate) fn unwrap(bytes: &[u8]) -> Result<Option<Sealed>, crate::format::DecodeError> {
    let mut cursor = std::io::Cursor::new(bytes);
    let Ok(Value::Map(entries)) = ciborium::from_reader::<Value, _>(&mut cursor) else {
        return Ok(None);
    };
    if cursor.position() as usize != bytes.len() {
        return Ok(None);
    }
    let field = |name: &str| crate::format::cbor::field(&entries, name);
    let Some(Value::Bytes(sealed)) = field("sealed") else {
        return Ok(None);
    };
    let version = match field("v") {
        Some(Value::Integer(i)) => u64::try_from(*i).ok(),
        _ => None,
    };
    match version {
        Some(SEALED_VERSION) => Ok(Some(Sealed {
            key: None,
            bytes: sealed.clone(),
        })),
        Some(ROTATED_SEALED_VERSION) => match field("key") {
            Some(Value::Text(check)) if is_check(check) => Ok(Some(Sealed {
                key: Some(check.clone()),
                bytes: sealed.clone(),
            })),
            _ => Err("sealed file without a valid key check".into()),
        },
        Some(v) if v > ROTATED_SEALED_VERSION => Err(crate::format::DecodeError::Newer {
            what: "sealed file",
            found: v,
            known: ROTATED_SEALED_VERSION,
        }),
        _ => Err("sealed file with a bad version".into()),
    }
}

/// A key check as files carry it: 32 lowercase hex digits.
fn is_check(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The keys of an encrypted store this device holds: the current one, which seals what this
/// device writes, and every older one a rotation replaced, which open what they sealed. Each
/// is known by its key check; the first key of the store is the one whose check is in the
/// store marker.
pub(crate) struct Keyring {
    /// (check, key, seal), the current key first.
    keys: Vec<(String, StoreKey, Seal)>,
    /// Index of the store's first key.
    root: usize,
    /// See [`Keyring::recorded`].
    recorded: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(…)")
    }
}

impl Keyring {
    /// The keyring of a device whose current key is `current` and which keeps `older`,
    /// completed with the older keys the rotation records (`keys/*.rotated`, their bytes in
    /// `records`) give to keys it has. `None` unless some key it has is the store's first
    /// (its check is `marker_check`): a key of another store, or one whose rotation record
    /// has not arrived.
    pub(crate) fn resolve(
        current: &StoreKey,
        older: &[StoreKey],
        store_id: &str,
        marker_check: &str,
        records: &[Vec<u8>],
    ) -> Option<Keyring> {
        let mut keys: Vec<StoreKey> = vec![current.clone()];
        for k in older {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        // Records open with the key they name; each may bring keys that open others.
        let mut grew = true;
        while grew {
            grew = false;
            for bytes in records {
                let Ok((check, _)) = read_rotation(bytes) else {
                    continue;
                };
                let Some(opener) = keys.iter().find(|k| k.check(store_id) == check) else {
                    continue;
                };
                if let Ok(found) = open_rotation(bytes, opener, store_id) {
                    for k in found {
                        if !keys.contains(&k) {
                            keys.push(k);
                            grew = true;
                        }
                    }
                }
            }
        }
        let keys: Vec<(String, StoreKey, Seal)> = keys
            .into_iter()
            .map(|k| (k.check(store_id), Seal::new(&k, store_id), k))
            .map(|(check, seal, k)| (check, k, seal))
            .collect();
        let root = keys.iter().position(|(check, ..)| check == marker_check)?;
        let recorded = root == 0
            || records.iter().any(|bytes| {
                read_rotation(bytes).is_ok_and(|(c, _)| c == keys[0].0)
                    && open_rotation(bytes, &keys[0].1, store_id).is_ok()
            });
        Some(Keyring {
            keys,
            root,
            recorded: recorded.into(),
        })
    }

    /// The key this device seals with.
    pub(crate) fn current(&self) -> &StoreKey {
        &self.keys[0].1
    }

    /// The seal of the current key.
    pub(crate) fn seal(&self) -> &Seal {
        &self.keys[0].2
    }

    /// The check files sealed with the current key carry: `None` for the store's first key
    /// (files of sealed-file version 1, as before any rotation).
    pub(crate) fn current_check(&self) -> Option<&str> {
        (self.root != 0).then(|| self.keys[0].0.as_str())
    }

    /// The seal of the key with this check (`None`: the store's first key), if this device
    /// has it.
    pub(crate) fn seal_for(&self, check: Option<&str>) -> Option<&Seal> {
        match check {
            None => Some(&self.keys[self.root].2),
            Some(c) => self.keys.iter().find(|(k, ..)| k == c).map(|(.., s)| s),
        }
    }

    /// The seal of the store's first key: document names in file names stay what it made
    /// them (docs/FORMAT.md §18).
    pub(crate) fn root_seal(&self) -> &Seal {
        &self.keys[self.root].2
    }

    /// The seals of every key this device has, the current one first.
    pub(crate) fn seals(&self) -> impl Iterator<Item = &Seal> {
        self.keys.iter().map(|(.., s)| s)
    }

    /// The checks of every key this device has, sorted: what the cache's view depends on
    /// besides the folder (a new key opens files the last merge skipped).
    pub(crate) fn checks(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.keys.iter().map(|(c, ..)| c.as_str()).collect();
        out.sort_unstable();
        out
    }

    /// Every key but the current one.
    pub(crate) fn older(&self) -> Vec<StoreKey> {
        self.keys[1..].iter().map(|(_, k, _)| k.clone()).collect()
    }

    /// True when this device has `key`.
    pub(crate) fn has(&self, key: &StoreKey) -> bool {
        self.keys.iter().any(|(_, k, _)| k == key)
    }

    /// True when the current key is the store's first, or the folder had its rotation
    /// record when this keyring was made (or one was published since).
    pub(crate) fn recorded(&self) -> bool {
        self.recorded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current key's rotation record is in the folder now.
    pub(crate) fn set_recorded(&self) {
        self.recorded
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The extension of a rotation record in `keys/`.
pub(crate) const ROTATION_EXT: &str = ".rotated";

/// A rotation record (`keys/<hash>.rotated`): the keys older than `new`, sealed with `new`,
/// so a device that has only `new` opens everything sealed before the rotation.
/// CBOR map {"v": 1, "key": <check of new>, "sealed": sealed bytes (kind "rotation",
/// context the check, plaintext the older keys' 32 bytes each, in order)}.
pub(crate) fn rotation_record(new: &StoreKey, older: &[StoreKey], store_id: &str) -> Vec<u8> {
    let check = new.check(store_id);
    let plain: Vec<u8> = older.iter().flat_map(|k| k.0).collect();
    let sealed = Seal::new(new, store_id).seal("rotation", &check, &plain);
    let text = |s: &str| Value::Text(s.into());
    let value = Value::Map(vec![
        (text("v"), Value::Integer(1.into())),
        (text("key"), text(&check)),
        (text("sealed"), Value::Bytes(sealed)),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// A rotation record's key check and sealed bytes, read without a key (`crdtdir check`).
pub(crate) fn read_rotation(bytes: &[u8]) -> Result<(String, Vec<u8>), String> {
    let Ok(Value::Map(entries)) = ciborium::from_reader::<Value, _>(bytes) else {
        return Err("not a rotation record".into());
    };
    let field = |name: &str| crate::format::cbor::field(&entries, name);
    if !matches!(field("v"), Some(Value::Integer(i)) if u64::try_from(*i) == Ok(1)) {
        return Err("a rotation record of another version".into());
    }
    let (Some(Value::Text(check)), Some(Value::Bytes(sealed))) = (field("key"), field("sealed"))
    else {
        return Err("a rotation record without its key check or keys".into());
    };
    if !is_check(check) || (sealed.len() - 40.min(sealed.len())) % 32 != 0 || sealed.len() < 40 {
        return Err("a rotation record whose fields do not read".into());
    }
    Ok((check.clone(), sealed.clone()))
}

/// The older keys a rotation record holds, opened with `key` (the one it names).
pub(crate) fn open_rotation(
    bytes: &[u8],
    key: &StoreKey,
    store_id: &str,
) -> Result<Vec<StoreKey>, String> {
    let (check, sealed) = read_rotation(bytes)?;
    let plain = Seal::new(key, store_id).open("rotation", &check, &sealed)?;
    Ok(plain
        .chunks_exact(32)
        .map(|c| StoreKey(c.try_into().expect("32 bytes")))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_words_round_trip_and_catch_typos() {
        let key = StoreKey::random().unwrap();
        let text = key.to_text();
        assert_eq!(StoreKey::parse(&text).unwrap(), key);
        assert_eq!(
            StoreKey::parse(&format!("  {}\n", text.to_uppercase())).unwrap(),
            key
        );
        let words = key.to_words();
        assert_eq!(words.split(' ').count(), 24);
        assert_eq!(StoreKey::parse(&words).unwrap(), key);
        assert_eq!(StoreKey::parse(&words.replace(' ', "\n  ")).unwrap(), key);
        // One digit changed: the checksum catches it.
        let i = TEXT_PREFIX.len() + 5;
        let mut typo = text.clone().into_bytes();
        typo[i] = if typo[i] == b'0' { b'1' } else { b'0' };
        assert!(StoreKey::parse(&String::from_utf8(typo).unwrap()).is_err());
        assert!(StoreKey::parse(&text[..text.len() - 3]).is_err());
        // One word swapped for another: the BIP39 checksum catches it (almost always; this
        // swaps the first word for a different one and checks the key changed or failed).
        let mut w: Vec<&str> = words.split(' ').collect();
        w[0] = if w[0] == "abandon" {
            "ability"
        } else {
            "abandon"
        };
        assert!(StoreKey::parse(&w.join(" ")).map_or(true, |k| k != key));
        assert!(StoreKey::parse("hello").is_err());
    }

    #[test]
    fn sealing_is_deterministic_and_bound_to_its_place() {
        let key = StoreKey::random().unwrap();
        let seal = Seal::new(&key, "s1");
        let a = seal.seal("op", "aa/1", b"change");
        assert_eq!(a, seal.seal("op", "aa/1", b"change"), "a pure function");
        assert_ne!(a, seal.seal("op", "aa/2", b"change"));
        assert_ne!(
            a[..24],
            seal.seal("op", "aa/1", b"chango")[..24],
            "nonces differ"
        );
        assert_eq!(seal.open("op", "aa/1", &a).unwrap(), b"change");
        assert!(seal.open("op", "aa/2", &a).is_err(), "moved to another seq");
        assert!(
            seal.open("op", "bb/1", &a).is_err(),
            "moved to another actor"
        );
        assert!(seal.open("beat", "aa/1", &a).is_err(), "another kind");
        assert!(
            Seal::new(&key, "s2").open("op", "aa/1", &a).is_err(),
            "another store"
        );
        let other = StoreKey::random().unwrap();
        assert!(
            Seal::new(&other, "s1").open("op", "aa/1", &a).is_err(),
            "another key"
        );
        for i in 0..a.len() {
            let mut flipped = a.clone();
            flipped[i] ^= 1;
            assert!(seal.open("op", "aa/1", &flipped).is_err(), "bit {i}");
        }
        let file = wrap(None, a.clone());
        let read = unwrap(&file).unwrap().unwrap();
        assert_eq!((read.key, read.bytes), (None, a.clone()));
        let check = other.check("s1");
        let read = unwrap(&wrap(Some(&check), a.clone())).unwrap().unwrap();
        assert_eq!((read.key, read.bytes), (Some(check), a));
        assert!(unwrap(b"plain").unwrap().is_none());
        assert_ne!(key.check("s1"), other.check("s1"));
    }

    /// A keyring resolves through rotation records, transitively, only to keys of the
    /// store: a key of another store, a record it cannot open, or a forged one give nothing.
    #[test]
    fn keyrings_follow_rotation_records_back_to_the_first_key() {
        let [k0, k1, k2] = [(); 3].map(|_| StoreKey::random().unwrap());
        let marker = k0.check("s1");
        let r1 = rotation_record(&k1, std::slice::from_ref(&k0), "s1");
        let r2 = rotation_record(&k2, std::slice::from_ref(&k1), "s1");
        let records = vec![r2.clone(), r1.clone()];
        let ring = Keyring::resolve(&k2, &[], "s1", &marker, &records).unwrap();
        assert!(ring.has(&k0) && ring.has(&k1) && ring.has(&k2));
        assert_eq!(ring.current(), &k2);
        assert_eq!(ring.current_check(), Some(k2.check("s1").as_str()));
        assert!(ring.recorded());
        // The first key alone seals version 1 files; it cannot open the records.
        let first = Keyring::resolve(&k0, &[], "s1", &marker, &records).unwrap();
        assert_eq!(first.current_check(), None);
        assert!(!first.has(&k1));
        // Without the record that leads to k0, k2 is not this store's key.
        assert!(Keyring::resolve(&k2, &[], "s1", &marker, std::slice::from_ref(&r2)).is_none());
        // Nor in another store.
        assert!(Keyring::resolve(&k2, &[], "s2", &marker, &records).is_none());
        // A record with a flipped byte opens nothing.
        let mut forged = r1.clone();
        let at = forged.len() - 2;
        forged[at] ^= 1;
        assert!(Keyring::resolve(&k1, &[], "s1", &marker, &[forged]).is_none());
        // A rotated key without its record in the folder: not recorded yet.
        let alone = Keyring::resolve(&k1, std::slice::from_ref(&k0), "s1", &marker, &[]).unwrap();
        assert!(!alone.recorded());
    }

    #[test]
    fn passphrase_wraps_open_only_with_their_passphrase_and_store() {
        let key = StoreKey::random().unwrap();
        let file = wrap_key(&key, "s1", "a good passphrase").unwrap();
        assert_eq!(unwrap_key(&file, "s1", "a good passphrase").unwrap(), key);
        assert!(unwrap_key(&file, "s1", "a good passphrasE").is_err());
        assert!(
            unwrap_key(&file, "s2", "a good passphrase").is_err(),
            "another store"
        );
        assert_ne!(
            file,
            wrap_key(&key, "s1", "a good passphrase").unwrap(),
            "fresh salt"
        );
        let mut flipped = file.clone();
        let at = flipped.len() - 3;
        flipped[at] ^= 1;
        assert!(unwrap_key(&flipped, "s1", "a good passphrase").is_err());
        assert!(unwrap_key(b"junk", "s1", "a good passphrase").is_err());
    }
}
