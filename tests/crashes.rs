//! Crashes and full disks at every named step of every protocol, in process: the protocol
//! stops right after the step (`crdtdir::fault`), the test reopens what is left, and nothing
//! acknowledged is lost, no seq is used twice, every device merges the same.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crdtdir::fault::{self, Crashed, Fault};
use crdtdir::{PatchOp, Store};
use serde_json::{json, Value};

use crate::common::{merged, op_files, tree, Device};

/// Runs `f` with a crash armed at `step`; true if it crashed there.
fn crash_at<T>(step: &str, f: impl FnOnce() -> T) -> bool {
    let _armed = fault::inject(step, Fault::Crash);
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => false,
        Err(payload) => {
            let crashed = payload.downcast_ref::<Crashed>();
            assert_eq!(crashed, Some(&Crashed(fault_name(step))), "a real panic");
            true
        }
    }
}

fn fault_name(step: &str) -> &'static str {
    fault::STEPS.iter().find(|s| **s == step).unwrap()
}

fn set(key: &str, v: i64) -> [PatchOp; 1] {
    [PatchOp::set(format!("/{key}"), json!(v))]
}

/// A store in a temp dir where device "a" wrote `k0`, `k1`, … one change each.
fn store_with_keys(n: i64) -> (tempfile::TempDir, PathBuf, Device) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let a = Device::new(dir.path(), "a");
    Store::init(&store, a.options(), None).unwrap();
    for i in 0..n {
        a.open(&store)
            .apply_patch(&set(&format!("k{i}"), i))
            .unwrap();
    }
    (dir, store, a)
}

fn doc(d: &Device, store: &Path) -> Value {
    serde_json::from_str(&merged(d, store)).unwrap()
}

fn fresh(store: &Path) -> Value {
    let dir = tempfile::tempdir().unwrap();
    doc(&Device::new(dir.path(), "fresh"), store)
}

/// No temp file of crdtdir is left anywhere in the folder: its owner removed it.
fn assert_no_temps(store: &Path, what: &str) {
    let temps: Vec<String> = tree(store)
        .into_keys()
        .filter(|k| k.rsplit('/').next().unwrap().starts_with(".crdtdir-"))
        .collect();
    assert!(temps.is_empty(), "{what}: {temps:?}");
}

fn assert_clean(store: &Path, what: &str) {
    assert_no_temps(store, what);
    let dir = tempfile::tempdir().unwrap();
    let status = Device::new(dir.path(), "inspector")
        .open(store)
        .status()
        .unwrap();
    let r = &status.report;
    assert!(r.forks.is_empty(), "{what}: {r:?}");
    assert!(r.quarantined.is_empty(), "{what}: {r:?}");
    assert!(r.waiting.is_empty(), "{what}: {r:?}");
    assert!(r.incomplete.is_empty(), "{what}: {r:?}");
}

const WRITE_STEPS: [&str; 4] = ["op-staged", "op-kept", "record-written", "op-published"];

#[test]
fn a_crash_at_every_step_of_a_write_loses_nothing_acknowledged() {
    for step in WRITE_STEPS {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        let a = Device::new(dir.path(), "a");
        Store::init(&store, a.options(), None).unwrap();
        a.open(&store).apply_patch(&set("acked", 1)).unwrap();
        assert!(crash_at(step, || a
            .open(&store)
            .apply_patch(&set("crashed", 1))));
        let out = a.open(&store).apply_patch(&set("after", 1)).unwrap();
        assert!(
            out.notices.iter().all(|n| !n.fresh_actor()),
            "{step}: the actor is kept: {out:?}"
        );
        let v = fresh(&store);
        assert_eq!((&v["acked"], &v["after"]), (&json!(1), &json!(1)), "{step}");
        // Once the record names the change, it is never lost.
        assert_eq!(
            v.get("crashed").is_some(),
            matches!(step, "record-written" | "op-published"),
            "{step}: {v}"
        );
        assert_clean(&store, step);
    }
}

