//! The README's "CLI walkthrough", run as written: every ```` ```console ```` block of that
//! section (down to "## Writing values") is read from README.md when the test runs, its
//! commands run in order in one `bash` session, and what each command prints is compared with
//! the lines the README shows under it.
//!
//! How a block reads:
//! - `$ COMMAND` is a command. A line ending in `\` continues it; a heredoc (`<<'EOF'`) takes
//!   the lines up to its terminator. A trailing `# comment` is left to the shell.
//! - `$ # text` is a comment: it does not run, and no output lines may follow it.
//! - The lines after a command, up to the next `$ `, are what it prints: stdout and stderr
//!   merged as a terminal shows them, every line, in order.
//! - A command with no lines under it prints what the README leaves out (an `append`'s line,
//!   a QR code): its output is not compared.
//! - Every command must exit 0. The README shows a failure as `COMMAND; echo "exit $?"`, and
//!   the `exit N` line is compared like any other.
//!
//! How an output line of the README matches (everything else must be equal):
//! - `…` is any text within the line; a line that is `…` alone is any number of lines.
//! - A run of 8 or more hex digits holding a letter (an id, a hash) is any run of as many hex
//!   digits. Runs of decimal digits (the seq in `0000000002-`) stay literal.
//! - An RFC 3339 time (`2026-11-25T12:03:16Z`) is any RFC 3339 time.
//! - An age before ` ago` (`42s`, `5m 3s`) is any age.
//! - `/home/me` is the session's home folder (a temp dir, so `~/Sync/groceries` lands in it).
//!
//! The session: HOME, the store (`CRDTDIR_STORE`) and the state dir are fresh temp folders,
//! `CRDTDIR_DEVICE=laptop`, and the built `crdtdir` comes first on PATH. What one terminal
//! cannot show by itself (another device, a command that runs until interrupted) is handled
//! by [`SPECIAL`], each entry with its reason.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_crdtdir");
/// The whole session must end within this.
const PATIENCE: Duration = Duration::from_secs(180);
/// Where the walkthrough starts and where it ends (the next section).
const SECTION: &str = "## CLI walkthrough";
const NEXT_SECTION: &str = "## Writing values";
/// What the README calls the home folder.
const README_HOME: &str = "/home/me";
/// Starts the lines the session prints around each command; the README never has it.
const MARK: &str = "@@walkthrough";

/// A README command that needs more than running it in the session.
struct Special {
    /// The command's first line as the README shows it, comment and all (runs of spaces
    /// count as one).
    command: &'static str,
    handling: Handling,
    why: &'static str,
}

