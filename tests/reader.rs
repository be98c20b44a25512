//! The reader: no single file can break a merge, and the outcome depends only on the set
//! of files.

use std::path::Path;

use crdtdir::automerge::transaction::Transactable;
use crdtdir::automerge::{ActorId, Automerge, Change, ExpandedChange, ObjType, ReadDoc, ROOT};
use crdtdir::Store;
use serde_json::json;

use crate::common::{envelope, merged, op_files, put_change, put_op_bytes, replica, tree, Device};

/// A change by `actor` at `seq` on top of `base` (its deps are `base`'s heads).
fn change_on(
    base: &Automerge,
    actor: &ActorId,
    f: impl FnOnce(&mut crdtdir::automerge::transaction::Transaction<'_>),
) -> Change {
    let mut doc = base.clone();
    doc.set_actor(actor.clone());
    let mut tx = doc.transaction();
    f(&mut tx);
    let hash = tx.commit().0.unwrap();
    doc.get_change_by_hash(&hash).unwrap()
}

fn base_store(dir: &Path) -> (std::path::PathBuf, Device) {
    let store = dir.join("store");
    let a = Device::new(dir, "a");
    Store::init(&store, a.options(), None).unwrap();
    (store, a)
}

/// Two different changes with one (actor, seq), plus an innocent third device: every
/// delivery order gives the same document, the innocent change is in it, the fork is
/// reported, and both branches' edits are in it (the loser and what depends on it are
/// rebased). (One apply_changes with both fork changes would apply nothing at all.)
#[test]
fn a_fork_with_an_innocent_device_merges_the_same_in_every_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = base_store(dir.path());
    let empty = Automerge::new();
    let cloned = ActorId::random();
    let x = change_on(&empty, &cloned, |tx| {
        tx.put(ROOT, "who", "x").unwrap();
    });
    let y = change_on(&empty, &cloned, |tx| {
        tx.put(ROOT, "who", "y").unwrap();
    });
    let mut after_x = Automerge::new();
    after_x.apply_changes([x.clone()]).unwrap();
    let x2 = change_on(&after_x, &cloned, |tx| {
        tx.put(ROOT, "x2", true).unwrap();
    });
    let innocent = change_on(&empty, &ActorId::random(), |tx| {
        tx.put(ROOT, "innocent", 1).unwrap();
    });
    assert_eq!((x.seq(), y.seq(), x2.seq()), (1, 1, 2));

    let files = [("x", &x), ("y", &y), ("x2", &x2), ("innocent", &innocent)];
    let mut outputs = std::collections::BTreeSet::new();
    // Every order of delivery, merging after each file.
    for perm in permutations(4) {
        let folder = dir.path().join(format!(
            "p{}",
            perm.iter().map(|i| i.to_string()).collect::<String>()
        ));
        replica(&store, &folder);
        // A device of its own per order: its cache sees the files arrive in this order.
        let reader = Device::new(&folder.with_extension("device"), "reader");
        for &i in &perm {
            put_change(&folder, files[i].0, files[i].1);
            merged(&reader, &folder); // must not fail halfway either
        }
        let view = reader.open(&folder).read().unwrap();
        assert_eq!(view.report().forks.len(), 1, "{:?}", view.report());
        assert_eq!(view.to_json()["innocent"], json!(1));
        outputs.insert(serde_json::to_string(&view.to_json()).unwrap());
    }
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    // The kept change is the one with the lower hash; the other, and x2 if it depends on
    // the loser, are rebased, so every edit is in the document.
    let (kept, lost) = if x.hash().as_ref() < y.hash().as_ref() {
        (&x, &y)
    } else {
        (&y, &x)
    };
    let view = Device::new(dir.path(), "last")
        .open(&store_with_all(dir.path(), &store, &files))
        .read()
        .unwrap();
    let fork = &view.report().forks[0];
    assert_eq!(fork.kept, kept.hash().to_string());
    assert_eq!(fork.rebased, vec![lost.hash().to_string()]);
    let rebased: Vec<&str> = view
        .report()
        .rebased
        .iter()
        .map(|r| r.from.as_str())
        .collect();
    let mut want = vec![lost.hash().to_string()];
    if lost.hash() == x.hash() {
        want.push(x2.hash().to_string());
    }
    want.sort();
    let mut got: Vec<String> = rebased.iter().map(|s| s.to_string()).collect();
    got.sort();
    assert_eq!(got, want);
    let out: serde_json::Value = serde_json::from_str(outputs.first().unwrap()).unwrap();
    assert!(
        out["who"] == json!("x") || out["who"] == json!("y"),
        "{out}"
    );
    assert_eq!(out["x2"], json!(true), "x2 is kept whichever side lost");
}

