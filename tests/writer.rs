//! The writer: every change becomes a file before the call returns, no seq is reused.

use crdtdir::automerge::transaction::Transactable;
use crdtdir::automerge::{ReadDoc, ROOT};
use crdtdir::{PatchOp, Store};
use serde_json::json;

use crate::common::{clone_state, copy_dir, merged, op_files, replica, sync_ops, tree, Device};

/// Regression: with AutoCommit, reading heads between two puts committed implicitly and
/// "write the last local change" lost the first one. Both changes must be files.
#[test]
fn change_read_heads_change_writes_both_and_another_device_sees_both() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let a = Device::new(dir.path(), "a");
    let b = Device::new(dir.path(), "b");
    let store = Store::init(&store_dir, a.options(), None).unwrap();
    store.change(|tx| Ok(tx.put(ROOT, "a", 1)?)).unwrap();
    let heads = store.read().unwrap().heads();
    assert_eq!(heads.len(), 1);
    store.change(|tx| Ok(tx.put(ROOT, "b", 2)?)).unwrap();
    assert_eq!(op_files(&store_dir).len(), 2);
    assert_eq!(merged(&b, &store_dir), r#"{"a":1,"b":2}"#);
}

#[test]
fn a_no_op_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let a = Device::new(dir.path(), "a");
    let store = Store::init(&store_dir, a.options(), Some(&json!({"t": "x"}))).unwrap();
    let before = tree(&store_dir);
    let outcome = store.change(|_tx| Ok(())).unwrap();
    assert!(outcome.written.is_empty());
    let outcome = store
        .apply_patch(&[PatchOp::set("/t", json!("x"))])
        .unwrap();
    assert!(outcome.written.is_empty());
    assert_eq!(tree(&store_dir), before);
}

#[test]
fn a_failed_closure_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let a = Device::new(dir.path(), "a");
    let store = Store::init(&store_dir, a.options(), None).unwrap();
    let before = tree(&store_dir);
    let err = store
        .change(|tx| {
            tx.put(ROOT, "k", 1).unwrap();
            Err::<(), _>(std::io::Error::other("app said no").into())
        })
        .unwrap_err();
    assert!(err.to_string().contains("app said no"));
    assert_eq!(tree(&store_dir), before);
}

#[test]
fn seqs_continue_across_opens_with_one_actor() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let a = Device::new(dir.path(), "a");
    Store::init(&store_dir, a.options(), None).unwrap();
    for i in 0..5 {
        let out = a
            .open(&store_dir)
            .apply_patch(&[PatchOp::Increment {
                path: "/n".into(),
                value: 1,
            }])
            .unwrap();
        assert_eq!(out.written[0].seq, i + 1);
        assert!(out.notices.is_empty(), "{:?}", out.notices);
    }
    let actors: std::collections::BTreeSet<String> = op_files(&store_dir)
        .iter()
        .map(|p| p.split('/').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(actors.len(), 1);
    assert_eq!(merged(&a, &store_dir), r#"{"n":5}"#);
}

/// A state restored from a backup (its record is behind the folder) must not reuse a seq.
#[test]
fn a_state_behind_the_folder_moves_to_a_fresh_actor() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let a = Device::new(dir.path(), "a");
    Store::init(&store_dir, a.options(), None).unwrap();
    let inc = [PatchOp::Increment {
        path: "/n".into(),
        value: 1,
    }];
    a.open(&store_dir).apply_patch(&inc).unwrap();
    let backup = dir.path().join("backup");
    copy_dir(&a.state, &backup);
    a.open(&store_dir).apply_patch(&inc).unwrap();
    // Restore the old state.
    std::fs::remove_dir_all(&a.state).unwrap();
    copy_dir(&backup, &a.state);
    let out = a.open(&store_dir).apply_patch(&inc).unwrap();
    assert_eq!(out.notices.len(), 1, "{:?}", out.notices);
    assert_eq!(out.written[0].seq, 1, "a fresh actor starts at seq 1");
    let status = a.open(&store_dir).status().unwrap();
    assert!(status.report.forks.is_empty());
    assert_eq!(merged(&a, &store_dir), r#"{"n":3}"#);
}

/// A cloned disk: two devices with one state write before syncing. The fork is resolved
/// the same way everywhere, the losing branch's edits are in the document at once (rebased),
/// and the losing device goes on under a fresh actor.
#[test]
fn a_cloned_state_forks_and_the_loser_goes_on_under_a_fresh_actor() {
    // Which clone loses depends on random actor ids and hashes: run until both have lost.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..64 {
        seen.insert(cloned_state_scenario());
        if seen.len() == 2 {
            return;
        }
    }
    panic!("only one side ever lost the fork: {seen:?}");
}

