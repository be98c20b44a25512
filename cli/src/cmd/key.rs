//! `crdtdir key …`: hand an encrypted store's key to another device — as text, 24 words, a
//! QR code, or a passphrase wrap kept in the folder.

use std::io::Read;

use crdtdir::{Store, StoreKey};

use crate::output::{bad_input, confirm, fail, print_json, write_out, Failure};

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
        /// Keep the key in the OS keychain instead of a file in local state (the keys this
        /// device had move there too). `CRDTDIR_KEYCHAIN=1` does the same.
        #[arg(long)]
        keychain: bool,
        #[command(flatten)]
        source: PassphraseSource,
    },
    /// Move this device's key to the OS keychain, or back to a file in local state: the new
    /// place holds it (read back and compared) before the old place lets it go.
    #[command(after_help = "\
Examples:
  crdtdir key move keychain         # the Secret Service on Linux (GNOME Keyring, KeePassXC…),
                                    # the login keychain on macOS, the Credential Manager on Windows
  crdtdir key move file             # back to owner-only files in local state
  crdtdir status                    # says where this device keeps the key")]
    Move {
        /// Where the key goes.
        #[arg(value_enum)]
        to: Place,
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
    Passphrase {
        #[command(flatten)]
        source: PassphraseSource,
    },
    /// List the passphrase files in the folder (keys/), one per line: its id and its path.
    #[command(after_help = "\
Examples:
  crdtdir key list
  crdtdir --json key list           # one JSON object per line: {\"id\", \"file\"}")]
    List,
    /// Remove a passphrase file (by its id, from `key list`): that passphrase no longer lets
    /// a device join. Devices that have the key keep it. Asks on a terminal; `--yes` for
    /// scripts.
    #[command(after_help = "\
Examples:
  crdtdir key list
  crdtdir key remove 3f2a9c…          # asks first
  crdtdir key remove 3f2a9c… --yes")]
    Remove {
        /// The id of the passphrase file (its name without .key).
        id: String,
        /// Remove without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Rotate the key (a lost or sold device): what this device writes from now on is
    /// sealed with a new key. Devices with only the old key go on reading what it sealed,
    /// and nothing after; give the new key to each device to keep (`key export` here,
    /// `key import` there). `compact` seals the history again with the new key. Asks on a
    /// terminal; `--yes` for scripts.
    #[command(after_help = "\
Examples:
  crdtdir key rotate                  # asks first
  crdtdir key rotate --yes && crdtdir key export > new-key.txt")]
    Rotate {
        /// Rotate without asking.
        #[arg(long)]
        yes: bool,
    },
}

/// Where `key move` puts the key.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum Place {
    /// The OS keychain.
    Keychain,
    /// An owner-only file in this device's local state.
    File,
}

impl Args {
    /// The command keeps the key it is given in the OS keychain (`key import --keychain`).
    pub(crate) fn keychain(&self) -> bool {
        matches!(self, Args::Import { keychain: true, .. })
    }
}

/// Where a passphrase comes from besides a terminal or stdin (as restic's
/// `--password-file` and `--password-command`).
#[derive(clap::Args)]
pub(crate) struct PassphraseSource {
    /// Read the passphrase from the first line of FILE.
    #[arg(
        long,
        value_name = "FILE",
        env = "CRDTDIR_PASSPHRASE_FILE",
        conflicts_with = "passphrase_command"
    )]
    passphrase_file: Option<std::path::PathBuf>,
    /// Run COMMAND (with `sh -c`) and take the first line it prints as the passphrase (a
    /// password manager's CLI, for one).
    #[arg(long, value_name = "COMMAND", env = "CRDTDIR_PASSPHRASE_COMMAND")]
    passphrase_command: Option<String>,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    match args {
        Args::Export { words, qr } => {
            if !store.is_encrypted() {
                return Err(bad_input("this store is not encrypted: it has no key"));
            }
            let key = store.current_key()?;
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
        Args::Passphrase { source } => {
            let passphrase = read_passphrase(source, true)?;
            let file = store.add_passphrase(&passphrase)?;
            print_json(&serde_json::json!({"store": store.id(), "file": file}))
        }
        Args::Import {
            passphrase: true,
            source,
            ..
        } => {
            let passphrase = read_passphrase(source, false)?;
            store.import_passphrase(&passphrase)?;
            print_json(&serde_json::json!({"store": store.id(), "key": "imported"}))
        }
        Args::Move { to } => {
            let place = match to {
                Place::Keychain => crdtdir::KeyPlace::Keychain,
                Place::File => crdtdir::KeyPlace::File,
            };
            store.move_key(place)?;
            print_json(&serde_json::json!({"store": store.id(), "key": place}))
        }
        Args::List => {
            let lines: Vec<String> = store
                .passphrases()
                .iter()
                .map(|p| {
                    if crate::output::json_wanted() {
                        serde_json::json!({"id": p.id, "file": p.file}).to_string()
                    } else {
                        format!("{}  {}", p.id, p.file)
                    }
                })
                .collect();
            if lines.is_empty() {
                return Ok(());
            }
            write_out(&format!("{}\n", lines.join("\n")))
        }
        Args::Remove { id, yes } => {
            if !*yes {
                confirm(
                    "removing a passphrase file needs confirmation: run it on a terminal, or pass --yes",
                    &format!(
                        "Remove passphrase file {id}? Devices then cannot join with that passphrase"
                    ),
                    "not removed: not confirmed",
                    None,
                )?;
            }
            store.remove_passphrase(id)?;
            print_json(&serde_json::json!({"store": store.id(), "removed": id}))
        }
        Args::Rotate { yes } => {
            if !*yes {
                confirm(
                    "rotating the key needs confirmation: run it on a terminal, or pass --yes",
                    "Rotate the key? Devices keep reading only with the new key, which each must import",
                    "not rotated: not confirmed",
                    None,
                )?;
            }
            let passphrases = store.passphrases().len();
            store.rotate_key()?;
            eprintln!("crdtdir: key rotated: what this device writes from now on is sealed with the new key; give it to each device to keep (`crdtdir key export` here, `crdtdir key import` there). Devices with only the old key still read what it sealed, and nothing after; `crdtdir compact` seals the history again with the new key");
            if passphrases > 0 {
                eprintln!("crdtdir: the {passphrases} passphrase file(s) in keys/ open the old key only: remove them (`crdtdir key list`, `crdtdir key remove ID`) and add one for the new key (`crdtdir key passphrase`)");
            }
            print_json(&serde_json::json!({"store": store.id(), "key": "rotated"}))
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

/// A passphrase: from `--passphrase-file` or `--passphrase-command` when given; else asked
/// on a terminal (twice when it is new), else the first line of stdin.
fn read_passphrase(source: &PassphraseSource, new: bool) -> Result<String, Failure> {
    use std::io::IsTerminal;
    let first_line = |text: &str, from: &str| {
        let line = text.lines().next().unwrap_or("").to_string();
        if line.is_empty() {
            return Err(bad_input(format!("no passphrase in {from}")));
        }
        Ok(line)
    };
    if let Some(file) = &source.passphrase_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| bad_input(format!("{}: {e}", file.display())))?;
        return first_line(&text, &file.display().to_string());
    }
    if let Some(command) = &source.passphrase_command {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| bad_input(format!("--passphrase-command: {e}")))?;
        if !out.status.success() {
            return Err(bad_input(format!(
                "--passphrase-command failed ({})",
                out.status
            )));
        }
        return first_line(
            &String::from_utf8_lossy(&out.stdout),
            "the command's output",
        );
    }
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
