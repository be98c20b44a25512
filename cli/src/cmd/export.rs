//! `crdtdir export`: the merged document as one Automerge file, for any Automerge
//! implementation to open.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use crdtdir::Store;

use crate::output::{bad_input, fail, print_json, replace_file, warn_report, Failure};

#[derive(clap::Args)]
#[command(after_help = "\
The file is Automerge's own binary format (a `save()` of the merged document, with its whole
history). Open it anywhere Automerge runs:
  JavaScript  Automerge.load(new Uint8Array(fs.readFileSync(\"todo.automerge\")))
  Rust        automerge::AutoCommit::load(&std::fs::read(\"todo.automerge\")?)?
  Python      automerge.Document.load(open(\"todo.automerge\", \"rb\").read())
It is a copy: edits to it do not come back to the store (append them with crdtdir).

Examples:
  crdtdir export todo.automerge
  crdtdir export - | gzip > todo.automerge.gz")]
pub(crate) struct Args {
    /// Where to write it (replaced atomically), or - for stdout (not a terminal).
    #[arg(value_name = "FILE.automerge|-", allow_hyphen_values = true)]
    file: String,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    let view = store.read()?;
    warn_report(view.report());
    let bytes = view.doc().save();
    if args.file == "-" {
        let mut out = std::io::stdout().lock();
        if out.is_terminal() {
            return Err(bad_input(
                "export - writes binary data: redirect stdout to a file or a pipe",
            ));
        }
        return match out.write_all(&bytes).and_then(|()| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(fail(format!("stdout: {e}")))
            }
            _ => Ok(()),
        };
    }
    let path = PathBuf::from(&args.file);
    replace_file(&path, &bytes).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let heads: Vec<String> = view.heads().iter().map(|h| h.to_string()).collect();
    print_json(&serde_json::json!({
        "file": path,
        "bytes": bytes.len(),
        "heads": heads,
        "changes": view.doc().get_changes(&[]).len(),
    }))
}
