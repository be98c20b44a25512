//! What the world does to a store folder and a state dir — lost snapshots, deletions that
//! arrive first, rolled-back folders, lost caches — loses no change and strands no device.

use std::path::{Path, PathBuf};

use crdtdir::{PatchOp, Store};
use serde_json::json;

use crate::common::{merged, op_files, replica, sync_ops, tree, Device};

fn set(d: &Device, store: &Path, key: &str, v: i64) {
    d.open(store)
        .apply_patch(&[PatchOp::set(format!("/m/{key}"), json!(v))])
        .unwrap();
}

/// Three devices' history in one folder; every device has merged all of it.
fn history(dir: &Path) -> (PathBuf, Vec<Device>) {
    let store = dir.join("store");
    let devices: Vec<Device> = ["a", "b", "c"]
        .iter()
        .map(|n| Device::new(dir, n))
        .collect();
    Store::init(&store, devices[0].options(), Some(&json!({"m": {}}))).unwrap();
    for round in 0..3 {
        for (i, d) in devices.iter().enumerate() {
            set(
                d,
                &store,
                &format!("{}{round}", d.name),
                (i * 10 + round) as i64,
            );
        }
    }
    for d in &devices {
        merged(d, &store);
    }
    (store, devices)
}

fn cold(store: &Path) -> crdtdir::View {
    let dir = tempfile::tempdir().unwrap();
    Device::new(dir.path(), "cold").open(store).read().unwrap()
}

fn json_of(view: &crdtdir::View) -> String {
    serde_json::to_string(&view.to_json()).unwrap()
}

/// Another device compacts its copy of the folder; returns that copy, the snapshot's path
/// and the device.
fn compact_elsewhere(dir: &Path, store: &Path) -> (PathBuf, String, Device) {
    let elsewhere = dir.join("elsewhere");
    replica(store, &elsewhere);
    sync_ops(store, &elsewhere, |_| true);
    let compactor = Device::new(dir, "compactor");
    let out = compactor.open(&elsewhere).compact().unwrap();
    (elsewhere, out.snapshot.unwrap(), compactor)
}

/// Copies the files (not op files) of `from` that `pick` accepts into `to`.
fn deliver(from: &Path, to: &Path, pick: impl Fn(&str) -> bool) {
    for (rel, bytes) in tree(from) {
        if !rel.starts_with("ops/") && pick(&rel) {
            let target = to.join(&rel);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(&target, bytes).unwrap();
        }
    }
}

fn delete_all_op_files(store: &Path) {
    for rel in op_files(store) {
        std::fs::remove_file(store.join(rel)).unwrap();
    }
}

/// Regression (issue: "cache loss empties a view"): the folder got compaction's deletions
/// but not its snapshot; deleting or tearing the cache took the view to `{}`. The device
/// keeps what the folder lost apart from its cache, and says so.
#[test]
fn losing_the_cache_while_the_folder_lacks_history_changes_nothing_but_speed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    let b = &devices[1];
    let full = merged(b, &store);
    let (elsewhere, snapshot, _) = compact_elsewhere(dir.path(), &store);
    delete_all_op_files(&store);
    let view = b.open(&store).read().unwrap();
    assert_eq!(json_of(&view), full);
    assert_eq!(view.report().unprovided, 10, "{:?}", view.report());

    let cache_dir = std::fs::read_dir(b.state.join("stores"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for damage in ["deleted", "torn", "foreign"] {
        for name in ["cache", "view"] {
            let path = cache_dir.join(name);
            match damage {
                "deleted" => drop(std::fs::remove_file(&path)),
                "torn" => {
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
                }
                _ => std::fs::write(&path, b"not a cache").unwrap(),
            }
        }
        let view = b.open(&store).read().unwrap();
        assert_eq!(json_of(&view), full, "cache {damage}");
        assert_eq!(view.report().unprovided, 10, "cache {damage}");
    }

    // The snapshot arrives: the folder provides everything again, nothing is held.
    deliver(&elsewhere, &store, |rel| {
        rel == snapshot || rel.starts_with("features/")
    });
    let view = b.open(&store).read().unwrap();
    assert_eq!(json_of(&view), full);
    assert_eq!(view.report().unprovided, 0, "{:?}", view.report());
    assert!(!cache_dir.join("held").exists());
}

/// Regression (issue: "an orphan compaction record"): a record whose snapshot is lost, once
/// `repair` wrote the history back, or a record a sync tool resurrected after a later
/// compaction folded its snapshot, left every device "incomplete" and `compact` refused
/// forever. A record is satisfied when the view holds every head it names.
#[test]
fn a_record_whose_history_the_view_holds_is_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    let full = merged(&devices[1], &store);
    let (elsewhere, snapshot, _) = compact_elsewhere(dir.path(), &store);
    // The deletions and the record arrive; the snapshot is lost on the way.
    delete_all_op_files(&store);
    deliver(&elsewhere, &store, |rel| rel != snapshot);
    assert!(!cold(&store).is_complete());
    let repaired = devices[1].open(&store).repair().unwrap();
    assert!(repaired.snapshot.is_some());
    let view = cold(&store);
    assert_eq!(json_of(&view), full);
    assert!(view.is_complete(), "{:?}", view.report());
    assert!(devices[1].open(&store).compact_plan(300).is_ok());
    assert!(devices[2].open(&store).read().unwrap().is_complete());

    // Compact again (folding the repair snapshot), then the old record comes back.
    let record = snapshot.replace(".sqlite", ".record");
    devices[1].open(&store).compact().unwrap();
    std::fs::write(
        store.join(&record),
        std::fs::read(elsewhere.join(&record)).unwrap(),
    )
    .unwrap();
    let view = cold(&store);
    assert_eq!(json_of(&view), full);
    assert!(view.is_complete(), "{:?}", view.report());
    assert!(devices[2].open(&store).read().unwrap().is_complete());
}

