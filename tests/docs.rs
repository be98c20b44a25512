//! Many documents in one folder: a repo's documents, each read and written through its own
//! handle, synced as files like the root document's.

use std::collections::BTreeMap;

use crdtdir::{DocId, Error, PatchOp, Repo};
use proptest::prelude::*;
use serde_json::json;

use crate::common::{self, Device};

fn repo(device: &Device, store: &std::path::Path) -> Repo {
    Repo::open(store, device.options()).expect("open repo")
}

/// Copies every file of the store folder `from` that `to` lacks (op files, features,
/// beats), as a sync tool would.
fn sync_all(from: &std::path::Path, to: &std::path::Path) {
    for (rel, bytes) in common::tree(from) {
        let target = to.join(&rel);
        if !target.exists() && !rel.contains(".crdtdir-") {
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(&target, bytes).unwrap();
        }
    }
}

#[test]
fn a_document_made_on_one_device_is_found_and_edited_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let (laptop, phone) = (
        Device::new(dir.path(), "laptop"),
        Device::new(dir.path(), "phone"),
    );
    let a = Repo::init(&a_dir, laptop.options(), Some(&json!({"app": "notes"}))).unwrap();
    let id = a
        .create(Some(&json!({"title": "Groceries", "items": ["milk"]})))
        .unwrap();
    assert!(a_dir.join("features/docs").is_file());
    common::replica(&a_dir, &b_dir);
    sync_all(&a_dir, &b_dir);
    let b = repo(&phone, &b_dir);
    let on_b = b.find(&id).unwrap();
    assert_eq!(on_b.read().unwrap().get("/items/0").unwrap(), json!("milk"));
    // Concurrent edits of the same list on both devices: both survive.
    a.find(&id)
        .unwrap()
        .apply_patch(&[PatchOp::insert("/items/-", json!("eggs"))])
        .unwrap();
    on_b.apply_patch(&[PatchOp::insert("/items/0", json!("bread"))])
        .unwrap();
    sync_all(&a_dir, &b_dir);
    sync_all(&b_dir, &a_dir);
    let on_a = a.find(&id).unwrap().read().unwrap().to_json();
    let on_b = b.find(&id).unwrap().read().unwrap().to_json();
    assert_eq!(on_a, on_b);
    assert_eq!(on_a["items"], json!(["bread", "milk", "eggs"]));
    // The root document is untouched by the other one's changes.
    for r in [&a, &b] {
        assert_eq!(r.root().read().unwrap().to_json(), json!({"app": "notes"}));
    }
    // Both devices list the same documents.
    let ids = |r: &Repo| -> Vec<(DocId, bool, Option<String>)> {
        r.docs()
            .unwrap()
            .into_iter()
            .map(|d| (d.id, d.root, d.title))
            .collect()
    };
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(ids(&a).len(), 2);
    assert_eq!(ids(&a)[1].2.as_deref(), Some("Groceries"));
    // A change after the listing shows in the next one (the catalog reopens what changed).
    b.find(&id)
        .unwrap()
        .apply_patch(&[PatchOp::set("/title", json!("Shopping"))])
        .unwrap();
    sync_all(&b_dir, &a_dir);
    assert_eq!(ids(&a)[1].2.as_deref(), Some("Shopping"));
    assert_eq!(ids(&a), ids(&b));
}

#[test]
fn a_devices_changes_to_every_document_share_its_actor_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let laptop = Device::new(dir.path(), "laptop");
    let r = Repo::init(&store, laptop.options(), Some(&json!({"n": 0}))).unwrap();
    for i in 0..5 {
        let id = r.create(Some(&json!({"n": i}))).unwrap();
        r.find(&id)
            .unwrap()
            .apply_patch(&[PatchOp::set("/n", json!(i + 100))])
            .unwrap();
    }
    let actors: Vec<_> = std::fs::read_dir(store.join("ops")).unwrap().collect();
    assert_eq!(
        actors.len(),
        1,
        "one actor folder for the root and five documents"
    );
    assert_eq!(common::op_files(&store).len(), 1 + 5 * 2);
}

#[test]
fn a_document_opens_with_only_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let laptop = Device::new(dir.path(), "laptop");
    let r = Repo::init(&store, laptop.options(), None).unwrap();
    let ids: Vec<DocId> = (0..3)
        .map(|i| r.create(Some(&json!({"i": i}))).unwrap())
        .collect();
    // Another document's op file torn: the others read whole, with nothing to report.
    let victim = common::op_files(&store)
        .into_iter()
        .find(|p| p.contains(&format!("/{}-", ids[0])))
        .unwrap();
    std::fs::write(store.join(&victim), b"torn").unwrap();
    let view = r.find(&ids[1]).unwrap().read().unwrap();
    assert_eq!(view.to_json(), json!({"i": 1}));
    assert!(view.report().problems.is_empty(), "{:?}", view.report());
    let root = r.root().read().unwrap();
    assert!(root.report().problems.is_empty(), "{:?}", root.report());
}

