//! `crdtdir get`: the JSON value at a JSON Pointer.

use crdtdir::Store;
use serde_json::Value as Json;

use crate::output::{fail, print_json, warn_report, Failure};

#[derive(clap::Args)]
pub(crate) struct Args {
    #[arg(default_value = "")]
    path: String,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    let (json, report) = store.read_json()?;
    warn_report(&report);
    let doc: Json = serde_json::from_str(&json).map_err(|e| fail(e.to_string()))?;
    let path = &args.path;
    let value = if path.is_empty() {
        doc
    } else {
        doc.pointer(path)
            .cloned()
            .ok_or_else(|| fail(format!("{path:?}: nothing there")))?
    };
    print_json(&value, false)
}
