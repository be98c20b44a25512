//! Compaction: snapshots that can never be the last copy of history.

use std::path::{Path, PathBuf};

use crdtdir::{PatchOp, Store};
use serde_json::json;

use crate::common::{merged, op_files, replica, sync_ops, tree, Device};

fn set(k: &str, v: i64) -> [PatchOp; 1] {
    [PatchOp::set(format!("/m/{k}"), json!(v))]
}

/// A store with history from three devices, all in one folder.
fn history(dir: &Path) -> (PathBuf, Vec<Device>) {
    let store = dir.join("store");
    let devices: Vec<Device> = ["a", "b", "c"]
        .iter()
        .map(|n| Device::new(dir, n))
        .collect();
    Store::init(
        &store,
        devices[0].options(),
        Some(&json!({"m": {}, "l": []})),
    )
    .unwrap();
    for round in 0..4 {
        for (i, d) in devices.iter().enumerate() {
            d.open(&store)
                .apply_patch(&set(&format!("k{i}{round}"), round))
                .unwrap();
        }
    }
    (store, devices)
}

fn snapshots(store: &Path) -> Vec<String> {
    tree(store)
        .into_keys()
        .filter(|p| p.ends_with(".sqlite"))
        .collect()
}

/// What a device that never read `store` reports about the file at `name`, and its view.
fn reported(store: &Path, name: &str) -> (crdtdir::Problem, crdtdir::View) {
    let fresh = tempfile::tempdir().unwrap();
    let view = Device::new(fresh.path(), "fresh")
        .open(store)
        .read()
        .unwrap();
    let problem = view
        .report()
        .problems
        .iter()
        .find(|p| p.path == name)
        .unwrap_or_else(|| panic!("{name} not reported: {:?}", view.report()))
        .clone();
    (problem, view)
}

fn cold(store: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    merged(&Device::new(dir.path(), "cold"), store)
}

#[test]
fn compaction_folds_every_op_file_into_a_verified_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    let before = merged(&devices[0], &store);
    let out = devices[0].open(&store).compact().unwrap();
    assert!(out.snapshot.is_some());
    assert!(op_files(&store).is_empty(), "{:?}", op_files(&store));
    assert_eq!(snapshots(&store).len(), 1);
    assert!(store.join("features/snapshots").exists());
    for d in &devices {
        assert_eq!(
            merged(d, &store),
            before,
            "device {} after compaction",
            d.name
        );
    }
    assert_eq!(cold(&store), before, "a device that never saw the op files");
    // Writing goes on after compaction, and a second compaction leaves one snapshot.
    devices[1]
        .open(&store)
        .apply_patch(&set("after", 1))
        .unwrap();
    let with_more = merged(&devices[2], &store);
    assert!(with_more.contains("after"));
    devices[2].open(&store).compact().unwrap();
    assert_eq!(snapshots(&store).len(), 1);
    assert!(op_files(&store).is_empty());
    assert_eq!(cold(&store), with_more);
}

/// Device names survive compaction, twice over: a device that never saw the op files
/// names every folded change as its writer named it (the snapshot carries the names), and
/// a second compaction keeps the first one's names.
#[test]
fn device_names_survive_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    let names = |store: &Path| {
        let fresh = tempfile::tempdir().unwrap();
        let mut by_actor: std::collections::BTreeMap<String, String> = Default::default();
        for c in Device::new(fresh.path(), "fresh")
            .open(store)
            .history()
            .unwrap()
        {
            by_actor.insert(c.actor, c.device);
        }
        by_actor
    };
    let before = names(&store);
    assert_eq!(
        before.values().collect::<std::collections::BTreeSet<_>>(),
        ["a", "b", "c"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect(),
    );
    devices[0].open(&store).compact().unwrap();
    assert!(op_files(&store).is_empty());
    assert_eq!(names(&store), before, "after one compaction");
    // A device that only ever saw the snapshot compacts again after a new write.
    let late = Device::new(dir.path(), "late");
    late.open(&store).apply_patch(&set("late", 1)).unwrap();
    late.open(&store).compact().unwrap();
    let after = names(&store);
    assert_eq!(after.len(), before.len() + 1);
    for (actor, name) in &before {
        assert_eq!(after.get(actor), Some(name), "actor {actor}");
    }
    assert!(after.values().any(|n| n == "late"));
    // And `status` on a fresh device lists them by name.
    let fresh = tempfile::tempdir().unwrap();
    let status = Device::new(fresh.path(), "fresh")
        .open(&store)
        .status()
        .unwrap();
    let listed: Vec<&str> = status.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(listed, ["a", "b", "c", "late"]);
}

