//! Property: devices that append random operations while their folders exchange files in
//! random order — partially, repeatedly, with sync-tool clutter in between — converge to
//! byte-identical merge output once every file has crossed.

use std::path::PathBuf;

use crdtdir::{PatchOp, Store};
use proptest::prelude::*;
use serde_json::json;

use crate::common::{merged, replica, sync_ops, Device};

#[derive(Debug, Clone)]
enum Action {
    /// Device `dev` appends one operation.
    Edit { dev: usize, edit: Edit },
    /// The sync tool copies some of `from`'s files to `to` (`mask` picks which).
    Deliver { from: usize, to: usize, mask: u64 },
    /// A sync tool leaves a partial temp file of one of `from`'s ops in `to`.
    Clutter { from: usize, to: usize },
}

#[derive(Debug, Clone)]
enum Edit {
    SetKey(u8, i64),
    SetObject(u8, i64),
    DeleteKey(u8),
    ListInsert(f64, i64),
    ListDelete(f64),
    Splice(f64, usize, String),
    Increment(i64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0u8..4, any::<i64>()).prop_map(|(k, v)| Edit::SetKey(k, v)),
        (0u8..4, any::<i64>()).prop_map(|(k, v)| Edit::SetObject(k, v)),
        (0u8..4).prop_map(Edit::DeleteKey),
        (0.0..1.0f64, any::<i64>()).prop_map(|(p, v)| Edit::ListInsert(p, v)),
        (0.0..1.0f64).prop_map(Edit::ListDelete),
        (0.0..1.0f64, 0usize..3, "[a-zé ]{0,4}").prop_map(|(p, d, t)| Edit::Splice(p, d, t)),
        (-5i64..5).prop_map(Edit::Increment),
    ]
}

fn action(devices: usize) -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..devices, edit()).prop_map(|(dev, edit)| Action::Edit { dev, edit }),
        2 => (0..devices, 0..devices, any::<u64>()).prop_map(|(from, to, mask)| Action::Deliver { from, to, mask }),
        1 => (0..devices, 0..devices).prop_map(|(from, to)| Action::Clutter { from, to }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Action>)> {
    (2usize..=4).prop_flat_map(|n| (Just(n), proptest::collection::vec(action(n), 1..40)))
}

fn to_patch(edit: &Edit, view: &serde_json::Value) -> PatchOp {
    let list_len = view["list"].as_array().map_or(0, Vec::len);
    let text_len = view["text"].as_str().map_or(0, |s| s.chars().count());
    let at = |frac: f64, len: usize| ((frac * len as f64) as usize).min(len);
    match edit {
        Edit::SetKey(k, v) => PatchOp::set(format!("/map/k{k}"), json!(v)),
        Edit::SetObject(k, v) => {
            PatchOp::set(format!("/map/o{k}"), json!({"v": v, "s": format!("s{v}")}))
        }
        Edit::DeleteKey(k) => PatchOp::Remove {
            path: format!("/map/k{k}"),
        },
        Edit::ListInsert(p, v) => PatchOp::insert(format!("/list/{}", at(*p, list_len)), json!(v)),
        Edit::ListDelete(p) => PatchOp::Remove {
            path: format!("/list/{}", at(*p, list_len.saturating_sub(1))),
        },
        Edit::Splice(p, del, text) => {
            let pos = at(*p, text_len);
            PatchOp::Splice {
                path: "/text".into(),
                pos,
                del: (*del).min(text_len - pos),
                text: text.clone(),
            }
        }
        Edit::Increment(n) => PatchOp::Increment {
            path: "/counter".into(),
            value: *n,
        },
    }
}

fn run(n: usize, actions: &[Action], encrypt: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let devices: Vec<Device> = (0..n)
        .map(|i| Device::new(dir.path(), &format!("d{i}")))
        .collect();
    let folders: Vec<PathBuf> = (0..n)
        .map(|i| dir.path().join(format!("folder{i}")))
        .collect();
    let first = Store::init(
        &folders[0],
        devices[0].options().encrypt(encrypt),
        Some(&json!({"map": {}, "list": [], "text": "", "counter": 0})),
    )
    .unwrap();
    for (i, f) in folders.iter().enumerate().skip(1) {
        replica(&folders[0], f);
        sync_ops(&folders[0], f, |_| true);
        if let Some(key) = first.key() {
            devices[i].open(f).import_key(&key).unwrap();
        }
    }
    for a in actions {
        match a {
            Action::Edit { dev, edit } => {
                let store = devices[*dev].open(&folders[*dev]);
                let view = store.read().unwrap().to_json();
                // An edit that does not fit (deleting a missing key) is refused, and
                // writes nothing: both are fine here.
                let _ = store.apply_patch(&[to_patch(edit, &view)]);
            }
            Action::Deliver { from, to, mask } => {
                let mut bit = 0;
                sync_ops(&folders[*from], &folders[*to], |_| {
                    bit = (bit + 1) % 64;
                    mask & (1 << bit) != 0
                });
            }
            Action::Clutter { from, to } => {
                if let Some(rel) = crate::common::op_files(&folders[*from]).first() {
                    let bytes = std::fs::read(folders[*from].join(rel)).unwrap();
                    let (actor_dir, name) = rel.rsplit_once('/').unwrap();
                    let target = folders[*to].join(actor_dir);
                    std::fs::create_dir_all(&target).unwrap();
                    std::fs::write(
                        target.join(format!(".syncthing.{name}.tmp")),
                        &bytes[..bytes.len() / 2],
                    )
                    .unwrap();
                }
            }
        }
    }
    // Everything crosses, in both directions, in a shuffled order of pairs.
    for _ in 0..2 {
        for from in 0..n {
            for to in 0..n {
                if from != to {
                    sync_ops(&folders[from], &folders[to], |_| true);
                }
            }
        }
    }
    let outputs: Vec<String> = (0..n).map(|i| merged(&devices[i], &folders[i])).collect();
    for (i, o) in outputs.iter().enumerate() {
        prop_assert_eq!(o, &outputs[0], "device {} disagrees", i);
    }
    let view = devices[0].open(&folders[0]).read().unwrap();
    prop_assert!(view.report().forks.is_empty());
    prop_assert!(view.report().quarantined.is_empty());
    prop_assert!(view.report().waiting.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn devices_converge_whatever_the_delivery((n, actions) in scenario()) {
        run(n, &actions, false)?;
    }

    /// The same with an encrypted store: sealed files cross in any order and every device
    /// that has the key merges the same document.
    #[test]
    fn encrypted_devices_converge_whatever_the_delivery((n, actions) in scenario()) {
        run(n, &actions, true)?;
    }
}
