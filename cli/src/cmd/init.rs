//! `crdtdir init`: make the folder a new store.

use std::path::{Path, PathBuf};

use crdtdir::{Options, Store};
use serde_json::json;

use crate::output::{parse_value, print_json, read_input, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  crdtdir --store ~/Sync/todo init\n  echo '{\"items\": []}' > initial.json && crdtdir init --from initial.json\n  crdtdir init --encrypt                   # then: crdtdir key export"
)]
pub(crate) struct Args {
    /// Write this JSON object as the document's first change.
    #[arg(long, value_name = "FILE.json")]
    from: Option<PathBuf>,
    /// Encrypt the store end to end: a random key kept in this device's local state seals
    /// every op file, heartbeat and snapshot (other devices: `crdtdir key import`).
    #[arg(long)]
    encrypt: bool,
}

pub(crate) fn run(folder: &Path, opts: Options, args: &Args) -> Result<Store, Failure> {
    let initial = match &args.from {
        Some(f) => Some(parse_value(&read_input(&f.to_string_lossy())?)?),
        None => None,
    };
    let store = Store::init(folder, opts.encrypt(args.encrypt), initial.as_ref())?;
    print_json(
        &json!({"store": store.path(), "id": store.id(), "encrypted": store.is_encrypted()}),
    )?;
    if args.encrypt {
        eprintln!("crdtdir: encrypted: other devices need the key before they can read it (`crdtdir key export` here, `crdtdir key import` there); keep a copy: without the key the folder cannot be read");
    }
    Ok(store)
}