/// The snapshot is a real SQLite database: read-only, intact, not WAL, queryable.
#[test]
fn the_snapshot_opens_read_only_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    let json = merged(&devices[0], &store);
    let ops_before = op_files(&store);
    devices[0].open(&store).compact().unwrap();
    let path = store.join(&snapshots(&store)[0]);
    assert!(std::fs::metadata(&path).unwrap().permissions().readonly());
    let uri = format!("file:{}?mode=ro&immutable=1", path.display());
    let db = rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_ne!(mode.to_lowercase(), "wal");
    let stored: String = db
        .query_row("SELECT json FROM document", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, json);
    let folded: Vec<String> = db
        .prepare("SELECT path FROM folded_op_files ORDER BY path")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(folded, ops_before, "exactly the op files that were there");
    drop(db);
    let siblings: Vec<String> = tree(&store)
        .into_keys()
        .filter(|p| p.contains("-wal") || p.contains("-shm") || p.contains("-journal"))
        .collect();
    assert!(siblings.is_empty(), "{siblings:?}");
}

/// The sync tool delivers the deletions but not the snapshot (or a damaged one): a device
/// that had merged keeps its view, a cold one says its view is incomplete, and `repair` on
/// a device that has the history makes everyone complete again.
#[test]
fn deletions_without_the_snapshot_lose_nothing_and_repair_restores_it() {
    for damage in ["lost", "corrupted"] {
        let dir = tempfile::tempdir().unwrap();
        let (store, devices) = history(dir.path());
        let full = merged(&devices[1], &store); // b has merged everything
                                                // Elsewhere, a's folder compacts; b's folder receives the deletions and the record.
        let elsewhere = dir.path().join("elsewhere");
        replica(&store, &elsewhere);
        sync_ops(&store, &elsewhere, |_| true);
        let there = Device::new(dir.path(), "a-there");
        there.open(&elsewhere).compact().unwrap();
        let snap = snapshots(&elsewhere).remove(0);
        for rel in op_files(&store) {
            std::fs::remove_file(store.join(rel)).unwrap();
        }
        std::fs::create_dir_all(store.join("snapshots")).unwrap();
        let record = snap.replace(".sqlite", ".record");
        std::fs::copy(elsewhere.join(&record), store.join(&record)).unwrap();
        if damage == "corrupted" {
            let mut bytes = std::fs::read(elsewhere.join(&snap)).unwrap();
            let n = bytes.len();
            bytes.truncate(n / 2);
            std::fs::write(store.join(&snap), bytes).unwrap();
        }
        assert_eq!(
            merged(&devices[1], &store),
            full,
            "{damage}: the warm device keeps its view"
        );
        let cold_dir = tempfile::tempdir().unwrap();
        let cold_dev = Device::new(cold_dir.path(), "cold");
        let view = cold_dev.open(&store).read().unwrap();
        assert_eq!(
            view.report().incomplete.len(),
            1,
            "{damage}: {:?}",
            view.report()
        );
        assert!(
            matches!(
                cold_dev.open(&store).compact_plan(300),
                Err(crdtdir::Error::Incomplete { .. })
            ),
            "compact refuses an incomplete view"
        );
        // The warm device holds every head the record names: its view is complete, and it
        // knows the folder lost what it holds.
        let warm = devices[1].open(&store).read().unwrap();
        assert!(warm.is_complete(), "{damage}: {:?}", warm.report());
        assert!(
            warm.report().unprovided > 0,
            "{damage}: {:?}",
            warm.report()
        );
        // b still has everything: repair writes it back.
        let repaired = devices[1].open(&store).repair().unwrap();
        assert!(repaired.snapshot.is_some(), "{damage}");
        assert_eq!(
            cold(&store),
            full,
            "{damage}: complete again for a new device"
        );
        assert!(
            devices[1].open(&store).repair().unwrap().is_empty(),
            "nothing left to repair"
        );
    }
}

