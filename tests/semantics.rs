//! Merge-friendly writing: what survives concurrent edits.

use std::path::Path;

use crdtdir::{parse_patch, PatchOp, Store};
use serde_json::json;

use crate::common::{merged, replica, sync_ops, Device};

struct Two {
    _dir: tempfile::TempDir,
    a: Device,
    b: Device,
    one: std::path::PathBuf,
    two: std::path::PathBuf,
}

/// Two devices with their own folders, starting from `initial`, fully synced.
fn two_devices(initial: serde_json::Value) -> Two {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let a = Device::new(dir.path(), "a");
    let b = Device::new(dir.path(), "b");
    Store::init(&one, a.options(), Some(&initial)).unwrap();
    replica(&one, &two);
    sync_ops(&one, &two, |_| true);
    Two {
        _dir: dir,
        a,
        b,
        one,
        two,
    }
}

fn patch(d: &Device, store: &Path, p: &str) {
    d.open(store).apply_patch(&parse_patch(p).unwrap()).unwrap();
}

fn sync(t: &Two) -> serde_json::Value {
    sync_ops(&t.one, &t.two, |_| true);
    sync_ops(&t.two, &t.one, |_| true);
    let (x, y) = (merged(&t.a, &t.one), merged(&t.b, &t.two));
    assert_eq!(x, y, "replicas disagree");
    serde_json::from_str(&x).unwrap()
}