/// Returns whether the original (true) or the clone (false) lost.
fn cloned_state_scenario() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let a = Device::new(dir.path(), "a");
    Store::init(&one, a.options(), Some(&json!({"notes": {}, "n": 0}))).unwrap();
    replica(&one, &two);
    sync_ops(&one, &two, |_| true);
    let clone = Device::new(dir.path(), "clone");
    clone_state(&a, &clone);

    let set = |d: &Device, store: &std::path::Path, key: &str| {
        d.open(store)
            .apply_patch(&[PatchOp::set(format!("/notes/{key}"), json!(key))])
            .unwrap()
    };
    set(&a, &one, "from-a");
    set(&a, &one, "from-a-2");
    set(&clone, &two, "from-clone");
    sync_ops(&one, &two, |_| true);
    sync_ops(&two, &one, |_| true);

    let status = a.open(&one).status().unwrap();
    assert_eq!(status.report.forks.len(), 1, "{:?}", status.report);
    let fork = &status.report.forks[0];
    assert_eq!(fork.seq, 2);
    assert_eq!(
        merged(&a, &one),
        merged(&clone, &two),
        "both replicas agree"
    );

    // Every edit of both branches is there before anyone writes again.
    let before: serde_json::Value = serde_json::from_str(&merged(&a, &one)).unwrap();
    for key in ["from-a", "from-a-2", "from-clone"] {
        assert_eq!(before["notes"][key], json!(key), "{before}");
    }
    assert!(
        status
            .report
            .rebased
            .iter()
            .any(|r| r.from == fork.rebased[0]),
        "{:?}",
        status.report
    );

    // Both write again: exactly the loser is told, and moves to a fresh actor.
    let write = |d: &Device, store: &std::path::Path, n: i64| {
        d.open(store)
            .apply_patch(&[PatchOp::set(format!("/{}", d.name), json!(n))])
            .unwrap()
    };
    let (out_a, out_clone) = (write(&a, &one, 1), write(&clone, &two, 2));
    let lost = |o: &crdtdir::WriteOutcome| {
        o.notices
            .iter()
            .any(|n| matches!(n, crdtdir::Notice::Rebased { .. }))
    };
    assert!(lost(&out_a) != lost(&out_clone), "{out_a:?} {out_clone:?}");
    let loser = if lost(&out_a) { &out_a } else { &out_clone };
    assert_eq!(
        loser.written.len(),
        1,
        "only the caller's change: {loser:?}"
    );
    assert_eq!(loser.written[0].seq, 1, "a fresh actor");
    sync_ops(&one, &two, |_| true);
    sync_ops(&two, &one, |_| true);
    let after = merged(&a, &one);
    assert_eq!(after, merged(&clone, &two));
    let doc: serde_json::Value = serde_json::from_str(&after).unwrap();
    for key in ["from-a", "from-a-2", "from-clone"] {
        assert_eq!(doc["notes"][key], json!(key), "{after}");
    }
    assert_eq!(
        (doc["a"].clone(), doc["clone"].clone()),
        (json!(1), json!(2))
    );
    lost(&out_a)
}

/// The in-memory transaction API sees the merged document of every device.
#[test]
fn change_reads_the_merged_document() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let (a, b) = (Device::new(dir.path(), "a"), Device::new(dir.path(), "b"));
    Store::init(&store_dir, a.options(), Some(&json!({"n": 1}))).unwrap();
    let store = b.open(&store_dir);
    store
        .change(|tx| {
            let n = tx.get(ROOT, "n")?.unwrap().0.as_i64().unwrap();
            tx.put(ROOT, "m", n + 1)?;
            Ok(())
        })
        .unwrap();
    assert_eq!(merged(&a, &store_dir), r#"{"m":2,"n":1}"#);
}

