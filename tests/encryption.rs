//! End-to-end encryption: what the folder shows, what a device without the key can do,
//! and sealed files that were changed, moved or brought from another store.

use std::path::Path;

use crdtdir::{Error, Options, PatchOp, Store, StoreKey};
use serde_json::json;

use crate::common::{op_files, tree, Device};

fn add(path: &str, value: serde_json::Value) -> [PatchOp; 1] {
    [PatchOp::add(path, value)]
}

/// A history with secrets in values, text and device names, from two devices, compacted
/// once, with writes after: every kind of file the folder can hold.
fn secret_history(dir: &Path, encrypt: bool) -> (std::path::PathBuf, Device, Device) {
    let store = dir.join("store");
    let a = Device::new(dir, "laptop-of-zelda");
    let b = Device::new(dir, "phone-of-zelda");
    let made = Store::init(
        &store,
        a.options().encrypt(encrypt),
        Some(&json!({"items": ["oatmilk-secret"], "note": "diary-secret-text"})),
    )
    .unwrap();
    let phone = b.open(&store);
    if encrypt {
        phone.import_key(&made.key().unwrap()).unwrap();
    }
    phone
        .apply_patch(&add("/items/-", json!("eggs-secret")))
        .unwrap();
    phone.beat().unwrap();
    made.compact().unwrap();
    made.apply_patch(&add("/items/-", json!("bread-after-compaction")))
        .unwrap();
    made.beat().unwrap();
    (store, a, b)
}

/// Every byte of every file under `store`.
fn all_bytes(store: &Path) -> Vec<u8> {
    tree(store).into_values().flatten().collect()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The values, texts and device names of [`secret_history`].
const SECRETS: [&str; 6] = [
    "oatmilk-secret",
    "diary-secret-text",
    "eggs-secret",
    "bread-after-compaction",
    "laptop-of-zelda",
    "phone-of-zelda",
];

#[test]
fn an_encrypted_folder_holds_no_plaintext_value_key_or_device_name() {
    let secrets = SECRETS;
    // The same history in a plain store shows every secret: the check can fail.
    let plain_dir = tempfile::tempdir().unwrap();
    let (plain, ..) = secret_history(plain_dir.path(), false);
    let bytes = all_bytes(&plain);
    for s in secrets {
        assert!(contains(&bytes, s), "the plain store should show {s}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (store, a, _) = secret_history(dir.path(), true);
    let bytes = all_bytes(&store);
    assert!(tree(&store).keys().any(|p| p.ends_with(".sqlite")));
    assert!(tree(&store).keys().any(|p| p.ends_with(".beat")));
    assert!(store.join("features/encrypted").exists());
    let key = a.open(&store).key().unwrap();
    let key_hex = key.to_text()["crdtdir-key-1-".len()..][..64].to_string();
    for s in secrets.iter().copied().chain([key_hex.as_str()]) {
        assert!(!contains(&bytes, s), "{s} is readable in the folder");
    }
    // And it reads back whole.
    assert_eq!(
        a.open(&store).read().unwrap().to_json(),
        json!({"items": ["oatmilk-secret", "eggs-secret", "bread-after-compaction"], "note": "diary-secret-text"})
    );
}

#[test]
fn without_the_key_nothing_reads_or_writes_and_with_it_the_merge_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a, _) = secret_history(dir.path(), true);
    let stranger = Device::new(dir.path(), "stranger");
    let before = tree(&store);
    let s = stranger.open(&store);
    assert!(matches!(s.read(), Err(Error::Locked)));
    assert!(matches!(s.read_json(), Err(Error::Locked)));
    assert!(matches!(s.history(), Err(Error::Locked)));
    assert!(matches!(
        s.apply_patch(&add("/x", json!(1))),
        Err(Error::Locked)
    ));
    assert!(matches!(s.compact(), Err(Error::Locked)));
    assert!(s.watch(crdtdir::WatchOptions::new()).is_err());
    let _ = s.beat();
    // Status still tells what it can: op files per actor, and that it is locked.
    let status = s.status().unwrap();
    assert!(status.encrypted && status.locked);
    assert_eq!(status.changes, op_files(&store).len());
    // A wrong key is refused and not kept.
    let wrong = StoreKey::parse(&a.open(&store).key().unwrap().to_text()).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = Store::init(
        other_dir.path().join("s"),
        Options::new()
            .state_dir(other_dir.path().join("st"))
            .encrypt(true),
        None,
    )
    .unwrap();
    assert!(matches!(
        s.import_key(&other.key().unwrap()),
        Err(Error::WrongKey { .. })
    ));
    assert!(matches!(stranger.open(&store).read(), Err(Error::Locked)));
    assert_eq!(
        tree(&store),
        before,
        "a device without the key wrote nothing"
    );
    // The key, by its words, opens it: the same document, byte for byte.
    let words = wrong.to_words();
    s.import_key(&StoreKey::parse(&words).unwrap()).unwrap();
    let (mine, _) = a.open(&store).read_json().unwrap();
    let (theirs, _) = s.read_json().unwrap();
    assert_eq!(mine, theirs);
    // Kept in local state, readable by its owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let kept = stranger.state.join("stores").join(s.id()).join("key");
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", kept.display());
    }
    // Kept: a new open has it, and it writes.
    stranger
        .open(&store)
        .apply_patch(&add("/items/-", json!("from the stranger")))
        .unwrap();
    assert!(a
        .open(&store)
        .read_json()
        .unwrap()
        .0
        .contains("from the stranger"));
}