#[test]
fn a_deleted_document_is_listed_as_deleted_and_a_concurrent_write_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let (laptop, phone) = (
        Device::new(dir.path(), "laptop"),
        Device::new(dir.path(), "phone"),
    );
    let a = Repo::init(&a_dir, laptop.options(), None).unwrap();
    let gone = a.create(Some(&json!({"t": "gone"}))).unwrap();
    let kept = a.create(Some(&json!({"t": "kept", "l": []}))).unwrap();
    common::replica(&a_dir, &b_dir);
    sync_all(&a_dir, &b_dir);
    let b = repo(&phone, &b_dir);
    a.delete(&gone).unwrap();
    a.delete(&kept).unwrap();
    assert!(matches!(
        a.find(&gone),
        Err(Error::UnknownDocument { deleted: true, .. })
    ));
    // The phone, not having seen the deletion, writes to `kept`.
    b.find(&kept)
        .unwrap()
        .apply_patch(&[PatchOp::insert("/l/-", json!("written"))])
        .unwrap();
    sync_all(&a_dir, &b_dir);
    sync_all(&b_dir, &a_dir);
    for r in [&a, &b] {
        let listed: BTreeMap<DocId, bool> = r
            .docs()
            .unwrap()
            .into_iter()
            .map(|d| (d.id, d.deleted))
            .collect();
        assert!(listed[&gone]);
        assert!(!listed[&kept]);
        let doc = r.find(&kept).unwrap().read().unwrap().to_json();
        assert_eq!(doc["l"], json!(["written"]));
        assert!(matches!(
            r.find(&gone),
            Err(Error::UnknownDocument { deleted: true, .. })
        ));
    }
    assert!(matches!(
        a.delete(&a.root().doc_id()),
        Err(Error::Refused(_))
    ));
}

#[test]
fn whole_store_operations_are_refused_on_a_documents_handle() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let laptop = Device::new(dir.path(), "laptop");
    let r = Repo::init(&store, laptop.options(), Some(&json!({"root": 1}))).unwrap();
    let id = r.create(Some(&json!({"doc": 1}))).unwrap();
    let doc = r.find(&id).unwrap();
    doc.apply_patch(&[PatchOp::set("/doc", json!(2))]).unwrap();
    let before = common::tree(&store);
    for refused in [
        doc.compact().map(drop),
        doc.pack().map(drop),
        doc.forget("someone").map(drop),
    ] {
        assert!(matches!(refused, Err(Error::Refused(_))), "{refused:?}");
    }
    assert_eq!(common::tree(&store), before);
}

