//! `crdtdir repair`: write back what the folder lost and this device still has.

use crdtdir::Store;
use serde_json::json;

use crate::output::{print_json, Failure};

pub(crate) fn run(store: &Store) -> Result<(), Failure> {
    let repaired = store.repair()?;
    if repaired.is_empty() {
        eprintln!("crdtdir: nothing to repair: the folder provides every change this device has");
    }
    print_json(&json!(repaired))
}
