//! What every command shares: failures with their exit codes, JSON output, input from files
//! or stdin, and the warning lines a merge's report gives.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value as Json;

/// Exit codes; README.md has the table (and `crdtdir --help`).
pub(crate) const EXIT_ERROR: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_REFUSED: u8 = 3;
pub(crate) const EXIT_NO_STORE: u8 = 4;
pub(crate) const EXIT_NOT_COMPACTED: u8 = 5;

/// A failure: its exit code, its error code (a stable name, printed with `--json`), its
/// message, and what to do next when the CLI knows (a `hint:` line).
pub(crate) struct Failure {
    pub(crate) exit: u8,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl From<crdtdir::Error> for Failure {
    fn from(e: crdtdir::Error) -> Self {
        let exit = match &e {
            crdtdir::Error::NoStore { .. } => EXIT_NO_STORE,
            crdtdir::Error::NotAlone { .. } | crdtdir::Error::NotConfirmed => EXIT_NOT_COMPACTED,
            e if e.is_refusal() => EXIT_REFUSED,
            _ => EXIT_ERROR,
        };
        Failure {
            exit,
            code: e.code(),
            hint: error_hint(&e),
            message: e.to_string(),
        }
    }
}

/// What to do next after a library error, in the CLI's words (the library says only what
/// happened: an app shows its own advice).
pub(crate) fn error_hint(e: &crdtdir::Error) -> Option<String> {
    use crdtdir::{Error, Refusal};
    let hint = match e {
        Error::NoStore { .. } => "run `crdtdir init` to make a store here, pass `--store` to name another folder, or wait for the sync tool to deliver `crdtdir.store`",
        Error::Locked => "run `crdtdir key import` (the key comes from `crdtdir key export` on a device that has it)",
        Error::Keychain { .. } => "start and unlock the OS keychain (on Linux a Secret Service, such as gnome-keyring, on the session's D-Bus), or import the key again (`crdtdir key import`: it keeps it in a file)",
        Error::Incomplete { .. } => "run `crdtdir repair` on a device that has the history",
        Error::CopiedStore { .. } => "to start a new document from this one, read it as a read-only device with a state dir of its own (`crdtdir --read-only --state-dir \"$(mktemp -d)\" merge --out FILE.json` here), then run `crdtdir init --from FILE.json` in a new folder",
        Error::AlreadyStore { .. } => "to encrypt it (or copy it) keeping its history, make a new store from it: `crdtdir --store NEW_FOLDER init --encrypt --from-store THIS_FOLDER`",
        Error::Refused(Refusal::Source { .. }) => "run `crdtdir status` on the store to copy: `crdtdir repair` on a device that has the missing history writes it back",
        Error::UnknownDevice { .. } => "`crdtdir status` lists the other devices, with their actors",
        Error::UnknownStore { .. } => "`crdtdir forget --local` lists the stores this device holds local state of",
        Error::Refused(Refusal::InUse { .. }) => "stop using the folder first (move or delete it, or stop syncing it here), then forget the store",
        Error::UnknownDocument { .. } => "`crdtdir docs` lists the documents of the store",
        Error::Refused(Refusal::NoPassphrases) => "import the key itself (`crdtdir key import`), or run `crdtdir key passphrase` on a device that has it",
        Error::Refused(Refusal::AmbiguousDevice { .. }) => "`crdtdir status` lists the devices with their actors",
        Error::Refused(Refusal::StateDirInFolder { .. }) => "set --state-dir or CRDTDIR_STATE_DIR to a place outside the synced folder",
        Error::Refused(Refusal::Marker(_)) => "run `crdtdir repair` to put the marker back as this device last read it",
        Error::NoStateDir => "pass --state-dir or set CRDTDIR_STATE_DIR",
        _ => return None,
    };
    Some(hint.to_string())
}

/// What to do next after a write's notice, if anything.
pub(crate) fn notice_hint(notice: &crdtdir::Notice) -> Option<&'static str> {
    match notice {
        crdtdir::Notice::FolderLost { .. } | crdtdir::Notice::WriteBackFailed { .. } => {
            Some("run `crdtdir repair` here to write them back")
        }
        _ => None,
    }
}