/// One compaction folds every document: the root document's snapshot holds a row per
/// document, their op files and documents' packs go, every document reads the same on a
/// new device, and a deleted document's history goes (it stays listed as deleted).
#[test]
fn a_compaction_folds_every_document_and_drops_a_deleted_ones_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let laptop = Device::new(dir.path(), "laptop");
    let r = Repo::init(&store, laptop.options(), Some(&json!({"root": 1}))).unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = r
            .create(Some(&json!({"title": format!("note {n}"), "items": []})))
            .unwrap();
        for i in 0..3 {
            r.find(&id)
                .unwrap()
                .apply_patch(&[PatchOp::insert("/items/-", json!(i))])
                .unwrap();
        }
        ids.push(id);
    }
    // Some of them packed, one deleted.
    r.root().pack().unwrap();
    r.delete(&ids[4]).unwrap();
    let listed = |repo: &Repo| -> Vec<(DocId, bool, Option<String>)> {
        repo.docs()
            .unwrap()
            .into_iter()
            .map(|d| (d.id, d.deleted, d.title))
            .collect()
    };
    let before = listed(&r);
    let docs_before: Vec<_> = ids[..4]
        .iter()
        .map(|id| r.find(id).unwrap().read().unwrap().to_json())
        .collect();
    let done = r.root().compact().unwrap();
    assert!(done.snapshot.is_some());
    assert_eq!(common::op_files(&store), Vec::<String>::new());
    let packs: Vec<String> = common::tree(&store)
        .into_keys()
        .filter(|p| p.starts_with("packs/") && p.ends_with(".pack"))
        .collect();
    assert_eq!(packs, Vec::<String>::new());
    assert!(store.join("features/folded-docs").is_file());
    // A new device reads every document, lists them the same, the deleted one as deleted.
    let fresh = Device::new(dir.path(), "fresh");
    let f = repo(&fresh, &store);
    for (id, want) in ids.iter().zip(&docs_before) {
        let view = f.find(id).unwrap().read().unwrap();
        assert_eq!(&view.to_json(), want);
        assert!(view.report().problems.is_empty(), "{:?}", view.report());
        assert!(view.is_complete(), "{:?}", view.report());
    }
    // The deleted one's title went with its history.
    let expected: Vec<_> = before
        .iter()
        .map(|(id, deleted, title)| (id.clone(), *deleted, title.clone().filter(|_| !deleted)))
        .collect();
    assert_eq!(listed(&f), expected);
    assert!(matches!(
        f.find(&ids[4]),
        Err(Error::UnknownDocument { deleted: true, .. })
    ));
    // Its history is gone from the folder: the snapshot's row keeps no change of it.
    let snapshot = store.join(done.snapshot.as_ref().unwrap());
    let db = rusqlite::Connection::open(&snapshot).unwrap();
    let (changes, save): (i64, Option<Vec<u8>>) = db
        .query_row(
            "SELECT changes, automerge FROM documents WHERE id = ?1",
            [ids[4].as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((changes, save), (0, None));
    let json: String = db
        .query_row(
            "SELECT json FROM documents WHERE id = ?1",
            [ids[0].as_str()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).unwrap(),
        docs_before[0]
    );
    drop(db);
    // Writes go on after it, on both devices, and a second compaction folds the first.
    f.find(&ids[0])
        .unwrap()
        .apply_patch(&[PatchOp::insert("/items/-", json!("after"))])
        .unwrap();
    let new_id = r.create(Some(&json!({"title": "new"}))).unwrap();
    let second = r.root().compact().unwrap();
    assert_ne!(second.snapshot, done.snapshot);
    assert!(!snapshot.exists());
    assert_eq!(common::op_files(&store), Vec::<String>::new());
    let again = Device::new(dir.path(), "again");
    let g = repo(&again, &store);
    assert_eq!(
        g.find(&ids[0])
            .unwrap()
            .read()
            .unwrap()
            .get("/items")
            .unwrap(),
        json!([0, 1, 2, "after"])
    );
    assert_eq!(
        g.find(&new_id)
            .unwrap()
            .read()
            .unwrap()
            .get("/title")
            .unwrap(),
        json!("new")
    );
    assert_eq!(listed(&g), listed(&r));
    assert_eq!(listed(&g).len(), 7);
}

/// The folder loses a document's op file and its author's local state goes back to a backup
/// from before it: another device that merged it writes it back (a snapshot of that
/// document), and a new device reads it.
#[test]
fn a_document_change_only_another_devices_view_holds_is_written_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (laptop, phone) = (
        Device::new(dir.path(), "laptop"),
        Device::new(dir.path(), "phone"),
    );
    let a = Repo::init(&store, laptop.options(), Some(&json!({"root": 1}))).unwrap();
    let id = a.create(Some(&json!({"items": []}))).unwrap();
    let backup = dir.path().join("laptop-backup");
    common::copy_dir(&laptop.state, &backup);
    let out = a
        .find(&id)
        .unwrap()
        .apply_patch(&[PatchOp::insert("/items/-", json!("precious"))])
        .unwrap();
    let b = repo(&phone, &store);
    assert_eq!(
        b.find(&id)
            .unwrap()
            .read()
            .unwrap()
            .get("/items/0")
            .unwrap(),
        json!("precious")
    );
    // The sync tool loses the op file; the laptop's state dir comes back from the backup.
    std::fs::remove_file(store.join(&out.written[0].path)).unwrap();
    std::fs::remove_dir_all(&laptop.state).unwrap();
    common::copy_dir(&backup, &laptop.state);
    let on_phone = b.find(&id).unwrap();
    assert_eq!(on_phone.read().unwrap().report().unprovided, 1);
    let repaired = on_phone.repair().unwrap();
    let snapshot = repaired.snapshot.expect("a snapshot written back");
    assert!(
        snapshot.starts_with(&format!("snapshots/{id}-")),
        "{snapshot}"
    );
    // A new device reads the document whole; the root document has no snapshot of it.
    let fresh = Device::new(dir.path(), "fresh");
    let c = repo(&fresh, &store);
    let doc = c.find(&id).unwrap().read().unwrap();
    assert_eq!(doc.get("/items").unwrap(), json!(["precious"]));
    assert!(doc.report().problems.is_empty(), "{:?}", doc.report());
    let root = c.root().read().unwrap();
    assert_eq!(root.to_json(), json!({"root": 1}));
    assert!(root.report().problems.is_empty(), "{:?}", root.report());
    // The laptop's next write to it stands on the written-back history.
    a.find(&id)
        .unwrap()
        .apply_patch(&[PatchOp::insert("/items/-", json!("after"))])
        .unwrap();
    assert_eq!(
        c.find(&id).unwrap().read().unwrap().get("/items").unwrap(),
        json!(["precious", "after"])
    );
}