/// A device wrongly believed offline keeps writing during compaction: after the folders
/// exchange everything (the compactor's deletions included), nothing it wrote is lost.
#[test]
fn a_device_writing_during_compaction_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    let other = dir.path().join("other");
    replica(&store, &other);
    sync_ops(&store, &other, |_| true);
    let c_there = Device::new(dir.path(), "c-there");
    c_there
        .open(&other)
        .apply_patch(&set("meanwhile", 7))
        .unwrap();
    let before = op_files(&store);
    devices[0].open(&store).compact().unwrap();
    let deleted: Vec<String> = before
        .into_iter()
        .filter(|f| !store.join(f).exists())
        .collect();
    assert!(!deleted.is_empty());
    // The sync tool: deletions and the snapshot go one way, the new op file the other.
    for f in &deleted {
        let _ = std::fs::remove_file(other.join(f));
    }
    std::fs::create_dir_all(other.join("snapshots")).unwrap();
    for f in tree(&store)
        .into_keys()
        .filter(|k| k.starts_with("snapshots/"))
    {
        std::fs::copy(store.join(&f), other.join(&f)).unwrap();
    }
    sync_ops(&other, &store, |_| true);
    let a = merged(&devices[0], &store);
    assert!(a.contains("meanwhile"), "{a}");
    assert_eq!(a, merged(&c_there, &other));
    assert_eq!(a, cold(&store));
    assert_eq!(a, cold(&other));
}

/// Two devices compact at once from different states: both snapshots are honoured, the
/// devices agree, nothing is lost, and the next compaction leaves one snapshot.
#[test]
fn two_devices_compacting_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    let other = dir.path().join("other");
    replica(&store, &other);
    sync_ops(&store, &other, |_| true);
    devices[0]
        .open(&store)
        .apply_patch(&set("only-here", 1))
        .unwrap();
    let b_there = Device::new(dir.path(), "b-there");
    b_there
        .open(&other)
        .apply_patch(&set("only-there", 2))
        .unwrap();
    devices[0].open(&store).compact().unwrap();
    b_there.open(&other).compact().unwrap();
    // Full exchange: snapshots, records, remaining op files; each side's deletions stand.
    for (from, to) in [(&store, &other), (&other, &store)] {
        std::fs::create_dir_all(to.join("snapshots")).unwrap();
        for f in tree(from)
            .into_keys()
            .filter(|k| k.starts_with("snapshots/"))
        {
            if !to.join(&f).exists() {
                std::fs::copy(from.join(&f), to.join(&f)).unwrap();
            }
        }
        sync_ops(from, to, |_| true);
    }
    assert_eq!(snapshots(&store).len(), 2);
    let a = merged(&devices[0], &store);
    assert!(a.contains("only-here") && a.contains("only-there"), "{a}");
    assert_eq!(a, merged(&b_there, &other));
    assert_eq!(a, cold(&store));
    devices[2].open(&store).compact().unwrap();
    assert_eq!(snapshots(&store).len(), 1);
    assert_eq!(cold(&store), a);
}

/// The compactor keeps a retention copy until every other device's beat says it verified
/// the snapshot; its next command (a heartbeat, which tidies local copies) lets it go.
#[test]
fn the_retention_copy_goes_once_every_other_device_verified_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    for d in &devices {
        d.open(&store).beat().unwrap();
    }
    devices[0].open(&store).compact().unwrap();
    let retention = |d: &Device| -> usize {
        std::fs::read_dir(walk_to(&d.state, "retention")).map_or(0, |r| r.count())
    };
    devices[0].open(&store).beat().unwrap();
    assert_eq!(retention(&devices[0]), 1, "kept: nobody verified it yet");
    devices[1].open(&store).read().unwrap();
    devices[1].open(&store).beat().unwrap();
    devices[0].open(&store).beat().unwrap();
    assert_eq!(retention(&devices[0]), 1, "kept: c has not verified it");
    devices[2].open(&store).read().unwrap();
    devices[2].open(&store).beat().unwrap();
    // Reads only read: status, presence and the compaction plan release nothing.
    let reader = devices[0].open(&store);
    reader.status().unwrap();
    reader.presence(60).unwrap();
    reader.compact_plan(60).unwrap();
    assert_eq!(retention(&devices[0]), 1, "released by a read");
    devices[0].open(&store).beat().unwrap();
    assert_eq!(
        retention(&devices[0]),
        0,
        "every other device verified the snapshot"
    );
}