/// Regression: two `init`s racing on one folder both reported success, and the loser went
/// on under a store id that was not the one on disk.
#[test]
fn racing_inits_make_exactly_one_store() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = ["a", "b", "c"]
                .map(|name| {
                    let d = Device::new(dir.path(), name);
                    let store_dir = &store_dir;
                    s.spawn(move || {
                        Store::init(store_dir, d.options(), None).map(|s| s.id().to_string())
                    })
                })
                .into_iter()
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        let on_disk = Store::open(&store_dir, Device::new(dir.path(), "z").options()).unwrap();
        assert_eq!(on_disk.id(), winners[0]);
    }
}

/// A long-lived `Store` writes from its memory plus what is new in the folder (no document
/// reload); what other devices wrote meanwhile is under its next change, and nothing is lost.
#[test]
fn a_long_lived_store_writes_from_its_memory_and_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let (a, b) = (Device::new(dir.path(), "a"), Device::new(dir.path(), "b"));
    let app = Store::init(&store_dir, a.options(), Some(&json!({"items": []}))).unwrap();
    let insert = |v: &str| [PatchOp::insert("/items/-", json!(v))];
    app.apply_patch(&insert("a1")).unwrap();
    b.open(&store_dir).apply_patch(&insert("b1")).unwrap();
    let out = app.apply_patch(&insert("a2")).unwrap();
    assert!(out.notices.is_empty(), "{:?}", out.notices);
    assert_eq!(out.written[0].seq, 3, "the same actor continues");
    let items = app.read().unwrap().get("/items").unwrap();
    assert_eq!(items.as_array().unwrap().len(), 3, "{items}");
    assert_eq!(merged(&b, &store_dir), merged(&a, &store_dir));
    // A refused patch leaves the memory as it was.
    assert!(app
        .apply_patch(&[PatchOp::Remove {
            path: "/nope".into()
        }])
        .is_err());
    app.apply_patch(&insert("a3")).unwrap();
    assert_eq!(
        app.read()
            .unwrap()
            .get("/items")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // A new process (cold memory) sees the same thing through the cache files.
    assert_eq!(
        a.open(&store_dir).read_json().unwrap().0,
        merged(&b, &store_dir)
    );
}

/// Invariants 1 and 2: a device creates files only under its own actor, each appears
/// complete and read-only, and nothing already published changes.
#[test]
fn a_write_adds_one_read_only_file_under_its_own_actor_and_touches_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let (a, b) = (Device::new(dir.path(), "a"), Device::new(dir.path(), "b"));
    Store::init(&store_dir, a.options(), Some(&json!({"n": {}}))).unwrap();
    a.open(&store_dir)
        .apply_patch(&[PatchOp::set("/n/a", json!(1))])
        .unwrap();
    let before = tree(&store_dir);
    let out = b
        .open(&store_dir)
        .apply_patch(&[PatchOp::set("/n/b", json!(2))])
        .unwrap();
    let after = tree(&store_dir);
    for (path, bytes) in &before {
        assert_eq!(after.get(path), Some(bytes), "{path} changed");
    }
    let actor = &out.written[0].actor;
    // Besides its op file, a write may publish the device's heartbeat, under its own actor.
    let beat_dir = format!("devices/{actor}/");
    let beats = after.keys().filter(|p| p.starts_with(&beat_dir)).count();
    assert!(beats <= 1, "{after:?}");
    let added: Vec<&String> = after
        .keys()
        .filter(|p| !before.contains_key(*p) && !p.starts_with(&beat_dir))
        .collect();
    assert_eq!(added, vec![&out.written[0].path]);
    assert!(added[0].starts_with(&format!("ops/{}/", out.written[0].actor)));
    let meta = std::fs::metadata(store_dir.join(added[0])).unwrap();
    assert!(
        meta.permissions().readonly(),
        "published op files are read-only"
    );
}

