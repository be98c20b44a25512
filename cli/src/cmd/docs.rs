//! `crdtdir completions SHELL` and `crdtdir man`: shell completions and man pages,
//! generated from the same definitions as `--help`.
//!
//! A man page is clap_mangen's sections, laid out as man pages are read: the prose of a
//! command's `after_help` joins DESCRIPTION, its examples become EXAMPLES and keep their
//! lines, and every page ends with ENVIRONMENT and EXIT STATUS, listed from
//! [`environment`] and [`EXIT_STATUSES`] (the one place each is written down; `--help`'s
//! one-line summary of exit codes is checked against it).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use crate::output::{self, fail, Failure};

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  crdtdir completions bash > ~/.local/share/bash-completion/completions/crdtdir
  crdtdir completions zsh > ~/.zfunc/_crdtdir        # with fpath+=~/.zfunc in .zshrc
  crdtdir completions fish > ~/.config/fish/completions/crdtdir.fish")]
pub(crate) struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  crdtdir man | man -l -
  crdtdir man --dir ~/.local/share/man/man1            # crdtdir.1 and one page per command")]
pub(crate) struct ManArgs {
    /// Write crdtdir.1 and a page per command (crdtdir-append.1, …) into DIR instead of
    /// printing crdtdir.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) fn completions(args: &CompletionsArgs, mut cmd: clap::Command) -> Result<(), Failure> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "crdtdir", &mut out);
    crate::output::write_out(&String::from_utf8_lossy(&out))
}

pub(crate) fn man(args: &ManArgs, cmd: clap::Command) -> Result<(), Failure> {
    // `help` gets no page of its own (`--help` is on every page), so no page names it.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
            write_pages(cmd, dir).map_err(|e| fail(format!("{}: {e}", dir.display())))
        }
        None => {
            let mut out = Vec::new();
            render(cmd, &mut out).map_err(|e| fail(e.to_string()))?;
            output::write_out(&String::from_utf8_lossy(&out))
        }
    }
}

/// Writes the page of `cmd` (built) and of each of its commands, as `NAME.1` in `dir`.
fn write_pages(cmd: clap::Command, dir: &Path) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir)?;
    }
    let path = dir.join(Man::new(cmd.clone()).get_filename());
    let mut file = std::fs::File::create(path)?;
    render(cmd, &mut file)?;
    file.flush()
}

/// An environment variable crdtdir reads (the binary or the library).
pub(crate) struct EnvVar {
    pub(crate) name: &'static str,
    /// What it does, in one sentence.
    pub(crate) what: &'static str,
    /// What holds when it is not set.
    pub(crate) default: String,
}

/// Every environment variable crdtdir reads, in the man page's order. Left out: the crash
/// tests' `CRDTDIR_CRASH_AT` (the library's fault injection, not for users).
pub(crate) fn environment() -> Vec<EnvVar> {
    let var = |name, what, default: &str| EnvVar {
        name,
        what,
        default: default.to_string(),
    };
    vec![
        var(
            "CRDTDIR_STORE",
            "The store folder, as --store.",
            "the current folder, or the nearest folder above it that holds a store \
             (crdtdir.store), as git finds its repository; init always makes the store in the \
             current folder",
        ),
        var(
            crdtdir::DEVICE_ENV,
            "This device's display name, as --device (1 to 64 characters, no control \
             characters).",
            "the name kept in the state directory, made once from the host name",
        ),
        var(
            "CRDTDIR_DOC",
            "The document to act on, by id or crdtdir: URL, as --doc.",
            "the store's root document",
        ),
        var(
            crdtdir::STATE_DIR_ENV,
            "This device's local state directory (its writer lock, actor, cache and keys; \
             never inside the synced folder), as --state-dir.",
            "the OS data directory (on Linux ~/.local/share/crdtdir)",
        ),
        var(
            crdtdir::READ_ONLY_ENV,
            "1 makes this device read-only: it writes nothing to the synced folder, as \
             --read-only.",
            "off",
        ),
        var(
            crate::LOG_ENV,
            "A filter for log lines on stderr (tracing's EnvFilter syntax, e.g. \
             crdtdir=debug), in place of -v.",
            "none (-v, -vv or -vvv choose; without them nothing is logged)",
        ),
        EnvVar {
            name: crdtdir::PACK_SIZE_ENV,
            what: "A write folds this device's op files into a pack every that many changes; \
                   0 turns automatic packing off (crdtdir pack still packs).",
            default: crdtdir::DEFAULT_PACK_SIZE.to_string(),
        },
        EnvVar {
            name: crdtdir::CHECKPOINT_EVERY_ENV,
            what: "A write publishes a checkpoint when the folder's newest one lags this \
                   device's view by that many changes; 0 turns automatic checkpoints off.",
            default: crdtdir::DEFAULT_CHECKPOINT_EVERY.to_string(),
        },
        var(
            crdtdir::KEYCHAIN_ENV,
            "1 keeps the key of an encrypted store in the OS keychain when this device is \
             given one (init --encrypt, key import), as --keychain.",
            "a file in the state directory",
        ),
        var(
            "CRDTDIR_PASSPHRASE_FILE",
            "key passphrase and key import --passphrase read the passphrase from the first \
             line of this file, as --passphrase-file.",
            "asked on a terminal, else the first line of stdin",
        ),
        var(
            "CRDTDIR_PASSPHRASE_COMMAND",
            "key passphrase and key import --passphrase run this command (with sh -c) and take \
             the first line it prints as the passphrase, as --passphrase-command.",
            "asked on a terminal, else the first line of stdin",
        ),
        var(
            crate::config::CONFIG_ENV,
            "The config file: TOML setting store, device, doc, state_dir and keychain (paths may start              with ~/; relative ones are in the file's folder), which a flag or environment              variable overrides; set and empty, no config file is read.",
            "config.toml in the OS config folder (on Linux ~/.config/crdtdir/config.toml),              if there is one",
        ),
        var(
            crate::forward::SERVE_ENV,
            "0 keeps append, get and merge from asking a running crdtdir serve of this \
             device: they open the store themselves.",
            "they ask one when it runs (never on a read-only device)",
        ),
    ]
}

