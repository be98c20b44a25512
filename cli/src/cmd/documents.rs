//! `crdtdir docs`: the documents of a store folder: list them, make one, delete one.

use std::path::PathBuf;

use crdtdir::{DocId, Repo, Store};
use serde_json::json;

use crate::output::{json_wanted, parse_value, print_json, read_input, to_json, Failure};

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  crdtdir docs                                  # id, title, files and last change of each
  crdtdir docs new --from note.json             # prints the new document's id
  crdtdir --doc 5f0c… append set /title '\"Groceries\"'
  crdtdir docs delete 5f0c…
  crdtdir --json docs --all | jq '.[] | select(.deleted)'")]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// List deleted documents too.
    #[arg(long)]
    all: bool,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Make a new document (empty, or this JSON object) and print its id.
    #[command(
        after_help = "Examples:\n  crdtdir docs new\n  crdtdir docs new --from note.json\n  echo '{\"title\": \"Ideas\"}' | crdtdir docs new --from -"
    )]
    New {
        /// Its first content: a JSON object (`-`: standard input).
        #[arg(long, value_name = "FILE.json")]
        from: Option<PathBuf>,
    },
    /// Delete a document: a change that marks it deleted (its history stays until
    /// compaction; a write that did not see the deletion keeps it).
    #[command(after_help = "Examples:\n  crdtdir docs delete 5f0c6e2a9b1d4c3e8f7a6b5c4d3e2f10")]
    Delete {
        /// The document's id (or its crdtdir: URL).
        id: String,
    },
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    let repo = Repo::from(store.clone());
    match &args.action {
        None => list(&repo, args.all),
        Some(Action::New { from }) => {
            let initial = match from {
                Some(f) => Some(parse_value(&read_input(&f.to_string_lossy())?)?),
                None => None,
            };
            let id = repo.create(initial.as_ref())?;
            print_json(&json!({"id": id, "url": id.url()}))
        }
        Some(Action::Delete { id }) => {
            let id: DocId = id.parse()?;
            repo.delete(&id)?;
            print_json(&json!({"deleted": id}))
        }
    }
}

fn list(repo: &Repo, all: bool) -> Result<(), Failure> {
    let docs: Vec<_> = repo
        .docs()?
        .into_iter()
        .filter(|d| all || !d.deleted)
        .collect();
    if json_wanted() {
        return print_json(&to_json(&docs)?);
    }
    use std::fmt::Write;
    let mut out = String::new();
    for d in &docs {
        let what = if d.root {
            "root"
        } else if d.deleted {
            "deleted"
        } else {
            "-"
        };
        let when = d
            .last_change
            .map_or("-".to_string(), crate::output::rfc3339);
        let line = format!(
            "{}  {what:<7}  {:>5} file(s)  {when}  {}",
            d.id,
            d.files,
            d.title.as_deref().unwrap_or("")
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    crate::output::write_out(&out)
}