/// Sealed files that were changed (with a name that matches the new bytes), moved to
/// another actor or seq, or brought from another store are skipped and reported; the rest
/// merges. A plain op file in an encrypted store is not used either.
#[test]
fn tampered_moved_and_foreign_sealed_files_are_skipped_never_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = Device::new(dir.path(), "a");
    let s = Store::init(&store, a.options().encrypt(true), Some(&json!({"n": []}))).unwrap();
    for i in 0..3 {
        s.apply_patch(&add("/n/-", json!(i))).unwrap();
    }
    let good = a.open(&store).read_json().unwrap().0;
    let files = op_files(&store);
    let fresh = || {
        let d = tempfile::tempdir().unwrap();
        let dev = Device::new(d.path(), "reader");
        let r = dev.open(&store);
        r.import_key(&s.key().unwrap()).unwrap();
        let view = r.read().unwrap();
        (view.to_json(), view.report().problems.clone(), d)
    };
    let put = |rel: &str, bytes: &[u8]| -> String {
        // A name whose hash matches the bytes: only the seal can tell.
        let (dir, name) = rel.rsplit_once('/').unwrap();
        let seq = &name[..10];
        let new = format!("{dir}/{seq}-{}.op", &blake3::hash(bytes).to_hex()[..32]);
        std::fs::create_dir_all(store.join(dir)).unwrap();
        std::fs::write(store.join(&new), bytes).unwrap();
        new
    };
    let last = files.last().unwrap().clone();
    let bytes = std::fs::read(store.join(&last)).unwrap();
    // 1. A flipped bit inside the sealed bytes.
    std::fs::remove_file(store.join(&last)).unwrap();
    let mut flipped = bytes.clone();
    let at = flipped.len() - 5;
    flipped[at] ^= 0x10;
    let rel = put(&last, &flipped);
    let (doc, problems, _d) = fresh();
    assert!(
        problems
            .iter()
            .any(|p| p.path == rel && p.reason.contains("does not open")),
        "{problems:?}"
    );
    assert_eq!(doc, json!({"n": [0, 1]}), "the other changes merge");
    std::fs::remove_file(store.join(&rel)).unwrap();
    // 2. Moved to another seq, and to another actor.
    let (actor_dir, name) = last.rsplit_once('/').unwrap();
    let moved_seq = put(&format!("{actor_dir}/0000000099-{}", &name[11..]), &bytes);
    let other_actor = format!("ops/{}", "ab".repeat(16));
    let moved_actor = put(&format!("{other_actor}/{name}"), &bytes);
    let (_, problems, _d) = fresh();
    for rel in [&moved_seq, &moved_actor] {
        assert!(
            problems
                .iter()
                .any(|p| &p.path == rel && p.reason.contains("does not open")),
            "{rel}: {problems:?}"
        );
    }
    std::fs::remove_file(store.join(&moved_seq)).unwrap();
    std::fs::remove_dir_all(store.join(&other_actor)).unwrap();
    std::fs::write(store.join(&last), &bytes).unwrap();
    assert_eq!(a.open(&store).read_json().unwrap().0, good);
    // 3. An op file of another encrypted store, and a plain op file, under this store's names.
    let other_dir = tempfile::tempdir().unwrap();
    let other_store = other_dir.path().join("s");
    let o = Store::init(
        &other_store,
        Options::new()
            .state_dir(other_dir.path().join("st"))
            .encrypt(true),
        Some(&json!({"other": true})),
    )
    .unwrap();
    drop(o);
    let foreign = op_files(&other_store).pop().unwrap();
    let foreign_rel = put(
        &foreign,
        &std::fs::read(other_store.join(&foreign)).unwrap(),
    );
    let plain_dir = tempfile::tempdir().unwrap();
    let plain_store = plain_dir.path().join("s");
    Store::init(
        &plain_store,
        Options::new().state_dir(plain_dir.path().join("st")),
        Some(&json!({"plain": true})),
    )
    .unwrap();
    let plain = op_files(&plain_store).pop().unwrap();
    let plain_rel = put(&plain, &std::fs::read(plain_store.join(&plain)).unwrap());
    let (doc, problems, _d) = fresh();
    assert!(
        problems
            .iter()
            .any(|p| p.path == foreign_rel && p.reason.contains("does not open")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.path == plain_rel && p.reason.contains("plain file in an encrypted store")),
        "{problems:?}"
    );
    assert_eq!(serde_json::to_string(&doc).unwrap(), good);
}

