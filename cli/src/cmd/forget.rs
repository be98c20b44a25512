//! `crdtdir forget`: a device that is gone for good stops holding the others back.

use crdtdir::Store;
use serde_json::json;

use crate::output::{print_json, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  crdtdir status                 # other devices, when each was last seen\n  crdtdir forget old-laptop      # by display name\n  crdtdir forget 3e61a0b2        # by the start of its actor, when two share a name"
)]
pub(crate) struct Args {
    /// The device: its display name, or the start of its actor (4 hex digits or more).
    device: String,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    let forgotten = store.forget(&args.device)?;
    eprintln!(
        "crdtdir: forgot {} ({}): no device waits for it any more; a heartbeat from it brings it back",
        forgotten.name,
        &forgotten.actor[..8.min(forgotten.actor.len())]
    );
    print_json(&json!({"forgotten": forgotten}))
}
