//! `crdtdir watch`: one JSON line per merged batch, until SIGINT, SIGTERM or a closed stdout.
//!
//! Each line is a JSON object:
//! - `initial` (true on the first line only: the document as the watcher found it, as `doc`),
//! - `heads` (hex), `changes` (`hash`, `actor`, `seq`, `device`, `local`), `local` (every
//!   change is this device's own), `reset` (the document was rebuilt: the patches build it
//!   from `{}`),
//! - `patches` (JSON Pointer patches: `put`, `insert`, `delete`, `splice`, `increment`),
//!   or with `--whole` the whole document as `doc` instead,
//! - `report` (what `status` shows) when it changed, `notices` (about the watching).
//!
//! With `--all`, one watcher follows every document of the store and each line also has
//! `id` (the document's id), `root` and `deleted`; a document's first line is `initial`.
//!
//! A line reads back as a `crdtdir::Event` (with `--all`, a `crdtdir::DocEvent`);
//! `examples/watch_client.py` applies the patches in Python.

use std::io::Write;
use std::time::Duration;

use crdtdir::{Repo, Store, WatchOptions};
use serde_json::Value as Json;

use crate::output::{fail, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  crdtdir watch\n  crdtdir watch --whole | jq -c .doc\n  crdtdir --doc 5f0c… watch              # one document of the store\n  crdtdir watch --all                     # every document, one watcher\n  crdtdir watch --poll 2000               # network folders and FUSE mounts"
)]
pub(crate) struct Args {
    /// Print the whole document in each line (`doc`) instead of patches.
    #[arg(long)]
    whole: bool,
    /// Follow every document of the store with one watcher; each line names its document
    /// (`id`).
    #[arg(long)]
    all: bool,
    /// Quiet time after file events before a merge, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    debounce: u64,
    /// List the folder every MS milliseconds instead of using file events (network folders,
    /// FUSE mounts such as rclone mount).
    #[arg(long, value_name = "MS")]
    poll: Option<u64>,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    let mut options = WatchOptions::new()
        .debounce(Duration::from_millis(args.debounce))
        .document(args.whole);
    if let Some(ms) = args.poll {
        options = options
            .events(false)
            .poll(Duration::from_millis(ms.max(10)));
    }
    if args.all && !store.is_root_doc() {
        return Err(fail(
            "`watch --all` follows every document of the store: leave out --doc",
        ));
    }
    if args.all {
        let watcher = Repo::from(store.clone()).watch(options)?;
        print_lines(watcher, args.whole)
    } else {
        print_lines(store.watch(options)?, args.whole)
    }
}

/// Prints each event of `watcher` as a line, until it stops or stdout closes.
fn print_lines<E: serde::Serialize>(
    watcher: crdtdir::Watcher<E>,
    whole: bool,
) -> Result<(), Failure> {
    // SIGINT, SIGTERM (and SIGHUP) stop the watcher between merges: no write is cut.
    let stopper = watcher.stopper();
    ctrlc::set_handler(move || stopper.stop())
        .map_err(|e| fail(format!("cannot handle signals: {e}")))?;
    let mut out = std::io::stdout().lock();
    for event in watcher {
        let text = crate::output::json_text(&line(&event, whole)?)?;
        let written = out
            .write_all(text.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        match written {
            Ok(()) => {}
            // A closed pipe (`crdtdir watch | head -1`) ends the watch quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(fail(format!("stdout: {e}"))),
        }
    }
    Ok(())
}

/// An event as a line of `crdtdir watch` prints it: the document as `doc`, and with
/// `--whole` no patches.
pub(crate) fn line(event: &impl serde::Serialize, whole: bool) -> Result<Json, Failure> {
    let mut line = serde_json::to_value(event).map_err(|e| fail(e.to_string()))?;
    if let Json::Object(map) = &mut line {
        if whole {
            map.remove("patches");
        }
        if let Some(doc) = map.remove("document") {
            map.insert("doc".into(), doc);
        }
    }
    Ok(line)
}
