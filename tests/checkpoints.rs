//! Checkpoints (docs/FORMAT.md §19): a device with no local state starts from the newest
//! checkpoint that passes its checks and reads only the op files it does not cover; a
//! damaged, stale, forged, lying or forked checkpoint is skipped and reported, never
//! trusted, and the result is byte for byte what reading every op file gives.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crdtdir::fault::{self, Crashed, Fault};
use crdtdir::{PatchOp, Store};
use serde_json::json;

use crate::common::{clone_state, copy_dir, tree, Device};

fn set(d: &Device, store: &Path, key: &str, v: i64) {
    d.open(store)
        .apply_patch(&[PatchOp::set(format!("/{key}"), json!(v))])
        .unwrap();
}

/// `n` changes by `d`, keys `prefix0..`.
fn writes(d: &Device, store: &Path, prefix: &str, n: i64) {
    for i in 0..n {
        set(d, store, &format!("{prefix}{i}"), i);
    }
}

/// A new device's view of `store`: its JSON, heads and the checkpoint it started from.
fn newcomer(store: &Path) -> (String, Vec<String>, Option<String>, crdtdir::MergeReport) {
    let dir = tempfile::tempdir().unwrap();
    let view = Device::new(dir.path(), "new").open(store).read().unwrap();
    let mut heads: Vec<String> = view.heads().iter().map(|h| h.to_string()).collect();
    heads.sort();
    let report = view.report().clone();
    (
        serde_json::to_string(&view.to_json()).unwrap(),
        heads,
        report.checkpoint.clone(),
        report,
    )
}

/// What reading every op file gives: a new device on a copy of the folder without its
/// checkpoints.
fn without_checkpoints(store: &Path) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy");
    copy_dir(store, &copy);
    let _ = std::fs::remove_dir_all(copy.join("checkpoints"));
    let (json, heads, from, _) = newcomer(&copy);
    assert_eq!(from, None);
    (json, heads)
}

fn checkpoint(d: &Device, store: &Path) -> String {
    let out = d.open(store).checkpoint().unwrap();
    out.checkpoint
        .unwrap_or_else(|| panic!("no checkpoint: {:?}", out.skipped))
}

fn checkpoints(store: &Path) -> Vec<String> {
    tree(store)
        .into_keys()
        .filter(|r| r.starts_with("checkpoints/") && r.ends_with(".sqlite"))
        .collect()
}

#[test]
fn a_new_device_starts_from_a_checkpoint_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (a, b) = (Device::new(dir.path(), "a"), Device::new(dir.path(), "b"));
    Store::init(&store, a.options(), None).unwrap();
    writes(&a, &store, "a", 20);
    let cp = checkpoint(&a, &store);
    // Changes after the checkpoint, by the same device and by another one.
    writes(&b, &store, "b", 3);
    writes(&a, &store, "late", 2);
    let (json, heads, from, report) = newcomer(&store);
    assert_eq!(from.as_deref(), Some(cp.as_str()));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((json.clone(), heads), without_checkpoints(&store));
    for key in ["a0", "a19", "b2", "late1"] {
        assert!(
            json.contains(&format!("\"{key}\"")),
            "{key} missing: {json}"
        );
    }
    // The new device goes on from there like any other: another write arrives.
    let dir2 = tempfile::tempdir().unwrap();
    let c = Device::new(dir2.path(), "c");
    let first = c.open(&store).read().unwrap();
    assert_eq!(first.report().checkpoint.as_deref(), Some(cp.as_str()));
    set(&b, &store, "after", 1);
    let again = serde_json::to_string(&c.open(&store).read().unwrap().to_json()).unwrap();
    assert_eq!(again, without_checkpoints(&store).0);
    // A covered op file not here (still on its way, or lost): the checkpoint would give
    // this device a change the folder does not, so it reads the op files instead, and
    // reads what every other device reads.
    let covered = tree(&store)
        .into_keys()
        .find(|r| r.contains("/0000000005-"))
        .unwrap();
    std::fs::remove_file(store.join(&covered)).unwrap();
    let (json, heads, from, _) = newcomer(&store);
    assert_eq!(from, None);
    assert_eq!((json, heads), without_checkpoints(&store));
}

