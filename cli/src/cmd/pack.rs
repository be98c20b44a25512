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
    text.push_str(&format!(
        "deleted {} loose op file(s) that packs hold\n",
        outcome.deleted
    ));
    if outcome.folded_packs > 0 {
        text.push_str(&format!(
            "folded {} pack(s) into bigger ones\n",
            outcome.folded_packs
        ));
    }
    if outcome.deleted_packs > 0 {
        text.push_str(&format!(
            "deleted {} pack(s) that bigger packs hold\n",
            outcome.deleted_packs
        ));
    }
    if outcome.kept_loose > 0 {
        text.push_str(&format!(
            "kept {} loose op file(s) that packs hold, until every other device has them (or for {} h)\n",
            outcome.kept_loose,
            crdtdir::PACK_GRACE_SECS / 3600
        ));
    }
    if !outcome.republished.is_empty() {
        text.push_str(&format!(
            "published again {} pack(s) the folder had lost\n",
            outcome.republished.len()
        ));
    }
    write_out(&text)
}