/// Text positions are Unicode code points, whatever Cargo features elsewhere say.
#[test]
fn splice_positions_are_code_points() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let a = Device::new(dir.path(), "a");
    let store = Store::init(&store_dir, a.options(), Some(&json!({"t": "a😀b"}))).unwrap();
    store
        .apply_patch(&[PatchOp::Splice {
            path: "/t".into(),
            pos: 2,
            del: 1,
            text: "é!".into(),
        }])
        .unwrap();
    assert_eq!(merged(&a, &store_dir), r#"{"t":"a😀é!"}"#);
}

/// Two handles of one device (an app and the CLI, say): a long-lived `Store` whose memory
/// is behind the device's record merges again instead of giving up its actor.
#[test]
fn a_stale_memory_does_not_cost_the_device_its_actor() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let a = Device::new(dir.path(), "a");
    let app = Store::init(&store_dir, a.options(), Some(&json!({"n": {}}))).unwrap();
    let set = |k: &str| [PatchOp::set(format!("/n/{k}"), json!(1))];
    app.apply_patch(&set("x")).unwrap();
    a.open(&store_dir).apply_patch(&set("y")).unwrap();
    let out = app.apply_patch(&set("z")).unwrap();
    assert!(out.notices.is_empty(), "{:?}", out.notices);
    assert_eq!(out.written[0].seq, 4);
    assert_eq!(merged(&a, &store_dir), r#"{"n":{"x":1,"y":1,"z":1}}"#);
}

/// A long-lived `Store` writes on the current folder, not on the view of its last read: a
/// `test` op sees what another device changed since (it passed on the stale value before).
#[test]
fn a_long_lived_store_writes_on_the_current_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (a, b) = (Device::new(dir.path(), "a"), Device::new(dir.path(), "b"));
    Store::init(&store, a.options(), Some(&json!({"x": 1}))).unwrap();
    let long_lived = b.open(&store);
    assert_eq!(long_lived.read().unwrap().to_json(), json!({"x": 1}));
    a.open(&store)
        .apply_patch(&crdtdir::parse_patch(r#"[{"op":"replace","path":"/x","value":2}]"#).unwrap())
        .unwrap();
    let stale = crdtdir::parse_patch(
        r#"[{"op":"test","path":"/x","value":1},{"op":"replace","path":"/x","value":10}]"#,
    )
    .unwrap();
    let err = long_lived.apply_patch(&stale).unwrap_err();
    assert!(err.to_string().contains("test"), "{err}");
    let current = crdtdir::parse_patch(
        r#"[{"op":"test","path":"/x","value":2},{"op":"replace","path":"/x","value":3}]"#,
    )
    .unwrap();
    long_lived.apply_patch(&current).unwrap();
    assert_eq!(merged(&a, &store), r#"{"x":3}"#);
}

/// A view's JSON is of its own heads: views taken before and after a write each render
/// their document, however the store reuses rendered JSON between views.
#[test]
fn each_view_renders_its_own_document() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let a = Device::new(dir.path(), "a");
    let store = Store::init(&store_dir, a.options(), Some(&json!({"n": 1}))).unwrap();
    let before = store.read().unwrap();
    assert_eq!(before.to_json(), json!({"n": 1}));
    store.change(|tx| Ok(tx.put(ROOT, "n", 2)?)).unwrap();
    let after = store.read().unwrap();
    let unrendered = store.read().unwrap();
    assert_eq!(after.json(), &json!({"n": 2}));
    assert_eq!(before.to_json(), json!({"n": 1}));
    assert_eq!(unrendered.to_json(), json!({"n": 2}));
    // Another device's change arrives: a new view of this store sees it.
    let b = Device::new(dir.path(), "b");
    b.open(&store_dir)
        .change(|tx| Ok(tx.put(ROOT, "m", 3)?))
        .unwrap();
    assert_eq!(store.read().unwrap().to_json(), json!({"m": 3, "n": 2}));
    assert_eq!(after.to_json(), json!({"n": 2}));
}

/// Two long-lived stores of one folder write in turns: after its own write a store
/// remembers the listing it left, and a read of an unchanged folder stops at the listing;
/// every other device's file, and a file a sync tool removed, still change what it reads.
#[test]
fn reads_after_own_writes_still_see_every_other_change() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let (a, b) = (Device::new(dir.path(), "a"), Device::new(dir.path(), "b"));
    let sa = Store::init(&store_dir, a.options(), Some(&json!({}))).unwrap();
    let sb = b.open(&store_dir);
    let mut expected = serde_json::Map::new();
    for i in 0..12 {
        let (writer, other) = if i % 3 == 0 { (&sb, &sa) } else { (&sa, &sb) };
        let key = format!("k{i}");
        let outcome = writer
            .change(|tx| Ok(tx.put(ROOT, key.as_str(), i)?))
            .unwrap();
        assert_eq!(outcome.written.len(), 1);
        expected.insert(key, json!(i));
        let want = serde_json::Value::Object(expected.clone());
        assert_eq!(
            writer.read().unwrap().to_json(),
            want,
            "writer after write {i}"
        );
        assert_eq!(
            other.read().unwrap().to_json(),
            want,
            "other after write {i}"
        );
    }
    // A sync tool removes b's last op file: a's view keeps it (it never goes back), and
    // reports that the folder no longer provides it.
    let last = sb.change(|tx| Ok(tx.put(ROOT, "gone", 1)?)).unwrap();
    let path = last.written[0].path.clone();
    assert!(sa.read().unwrap().to_json()["gone"] == json!(1));
    std::fs::remove_file(store_dir.join(&path)).unwrap();
    let view = sb.read().unwrap();
    assert_eq!(
        view.to_json()["gone"],
        json!(1),
        "the writer keeps its change"
    );
    assert!(view.report().unprovided > 0, "{:?}", view.report());
}

