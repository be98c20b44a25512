//! `crdtdir init`: make the folder a new store.

use std::path::{Path, PathBuf};

use crdtdir::{Options, Store};
use serde_json::json;

use crate::output::{parse_value, print_json, read_input, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  crdtdir --store ~/Sync/todo init\n  echo '{\"items\": []}' > initial.json && crdtdir init --from initial.json\n  crdtdir init --encrypt                   # then: crdtdir key export\n  crdtdir --store ~/Sync/todo-sealed init --encrypt --from-store ~/Sync/todo   # keep the history"
)]
pub(crate) struct Args {
    /// Write this JSON object as the document's first change.
    #[arg(long, value_name = "FILE.json", conflicts_with = "from_store")]
    from: Option<PathBuf>,
    /// Start with the whole history of the store in FOLDER (only read): with --encrypt, an
    /// encrypted copy of a plain store, keeping every change. Devices then move to the new
    /// folder; what is written in the old one afterwards is not copied.
    #[arg(long, value_name = "FOLDER")]
    from_store: Option<PathBuf>,
    /// Encrypt the store end to end: a random key kept in this device's local state seals
    /// every op file, heartbeat and snapshot (other devices: `crdtdir key import`).
    #[arg(long)]
    encrypt: bool,
    /// With --encrypt: keep the key in the OS keychain (the Secret Service on Linux, the
    /// login keychain on macOS, the Credential Manager on Windows) instead of a file in local
    /// state. `CRDTDIR_KEYCHAIN=1` does the same.
    #[arg(long, requires = "encrypt")]
    keychain: bool,
}

impl Args {
    /// The key goes to the OS keychain.
    pub(crate) fn keychain(&self) -> bool {
        self.keychain
    }
}

pub(crate) fn run(folder: &Path, opts: Options, args: &Args) -> Result<Store, Failure> {
    let initial = match &args.from {
        Some(f) => Some(parse_value(&read_input(&f.to_string_lossy())?)?),
        None => None,
    };
    let mut out = json!({});
    // A big first document takes seconds: a spinner says so on a terminal.
    let spinner = crate::output::Spinner::default();
    let armed = spinner.clone();
    let opts = opts.progress(move |p| {
        if matches!(p, crdtdir::Progress::Building) {
            armed.arm("building the store's first document");
        }
    });
    let made = match &args.from_store {
        Some(_) if crate::place::remote(folder).is_some() => return Err(Failure {
            exit: crate::output::EXIT_USAGE,
            code: "usage",
            message: "--from-store makes a store on the local disk only for now".into(),
            hint: Some(
                "make it in a local folder, then copy that folder to the bucket (`rclone copy`)"
                    .into(),
            ),
        }),
        Some(from) => {
            // The source is only read: not even a heartbeat goes there.
            let source = Store::open(from, opts.clone().read_only(true))?;
            out["from_store"] = json!({"store": from, "id": source.id()});
            Store::init_from_store(folder, opts.encrypt(args.encrypt), &source)
        }
        None => match crate::place::remote(folder) {
            Some(remote) => Store::init_in(remote?, opts.encrypt(args.encrypt), initial.as_ref()),
            None => Store::init(folder, opts.encrypt(args.encrypt), initial.as_ref()),
        },
    };
    spinner.finish();
    let store = made?;
    out["store"] = json!(store.path());
    out["id"] = json!(store.id());
    out["encrypted"] = json!(store.is_encrypted());
    print_json(&out)?;
    if let Some(from) = &args.from_store {
        eprintln!(
            "crdtdir: the new store holds the whole history of {}; move every device to the new folder, then delete the old one once none writes there",
            from.display()
        );
    }
    if args.encrypt {
        eprintln!("crdtdir: encrypted: other devices need the key before they can read it (`crdtdir key export` here, `crdtdir key import` there); keep a copy: without the key the folder cannot be read");
    }
    Ok(store)
}