/// A document's outbox entries (its author's copies of its op files) go once they are older
/// than the retention time and the folder holds their op files; younger ones, and ones the
/// folder lost, stay.
#[test]
fn a_documents_outbox_entries_go_by_age_once_the_folder_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let laptop = Device::new(dir.path(), "laptop");
    let r = Repo::init(&store, laptop.options(), None).unwrap();
    let id = r.create(Some(&json!({"n": 0}))).unwrap();
    let doc = r.find(&id).unwrap();
    let lost = doc.apply_patch(&[PatchOp::set("/n", json!(1))]).unwrap();
    std::fs::remove_file(store.join(&lost.written[0].path)).unwrap();
    let outbox = laptop
        .state
        .join("stores")
        .join(r.root().id())
        .join("docs")
        .join(id.as_str())
        .join("outbox");
    let entries = || -> Vec<std::path::PathBuf> {
        walkdir::WalkDir::new(&outbox)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .collect()
    };
    assert_eq!(entries().len(), 2);
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(31 * 24 * 3600);
    for path in entries() {
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(then))
            .unwrap();
    }
    // The next write puts the lost file back first, then releases what is old and held.
    let out = doc.apply_patch(&[PatchOp::set("/n", json!(2))]).unwrap();
    assert!(store.join(&lost.written[0].path).is_file(), "republished");
    let left: Vec<String> = entries()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let newest = out.written[0].path.rsplit('/').next().unwrap().to_string();
    assert_eq!(left, vec![newest], "the new entry stays, the old ones go");
}

/// Many small documents take a few files: a device's changes to every document go into its
/// documents' packs; their loose files go after the grace period; every device reads every
/// document as before, a root compaction leaves them, and a lost pack comes back.
#[test]
fn documents_changes_go_into_packs_of_many_documents() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let laptop = Device::new(dir.path(), "laptop");
    let r = Repo::open(
        {
            Repo::init(&store, laptop.options(), Some(&json!({"root": 0}))).unwrap();
            &store
        },
        laptop.options().pack_size(8),
    )
    .unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..30 {
        let id = r.create(Some(&json!({"i": i, "l": []}))).unwrap();
        let doc = r.find(&id).unwrap();
        for j in 0..2 {
            doc.apply_patch(&[PatchOp::insert("/l/-", json!(j))])
                .unwrap();
        }
        expected.insert(id, json!({"i": i, "l": [0, 1]}));
    }
    let doc_files = |store: &std::path::Path| {
        common::op_files(store)
            .into_iter()
            .filter(|p| p.rsplit('/').next().unwrap().len() > 60)
            .count()
    };
    let packs = |store: &std::path::Path| -> Vec<String> {
        common::tree(store)
            .into_keys()
            .filter(|p| p.starts_with("packs/") && p.contains("/docs-"))
            .collect()
    };
    // Automatic: every 8 writes to documents, a documents' pack of 8.
    assert_eq!(packs(&store).len(), 90 / 8, "{:?}", packs(&store));
    assert_eq!(
        doc_files(&store),
        90,
        "loose files stay for the grace period"
    );
    let fresh = Device::new(dir.path(), "fresh");
    let check = |who: &Device| {
        let seen = repo(who, &store);
        for (id, want) in &expected {
            let view = seen.find(id).unwrap().read().unwrap();
            assert_eq!(&view.to_json(), want, "{id}");
            assert!(view.report().problems.is_empty(), "{:?}", view.report());
        }
    };
    check(&fresh);
    // A day later, by hand: the rest is packed and the packed loose files go.
    common::age_pack_copies(&laptop.state, 2 * 24 * 3600);
    let out = r.root().pack().unwrap();
    assert_eq!(out.deleted, 88, "{out:?}");
    common::age_pack_copies(&laptop.state, 2 * 24 * 3600);
    let out = r.root().pack().unwrap();
    assert_eq!(doc_files(&store), 0, "{out:?}");
    assert_eq!(packs(&store).len(), 12);
    let fresh2 = Device::new(dir.path(), "fresh2");
    check(&fresh2);
    // The sync tool loses a pack: the next packing puts it back, byte for byte.
    let lost = packs(&store)[3].clone();
    let bytes = std::fs::read(store.join(&lost)).unwrap();
    std::fs::remove_file(store.join(&lost)).unwrap();
    let out = r.root().pack().unwrap();
    assert_eq!(out.republished, vec![lost.clone()]);
    assert_eq!(std::fs::read(store.join(&lost)).unwrap(), bytes);
    // The sync tool leaves one torn under its name: the next packing replaces it.
    let torn = packs(&store)[4].clone();
    let whole = std::fs::read(store.join(&torn)).unwrap();
    std::fs::write(store.join(&torn), &whole[..whole.len() / 2]).unwrap();
    let out = r.root().pack().unwrap();
    assert_eq!(out.republished, vec![torn.clone()]);
    assert!(
        std::fs::read(store.join(&torn)).unwrap() == whole,
        "{torn} was not replaced"
    );
    // A compaction folds the documents' packs; their kept copies do not bring them back.
    r.root().compact().unwrap();
    assert_eq!(packs(&store).len(), 0);
    let out = r.root().pack().unwrap();
    assert_eq!(out.republished, Vec::<String>::new());
    assert_eq!(packs(&store).len(), 0);
    check(&Device::new(dir.path(), "fresh3"));
    assert_eq!(r.docs().unwrap().len(), 31);
}

