//! `crdtdir pack`: fold this device's own op files into packs.

use crdtdir::Store;

use crate::output::{json_wanted, print_json, to_json, write_out, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  crdtdir pack                         # pack now, delete loose files other devices have\n  crdtdir pack --dry-run               # what it would do, changing nothing\n  CRDTDIR_PACK_SIZE=1024 crdtdir pack  # bigger packs\n  crdtdir --json pack                  # what it did, as JSON"
)]
pub(crate) struct Args {
    /// Print what packing would do now (packs, files, bytes, deletions and what holds them
    /// back) and change nothing, not even a heartbeat.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    if args.dry_run {
        return plan(store);
    }
    let outcome = store.pack()?;
    if json_wanted() {
        return print_json(&to_json(&outcome)?);
    }
    let mut text = format!(
        "packed {} op file(s); wrote {} pack(s)\n",
        outcome.packed,
        outcome.packs.len()
    );
    let lines = [
        (outcome.deleted, "deleted {} loose op file(s) that packs hold".to_string()),
        (outcome.folded_packs, "folded {} pack(s) into bigger ones".to_string()),
        (outcome.deleted_packs, "deleted {} pack(s) that bigger packs hold".to_string()),
        (
            outcome.kept_loose,
            format!(
                "kept {{}} loose op file(s) that packs hold, until every other device has them (or for {} h)",
                crdtdir::PACK_GRACE_SECS / 3600
            ),
        ),
        (
            outcome.republished.len(),
            "published again {} pack(s) the folder had lost".to_string(),
        ),
    ];
    for (n, line) in lines {
        // The deletions are always said; the rest when they happened.
        if n > 0 || line.starts_with("deleted {} loose") {
            text.push_str(&line.replacen("{}", &n.to_string(), 1));
            text.push('\n');
        }
    }
    write_out(&text)
}

/// `pack --dry-run`.
fn plan(store: &Store) -> Result<(), Failure> {
    let plan = store.pack_plan()?;
    if json_wanted() {
        return print_json(&to_json(&plan)?);
    }
    let mut text = format!(
        "would pack {} op file(s) ({} bytes) into {} pack(s); {} stay loose (runs of one, or not merged)\n",
        plan.packed, plan.packed_bytes, plan.new_packs, plan.left_loose
    );
    if plan.folds > 0 {
        text.push_str(&format!(
            "would fold {} pack(s) into {} bigger one(s)\n",
            plan.folds, plan.bigger_packs
        ));
    }
    text.push_str(&format!(
        "would delete {} loose op file(s) that packs hold; {} stay until every other device has them (or for {} h)\n",
        plan.deletable_loose,
        plan.kept_loose,
        crdtdir::PACK_GRACE_SECS / 3600
    ));
    if !plan.waiting_for.is_empty() {
        text.push_str(&format!(
            "devices that have not merged all of this device's changes yet: {}\n",
            plan.waiting_for.join(", ")
        ));
    }
    for rel in &plan.republish {
        text.push_str(&format!("would publish again {rel} (the folder lost it)\n"));
    }
    text.push_str("nothing was changed (--dry-run)\n");
    write_out(&text)
}