/// A full disk before the change is durable fails the write and changes nothing; after it
/// (the record and the outbox hold the change), a passing failure is retried and the write
/// succeeds: a write never reports failure for a change that will stand.
#[test]
fn a_full_disk_at_every_step_of_a_write_fails_it_or_the_write_stands() {
    for step in WRITE_STEPS {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        let a = Device::new(dir.path(), "a");
        Store::init(&store, a.options(), None).unwrap();
        a.open(&store).apply_patch(&set("acked", 1)).unwrap();
        let failed = {
            let _armed = fault::inject(step, Fault::Fail);
            a.open(&store).apply_patch(&set("failed", 1))
        };
        let durable = matches!(step, "record-written" | "op-published");
        match failed {
            Ok(out) => {
                assert!(durable, "{step}: {out:?}");
                assert!(out.written[0].unpublished.is_none(), "{step}: {out:?}");
                assert_eq!(fresh(&store)["failed"], json!(1), "{step}");
            }
            Err(err) => {
                assert!(!durable, "{step}: {err}");
                assert!(err.to_string().contains("no space left"), "{step}: {err}");
            }
        }
        a.open(&store).apply_patch(&set("after", 1)).unwrap();
        let v = fresh(&store);
        assert_eq!((&v["acked"], &v["after"]), (&json!(1), &json!(1)), "{step}");
        assert_eq!(v.get("failed").is_some(), durable, "{step}");
        assert_clean(&store, step);
    }
}

/// `init --encrypt` is all or nothing too: a full disk at any step leaves the folder as it
/// was; a crash at any step lets `init` run again and finish an encrypted store (the key was
/// kept before the marker appeared), which another device with the key reads whole and
/// whose folder shows no plaintext.
#[test]
fn encrypted_init_is_all_or_nothing() {
    let initial = json!({"items": [], "title": "Groceries"});
    for step in ["marker-published"].into_iter().chain(WRITE_STEPS) {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        std::fs::create_dir(&store).unwrap();
        let before = tree(&store);
        let a = Device::new(dir.path(), "a");
        let failed = {
            let _armed = fault::inject(step, Fault::Fail);
            Store::init(&store, a.options().encrypt(true), Some(&initial))
        };
        // After the first change is durable a passing failure is retried: init succeeds.
        if matches!(step, "record-written" | "op-published") {
            assert_eq!(doc(&a, failed.unwrap().path()), initial, "{step}");
        } else {
            assert!(failed.is_err(), "{step}");
            assert_eq!(tree(&store), before, "{step}: the folder is as it was");
        }

        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        let a = Device::new(dir.path(), "a");
        assert!(crash_at(step, || Store::init(
            &store,
            a.options().encrypt(true),
            Some(&initial)
        )));
        match Store::init(&store, a.options().encrypt(true), Some(&initial)) {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(step, "op-published", "{step}: {e}");
                assert!(e.to_string().contains("already a crdtdir store"), "{e}");
            }
        }
        let owner = a.open(&store);
        assert!(owner.is_encrypted(), "{step}");
        assert!(store.join("features/encrypted").exists(), "{step}");
        assert_eq!(doc(&a, &store), initial, "{step}");
        let b = Device::new(dir.path(), "b");
        b.open(&store).import_key(&owner.key().unwrap()).unwrap();
        assert_eq!(
            doc(&b, &store),
            initial,
            "{step}: another device with the key"
        );
        assert_eq!(op_files(&store).len(), 1, "{step}: one initial change");
        assert_no_temps(&store, step);
        let all: Vec<u8> = tree(&store).into_values().flatten().collect();
        assert!(
            !all.windows(9).any(|w| w == b"Groceries"),
            "{step}: plaintext"
        );
    }
}