/// A sets /meta to a new object while B edits a key of /meta that A did not change:
/// B's edit survives (the set is a diff, not a replacement).
#[test]
fn an_in_place_set_keeps_a_concurrent_edit_it_did_not_touch() {
    let t = two_devices(json!({"meta": {"title": "Old", "tags": ["x"], "n": 1}}));
    patch(
        &t.a,
        &t.one,
        r#"{"op":"set","path":"/meta","value":{"title":"New","tags":["x"],"n":1}}"#,
    );
    patch(&t.b, &t.two, r#"{"op":"set","path":"/meta/n","value":2}"#);
    patch(
        &t.b,
        &t.two,
        r#"{"op":"add","path":"/meta/tags/-","value":"y"}"#,
    );
    assert_eq!(
        sync(&t),
        json!({"meta": {"title": "New", "tags": ["x", "y"], "n": 2}})
    );
}

/// Two devices typing into one text interleave instead of overwriting.
#[test]
fn concurrent_splices_into_one_text_both_survive() {
    let t = two_devices(json!({"note": "hello world"}));
    patch(
        &t.a,
        &t.one,
        r#"{"op":"splice","path":"/note","pos":5,"del":0,"text":","}"#,
    );
    patch(
        &t.b,
        &t.two,
        r#"{"op":"splice","path":"/note","pos":11,"del":0,"text":"!"}"#,
    );
    assert_eq!(sync(&t), json!({"note": "hello, world!"}));
}

/// Replacing a text with a new string is a diff too: a concurrent edit elsewhere survives.
#[test]
fn setting_a_text_is_a_diff() {
    let t = two_devices(json!({"note": "one two three"}));
    patch(
        &t.a,
        &t.one,
        r#"{"op":"set","path":"/note","value":"ONE two three"}"#,
    );
    patch(
        &t.b,
        &t.two,
        r#"{"op":"splice","path":"/note","pos":13,"del":0,"text":" four"}"#,
    );
    assert_eq!(sync(&t), json!({"note": "ONE two three four"}));
}

/// Concurrent increments add up.
#[test]
fn concurrent_increments_add_up() {
    let t = two_devices(json!({}));
    patch(
        &t.a,
        &t.one,
        r#"{"op":"increment","path":"/clicks","value":2}"#,
    );
    patch(&t.a, &t.one, r#"{"op":"increment","path":"/clicks"}"#);
    // B's first increment also creates the counter: concurrent creation, one wins, but the
    // increments made on the counter both devices share add up.
    sync(&t);
    patch(
        &t.a,
        &t.one,
        r#"{"op":"increment","path":"/clicks","value":10}"#,
    );
    patch(
        &t.b,
        &t.two,
        r#"{"op":"increment","path":"/clicks","value":100}"#,
    );
    assert_eq!(sync(&t), json!({"clicks": 113}));
}

/// A scalar string is last-writer-wins: no interleaving of two whole values.
#[test]
fn scalar_strings_are_atomic() {
    let t = two_devices(json!({}));
    t.a.open(&t.one)
        .apply_patch(&[PatchOp::set("/id", json!("abc")).scalar()])
        .unwrap();
    sync(&t);
    t.a.open(&t.one)
        .apply_patch(&[PatchOp::set("/id", json!("xyz")).scalar()])
        .unwrap();
    t.b.open(&t.two)
        .apply_patch(&[PatchOp::set("/id", json!("pqr")).scalar()])
        .unwrap();
    let out = sync(&t);
    assert!(
        out["id"] == json!("xyz") || out["id"] == json!("pqr"),
        "{out}"
    );
    // Splicing into a scalar is refused.
    let err =
        t.a.open(&t.one)
            .apply_patch(
                &parse_patch(r#"{"op":"splice","path":"/id","pos":0,"del":0,"text":"q"}"#).unwrap(),
            )
            .unwrap_err();
    assert!(err.to_string().contains("not a text"), "{err}");
}

/// The documented trap: two devices creating the same key concurrently make two objects,
/// and one wins. `init --from` avoids it by creating shared containers once.
#[test]
fn concurrent_creation_of_one_key_keeps_one_object() {
    let t = two_devices(json!({}));
    patch(
        &t.a,
        &t.one,
        r#"{"op":"add","path":"/items","value":["a"]}"#,
    );
    patch(
        &t.b,
        &t.two,
        r#"{"op":"add","path":"/items","value":["b"]}"#,
    );
    let out = sync(&t);
    assert_eq!(out["items"].as_array().unwrap().len(), 1, "{out}");

    let t = two_devices(json!({"items": []}));
    patch(
        &t.a,
        &t.one,
        r#"{"op":"add","path":"/items/-","value":"a"}"#,
    );
    patch(
        &t.b,
        &t.two,
        r#"{"op":"add","path":"/items/-","value":"b"}"#,
    );
    let out = sync(&t);
    assert_eq!(out["items"].as_array().unwrap().len(), 2, "{out}");
}

/// A failing `test` refuses the whole append.
#[test]
fn a_failed_test_refuses_the_whole_patch() {
    let t = two_devices(json!({"v": 1}));
    let before = crate::common::tree(&t.one);
    let err =
        t.a.open(&t.one)
            .apply_patch(
                &parse_patch(
                    r#"[{"op":"add","path":"/w","value":2},{"op":"test","path":"/v","value":2}]"#,
                )
                .unwrap(),
            )
            .unwrap_err();
    assert!(err.to_string().contains("test failed"), "{err}");
    assert_eq!(crate::common::tree(&t.one), before);
}

/// The typed layer: `Store::put` of a struct is a diff, so two devices that each change
/// one field of the same struct concurrently both keep their field; `View::get_as` reads it
/// back, and a value of the wrong shape is a clear error naming the pointer.
#[test]
fn typed_puts_of_one_struct_keep_both_devices_fields() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    struct Settings {
        theme: String,
        font_size: u32,
        tags: Vec<String>,
    }
    let start = Settings {
        theme: "dark".into(),
        font_size: 14,
        tags: vec!["a".into()],
    };
    let t = two_devices(json!({}));
    t.a.open(&t.one).put("/settings", &start).unwrap();
    sync(&t);
    let (a, b) = (t.a.open(&t.one), t.b.open(&t.two));
    let mut mine: Settings = a.read().unwrap().get_as("/settings").unwrap();
    assert_eq!(mine, start);
    let mut theirs: Settings = b.read().unwrap().get_as("/settings").unwrap();
    mine.theme = "light".into();
    theirs.font_size = 16;
    theirs.tags.push("b".into());
    a.put("/settings", &mine).unwrap();
    b.put("/settings", &theirs).unwrap();
    drop((a, b));
    sync(&t);
    let view = t.a.open(&t.one).read().unwrap();
    assert_eq!(
        view.get_as::<Settings>("/settings").unwrap(),
        Settings {
            theme: "light".into(),
            font_size: 16,
            tags: vec!["a".into(), "b".into()],
        }
    );
    let err = view.get_as::<Vec<u32>>("/settings").unwrap_err();
    assert!(err.to_string().contains("/settings"), "{err}");
    assert!(view.get_as::<u32>("/nothing").is_err());
    // The whole document as one typed value.
    #[derive(serde::Deserialize)]
    struct Doc {
        settings: Settings,
    }
    assert_eq!(view.get_as::<Doc>("").unwrap().settings.theme, "light");
}

/// The README's autosurgeon recipe: derive `Reconcile`/`Hydrate`, reconcile inside
/// `Store::change`, hydrate from `View::doc`. Two devices editing different fields of one
/// struct both keep their edit.
#[test]
fn the_autosurgeon_recipe_works_through_a_store() {
    use autosurgeon::{hydrate_prop, reconcile_prop, Hydrate, Reconcile};
    use crdtdir::automerge::ROOT;
    #[derive(Reconcile, Hydrate, Debug, Clone, PartialEq)]
    struct Todo {
        title: String,
        done: bool,
    }
    let t = two_devices(json!({}));
    let first = Todo {
        title: "milk".into(),
        done: false,
    };
    t.a.open(&t.one)
        .change(|tx| Ok(reconcile_prop(tx, ROOT, "todo", &first)?))
        .unwrap();
    sync(&t);
    let (a, b) = (t.a.open(&t.one), t.b.open(&t.two));
    for (store, edit) in [
        (&a, &(|t: &mut Todo| t.done = true) as &dyn Fn(&mut Todo)),
        (&b, &|t: &mut Todo| t.title = "oat milk".into()),
    ] {
        let mut todo: Todo = hydrate_prop(store.read().unwrap().doc(), ROOT, "todo").unwrap();
        edit(&mut todo);
        store
            .change(|tx| Ok(reconcile_prop(tx, ROOT, "todo", &todo)?))
            .unwrap();
    }
    drop((a, b));
    sync(&t);
    let view = t.b.open(&t.two).read().unwrap();
    let todo: Todo = hydrate_prop(view.doc(), ROOT, "todo").unwrap();
    assert_eq!(
        todo,
        Todo {
            title: "oat milk".into(),
            done: true
        }
    );
}

/// A new object tree (from `init --from`, or a patch that adds one) is written in one batch:
/// it reads back as written, kind for kind — strings inside it are texts that two devices
/// splice into concurrently, its lists take concurrent inserts, its numbers stay numbers.
#[test]
fn a_new_object_tree_keeps_every_value_and_kind() {
    let initial = json!({
        "notes": {
            "a": {"title": "hello world", "items": ["milk", "tea"], "done": false, "n": -3},
            "b": {"title": "ünïcödé 🎉", "items": [], "meta": {}, "f": 1.5, "big": 18446744073709551615u64, "none": null}
        },
        "list": [[1, 2], {"k": "v"}, "s", 0]
    });
    let t = two_devices(initial.clone());
    assert_eq!(sync(&t), initial);
    patch(
        &t.a,
        &t.one,
        r#"{"op":"splice","path":"/notes/a/title","pos":5,"del":0,"text":","}"#,
    );
    patch(
        &t.b,
        &t.two,
        r#"{"op":"splice","path":"/notes/a/title","pos":11,"del":0,"text":"!"}"#,
    );
    patch(
        &t.a,
        &t.one,
        r#"{"op":"add","path":"/notes/a/items/-","value":"eggs"}"#,
    );
    patch(
        &t.b,
        &t.two,
        r#"{"op":"add","path":"/notes/a/items/0","value":"jam"}"#,
    );
    // A tree a patch adds, edited at once by the other device once it has it.
    patch(
        &t.a,
        &t.one,
        r#"{"op":"add","path":"/notes/c","value":{"title":"new","items":["x"]}}"#,
    );
    sync(&t);
    patch(
        &t.b,
        &t.two,
        r#"{"op":"splice","path":"/notes/c/title","pos":3,"del":0,"text":"er"}"#,
    );
    let doc = sync(&t);
    assert_eq!(doc["notes"]["a"]["title"], json!("hello, world!"));
    assert_eq!(
        doc["notes"]["a"]["items"],
        json!(["jam", "milk", "tea", "eggs"])
    );
    assert_eq!(doc["notes"]["c"], json!({"title": "newer", "items": ["x"]}));
    assert_eq!(doc["notes"]["b"], initial["notes"]["b"]);
    assert_eq!(doc["list"], initial["list"]);
}