/// Regression (issue: "a new device that received compaction's deletions first prints {} with
/// no warning"): the folder has neither snapshot nor record yet. Other devices' heartbeats
/// name heads this view lacks, in a store that has compacted: the view is incomplete.
#[test]
fn a_new_device_that_got_the_deletions_first_knows_its_view_is_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = history(dir.path());
    let (elsewhere, _, compactor) = compact_elsewhere(dir.path(), &store);
    assert!(compactor.open(&elsewhere).beat().unwrap());
    let new_folder = dir.path().join("new");
    replica(&store, &new_folder);
    deliver(&elsewhere, &new_folder, |rel| {
        rel.starts_with("features/") || rel.starts_with("devices/")
    });
    let view = cold(&new_folder);
    assert_eq!(view.to_json(), json!({}));
    assert!(!view.is_complete(), "{:?}", view.report());
    let newcomer = Device::new(dir.path(), "newcomer");
    assert!(newcomer.open(&new_folder).compact_plan(300).is_err());
    // In a store that never compacted, heads in flight are the usual sync lag.
    let plain = dir.path().join("plain");
    replica(&store, &plain);
    deliver(&elsewhere, &plain, |rel| rel.starts_with("devices/"));
    assert!(cold(&plain).is_complete());
}

/// Regression (issue: "a folder rolled back from a backup"): the folder lost changes that a
/// device's view holds; nobody was told and they were gone for new devices for good. The
/// device that holds them says so on every read and write, and its next write writes them
/// back (as `repair` does).
#[test]
fn a_folder_rolled_back_from_a_backup_is_repaired_by_a_device_that_holds_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    let backup = dir.path().join("backup");
    replica(&store, &backup);
    sync_ops(&store, &backup, |_| true);
    for (i, d) in devices.iter().enumerate() {
        set(d, &store, &format!("late-{}", d.name), i as i64);
    }
    let full = merged(&devices[1], &store);
    // The folder is restored from the backup: the late changes are gone.
    std::fs::remove_dir_all(&store).unwrap();
    replica(&backup, &store);
    sync_ops(&backup, &store, |_| true);
    let view = devices[1].open(&store).read().unwrap();
    assert_eq!(json_of(&view), full, "the view never goes back");
    assert_eq!(view.report().unprovided, 3, "{:?}", view.report());
    let out = devices[1]
        .open(&store)
        .apply_patch(&[PatchOp::set("/m/after", json!(1))])
        .unwrap();
    // The write publishes its own lost op file again, says what else the folder lost, and
    // writes that back on its own: `repair` has nothing left to do.
    assert!(
        out.notices
            .iter()
            .any(|n| matches!(n, crdtdir::Notice::FolderLost { count: 2 })),
        "{out:?}"
    );
    assert!(
        out.notices
            .iter()
            .any(|n| matches!(n, crdtdir::Notice::WroteBack { .. })),
        "{out:?}"
    );
    let repaired = devices[1].open(&store).repair().unwrap();
    assert!(repaired.snapshot.is_none(), "{repaired:?}");
    let view = cold(&store);
    let v = view.to_json();
    for d in &devices {
        assert!(v["m"].get(format!("late-{}", d.name)).is_some(), "{v}");
    }
    assert_eq!(
        devices[1].open(&store).read().unwrap().report().unprovided,
        0
    );
}

/// Ages every file under `dir` by `days` (a clock that jumped ahead).
fn age_files(dir: &Path, days: u64) {
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 24 * 3600);
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if entry.file_type().is_file() {
            std::fs::File::open(entry.path())
                .unwrap()
                .set_modified(then)
                .unwrap();
        }
    }
}