fn walk_to(root: &Path, name: &str) -> PathBuf {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.file_name() == name)
        .map(|e| e.into_path())
        .unwrap_or_else(|| root.join("missing"))
}

/// A change waiting for a dependency is not folded: its file stays, it is still reported
/// waiting, and it applies once the dependency arrives.
#[test]
fn waiting_changes_are_not_folded_and_apply_later() {
    use crdtdir::automerge::transaction::Transactable;
    use crdtdir::automerge::{ActorId, Automerge, ReadDoc, ROOT};
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    let actor = ActorId::random();
    let mut doc = Automerge::new();
    doc.set_actor(actor);
    let mut tx = doc.transaction();
    tx.put(ROOT, "first", 1).unwrap();
    let h1 = tx.commit().0.unwrap();
    let mut tx = doc.transaction();
    tx.put(ROOT, "second", 2).unwrap();
    let h2 = tx.commit().0.unwrap();
    let waiting = crate::common::put_change(&store, "x", &doc.get_change_by_hash(&h2).unwrap());
    devices[0].open(&store).compact().unwrap();
    assert!(
        store.join(&waiting).exists(),
        "a waiting change's file stays"
    );
    assert_eq!(op_files(&store), vec![waiting.clone()]);
    let view = devices[1].open(&store).read().unwrap();
    assert_eq!(view.report().waiting.len(), 1);
    crate::common::put_change(&store, "x", &doc.get_change_by_hash(&h1).unwrap());
    let after = cold(&store);
    assert!(
        after.contains(r#""first":1"#) && after.contains(r#""second":2"#),
        "{after}"
    );
    assert_eq!(merged(&devices[1], &store), after);
}

/// A snapshot of a newer schema version is skipped and reported, not trusted.
#[test]
fn a_newer_snapshot_version_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    let before = merged(&devices[0], &store);
    let elsewhere = dir.path().join("elsewhere");
    replica(&store, &elsewhere);
    sync_ops(&store, &elsewhere, |_| true);
    Device::new(dir.path(), "a-there")
        .open(&elsewhere)
        .compact()
        .unwrap();
    // Rewrite the snapshot as a newer build would (schema version 2), under its new name.
    let snap = snapshots(&elsewhere).remove(0);
    let copy = dir.path().join("copy.sqlite");
    std::fs::copy(elsewhere.join(&snap), &copy).unwrap();
    let mut perms = std::fs::metadata(&copy).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&copy, perms).unwrap();
    {
        let db = rusqlite::Connection::open(&copy).unwrap();
        db.execute("UPDATE meta SET value = '2' WHERE key = 'format'", [])
            .unwrap();
    }
    let bytes = std::fs::read(&copy).unwrap();
    let name = format!("snapshots/{}.sqlite", &blake3::hash(&bytes).to_hex()[..32]);
    std::fs::create_dir_all(store.join("snapshots")).unwrap();
    std::fs::write(store.join(&name), &bytes).unwrap();
    let (problem, view) = reported(&store, &name);
    assert!(problem.reason.contains("newer"), "{}", problem.reason);
    assert_eq!(
        serde_json::to_string(&view.to_json()).unwrap(),
        before,
        "the op files still count"
    );
}

/// Writes `bytes` into the existing file at `path`, as a sync tool that completes or restores
/// a file in place does (same inode), and sets its modification time to `mtime`.
fn rewrite_in_place(path: &Path, bytes: &[u8], mtime: std::time::SystemTime) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
    f.set_modified(mtime).unwrap();
}