/// Opening a document reads the headers of the documents' packs that hold it only, once
/// this device has read each pack's header: its index of packs says which documents each
/// holds (a pack's name is the hash of its bytes). A pack it does not know yet is read.
#[test]
fn opening_a_document_reads_only_the_packs_that_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let laptop = Device::new(dir.path(), "laptop");
    Repo::init(&store, laptop.options(), None).unwrap();
    let r = Repo::open(&store, laptop.options().pack_size(2)).unwrap();
    let first = r.create(Some(&json!({"n": 1}))).unwrap();
    r.find(&first)
        .unwrap()
        .apply_patch(&[PatchOp::set("/n", json!(2))])
        .unwrap();
    let packs = || -> Vec<String> {
        common::tree(&store)
            .into_keys()
            .filter(|p| p.contains("/docs-"))
            .collect()
    };
    let holds_first = packs();
    assert_eq!(holds_first.len(), 1);
    let second = r.create(Some(&json!({"n": 10}))).unwrap();
    r.find(&second)
        .unwrap()
        .apply_patch(&[PatchOp::set("/n", json!(20))])
        .unwrap();
    let other: Vec<String> = packs()
        .into_iter()
        .filter(|p| !holds_first.contains(p))
        .collect();
    assert_eq!(other.len(), 1);
    let reader = Device::new(dir.path(), "reader");
    let seen = repo(&reader, &store);
    assert_eq!(
        seen.find(&first).unwrap().read().unwrap().to_json(),
        json!({"n": 2})
    );
    // The pack of the other document is damaged in place: opening the first document again
    // does not read it; a device that never read its header does, and reports it.
    std::fs::write(store.join(&other[0]), b"not a pack any more").unwrap();
    let again = seen.find(&first).unwrap().read().unwrap();
    assert_eq!(again.to_json(), json!({"n": 2}));
    assert!(again.report().problems.is_empty(), "{:?}", again.report());
    let fresh = Device::new(dir.path(), "fresh");
    let view = repo(&fresh, &store).find(&first).unwrap().read().unwrap();
    assert_eq!(view.to_json(), json!({"n": 2}));
    assert!(
        view.report().problems.iter().any(|p| p.path == other[0]),
        "{:?}",
        view.report()
    );
}

/// An encrypted store's documents: their ids are in no file name and their content in no
/// file; a device with the key lists, finds and edits them; one without it is refused.
#[test]
fn an_encrypted_stores_documents_show_neither_ids_nor_content() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let (laptop, phone) = (
        Device::new(dir.path(), "laptop"),
        Device::new(dir.path(), "phone"),
    );
    let a = Repo::init(&a_dir, laptop.options().encrypt(true), None).unwrap();
    let id = a
        .create(Some(
            &json!({"title": "Secret plans", "items": ["zeppelin"]}),
        ))
        .unwrap();
    a.find(&id)
        .unwrap()
        .apply_patch(&[PatchOp::insert("/items/-", json!("submarine"))])
        .unwrap();
    common::age_pack_copies(&laptop.state, 0);
    a.root().pack().unwrap();
    for (rel, bytes) in common::tree(&a_dir) {
        assert!(!rel.contains(id.as_str()), "{rel} shows the id");
        for secret in [id.as_str(), "Secret plans", "zeppelin", "submarine"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{rel} shows {secret}"
            );
        }
    }
    common::replica(&a_dir, &b_dir);
    sync_all(&a_dir, &b_dir);
    // Without the key: refused, with one clear error.
    let b = repo(&phone, &b_dir);
    assert!(matches!(b.find(&id), Err(Error::Locked)));
    assert!(matches!(b.docs(), Err(Error::Locked)));
    b.root().import_key(&a.root().key().unwrap()).unwrap();
    let b = repo(&phone, &b_dir);
    let listed = b.docs().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].id, id);
    assert_eq!(listed[1].title.as_deref(), Some("Secret plans"));
    b.find(&id)
        .unwrap()
        .apply_patch(&[PatchOp::insert("/items/0", json!("balloon"))])
        .unwrap();
    sync_all(&b_dir, &a_dir);
    assert_eq!(
        a.find(&id).unwrap().read().unwrap().get("/items").unwrap(),
        json!(["balloon", "zeppelin", "submarine"])
    );
}

