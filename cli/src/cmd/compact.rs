//! `crdtdir compact`: fold the history into one SQLite snapshot, when this device is alone.
//! The library refuses while another device looks online and without confirmation
//! (`Store::compact_if_alone`); this asks on a terminal, or takes `--yes`.

use std::io::IsTerminal;

use crdtdir::{CompactPlan, Store};

use crate::output::{ago, print_json, to_json, Failure, EXIT_NOT_COMPACTED};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  crdtdir compact                      # asks first\n  crdtdir compact --yes                # scripts: refused (exit 5) while another device looks online\n  crdtdir compact --dry-run            # the plan: files, bytes, the other devices and whether they look online"
)]
pub(crate) struct Args {
    /// Confirm without asking (for scripts).
    #[arg(long, conflicts_with = "dry_run")]
    yes: bool,
    /// Print the plan (the files and bytes it would fold, the snapshot it would write, the
    /// other devices with when their heartbeat last changed and whether they look online, the
    /// devices that write without heartbeats) and change nothing, not even a heartbeat.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Another device counts as possibly online if seen within SECS (default 300).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(i64).range(0..))]
    threshold: Option<i64>,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    let threshold = args.threshold.unwrap_or(crdtdir::DEFAULT_THRESHOLD_SECS);
    if args.dry_run {
        let plan = store.compact_plan(threshold)?;
        let mut json = to_json(&plan)?;
        json["dry_run"] = serde_json::Value::Bool(true);
        json["alone"] = serde_json::Value::Bool(plan.others.iter().all(|p| !p.online));
        json["grows"] = serde_json::Value::Bool(plan.grows());
        return print_json(&json);
    }
    // Why a confirmation was not given, when it was not.
    let mut unasked: Option<&str> = None;
    let mut stdin_error: Option<std::io::Error> = None;
    let confirm = |plan: &CompactPlan| {
        if args.yes {
            if plan.grows() {
                eprintln!("crdtdir: note: {}", growth(plan));
            }
            if let Some(silent) = silence(plan) {
                eprintln!("crdtdir: warning: {silent}");
            }
            return true;
        }
        if !std::io::stdin().is_terminal() {
            unasked = Some("compaction needs confirmation: run it on a terminal, or pass --yes");
            return false;
        }
        eprint!("{}", question(plan));
        let mut answer = String::new();
        if let Err(e) = std::io::stdin().read_line(&mut answer) {
            stdin_error = Some(e);
            return false;
        }
        matches!(answer.trim(), "y" | "Y" | "yes")
    };
    // A progress bar on a terminal once compaction starts: deleting 100,000 files takes a
    // while.
    let mut bar: Option<indicatif::ProgressBar> = None;
    let outcome = store.compact_if_alone(threshold, confirm, |p| {
        if bar.is_none() && std::io::stderr().is_terminal() {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_message("building and verifying the snapshot");
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            bar = Some(b);
        }
        if let (Some(bar), crdtdir::Progress::Deleting { done, total }) = (&bar, p) {
            bar.set_message(format!("deleting folded op files: {done} of {total}"));
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let refuse = |code, message: String| Failure {
        exit: EXIT_NOT_COMPACTED,
        code,
        message,
        hint: None,
    };
    let outcome = match outcome {
        Err(crdtdir::Error::NotAlone { devices }) => {
            let online: Vec<String> = devices
                .iter()
                .map(|p| format!("{} (beat changed {} ago)", p.name, ago(p.seen_secs_ago)))
                .collect();
            return Err(refuse(
                "not-alone",
                format!(
                    "refused: another device looks online: {}; compact when it is not",
                    online.join(", ")
                ),
            ));
        }
        Err(crdtdir::Error::NotConfirmed) => {
            if let Some(e) = stdin_error {
                return Err(crate::output::fail(format!("stdin: {e}")));
            }
            return Err(refuse(
                "not-confirmed",
                match unasked {
                    Some(why) => format!("refused: {why}"),
                    None => "refused: not confirmed; nothing changed".into(),
                },
            ));
        }
        other => other?,
    };
    print_json(&to_json(&outcome)?)
}

/// What to say when devices write here without heartbeats: "alone" may be wrong.
fn silence(plan: &CompactPlan) -> Option<String> {
    (!plan.silent.is_empty()).then(|| {
        format!(
            "{} device(s) write to this folder but publish no heartbeat ({}): crdtdir cannot tell whether they are online. Does the sync tool skip devices/ (a .stignore, selective sync)?",
            plan.silent.len(),
            plan.silent.join(", ")
        )
    })
}

/// What the user is asked before compaction.
fn question(plan: &CompactPlan) -> String {
    let others: Vec<String> = plan
        .others
        .iter()
        .map(|p| {
            format!(
                "{} last seen {} ago, has not merged {} changes",
                p.name,
                ago(p.seen_secs_ago),
                p.unmerged
            )
        })
        .collect();
    let warning = silence(plan).map_or(String::new(), |s| format!("Warning: {s}\n"));
    format!(
        "{warning}It looks like you are the only device online{}. Fold {} op files ({}){} into a snapshot{}? [y/N] ",
        if others.is_empty() { String::new() } else { format!(" ({})", others.join("; ")) },
        plan.op_files,
        size(plan.op_bytes),
        if plan.snapshots > 0 { format!(" and {} snapshot(s)", plan.snapshots) } else { String::new() },
        if plan.grows() { format!(" anyway (note: {})", growth(plan)) } else { String::new() },
    )
}

/// What to say when the snapshot would take more bytes than what it replaces.
fn growth(plan: &CompactPlan) -> String {
    format!(
        "the store would grow: the snapshot takes {}, the files it replaces {}",
        size(plan.new_snapshot_bytes),
        size(plan.op_bytes + plan.snapshot_bytes)
    )
}

/// Bytes for people.
fn size(bytes: u64) -> String {
    match bytes {
        b if b < 10_000 => format!("{b} B"),
        b if b < 10_000_000 => format!("{:.1} KB", b as f64 / 1e3),
        b => format!("{:.1} MB", b as f64 / 1e6),
    }
}