/// Device b checkpoints at 10 changes, device a at 15; a's is then spoiled each way in turn:
/// the new device reports it, starts from b's older one, and reads what b's does not cover.
#[test]
fn a_bad_checkpoint_is_skipped_reported_and_the_next_one_used() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (a, b) = (Device::new(dir.path(), "a"), Device::new(dir.path(), "b"));
    Store::init(&store, a.options(), None).unwrap();
    writes(&a, &store, "k", 10);
    let older = checkpoint(&b, &store);
    writes(&a, &store, "m", 5);
    let newest = checkpoint(&a, &store);
    // Changes after it: the ones a lying checkpoint claims.
    writes(&b, &store, "late", 3);
    let (full, full_heads) = without_checkpoints(&store);
    let other = tempfile::tempdir().unwrap();
    let foreign = other.path().join("f");
    Store::init(&foreign, a.options(), None).unwrap();
    writes(&a, &foreign, "x", 30);
    let foreign_cp = checkpoint(&a, &foreign);
    let spoils: [(&str, Spoil); 6] = [
        ("torn", &|p: &Path| {
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
        }),
        ("forged heads", &|p: &Path| {
            rewrite(p, |db| {
                db.execute(
                    "UPDATE meta SET value = ?1 WHERE key = 'heads'",
                    [format!("[\"{}\"]", "cd".repeat(32))],
                )
                .unwrap();
            })
        }),
        ("claims what it does not hold", &|p: &Path| {
            let folder = p.parent().unwrap().parent().unwrap().to_path_buf();
            rewrite(p, |db| claim_every_op_file(db, &folder))
        }),
        (
            "names files it does not hold in place of some it does",
            &|p: &Path| {
                let folder = p.parent().unwrap().parent().unwrap().to_path_buf();
                rewrite(p, |db| {
                    claim_every_op_file(db, &folder);
                    // As many rows go as came: the count of files and changes still agrees.
                    db.execute(
                        "DELETE FROM folded_ops WHERE (actor_id, seq) IN
                       (SELECT actor_id, seq FROM folded_ops ORDER BY seq LIMIT 3)",
                        [],
                    )
                    .unwrap();
                })
            },
        ),
        ("not a checkpoint (a snapshot moved in)", &|p: &Path| {
            rewrite(p, |db| {
                db.execute("DELETE FROM meta WHERE key = 'checkpoint'", [])
                    .unwrap();
            })
        }),
        ("another store's", &|p: &Path| {
            std::fs::remove_file(p).unwrap();
            let name = foreign_cp.rsplit('/').next().unwrap();
            std::fs::copy(foreign.join(&foreign_cp), p.parent().unwrap().join(name)).unwrap();
        }),
    ];
    for (what, spoil) in spoils {
        let copy_dir_ = tempfile::tempdir().unwrap();
        let copy = copy_dir_.path().join("s");
        copy_dir(&store, &copy);
        spoil(&copy.join(&newest));
        let (json, heads, from, report) = newcomer(&copy);
        assert_eq!(from.as_deref(), Some(older.as_str()), "{what}");
        assert_eq!((json, heads), (full.clone(), full_heads.clone()), "{what}");
        let skipped: Vec<&crdtdir::Problem> = report
            .problems
            .iter()
            .filter(|p| p.path.starts_with("checkpoints/"))
            .collect();
        assert_eq!(skipped.len(), 1, "{what}: {:?}", report.problems);
        // Each spoil is caught by its own check.
        let why = match what {
            "torn" => "truncated",
            "forged heads" => "heads it claims",
            "claims what it does not hold" => "op files for",
            "names files it does not hold in place of some it does" => {
                "does not hold the change of"
            }
            "not a checkpoint (a snapshot moved in)" => "does not say it is a checkpoint",
            _ => "another store",
        };
        assert!(
            skipped[0].reason.contains(why),
            "{what}: {}",
            skipped[0].reason
        );
        assert!(
            skipped[0].reason.starts_with("checkpoint skipped: "),
            "{what}: {}",
            skipped[0].reason
        );
    }
}

/// A way to spoil the checkpoint at a path.
type Spoil<'a> = &'a dyn Fn(&Path);

/// Rewrites the SQLite file at `p` with `edit` and renames it to the hash of its new bytes
/// (so only the reader's own checks can tell).
fn rewrite(p: &Path, edit: impl FnOnce(&rusqlite::Connection)) {
    let scratch = p.with_extension("scratch");
    std::fs::copy(p, &scratch).unwrap();
    let mut perms = std::fs::metadata(&scratch).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&scratch, perms).unwrap();
    edit(&rusqlite::Connection::open(&scratch).unwrap());
    let bytes = std::fs::read(&scratch).unwrap();
    std::fs::remove_file(&scratch).unwrap();
    std::fs::remove_file(p).unwrap();
    let name = format!("{}.sqlite", &blake3::hash(&bytes).to_hex()[..32]);
    std::fs::write(p.parent().unwrap().join(name), bytes).unwrap();
}

