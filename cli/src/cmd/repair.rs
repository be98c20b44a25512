//! `crdtdir repair`: write back what the folder lost and this device still has — for every
//! document of the store this device holds (with `--doc`, for that one).

use crdtdir::{Repo, Store};
use serde_json::json;

use crate::output::{print_json, Failure};

pub(crate) fn run(store: &Store) -> Result<(), Failure> {
    if !store.is_root_doc() {
        let repaired = store.repair()?;
        if repaired.is_empty() {
            eprintln!(
                "crdtdir: nothing to repair: the folder provides every change this device has"
            );
        }
        return print_json(&json!(repaired));
    }
    let (root, docs) = Repo::from(store.clone()).repair()?;
    if root.is_empty() && docs.is_empty() {
        eprintln!("crdtdir: nothing to repair: the folder provides every change this device has");
    }
    let mut out = json!(root);
    if !docs.is_empty() {
        out["documents"] = docs
            .into_iter()
            .map(|(id, r)| (id.to_string(), json!(r)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    print_json(&out)
}