/// Passphrase wraps: a device with the key adds one or more to the folder (`keys/`); a
/// device without it joins with any of them and reads the same document; a wrong passphrase
/// is refused and keeps nothing; the wrap shows neither the passphrase nor the key.
#[test]
fn a_second_device_joins_by_passphrase_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a, _) = secret_history(dir.path(), true);
    let owner = a.open(&store);
    assert!(matches!(
        owner.add_passphrase("short"),
        Err(Error::Refused { .. })
    ));
    let first = owner
        .add_passphrase("correct horse battery staple")
        .unwrap();
    let second = owner.add_passphrase("another good passphrase").unwrap();
    assert!(first.starts_with("keys/") && first != second);
    let bytes = std::fs::read(store.join(&first)).unwrap();
    let key = owner.key().unwrap();
    let key_hex = &key.to_text()["crdtdir-key-1-".len()..][..64];
    assert!(!contains(&bytes, "correct horse"));
    assert!(!contains(&bytes, key_hex));
    // Merges skip the key files: nothing to report.
    assert!(owner.read().unwrap().report().problems.is_empty());
    let c = Device::new(dir.path(), "newcomer");
    let joined = c.open(&store);
    assert!(matches!(
        joined.import_passphrase("correct horse battery stapler"),
        Err(Error::WrongKey { .. })
    ));
    assert!(matches!(c.open(&store).read(), Err(Error::Locked)));
    joined.import_passphrase("another good passphrase").unwrap();
    assert_eq!(joined.key().unwrap(), key);
    assert_eq!(
        c.open(&store).read_json().unwrap().0,
        owner.read_json().unwrap().0
    );
    // A plain store has no key to wrap or import.
    let plain_dir = tempfile::tempdir().unwrap();
    let (plain, p, _) = secret_history(plain_dir.path(), false);
    assert!(p.open(&plain).add_passphrase("long enough phrase").is_err());
    assert!(p
        .open(&plain)
        .import_passphrase("long enough phrase")
        .is_err());
}

