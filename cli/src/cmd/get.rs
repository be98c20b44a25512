//! `crdtdir get`: the JSON value at a JSON Pointer, resolved by the library as patches
//! resolve it (same errors).

use crdtdir::Store;

use crate::output::{print_json, warn_report, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  crdtdir get /items/0\n  crdtdir get /title | jq -r .\n  crdtdir get                          # the whole document"
)]
pub(crate) struct Args {
    /// A JSON Pointer (RFC 6901), e.g. /items/0; empty (the default): the whole document.
    #[arg(default_value = "", allow_hyphen_values = true)]
    path: String,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    if !crate::output::pretty() {
        if let Some(answer) = crate::forward::ask(
            store,
            serde_json::json!({"op": "get", "path": args.path}),
            false,
        ) {
            let (value, _) = answer?;
            return print_json(&value);
        }
    }
    if args.path.is_empty() && !crate::output::pretty() {
        // The whole document: straight from the cached JSON when nothing is new.
        let (json, report) = store.read_json()?;
        warn_report(&report);
        return crate::output::write_out(&format!("{json}\n"));
    }
    // A value that is there: from the saved JSON when nothing is new (no document loaded).
    let (json, report) = store.read_json()?;
    if let Some(value) = serde_json::from_str::<serde_json::Value>(&json)
        .ok()
        .and_then(|doc| doc.pointer(&args.path).cloned())
    {
        warn_report(&report);
        return print_json(&value);
    }
    // Anything else (a path that is not there, a document too deep to parse as text) from
    // the document itself, with the library's own errors.
    let view = store.read()?;
    warn_report(view.report());
    print_json(&view.get(&args.path)?)
}
