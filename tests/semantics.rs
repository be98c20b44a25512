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
        .apply_patch(&[PatchOp::Set {
            path: "/id".into(),
            value: json!("abc"),
            scalar: true,
        }])
        .unwrap();
    sync(&t);
    t.a.open(&t.one)
        .apply_patch(&[PatchOp::Set {
            path: "/id".into(),
            value: json!("xyz"),
            scalar: true,
        }])
        .unwrap();
    t.b.open(&t.two)
        .apply_patch(&[PatchOp::Set {
            path: "/id".into(),
            value: json!("pqr"),
            scalar: true,
        }])
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