enum Handling {
    /// Runs as another device on this machine: its own state dir and this name.
    As(&'static str),
    /// This shell runs first, in the session (what it exports stays); it must exit 0.
    Before(&'static str),
    /// This shell runs in place of the command; `{command}` in it is the README's command.
    Instead(&'static str),
    /// Runs only where this program is installed.
    Needs(&'static str),
    /// Does not run.
    Skip,
}

/// Every README command that does not simply run, and why. Each entry must name exactly one
/// command of the walkthrough.
static SPECIAL: &[Special] = &[
    Special {
        command: "crdtdir append --patch patch.json",
        handling: Handling::Before(
            r#"ls "$CRDTDIR_STORE/devices" > "$WALK/beats-before"
( export CRDTDIR_STATE_DIR="$WALK/state-phone" CRDTDIR_DEVICE=phone
  crdtdir merge > /dev/null )
mkdir -p "$WALK/in-transit"
for d in "$CRDTDIR_STORE"/devices/*; do
  grep -qx "$(basename "$d")" "$WALK/beats-before" || mv "$d" "$WALK/in-transit/"
done
[ "$(ls "$WALK/in-transit" | wc -l)" -eq 1 ]"#,
        ),
        why: "the later `status` shows a phone whose heartbeat lacks the laptop's last 2 \
              changes: the phone merges here, and the sync tool delivers its heartbeat later",
    },
    Special {
        command: "crdtdir status",
        handling: Handling::Before(r#"mv "$WALK"/in-transit/* "$CRDTDIR_STORE/devices/""#),
        why: "the sync tool delivers the phone's heartbeat (held back since the patch)",
    },
    Special {
        command: "crdtdir watch",
        handling: Handling::Instead(
            r#": > "$WALK/watch.out"
{command} > "$WALK/watch.out" 2>&1 &
watch=$!
walk_lines "$WALK/watch.out" 1
( export CRDTDIR_STATE_DIR="$WALK/state-phone" CRDTDIR_DEVICE=phone
  crdtdir append insert /items/- '"rice"' > /dev/null ) || echo "the phone's append failed"
walk_lines "$WALK/watch.out" 2
kill -TERM "$watch"
wait "$watch"
watched=$?
cat "$WALK/watch.out"
(exit "$watched")"#,
        ),
        why: "it runs until SIGTERM: after its first line the phone appends \"rice\", and after \
              the line for that it gets SIGTERM (and must exit 0)",
    },
    Special {
        command: "crdtdir completions bash > ~/.local/share/bash-completion/completions/crdtdir",
        handling: Handling::Before("mkdir -p ~/.local/share/bash-completion/completions"),
        why: "the session's fresh home has no bash-completion folder yet",
    },
    Special {
        command: "crdtdir man | man -l - # or: crdtdir man --dir ~/.local/share/man/man1",
        handling: Handling::Needs("man"),
        why: "it pipes the page into man(1), which a minimal system may lack",
    },
    Special {
        command: "crdtdir init --encrypt # a random 256-bit key, kept in this device's local state",
        handling: Handling::Before(
            r#"export CRDTDIR_STORE=~/Sync/notes
printf 'correct horse battery staple\n' > "$WALK/passphrase"
export CRDTDIR_PASSPHRASE_FILE="$WALK/passphrase""#,
        ),
        why: "an encrypted store is a new store (the groceries folder already is one), and \
              `key passphrase`/`key import --passphrase` take the passphrase from \
              CRDTDIR_PASSPHRASE_FILE where no terminal asks for it",
    },
    Special {
        command: "crdtdir key import < key.txt # on each other device (or: key import WORD…)",
        handling: Handling::As("phone"),
        why: "it runs on another device",
    },
    Special {
        command:
            "crdtdir key import --passphrase # then another device joins with the passphrase alone",
        handling: Handling::As("tablet"),
        why: "it runs on a device that has no key yet",
    },
    Special {
        command: "crdtdir key remove ID # that passphrase no longer lets a device join (asks)",
        handling: Handling::Skip,
        why: "ID stands for an id that `key list` prints, and the command asks on a terminal",
    },
];

/// One `$ ` line of the README (with its continuation and heredoc lines) and what follows it.
struct Step {
    /// 1-based line of README.md where the command starts.
    line: usize,
    /// The command as the shell gets it (more than one line for a heredoc or a `\`).
    command: String,
    /// A `$ # …` line.
    comment: bool,
    /// The README's output lines, each with its 1-based line number.
    output: Vec<(usize, String)>,
}

impl Step {
    /// The first line, with runs of spaces as one: what [`SPECIAL`] names.
    fn shown(&self) -> String {
        let first = self.command.lines().next().unwrap_or("");
        first.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The first line without its trailing comment.
    fn bare(&self) -> &str {
        let first = self.command.lines().next().unwrap_or("");
        without_comment(first).trim_end()
    }

    fn title(&self) -> String {
        format!(
            "README.md:{}: `$ {}`",
            self.line,
            self.command.lines().next().unwrap_or("")
        )
    }
}

/// `line` up to a ` #` that the shell reads as a comment (outside quotes).
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return &line[..i],
            None => {}
        }
        prev = c;
    }
    line
}

/// The steps of every console block between [`SECTION`] and [`NEXT_SECTION`].
fn walkthrough(readme: &str) -> Vec<Step> {
    let lines: Vec<&str> = readme.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == SECTION)
        .unwrap_or_else(|| panic!("README.md has no `{SECTION}` heading"));
    let end = lines[start..]
        .iter()
        .position(|l| *l == NEXT_SECTION)
        .map(|n| start + n)
        .unwrap_or_else(|| panic!("README.md has no `{NEXT_SECTION}` after `{SECTION}`"));
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    let mut i = start;
    while i < end {
        let line = lines[i];
        i += 1;
        if !in_block {
            in_block = line == "```console";
            continue;
        }
        if line == "```" {
            in_block = false;
            continue;
        }
        let Some(command) = line.strip_prefix("$ ") else {
            let step = steps.last_mut().unwrap_or_else(|| {
                panic!("README.md:{i}: a console block must start with a `$ ` line")
            });
            step.output.push((i, line.to_string()));
            continue;
        };
        let at = i;
        let mut command = command.to_string();
        while command.ends_with('\\') && i < end {
            command.push('\n');
            command.push_str(lines[i]);
            i += 1;
        }
        if let Some(word) = heredoc_word(&command) {
            loop {
                assert!(
                    i < end,
                    "README.md:{at}: the heredoc never ends with `{word}`"
                );
                command.push('\n');
                command.push_str(lines[i]);
                i += 1;
                if lines[i - 1] == word {
                    break;
                }
            }
        }
        steps.push(Step {
            line: at,
            comment: command.starts_with('#'),
            command,
            output: Vec::new(),
        });
    }
    assert!(
        !in_block,
        "README.md: a console block in `{SECTION}` never ends"
    );
    steps
}

/// The terminator of a `<<'WORD'`, `<<"WORD"` or `<<WORD` heredoc in `command`.
fn heredoc_word(command: &str) -> Option<String> {
    let rest = without_comment(command.lines().next()?)
        .split("<<")
        .nth(1)?
        .trim_start();
    let word: String = rest
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// The session's shell: each step between markers that carry its index and exit status.
fn script(walk: &Path, steps: &[Step], specials: &[Option<&Special>]) -> String {
    let mut s = format!(
        "set -o pipefail\n\
         WALK='{}'\n\
         # Waits (at most 30 s) until file $1 has $2 lines.\n\
         walk_lines() {{ i=0; while [ \"$(cat \"$1\" 2>/dev/null | wc -l)\" -lt \"$2\" ] && [ \"$i\" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done; }}\n\
         cd \"$WALK/cwd\" || exit\n",
        walk.display()
    );
    for (n, (step, special)) in steps.iter().zip(specials).enumerate() {
        if step.comment {
            continue;
        }
        let handling = special.map(|s| &s.handling);
        let body = match handling {
            Some(Handling::Skip) => continue,
            Some(Handling::Needs(program)) if !installed(program) => continue,
            Some(Handling::As(device)) => format!(
                "(\nexport CRDTDIR_STATE_DIR=\"$WALK/state-{device}\" CRDTDIR_DEVICE={device}\n{}\n)",
                step.command
            ),
            Some(Handling::Instead(shell)) => shell.replace("{command}", step.bare()),
            _ => step.command.clone(),
        };
        s.push_str(&format!("# README.md:{}\n", step.line));
        if let Some(Handling::Before(shell)) = handling {
            s.push_str(&format!(
                "printf '{MARK} setup {n}\\n'\n{{\n{shell}\n}}\nprintf '{MARK} setup-exit {n} %d\\n' \"$?\"\n"
            ));
        }
        s.push_str(&format!(
            "printf '{MARK} begin {n}\\n'\n{body}\nprintf '{MARK} end {n} %d\\n' \"$?\"\n"
        ));
    }
    s
}

fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// What the session printed between `{MARK} {what} {n}` and `{MARK} {what}-exit|end {n} S`,
/// and S; `None` if the session never got there.
fn between(out: &str, begin: &str, end: &str) -> Option<(String, i32)> {
    let start = out.find(begin)? + begin.len();
    let stop = start + out[start..].find(end)?;
    let status = out[stop + end.len()..]
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    Some((out[start..stop].to_string(), status))
}

#[test]
fn the_readme_walkthrough_prints_what_the_readme_shows() {
    let started = Instant::now();
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let steps = walkthrough(&readme);
    assert!(
        steps.iter().any(|s| !s.output.is_empty()),
        "README.md: the walkthrough shows no output to compare"
    );

    let specials: Vec<Option<&Special>> = steps
        .iter()
        .map(|step| {
            SPECIAL
                .iter()
                .find(|s| !step.comment && s.command == step.shown())
        })
        .collect();
    for special in SPECIAL {
        let named = specials
            .iter()
            .filter(|s| s.is_some_and(|s| std::ptr::eq(s, special)))
            .count();
        assert_eq!(
            named, 1,
            "SPECIAL names `{}`, which is {named} commands of the walkthrough, not one",
            special.command
        );
    }

    let root = tempfile::tempdir().unwrap();
    let walk = root.path();
    let home = walk.join("home");
    for dir in ["home", "cwd"] {
        std::fs::create_dir(walk.join(dir)).unwrap();
    }
    let bin_dir = Path::new(BIN).parent().unwrap();
    let mut path = vec![bin_dir.to_path_buf()];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let script_path = walk.join("walkthrough.sh");
    std::fs::write(&script_path, script(walk, &steps, &specials)).unwrap();

    let out_path = walk.join("session.out");
    let out = File::create(&out_path).unwrap();
    let mut shell = Command::new("bash");
    shell
        .arg(&script_path)
        .env_clear()
        .env("PATH", std::env::join_paths(path).unwrap())
        .env("HOME", &home)
        .env("LANG", "C.UTF-8")
        .env("CRDTDIR_STORE", home.join("Sync/groceries"))
        .env("CRDTDIR_STATE_DIR", walk.join("state-laptop"))
        .env("CRDTDIR_DEVICE", "laptop")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    // Its own process group, so a timeout ends a background `watch` too.
    std::os::unix::process::CommandExt::process_group(&mut shell, 0);
    let mut child = shell.spawn().expect("run bash");
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "the walkthrough did not end within {PATIENCE:?}; it printed:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let printed = std::fs::read_to_string(&out_path).unwrap();
    let printed = printed.replace(home.to_str().unwrap(), README_HOME);

    let mut failures = Vec::new();
    for (n, (step, special)) in steps.iter().zip(&specials).enumerate() {
        if step.comment {
            if let Some((line, _)) = step.output.first() {
                failures.push(format!(
                    "{}: a comment, yet README.md:{line} shows output under it",
                    step.title()
                ));
            }
            continue;
        }
        match special.map(|s| &s.handling) {
            Some(Handling::Skip) => continue,
            Some(Handling::Needs(program)) if !installed(program) => {
                eprintln!(
                    "skipped {}: {program} is not installed ({})",
                    step.title(),
                    special.unwrap().why
                );
                continue;
            }
            Some(Handling::Before(_)) => {
                let setup = between(
                    &printed,
                    &format!("{MARK} setup {n}\n"),
                    &format!("{MARK} setup-exit {n} "),
                );
                match setup {
                    Some((_, 0)) => {}
                    Some((text, status)) => failures.push(format!(
                        "{}: the setup before it ({}) exited {status}:\n{}",
                        step.title(),
                        special.unwrap().why,
                        indent(&text)
                    )),
                    None => failures.push(format!("{}: its setup never ended", step.title())),
                }
            }
            _ => {}
        }
        let Some((text, status)) = between(
            &printed,
            &format!("{MARK} begin {n}\n"),
            &format!("{MARK} end {n} "),
        ) else {
            failures.push(format!(
                "{}: the session stopped before it ended; the session printed:\n{}",
                step.title(),
                indent(&printed)
            ));
            break;
        };
        if status != 0 {
            failures.push(format!(
                "{}: exited {status} (a command the README shows without `; echo \"exit $?\"` \
                 must succeed); it printed:\n{}",
                step.title(),
                indent(&text)
            ));
        }
        if step.output.is_empty() {
            continue;
        }
        let actual: Vec<&str> = text.lines().collect();
        let expected: Vec<Expected> = step.output.iter().map(|(_, l)| expected(l)).collect();
        let mut furthest = (0, 0);
        if !lines_match(&expected, &actual, 0, 0, &mut furthest) {
            let (e, a) = furthest;
            let why = match (step.output.get(e), actual.get(a)) {
                (Some((line, want)), Some(got)) => {
                    format!("README.md:{line} `{want}` does not match the output line `{got}`")
                }
                (Some((line, want)), None) => {
                    format!("the output ends before README.md:{line} `{want}`")
                }
                (None, got) => format!(
                    "the output goes on after the README's last line: `{}`",
                    got.unwrap_or(&"")
                ),
            };
            failures.push(format!(
                "{}: {why}\nthe README shows:\n{}\nthe command printed:\n{}",
                step.title(),
                indent(
                    &step
                        .output
                        .iter()
                        .map(|(_, l)| l.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                indent(&text)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "README.md's walkthrough and crdtdir disagree:\n\n{}",
        failures.join("\n\n")
    );
    eprintln!("the walkthrough ran in {:?}", started.elapsed());
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A README output line, cut into what must match.
enum Expected {
    /// A line that is `…` alone: any number of lines.
    AnyLines,
    Line(Vec<Piece>),
}

#[derive(Debug, PartialEq)]
enum Piece {
    Literal(String),
    /// `…` within a line.
    Any,
    /// An id or hash of this many hex digits.
    Hex(usize),
    Time,
    Age,
}

fn expected(line: &str) -> Expected {
    if line.trim() == "…" {
        return Expected::AnyLines;
    }
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = line;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let word_start = !prev.is_some_and(|p| p.is_ascii_alphanumeric() || p == '_');
        let piece = if c == '…' {
            Some((Piece::Any, c.len_utf8()))
        } else if let Some(n) = time_len(rest) {
            Some((Piece::Time, n))
        } else if let Some(n) =
            age_len(rest).filter(|n| word_start && rest[*n..].starts_with(" ago"))
        {
            Some((Piece::Age, n))
        } else {
            id_len(rest)
                .filter(|_| word_start)
                .map(|n| (Piece::Hex(n), n))
        };
        match piece {
            Some((piece, n)) => {
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(piece);
                prev = rest[..n].chars().last();
                rest = &rest[n..];
            }
            None => {
                literal.push(c);
                prev = Some(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Expected::Line(pieces)
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
}

/// The length of a README id at the start of `s`: 8 or more hex digits, at least one a
/// letter, not run on into a word.
fn id_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let n = b.iter().take_while(|c| is_hex(**c)).count();
    let ends_word = b
        .get(n)
        .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != b'_');
    (n >= 8 && ends_word && b[..n].iter().any(u8::is_ascii_alphabetic)).then_some(n)
}

/// The length of an RFC 3339 time at the start of `s` (`2026-11-25T12:03:16Z`, with
/// optional fractional seconds and a `+01:00` offset).
fn time_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < shape.len()
        || !shape.iter().zip(b).all(|(want, got)| match want {
            b'd' => got.is_ascii_digit(),
            _ => want == got,
        })
    {
        return None;
    }
    let mut n = shape.len();
    if b.get(n) == Some(&b'.') {
        let digits = b[n + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        n += 1 + digits;
    }
    match b.get(n) {
        Some(b'Z') => Some(n + 1),
        Some(b'+' | b'-')
            if b.len() >= n + 6
                && b[n + 1..n + 3].iter().all(u8::is_ascii_digit)
                && b[n + 3] == b':'
                && b[n + 4..n + 6].iter().all(u8::is_ascii_digit) =>
        {
            Some(n + 6)
        }
        _ => None,
    }
}

/// The length of an age at the start of `s`, as crdtdir prints one (humantime: `0s`,
/// `42s`, `5m 3s`, `2days 1h`; `-` when a clock is ahead).
fn age_len(s: &str) -> Option<usize> {
    const UNITS: &[&str] = &[
        "years", "year", "months", "month", "days", "day", "h", "ms", "µs", "us", "ns", "m", "s",
    ];
    let mut n = usize::from(s.starts_with('-'));
    let mut parts = 0;
    loop {
        let at = if parts == 0 { n } else { n + 1 };
        if parts > 0 && !s[n..].starts_with(' ') {
            break;
        }
        let digits = s[at..].bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            break;
        }
        let after = &s[at + digits..];
        let Some(unit) = UNITS.iter().find(|u| {
            after.starts_with(**u)
                && !after[u.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
        }) else {
            break;
        };
        n = at + digits + unit.len();
        parts += 1;
    }
    (parts > 0).then_some(n)
}

/// Whether `actual[a..]` matches `expected[e..]`; on a mismatch `furthest` is the deepest
/// README line that failed and the output line it met.
fn lines_match(
    expected: &[Expected],
    actual: &[&str],
    e: usize,
    a: usize,
    furthest: &mut (usize, usize),
) -> bool {
    let Some(want) = expected.get(e) else {
        if a == actual.len() {
            return true;
        }
        if e > furthest.0 {
            *furthest = (e, a);
        }
        return false;
    };
    let ok = match want {
        Expected::AnyLines => {
            (a..=actual.len()).any(|skip| lines_match(expected, actual, e + 1, skip, furthest))
        }
        Expected::Line(pieces) => {
            a < actual.len()
                && line_matches(pieces, actual[a])
                && lines_match(expected, actual, e + 1, a + 1, furthest)
        }
    };
    if !ok && e > furthest.0 {
        *furthest = (e, a);
    }
    ok
}

fn line_matches(pieces: &[Piece], actual: &str) -> bool {
    let Some((piece, rest)) = pieces.split_first() else {
        return actual.is_empty();
    };
    match piece {
        Piece::Literal(text) => actual
            .strip_prefix(text.as_str())
            .is_some_and(|tail| line_matches(rest, tail)),
        Piece::Any => actual
            .char_indices()
            .map(|(i, _)| i)
            .chain([actual.len()])
            .any(|i| line_matches(rest, &actual[i..])),
        Piece::Hex(n) => {
            actual.len() >= *n
                && actual.as_bytes()[..*n].iter().all(|c| is_hex(*c))
                && line_matches(rest, &actual[*n..])
        }
        Piece::Time => time_len(actual).is_some_and(|n| line_matches(rest, &actual[n..])),
        Piece::Age => age_len(actual).is_some_and(|n| line_matches(rest, &actual[n..])),
    }
}

#[test]
fn the_matcher_takes_abbreviations_and_nothing_else() {
    let matches = |want: &str, got: &str| match expected(want) {
        Expected::Line(pieces) => line_matches(&pieces, got),
        Expected::AnyLines => true,
    };
    let line = r#"{"change":"4f9c6d15…","path":"ops/1607b67e…/0000000002-fb9da489….op","seq":2}"#;
    assert!(matches(
        line,
        r#"{"change":"46022dad9b","path":"ops/50823268/0000000002-52e36ce8.op","seq":2}"#
    ));
    // A number, a key or a word that changed.
    assert!(!matches(
        line,
        r#"{"change":"46022dad9b","path":"ops/50823268/0000000003-52e36ce8.op","seq":2}"#
    ));
    assert!(!matches(
        line,
        r#"{"change":"46022dad9b","path":"ops/50823268/0000000002-52e36ce8.op","seq":3}"#
    ));
    assert!(!matches(
        line,
        r#"{"changed":"46022dad9b","path":"ops/50823268/0000000002-52e36ce8.op","seq":2}"#
    ));
    // An abbreviated id is at least as long as the README's.
    assert!(!matches(
        line,
        r#"{"change":"46022d","path":"ops/50823268/0000000002-52e36ce8.op","seq":2}"#
    ));
    // Times and ages.
    let log = "2026-11-25T12:03:16Z  laptop  seq 11";
    assert!(matches(
        log,
        "2024-01-02T03:04:05.123+01:00  laptop  seq 11"
    ));
    assert!(!matches(log, "2024-01-02  laptop  seq 11"));
    let age = "may be online: beat changed 42s ago here";
    assert!(matches(
        age,
        "may be online: beat changed 1h 2m 3s ago here"
    ));
    assert!(!matches(age, "may be online: beat changed 42s here"));
    assert!(!matches(age, "offline: beat changed 42s ago here"));
    // A whole id stays whole; decimal runs and words stay literal.
    assert!(matches(
        "store 3c087332d4d5c52d (format 1)",
        "store 0123456789abcdef (format 1)"
    ));
    assert!(!matches(
        "store 3c087332d4d5c52d (format 1)",
        "store 0123456789abcde (format 1)"
    ));
    assert!(!matches("visits 12345678", "visits 12345679"));
    assert!(!matches("deadbeefs", "0123abcds"));
}