#[test]
fn ids_parse_in_both_forms_and_nothing_else() {
    let id = DocId::random().unwrap();
    assert_eq!(id.as_str().parse::<DocId>().unwrap(), id);
    assert_eq!(id.url().parse::<DocId>().unwrap(), id);
    for bad in ["", "xyz", &id.as_str()[..31], &id.as_str().to_uppercase()] {
        assert!(
            matches!(bad.parse::<DocId>(), Err(Error::DocId { .. })),
            "{bad}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let laptop = Device::new(dir.path(), "laptop");
    let r = Repo::init(dir.path().join("s"), laptop.options(), None).unwrap();
    assert!(matches!(
        r.find(&id),
        Err(Error::UnknownDocument { deleted: false, .. })
    ));
}

/// One step of the property below.
#[derive(Debug, Clone)]
enum Step {
    /// Device `d` makes a document.
    Create { d: usize },
    /// Device `d` inserts into the list of its `k`-th known document.
    Insert { d: usize, k: usize, at: usize },
    /// Device `d` deletes an item of that list.
    Remove { d: usize, k: usize, at: usize },
    /// Folder `from` delivers to folder `to`.
    Sync { from: usize, to: usize },
}

fn step(devices: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..devices).prop_map(|d| Step::Create { d }),
        4 => (0..devices, 0..8usize, 0..8usize).prop_map(|(d, k, at)| Step::Insert { d, k, at }),
        1 => (0..devices, 0..8usize, 0..8usize).prop_map(|(d, k, at)| Step::Remove { d, k, at }),
        2 => (0..devices, 0..devices).prop_map(|(from, to)| Step::Sync { from, to }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// 2–4 devices make documents and edit their lists while their folders sync in any
    /// order: after everything is delivered, every device reads every document the same,
    /// every insert that was not removed is there, and the root document is untouched.
    #[test]
    fn every_device_ends_with_every_write_of_every_document(
        devices in 2usize..=4,
        steps in proptest::collection::vec(step(4), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let folders: Vec<_> = (0..devices).map(|i| dir.path().join(format!("f{i}"))).collect();
        let devs: Vec<_> = (0..devices).map(|i| Device::new(dir.path(), &format!("d{i}"))).collect();
        Repo::init(&folders[0], devs[0].options(), Some(&json!({"root": true}))).unwrap();
        for f in &folders[1..] {
            common::replica(&folders[0], f);
        }
        let repos: Vec<Repo> = (0..devices).map(|i| repo(&devs[i], &folders[i])).collect();
        // What each device knows of: documents (by creation order) and the values it
        // inserted that it has not removed.
        let mut known: Vec<Vec<DocId>> = vec![Vec::new(); devices];
        let mut alive: BTreeMap<DocId, Vec<String>> = BTreeMap::new();
        let mut removed: Vec<String> = Vec::new();
        let mut n = 0;
        for s in steps {
            match s {
                Step::Create { d } => {
                    let d = d % devices;
                    let id = repos[d].create(Some(&json!({"items": []}))).unwrap();
                    known[d].push(id.clone());
                    alive.insert(id, Vec::new());
                }
                Step::Insert { d, k, at } => {
                    let d = d % devices;
                    let Some(id) = known[d].get(k % known[d].len().max(1)).cloned() else { continue };
                    let doc = repos[d].find(&id).unwrap();
                    let len = doc.read().unwrap().to_json()["items"].as_array().unwrap().len();
                    n += 1;
                    let value = format!("v{n}");
                    doc.apply_patch(&[PatchOp::insert(format!("/items/{}", at % (len + 1)), json!(value))]).unwrap();
                    alive.get_mut(&id).unwrap().push(value);
                }
                Step::Remove { d, k, at } => {
                    let d = d % devices;
                    let Some(id) = known[d].get(k % known[d].len().max(1)).cloned() else { continue };
                    let doc = repos[d].find(&id).unwrap();
                    let items = doc.read().unwrap().to_json()["items"].as_array().unwrap().clone();
                    if items.is_empty() { continue }
                    let at = at % items.len();
                    doc.apply_patch(&[PatchOp::remove(format!("/items/{at}"))]).unwrap();
                    removed.push(items[at].as_str().unwrap().to_string());
                }
                Step::Sync { from, to } => {
                    let (from, to) = (from % devices, to % devices);
                    if from != to {
                        sync_all(&folders[from], &folders[to]);
                        for info in repos[to].docs().unwrap() {
                            if !info.root && !known[to].contains(&info.id) {
                                known[to].push(info.id);
                            }
                        }
                    }
                }
            }
        }
        for i in 0..devices {
            for j in 0..devices {
                sync_all(&folders[i], &folders[j]);
            }
        }
        let first: Vec<(DocId, serde_json::Value)> = alive
            .keys()
            .map(|id| (id.clone(), repos[0].find(id).unwrap().read().unwrap().to_json()))
            .collect();
        for (id, doc) in &first {
            let items: Vec<String> = doc["items"].as_array().unwrap().iter()
                .map(|v| v.as_str().unwrap().to_string()).collect();
            for v in &alive[id] {
                prop_assert!(items.contains(v) || removed.contains(v), "{v} lost from {id}: {items:?}");
            }
            for v in &removed {
                prop_assert!(!items.contains(v), "{v} removed but still in {id}");
            }
        }
        for r in &repos[1..] {
            for (id, doc) in &first {
                prop_assert_eq!(&r.find(id).unwrap().read().unwrap().to_json(), doc);
            }
            prop_assert_eq!(r.root().read().unwrap().to_json(), json!({"root": true}));
            prop_assert_eq!(r.docs().unwrap().len(), alive.len() + 1);
        }
    }
}

/// The sync tool delivers a compaction's deletions and loses its snapshot: a new device's
/// view of a document says it is incomplete (never a silent empty document), a device that
/// had merged keeps its view, and its repair writes the document back.
#[test]
fn a_lost_compaction_snapshot_leaves_documents_incomplete_until_a_device_writes_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let (laptop, phone) = (
        Device::new(dir.path(), "laptop"),
        Device::new(dir.path(), "phone"),
    );
    let a = Repo::init(&a_dir, laptop.options(), Some(&json!({"root": 1}))).unwrap();
    let id = a.create(Some(&json!({"items": ["precious"]}))).unwrap();
    common::replica(&a_dir, &b_dir);
    sync_all(&a_dir, &b_dir);
    let b = repo(&phone, &b_dir);
    assert_eq!(
        b.find(&id)
            .unwrap()
            .read()
            .unwrap()
            .get("/items/0")
            .unwrap(),
        json!("precious")
    );
    let done = a.root().compact().unwrap();
    // b's folder: the deletions and the record arrive, the snapshot never does.
    let snapshot = done.snapshot.unwrap();
    for (rel, bytes) in common::tree(&a_dir) {
        if rel != snapshot && !b_dir.join(&rel).exists() && !rel.contains(".crdtdir-") {
            std::fs::create_dir_all(b_dir.join(&rel).parent().unwrap()).unwrap();
            std::fs::write(b_dir.join(&rel), bytes).unwrap();
        }
    }
    for rel in common::op_files(&b_dir) {
        if !a_dir.join(&rel).exists() {
            std::fs::remove_file(b_dir.join(&rel)).unwrap();
        }
    }
    assert!(common::op_files(&b_dir).is_empty());
    let fresh = Device::new(dir.path(), "fresh");
    let f = repo(&fresh, &b_dir);
    // The fresh device has no file of the document but the record: it cannot open it, and
    // the root document's view says why.
    assert!(f.find(&id).is_err());
    assert!(!f.root().read().unwrap().is_complete());
    // The phone had merged: its view keeps the document and its repair writes it back.
    let on_b = b.find(&id).unwrap();
    let view = on_b.read().unwrap();
    assert_eq!(view.get("/items/0").unwrap(), json!("precious"));
    assert!(view.report().unprovided > 0, "{:?}", view.report());
    // One repair of the repo writes back every document this device holds.
    let (_, docs) = b.repair().unwrap();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0].0, id);
    assert!(docs[0].1.snapshot.is_some(), "{docs:?}");
    assert!(
        b.repair().unwrap().1.is_empty(),
        "a second repair has nothing to do"
    );
    let again = Device::new(dir.path(), "again");
    let doc = repo(&again, &b_dir).find(&id).unwrap().read().unwrap();
    assert_eq!(doc.get("/items/0").unwrap(), json!("precious"));
}

