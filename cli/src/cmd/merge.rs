//! `crdtdir merge`: the merged document as JSON.

use std::io::Write;
use std::path::PathBuf;

use crdtdir::Store;
use serde_json::Value as Json;

use crate::output::{fail, warn_report, Failure};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Write it to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Indent the JSON.
    #[arg(long)]
    pretty: bool,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    let (json, report) = store.read_json()?;
    warn_report(&report);
    let mut text = if args.pretty {
        let value: Json = serde_json::from_str(&json).map_err(|e| fail(e.to_string()))?;
        serde_json::to_string_pretty(&value).map_err(|e| fail(e.to_string()))?
    } else {
        json
    };
    text.push('\n');
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| fail(format!("{}: {e}", path.display())))
        }
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|e| fail(format!("stdout: {e}"))),
    }
}
