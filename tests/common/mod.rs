//! Helpers shared by the integration tests: simulated devices, folder snapshots, and an
//! independent writer of op files that follows docs/FORMAT.md by hand.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crdtdir::automerge::Change;
use crdtdir::{Options, Store};

/// One simulated device: its own state dir and display name.
pub struct Device {
    pub name: String,
    pub state: PathBuf,
}

impl Device {
    pub fn new(root: &Path, name: &str) -> Device {
        Device {
            name: name.to_string(),
            state: root.join(format!("state-{name}")),
        }
    }

    pub fn options(&self) -> Options {
        Options::new().state_dir(&self.state).device(&self.name)
    }

    pub fn open(&self, store: &Path) -> Store {
        Store::open(store, self.options()).expect("open store")
    }
}

/// Every file under `dir` with its bytes, by `/`-separated relative path.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// Every file of a folder seen through the library's seam, by its path there, from its
/// listings (a folder that does not list, or not yet, has none).
pub fn folder_files(folder: &dyn crdtdir::folders::Folder) -> Vec<String> {
    fn walk(folder: &dyn crdtdir::folders::Folder, dir: &str, out: &mut Vec<String>) {
        for e in folder.list(dir).unwrap_or_default() {
            let rel = if dir.is_empty() {
                e.name.clone()
            } else {
                format!("{dir}/{}", e.name)
            };
            match e.kind {
                crdtdir::folders::Kind::Dir => walk(folder, &rel, out),
                _ => out.push(rel),
            }
        }
    }
    let mut out = Vec::new();
    walk(folder, "", &mut out);
    out
}

/// Every op file (relative path) under a store.
pub fn op_files(store: &Path) -> Vec<String> {
    tree(store)
        .into_keys()
        .filter(|p| p.starts_with("ops/") && p.ends_with(".op"))
        .collect()
}

/// The envelope of docs/FORMAT.md, encoded independently of the library.
pub fn envelope(device: &str, change: &[u8]) -> Vec<u8> {
    use ciborium::Value;
    let value = Value::Map(vec![
        (Value::Text("v".into()), Value::Integer(1.into())),
        (Value::Text("device".into()), Value::Text(device.into())),
        (Value::Text("change".into()), Value::Bytes(change.to_vec())),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).unwrap();
    out
}

/// The canonical op file path for these file bytes.
pub fn op_path(actor_hex: &str, seq: u64, bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes).to_hex();
    format!("ops/{actor_hex}/{seq:010}-{}.op", &hash[..32])
}

/// Writes `bytes` as the op file of (actor, seq) into `store`; returns its relative path.
pub fn put_op_bytes(store: &Path, actor_hex: &str, seq: u64, bytes: &[u8]) -> String {
    let rel = op_path(actor_hex, seq, bytes);
    let path = store.join(&rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    rel
}

/// Writes a change as an op file the way any v1 writer would.
pub fn put_change(store: &Path, device: &str, change: &Change) -> String {
    put_op_bytes(
        store,
        &change.actor_id().to_hex_string(),
        change.seq(),
        &envelope(device, change.raw_bytes()),
    )
}

/// Copies op files from one store folder to another, as a sync tool would (all of them,
/// or only those `pick` accepts). Returns how many were copied.
pub fn sync_ops(from: &Path, to: &Path, mut pick: impl FnMut(&str) -> bool) -> usize {
    let mut n = 0;
    for rel in op_files(from) {
        let target = to.join(&rel);
        if target.exists() || !pick(&rel) {
            continue;
        }
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&rel), &target).unwrap();
        n += 1;
    }
    n
}

/// A store folder that another device receives: the marker copied, nothing else.
pub fn replica(of: &Path, at: &Path) {
    std::fs::create_dir_all(at.join("ops")).unwrap();
    std::fs::copy(of.join("crdtdir.store"), at.join("crdtdir.store")).unwrap();
}

/// The merged document of a folder as compact JSON.
pub fn merged(device: &Device, store: &Path) -> String {
    serde_json::to_string(&device.open(store).read().unwrap().to_json()).unwrap()
}

/// Copies a folder tree (a `cp -a`).
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from)
        .into_iter()
        .filter_map(Result::ok)
    {
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `to` becomes a clone of `from`'s state dir, as a cloned disk or VM snapshot makes one on
/// another machine: there the store's folder sits at the same path, so the record of which
/// folder the state belongs to is left behind (here the two folders have different paths).
pub fn clone_state(from: &Device, to: &Device) {
    copy_dir(&from.state, &to.state);
    // (A device that lost its state and has not made a new one clones to none.)
    for store in std::fs::read_dir(to.state.join("stores"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_file(store.path().join("folder"));
    }
}

/// Makes every kept pack copy in the state dir `state` `secs` seconds old (a day passing for
/// the packing grace period).
pub fn age_pack_copies(state: &Path, secs: u64) {
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
    for e in walkdir::WalkDir::new(state)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| e.path().components().any(|c| c.as_os_str() == "packs"))
    {
        std::fs::File::options()
            .write(true)
            .open(e.path())
            .and_then(|f| f.set_modified(then))
            .unwrap();
    }
}