/// An exit status: its code, its name in `--help`'s summary, what it means, and the error
/// codes (`--json`'s `code`) it comes with.
pub(crate) struct ExitStatus {
    pub(crate) code: u8,
    pub(crate) name: &'static str,
    pub(crate) meaning: &'static str,
    pub(crate) errors: &'static [&'static str],
}

/// Every exit status of the binary.
pub(crate) const EXIT_STATUSES: &[ExitStatus] = &[
    ExitStatus {
        code: 0,
        name: "ok",
        meaning: "success (including an append that changed nothing).",
        errors: &[],
    },
    ExitStatus {
        code: output::EXIT_ERROR,
        name: "error",
        meaning: "malformed JSON or patch, a bad path, a failed test (nothing is \
                  written), a damaged file found by check, an I/O error.",
        errors: &[
            "input",
            "patch",
            "already-store",
            "corrupt",
            "io",
            "unverified",
            "no-state-dir",
            "device-name",
            "unknown-device",
            "unknown-passphrase",
            "unknown-store",
            "keychain",
            "unknown-document",
            "doc-id",
            "damaged",
            "error",
            "internal",
        ],
    },
    ExitStatus {
        code: output::EXIT_USAGE,
        name: "usage",
        meaning: "an unknown command or option, a missing or malformed argument, append \
                  with neither (or both) an operation and --patch.",
        errors: &["usage"],
    },
    ExitStatus {
        code: output::EXIT_REFUSED,
        name: "refused",
        meaning: "a read-only device, an encrypted store without its key, a store \
                  that needs a newer crdtdir (reading still works), an incomplete view, a \
                  copied store folder, a state dir inside the folder.",
        errors: &[
            "read-only",
            "locked",
            "wrong-key",
            "needs-newer",
            "incomplete",
            "copied-store",
            "refused",
        ],
    },
    ExitStatus {
        code: output::EXIT_NO_STORE,
        name: "no store",
        meaning: "the folder has no crdtdir.store (a sync tool that has not \
                  delivered it yet, a wrong --store).",
        errors: &["no-store"],
    },
    ExitStatus {
        code: output::EXIT_NOT_COMPACTED,
        name: "compaction refused",
        meaning: "another device looks online, or it was not confirmed; \
                  nothing changed.",
        errors: &["not-alone", "not-confirmed"],
    },
];

/// How `--help` starts its one-line summary of [`EXIT_STATUSES`] ("Exit codes: 0 ok, …"),
/// which the man page leaves to EXIT STATUS.
const EXIT_SUMMARY_START: &str = "Exit codes: ";