/// Regression (issue 14, hygiene: "a +31-day clock jump deletes unverified retention
/// copies"): a device's own op file the folder lost, and a retention copy whose snapshot the
/// folder lost, outlive any clock jump: age alone never drops the only copy.
#[test]
fn a_clock_jump_never_drops_the_only_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let me = Device::new(dir.path(), "me");
    Store::init(&store, me.options(), Some(&json!({"m": {}}))).unwrap();
    set(&me, &store, "kept", 1);
    // The sync tool deletes the op file, then the clock jumps 40 days ahead.
    let own: Vec<String> = op_files(&store);
    for rel in &own {
        std::fs::remove_file(store.join(rel)).unwrap();
    }
    let outbox = std::fs::read_dir(me.state.join("stores"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path()
        .join("outbox");
    assert!(outbox.is_dir());
    age_files(&outbox, 40);
    me.open(&store).status().unwrap();
    let repaired = me.open(&store).repair().unwrap();
    assert_eq!(repaired.republished.len(), own.len(), "{repaired:?}");
    assert_eq!(cold(&store).to_json()["m"]["kept"], json!(1));

    // A compaction whose snapshot the folder then loses, 40 days later.
    let out = me.open(&store).compact().unwrap();
    let snapshot = out.snapshot.clone().unwrap_or_else(|| panic!("{out:?}"));
    std::fs::remove_file(store.join(&snapshot)).unwrap();
    let retention = outbox.with_file_name("retention");
    age_files(&retention, 40);
    me.open(&store).status().unwrap();
    assert_eq!(
        std::fs::read_dir(&retention).unwrap().count(),
        1,
        "the retention copy of a snapshot the folder lost stays"
    );
    me.open(&store).repair().unwrap();
    assert_eq!(cold(&store).to_json()["m"]["kept"], json!(1));
}

/// A clock 40 days ahead releases no retention copy that another device has not verified,
/// even with its snapshot in the folder (that released it before: issue "no lost writes,
/// round 2", item 16). A later compaction's copy holds everything an earlier one holds, so
/// the earlier copy goes then: one copy at a time, whatever the clock.
#[test]
fn a_clock_jump_never_releases_an_unverified_retention_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let me = Device::new(dir.path(), "me");
    let other = Device::new(dir.path(), "other");
    Store::init(&store, me.options(), Some(&json!({"m": {}}))).unwrap();
    set(&me, &store, "a", 1);
    // Another device beats once and goes away without ever seeing a snapshot.
    other.open(&store).beat().unwrap();
    let first = me.open(&store).compact().unwrap().snapshot.unwrap();
    let retention = walkdir::WalkDir::new(&me.state)
        .into_iter()
        .flatten()
        .find(|e| e.file_name() == "retention")
        .unwrap()
        .into_path();
    let copies = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&retention)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    age_files(&retention, 40);
    me.open(&store).beat().unwrap();
    set(&me, &store, "b", 2);
    assert!(store.join(&first).is_file());
    assert_eq!(copies().len(), 1, "an unverified copy stays, however old");
    // A second compaction: its copy holds all the first one held.
    let second = me.open(&store).compact().unwrap().snapshot.unwrap();
    me.open(&store).beat().unwrap();
    let hash = |snapshot: &str| {
        snapshot
            .trim_start_matches("snapshots/")
            .trim_end_matches(".sqlite")
            .to_string()
    };
    assert_eq!(copies(), vec![format!("{}.automerge", hash(&second))]);
}

/// A folder restored from an old backup: the device that holds the newer edits — its own
/// and another device's that is gone — writes them back on its own with its next write, so
/// a new device sees them without anyone running `repair`. (It only said so before.)
#[test]
fn a_folder_rolled_back_is_written_back_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (a, b) = (Device::new(dir.path(), "a"), Device::new(dir.path(), "b"));
    Store::init(&store, a.options(), Some(&json!({"m": {}}))).unwrap();
    let backup = dir.path().join("backup");
    crate::common::copy_dir(&store, &backup);
    set(&b, &store, "from_b", 1);
    set(&a, &store, "from_a", 1);
    a.open(&store).read().unwrap();
    // The folder goes back to the backup; b is never seen again.
    std::fs::remove_dir_all(&store).unwrap();
    crate::common::copy_dir(&backup, &store);
    assert!(cold(&store).to_json()["m"].get("from_b").is_none());
    let out = a
        .open(&store)
        .apply_patch(&[PatchOp::set("/m/later", json!(1))])
        .unwrap();
    assert!(
        out.notices
            .iter()
            .any(|n| matches!(n, crdtdir::Notice::WroteBack { .. })),
        "{out:?}"
    );
    let v = cold(&store).to_json();
    assert_eq!(
        (&v["m"]["from_a"], &v["m"]["from_b"], &v["m"]["later"]),
        (&json!(1), &json!(1), &json!(1)),
        "{v}"
    );
    // Settled: the next write has nothing to write back.
    let out = a
        .open(&store)
        .apply_patch(&[PatchOp::set("/m/again", json!(1))])
        .unwrap();
    assert!(out.notices.is_empty(), "{out:?}");
}
