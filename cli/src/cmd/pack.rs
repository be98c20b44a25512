//! `crdtdir pack`: fold this device's own op files into packs.

use crdtdir::Store;

use crate::output::{json_wanted, print_json, to_json, write_out, Failure};

pub(crate) fn run(store: &Store) -> Result<(), Failure> {
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