/// The man page of `cmd` (the top command, or one of its commands after the top one is
/// built).
fn render(cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let after = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|h| AfterHelp::parse(&h.to_string()))
        .unwrap_or_default();
    let has_version = cmd
        .get_version()
        .or_else(|| cmd.get_long_version())
        .is_some();
    let has_options = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_commands = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let man = Man::new(cmd);
    // Every rendering starts with roff's preamble; the page keeps the title's only.
    let preamble = Roff::new().render();
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    let mut add = |section: Vec<u8>| {
        let body = section
            .strip_prefix(preamble.as_bytes())
            .unwrap_or(&section);
        page.extend_from_slice(body);
    };
    add(rendered(|w| man.render_name_section(w))?);
    add(rendered(|w| man.render_synopsis_section(w))?);
    add(rendered(|w| man.render_description_section(w))?);
    add(after.description().render().into_bytes());
    if has_options {
        let options = rendered(|w| man.render_options_section(w))?;
        add(break_after_tags(&String::from_utf8_lossy(&options)).into_bytes());
    }
    if has_commands {
        add(rendered(|w| man.render_subcommands_section(w))?);
    }
    add(after.examples().render().into_bytes());
    add(environment_section().render().into_bytes());
    add(exit_status_section().render().into_bytes());
    if has_version {
        add(rendered(|w| man.render_version_section(w))?);
    }
    out.write_all(&page)
}

/// What `render` writes, as bytes.
fn rendered(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    render(&mut out)?;
    Ok(out)
}

/// Puts each option's description on the line below its name, as it is below a long one:
/// roff's `.TP` runs the description onto the name's line when the name is narrower than
/// the indent ("--json JSON output…").
fn break_after_tags(section: &str) -> String {
    let mut out = String::new();
    let mut tag_next = false;
    for line in section.lines() {
        out.push_str(line);
        out.push('\n');
        if tag_next {
            out.push_str(".br\n");
        }
        tag_next = line == ".TP";
    }
    out
}

/// A command's `after_help`, as the man page lays it out: paragraphs of prose (whose
/// indented lines are kept as written) for DESCRIPTION, the lines after `Examples:` for
/// EXAMPLES. `--help`'s summary of exit codes is left out: EXIT STATUS says it in full.
#[derive(Default)]
struct AfterHelp {
    prose: Vec<Vec<String>>,
    examples: Vec<String>,
}

impl AfterHelp {
    fn parse(text: &str) -> AfterHelp {
        let mut after = AfterHelp::default();
        for paragraph in text.split("\n\n") {
            let mut lines = paragraph.lines().filter(|l| !l.trim().is_empty());
            match lines.next() {
                None => {}
                Some("Examples:") => after.examples.extend(lines.map(|l| {
                    let l = l.strip_prefix("  ").unwrap_or(l);
                    l.trim_end().to_string()
                })),
                Some(first) if first.starts_with(EXIT_SUMMARY_START) => {}
                Some(first) => after.prose.push(
                    std::iter::once(first)
                        .chain(lines)
                        .map(str::to_string)
                        .collect(),
                ),
            }
        }
        after
    }

    /// The prose, as paragraphs that continue DESCRIPTION.
    fn description(&self) -> Roff {
        let mut roff = Roff::new();
        for paragraph in &self.prose {
            roff.control("PP", []);
            let mut verbatim = false;
            for line in paragraph {
                let indented = line.starts_with(' ');
                if indented != verbatim {
                    roff.control(if indented { "nf" } else { "fi" }, []);
                    verbatim = indented;
                }
                roff.text([roman(line.as_str())]);
            }
            if verbatim {
                roff.control("fi", []);
            }
        }
        roff
    }

    /// The examples, one per line as in `--help` (no filling, no adjusting).
    fn examples(&self) -> Roff {
        let mut roff = Roff::new();
        if self.examples.is_empty() {
            return roff;
        }
        roff.control("SH", ["EXAMPLES"]);
        roff.control("nf", []);
        for line in &self.examples {
            roff.text([roman(line.as_str())]);
        }
        roff.control("fi", []);
        roff
    }
}

fn environment_section() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["ENVIRONMENT"]);
    // No hyphenation from here on: names and error codes are typed, not read.
    roff.control("nh", []);
    for var in environment() {
        roff.control("TP", []);
        roff.text([bold(var.name)]);
        roff.text([roman(format!("{} Default: {}.", var.what, var.default))]);
    }
    roff
}