/// Two devices compact at once, each folding the documents it has: both snapshots stay
/// valid where both arrive, every document reads whole, and the next compaction folds both.
#[test]
fn two_devices_compacting_documents_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let (laptop, phone) = (
        Device::new(dir.path(), "laptop"),
        Device::new(dir.path(), "phone"),
    );
    let a = Repo::init(&a_dir, laptop.options(), Some(&json!({"root": 1}))).unwrap();
    let shared = a.create(Some(&json!({"items": []}))).unwrap();
    common::replica(&a_dir, &b_dir);
    sync_all(&a_dir, &b_dir);
    let b = repo(&phone, &b_dir);
    // Apart: each edits the shared document and makes one of its own, then compacts.
    a.find(&shared)
        .unwrap()
        .apply_patch(&[PatchOp::insert("/items/-", json!("from a"))])
        .unwrap();
    b.find(&shared)
        .unwrap()
        .apply_patch(&[PatchOp::insert("/items/-", json!("from b"))])
        .unwrap();
    let only_a = a.create(Some(&json!({"title": "a's"}))).unwrap();
    let only_b = b.create(Some(&json!({"title": "b's"}))).unwrap();
    a.root().compact().unwrap();
    b.root().compact().unwrap();
    // The sync tool brings each side's new files to the other; deletions too.
    sync_all(&a_dir, &b_dir);
    sync_all(&b_dir, &a_dir);
    for rel in common::op_files(&a_dir) {
        if !b_dir.join(&rel).exists() {
            std::fs::remove_file(a_dir.join(&rel)).unwrap();
        }
    }
    for rel in common::op_files(&b_dir) {
        if !a_dir.join(&rel).exists() {
            std::fs::remove_file(b_dir.join(&rel)).unwrap();
        }
    }
    let check = |r: &Repo| {
        let items = r
            .find(&shared)
            .unwrap()
            .read()
            .unwrap()
            .get("/items")
            .unwrap();
        let mut items: Vec<String> = serde_json::from_value(items).unwrap();
        items.sort();
        assert_eq!(items, ["from a", "from b"]);
        for (id, title) in [(&only_a, "a's"), (&only_b, "b's")] {
            let view = r.find(id).unwrap().read().unwrap();
            assert_eq!(view.get("/title").unwrap(), json!(title));
            assert!(view.is_complete(), "{:?}", view.report());
        }
    };
    let fresh = Device::new(dir.path(), "fresh");
    check(&repo(&fresh, &a_dir));
    check(&a);
    check(&b);
    let snapshots = |d: &std::path::Path| {
        common::tree(d)
            .into_keys()
            .filter(|p| p.ends_with(".sqlite"))
            .count()
    };
    assert_eq!(snapshots(&a_dir), 2);
    a.root().compact().unwrap();
    assert_eq!(snapshots(&a_dir), 1);
    check(&repo(&Device::new(dir.path(), "later"), &a_dir));
}

