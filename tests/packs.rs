//! Packs: a device folds its own op files into packs, deletes the loose ones only when that
//! is safe, and every reader sees the same document whether a change is loose, packed or
//! both.

use std::path::Path;

use crdtdir::{PatchOp, Store};
use serde_json::json;

use crate::common::{tree, Device};

fn set(store: &Store, key: &str, value: i64) {
    store
        .apply_patch(&[PatchOp::Set {
            path: format!("/{key}"),
            value: json!(value),
            scalar: false,
        }])
        .unwrap();
}

fn count(store: &Path, prefix: &str, ext: &str) -> usize {
    tree(store)
        .into_keys()
        .filter(|p| p.starts_with(prefix) && p.ends_with(ext))
        .count()
}

fn open(device: &Device, store: &Path, pack_size: usize) -> Store {
    Store::open(store, device.options().pack_size(pack_size)).unwrap()
}

/// Writes pack on their own every `pack_size` changes; the loose files stay while another
/// device has not merged them, and go once its heartbeat says it has.
#[test]
fn writes_pack_and_loose_files_go_once_every_device_has_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = Device::new(dir.path(), "a");
    let b = Device::new(dir.path(), "b");
    Store::init(&store, a.options(), Some(&json!({}))).unwrap();
    // b is known: it has a heartbeat, at the start.
    let sb = open(&b, &store, 4);
    sb.beat().unwrap();
    let sa = open(&a, &store, 4);
    for i in 0..10 {
        set(&sa, &format!("k{i}"), i);
    }
    assert_eq!(
        count(&store, "packs/", ".pack"),
        2,
        "{:?}",
        tree(&store).keys()
    );
    // b has not merged them: every loose file stays.
    assert_eq!(
        count(&store, "ops/", ".op"),
        10,
        "{:?}",
        tree(&store).keys()
    );
    let before = serde_json::to_string(&sb.read().unwrap().to_json()).unwrap();
    sb.beat().unwrap();
    let out = sa.pack().unwrap();
    assert_eq!(out.packs.len(), 1, "{out:?}");
    assert_eq!(out.deleted, 10, "{out:?}");
    assert_eq!(count(&store, "ops/", ".op"), 0);
    let c = Device::new(dir.path(), "c");
    let fresh = serde_json::to_string(&c.open(&store).read().unwrap().to_json()).unwrap();
    assert_eq!(fresh, before);
    assert_eq!(
        serde_json::to_string(&sa.read().unwrap().to_json()).unwrap(),
        before
    );
    let status = sa.status().unwrap();
    assert_eq!(status.files.packs, 3);
    assert_eq!(status.files.ops, count(&store, "ops/", ".op"));
}