/// Regression (issue: "a snapshot completed in place is never picked up"): a device that
/// merged while the snapshot was half downloaded kept `{}` forever, since merges compared
/// snapshot names only. Now a snapshot, or a damaged op file, whose size, times or inode
/// change is read again, even when size and modification time come back the same.
#[test]
fn a_snapshot_or_op_file_completed_in_place_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    devices[0].open(&store).compact().unwrap();
    let full = cold(&store);
    let snapshot = snapshots(&store).pop().unwrap();
    let bytes = std::fs::read(store.join(&snapshot)).unwrap();

    // The phone's folder got the marker, the record and the deletions, and the snapshot
    // under its final name with half its bytes.
    let phone_dir = dir.path().join("phone");
    for (rel, content) in tree(&store) {
        if !rel.starts_with("ops/") {
            let target = phone_dir.join(&rel);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(&target, content).unwrap();
        }
    }
    let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    rewrite_in_place(&phone_dir.join(&snapshot), &bytes[..bytes.len() / 2], when);
    let phone = Device::new(dir.path(), "phone");
    let store_phone = phone.open(&phone_dir);
    assert!(!store_phone.read().unwrap().is_complete());
    let (json, _) = store_phone.read_json().unwrap();
    assert_eq!(json, "{}");

    rewrite_in_place(&phone_dir.join(&snapshot), &bytes, when);
    let (json, report) = phone.open(&phone_dir).read_json().unwrap();
    assert_eq!(json, full, "{report:?}");
    assert_eq!(merged(&phone, &phone_dir), full);

    // An op file damaged in place, then restored with the same size and modification time.
    phone.open(&phone_dir).apply_patch(&set("late", 7)).unwrap();
    let late = op_files(&phone_dir).pop().unwrap();
    let good = std::fs::read(phone_dir.join(&late)).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let mut perms = std::fs::metadata(phone_dir.join(&late))
        .unwrap()
        .permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(phone_dir.join(&late), perms).unwrap();
    rewrite_in_place(&phone_dir.join(&late), &bad, when);
    let reader = Device::new(dir.path(), "reader");
    let (json, report) = reader.open(&phone_dir).read_json().unwrap();
    assert_eq!(json, full, "the damaged change is skipped");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    rewrite_in_place(&phone_dir.join(&late), &good, when);
    let (json, report) = reader.open(&phone_dir).read_json().unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["m"]["late"], json!(7));
}