/// Every folder and file of a state dir, with its mode.
fn modes(state: &Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    walkdir::WalkDir::new(state)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| {
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            (e.path().display().to_string(), mode)
        })
        .collect()
}

/// The local state of an encrypted store holds its plaintext (the view, the cache, the
/// outbox, kept packs and snapshots) and its key: private from the moment it exists
/// (folders 0700, files 0600), and a state dir made before that (0755/0644) is made private
/// when the store opens.
#[test]
fn local_state_is_private_and_older_state_is_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (_, a, b) = secret_history(dir.path(), true);
    let store = dir.path().join("store");
    for d in [&a, &b] {
        let s = Store::open(&store, d.options().pack_size(2)).unwrap();
        for i in 0..3 {
            s.apply_patch(&add(&format!("/k{i}"), json!(i))).unwrap();
        }
        s.read().unwrap();
    }
    let check = |state: &Path| {
        let all = modes(state);
        assert!(all.len() > 8, "{all:?}");
        for (path, mode) in all {
            let want = if Path::new(&path).is_dir() {
                0o700
            } else {
                0o600
            };
            assert_eq!(mode, want, "{path} is {mode:o}");
        }
    };
    check(&a.state);
    check(&b.state);
    // A state dir from before: open to others.
    for e in walkdir::WalkDir::new(&a.state)
        .into_iter()
        .filter_map(Result::ok)
    {
        let mode = if e.file_type().is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    a.open(&store).read().unwrap();
    check(&a.state);
}

/// What a history says of each change, by its file-independent parts.
fn history_of(store: &Store) -> Vec<(String, String, u64, String, i64, Option<String>)> {
    let mut h: Vec<_> = store
        .history()
        .unwrap()
        .into_iter()
        .map(|c| (c.hash, c.actor, c.seq, c.device, c.time, c.message))
        .collect();
    h.sort();
    h
}

/// A plain store becomes an encrypted one keeping its whole history (`init_from_store`):
/// every change of every device with its time, message and device name, history folded by
/// a compaction included; the source folder is only read; the new folder shows no secret;
/// devices with the key go on writing there and merge.
#[test]
fn a_plain_store_becomes_encrypted_keeping_its_whole_history() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, a, b) = secret_history(dir.path(), false);
    b.open(&plain)
        .apply_patch_with_message(&add("/items/0", json!("tea")), Some("from the phone"))
        .unwrap();
    let source_tree = tree(&plain);
    let source = Store::open(&plain, a.options().read_only(true)).unwrap();
    let want_json = source.read().unwrap().to_json();
    let want_history = history_of(&source);
    assert!(want_history.len() >= 4, "{want_history:?}");

    let sealed = dir.path().join("sealed");
    let made = Store::init_from_store(&sealed, a.options().encrypt(true), &source).unwrap();
    assert!(made.is_encrypted());
    assert_eq!(tree(&plain), source_tree, "the source folder is only read");
    let bytes = all_bytes(&sealed);
    for s in SECRETS.into_iter().chain(["from the phone"]) {
        assert!(!contains(&bytes, s), "{s} is readable in the new folder");
    }
    assert_eq!(made.read().unwrap().to_json(), want_json);
    assert_eq!(history_of(&made), want_history);

    // The phone joins with the key, both write, a new device reads it all.
    let phone = b.open(&sealed);
    phone.import_key(&made.key().unwrap()).unwrap();
    assert_eq!(history_of(&phone), want_history);
    made.apply_patch(&add("/items/-", json!("laptop-later")))
        .unwrap();
    phone
        .apply_patch(&add("/items/0", json!("phone-later")))
        .unwrap();
    let c = Device::new(dir.path(), "tablet");
    let tablet = c.open(&sealed);
    tablet.import_key(&made.key().unwrap()).unwrap();
    let seen = tablet.read().unwrap().to_json();
    assert_eq!(seen, made.read().unwrap().to_json());
    assert_eq!(seen, phone.read().unwrap().to_json());
    let items = seen["items"].as_array().unwrap();
    for want in ["laptop-later", "phone-later", "tea", "eggs-secret"] {
        assert!(items.iter().any(|i| i == want), "{want}: {seen}");
    }
}

