//! `crdtdir key …`: hand an encrypted store's key to another device — as text, 24 words, a
//! QR code, or a passphrase wrap kept in the folder.

use std::io::Read;

use crdtdir::{Store, StoreKey};

use crate::output::{bad_input, fail, print_json, write_out, Failure};

#[derive(clap::Subcommand)]
pub(crate) enum Args {
    /// Print this store's key, to import on another device (keep it secret: whoever has it
    /// and the folder reads the document).
    #[command(after_help = "\
Examples:
  crdtdir key export > key.txt      # then on the other device: crdtdir key import < key.txt
  crdtdir key export --words        # 24 recovery words, to write down
  crdtdir key export --qr           # a QR code of the key text, for a phone's camera")]
    Export {
        /// As 24 recovery words (BIP39 English) instead of the key text.
        #[arg(long, conflicts_with = "qr")]
        words: bool,
        /// As a QR code of the key text, drawn with Unicode blocks.
        #[arg(long)]
        qr: bool,
    },
    /// Give this device the store's key (from `crdtdir key export` on a device that has it).
    #[command(after_help = "\
Examples:
  crdtdir key import < key.txt
  crdtdir key import crdtdir-key-1-…
  crdtdir key import word1 word2 … word24
  crdtdir key import --passphrase   # with a passphrase a device added (key passphrase)")]
    Import {
        /// The key text or the 24 words; none: read them from stdin.
        #[arg(conflicts_with = "passphrase")]
        key: Vec<String>,
        /// Join with a passphrase a device added (`key passphrase`) instead of the key.
        #[arg(long)]
        passphrase: bool,
    },
    /// Wrap the key with a passphrase, in a file of its own in the folder (keys/): another
    /// device then joins with `key import --passphrase`. Asks on a terminal; otherwise reads
    /// the first line of stdin.
    #[command(after_help = "\
Examples:
  crdtdir key passphrase            # asks twice
  printf '%s\\n' \"$PASS\" | crdtdir key passphrase

The file is only as strong as the passphrase: whoever holds the folder can try passphrases
against it (Argon2id with 64 MiB and 3 passes makes each try slow).")]
    Passphrase,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    match args {
        Args::Export { words, qr } => {
            let Some(key) = store.key() else {
                if store.is_encrypted() {
                    return Err(crdtdir::Error::Locked.into());
                }
                return Err(bad_input("this store is not encrypted: it has no key"));
            };
            if *qr {
                return write_out(&format!("{}\n", qr_code(&key.to_text())?));
            }
            let text = if *words {
                key.to_words()
            } else {
                key.to_text()
            };
            if crate::output::json_wanted() {
                return print_json(&serde_json::json!({ "key": text }));
            }
            write_out(&format!("{text}\n"))
        }
        Args::Passphrase => {
            let passphrase = read_passphrase(true)?;
            let file = store.add_passphrase(&passphrase)?;
            print_json(&serde_json::json!({"store": store.id(), "file": file}))
        }
        Args::Import {
            passphrase: true, ..
        } => {
            let passphrase = read_passphrase(false)?;
            store.import_passphrase(&passphrase)?;
            print_json(&serde_json::json!({"store": store.id(), "key": "imported"}))
        }
        Args::Import { key, .. } => {
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

/// `text` as a QR code in Unicode half blocks (two modules per character), with its quiet
/// zone.
fn qr_code(text: &str) -> Result<String, Failure> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| fail(format!("QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build())
}

/// A passphrase: asked on a terminal (twice when it is new), else the first line of stdin.
fn read_passphrase(new: bool) -> Result<String, Failure> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let mut ask = dialoguer::Password::new().with_prompt("Passphrase");
        if new {
            ask = ask.with_confirmation("Again", "The two passphrases differ");
        }
        return ask
            .interact()
            .map_err(|e| bad_input(format!("passphrase: {e}")));
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| bad_input(format!("stdin: {e}")))?;
    let line = line.trim_end_matches(['\n', '\r']).to_string();
    if line.is_empty() {
        return Err(bad_input("no passphrase on stdin"));
    }
    Ok(line)
}