/// The library refuses compaction with typed errors an app can match on, and changes
/// nothing: another device that looks online (`NotAlone`), no confirmation (`NotConfirmed`).
/// Apps that only write publish heartbeats, so their devices count as online.
#[test]
fn compaction_refusals_are_typed_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    // b and c wrote a moment ago (through the library, no CLI): they look online.
    let before = tree(&store);
    let refused = devices[0].open(&store).compact_if_alone(
        300,
        |_| panic!("not asked while others are online"),
        |_| {},
    );
    match &refused {
        Err(crdtdir::Error::NotAlone { devices: online }) => {
            let mut names: Vec<&str> = online.iter().map(|p| p.name.as_str()).collect();
            names.sort();
            assert_eq!(names, ["b", "c"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(refused.unwrap_err().is_refusal());
    assert_eq!(before, tree(&store), "a refusal leaves the folder");
    // Alone by the rule (threshold 0, their beats seen a second ago): not confirmed.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let asked = std::cell::Cell::new(false);
    let refused = devices[0].open(&store).compact_if_alone(
        0,
        |plan| {
            asked.set(true);
            assert!(plan.op_files > 0, "{plan:?}");
            false
        },
        |_| {},
    );
    assert!(asked.get(), "the plan was shown");
    assert!(
        matches!(refused, Err(crdtdir::Error::NotConfirmed)),
        "{refused:?}"
    );
    assert_eq!(before, tree(&store), "a refusal leaves the folder");
    let done = devices[0]
        .open(&store)
        .compact_if_alone(0, |_| true, |_| {})
        .unwrap();
    assert!(done.snapshot.is_some());
}

/// A compaction record of a newer version is reported as newer (not as damage), like every
/// other kind of file, and does not make the view incomplete.
#[test]
fn a_newer_compaction_record_is_reported_as_newer() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    let before = merged(&devices[0], &store);
    let mut record = Vec::new();
    let value = ciborium::Value::Map(vec![
        ("v".into(), 2.into()),
        (
            "snapshot".into(),
            "0123456789abcdef0123456789abcdef.sqlite".into(),
        ),
    ]);
    ciborium::into_writer(&value, &mut record).unwrap();
    let name = "snapshots/0123456789abcdef0123456789abcdef.record";
    std::fs::create_dir_all(store.join("snapshots")).unwrap();
    std::fs::write(store.join(name), &record).unwrap();
    let (problem, view) = reported(&store, name);
    assert_eq!(problem.kind, crdtdir::ProblemKind::Newer, "{problem:?}");
    assert!(view.is_complete(), "{:?}", view.report());
    assert_eq!(serde_json::to_string(&view.to_json()).unwrap(), before);
}

/// `status` counts the files crdtdir keeps in the folder (what a sync tool must carry):
/// every op file, snapshot and record, heartbeat, the marker and feature markers; a sync
/// tool's or the user's files are not counted.
#[test]
fn status_counts_the_files_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, devices) = history(dir.path());
    for d in &devices {
        d.open(&store).beat().unwrap();
    }
    std::fs::write(store.join("notes.txt"), b"the user's").unwrap();
    let ours = |store: &Path| {
        tree(store)
            .into_keys()
            .filter(|p| !p.ends_with('/') && p != "notes.txt")
            .count()
    };
    let files = devices[0].open(&store).status().unwrap().files;
    assert_eq!(files.ops, op_files(&store).len());
    assert_eq!(files.snapshots, 0);
    assert_eq!(files.beats, 3);
    assert_eq!(files.total, ours(&store));
    devices[0].open(&store).compact().unwrap();
    let files = devices[0].open(&store).status().unwrap().files;
    assert_eq!((files.ops, files.snapshots), (0, 2));
    assert_eq!(files.total, ours(&store));
}

/// `compact` on a device that holds changes the folder lost writes them back in its
/// snapshot (it did nothing: "snapshot": null), and the op files whose change the device
/// already held are folded like any other (they were left forever).
#[test]
fn compaction_writes_back_what_the_folder_lost_and_folds_every_op_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let me = Device::new(dir.path(), "me");
    Store::init(&store, me.options(), Some(&json!({}))).unwrap();
    for i in 0..3 {
        me.open(&store)
            .apply_patch(&[PatchOp::set(format!("/k{i}"), json!(i))])
            .unwrap();
    }
    me.open(&store).read().unwrap();
    // The sync tool loses every op file: the device's view keeps them.
    for rel in crate::common::op_files(&store) {
        std::fs::remove_file(store.join(rel)).unwrap();
    }
    let out = me.open(&store).compact().unwrap();
    assert!(out.snapshot.is_some(), "{out:?}");
    let fresh = Device::new(dir.path(), "fresh")
        .open(&store)
        .read()
        .unwrap();
    assert_eq!(fresh.to_json(), json!({"k0": 0, "k1": 1, "k2": 2}));
    // Files the folder lost come back (a sync tool delivers them again) after the device's
    // view held their changes: the next compaction folds them like any other.
    for i in 3..5 {
        me.open(&store)
            .apply_patch(&[PatchOp::set(format!("/k{i}"), json!(i))])
            .unwrap();
    }
    let saved: Vec<(String, Vec<u8>)> = crate::common::op_files(&store)
        .into_iter()
        .map(|rel| (rel.clone(), std::fs::read(store.join(&rel)).unwrap()))
        .collect();
    for (rel, _) in &saved {
        std::fs::remove_file(store.join(rel)).unwrap();
    }
    assert!(me.open(&store).read().unwrap().report().unprovided > 0);
    for (rel, bytes) in &saved {
        std::fs::write(store.join(rel), bytes).unwrap();
    }
    me.open(&store).read().unwrap();
    me.open(&store).compact().unwrap();
    assert_eq!(crate::common::op_files(&store), Vec::<String>::new());
}
