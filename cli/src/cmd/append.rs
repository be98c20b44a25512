//! `crdtdir append`: one change, as one op file.

use crdtdir::{PatchOp, Store};
use serde_json::json;

use crate::output::{parse_value, print_json, read_input, Failure};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Apply a JSON Patch (RFC 6902 plus splice and increment) from FILE, or - for stdin.
    #[arg(long, value_name = "FILE|-")]
    patch: Option<String>,
    #[command(subcommand)]
    op: Option<Op>,
}

#[derive(clap::Subcommand)]
enum Op {
    /// Map key: add or replace. List index: replace that element.
    Set {
        path: String,
        json: String,
        /// Store strings as atomic last-writer-wins values, not collaborative text.
        #[arg(long)]
        scalar: bool,
    },
    /// Insert into a list at an index, or at the end with `-`.
    Insert {
        path: String,
        json: String,
        /// Store strings as atomic last-writer-wins values, not collaborative text.
        #[arg(long)]
        scalar: bool,
    },
    /// Delete a map key or list element.
    Delete { path: String },
    /// Edit a text: delete DEL characters at POS, then insert TEXT.
    Splice {
        path: String,
        pos: usize,
        del: usize,
        #[arg(default_value = "")]
        text: String,
    },
    /// Add N (default 1) to a counter (a missing key becomes a counter).
    Increment {
        path: String,
        #[arg(allow_hyphen_values = true, default_value_t = 1)]
        n: i64,
    },
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    let ops = match (&args.patch, &args.op) {
        (Some(source), None) => crdtdir::parse_patch(&read_input(source)?)?,
        (None, Some(op)) => vec![patch_op(op)?],
        _ => {
            return Err(Failure {
                code: 2,
                message: "append needs an operation or --patch FILE".into(),
            })
        }
    };
    let outcome = store.apply_patch(&ops)?;
    for notice in &outcome.notices {
        eprintln!("crdtdir: {notice}");
    }
    if outcome.written.is_empty() {
        eprintln!("crdtdir: no change");
    }
    print_json(
        &json!({"change": outcome.change(), "written": outcome.written}),
        false,
    )
}

fn patch_op(op: &Op) -> Result<PatchOp, Failure> {
    Ok(match op {
        Op::Set { path, json, scalar } => PatchOp::Set {
            path: path.clone(),
            value: parse_value(json)?,
            scalar: *scalar,
        },
        Op::Insert { path, json, scalar } => PatchOp::Insert {
            path: path.clone(),
            value: parse_value(json)?,
            scalar: *scalar,
        },
        Op::Delete { path } => PatchOp::Remove { path: path.clone() },
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
