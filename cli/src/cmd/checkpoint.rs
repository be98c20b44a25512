//! `crdtdir checkpoint`: publish this device's merged document for new devices to start from.

use crdtdir::Store;

use crate::output::{json_wanted, print_json, to_json, write_out, Failure};

pub(crate) fn run(store: &Store) -> Result<(), Failure> {
    let outcome = store.checkpoint()?;
    if json_wanted() {
        return print_json(&to_json(&outcome)?);
    }
    let mut text = match (&outcome.checkpoint, &outcome.skipped) {
        (Some(path), _) => format!(
            "published {path}: {} change(s), covering {} op file(s), {} bytes\n",
            outcome.changes, outcome.covered, outcome.bytes
        ),
        (None, Some(why)) => format!("no checkpoint published: {why}\n"),
        (None, None) => "no checkpoint published\n".to_string(),
    };
    for old in &outcome.replaced {
        text.push_str(&format!("deleted {old} (this device's older checkpoint)\n"));
    }
    write_out(&text)
}