fn exit_status_section() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for status in EXIT_STATUSES {
        roff.control("TP", []);
        roff.text([bold(status.code.to_string())]);
        let mut text = format!("{}: {}", status.name, status.meaning);
        if !status.errors.is_empty() {
            text.push_str(&format!(" Error codes: {}.", status.errors.join(", ")));
        }
        roff.text([roman(text)]);
    }
    roff.control("PP", []);
    roff.text([roman(
        "An error or refusal is one line on stderr, \"crdtdir: <what happened>\", and a line \
         \"crdtdir: hint: <what to do next>\" when there is something to do. With --json it is \
         one JSON line on stderr (stdout stays empty): \
         {\"error\":{\"code\":…,\"exit\":…,\"message\":…,\"hint\":…}}, its code one of those \
         above.",
    )]);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option that takes its value from the environment is in ENVIRONMENT.
    #[test]
    fn every_option_read_from_the_environment_is_listed() {
        fn walk(cmd: &clap::Command, listed: &[&str]) {
            for arg in cmd.get_arguments() {
                if let Some(env) = arg.get_env() {
                    let env = env.to_string_lossy();
                    assert!(
                        listed.contains(&env.as_ref()),
                        "{}: {env} is not in environment()",
                        cmd.get_name()
                    );
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, listed);
            }
        }
        let vars = environment();
        let listed: Vec<&str> = vars.iter().map(|v| v.name).collect();
        let mut unique = listed.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), listed.len(), "a variable listed twice");
        let mut cmd = crate::command();
        cmd.build();
        walk(&cmd, &listed);
    }

    /// Every `global = true` option is under the "Global options" heading, in `--help` and
    /// in the man page.
    #[test]
    fn every_global_option_has_the_global_heading() {
        let cmd = crate::command();
        let globals: Vec<_> = cmd.get_arguments().filter(|a| a.is_global_set()).collect();
        assert!(globals.len() >= 8, "{}", globals.len());
        for arg in globals {
            assert_eq!(
                arg.get_help_heading(),
                Some(crate::GLOBAL),
                "--{}",
                arg.get_id()
            );
        }
    }

    /// `--help`'s one-line summary of exit codes ("Exit codes: 0 ok, 1 error, …") names
    /// the statuses EXIT STATUS lists.
    #[test]
    fn the_help_summary_of_exit_codes_is_exit_status() {
        let codes: Vec<String> = EXIT_STATUSES
            .iter()
            .map(|s| format!("{} {}", s.code, s.name))
            .collect();
        let summary = format!("{EXIT_SUMMARY_START}{}.", codes.join(", "));
        let after = crate::command().get_after_help().unwrap().to_string();
        assert!(after.contains(&summary), "{after}");
    }

    /// Each library error exits with the status whose error codes name its code.
    #[test]
    fn each_error_code_is_listed_under_its_exit_status() {
        use crdtdir::{Error, Refusal};
        let path = || PathBuf::from("/x");
        let text = || "x".to_string();
        let errors = [
            Error::NoStore { path: path() },
            Error::AlreadyStore {
                path: path(),
                reason: text(),
            },
            Error::NeedsNewer { reason: text() },
            Error::Corrupt {
                path: path(),
                reason: text(),
            },
            Error::Unverified {
                path: path(),
                reason: text(),
            },
            Error::NoStateDir,
            Error::Internal { what: text() },
            Error::Io {
                path: path(),
                source: io::Error::other("x"),
            },
            Error::Locked,
            Error::WrongKey { reason: text() },
            Error::ReadOnly,
            Error::NotAlone { devices: vec![] },
            Error::NotConfirmed,
            Error::Incomplete {
                path: text(),
                reason: text(),
            },
            Error::Refused(Refusal::NoPassphrases),
            Error::CopiedStore {
                path: path(),
                other: path(),
                store_id: text(),
            },
            Error::UnknownDevice { name: text() },
            Error::UnknownPassphrase { id: text() },
            Error::UnknownStore {
                id: text(),
                matches: 0,
            },
            Error::UnknownDocument {
                id: text(),
                deleted: false,
            },
            Error::DocId { given: text() },
            Error::DeviceName {
                name: text(),
                reason: "x",
            },
        ];
        for error in errors {
            let failure = Failure::from(error);
            let listed: Vec<u8> = EXIT_STATUSES
                .iter()
                .filter(|s| s.errors.contains(&failure.code))
                .map(|s| s.code)
                .collect();
            assert_eq!(listed, [failure.exit], "{}", failure.code);
        }
    }

    /// An after_help block: prose to DESCRIPTION, examples line by line, the exit-code
    /// summary left to EXIT STATUS.
    #[test]
    fn after_help_splits_into_prose_and_examples() {
        let after = AfterHelp::parse(
            "Some prose\n  kept  as written\n\nExamples:\n  crdtdir a   # b\n  crdtdir c\n\n\
             Exit codes: 0 ok.\nWith --json, …",
        );
        assert_eq!(after.prose, [vec!["Some prose", "  kept  as written"]]);
        assert_eq!(after.examples, ["crdtdir a   # b", "crdtdir c"]);
        let description = after.description().to_roff();
        assert!(
            description.contains(".nf\n  kept  as written\n.fi"),
            "{description}"
        );
    }
}