/// A folder holding every file of `files`.
fn store_with_all(
    root: &std::path::Path,
    store: &std::path::Path,
    files: &[(&str, &crdtdir::automerge::Change)],
) -> std::path::PathBuf {
    let folder = root.join("all");
    replica(store, &folder);
    for (device, change) in files {
        put_change(&folder, device, change);
    }
    folder
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

/// A well-formed change whose op targets an object that does not exist makes Automerge
/// panic. Among 1,000 good files it is quarantined and everything else merges.
#[test]
fn a_forged_change_among_a_thousand_good_files_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let (store, reader) = base_store(dir.path());
    let mut doc = Automerge::new();
    let actors: Vec<ActorId> = (0..4).map(|_| ActorId::random()).collect();
    for i in 0..1000 {
        doc.set_actor(actors[i % 4].clone());
        let mut tx = doc.transaction();
        tx.put(ROOT, format!("k{i}"), i as i64).unwrap();
        let hash = tx.commit().0.unwrap();
        put_change(&store, "good", &doc.get_change_by_hash(&hash).unwrap());
    }
    // An object that exists only in another history, then a change into it, re-based onto
    // the good document's heads.
    let mut elsewhere = Automerge::new();
    let forger = ActorId::random();
    elsewhere.set_actor(forger.clone());
    let mut tx = elsewhere.transaction();
    let obj = tx.put_object(ROOT, "ghost", ObjType::Map).unwrap();
    tx.commit();
    let mut tx = elsewhere.transaction();
    tx.put(&obj, "boo", 1).unwrap();
    let h = tx.commit().0.unwrap();
    let mut forged = ExpandedChange::from(&elsewhere.get_change_by_hash(&h).unwrap());
    forged.deps = doc.get_heads();
    forged.seq = 1;
    forged.hash = None;
    let forged = Change::from(forged);
    let forged_path = put_change(&store, "forger", &forged);

    let view = reader.open(&store).read().unwrap();
    assert_eq!(reader.open(&store).history().unwrap().len(), 1000);
    assert_eq!(
        view.report().quarantined.len(),
        1,
        "{:?}",
        view.report().quarantined
    );
    assert_eq!(view.report().quarantined[0].path, forged_path);
    let json = view.to_json();
    assert_eq!(json.as_object().unwrap().len(), 1000);
    assert!(
        store.join(&forged_path).exists(),
        "quarantine never deletes"
    );
}