/// Regression (issue: "`init --from` on a nearly full disk leaves a marker without the initial
/// document; a second init is refused"): init is all or nothing. A full disk at any step
/// leaves the folder as it was; a crash at any step lets `init` run again and finish.
#[test]
fn init_is_all_or_nothing() {
    let initial = json!({"items": [], "title": "Groceries"});
    for step in ["marker-published"].into_iter().chain(WRITE_STEPS) {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        std::fs::create_dir(&store).unwrap();
        std::fs::write(store.join("notes.txt"), "the user's own file").unwrap();
        let before = tree(&store);
        let a = Device::new(dir.path(), "a");
        let failed = {
            let _armed = fault::inject(step, Fault::Fail);
            Store::init(&store, a.options(), Some(&initial))
        };
        if matches!(step, "record-written" | "op-published") {
            // The first change was durable: the passing failure is retried, init succeeds.
            failed.unwrap();
        } else {
            assert!(failed.is_err(), "{step}");
            assert_eq!(tree(&store), before, "{step}: the folder is as it was");
            let entries: Vec<String> = std::fs::read_dir(&store)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(entries, ["notes.txt"], "{step}: no folder left behind");
            Store::init(&store, a.options(), Some(&initial)).unwrap();
        }
        assert_eq!(doc(&a, &store), initial, "{step}");
        // A disk that stays full after the first change is durable: init fails whole.
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        let a = Device::new(dir.path(), "a");
        let failed = {
            let _armed = fault::inject("record-written", Fault::FailAlways);
            Store::init(&store, a.options(), Some(&initial))
        };
        assert!(
            failed.is_err(),
            "{step}: a store without its first document"
        );
        assert!(!store.join("crdtdir.store").exists(), "{step}");

        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        let a = Device::new(dir.path(), "a");
        assert!(crash_at(step, || Store::init(
            &store,
            a.options(),
            Some(&initial)
        )));
        // `init` again finishes it, unless the crash came after the document was written.
        match Store::init(&store, a.options(), Some(&initial)) {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(step, "op-published", "{step}: {e}");
                assert!(e.to_string().contains("already a crdtdir store"), "{e}");
            }
        }
        assert_eq!(fresh(&store), initial, "{step}");
        assert_eq!(op_files(&store).len(), 1, "{step}: one initial change");
        assert_clean(&store, step);
    }
}

/// Publishing keeps failing after the change is durable (a sync tool that deletes every
/// temp before its rename, a disk that stays full): the write still succeeds, says why its
/// op file is not in the folder yet, and the next write publishes it under its own name.
/// (The append exited 1 and its change landed later: a caller that retried wrote it twice.)
#[test]
fn a_write_whose_op_file_cannot_be_published_yet_succeeds_and_lands_with_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let a = Device::new(dir.path(), "a");
    Store::init(&store, a.options(), None).unwrap();
    let out = {
        let _armed = fault::inject("record-written", Fault::FailAlways);
        a.open(&store).apply_patch(&set("stuck", 1)).unwrap()
    };
    let written = &out.written[0];
    assert!(written.unpublished.is_some(), "{out:?}");
    assert!(
        out.notices
            .iter()
            .any(|n| matches!(n, crdtdir::Notice::Unpublished { .. })),
        "{out:?}"
    );
    assert!(!store.join(&written.path).exists());
    // Its own view has it all along (from its outbox), and says the folder lacks it.
    let view = a.open(&store).read().unwrap();
    assert_eq!(view.to_json()["stuck"], json!(1));
    assert_eq!(view.report().unprovided, 1, "{:?}", view.report());
    a.open(&store).apply_patch(&set("next", 1)).unwrap();
    assert!(
        store.join(&written.path).exists(),
        "published under its own name"
    );
    let v = fresh(&store);
    assert_eq!((&v["stuck"], &v["next"]), (&json!(1), &json!(1)));
    assert_clean(&store, "record-written");
}

#[test]
fn a_crash_while_publishing_a_heartbeat_or_saving_the_cache_changes_nothing_else() {
    for step in ["beat-counted", "beat-published", "cache-saved"] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        let a = Device::new(dir.path(), "a");
        Store::init(&store, a.options(), Some(&json!({"n": 1}))).unwrap();
        // Another device's change makes a new beat of `a` due (its view changes).
        let b = Device::new(dir.path(), "b");
        b.open(&store)
            .apply_patch(&[crdtdir::PatchOp::Increment {
                path: "/m".into(),
                value: 1,
            }])
            .unwrap();
        let before = fresh(&store);
        let crashed = crash_at(step, || {
            let s = a.open(&store);
            s.read_json().unwrap();
            s.beat().unwrap()
        });
        assert!(crashed, "{step}");
        assert_eq!(doc(&a, &store), before, "{step}");
        assert!(a.open(&store).beat().is_ok(), "{step}");
        let beats: Vec<String> = tree(&store)
            .into_keys()
            .filter(|k| k.ends_with(".beat"))
            .collect();
        let folders: std::collections::BTreeSet<&str> = beats
            .iter()
            .filter_map(|k| k.rsplit_once('/'))
            .map(|(d, _)| d)
            .collect();
        assert_eq!(
            beats.len(),
            folders.len(),
            "{step}: one beat per device, older beats are gone: {beats:?}"
        );
        assert_clean(&store, step);
    }
}

