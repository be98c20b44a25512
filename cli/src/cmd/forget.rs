//! `crdtdir forget`: a device that is gone for good stops holding the others back; with
//! `--local`, this device forgets a store it left (its local state).

use crdtdir::{Options, Store};
use serde_json::json;

use crate::output::{json_wanted, print_json, write_out, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  crdtdir status                 # other devices, when each was last seen\n  crdtdir forget old-laptop      # by display name\n  crdtdir forget 3e61a0b2        # by the start of its actor, when two share a name\n  crdtdir forget --local         # the stores this device holds local state of\n  crdtdir forget --local 3c08    # forget one this device left (asks; --yes)"
)]
pub(crate) struct Args {
    /// The device: its display name, or the start of its actor (4 hex digits or more). With
    /// --local: the store, by its id or the start of it (none: list them).
    #[arg(required_unless_present = "local", value_name = "DEVICE")]
    target: Option<String>,
    /// Forget a store this device left: delete its local state (view, cache, outbox,
    /// retention copies, an encrypted store's key). Refused while the folder this device
    /// used still holds the store. Asks on a terminal; `--yes` for scripts.
    #[arg(long)]
    local: bool,
    /// With --local: forget without asking.
    #[arg(long, requires = "local")]
    yes: bool,
}

impl Args {
    /// True for `forget --local`: no store to open.
    pub(crate) fn is_local(&self) -> bool {
        self.local
    }
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    let device = args.target.as_deref().unwrap_or_default();
    let forgotten = store.forget(device)?;
    eprintln!(
        "crdtdir: forgot {} ({}): no device waits for it any more; a heartbeat from it brings it back",
        forgotten.name,
        &forgotten.actor[..8.min(forgotten.actor.len())]
    );
    print_json(&json!({"forgotten": forgotten}))
}

/// `forget --local [ID]`: lists the stores this device holds local state of, or forgets one.
pub(crate) fn local(options: &Options, args: &Args) -> Result<(), Failure> {
    let Some(id) = &args.target else {
        let stores = crdtdir::local_stores(options)?;
        if json_wanted() {
            let lines: Vec<String> = stores.iter().map(|s| json!(s).to_string()).collect();
            return write_out(&lines.iter().map(|l| format!("{l}\n")).collect::<String>());
        }
        let text: String = stores
            .iter()
            .map(|s| {
                let folder = s
                    .folder
                    .as_ref()
                    .map_or("(no folder recorded)".to_string(), |f| {
                        f.display().to_string()
                    });
                let state = if s.in_use { "in use" } else { "left" };
                format!("{}  {state:<6}  {folder}\n", s.id)
            })
            .collect();
        return write_out(&text);
    };
    let found = crdtdir::local_store(options, id)?;
    if !args.yes && !found.in_use {
        confirm(&found)?;
    }
    let forgotten = crdtdir::forget_local(options, id)?;
    eprintln!(
        "crdtdir: forgot store {}: this device's local state of it is deleted",
        forgotten.id
    );
    print_json(&json!({"forgotten_store": forgotten}))
}

/// Asks before deleting what `store`'s local state holds, saying what may exist nowhere
/// else; refused without a terminal.
fn confirm(store: &crdtdir::LocalStore) -> Result<(), Failure> {
    let mut holds = Vec::new();
    if store.unpublished > 0 {
        holds.push(format!(
            "{} change(s) of this device other devices may not have",
            store.unpublished
        ));
    }
    if store.retained > 0 {
        holds.push(format!("{} retention copie(s) of history", store.retained));
    }
    if store.view {
        holds.push("this device's copy of the document".to_string());
    }
    match store.key {
        Some(crdtdir::KeyPlace::Keychain) => {
            holds.push("the store's key (its item in the OS keychain)".to_string())
        }
        Some(_) => holds.push("the store's key".to_string()),
        None => {}
    }
    let what = if holds.is_empty() {
        "nothing but caches".to_string()
    } else {
        holds.join(", ")
    };
    crate::output::confirm(
        &format!(
            "forgetting store {} deletes {what}: run it on a terminal, or pass --yes",
            store.id
        ),
        &format!("Forget store {}? This deletes {what}", store.id),
        "not forgotten: not confirmed",
        Some("pass --yes once you are sure"),
    )
}