/// Every kind of file a sync tool, a cloud service or an OS leaves behind is skipped,
/// reported, kept, and changes nothing in the document.
#[test]
fn messy_files_are_skipped_reported_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a) = base_store(dir.path());
    a.open(&store)
        .apply_patch(&crdtdir::parse_patch(r#"{"op":"add","path":"/t","value":"hello"}"#).unwrap())
        .unwrap();
    let clean = merged(&a, &store);
    let good = op_files(&store)[0].clone();
    let actor_dir = store.join(good.rsplit_once('/').unwrap().0);
    let good_bytes = std::fs::read(store.join(&good)).unwrap();
    let good_name = good.rsplit_once('/').unwrap().1.to_string();
    let stem = good_name.strip_suffix(".op").unwrap();
    let junk = [
        format!(".syncthing.{good_name}.tmp"),
        format!("~syncthing~{good_name}.tmp"),
        format!("{good_name}.partial"),
        format!(".unison.{good_name}.unison.tmp"),
        format!(".~{good_name}"),
        format!("{stem}.sync-conflict-20240101-120000-ABCDEFG.op"),
        format!("{stem} (conflicted copy 2024-01-01).op"),
        format!("{stem}_conflict-20240101-120000.op"),
        format!("{stem} (Conflict on laptop 2024-01-01).op"),
        format!(".{good_name}.icloud"),
        ".DS_Store".to_string(),
        "Thumbs.db".to_string(),
        "desktop.ini".to_string(),
        format!("._{good_name}"),
        "notes.txt".to_string(),
    ];
    for name in &junk {
        std::fs::write(actor_dir.join(name), &good_bytes).unwrap();
    }
    std::fs::write(store.join("ops").join(".DS_Store"), b"x").unwrap();
    std::fs::create_dir_all(store.join("ops/not-an-actor")).unwrap();
    std::fs::write(store.join("ops/not-an-actor/0000000001-00.op"), b"x").unwrap();

    // Damaged op files with valid names.
    let actor = ActorId::random().to_hex_string();
    let truncated = &good_bytes[..good_bytes.len() - 3];
    let damaged = [
        put_op_bytes(&store, &actor, 1, truncated), // truncated, name matches
        put_op_bytes(&store, &actor, 2, b"not cbor at all"), // garbage
        put_op_bytes(&store, &actor, 3, &envelope("x", b"not a change")), // not a change
        put_op_bytes(&store, &actor, 4, &good_bytes), // actor/seq != path
    ];
    // A file whose bytes no longer match the hash in its name (bit rot).
    let rotted = format!("ops/{actor}/0000000005-{}.op", "0".repeat(32));
    std::fs::write(store.join(&rotted), &good_bytes).unwrap();

    let before = tree(&store);
    let view = a.open(&store).read().unwrap();
    assert_eq!(serde_json::to_string(&view.to_json()).unwrap(), clean);
    let reported: std::collections::BTreeSet<&str> = view
        .report()
        .problems
        .iter()
        .map(|p| p.path.as_str())
        .collect();
    for name in &junk {
        let rel = format!("{}/{name}", good.rsplit_once('/').unwrap().0);
        assert!(
            reported.contains(rel.as_str()),
            "{rel} not reported: {reported:?}"
        );
    }
    for rel in damaged.iter().chain([&rotted]) {
        assert!(
            reported.contains(rel.as_str()),
            "{rel} not reported: {reported:?}"
        );
    }
    assert!(reported.contains("ops/.DS_Store"));
    assert!(reported.contains("ops/not-an-actor"));
    assert_eq!(
        tree(&store),
        before,
        "the reader deletes and changes nothing"
    );
}

/// A change whose dependency has not arrived waits, is reported, and applies once it does.
#[test]
fn changes_wait_for_missing_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let (store, reader) = base_store(dir.path());
    let actor = ActorId::random();
    let first = change_on(&Automerge::new(), &actor, |tx| {
        tx.put(ROOT, "a", 1).unwrap();
    });
    let mut doc = Automerge::new();
    doc.apply_changes([first.clone()]).unwrap();
    let second = change_on(&doc, &actor, |tx| {
        tx.put(ROOT, "b", 2).unwrap();
    });
    let second_path = put_change(&store, "d", &second);
    let view = reader.open(&store).read().unwrap();
    assert_eq!(view.to_json(), json!({}));
    assert_eq!(view.report().waiting.len(), 1);
    assert_eq!(view.report().waiting[0].path, second_path);
    assert_eq!(
        view.report().waiting[0].missing,
        vec![first.hash().to_string()]
    );
    put_change(&store, "d", &first);
    assert_eq!(merged(&reader, &store), r#"{"a":1,"b":2}"#);
}

/// Writes a change to the root document in an envelope of version `v` with `extra` keys (by
/// hand, as some other writer would) under its root op file name, and returns why the
/// reader skipped it (it must skip it: the document stays empty).
fn skipped_envelope(v: u64, extra: Vec<(&str, &str)>) -> String {
    use ciborium::Value;
    let dir = tempfile::tempdir().unwrap();
    let (store, reader) = base_store(dir.path());
    let c = change_on(&Automerge::new(), &ActorId::random(), |tx| {
        tx.put(ROOT, "a", 1).unwrap();
    });
    let mut pairs = vec![(Value::Text("v".into()), Value::Integer(v.into()))];
    for (k, val) in extra {
        pairs.push((Value::Text(k.into()), Value::Text(val.into())));
    }
    pairs.push((Value::Text("device".into()), Value::Text("other".into())));
    pairs.push((
        Value::Text("change".into()),
        Value::Bytes(c.raw_bytes().to_vec()),
    ));
    let mut bytes = Vec::new();
    ciborium::into_writer(&Value::Map(pairs), &mut bytes).unwrap();
    let rel = put_op_bytes(&store, &c.actor_id().to_hex_string(), 1, &bytes);
    let view = reader.open(&store).read().unwrap();
    assert_eq!(view.to_json(), json!({}));
    let p = view.report().problems.iter().find(|p| p.path == rel);
    p.expect("the file is reported").reason.clone()
}

/// An op file of a newer envelope version is skipped and reported, not fatal.
#[test]
fn a_newer_envelope_version_is_skipped() {
    let reason = skipped_envelope(3, vec![]);
    assert!(reason.contains("newer"), "{reason}");
}

/// A change to another document under a root document's name (a renamed file) is skipped and
/// reported, never merged into the root document.
#[test]
fn another_documents_change_under_a_root_name_is_skipped() {
    let reason = skipped_envelope(2, vec![("doc", "0123456789abcdef0123456789abcdef")]);
    assert!(reason.contains("a change to document"), "{reason}");
}

/// Unknown features and newer format versions: read what we can, refuse every write.
#[test]
fn unknown_feature_or_newer_format_refuses_writes_but_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a) = base_store(dir.path());
    let set = [crdtdir::PatchOp::set("/a", json!(1))];
    a.open(&store).apply_patch(&set).unwrap();
    std::fs::write(store.join("features/multi-doc"), b"later").unwrap();
    let before = tree(&store);
    let err = a.open(&store).apply_patch(&set).unwrap_err();
    assert!(err.is_refusal());
    assert!(err.to_string().contains("needs a newer crdtdir"), "{err}");
    assert_eq!(merged(&a, &store), r#"{"a":1}"#);
    assert_eq!(tree(&store), before);
}

