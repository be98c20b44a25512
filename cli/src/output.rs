//! What every command shares: failures with their exit codes, JSON output, input from files
//! or stdin, and the warning lines a merge's report gives.

use std::io::{Read, Write};

use serde_json::Value as Json;

/// A failure with its exit code (0 ok, 1 error, 2 usage, 3 refused).
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
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
        fail(e.to_string())
    }
}

/// An error (exit code 1).
pub(crate) fn fail(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
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

/// Prints `value` as one line of JSON (indented with `pretty`).
pub(crate) fn print_json(value: &Json, pretty: bool) -> Result<(), Failure> {
    let mut text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .map_err(|e| fail(e.to_string()))?;
    text.push('\n');
    write_out(&text)
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
            .map_err(|e| fail(format!("stdin: {e}")))?;
        Ok(s)
    } else {
        std::fs::read_to_string(source).map_err(|e| fail(format!("{source}: {e}")))
    }
}

/// A JSON value given on the command line.
pub(crate) fn parse_value(text: &str) -> Result<Json, Failure> {
    serde_json::from_str(text).map_err(|e| {
        fail(format!(
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