/// `Options::progress` hears `init` build its first document (from JSON, or from another
/// store's history), once, and nothing for an empty store.
#[test]
fn init_tells_its_progress_when_it_builds_a_first_document() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let a = Device::new(dir.path(), "a");
    let heard: Arc<Mutex<Vec<crdtdir::Progress>>> = Arc::default();
    let options = || {
        let heard = Arc::clone(&heard);
        a.options().progress(move |p| heard.lock().unwrap().push(p))
    };
    let take = || std::mem::take(&mut *heard.lock().unwrap());
    Store::init(dir.path().join("empty"), options(), None).unwrap();
    assert_eq!(take(), vec![]);
    let first = Store::init(
        dir.path().join("json"),
        options(),
        Some(&json!({"items": [1, 2]})),
    )
    .unwrap();
    assert_eq!(take(), vec![crdtdir::Progress::Building]);
    Store::init_from_store(dir.path().join("copy"), options(), &first).unwrap();
    assert!(take().contains(&crdtdir::Progress::Building));
}

/// The paths of many changes at once (a long `log`) are those of each change on its own.
#[test]
fn touched_paths_of_many_changes_are_each_ones_own() {
    let dir = tempfile::tempdir().unwrap();
    let a = Device::new(dir.path(), "a");
    let store = Store::init(dir.path().join("s"), a.options(), Some(&json!({"l": []}))).unwrap();
    for i in 0..70 {
        store
            .apply_patch(&[
                PatchOp::set(format!("/k{i}"), json!(i)),
                PatchOp::insert("/l/-", json!({"n": i})),
            ])
            .unwrap();
    }
    let view = store.read().unwrap();
    let history = store.history().unwrap();
    let hashes: Vec<&str> = history.iter().map(|c| c.hash.as_str()).collect();
    assert!(hashes.len() > 64);
    let many = view.touched_paths_of(&hashes);
    for (i, (h, paths)) in hashes.iter().zip(&many).enumerate() {
        assert_eq!(paths, &view.touched_paths(h), "change {i}");
    }
    assert_eq!(many[5], vec!["/k4", "/l", "/l/4/n"]);
    assert_eq!(view.touched_paths("not a hash"), Vec::<String>::new());
}