#[test]
fn a_crash_at_every_step_of_compaction_or_repair_loses_nothing() {
    for step in [
        "snapshot-staged",
        "snapshot-published",
        "retained",
        "recorded",
        "deleting",
    ] {
        let (_dir, store, a) = store_with_keys(5);
        let before = fresh(&store);
        assert!(crash_at(step, || a.open(&store).compact()), "{step}");
        assert_eq!(fresh(&store), before, "{step}: a new device");
        assert_eq!(doc(&a, &store), before, "{step}: the compactor");
        a.open(&store).compact().unwrap();
        assert!(op_files(&store).is_empty(), "{step}");
        assert_eq!(fresh(&store), before, "{step}: after");
        assert_clean(&store, step);
    }

    // Repair: the op files a sync tool deleted come back, even across a crash.
    let (_dir, store, a) = store_with_keys(3);
    let before = fresh(&store);
    for rel in op_files(&store) {
        std::fs::remove_file(store.join(rel)).unwrap();
    }
    assert!(crash_at("republished", || a.open(&store).repair()));
    let repaired = a.open(&store).repair().unwrap();
    assert_eq!(repaired.republished.len(), 2);
    assert_eq!(fresh(&store), before);
    assert_clean(&store, "repair");
}

/// A crash or a full disk at every packing step loses nothing: what is left reads whole on
/// this device and on a fresh one, and the next packing finishes the job (one pack, no
/// loose file, no temp).
#[test]
fn packing_survives_a_crash_or_a_full_disk_at_every_step() {
    let json = |s: &Store| serde_json::to_string(&s.read().unwrap().to_json()).unwrap();
    for step in [
        "pack-kept",
        "pack-published",
        "loose-deleting",
        "pack-settled",
    ] {
        for crash in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let store = dir.path().join("store");
            let a = Device::new(dir.path(), "a");
            let b = Device::new(dir.path(), "b");
            Store::init(&store, a.options(), Some(&json!({}))).unwrap();
            let sa = Store::open(&store, a.options().pack_size(0)).unwrap();
            for i in 0..6 {
                sa.apply_patch(&[PatchOp::set(format!("/k{i}"), json!(i))])
                    .unwrap();
            }
            // b has everything: the loose files may go at once.
            let sb = b.open(&store);
            let want = json(&sb);
            sb.beat().unwrap();
            if crash {
                assert!(crash_at(step, || sa.pack()), "{step}: not reached");
            } else {
                let _armed = fault::inject(step, Fault::Fail);
                assert!(sa.pack().is_err(), "{step}: not reached");
            }
            let fresh = Device::new(dir.path(), &format!("fresh-{step}-{crash}"));
            assert_eq!(json(&fresh.open(&store)), want, "{step} crash={crash}");
            let sa = Store::open(&store, a.options().pack_size(0)).unwrap();
            assert_eq!(json(&sa), want, "{step} crash={crash}");
            sa.pack().unwrap();
            let files: Vec<String> = tree(&store).into_keys().collect();
            let count = |f: &dyn Fn(&String) -> bool| files.iter().filter(|p| f(p)).count();
            assert_eq!(count(&|p| p.ends_with(".op")), 0, "{step} {files:?}");
            assert_eq!(count(&|p| p.ends_with(".pack")), 1, "{step} {files:?}");
            assert_eq!(count(&|p| p.contains(".crdtdir-")), 0, "{step} {files:?}");
            let again = Device::new(dir.path(), &format!("again-{step}-{crash}"));
            assert_eq!(json(&again.open(&store)), want, "{step} crash={crash}");
        }
    }
}