/// A store whose view lacks history, or holds changes that wait or documents beside the
/// root one, is not copied: the copy would silently drop them. Nothing is made.
#[test]
fn a_store_that_cannot_give_its_whole_history_is_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (a, b) = (Device::new(dir.path(), "a"), Device::new(dir.path(), "b"));
    Store::init(&store, a.options(), None).unwrap();
    for i in 0..3 {
        b.open(&store)
            .apply_patch(&add(&format!("/b{i}"), json!(i)))
            .unwrap();
    }
    // b's first change goes missing: its second and third wait for it.
    let first = op_files(&store)
        .into_iter()
        .find(|p| p.contains("/0000000001-"))
        .unwrap();
    std::fs::remove_file(store.join(&first)).unwrap();
    let target = dir.path().join("copy");
    let fresh = Device::new(dir.path(), "fresh");
    let source = Store::open(&store, fresh.options().read_only(true)).unwrap();
    let err = Store::init_from_store(&target, fresh.options(), &source).unwrap_err();
    assert!(err.is_refusal(), "{err}");
    assert!(err.to_string().contains("wait"), "{err}");
    assert!(!target.exists(), "nothing made");
    // A store with a document beside its root one.
    let other = dir.path().join("with-docs");
    let made = Store::init(&other, a.options(), None).unwrap();
    crdtdir::Repo::from(made)
        .create(Some(&json!({"t": 1})))
        .unwrap();
    let source = Store::open(&other, a.options().read_only(true)).unwrap();
    let err = Store::init_from_store(&target, a.options(), &source).unwrap_err();
    assert!(err.to_string().contains("documents"), "{err}");
    assert!(!target.exists(), "nothing made");
}

/// The sealed-file version and key check of a file's bytes (`None`: not a sealed file).
fn sealed_with(bytes: &[u8]) -> Option<(u64, Option<String>)> {
    let v: ciborium::Value = ciborium::from_reader(bytes).ok()?;
    let map = v.as_map()?;
    let get = |k: &str| {
        map.iter()
            .find(|(key, _)| key.as_text() == Some(k))
            .map(|(_, v)| v)
    };
    let version = u64::try_from(get("v")?.as_integer()?).ok()?;
    Some((
        version,
        get("key").and_then(|k| k.as_text()).map(str::to_string),
    ))
}

/// The op files under `store` newer than those in `before`.
fn new_op_files(store: &Path, before: &[String]) -> Vec<String> {
    op_files(store)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect()
}