/// A merge from nothing of many op files says how far it is (for a progress bar): reports
/// that only go up, ending at every file read.
#[test]
fn a_cold_merge_of_many_files_reports_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let writer = Device::new(dir.path(), "writer");
    Store::init(&store, writer.options(), None).unwrap();
    let mut doc = crdtdir::automerge::AutoCommit::new().with_actor(ActorId::random());
    for i in 0..5000 {
        doc.put(ROOT, format!("k{}", i % 50), i as i64).unwrap();
        doc.commit();
    }
    for change in doc.document().get_changes(&[]) {
        put_change(&store, "writer", &change);
    }
    let total = op_files(&store).len();
    let fresh = Device::new(dir.path(), "fresh");
    let s = Store::open(&store, fresh.options()).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = std::sync::Arc::clone(&seen);
    assert!(s.set_progress(move |p| into.lock().unwrap().push(p)));
    assert!(!s.set_progress(|_| {}), "once per handle");
    s.read().unwrap();
    let seen = seen.lock().unwrap();
    let reading: Vec<(usize, usize)> = seen
        .iter()
        .filter_map(|p| match p {
            crdtdir::Progress::Reading { done, total } => Some((*done, *total)),
            _ => None,
        })
        .collect();
    assert!(reading.len() >= 2, "{seen:?}");
    assert!(reading.windows(2).all(|w| w[0].0 <= w[1].0), "{reading:?}");
    assert_eq!(*reading.last().unwrap(), (total, total));
}
