//! `crdtdir status`: devices (and which look online), problem files, forks, quarantined and
//! waiting changes.

use crdtdir::Store;

use crate::output::{ago, print_json, rfc3339, to_json, unprovided_line, write_out, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  crdtdir status\n  crdtdir status --threshold 60\n  crdtdir --json status | jq '.presence[] | select(.online) | .name'"
)]
pub(crate) struct Args {
    /// A device counts as possibly online if seen within SECS (default 300).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(i64).range(0..))]
    threshold: Option<i64>,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    let mut status = store.status()?;
    if let Some(secs) = args.threshold {
        status.presence = store.presence(secs)?;
    }
    if crate::output::json_wanted() {
        let mut json = to_json(&status)?;
        // Times as RFC 3339, beside the ages in seconds.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if let Some(list) = json.get_mut("presence").and_then(|p| p.as_array_mut()) {
            for (entry, p) in list.iter_mut().zip(&status.presence) {
                entry["seen_at"] = rfc3339(now - p.seen_secs_ago).into();
                entry["beat_time"] = rfc3339(now - p.beat_secs_ago).into();
            }
        }
        print_json(&json)
    } else {
        write_out(&status_text(&status))
    }
}

fn status_text(s: &crdtdir::Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "store {} (format {}), {} change(s)",
        s.store_id, s.format, s.changes
    );
    if s.documents > 1 {
        let _ = writeln!(
            out,
            "{} documents: the root one and {} more (`crdtdir docs` lists them)",
            s.documents,
            s.documents - 1
        );
    }
    let keychain = s.key == Some(crdtdir::KeyPlace::Keychain);
    if s.locked && keychain {
        let why = s.read_only.as_deref().unwrap_or("");
        let _ = writeln!(
            out,
            "encrypted, and this device keeps the key in the OS keychain, which did not give it ({why}): unlock the keychain, or run `crdtdir key import` (counts below are op files; names and contents are sealed)"
        );
    } else if s.locked {
        let _ = writeln!(
            out,
            "encrypted, and this device has no key: run `crdtdir key import` (counts below are op files; names and contents are sealed)"
        );
    } else if s.encrypted && keychain {
        let _ = writeln!(
            out,
            "encrypted end to end (this device has the key, in the OS keychain)"
        );
    } else if s.encrypted {
        let _ = writeln!(out, "encrypted end to end (this device has the key)");
    }
    if let Some(why) = s.read_only.as_ref().filter(|_| !s.locked) {
        let _ = writeln!(out, "read-only here: {why}");
    }
    let _ = writeln!(
        out,
        "files in the folder: {} (op files {}, packs {} holding {} changes, snapshots and records {}, heartbeats {})",
        s.files.total, s.files.ops, s.files.packs, s.files.packed, s.files.snapshots, s.files.beats
    );
    if s.files.other_docs_ops > 0 {
        let _ = writeln!(
            out,
            "op files of the other documents: {}",
            s.files.other_docs_ops
        );
    }
    if s.files.packing_would_save > 0 {
        let _ = writeln!(
            out,
            "packing would save {} file(s): `crdtdir pack` on each device packs its own",
            s.files.packing_would_save
        );
    }
    let _ = writeln!(out, "devices ({}):", s.devices.len());
    for d in &s.devices {
        let seqs: Vec<String> = d
            .max_seq
            .iter()
            .map(|(a, q)| format!("{}…@{q}", &a[..a.len().min(8)]))
            .collect();
        // A device's name is sealed in an encrypted store this device has no key for; changes
        // of some older builds carry none.
        let name = match (d.name.is_empty(), s.locked) {
            (false, _) => d.name.as_str(),
            (true, true) => "(name sealed)",
            (true, false) => "(unnamed)",
        };
        let _ = writeln!(
            out,
            "  {:<24} {} change(s), actors {}",
            name,
            d.ops,
            seqs.join(", ")
        );
    }
    if !s.presence.is_empty() {
        let _ = writeln!(out, "other devices' heartbeats:");
    }
    for p in &s.presence {
        let state = if p.online { "may be online" } else { "offline" };
        let _ = writeln!(out,
            "  {:<24} {state}: beat changed {} ago here, its clock said {} ago; has not merged {} of your changes",
            p.name,
            ago(p.seen_secs_ago),
            ago(p.beat_secs_ago),
            p.unmerged
        );
        // A device silent for a day holds this one's loose files and kept copies back.
        if !p.online && p.seen_secs_ago > crdtdir::PACK_GRACE_SECS as i64 && p.unmerged > 0 {
            let _ = writeln!(
                out,
                "  {:<24} if it is gone for good: `crdtdir forget {}` (until then this device keeps copies for it)",
                "",
                p.name
            );
        }
    }
    let r = &s.report;
    for gap in &r.incomplete {
        let _ = writeln!(out, "INCOMPLETE: {}: {}", gap.path, gap.reason);
    }
    if !r.unknown_features.is_empty() {
        let _ = writeln!(out, "unknown features: {}", r.unknown_features.join(", "));
    }
    if !r.problems.is_empty() {
        let _ = writeln!(out, "skipped files ({}):", r.problems.len());
        for p in &r.problems {
            let _ = writeln!(out, "  {}: {}", p.path, p.reason);
        }
    }
    for f in &r.forks {
        let _ = writeln!(
            out,
            "fork: actor {} seq {}: kept {}, rebased {}",
            f.actor,
            f.seq,
            f.kept,
            f.rebased.join(", ")
        );
    }
    if !r.rebased.is_empty() {
        let _ = writeln!(
            out,
            "rebased changes ({}): edits that lost a fork, kept under new actors",
            r.rebased.len()
        );
        for x in &r.rebased {
            let _ = writeln!(out, "  {}: {} -> {}", x.path, x.from, x.to);
        }
    }
    if !r.quarantined.is_empty() {
        let _ = writeln!(out, "quarantined changes ({}):", r.quarantined.len());
        for p in &r.quarantined {
            let _ = writeln!(out, "  {}: {}", p.path, p.reason);
        }
    }
    if !r.waiting.is_empty() {
        let _ = writeln!(out, "waiting for dependencies ({}):", r.waiting.len());
        for w in &r.waiting {
            let _ = writeln!(out, "  {}: missing {}", w.path, w.missing.join(", "));
        }
    }
    if r.unprovided > 0 {
        let _ = writeln!(out, "{}", unprovided_line(r.unprovided));
    }
    out
}