/// `rotate_key`: what the device writes next is sealed with a new key (sealed-file version 2,
/// naming the key by its check); a device that has only the old key (a lost phone) goes on
/// reading what the old key sealed and none of what follows, and says so; a device given only
/// the new key reads the whole history through the rotation record; a device that imports the
/// new key keeps its old one; two rotations chain.
#[test]
fn a_rotated_key_shuts_older_keys_out_of_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a, b) = secret_history(dir.path(), true);
    let laptop = a.open(&store);
    let first = laptop.key().unwrap();
    let before_rotation = b.open(&store).read().unwrap().to_json();
    let ops_before = op_files(&store);

    let second = laptop.rotate_key().unwrap();
    assert_ne!(second, first);
    assert_eq!(laptop.key().unwrap(), second);
    assert!(store.join("features/rotated-keys").exists());
    assert_eq!(
        tree(&store)
            .keys()
            .filter(|p| p.starts_with("keys/") && p.ends_with(".rotated"))
            .count(),
        1
    );
    laptop
        .apply_patch(&add("/items/-", json!("after-rotation-secret")))
        .unwrap();
    let fresh = new_op_files(&store, &ops_before);
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    let (version, check) = sealed_with(&std::fs::read(store.join(&fresh[0])).unwrap()).unwrap();
    assert_eq!(version, 2);
    assert!(check.is_some());

    // The phone has only the first key: the old history, nothing after, and it says why.
    let phone = b.open(&store);
    let view = phone.read().unwrap();
    assert_eq!(view.to_json(), before_rotation);
    assert!(
        view.report()
            .problems
            .iter()
            .any(|p| p.kind == crdtdir::ProblemKind::OtherKey && p.path == fresh[0]),
        "{:?}",
        view.report()
    );
    // A new device given only the new key reads all of it.
    let want = laptop.read().unwrap().to_json();
    let c = Device::new(dir.path(), "tablet");
    let tablet = c.open(&store);
    tablet.import_key(&second).unwrap();
    assert_eq!(tablet.read().unwrap().to_json(), want);
    // The phone imports the new key: it reads all, seals with the new key, and an old key
    // imported again changes nothing.
    phone.import_key(&second).unwrap();
    assert_eq!(phone.read().unwrap().to_json(), want);
    phone.import_key(&first).unwrap();
    assert_eq!(phone.key().unwrap(), second);
    let ops_before = op_files(&store);
    phone
        .apply_patch(&add("/items/-", json!("phone-after")))
        .unwrap();
    let fresh = new_op_files(&store, &ops_before);
    let (version, _) = sealed_with(&std::fs::read(store.join(&fresh[0])).unwrap()).unwrap();
    assert_eq!(version, 2);

    // A second rotation: the tablet (second key only) is shut out of what follows; a device
    // given the third key reads everything back to the first.
    let third = laptop.rotate_key().unwrap();
    laptop
        .apply_patch(&add("/items/-", json!("third-era")))
        .unwrap();
    let shut_out = tablet.read().unwrap().to_json();
    assert!(!shut_out.to_string().contains("third-era"), "{shut_out}");
    assert!(shut_out.to_string().contains("phone-after"), "{shut_out}");
    let d = Device::new(dir.path(), "desktop");
    let desktop = d.open(&store);
    desktop.import_key(&third).unwrap();
    let all = desktop.read().unwrap().to_json();
    assert_eq!(all, laptop.read().unwrap().to_json());
    for s in ["oatmilk-secret", "eggs-secret", "phone-after", "third-era"] {
        assert!(all.to_string().contains(s), "{s}: {all}");
    }
    // A compaction seals history again, with the newest key: the first key opens nothing.
    laptop.compact().unwrap();
    let e = Device::new(dir.path(), "old-backup");
    let old = e.open(&store);
    old.import_key(&first).unwrap();
    let after = old.read().unwrap().to_json();
    assert!(!after.to_string().contains("oatmilk-secret"), "{after}");
    assert_eq!(
        desktop.read().unwrap().to_json(),
        laptop.read().unwrap().to_json()
    );
}

/// A device that merged while it lacked a rotated key — a snapshot sealed with that key
/// skipped — reads it once it imports the key, though the folder lists the same (its
/// remembered and cached views go when its keys change). Also for another handle of the
/// device that did not import it.
#[test]
fn a_key_imported_later_opens_what_the_last_merge_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a, b) = secret_history(dir.path(), true);
    let laptop = a.open(&store);
    let new = laptop.rotate_key().unwrap();
    laptop
        .apply_patch(&add("/items/-", json!("sealed-with-the-new-key")))
        .unwrap();
    laptop.compact().unwrap();
    let phone = b.open(&store);
    let before = phone.read().unwrap().to_json();
    assert!(!before.to_string().contains("sealed-with-the-new-key"));
    let other_handle = b.open(&store);
    other_handle.read().unwrap();
    phone.import_key(&new).unwrap();
    let want = laptop.read().unwrap().to_json();
    assert_eq!(phone.read().unwrap().to_json(), want);
    assert_eq!(
        other_handle.read().unwrap().to_json(),
        want,
        "another handle"
    );
    assert_eq!(
        b.open(&store).read().unwrap().to_json(),
        want,
        "a new handle"
    );
}
