//! `crdtdir`: the command-line face of the crdtdir library. Parses, calls the library,
//! prints JSON, maps errors to exit codes (0 ok, 1 error, 2 usage, 3 refused).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use crdtdir::{Options, PatchOp, Store};
use serde_json::{json, Value as Json};

#[derive(Parser)]
#[command(
    name = "crdtdir",
    version,
    about = "Sync an Automerge document through any file-sync tool"
)]
struct Cli {
    /// The store folder.
    #[arg(long, global = true, env = "CRDTDIR_STORE", default_value = ".")]
    store: PathBuf,
    /// This device's display name.
    #[arg(long, global = true, env = "CRDTDIR_DEVICE")]
    device: Option<String>,
    /// Local state directory (never inside the synced folder).
    #[arg(long, global = true, env = "CRDTDIR_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the folder a new store.
    Init {
        /// Write this JSON object as the document's first change.
        #[arg(long, value_name = "FILE.json")]
        from: Option<PathBuf>,
    },
    /// Change the document: one append is one change is one op file.
    Append {
        /// Apply a JSON Patch (RFC 6902 plus splice and increment) from FILE, or - for stdin.
        #[arg(long, value_name = "FILE|-")]
        patch: Option<String>,
        #[command(subcommand)]
        op: Option<AppendOp>,
    },
    /// Print the merged document as JSON.
    Merge {
        /// Write it to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Indent the JSON.
        #[arg(long)]
        pretty: bool,
    },
    /// Print the JSON value at a JSON Pointer (default: the whole document).
    Get {
        #[arg(default_value = "")]
        path: String,
    },
    /// Devices (and which look online), problem files, forks, quarantined and waiting changes.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// A device counts as possibly online if seen within SECS (default 300).
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(i64).range(0..))]
        threshold: Option<i64>,
    },
    /// Fold the history into one SQLite snapshot, when this device is alone (asks first).
    Compact {
        /// Confirm without asking (for scripts).
        #[arg(long)]
        yes: bool,
        /// Another device counts as possibly online if seen within SECS (default 300).
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(i64).range(0..))]
        threshold: Option<i64>,
    },
    /// Write back, as a new snapshot, changes this device has that the folder lost.
    Repair,
    /// Show a real merge: two devices edit one store concurrently in a temporary folder,
    /// their files cross as a sync tool would carry them, and both print the same JSON.
    Demo,
    /// The history: one line per change.
    Log {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AppendOp {
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

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<crdtdir::Error> for Failure {
    fn from(e: crdtdir::Error) -> Self {
        Failure {
            code: if e.is_refusal() { 3 } else { 1 },
            message: e.to_string(),
        }
    }
}

impl From<crdtdir::PatchError> for Failure {
    fn from(e: crdtdir::PatchError) -> Self {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}

fn fail(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Automerge can panic on a forged change; the library catches that and reports it, so
    // the default panic message would be noise. A panic that escapes is reported below.
    std::panic::set_hook(Box::new(|_| {}));
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(f)) => {
            eprintln!("crdtdir: {}", one_line(&f.message));
            ExitCode::from(f.code)
        }
        Err(_) => {
            eprintln!("crdtdir: internal error (a bug): nothing was written after it");
            ExitCode::from(1)
        }
    }
}

/// An error as one line of reasonable length: a message that quotes the input (a 20 KB
/// patch) keeps its start and end.
fn one_line(message: &str) -> String {
    const KEEP: usize = 200;
    let flat: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let chars: Vec<char> = flat.chars().collect();
    if chars.len() <= 2 * KEEP {
        return flat;
    }
    let head: String = chars[..KEEP].iter().collect();
    let tail: String = chars[chars.len() - KEEP..].iter().collect();
    format!(
        "{head} … ({} characters cut) … {tail}",
        chars.len() - 2 * KEEP
    )
}

fn options(cli: &Cli) -> Options {
    let mut o = Options::new();
    if let Some(d) = &cli.state_dir {
        o = o.state_dir(d);
    }
    if let Some(d) = &cli.device {
        o = o.device(d);
    }
    o
}

fn print_json(value: &Json, pretty: bool) -> Result<(), Failure> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .map_err(|e| fail(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| fail(format!("stdout: {e}")))
}

fn read_input(source: &str) -> Result<String, Failure> {
    if source == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| fail(format!("stdin: {e}")))?;
        Ok(s)
    } else {
        std::fs::read_to_string(source).map_err(|e| fail(format!("{source}: {e}")))
    }
}

fn parse_value(text: &str) -> Result<Json, Failure> {
    serde_json::from_str(text).map_err(|e| {
        fail(format!(
            "malformed JSON value {text:?}: {e} (strings need quotes: '\"milk\"')"
        ))
    })
}

