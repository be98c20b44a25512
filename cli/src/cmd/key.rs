//! `crdtdir key export` and `crdtdir key import`: hand an encrypted store's key to another
//! device.

use std::io::Read;

use crdtdir::{Store, StoreKey};

use crate::output::{bad_input, print_json, write_out, Failure};

#[derive(clap::Subcommand)]
pub(crate) enum Args {
    /// Print this store's key, to import on another device (keep it secret: whoever has it
    /// and the folder reads the document).
    #[command(
        after_help = "Examples:\n  crdtdir key export > key.txt             # then on the other device: crdtdir key import < key.txt\n  crdtdir key export --words               # 24 recovery words, to write down"
    )]
    Export {
        /// As 24 recovery words (BIP39 English) instead of the key text.
        #[arg(long)]
        words: bool,
    },
    /// Give this device the store's key (from `crdtdir key export` on a device that has it).
    #[command(
        after_help = "Examples:\n  crdtdir key import < key.txt\n  crdtdir key import crdtdir-key-1-…\n  crdtdir key import word1 word2 … word24"
    )]
    Import {
        /// The key text or the 24 words; none: read them from stdin.
        key: Vec<String>,
    },
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    match args {
        Args::Export { words } => {
            let Some(key) = store.key() else {
                if store.is_encrypted() {
                    return Err(crdtdir::Error::Locked.into());
                }
                return Err(bad_input("this store is not encrypted: it has no key"));
            };
            let text = if *words {
                key.to_words()
            } else {
                key.to_text()
            };
            write_out(&format!("{text}\n"))
        }
        Args::Import { key } => {
            let text = if key.is_empty() {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| bad_input(format!("stdin: {e}")))?;
                s
            } else {
                key.join(" ")
            };
            let key = StoreKey::parse(&text).map_err(bad_input)?;
            store.import_key(&key)?;
            print_json(&serde_json::json!({"store": store.id(), "key": "imported"}))
        }
    }
}