/// A deleted document's history goes at compaction; the sync tool bringing its old files
/// back does not bring the document back, and a write that did not see the deletion (made
/// on a device that was away) comes back whole once that device writes it back.
#[test]
fn a_deleted_documents_history_goes_and_a_write_that_missed_the_deletion_survives() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let (laptop, phone) = (
        Device::new(dir.path(), "laptop"),
        Device::new(dir.path(), "phone"),
    );
    let a = Repo::init(&a_dir, laptop.options(), Some(&json!({"root": 1}))).unwrap();
    let id = a.create(Some(&json!({"items": ["old"]}))).unwrap();
    common::replica(&a_dir, &b_dir);
    sync_all(&a_dir, &b_dir);
    let b = repo(&phone, &b_dir);
    let old_files = common::op_files(&a_dir);
    // The laptop deletes it and compacts; the phone, away, edits it meanwhile.
    a.delete(&id).unwrap();
    a.root().compact().unwrap();
    assert!(common::op_files(&a_dir).is_empty());
    b.find(&id)
        .unwrap()
        .apply_patch(&[PatchOp::insert("/items/-", json!("late"))])
        .unwrap();
    // A resurrected old file does not bring the document back.
    for rel in &old_files {
        std::fs::copy(b_dir.join(rel), a_dir.join(rel)).unwrap();
    }
    let fresh = Device::new(dir.path(), "fresh");
    assert!(matches!(
        repo(&fresh, &a_dir).find(&id),
        Err(Error::UnknownDocument { deleted: true, .. })
    ));
    // The phone's late write arrives; so do the compaction's files and deletions.
    sync_all(&b_dir, &a_dir);
    sync_all(&a_dir, &b_dir);
    for rel in &old_files {
        let _ = std::fs::remove_file(b_dir.join(rel));
        let _ = std::fs::remove_file(a_dir.join(rel));
    }
    // The phone holds the history its write stands on: its repair writes it back.
    let on_b = b.find(&id).unwrap();
    assert_eq!(
        on_b.read().unwrap().get("/items").unwrap(),
        json!(["old", "late"])
    );
    on_b.repair().unwrap();
    sync_all(&b_dir, &a_dir);
    let later = Device::new(dir.path(), "later");
    let view = repo(&later, &a_dir).find(&id).unwrap().read().unwrap();
    assert_eq!(view.get("/items").unwrap(), json!(["old", "late"]));
    assert_eq!(
        a.find(&id).unwrap().read().unwrap().get("/items").unwrap(),
        json!(["old", "late"])
    );
}

/// An encrypted repo's compaction: the snapshot's rows carry neither ids nor content in
/// the plain, and a device with the key reads every document from it.
#[test]
fn an_encrypted_repos_compaction_hides_ids_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let laptop = Device::new(dir.path(), "laptop");
    let r = Repo::init(
        &store,
        laptop.options().encrypt(true),
        Some(&json!({"root": 1})),
    )
    .unwrap();
    let id = r.create(Some(&json!({"title": "Secret plans"}))).unwrap();
    let done = r.root().compact().unwrap();
    assert!(common::op_files(&store).is_empty());
    let bytes = std::fs::read(store.join(done.snapshot.unwrap())).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(id.as_str()));
    assert!(!text.contains("Secret plans"));
    let view = r.find(&id).unwrap().read().unwrap();
    assert_eq!(view.get("/title").unwrap(), json!("Secret plans"));
    let listed = r.docs().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].title.as_deref(), Some("Secret plans"));
}