/// Adds every op file of `folder` to the checkpoint's covered files.
fn claim_every_op_file(db: &rusqlite::Connection, folder: &Path) {
    for rel in tree(folder).into_keys().filter(|r| r.ends_with(".op")) {
        let parts: Vec<&str> = rel.split('/').collect();
        let (seq, hash) = parts[2]
            .strip_suffix(".op")
            .unwrap()
            .split_once('-')
            .unwrap();
        db.execute("INSERT OR IGNORE INTO actors (hex) VALUES (?1)", [parts[1]])
            .unwrap();
        db.execute(
            "INSERT OR IGNORE INTO folded_ops (actor_id, seq, hash)
             SELECT actor_id, ?2, ?3 FROM actors WHERE hex = ?1",
            (
                parts[1],
                seq.parse::<i64>().unwrap(),
                hex::decode(hash).unwrap(),
            ),
        )
        .unwrap();
    }
}

/// A cloned disk: both copies write seq 6 of one actor and each publishes a checkpoint of
/// its own branch before the folders meet. Whichever branch loses, the new device does not
/// start from a checkpoint that holds it unrebased: it reads every op file, and keeps both
/// edits.
#[test]
fn a_checkpoint_of_a_forks_branch_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    let a = Device::new(dir.path(), "a");
    let twin = Device::new(dir.path(), "twin");
    Store::init(&one, a.options(), None).unwrap();
    writes(&a, &one, "k", 5);
    clone_state(&a, &twin);
    copy_dir(&one, &two);
    set(&a, &one, "x", 1);
    set(&twin, &two, "y", 2);
    checkpoint(&a, &one);
    checkpoint(&twin, &two);
    // The sync tool brings each folder everything of the other.
    copy_dir(&two, &one);
    let (json, heads, from, _) = newcomer(&one);
    assert_eq!(from, None, "started from a forked branch's checkpoint");
    assert!(json.contains("\"x\"") && json.contains("\"y\""), "{json}");
    assert_eq!((json, heads), without_checkpoints(&one));
    // A device whose view holds the fork publishes no checkpoint of it.
    let out = a.open(&one).checkpoint().unwrap();
    assert!(out.checkpoint.is_none());
    assert!(out.skipped.unwrap().contains("fork"));
}

/// A device replaces its own checkpoint; an old one that comes back (a sync tool resurrects
/// it) is only less useful: the newest is used, and without it the old one, and either way
/// the new device has every change.
#[test]
fn a_stale_or_resurrected_checkpoint_only_means_reading_more() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let a = Device::new(dir.path(), "a");
    Store::init(&store, a.options(), None).unwrap();
    writes(&a, &store, "k", 10);
    let first = checkpoint(&a, &store);
    let first_bytes = std::fs::read(store.join(&first)).unwrap();
    writes(&a, &store, "m", 10);
    let out = a.open(&store).checkpoint().unwrap();
    let second = out.checkpoint.unwrap();
    assert_eq!(out.replaced, vec![first.clone()]);
    assert_eq!(checkpoints(&store), vec![second.clone()]);
    std::fs::write(store.join(&first), &first_bytes).unwrap();
    let (json, heads, from, _) = newcomer(&store);
    assert_eq!(from.as_deref(), Some(second.as_str()));
    let full = without_checkpoints(&store);
    assert_eq!((json, heads), full);
    std::fs::remove_file(store.join(&second)).unwrap();
    let (json, heads, from, _) = newcomer(&store);
    assert_eq!(from.as_deref(), Some(first.as_str()));
    assert_eq!((json, heads), full);
    // Nothing new since the folder's newest checkpoint: nothing published.
    let out = a.open(&store).checkpoint().unwrap();
    assert!(
        out.checkpoint.is_some(),
        "the first one holds fewer changes"
    );
    let out = a.open(&store).checkpoint().unwrap();
    assert!(out.checkpoint.is_none(), "{out:?}");
}

/// Writes publish checkpoints on their own, and the folder keeps at most one per device.
#[test]
fn writes_publish_checkpoints_on_their_own_one_per_device() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let a = Device::new(dir.path(), "a");
    let b = Device::new(dir.path(), "b");
    Store::init(&store, a.options(), None).unwrap();
    let every = |d: &Device| Store::open(&store, d.options().checkpoint_every(5)).unwrap();
    for i in 0..12 {
        every(&a)
            .apply_patch(&[PatchOp::set(format!("/a{i}"), json!(i))])
            .unwrap();
    }
    assert_eq!(checkpoints(&store).len(), 1, "{:?}", checkpoints(&store));
    for i in 0..6 {
        every(&b)
            .apply_patch(&[PatchOp::set(format!("/b{i}"), json!(i))])
            .unwrap();
    }
    for i in 12..30 {
        every(&a)
            .apply_patch(&[PatchOp::set(format!("/a{i}"), json!(i))])
            .unwrap();
    }
    let listed = checkpoints(&store);
    assert!(
        (1..=2).contains(&listed.len()),
        "one per device at most: {listed:?}"
    );
    let (json, heads, from, _) = newcomer(&store);
    assert!(from.is_some());
    assert_eq!((json, heads), without_checkpoints(&store));
    // Off: no checkpoint from writes.
    let quiet = tempfile::tempdir().unwrap();
    let q = quiet.path().join("q");
    Store::init(&q, a.options(), None).unwrap();
    for i in 0..12 {
        Store::open(&q, a.options().checkpoint_every(0))
            .unwrap()
            .apply_patch(&[PatchOp::set(format!("/a{i}"), json!(i))])
            .unwrap();
    }
    assert!(checkpoints(&q).is_empty());
}

