//! `crdtdir merge`: the merged document as JSON.

use std::path::PathBuf;

use crdtdir::Store;

use crate::output::{fail, replace_file, warn_report, write_out, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  crdtdir merge\n  crdtdir --pretty merge\n  crdtdir merge --out todo.json        # replaced atomically"
)]
pub(crate) struct Args {
    /// Write it to FILE instead of stdout (replaced atomically: a reader of FILE sees the
    /// old document or the new one, never a mix).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    if !crate::output::pretty() && args.out.is_none() {
        if let Some(answer) = crate::forward::ask(store, serde_json::json!({"op": "merge"}), false)
        {
            let (doc, _) = answer?;
            return crate::output::print_json(&doc);
        }
    }
    let mut text = if crate::output::pretty() {
        // From the document itself, not by parsing the JSON text: no nesting limit.
        let view = store.read()?;
        warn_report(view.report());
        crate::output::json_text(&view.to_json())?
    } else {
        let (json, report) = store.read_json()?;
        warn_report(&report);
        json
    };
    text.push('\n');
    match &args.out {
        Some(path) => replace_file(path, text.as_bytes())
            .map_err(|e| fail(format!("{}: {e}", path.display()))),
        None => write_out(&text),
    }
}