impl From<crdtdir::PatchError> for Failure {
    fn from(e: crdtdir::PatchError) -> Self {
        Failure {
            exit: EXIT_ERROR,
            code: "patch",
            message: e.to_string(),
            hint: None,
        }
    }
}

/// An error (exit code 1, error code `error`).
pub(crate) fn fail(message: impl Into<String>) -> Failure {
    Failure {
        exit: EXIT_ERROR,
        code: "error",
        message: message.into(),
        hint: None,
    }
}

/// Bad input on the command line, in a file or on stdin (exit code 1, error code `input`).
pub(crate) fn bad_input(message: impl Into<String>) -> Failure {
    Failure {
        exit: EXIT_ERROR,
        code: "input",
        message: message.into(),
        hint: None,
    }
}

/// How output is formatted: `--pretty` indents JSON, `--json` makes errors JSON too. Set
/// once in `main`, before any command runs.
static PRETTY: AtomicBool = AtomicBool::new(false);
static JSON: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_format(json: bool, pretty: bool) {
    JSON.store(json, Ordering::Relaxed);
    PRETTY.store(pretty, Ordering::Relaxed);
}

/// `--json` was given: text output becomes JSON, and errors too.
pub(crate) fn json_wanted() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// `--pretty` was given.
pub(crate) fn pretty() -> bool {
    PRETTY.load(Ordering::Relaxed)
}

/// Reports a failure on stderr: one line, and a `hint:` line when there is one; one line of
/// JSON with `--json` (the hint in its `hint` field).
pub(crate) fn report_failure(exit: u8, code: &str, message: &str, hint: Option<&str>) {
    let line = one_line(message);
    if json_wanted() {
        let mut error = serde_json::json!({"code": code, "exit": exit, "message": line});
        if let Some(hint) = hint {
            error["hint"] = Json::from(hint);
        }
        eprintln!("{}", serde_json::json!({ "error": error }));
    } else {
        eprintln!("crdtdir: {line}");
        if let Some(hint) = hint {
            eprintln!("crdtdir: hint: {hint}");
        }
    }
}

/// An error as one line of reasonable length: a message that quotes the input (a 20 KB
/// patch) keeps its start and end.
pub(crate) fn one_line(message: &str) -> String {
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

/// Prints `value` as one line of JSON (indented with `--pretty`).
pub(crate) fn print_json(value: &Json) -> Result<(), Failure> {
    let mut text = json_text(value)?;
    text.push('\n');
    write_out(&text)
}

/// `value` as JSON text: one line, or indented with `--pretty`.
pub(crate) fn json_text(value: &Json) -> Result<String, Failure> {
    if pretty() {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .map_err(|e| fail(e.to_string()))
}

/// A time for JSON output: RFC 3339, UTC, in seconds.
pub(crate) fn rfc3339(unix_secs: i64) -> String {
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs.max(0) as u64);
    humantime::format_rfc3339_seconds(when).to_string()
}

/// Writes `text` to stdout. A closed pipe (`crdtdir status | head -1`) is not an error: the
/// reader has what it wanted.
pub(crate) fn write_out(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(fail(format!("stdout: {e}"))),
        _ => Ok(()),
    }
}

/// Any serializable value as JSON.
pub(crate) fn to_json(value: &impl serde::Serialize) -> Result<Json, Failure> {
    serde_json::to_value(value).map_err(|e| fail(e.to_string()))
}

/// The text of a file, or of stdin for `-`.
pub(crate) fn read_input(source: &str) -> Result<String, Failure> {
    if source == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| bad_input(format!("stdin: {e}")))?;
        Ok(s)
    } else {
        std::fs::read_to_string(source).map_err(|e| bad_input(format!("{source}: {e}")))
    }
}

