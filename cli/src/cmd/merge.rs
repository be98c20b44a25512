//! `crdtdir merge`: the merged document as JSON.

use std::io::Write;
use std::path::{Path, PathBuf};

use crdtdir::Store;

use crate::output::{fail, warn_report, write_out, Failure};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Write it to FILE instead of stdout (replaced atomically: a reader of FILE sees the
    /// old document or the new one, never a mix).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
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

/// Replaces `path` atomically: a temp file beside it, fsynced, renamed over it.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