/// A device replaces only its own older checkpoints: another device's stays byte for byte,
/// even when it is older and smaller than the new one (invariant: nothing of another device
/// is deleted without it being alone; a checkpoint is replaced only by its publisher).
#[test]
fn a_device_replaces_only_its_own_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (a, b) = (Device::new(dir.path(), "a"), Device::new(dir.path(), "b"));
    Store::init(&store, a.options(), None).unwrap();
    writes(&a, &store, "a", 3);
    let first_a = checkpoint(&a, &store);
    writes(&b, &store, "b", 3);
    let of_b = checkpoint(&b, &store);
    let b_bytes = std::fs::read(store.join(&of_b)).unwrap();
    writes(&a, &store, "c", 3);
    let out = a.open(&store).checkpoint().unwrap();
    let second_a = out.checkpoint.clone().expect("a newer view publishes");
    assert_eq!(out.replaced, vec![first_a.clone()], "{out:?}");
    let mut want = vec![second_a, of_b.clone()];
    want.sort();
    assert_eq!(checkpoints(&store), want);
    assert_eq!(std::fs::read(store.join(&of_b)).unwrap(), b_bytes);
    // And b, publishing again, leaves a's alone.
    writes(&b, &store, "d", 2);
    let out = b.open(&store).checkpoint().unwrap();
    assert_eq!(out.replaced, vec![of_b], "{out:?}");
    assert_eq!(checkpoints(&store).len(), 2);
}

/// A crash right after each step of publishing a checkpoint: the folder still reads the
/// same to a new device, and the next checkpoint cleans up (no temp left, one checkpoint
/// of the device).
#[test]
fn a_crash_at_every_checkpoint_step_loses_nothing() {
    for step in [
        "checkpoint-staged",
        "checkpoint-published",
        "checkpoint-replaced",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        let a = Device::new(dir.path(), "a");
        Store::init(&store, a.options(), None).unwrap();
        writes(&a, &store, "k", 6);
        checkpoint(&a, &store);
        writes(&a, &store, "m", 4);
        let full = without_checkpoints(&store);
        let crashed = {
            let _armed = fault::inject(step, Fault::Crash);
            let out = catch_unwind(AssertUnwindSafe(|| a.open(&store).checkpoint()));
            match out {
                Ok(_) => false,
                Err(payload) => {
                    assert!(payload.downcast_ref::<Crashed>().is_some(), "a real panic");
                    true
                }
            }
        };
        assert!(crashed, "{step} was not reached");
        let (json, heads, ..) = newcomer(&store);
        assert_eq!((json, heads), full, "{step}");
        writes(&a, &store, "n", 1);
        let after = checkpoint(&a, &store);
        assert_eq!(checkpoints(&store), vec![after], "{step}");
        let temps: Vec<String> = tree(&store)
            .into_keys()
            .filter(|r| r.contains(".crdtdir-"))
            .collect();
        assert!(temps.is_empty(), "{step}: {temps:?}");
        let (json, heads, from, _) = newcomer(&store);
        assert!(from.is_some(), "{step}");
        assert_eq!((json, heads), without_checkpoints(&store), "{step}");
    }
}

/// In an encrypted store a checkpoint is sealed: its bytes hold no content, a new device
/// with the key starts from it, one without the key reads nothing.
#[test]
fn an_encrypted_stores_checkpoint_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let store: PathBuf = dir.path().join("s");
    let a = Device::new(dir.path(), "a");
    let first = Store::init(&store, a.options().encrypt(true), None).unwrap();
    let key = first.key().unwrap();
    a.open(&store)
        .apply_patch(&[PatchOp::set("/secret", json!("correct horse battery"))])
        .unwrap();
    writes(&a, &store, "k", 4);
    let cp = checkpoint(&a, &store);
    let bytes = std::fs::read(store.join(&cp)).unwrap();
    assert!(!bytes
        .windows(b"correct horse".len())
        .any(|w| w == b"correct horse"));
    let fresh = tempfile::tempdir().unwrap();
    let b = Device::new(fresh.path(), "b");
    let s = b.open(&store);
    assert!(matches!(s.read(), Err(crdtdir::Error::Locked)));
    s.import_key(&key).unwrap();
    let view = b.open(&store).read().unwrap();
    assert_eq!(view.report().checkpoint.as_deref(), Some(cp.as_str()));
    assert_eq!(view.to_json()["secret"], json!("correct horse battery"));
}