/// `init_from_store` (a copy of a store with its whole history, here into an encrypted one)
/// is all or nothing like `init`: a failure at any step leaves the target as it was; a crash
/// at any step lets the same call run again and finish it (or the store is already whole);
/// either way the new store holds every change of the source, and the source is untouched.
#[test]
fn a_copy_of_a_stores_history_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source");
    let (a, b) = (Device::new(dir.path(), "a"), Device::new(dir.path(), "b"));
    Store::init(&source_path, a.options(), Some(&json!({"items": ["x"]}))).unwrap();
    b.open(&source_path).apply_patch(&set("b", 1)).unwrap();
    a.open(&source_path).apply_patch(&set("a", 2)).unwrap();
    let source_tree = tree(&source_path);
    let source = Store::open(&source_path, a.options().read_only(true)).unwrap();
    let want = source.read().unwrap().to_json();
    let hashes = |s: &Store| {
        let mut h: Vec<String> = s.history().unwrap().into_iter().map(|c| c.hash).collect();
        h.sort();
        h
    };
    let want_hashes = hashes(&source);
    let steps = [
        "marker-published",
        "snapshot-staged",
        "snapshot-published",
        "retained",
        "recorded",
    ];
    for (i, step) in steps.into_iter().enumerate() {
        let target = dir.path().join(format!("fail-{i}"));
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("notes.txt"), "the user's own file").unwrap();
        let before = tree(&target);
        let failed = {
            let _armed = fault::inject(step, Fault::Fail);
            Store::init_from_store(&target, a.options().encrypt(true), &source)
        };
        assert!(failed.is_err(), "{step}");
        assert_eq!(tree(&target), before, "{step}: the folder is as it was");

        let target = dir.path().join(format!("crash-{i}"));
        assert!(crash_at(step, || Store::init_from_store(
            &target,
            a.options().encrypt(true),
            &source
        )));
        match Store::init_from_store(&target, a.options().encrypt(true), &source) {
            Ok(_) => {}
            Err(e) => assert!(
                e.to_string().contains("already a crdtdir store"),
                "{step}: {e}"
            ),
        }
        let made = a.open(&target);
        assert!(made.is_encrypted(), "{step}");
        assert_eq!(made.read().unwrap().to_json(), want, "{step}");
        assert_eq!(hashes(&made), want_hashes, "{step}");
        assert_eq!(
            tree(&source_path),
            source_tree,
            "{step}: the source is untouched"
        );
    }
}

/// Key rotation crashes or fails at each step: the device's older keys are never lost (it
/// reads its whole history), the next write publishes a missing rotation record, a device
/// given the device's key then reads everything, and a device with only the first key still
/// reads what it sealed.
#[test]
fn a_key_rotation_stopped_at_any_step_loses_no_key_and_no_write() {
    for step in ["keys-kept-older", "key-rotated-kept", "rotation-staged"] {
        for fault in [Fault::Crash, Fault::Fail] {
            let dir = tempfile::tempdir().unwrap();
            let store = dir.path().join("s");
            let (a, b) = (Device::new(dir.path(), "a"), Device::new(dir.path(), "b"));
            let made = Store::init(&store, a.options().encrypt(true), None).unwrap();
            made.apply_patch(&set("before", 1)).unwrap();
            let first = made.key().unwrap();
            b.open(&store).import_key(&first).unwrap();
            drop(made);
            let stopped = {
                let _armed = fault::inject(step, fault);
                catch_unwind(AssertUnwindSafe(|| a.open(&store).rotate_key()))
            };
            match (fault, stopped) {
                (Fault::Crash, Err(payload)) => {
                    assert_eq!(
                        payload.downcast_ref::<Crashed>(),
                        Some(&Crashed(fault_name(step)))
                    );
                }
                (Fault::Fail, Ok(Err(_))) => {}
                (f, other) => panic!("{step} {f:?}: {:?}", other.map(|r| r.is_ok())),
            }
            // The next write completes what the rotation left.
            let laptop = a.open(&store);
            laptop.apply_patch(&set("after", 2)).unwrap();
            let want = json!({"before": 1, "after": 2});
            assert_eq!(laptop.read().unwrap().to_json(), want, "{step} {fault:?}");
            let key = laptop.key().unwrap();
            let c = Device::new(dir.path(), "c");
            let fresh = c.open(&store);
            fresh.import_key(&key).unwrap();
            assert_eq!(
                fresh.read().unwrap().to_json(),
                want,
                "{step} {fault:?}: new device"
            );
            // The first key still opens what it sealed.
            let phone = b.open(&store).read().unwrap().to_json();
            assert_eq!(phone["before"], 1, "{step} {fault:?}");
            let temps: Vec<String> = tree(&store)
                .into_keys()
                .filter(|p| p.starts_with("keys/.crdtdir-"))
                .collect();
            assert!(temps.is_empty(), "{step} {fault:?}: {temps:?}");
        }
    }
}
