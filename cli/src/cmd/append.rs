//! `crdtdir append`: one change, as one op file.

use crdtdir::{PatchOp, Store};
use serde_json::json;

use crate::output::{parse_value, print_json, read_input, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  crdtdir append set /title '\"Groceries\"'\n  crdtdir append insert /items/- '\"milk\"'\n  crdtdir append set /n -1\n  crdtdir append splice /title 0 0 'Weekly '\n  crdtdir append increment /visits\n  crdtdir append delete /items/0\n  crdtdir append -m 'import' set /notes --value-file notes.json\n  echo '[{\"op\":\"add\",\"path\":\"/items/-\",\"value\":\"tea\"}]' | crdtdir append --patch -"
)]
pub(crate) struct Args {
    /// Apply a JSON Patch (RFC 6902 plus splice and increment) from FILE, or - for stdin.
    #[arg(long, value_name = "FILE|-")]
    patch: Option<String>,
    /// A commit message kept in the change (`crdtdir log` shows it).
    #[arg(long, short, value_name = "TEXT")]
    message: Option<String>,
    #[command(subcommand)]
    op: Option<Op>,
}

#[derive(clap::Subcommand)]
enum Op {
    /// Map key: add or replace. List index: replace that element. Onto an existing value,
    /// only what differs is written (lists by their longest common subsequence, records by
    /// their `id`; a counter moves by the difference).
    Set {
        /// JSON Pointer of the map key or list element, e.g. /title or /items/0.
        path: String,
        #[command(flatten)]
        value: Value,
        #[command(flatten)]
        strings: StringKind,
        /// Match list elements that are objects by this field (default: id; "" for none).
        #[arg(long, value_name = "FIELD")]
        key: Option<String>,
    },
    /// Insert into a list at an index, or at the end with `-`.
    Insert {
        /// JSON Pointer of the list position, e.g. /items/0, or /items/- for the end.
        path: String,
        #[command(flatten)]
        value: Value,
        #[command(flatten)]
        strings: StringKind,
    },
    /// Delete a map key or list element.
    Delete {
        /// JSON Pointer of the map key or list element.
        path: String,
    },
    /// Edit a text: delete DEL characters at POS, then insert TEXT.
    Splice {
        /// JSON Pointer of the text.
        path: String,
        /// Where, in Unicode code points from the start.
        pos: usize,
        /// How many code points to delete there.
        del: usize,
        /// What to insert (may start with `-`).
        #[arg(default_value = "", allow_hyphen_values = true)]
        text: String,
    },
    /// Add N (default 1) to a counter (a missing key becomes a counter).
    Increment {
        /// JSON Pointer of the counter.
        path: String,
        /// The amount, may be negative.
        #[arg(allow_hyphen_values = true, default_value_t = 1)]
        n: i64,
    },
}

/// What the strings a write changes become.
#[derive(clap::Args)]
#[group(multiple = false)]
struct StringKind {
    /// Store strings as atomic last-writer-wins values, not collaborative text.
    #[arg(long)]
    scalar: bool,
    /// Store strings as collaborative text, even over a scalar string (by default a new
    /// string is text and an existing string keeps its kind).
    #[arg(long)]
    text: bool,
}

impl StringKind {
    fn apply(&self, op: PatchOp) -> PatchOp {
        match (self.scalar, self.text) {
            (true, _) => op.scalar(),
            (_, true) => op.text(),
            _ => op,
        }
    }
}

/// A JSON value: on the command line, or from a file or stdin.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct Value {
    /// The value as JSON (a string needs its quotes: '"milk"'; may start with `-`: -1).
    #[arg(id = "value", value_name = "JSON", allow_hyphen_values = true)]
    json: Option<String>,
    /// Read the JSON value from FILE, or - for stdin.
    #[arg(long, value_name = "FILE|-")]
    value_file: Option<String>,
}

impl Value {
    fn parse(&self) -> Result<serde_json::Value, Failure> {
        match (&self.json, &self.value_file) {
            (Some(text), _) => parse_value(text),
            (None, Some(source)) => parse_value(read_input(source)?.trim()),
            (None, None) => Err(Failure {
                exit: crate::output::EXIT_USAGE,
                code: "usage",
                message: "a value is needed: JSON, or --value-file FILE".into(),
                hint: None,
            }),
        }
    }
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    let ops = match (&args.patch, &args.op) {
        (Some(source), None) => crdtdir::parse_patch(&read_input(source)?)?,
        (None, Some(op)) => vec![patch_op(op)?],
        _ => {
            return Err(Failure {
                exit: crate::output::EXIT_USAGE,
                code: "usage",
                message: "append needs an operation or --patch FILE".into(),
                hint: None,
            })
        }
    };
    if let Some(answer) = crate::forward::ask(
        store,
        json!({"op": "append", "patch": ops, "message": args.message}),
        true,
    ) {
        let (result, notes) = answer?;
        for note in notes {
            eprintln!("{note}");
        }
        return print_json(&result);
    }
    let (result, notes) = apply(store, &ops, args.message.as_deref())?;
    for note in notes {
        eprintln!("{note}");
    }
    print_json(&result)
}

/// Applies `ops` as one change: what `crdtdir append` prints, and its stderr lines
/// (notices with their hints, "no change").
pub(crate) fn apply(
    store: &Store,
    ops: &[PatchOp],
    message: Option<&str>,
) -> Result<(serde_json::Value, Vec<String>), Failure> {
    let outcome = store.apply_patch_with_message(ops, message)?;
    let mut notes = Vec::new();
    for notice in &outcome.notices {
        notes.push(format!("crdtdir: {notice}"));
        if let Some(hint) = crate::output::notice_hint(notice) {
            notes.push(format!("crdtdir: hint: {hint}"));
        }
    }
    if outcome.written.is_empty() {
        notes.push("crdtdir: no change".to_string());
    }
    Ok((
        json!({"change": outcome.change(), "written": outcome.written}),
        notes,
    ))
}

fn patch_op(op: &Op) -> Result<PatchOp, Failure> {
    Ok(match op {
        Op::Set {
            path,
            value,
            strings,
            key,
        } => {
            let op = strings.apply(PatchOp::set(path.clone(), value.parse()?));
            match key {
                Some(key) => op.key(key.clone()),
                None => op,
            }
        }
        Op::Insert {
            path,
            value,
            strings,
        } => strings.apply(PatchOp::insert(path.clone(), value.parse()?)),
        Op::Delete { path } => PatchOp::remove(path.clone()),
        Op::Splice {
            path,
            pos,
            del,
            text,
        } => PatchOp::Splice {
            path: path.clone(),
            pos: *pos,
            del: *del,
            text: text.clone(),
        },
        Op::Increment { path, n } => PatchOp::Increment {
            path: path.clone(),
            value: *n,
        },
    })
}