/// A JSON value given on the command line.
pub(crate) fn parse_value(text: &str) -> Result<Json, Failure> {
    serde_json::from_str(text).map_err(|e| {
        bad_input(format!(
            "malformed JSON value {text:?}: {e} (strings need quotes: '\"milk\"')"
        ))
    })
}

/// One line on stderr when the merge skipped or held back anything.
pub(crate) fn warn_report(report: &crdtdir::MergeReport) {
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

/// What to tell the user when the folder lost changes this device holds.
pub(crate) fn unprovided_line(n: usize) -> String {
    format!(
        "the folder lost {n} change(s) this device still has (a restored backup, a lost snapshot, files deleted by a sync tool?): run `crdtdir repair` here to write them back"
    )
}

/// A duration in seconds for people ("5m 3s"; negative when a clock is ahead).
pub(crate) fn ago(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let d = std::time::Duration::from_secs(secs.unsigned_abs());
    format!("{sign}{}", humantime::format_duration(d))
}

/// Replaces `path` atomically: a temp file beside it, fsynced, renamed over it.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A progress bar on stderr for `store`'s long work (a merge from nothing, packing), once
/// it has taken a second: only on a terminal, never on a pipe or with `--json`.
pub(crate) fn progress_bar(store: &crdtdir::Store) {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || json_wanted() {
        return;
    }
    let started = std::time::Instant::now();
    let bar: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);
    store.set_progress(move |p| {
        let (what, done, total) = match p {
            crdtdir::Progress::Reading { done, total } => ("reading op files", done, total),
            crdtdir::Progress::Packing { done, total } => ("packing", done, total),
            _ => return,
        };
        let mut bar = bar.lock().unwrap_or_else(|p| p.into_inner());
        if bar.is_none() && (done >= total || started.elapsed().as_secs_f64() < 1.0) {
            return;
        }
        let b = bar.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} ({eta})")
            {
                b.set_style(style);
            }
            b
        });
        b.set_message(what);
        b.set_length(total as u64);
        b.set_position(done as u64);
        if done >= total {
            b.finish_and_clear();
            *bar = None;
        }
    });
}

/// A spinner on stderr for work with no count (`init` building its first document): shown
/// only on a terminal and without `--json`, and only once the work has taken a second.
#[derive(Clone, Default)]
pub(crate) struct Spinner {
    state: std::sync::Arc<std::sync::Mutex<SpinnerState>>,
}

#[derive(Default)]
struct SpinnerState {
    armed: bool,
    done: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Spinner {
    /// Starts the clock: `message` spins after a second unless [`Spinner::finish`] came first.
    pub(crate) fn arm(&self, message: &'static str) {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() || json_wanted() {
            return;
        }
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.armed || s.done {
                return;
            }
            s.armed = true;
        }
        let state = std::sync::Arc::clone(&self.state);
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(1));
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            if s.done {
                return;
            }
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(message);
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            s.bar = Some(bar);
        });
    }

    /// The work is over: the spinner goes (or never shows).
    pub(crate) fn finish(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.done = true;
        if let Some(bar) = s.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Asks `prompt` on a terminal. Refused (exit 3, code `refused`; `not-confirmed` is
/// compaction's, exit 5) with `no_terminal` when there is none, and with `declined` when
/// the answer is no; `hint` goes with either.
pub(crate) fn confirm(
    no_terminal: &str,
    prompt: &str,
    declined: &str,
    hint: Option<&str>,
) -> Result<(), Failure> {
    use std::io::IsTerminal;
    let refused = |message: &str| Failure {
        exit: EXIT_REFUSED,
        code: "refused",
        message: message.to_string(),
        hint: hint.map(str::to_string),
    };
    if !std::io::stdin().is_terminal() {
        return Err(refused(no_terminal));
    }
    let asked = dialoguer::Confirm::new()
        .with_prompt(prompt)
        .default(false)
        .interact()
        .map_err(|e| bad_input(format!("confirmation: {e}")))?;
    if !asked {
        return Err(refused(declined));
    }
    Ok(())
}