/// One line on stderr when the merge skipped or held back anything.
fn warn_report(report: &crdtdir::MergeReport) {
    for gap in &report.incomplete {
        eprintln!(
            "crdtdir: warning: incomplete view: {}: {}",
            gap.path, gap.reason
        );
    }
    if report.unprovided > 0 {
        eprintln!("crdtdir: warning: {}", unprovided_line(report.unprovided));
    }
    // The store's own marker gets a line of its own: it decides whether writes work.
    let marker = |p: &&crdtdir::Problem| p.path == "crdtdir.store";
    for p in report.problems.iter().filter(marker) {
        eprintln!("crdtdir: warning: {}: {}", p.path, p.reason);
    }
    // Temp files and placeholders go away by themselves: `status` lists them, merges do
    // not warn about them.
    let (p, q, w) = (
        report
            .problems
            .iter()
            .filter(|p| !p.kind.is_transient() && !marker(p))
            .count(),
        report.quarantined.len(),
        report.waiting.len(),
    );
    if p + q + w + report.forks.len() > 0 {
        eprintln!(
            "crdtdir: warning: {p} file(s) skipped, {} fork(s), {q} change(s) quarantined, {w} waiting for dependencies (see `crdtdir status`)",
            report.forks.len()
        );
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let opts = options(&cli);
    let store = match &cli.command {
        Command::Demo => return demo(),
        Command::Init { from } => {
            let initial = match from {
                Some(f) => Some(parse_value(&read_input(&f.to_string_lossy())?)?),
                None => None,
            };
            let store = Store::init(&cli.store, opts, initial.as_ref())?;
            print_json(&json!({"store": store.path(), "id": store.id()}), false)?;
            store
        }
        command => {
            let store = Store::open(&cli.store, opts)?;
            on_store(&store, command)?;
            store
        }
    };
    // A command that succeeded on the store says so in a heartbeat (rate-limited; a store
    // this build must not write to gets none).
    if let Err(e) = store.beat() {
        eprintln!("crdtdir: warning: no heartbeat published: {e}");
    }
    Ok(())
}

fn on_store(store: &Store, command: &Command) -> Result<(), Failure> {
    match command {
        Command::Init { .. } | Command::Demo => unreachable!("handled by run"),
        Command::Append { patch, op } => {
            let ops = match (patch, op) {
                (Some(source), None) => crdtdir::parse_patch(&read_input(source)?)?,
                (None, Some(op)) => vec![append_op(op)?],
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
        Command::Merge { out, pretty } => {
            let (json, report) = store.read_json()?;
            warn_report(&report);
            let mut text = if *pretty {
                let value: Json = serde_json::from_str(&json).map_err(|e| fail(e.to_string()))?;
                serde_json::to_string_pretty(&value).map_err(|e| fail(e.to_string()))?
            } else {
                json
            };
            text.push('\n');
            match out {
                Some(path) => {
                    std::fs::write(path, text).map_err(|e| fail(format!("{}: {e}", path.display())))
                }
                None => std::io::stdout()
                    .lock()
                    .write_all(text.as_bytes())
                    .map_err(|e| fail(format!("stdout: {e}"))),
            }
        }
        Command::Get { path } => {
            let (json, report) = store.read_json()?;
            warn_report(&report);
            let doc: Json = serde_json::from_str(&json).map_err(|e| fail(e.to_string()))?;
            let value = if path.is_empty() {
                doc
            } else {
                doc.pointer(path)
                    .cloned()
                    .ok_or_else(|| fail(format!("{path:?}: nothing there")))?
            };
            print_json(&value, false)
        }
        Command::Status { json, threshold } => {
            let mut status = store.status()?;
            if let Some(secs) = threshold {
                status.presence = store.presence(*secs)?;
            }
            if *json {
                print_json(
                    &serde_json::to_value(&status).map_err(|e| fail(e.to_string()))?,
                    true,
                )
            } else {
                print_status(&status);
                Ok(())
            }
        }
        Command::Compact { yes, threshold } => compact(
            store,
            *yes,
            threshold.unwrap_or(crdtdir::DEFAULT_THRESHOLD_SECS),
        ),
        Command::Repair => {
            let repaired = store.repair()?;
            if repaired.is_empty() {
                eprintln!(
                    "crdtdir: nothing to repair: the folder provides every change this device has"
                );
            }
            print_json(&json!(repaired), false)
        }
        Command::Log { json } => {
            let mut log = store.history()?;
            log.sort_by(|a, b| (a.time, &a.actor, a.seq).cmp(&(b.time, &b.actor, b.seq)));
            if *json {
                return print_json(
                    &serde_json::to_value(&log).map_err(|e| fail(e.to_string()))?,
                    false,
                );
            }
            for c in log {
                let when =
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(c.time.max(0) as u64);
                println!(
                    "{}  {:<20} {}…  seq {:<6} {} op(s)",
                    humantime::format_rfc3339_seconds(when),
                    c.device,
                    &c.actor[..c.actor.len().min(8)],
                    c.seq,
                    c.ops
                );
            }
            Ok(())
        }
    }
}

fn append_op(op: &AppendOp) -> Result<PatchOp, Failure> {
    Ok(match op {
        AppendOp::Set { path, json, scalar } => PatchOp::Set {
            path: path.clone(),
            value: parse_value(json)?,
            scalar: *scalar,
        },
        AppendOp::Insert { path, json, scalar } => PatchOp::Insert {
            path: path.clone(),
            value: parse_value(json)?,
            scalar: *scalar,
        },
        AppendOp::Delete { path } => PatchOp::Remove { path: path.clone() },
        AppendOp::Splice {
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
        AppendOp::Increment { path, n } => PatchOp::Increment {
            path: path.clone(),
            value: *n,
        },
    })
}

/// Compaction needs the user's word that this device is alone (seed 000): refused while
/// another device looks online, asked on a terminal, `--yes` for scripts.
fn compact(store: &Store, yes: bool, threshold: i64) -> Result<(), Failure> {
    let plan = store.compact_plan(threshold)?;
    let refuse = |message: String| Failure { code: 3, message };
    let online: Vec<String> = plan
        .others
        .iter()
        .filter(|p| p.online)
        .map(|p| format!("{} (beat changed {} ago)", p.name, ago(p.seen_secs_ago)))
        .collect();
    if !online.is_empty() {
        return Err(refuse(format!(
            "refused: another device looks online: {}; compact when it is not",
            online.join(", ")
        )));
    }
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
    let question = format!(
        "It looks like you are the only device online{}. Fold {} op files ({:.1} MB){} into a snapshot? [y/N] ",
        if others.is_empty() { String::new() } else { format!(" ({})", others.join("; ")) },
        plan.op_files,
        plan.op_bytes as f64 / 1e6,
        if plan.snapshots > 0 { format!(" and {} snapshot(s)", plan.snapshots) } else { String::new() },
    );
    if !yes {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            return Err(refuse(
                "refused: compaction needs confirmation: run it on a terminal, or pass --yes"
                    .into(),
            ));
        }
        eprint!("{question}");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| fail(format!("stdin: {e}")))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(refuse("refused: not confirmed; nothing changed".into()));
        }
    }
    // A progress bar on a terminal: deleting 100,000 files takes a while.
    use std::io::IsTerminal;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message("building and verifying the snapshot");
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let outcome = store.compact_with_progress(|p| {
        if let (Some(bar), crdtdir::Progress::Deleting { done, total }) = (&bar, p) {
            bar.set_message(format!("deleting folded op files: {done} of {total}"));
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let outcome = outcome?;
    print_json(
        &serde_json::to_value(&outcome).map_err(|e| fail(e.to_string()))?,
        false,
    )
}

fn ago(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let d = std::time::Duration::from_secs(secs.unsigned_abs());
    format!("{sign}{}", humantime::format_duration(d))
}

fn print_status(s: &crdtdir::Status) {
    println!(
        "store {} (format {}), {} change(s)",
        s.store_id, s.format, s.changes
    );
    if let Some(why) = &s.read_only {
        println!("read-only here: {why}");
    }
    println!("devices ({}):", s.devices.len());
    for d in &s.devices {
        let seqs: Vec<String> = d
            .max_seq
            .iter()
            .map(|(a, q)| format!("{}…@{q}", &a[..a.len().min(8)]))
            .collect();
        println!(
            "  {:<24} {} change(s), actors {}",
            d.name,
            d.ops,
            seqs.join(", ")
        );
    }
    if !s.presence.is_empty() {
        println!("other devices' heartbeats:");
    }
    for p in &s.presence {
        let state = if p.online { "may be online" } else { "offline" };
        println!(
            "  {:<24} {state}: beat changed {} ago here, its clock said {} ago; has not merged {} of your changes",
            p.name,
            ago(p.seen_secs_ago),
            ago(p.beat_secs_ago),
            p.unmerged
        );
    }
    let r = &s.report;
    for gap in &r.incomplete {
        println!("INCOMPLETE: {}: {}", gap.path, gap.reason);
    }
    if !r.unknown_features.is_empty() {
        println!("unknown features: {}", r.unknown_features.join(", "));
    }
    if !r.problems.is_empty() {
        println!("skipped files ({}):", r.problems.len());
        for p in &r.problems {
            println!("  {}: {}", p.path, p.reason);
        }
    }
    for f in &r.forks {
        println!(
            "fork: actor {} seq {}: kept {}, rebased {}",
            f.actor,
            f.seq,
            f.kept,
            f.rebased.join(", ")
        );
    }
    if !r.rebased.is_empty() {
        println!(
            "rebased changes ({}): edits that lost a fork, kept under new actors",
            r.rebased.len()
        );
        for x in &r.rebased {
            println!("  {}: {} -> {}", x.path, x.from, x.to);
        }
    }
    if !r.quarantined.is_empty() {
        println!("quarantined changes ({}):", r.quarantined.len());
        for p in &r.quarantined {
            println!("  {}: {}", p.path, p.reason);
        }
    }
    if !r.waiting.is_empty() {
        println!("waiting for dependencies ({}):", r.waiting.len());
        for w in &r.waiting {
            println!("  {}: missing {}", w.path, w.missing.join(", "));
        }
    }
    if r.unprovided > 0 {
        println!("{}", unprovided_line(r.unprovided));
    }
}

/// What to tell the user when the folder lost changes this device holds.
fn unprovided_line(n: usize) -> String {
    format!(
        "the folder lost {n} change(s) this device still has (a restored backup, a lost snapshot, files deleted by a sync tool?): run `crdtdir repair` here to write them back"
    )
}

/// Two devices, two folders, concurrent edits, files exchanged both ways, one result.
fn demo() -> Result<(), Failure> {
    let io = |e: std::io::Error| fail(e.to_string());
    let tmp = tempfile::tempdir().map_err(io)?;
    let dev = |name: &str| {
        Options::new()
            .state_dir(tmp.path().join(format!("state-{name}")))
            .device(name)
    };
    let (laptop_dir, phone_dir) = (
        tmp.path().join("laptop/todo"),
        tmp.path().join("phone/todo"),
    );
    let say = |who: &str, what: &str| println!("{who:>7}: {what}");

    let laptop = Store::init(
        &laptop_dir,
        dev("laptop"),
        Some(&json!({"title": "Groceries", "items": []})),
    )?;
    say(
        "laptop",
        r#"crdtdir init --from {"title":"Groceries","items":[]}"#,
    );
    std::fs::create_dir_all(&phone_dir).map_err(io)?;
    copy_new_files(&laptop_dir, &phone_dir).map_err(io)?;
    let phone = Store::open(&phone_dir, dev("phone"))?;
    say("sync", "the phone receives the store");

    // Both devices edit while apart.
    let edits: [(&Store, &str, &str); 4] = [
        (
            &laptop,
            "laptop",
            r#"[{"op":"add","path":"/items/-","value":"milk"}]"#,
        ),
        (
            &laptop,
            "laptop",
            r#"[{"op":"splice","path":"/title","pos":9,"del":0,"text":" for Sunday"}]"#,
        ),
        (
            &phone,
            "phone",
            r#"[{"op":"add","path":"/items/0","value":"eggs"}]"#,
        ),
        (
            &phone,
            "phone",
            r#"[{"op":"splice","path":"/title","pos":0,"del":0,"text":"Weekly "}]"#,
        ),
    ];
    for (store, who, patch) in edits {
        store.apply_patch(&crdtdir::parse_patch(patch)?)?;
        say(who, &format!("crdtdir append --patch - <<< '{patch}'"));
    }
    let (a, b) = (
        serde_json::to_string(&laptop.read()?.to_json()).map_err(|e| fail(e.to_string()))?,
        serde_json::to_string(&phone.read()?.to_json()).map_err(|e| fail(e.to_string()))?,
    );
    say("laptop", &format!("crdtdir merge   # before sync: {a}"));
    say("phone", &format!("crdtdir merge   # before sync: {b}"));

    copy_new_files(&laptop_dir, &phone_dir).map_err(io)?;
    copy_new_files(&phone_dir, &laptop_dir).map_err(io)?;
    say("sync", "op files cross both ways (any sync tool does this)");
    let (a, b) = (laptop.read()?.to_json(), phone.read()?.to_json());
    say("laptop", &format!("crdtdir merge   # {a}"));
    say("phone", &format!("crdtdir merge   # {b}"));
    if a != b {
        return Err(fail("the two devices disagree: this is a bug"));
    }
    println!("both devices print the same document: concurrent edits merged, none lost");
    Ok(())
}

/// Copies files that `to` does not have yet (what a sync tool does with immutable files).
fn copy_new_files(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_new_files(&entry.path(), &target)?;
        } else if !target.exists() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
