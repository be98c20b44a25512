//! Writes the fixture stores in `fixtures/` (see fixtures/README.md).
//!
//! `cargo run --example make_fixtures -- fixtures` writes the fixtures that do not exist yet
//! and never touches one that does: they are frozen once committed; later versions must keep
//! reading them.
//!
//! Every edit is scripted so that its merged result does not depend on the random actor
//! ids a run gets: concurrent list inserts go to different places, concurrent text edits to
//! different positions, concurrent map writes to different keys.

use std::path::{Path, PathBuf};

use crdtdir::automerge::transaction::Transactable;
use crdtdir::automerge::{ActorId, Automerge, ReadDoc, ROOT};
use crdtdir::{parse_patch, Options, Store};
use serde_json::json;

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fixtures".into()));
    let work = tempfile::tempdir().unwrap();
    let missing = |name: &str| {
        let there = out.join(name).exists();
        if there {
            eprintln!(
                "{} exists: fixtures are frozen, not regenerated",
                out.join(name).display()
            );
        }
        !there
    };
    if missing("v1-encrypted") {
        encrypted(&work.path().join("encrypted"), &out.join("v1-encrypted"));
    }
    if missing("v1-packed") {
        packed(&work.path().join("packed"), &out.join("v1-packed"));
    }
    if missing("v1-docs") {
        documents(&work.path().join("docs"), &out.join("v1-docs"));
    }
    if !missing("v1-clean") || !missing("v1-messy") {
        return;
    }
    let clean = out.join("v1-clean/store");
    groceries(work.path(), &clean);
    std::fs::write(
        out.join("v1-clean/expected.json"),
        serde_json::to_string_pretty(&expected_groceries()).unwrap() + "\n",
    )
    .unwrap();

    let messy = out.join("v1-messy/store");
    groceries(&work.path().join("messy"), &messy);
    let (fork_winner, problems) = make_messy(&messy);
    let mut expected = expected_groceries();
    expected["fork"] = json!(fork_winner);
    std::fs::write(
        out.join("v1-messy/expected.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
    std::fs::write(
        out.join("v1-messy/expected-problems.txt"),
        problems.join("\n") + "\n",
    )
    .unwrap();
}

/// An encrypted store: two devices, a sealed snapshot, writes after it, heartbeats; its key
/// in `key.txt`.
fn encrypted(work: &Path, out: &Path) {
    let store = out.join("store");
    let device = |name: &str| Options::new().state_dir(work.join(name)).device(name);
    let laptop = Store::init(
        &store,
        device("laptop").encrypt(true),
        Some(&json!({"title": "Sealed plans", "items": []})),
    )
    .unwrap();
    let key = laptop.key().unwrap();
    let phone = Store::open(&store, device("phone")).unwrap();
    phone.import_key(&key).unwrap();
    let patch = |s: &Store, p: &str| {
        s.apply_patch(&parse_patch(p).unwrap()).unwrap();
    };
    patch(&laptop, r#"{"op":"add","path":"/items/-","value":"milk"}"#);
    patch(&phone, r#"{"op":"add","path":"/items/-","value":"eggs"}"#);
    laptop
        .change_with_message(Some("a sealed message"), |tx| {
            tx.put(ROOT, "count", 2)?;
            Ok(())
        })
        .unwrap();
    phone.beat().unwrap();
    laptop.compact().unwrap();
    patch(
        &phone,
        r#"{"op":"add","path":"/note","value":"after compaction"}"#,
    );
    phone.beat().unwrap();
    std::fs::write(out.join("key.txt"), key.to_text() + "\n").unwrap();
    let expected = json!({
        "title": "Sealed plans",
        "items": ["milk", "eggs"],
        "count": 2,
        "note": "after compaction"
    });
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}

/// A store with packs (docs/FORMAT.md §17): the laptop's history is all in packs (its
/// loose files deleted once the phone's beat had them), the phone's packs sit beside the
/// loose files they hold (the laptop has not acknowledged them), and the phone's last
/// changes are loose only.
fn packed(work: &Path, out: &Path) {
    let store = out.join("store");
    let device = |name: &str| {
        Options::new()
            .state_dir(work.join(name))
            .device(name)
            .pack_size(3)
    };
    let laptop = Store::init(
        &store,
        device("laptop"),
        Some(&json!({"title": "Packed list", "items": []})),
    )
    .unwrap();
    let phone = Store::open(&store, device("phone")).unwrap();
    let patch = |s: &Store, p: &str| {
        s.apply_patch(&parse_patch(p).unwrap()).unwrap();
    };
    phone.beat().unwrap();
    for item in ["a", "b", "c", "d", "e", "f", "g"] {
        patch(
            &laptop,
            &format!(r#"{{"op":"add","path":"/items/-","value":"{item}"}}"#),
        );
    }
    for n in 1..=7 {
        patch(
            &phone,
            &format!(r#"{{"op":"add","path":"/n{n}","value":{n}}}"#),
        );
    }
    phone.beat().unwrap();
    laptop.pack().unwrap();
    let expected = json!({
        "title": "Packed list",
        "items": ["a", "b", "c", "d", "e", "f", "g"],
        "n1": 1, "n2": 2, "n3": 3, "n4": 4, "n5": 5, "n6": 6, "n7": 7
    });
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}

fn expected_groceries() -> serde_json::Value {
    json!({
        "title": "Groceries",
        "items": ["eggs", "milk", "bread"],
        "note": "Please buy soon!",
        "done": 3,
        "meta": {"owner": "ann", "shop": "market"}
    })
}

struct Dev {
    folder: PathBuf,
    options: Options,
}

impl Dev {
    fn edit(&self, patch: &str) {
        Store::open(&self.folder, self.options.clone())
            .unwrap()
            .apply_patch(&parse_patch(patch).unwrap())
            .unwrap();
    }
}

fn sync_all(devs: &[&Dev]) {
    for from in devs {
        for to in devs {
            copy_ops(&from.folder, &to.folder);
        }
    }
}

fn copy_ops(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from.join("ops"))
        .into_iter()
        .filter_map(Result::ok)
    {
        if entry.file_type().is_file() {
            let rel = entry.path().strip_prefix(from).unwrap();
            let target = to.join(rel);
            if !target.exists() {
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
}

/// A store with documents beside its root one (`features/docs`): two devices, each with its
/// own folder. A note both edit concurrently between syncs, a note made empty and filled
/// later, and a note deleted. `expected.json` holds the root document, every document by
/// id, and the ids of the deleted ones.
fn documents(work: &Path, out: &Path) {
    use crdtdir::{PatchOp, Repo};
    let store = out.join("store");
    let dev = |name: &str, folder: PathBuf| Dev {
        folder,
        options: Options::new()
            .state_dir(work.join(format!("state-{name}")))
            .device(name),
    };
    let laptop = dev("laptop", store.clone());
    let phone = dev("phone", work.join("phone"));
    let on_laptop = Repo::init(
        &store,
        laptop.options.clone(),
        Some(&json!({"app": "notes"})),
    )
    .unwrap();
    std::fs::create_dir_all(phone.folder.join("ops")).unwrap();
    std::fs::copy(
        store.join("crdtdir.store"),
        phone.folder.join("crdtdir.store"),
    )
    .unwrap();
    let groceries = on_laptop
        .create(Some(&json!({"title": "Groceries", "items": ["milk"]})))
        .unwrap();
    let empty = on_laptop.create(None).unwrap();
    let gone = on_laptop.create(Some(&json!({"title": "Old"}))).unwrap();
    let on_phone = Repo::open(&phone.folder, phone.options.clone()).unwrap();
    sync_all(&[&laptop, &phone]);
    std::fs::create_dir_all(phone.folder.join("features")).unwrap();
    std::fs::copy(
        store.join("features/docs"),
        phone.folder.join("features/docs"),
    )
    .unwrap();
    // Concurrent, in different places.
    let insert = |repo: &Repo, id, path: &str, value: &str| {
        repo.find(id)
            .unwrap()
            .apply_patch(&[PatchOp::insert(path, json!(value))])
            .unwrap();
    };
    insert(&on_laptop, &groceries, "/items/-", "bread");
    insert(&on_phone, &groceries, "/items/0", "eggs");
    on_phone
        .find(&empty)
        .unwrap()
        .apply_patch(&[PatchOp::set("/title", json!("Ideas"))])
        .unwrap();
    on_laptop.delete(&gone).unwrap();
    on_phone
        .root()
        .apply_patch(&[PatchOp::set("/theme", json!("dark"))])
        .unwrap();
    sync_all(&[&laptop, &phone]);
    let expected = json!({
        "root": {"app": "notes", "theme": "dark"},
        "docs": {
            groceries.as_str(): {"title": "Groceries", "items": ["eggs", "milk", "bread"]},
            empty.as_str(): {"title": "Ideas"},
        },
        "deleted": [gone.as_str()],
    });
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}

/// Three devices, each with its own folder, edit concurrently between syncs; `store` ends
/// up holding every file.
fn groceries(work: &Path, store: &Path) {
    let dev = |name: &str, folder: PathBuf| Dev {
        folder,
        options: Options::new()
            .state_dir(work.join(format!("state-{name}")))
            .device(name),
    };
    let laptop = dev("laptop", store.to_path_buf());
    let phone = dev("phone", work.join("phone"));
    let tablet = dev("tablet", work.join("tablet"));
    Store::init(
        store,
        laptop.options.clone(),
        Some(&json!({"title": "", "items": [], "note": "", "done": 0, "meta": {}})),
    )
    .unwrap();
    for d in [&phone, &tablet] {
        std::fs::create_dir_all(d.folder.join("ops")).unwrap();
        std::fs::copy(store.join("crdtdir.store"), d.folder.join("crdtdir.store")).unwrap();
    }
    // `done` was created as a plain number by init; make it a counter once.
    laptop.edit(r#"{"op":"remove","path":"/done"}"#);
    laptop.edit(r#"{"op":"increment","path":"/done","value":0}"#);
    laptop.edit(r#"{"op":"set","path":"/title","value":"Groceries"}"#);
    laptop.edit(r#"{"op":"add","path":"/items/-","value":"milk"}"#);
    tablet.edit(r#"[]"#);
    sync_all(&[&laptop, &phone, &tablet]);
    tablet.edit(r#"{"op":"splice","path":"/note","pos":0,"del":0,"text":"buy soon"}"#);
    sync_all(&[&laptop, &phone, &tablet]);
    // Concurrent, in different places.
    phone.edit(r#"{"op":"add","path":"/items/0","value":"eggs"}"#);
    laptop.edit(r#"{"op":"add","path":"/items/-","value":"bread"}"#);
    phone.edit(r#"{"op":"splice","path":"/note","pos":0,"del":0,"text":"Please "}"#);
    laptop.edit(r#"{"op":"splice","path":"/note","pos":8,"del":0,"text":"!"}"#);
    laptop.edit(r#"{"op":"increment","path":"/done","value":2}"#);
    phone.edit(r#"{"op":"increment","path":"/done","value":1}"#);
    laptop.edit(r#"{"op":"add","path":"/meta/owner","value":"ann","scalar":true}"#);
    tablet.edit(r#"{"op":"add","path":"/meta/shop","value":"market","scalar":true}"#);
    sync_all(&[&laptop, &phone, &tablet]);
}

/// Adds sync-tool clutter, damaged files and a fork. Returns the fork's winning value (the
/// branch whose change has the lower Automerge hash, per docs/FORMAT.md) and the sorted list
/// of paths the reader must report.
fn make_messy(store: &Path) -> (String, Vec<String>) {
    let mut problems = Vec::new();
    let any_op = walkdir::WalkDir::new(store.join("ops"))
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.file_type().is_file())
        .unwrap();
    let bytes = std::fs::read(any_op.path()).unwrap();
    let actor_dir = any_op.path().parent().unwrap().to_path_buf();
    let actor_rel = format!("ops/{}", actor_dir.file_name().unwrap().to_string_lossy());
    let name = any_op.file_name().to_string_lossy().into_owned();
    let stem = name.strip_suffix(".op").unwrap().to_string();
    for junk in [
        format!(".syncthing.{name}.tmp"),
        format!("{stem}.sync-conflict-20240101-120000-ABCDEFG.op"),
        format!("{stem} (conflicted copy 2024-01-01).op"),
        format!(".{name}.icloud"),
        ".DS_Store".to_string(),
    ] {
        std::fs::write(actor_dir.join(&junk), &bytes).unwrap();
        problems.push(format!("{actor_rel}/{junk}"));
    }
    // A truncated file whose name still claims the original hash (torn copy).
    let torn = format!("{actor_rel}/{}", name.replace(&stem[..10], "9999999999"));
    std::fs::write(store.join(&torn), &bytes[..bytes.len() / 2]).unwrap();
    problems.push(torn);

    // A fork: two different changes with one actor and seq, both on top of the store.
    let mut doc = Automerge::new();
    let view = Store::open(
        store,
        Options::new()
            .state_dir(store.join("../state-reader"))
            .device("reader"),
    )
    .unwrap()
    .read()
    .unwrap();
    doc.apply_changes(view.doc().get_changes(&[])).unwrap();
    let cloned = ActorId::random();
    let branch = |value: &str| {
        let mut d = doc.clone();
        d.set_actor(cloned.clone());
        let mut tx = d.transaction();
        tx.put(ROOT, "fork", value).unwrap();
        let h = tx.commit().0.unwrap();
        d.get_change_by_hash(&h).unwrap()
    };
    let (a, b) = (branch("a"), branch("b"));
    let mut written = Vec::new();
    for (c, device) in [(&a, "clone-1"), (&b, "clone-2")] {
        let mut env = Vec::new();
        ciborium::into_writer(
            &ciborium::Value::Map(vec![
                (
                    ciborium::Value::Text("v".into()),
                    ciborium::Value::Integer(1.into()),
                ),
                (
                    ciborium::Value::Text("device".into()),
                    ciborium::Value::Text(device.into()),
                ),
                (
                    ciborium::Value::Text("change".into()),
                    ciborium::Value::Bytes(c.raw_bytes().to_vec()),
                ),
            ]),
            &mut env,
        )
        .unwrap();
        let rel = format!(
            "ops/{}/{:010}-{}.op",
            cloned.to_hex_string(),
            c.seq(),
            &blake3::hash(&env).to_hex()[..32]
        );
        std::fs::create_dir_all(store.join(&rel).parent().unwrap()).unwrap();
        std::fs::write(store.join(&rel), env).unwrap();
        written.push(rel);
    }
    let (winner, loser_path) = if a.hash().as_ref() < b.hash().as_ref() {
        ("a", &written[1])
    } else {
        ("b", &written[0])
    };
    problems.push(loser_path.clone());
    std::fs::remove_dir_all(store.join("../state-reader")).ok();
    problems.sort();
    (winner.to_string(), problems)
}
