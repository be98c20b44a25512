//! The `crdtdir` binary, driven as users and scripts drive it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_crdtdir");

/// A device on this machine: its own state dir and name.
struct Dev {
    state: PathBuf,
    name: &'static str,
}

impl Dev {
    fn new(root: &Path, name: &'static str) -> Dev {
        Dev {
            state: root.join(format!("state-{name}")),
            name,
        }
    }

    fn cmd(&self, store: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--store").arg(store).args(args);
        c.env("CRDTDIR_STATE_DIR", &self.state)
            .env("CRDTDIR_DEVICE", self.name);
        c.env_remove("CRDTDIR_STORE")
            .env_remove("CRDTDIR_CRASH_AT")
            .env_remove("CRDTDIR_LOG")
            // No config file: a user's own must not change what the tests see.
            .env("CRDTDIR_CONFIG", "");
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, store: &Path, args: &[&str]) -> Output {
        self.cmd(store, args).output().unwrap()
    }

    /// `run` with `input` on stdin.
    fn run_with_input(&self, store: &Path, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut c = self.cmd(store, args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, store: &Path, args: &[&str]) -> String {
        let out = self.run(store, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                out.insert(
                    format!("{}/", e.path().strip_prefix(dir).unwrap().display()),
                    vec![],
                );
                stack.push(e.path());
            } else if e.file_type().unwrap().is_file() {
                out.insert(
                    e.path().strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(e.path()).unwrap(),
                );
            } else {
                // A FIFO or socket: reading it would block; its presence is what counts.
                out.insert(
                    format!(
                        "{} (special)",
                        e.path().strip_prefix(dir).unwrap().display()
                    ),
                    vec![],
                );
            }
        }
    }
    out
}

/// Asserts two snapshots are equal, naming only the paths that differ.
fn assert_same(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>, what: &str) {
    let changed: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(changed.is_empty(), "{what} changed the disk: {changed:?}");
}

/// A failure on stderr: one line saying what happened, then at most one `hint:` line
/// saying what to do next. Returns both.
fn error_and_hint(stderr: &str) -> (&str, Option<&str>) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        !lines.is_empty() && lines.len() <= 2,
        "one error line and at most one hint: {stderr}"
    );
    let hint = lines.get(1).map(|h| {
        h.strip_prefix("crdtdir: hint: ")
            .unwrap_or_else(|| panic!("the second line is a hint: {stderr}"))
    });
    (lines[0], hint)
}

fn files_ending(store: &Path, ext: &str) -> Vec<String> {
    tree(store)
        .into_keys()
        .filter(|k| k.ends_with(ext))
        .collect()
}

fn op_files(store: &Path) -> Vec<String> {
    files_ending(store, ".op")
}

/// The quick start of README.md, word for word.
#[test]
fn readme_quick_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("Sync/todo");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/title", r#""Groceries""#]);
    me.ok(&store, &["append", "set", "/items", "[]"]);
    me.ok(&store, &["append", "insert", "/items/-", r#""milk""#]);
    assert_eq!(
        me.ok(&store, &["merge"]),
        "{\"items\":[\"milk\"],\"title\":\"Groceries\"}\n"
    );
    assert_eq!(me.ok(&store, &["get", "/items/0"]), "\"milk\"\n");
    let status: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["status", "--json"])).unwrap();
    assert_eq!(status["changes"], 3);
    assert_eq!(status["devices"][0]["name"], "laptop");
    // `log --json`: JSON lines, one change each.
    let log = me.ok(&store, &["log", "--json"]);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
}

#[test]
fn every_append_form_and_a_patch_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    let from = dir.path().join("init.json");
    std::fs::write(
        &from,
        r#"{"note": "hello", "list": [1, 2, 3], "gone": true}"#,
    )
    .unwrap();
    me.ok(&store, &["init", "--from", from.to_str().unwrap()]);
    me.ok(&store, &["append", "splice", "/note", "5", "0", " world"]);
    me.ok(&store, &["append", "increment", "/n", "-3"]);
    me.ok(&store, &["append", "delete", "/gone"]);
    me.ok(&store, &["append", "set", "/list/0", "10"]);
    me.ok(&store, &["append", "insert", "/list/1", "15"]);
    me.ok(&store, &["append", "set", "--scalar", "/id", r#""a-b""#]);
    let mut child = me
        .cmd(&store, &["append", "--patch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"[{"op":"test","path":"/n","value":-3},{"op":"increment","path":"/n","value":4},{"op":"move","from":"/id","path":"/ident"}]"#)
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(
        me.ok(&store, &["merge"]),
        "{\"ident\":\"a-b\",\"list\":[10,15,2,3],\"n\":1,\"note\":\"hello world\"}\n"
    );
    let out = me.run(&store, &["append", "set", "/n", "1"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "crdtdir: no change\n");
}

/// Bad input: one line on stderr, a non-zero exit, and not one byte changed on disk —
/// not in the store, not in the device's state.
#[test]
fn bad_input_is_one_line_a_nonzero_exit_and_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/t", r#""text""#]);
    me.ok(&store, &["append", "set", "/l", "[1]"]);
    let bad_patch = dir.path().join("bad.json");
    std::fs::write(&bad_patch, r#"[{"op":"add","path":"/x"}]"#).unwrap();
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["append", "set", "/x", "not json"], 1),
        (vec!["append", "set", "nope", "1"], 1),
        (vec!["append", "set", "/missing/deeper", "1"], 1),
        (vec!["append", "set", "/l/5", "1"], 1),
        (vec!["append", "set", "/l/01", "1"], 1),
        (vec!["append", "insert", "/t/0", "1"], 1),
        (vec!["append", "insert", "/k", "1"], 1),
        (vec!["append", "delete", "/nope"], 1),
        (vec!["append", "splice", "/l", "0", "0", "x"], 1),
        (vec!["append", "splice", "/t", "3", "9", "x"], 1),
        (vec!["append", "increment", "/t", "1"], 1),
        (vec!["append", "--patch", bad_patch.to_str().unwrap()], 1),
        (vec!["append", "--patch", "/no/such/file.json"], 1),
        (vec!["init"], 1),
        (vec!["get", "/nope"], 1),
        (vec!["append"], 2),
        (vec!["append", "frobnicate"], 2),
        (vec!["append", "increment", "/n", "many"], 2),
    ];
    // A read refreshes this device's cache; do that first so only the bad input could change
    // anything below.
    me.ok(&store, &["merge"]);
    let before = (tree(&store), tree(&me.state));
    for (args, code) in cases {
        let out = me.run(&store, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        if code == 1 {
            // One line, and at most one hint saying what to do next.
            error_and_hint(&stderr);
            assert!(stderr.starts_with("crdtdir: "), "{args:?}: {stderr}");
        }
        assert_eq!(
            (tree(&store), tree(&me.state)),
            before,
            "{args:?} changed the disk"
        );
    }
    // A failed `test` refuses the whole append.
    let out = me
        .cmd(&store, &["append", "--patch", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(br#"[{"op":"add","path":"/y","value":1},{"op":"test","path":"/t","value":"other"}]"#)?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("test failed"));
    assert_same(&before.0, &tree(&store), "a failed test");
    assert_same(&before.1, &tree(&me.state), "a failed test");
}

#[test]
fn a_missing_store_or_a_bad_device_name_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let me = Dev::new(dir.path(), "laptop");
    for args in [
        vec!["merge"],
        vec!["append", "set", "/a", "1"],
        vec!["status"],
        vec!["log"],
    ] {
        let out = me.run(&missing, &args);
        assert_eq!(out.status.code(), Some(4), "no store: exit 4");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let (error, hint) = error_and_hint(&stderr);
        assert!(error.contains("no crdtdir store"), "{stderr}");
        assert!(hint.is_some_and(|h| h.contains("crdtdir init")), "{stderr}");
        assert!(!missing.exists(), "{args:?} created the store folder");
    }
    let store = dir.path().join("s");
    me.ok(&store, &["init"]);
    let before = tree(&store);
    let out = me.run(&store, &["--device", "", "append", "set", "/a", "1"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tree(&store), before);
    // A marker that is not CBOR, on a device that never used the folder: one line, exit 1,
    // nothing written.
    std::fs::write(store.join("crdtdir.store"), b"garbage").unwrap();
    let stranger = Dev::new(dir.path(), "stranger");
    let before = tree(&store);
    for args in [vec!["merge"], vec!["append", "set", "/a", "1"]] {
        let out = stranger.run(&store, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("not a crdtdir store marker"), "{stderr}");
        assert!(
            !stderr.contains("Error {"),
            "no Rust debug output: {stderr}"
        );
    }
    assert_eq!(tree(&store), before);
    assert!(
        !stranger.state.exists(),
        "no local state for a folder that is not a store"
    );
}

/// Regression (issue 14, hygiene): a state dir inside the synced folder would carry this
/// device's writer record to every other device; it is refused with one line, and nothing
/// is written. A negative `--threshold` is refused by the parser.
#[test]
fn a_state_dir_inside_the_folder_and_a_negative_threshold_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let inside = Dev {
        state: store.join(".state"),
        name: "laptop",
    };
    let out = inside.run(&store, &["init"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (error, hint) = error_and_hint(&stderr);
    assert!(error.contains("inside the synced folder"), "{stderr}");
    assert!(hint.is_some_and(|h| h.contains("--state-dir")), "{stderr}");
    assert!(!store.exists(), "a refused init made the folder");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    let before = tree(&store);
    for args in [vec!["merge"], vec!["append", "set", "/a", "2"]] {
        let out = inside.run(&store, &args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("inside the synced folder"));
    }
    assert_eq!(tree(&store), before, "nothing written by refused commands");
    for cmd in ["status", "compact"] {
        let out = me.run(&store, &[cmd, "--threshold", "-5"]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {out:?}");
    }
    assert_eq!(tree(&store), before);
}

/// Regression (issue 14, hygiene: "error lines echo 20 KB of input"): an error that quotes
/// a huge input stays one line of reasonable length, and writes nothing.
#[test]
fn an_error_about_a_huge_input_is_one_short_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    let before = tree(&store);
    let path = format!("/{}\n{}", "x".repeat(20_000), "y".repeat(10));
    let out = me.run(&store, &["append", "delete", &path]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{}", stderr.len());
    assert!(stderr.len() < 600, "{} bytes", stderr.len());
    assert!(stderr.contains("characters cut"), "{stderr}");
    assert_eq!(tree(&store), before);
}

/// Regression (issue 14, hygiene: "a FIFO named like a beat hangs `status`/`compact`"):
/// FIFOs under the names of a heartbeat, an op file and a snapshot are reported, never
/// opened; every command finishes.
#[test]
fn fifos_named_like_store_files_hang_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    me.ok(&store, &["status"]);
    let actor = std::fs::read_dir(store.join("devices"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name();
    let actor = actor.to_string_lossy();
    std::fs::create_dir_all(store.join("snapshots")).unwrap();
    for fifo in [
        format!("devices/{actor}/99999999999-0123456789abcdef0123456789abcdef.beat"),
        format!("ops/{actor}/0000000099-0123456789abcdef0123456789abcdef.op"),
        "snapshots/0123456789abcdef0123456789abcdef.sqlite".to_string(),
    ] {
        let status = Command::new("mkfifo")
            .arg(store.join(&fifo))
            .status()
            .unwrap();
        assert!(status.success(), "{fifo}");
    }
    for args in [
        vec!["merge"],
        vec!["status"],
        vec!["append", "set", "/b", "2"],
        vec!["compact", "--yes"],
        vec!["merge"],
    ] {
        let mut child = me
            .cmd(&store, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut finished = None;
        for _ in 0..300 {
            if let Some(status) = child.try_wait().unwrap() {
                finished = Some(status);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let Some(status) = finished else {
            child.kill().unwrap();
            panic!("{args:?} hung on a FIFO");
        };
        assert!(status.success(), "{args:?}: {status}");
    }
    assert_eq!(me.ok(&store, &["merge"]), "{\"a\":1,\"b\":2}\n");
}

/// Regression (issue 14, hygiene: "refused commands write local state"): a patch that does
/// not apply changes nothing, neither in the folder nor in this device's state; a device
/// without a name gets its default name only with its first change.
#[test]
fn a_refused_patch_leaves_folder_and_state_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    let before = (tree(&store), tree(&me.state));
    let out = me.run(&store, &["append", "delete", "/nope"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_same(&before.0, &tree(&store), "a refused patch (folder)");
    assert_same(&before.1, &tree(&me.state), "a refused patch (state)");
    // A device with no name given: its default name is kept with its first change only.
    let nameless = dir.path().join("state-nameless");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("--store")
            .arg(&store)
            .args(args)
            .env("CRDTDIR_STATE_DIR", &nameless)
            .env_remove("CRDTDIR_DEVICE")
            .env_remove("CRDTDIR_STORE")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["append", "delete", "/nope"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        !nameless.join("device").exists(),
        "a refused patch named the device"
    );
    let out = run(&["append", "set", "/b", "2"]);
    assert!(out.status.success(), "{out:?}");
    assert!(nameless.join("device").is_file());
}

/// `init` of a new folder given as a bare relative name (its parent is "").
#[test]
fn init_of_a_relative_folder_works() {
    let dir = tempfile::tempdir().unwrap();
    let me = Dev::new(dir.path(), "laptop");
    let out = me
        .cmd(Path::new("rel"), &["init"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = me
        .cmd(Path::new("rel"), &["append", "set", "/a", "1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(dir.path().join("rel/crdtdir.store").is_file());
}

/// Regression (issue: "a damaged or missing marker makes every read fail"): a device that
/// knows the folder keeps serving its last view with one warning line; writes are refused
/// (exit 3) and change nothing; `repair` puts a missing marker back byte for byte.
#[test]
fn a_damaged_or_missing_marker_keeps_the_view_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    let original = std::fs::read(store.join("crdtdir.store")).unwrap();
    for damage in ["truncated", "missing", "fifo"] {
        let expected = me.ok(&store, &["merge"]);
        std::fs::remove_file(store.join("crdtdir.store")).unwrap();
        match damage {
            "truncated" => std::fs::write(store.join("crdtdir.store"), &original[..10]).unwrap(),
            "fifo" => {
                let status = Command::new("mkfifo")
                    .arg(store.join("crdtdir.store"))
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            _ => {}
        }
        let out = me.run(&store, &["merge"]);
        assert!(out.status.success(), "{damage}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{damage}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{damage}: {stderr}");
        assert!(stderr.contains("crdtdir.store"), "{damage}: {stderr}");
        let before = (tree(&store), tree(&me.state));
        let out = me.run(&store, &["append", "set", "/b", "2"]);
        assert_eq!(out.status.code(), Some(3), "{damage}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("marker"));
        assert_same(&before.0, &tree(&store), damage);
        assert_same(&before.1, &tree(&me.state), damage);
        if damage != "missing" {
            std::fs::remove_file(store.join("crdtdir.store")).unwrap();
        }
        let repaired: serde_json::Value =
            serde_json::from_str(&me.ok(&store, &["repair"])).unwrap();
        assert_eq!(repaired["marker_restored"], true, "{damage}");
        assert_eq!(
            std::fs::read(store.join("crdtdir.store")).unwrap(),
            original
        );
        me.ok(&store, &["append", "set", &format!("/{damage}"), "1"]);
    }
}

/// A store that needs a newer crdtdir: reads work, writes are refused with exit 3.
#[test]
fn unknown_features_and_newer_formats_are_refused_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    std::fs::write(store.join("features/multi-doc"), b"").unwrap();
    let before = (tree(&store), tree(&me.state));
    let out = me.run(&store, &["append", "set", "/a", "2"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a newer crdtdir"));
    assert_same(&before.0, &tree(&store), "a refused append");
    assert_same(&before.1, &tree(&me.state), "a refused append");
    assert_eq!(me.ok(&store, &["merge"]), "{\"a\":1}\n");
    std::fs::remove_file(store.join("features/multi-doc")).unwrap();

    // Format version 2 marker, written as a newer build would.
    let mut marker = Vec::new();
    let old: ciborium::Value =
        ciborium::from_reader(&std::fs::read(store.join("crdtdir.store")).unwrap()[..]).unwrap();
    let id = old
        .as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_text() == Some("store"))
        .unwrap()
        .1
        .clone();
    ciborium::into_writer(
        &ciborium::Value::Map(vec![
            (
                ciborium::Value::Text("format".into()),
                ciborium::Value::Integer(2.into()),
            ),
            (ciborium::Value::Text("store".into()), id),
        ]),
        &mut marker,
    )
    .unwrap();
    std::fs::write(store.join("crdtdir.store"), marker).unwrap();
    let before = (tree(&store), tree(&me.state));
    let out = me.run(&store, &["append", "set", "/a", "2"]);
    assert_eq!(out.status.code(), Some(3));
    assert_same(&before.0, &tree(&store), "a refused append");
    assert_same(&before.1, &tree(&me.state), "a refused append");
    assert_eq!(me.ok(&store, &["merge"]), "{\"a\":1}\n");
}

/// Several processes of one device append at once: the state lock serialises them, so no
/// (actor, seq) is handed out twice and every append lands.
#[test]
fn concurrent_processes_of_one_device_never_share_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    let children: Vec<_> = (0..8)
        .map(|_| {
            me.cmd(&store, &["append", "increment", "/n", "1"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let files = op_files(&store);
    assert_eq!(files.len(), 8);
    let mut slots: Vec<String> = files
        .iter()
        .map(|f| f.rsplit_once('-').unwrap().0.to_string())
        .collect();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), 8, "an (actor, seq) was used twice: {files:?}");
    assert_eq!(me.ok(&store, &["merge"]), "{\"n\":8}\n");
}

/// A crash (abort) after each step of a write: the store stays readable, nothing
/// acknowledged is lost, no seq is reused, and the owner cleans up its temp file.
/// The actor of the one op file an `append` printed.
fn written_actor(append_output: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(append_output).unwrap();
    v["written"][0]["actor"].as_str().unwrap().to_string()
}

#[test]
fn a_crash_at_every_step_of_a_write_loses_nothing_acknowledged_and_reuses_no_seq() {
    for step in ["op-staged", "op-kept", "record-written", "op-published"] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        let me = Dev::new(dir.path(), "laptop");
        let other = Dev::new(dir.path(), "phone");
        me.ok(&store, &["init"]);
        let actor = written_actor(&me.ok(&store, &["append", "set", "/acked", "1"]));
        let out = me
            .cmd(&store, &["append", "set", "/crashed", "1"])
            .env("CRDTDIR_CRASH_AT", step)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{step}: the crash point was not reached"
        );
        // Readers are never disturbed by what the crash left.
        let view: serde_json::Value = serde_json::from_str(&other.ok(&store, &["merge"])).unwrap();
        assert_eq!(view["acked"], 1, "{step}");
        assert_eq!(
            view.get("crashed").is_some(),
            step == "op-published",
            "{step}: {view}"
        );
        // The next write goes on with the same actor: before the record, the seq is used
        // again; after it, the change the record names is published from the outbox.
        let after = me.ok(&store, &["append", "set", "/after", "1"]);
        assert_eq!(written_actor(&after), actor, "{step}: the actor is kept");
        let status: serde_json::Value =
            serde_json::from_str(&other.ok(&store, &["status", "--json"])).unwrap();
        assert_eq!(status["forks"], serde_json::json!([]), "{step}");
        assert_eq!(status["quarantined"], serde_json::json!([]), "{step}");
        assert_eq!(status["waiting"], serde_json::json!([]), "{step}");
        assert_eq!(
            status["problems"],
            serde_json::json!([]),
            "{step}: the owner removes its stale temp"
        );
        let view: serde_json::Value = serde_json::from_str(&other.ok(&store, &["merge"])).unwrap();
        assert_eq!(
            (view["acked"].clone(), view["after"].clone()),
            (1.into(), 1.into()),
            "{step}"
        );
        assert_eq!(
            view.get("crashed").is_some(),
            matches!(step, "record-written" | "op-published"),
            "{step}: a change the record names is never lost: {view}"
        );
    }
}

/// Regression (issue: "a device's own newest op file deleted by a sync tool is lost"):
/// `rclone bisync --resync` (or a restore) deletes files a device just wrote. The next write
/// switched to a fresh actor, the change was gone, and later changes of the actor waited
/// forever. Now the device publishes its own files again, same bytes and name, and keeps its
/// actor; `repair` does the same without writing a change.
#[test]
fn own_op_files_a_sync_tool_deleted_are_published_again_with_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    let actor = written_actor(&me.ok(&store, &["append", "set", "/a", "1"]));
    me.ok(&store, &["append", "set", "/b", "2"]);
    me.ok(&store, &["append", "set", "/c", "3"]);
    let files = op_files(&store);
    assert_eq!(files.len(), 3, "{files:?}");
    let before = tree(&store.join("ops"));
    // The middle one and the newest one vanish.
    for rel in [&files[1], &files[2]] {
        std::fs::remove_file(store.join(rel)).unwrap();
    }
    // A device that never saw them cannot have them yet.
    let fresh = Dev::new(dir.path(), "fresh");
    let view: serde_json::Value = serde_json::from_str(&fresh.ok(&store, &["merge"])).unwrap();
    assert_eq!(view, serde_json::json!({"a": 1}));

    let out = me.run(&store, &["append", "set", "/d", "4"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("published them again"), "{stderr}");
    assert!(!stderr.contains("fresh actor"), "{stderr}");
    assert_eq!(written_actor(&String::from_utf8_lossy(&out.stdout)), actor);
    let after = tree(&store.join("ops"));
    for (path, bytes) in &before {
        assert_eq!(
            after.get(path),
            Some(bytes),
            "{path} is back, byte for byte"
        );
    }
    let view: serde_json::Value = serde_json::from_str(&fresh.ok(&store, &["merge"])).unwrap();
    assert_eq!(view, serde_json::json!({"a": 1, "b": 2, "c": 3, "d": 4}));

    // Gone again: `repair` puts it back without writing a change.
    std::fs::remove_file(store.join(&files[2])).unwrap();
    let repaired: serde_json::Value = serde_json::from_str(&me.ok(&store, &["repair"])).unwrap();
    assert_eq!(repaired["republished"], serde_json::json!([files[2]]));
    assert_eq!(repaired["snapshot"], serde_json::Value::Null);
    assert_eq!(op_files(&store).len(), 4);
}

/// Regression (issue: "a device that cannot write again"): a state dir restored from a backup
/// made before this device compacted. The record is behind, but compaction took the op files
/// that proved it: every append failed with "internal error (a bug)". The merged document
/// knows the actor's seqs: the device takes a fresh actor and writes.
#[test]
fn a_state_dir_restored_from_before_a_compaction_writes_with_a_fresh_actor() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    let backup = dir.path().join("backup");
    copy_tree(&me.state, &backup);
    me.ok(&store, &["append", "set", "/b", "2"]);
    me.ok(&store, &["compact", "--yes"]);
    assert!(op_files(&store).is_empty());
    std::fs::remove_dir_all(&me.state).unwrap();
    copy_tree(&backup, &me.state);
    let out = me.run(&store, &["append", "set", "/c", "3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("fresh actor"), "{stderr}");
    let other = Dev::new(dir.path(), "phone");
    let view: serde_json::Value = serde_json::from_str(&other.ok(&store, &["merge"])).unwrap();
    assert_eq!(view, serde_json::json!({"a": 1, "b": 2, "c": 3}));
    let status: serde_json::Value =
        serde_json::from_str(&other.ok(&store, &["status", "--json"])).unwrap();
    assert_eq!(status["forks"], serde_json::json!([]));
}

fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in tree(from) {
        let target = to.join(&rel);
        if rel.ends_with('/') {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(&target, bytes).unwrap();
        }
    }
}

#[test]
fn status_lists_problem_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    let op = op_files(&store).remove(0);
    let conflict = op.replace(".op", ".sync-conflict-20240101-000000-ABC.op");
    std::fs::copy(store.join(&op), store.join(&conflict)).unwrap();
    let out = me.run(&store, &["merge"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 file(s) skipped"));
    let status = me.ok(&store, &["status"]);
    assert!(
        status.contains(&conflict) && status.contains("conflict copy"),
        "{status}"
    );
}

#[test]
fn the_demo_shows_two_devices_agreeing() {
    let out = Command::new(BIN)
        .arg("demo")
        .env_remove("CRDTDIR_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("both devices print the same document"),
        "{text}"
    );
}

fn beats(store: &Path) -> Vec<String> {
    files_ending(store, ".beat")
}

/// Heartbeats: each device's own, immutable, replaced (never rewritten) when its view
/// changes, rate-limited otherwise; status tells who has not merged what.
#[test]
fn heartbeats_are_own_immutable_files_and_status_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (laptop, phone) = (
        Dev::new(dir.path(), "laptop"),
        Dev::new(dir.path(), "phone"),
    );
    laptop.ok(&store, &["init"]);
    laptop.ok(&store, &["append", "set", "/a", "1"]);
    let first = beats(&store);
    assert_eq!(first.len(), 1, "{first:?}");
    let actor_dir = first[0].split('/').nth(1).unwrap().to_string();
    assert!(
        op_files(&store).iter().all(|p| p.contains(&actor_dir)),
        "beats live under the writer's actor"
    );
    let meta = std::fs::metadata(store.join(&first[0])).unwrap();
    assert!(meta.permissions().readonly());
    // Nothing new: the beat stays as it is (rate-limited), byte for byte.
    let bytes = std::fs::read(store.join(&first[0])).unwrap();
    laptop.ok(&store, &["merge"]);
    assert_eq!(beats(&store), first);
    assert_eq!(std::fs::read(store.join(&first[0])).unwrap(), bytes);
    // A new view: a new beat with a higher counter, and the old one is gone.
    laptop.ok(&store, &["append", "set", "/b", "2"]);
    let second = beats(&store);
    assert_eq!(second.len(), 1);
    assert_ne!(second, first);
    assert!(
        second[0] > first[0],
        "counters only increase: {second:?} after {first:?}"
    );

    // The phone reads, so it beats too, under an actor it then writes with.
    phone.ok(&store, &["merge"]);
    assert_eq!(beats(&store).len(), 2);
    laptop.ok(&store, &["append", "set", "/c", "3"]);
    laptop.ok(&store, &["append", "set", "/d", "4"]);
    let status: serde_json::Value =
        serde_json::from_str(&laptop.ok(&store, &["status", "--json"])).unwrap();
    let presence = status["presence"].as_array().unwrap();
    assert_eq!(presence.len(), 1, "{status}");
    assert_eq!(presence[0]["name"], "phone");
    assert_eq!(presence[0]["online"], true);
    assert_eq!(presence[0]["unmerged"], 2);
    let out = phone.run(&store, &["append", "set", "/e", "5"]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "no new actor needed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let phone_actor = presence[0]["actors"][0].as_str().unwrap();
    assert!(op_files(&store).iter().any(|p| p.contains(phone_actor)));
    let text = laptop.ok(&store, &["status"]);
    assert!(
        text.contains("phone") && text.contains("has not merged 0 of your changes"),
        "{text}"
    );
}

/// Compaction of a store with documents, crashed after each of its steps: the folder still
/// merges to exactly the documents it had, for the compactor and for a device that never
/// saw the op files, and compacting again succeeds and folds every document.
#[test]
fn a_crash_at_every_step_of_compaction_loses_nothing() {
    for step in [
        "snapshot-staged",
        "snapshot-published",
        "retained",
        "recorded",
        "deleting",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        let me = Dev::new(dir.path(), "laptop");
        me.ok(&store, &["init"]);
        for i in 0..5 {
            me.ok(
                &store,
                &["append", "set", &format!("/k{i}"), &i.to_string()],
            );
        }
        let mut ids = Vec::new();
        for n in 0..2 {
            let out = me.run_with_input(
                &store,
                &["docs", "new", "--from", "-"],
                &format!(r#"{{"title": "note {n}", "items": []}}"#),
            );
            assert!(out.status.success(), "{out:?}");
            let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let id = made["id"].as_str().unwrap().to_string();
            me.ok(&store, &["--doc", &id, "append", "insert", "/items/-", "1"]);
            ids.push(id);
        }
        let docs = |dev: &Dev| -> Vec<String> {
            ids.iter()
                .map(|id| dev.ok(&store, &["--doc", id, "merge"]))
                .collect()
        };
        let docs_before = docs(&me);
        let before = me.ok(&store, &["merge"]);
        let out = me
            .cmd(&store, &["compact", "--yes"])
            .env("CRDTDIR_CRASH_AT", step)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{step}: the crash point was not reached"
        );
        let fresh = Dev::new(dir.path(), "fresh");
        assert_eq!(fresh.ok(&store, &["merge"]), before, "{step}: a new device");
        assert_eq!(
            docs(&fresh),
            docs_before,
            "{step}: a new device's documents"
        );
        assert_eq!(me.ok(&store, &["merge"]), before, "{step}: the compactor");
        assert_eq!(docs(&me), docs_before, "{step}: the compactor's documents");
        // The fresh device's beat is recent. Once this device has seen it and it has not
        // changed for longer than the threshold, the fresh device counts as offline.
        me.ok(&store, &["status"]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        me.ok(&store, &["compact", "--yes", "--threshold", "0"]);
        assert!(op_files(&store).is_empty(), "{step}");
        let later = Dev::new(dir.path(), "later");
        assert_eq!(later.ok(&store, &["merge"]), before, "{step}: after");
        assert_eq!(docs(&later), docs_before, "{step}: the documents after");
    }
}

/// The snapshot of a compaction that folded documents is queryable with the real `sqlite3`:
/// a row per document, with its id and JSON.
#[test]
fn a_compacted_stores_documents_are_queryable_with_sqlite3() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    let out = me.run_with_input(
        &store,
        &["docs", "new", "--from", "-"],
        r#"{"title": "Groceries", "items": ["milk"]}"#,
    );
    assert!(out.status.success(), "{out:?}");
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = made["id"].as_str().unwrap().to_string();
    let done: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["compact", "--yes"])).unwrap();
    let snapshot = store.join(done["snapshot"].as_str().unwrap());
    let out = std::process::Command::new("sqlite3")
        .args(["-readonly", snapshot.to_str().unwrap()])
        .arg("select id, json from documents")
        .output()
        .expect("sqlite3 runs (.ci/run installs it)");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (got_id, json) = text.trim().split_once('|').expect("id|json");
    assert_eq!(got_id, id);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(json).unwrap(),
        serde_json::json!({"title": "Groceries", "items": ["milk"]})
    );
    let out = std::process::Command::new("sqlite3")
        .args(["-readonly", snapshot.to_str().unwrap()])
        .arg("select count(*) from folded_doc_op_files")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "1");
}

/// Regression (issue: "compaction deletes emptied actor folders"): Unison then skipped a
/// returning device's new files in such a folder as "deleted vs changed" forever. Compaction
/// empties folders but never removes one.
#[test]
fn compaction_empties_actor_folders_but_never_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    let actor = written_actor(&me.ok(&store, &["append", "set", "/a", "1"]));
    me.ok(&store, &["compact", "--yes"]);
    assert!(op_files(&store).is_empty());
    let folder = store.join("ops").join(&actor);
    assert!(folder.is_dir(), "{} was removed", folder.display());
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
}

/// Regression (issue: "`cp -r` of a store shares its store id"): the copy and the original
/// shared one cache and writer record on a device, and their documents cross-contaminated.
/// A second folder of one store is refused with one line (exit 3), nothing written; a store
/// folder that moved is simply used at its new place.
#[test]
fn a_copied_store_folder_is_refused_and_a_moved_one_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("notes");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    let copy = dir.path().join("notes-copy");
    copy_tree(&store, &copy);
    let (folder_before, state_before) = (tree(&copy), tree(&me.state));
    for args in [&["merge"][..], &["append", "set", "/b", "2"], &["status"]] {
        let out = me.run(&copy, args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let (error, hint) = error_and_hint(&stderr);
        assert!(error.contains("is a copy of the store at"), "{stderr}");
        assert!(hint.is_some_and(|h| h.contains("init --from")), "{stderr}");
    }
    assert_same(&folder_before, &tree(&copy), "the copy");
    assert_same(&state_before, &tree(&me.state), "the state dir");

    // The advice works, word for word: read the copy as a read-only device with a state
    // dir of its own (the copy stays as it was), then start a new store from its JSON.
    let out = me.run(&copy, &["merge"]);
    let advice = String::from_utf8_lossy(&out.stderr);
    assert!(
        advice.contains(r#"crdtdir --read-only --state-dir "$(mktemp -d)" merge --out FILE.json"#),
        "{advice}"
    );
    let fresh_state = tempfile::tempdir().unwrap();
    let json = dir.path().join("copy.json");
    let read = me
        .cmd(
            &copy,
            &["--read-only", "merge", "--out", json.to_str().unwrap()],
        )
        .env("CRDTDIR_STATE_DIR", fresh_state.path())
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_same(&folder_before, &tree(&copy), "the copy, read");
    let new_store = dir.path().join("new-notes");
    me.ok(&new_store, &["init", "--from", json.to_str().unwrap()]);
    assert_eq!(me.ok(&new_store, &["merge"]).trim(), r#"{"a":1}"#);

    // Moving the folder is not copying it.
    let moved = dir.path().join("moved");
    std::fs::rename(&store, &moved).unwrap();
    me.ok(&moved, &["append", "set", "/c", "3"]);
    assert_eq!(me.ok(&moved, &["merge"]).trim(), r#"{"a":1,"c":3}"#);
}

/// Refusals change nothing on disk, not even a heartbeat.
#[test]
fn compaction_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (me, phone) = (
        Dev::new(dir.path(), "laptop"),
        Dev::new(dir.path(), "phone"),
    );
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    phone.ok(&store, &["merge"]);
    me.ok(&store, &["merge"]);
    let before = tree(&store);
    // The phone's beat is fresh: it looks online.
    let out = me.run(&store, &["compact", "--yes"]);
    assert_eq!(out.status.code(), Some(5), "compaction refused: exit 5");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("phone") && err.contains("online"), "{err}");
    assert_same(&before, &tree(&store), "refused: another device online");
    // Alone, but no terminal and no --yes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = me.run(&store, &["compact", "--threshold", "0"]);
    assert_eq!(out.status.code(), Some(5), "compaction refused: exit 5");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert_same(&before, &tree(&store), "refused: no confirmation");
}

/// The snapshot opens in plain `sqlite3`, read-only: intact, not WAL, the data readable.
/// Runs with CRDTDIR_E2E=1 (CI installs sqlite3); otherwise says it was skipped.
#[test]
fn the_snapshot_opens_in_the_sqlite3_shell() {
    if std::env::var("CRDTDIR_E2E").as_deref() != Ok("1") {
        eprintln!("skipped: set CRDTDIR_E2E=1 (with sqlite3 installed) to run it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/title", r#""Groceries""#]);
    let ops = op_files(&store).len().to_string();
    me.ok(&store, &["compact", "--yes"]);
    let snap = tree(&store)
        .into_keys()
        .find(|k| k.ends_with(".sqlite"))
        .unwrap();
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(store.join(&snap))
        .arg("PRAGMA integrity_check; PRAGMA journal_mode; SELECT json FROM document; SELECT count(*) FROM folded_op_files;")
        .output()
        .expect("sqlite3 is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        ["ok", "delete", r#"{"title":"Groceries"}"#, ops.as_str()],
        "{text}"
    );
    assert!(tree(&store)
        .keys()
        .all(|k| !k.ends_with("-wal") && !k.ends_with("-shm") && !k.ends_with("-journal")));
}

/// Reads one line from a child's stdout, failing after `secs` seconds.
fn line_within(lines: &std::sync::mpsc::Receiver<String>, secs: u64) -> serde_json::Value {
    let line = lines
        .recv_timeout(std::time::Duration::from_secs(secs))
        .expect("a watch line in time");
    serde_json::from_str(&line).unwrap()
}

/// Spawns `crdtdir watch` with its stdout lines on a channel.
fn spawn_watch(
    dev: &Dev,
    store: &Path,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut all = vec!["watch"];
    all.extend_from_slice(args);
    let mut child = dev
        .cmd(store, &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// `crdtdir watch` prints one JSON line per merged batch (another device's append shows as
/// its patches; `--doc` prints the document instead), and SIGTERM ends it with exit 0 and
/// no temp file left.
#[test]
fn watch_prints_a_line_per_batch_and_ends_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (a, b) = (Dev::new(dir.path(), "a"), Dev::new(dir.path(), "b"));
    a.ok(&store, &["init"]);
    for (args, signal) in [(&[][..], "TERM"), (&["--whole"][..], "INT")] {
        let (mut child, lines) = spawn_watch(&a, &store, args);
        let first = line_within(&lines, 20);
        assert_eq!(first["initial"], true, "{first}");
        let out = b.ok(&store, &["append", "increment", "/n", "3"]);
        let change: serde_json::Value = serde_json::from_str(&out).unwrap();
        let line = line_within(&lines, 20);
        assert_eq!(line["changes"][0]["device"], "b", "{line}");
        assert_eq!(line["changes"][0]["hash"], change["change"], "{line}");
        if args.is_empty() {
            assert_eq!(line["patches"][0]["op"], "put", "{line}");
            assert_eq!(line["patches"][0]["path"], "/n", "{line}");
        } else {
            assert!(line.get("patches").is_none(), "{line}");
            assert!(line["doc"]["n"].is_number(), "{line}");
        }
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "SIG{signal}: {status:?}");
        let temps: Vec<String> = tree(&store)
            .into_keys()
            .filter(|k| k.contains(".crdtdir-"))
            .collect();
        assert!(temps.is_empty(), "{temps:?}");
    }
}

/// A closed stdout (`crdtdir watch | head -1`) ends the watch quietly, with exit 0.
#[test]
fn watch_ends_quietly_when_its_reader_goes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (a, b) = (Dev::new(dir.path(), "a"), Dev::new(dir.path(), "b"));
    a.ok(&store, &["init"]);
    let mut child = a
        .cmd(&store, &["watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    use std::io::Read;
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    // The next event's line meets the closed pipe.
    let started = std::time::Instant::now();
    let status = loop {
        b.ok(&store, &["append", "increment", "/n"]);
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed().as_secs() < 30, "watch did not end");
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(!stderr.contains("internal error"), "{stderr}");
}

/// A read-only device (`--read-only`, or `CRDTDIR_READ_ONLY=1`) merges, gets, shows status,
/// logs and watches, and writes nothing at all in the folder; append, compact and repair are
/// refused with exit 3, and so is init.
#[test]
fn a_read_only_device_writes_nothing_in_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (a, viewer) = (Dev::new(dir.path(), "a"), Dev::new(dir.path(), "viewer"));
    a.ok(&store, &["init"]);
    let out: serde_json::Value =
        serde_json::from_str(&a.ok(&store, &["append", "set", "/n", "1"])).unwrap();
    let a_actor = out["written"][0]["actor"].as_str().unwrap().to_string();
    let before = tree(&store);
    for args in [
        &["--read-only", "merge"][..],
        &["--read-only", "get", "/n"],
        &["--read-only", "status"],
        &["--read-only", "status", "--json"],
        &["--read-only", "log"],
    ] {
        viewer.ok(&store, args);
    }
    let (mut child, lines) = spawn_watch(&viewer, &store, &["--read-only"]);
    assert_eq!(line_within(&lines, 20)["initial"], true);
    a.ok(&store, &["append", "set", "/n", "2"]);
    let line = line_within(&lines, 20);
    assert_eq!(line["patches"][0]["path"], "/n", "{line}");
    let _ = child.kill();
    let _ = child.wait();
    let before = {
        // Only a's new change (and its beat) were added.
        let mut b = before;
        for (k, v) in tree(&store) {
            if k.contains(&a_actor) {
                b.entry(k).or_insert(v);
            }
        }
        b
    };
    for args in [
        &["--read-only", "append", "set", "/n", "3"][..],
        &["--read-only", "compact", "--yes"],
        &["--read-only", "repair"],
    ] {
        let out = viewer.run(&store, args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("read-only"),
            "{out:?}"
        );
    }
    let out = viewer
        .cmd(&store, &["append", "set", "/n", "3"])
        .env("CRDTDIR_READ_ONLY", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let after = tree(&store);
    let viewer_files: Vec<&String> = after
        .keys()
        .filter(|k| !before.contains_key(*k) || k.contains(".crdtdir-"))
        .collect();
    assert!(viewer_files.is_empty(), "the viewer wrote {viewer_files:?}");
    let out = viewer.run(&dir.path().join("new"), &["--read-only", "init"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(!dir.path().join("new").exists());
}

/// Scripts: a closed pipe ends a command quietly (exit 0), values and texts may start with
/// `-`, a value may come from a file or stdin, `merge --out` replaces its file whole,
/// `--version` names the store format, and unknown patch members are ignored (RFC 6902).
#[test]
fn scripts_get_what_they_expect() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let a = Dev::new(dir.path(), "a");
    a.ok(&store, &["init"]);
    a.ok(&store, &["append", "set", "/n", "-1"]);
    a.ok(&store, &["append", "set", "/t", r#""""#]);
    a.ok(&store, &["append", "splice", "/t", "0", "0", "-x"]);
    a.ok(&store, &["append", "set", "/l", "[]"]);
    a.ok(&store, &["append", "insert", "/l/-", "-2"]);
    let big = dir.path().join("big.json");
    std::fs::write(&big, format!("\"{}\"\n", "y".repeat(300_000))).unwrap();
    a.ok(
        &store,
        &[
            "append",
            "set",
            "/big",
            "--scalar",
            "--value-file",
            big.to_str().unwrap(),
        ],
    );
    let mut c = a.cmd(&store, &["append", "set", "/s", "--value-file", "-"]);
    c.stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"{\"k\": true}")
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    let patch = dir.path().join("p.json");
    std::fs::write(
        &patch,
        r#"[{"op":"add","path":"/m","value":1,"comment":"members an op does not define are ignored"}]"#,
    )
    .unwrap();
    a.ok(&store, &["append", "--patch", patch.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_str(&a.ok(&store, &["merge"])).unwrap();
    assert_eq!(doc["n"], -1);
    assert_eq!(doc["t"], "-x");
    assert_eq!(doc["l"], serde_json::json!([-2]));
    assert_eq!(doc["s"], serde_json::json!({"k": true}));
    assert_eq!(doc["m"], 1);
    assert_eq!(doc["big"].as_str().unwrap().len(), 300_000);
    // merge --out replaces the file whole, and leaves no temp beside it.
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("doc.json");
    std::fs::write(&out, "old").unwrap();
    a.ok(&store, &["merge", "--out", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        a.ok(&store, &["merge"])
    );
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);
    // A reader that goes away: no error, no "internal error".
    for args in [&["merge"][..], &["status"], &["log"], &["status", "--json"]] {
        let mut child = a
            .cmd(&store, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
    }
    let version =
        String::from_utf8(Command::new(BIN).arg("--version").output().unwrap().stdout).unwrap();
    assert!(version.contains("store format 1"), "{version}");
}

/// A document nested deeper than serde_json's parsing limit (128) still prints, with
/// `merge`, `merge --pretty` and `get`.
#[test]
fn a_deeply_nested_document_still_prints() {
    use crdtdir::automerge::transaction::Transactable;
    use crdtdir::automerge::{ObjType, ROOT};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let a = Dev::new(dir.path(), "a");
    let lib = crdtdir::Store::init(
        &store,
        crdtdir::Options::new().state_dir(&a.state).device("a"),
        None,
    )
    .unwrap();
    lib.change(|tx| {
        let mut obj = ROOT;
        for _ in 0..300 {
            obj = tx.put_object(&obj, "a", ObjType::Map)?;
        }
        tx.put(&obj, "leaf", 1)?;
        Ok(())
    })
    .unwrap();
    drop(lib);
    let deep = "/a".repeat(300) + "/leaf";
    assert_eq!(a.ok(&store, &["get", &deep]), "1\n");
    for args in [&["merge"][..], &["merge", "--pretty"], &["get"]] {
        let out = a.ok(&store, args);
        assert!(out.contains("\"leaf\""), "{args:?}");
        assert_eq!(out.matches("\"a\"").count(), 300, "{args:?}");
    }
}

/// One JSON policy: `--json` makes errors one JSON line on stderr with a stable code and
/// the exit code; `--pretty` indents every command's JSON; `log --json` is JSON lines with
/// RFC 3339 times, `--limit` and `--since`; commit messages show in `log`.
#[test]
fn scripts_get_one_json_policy() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (me, viewer) = (
        Dev::new(dir.path(), "laptop"),
        Dev::new(dir.path(), "viewer"),
    );
    // Errors as JSON, each with its code and exit code; nothing on stdout.
    let error = |dev: &Dev, store: &Path, args: &[&str], code: &str, exit: i32| {
        let out = dev.run(store, args);
        assert_eq!(out.status.code(), Some(exit), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        let v: serde_json::Value = serde_json::from_str(&err).unwrap();
        assert_eq!(v["error"]["code"], code, "{err}");
        assert_eq!(v["error"]["exit"], exit, "{err}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    };
    error(
        &me,
        &dir.path().join("none"),
        &["--json", "merge"],
        "no-store",
        4,
    );
    // What to do next rides in the same line, as "hint".
    let out = me.run(&dir.path().join("none"), &["--json", "merge"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(
        v["error"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("crdtdir init")),
        "{v}"
    );
    error(&me, &store, &["--json", "frobnicate"], "usage", 2);
    me.ok(&store, &["init"]);
    error(
        &me,
        &store,
        &["--json", "append", "set", "/a", "milk"],
        "input",
        1,
    );
    error(
        &me,
        &store,
        &["--json", "append", "delete", "/nope"],
        "patch",
        1,
    );
    error(
        &me,
        &store,
        &["--json", "--read-only", "append", "set", "/a", "1"],
        "read-only",
        3,
    );
    error(&me, &store, &["--json", "compact"], "not-confirmed", 5);
    // Without --json the same error is one plain line.
    let out = me.run(&store, &["append", "delete", "/nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("crdtdir: "));

    me.ok(&store, &["append", "set", "/a", "1"]);
    me.ok(
        &store,
        &["append", "-m", "the second", "set", "/b", "[1,2]"],
    );
    me.ok(
        &store,
        &["append", "--message", "third", "set", "/c", "true"],
    );
    viewer.ok(&store, &["merge"]);
    // --pretty indents every JSON output, and it is the same value.
    for args in [
        &["merge"][..],
        &["get"],
        &["get", "/b"],
        &["status", "--json"],
        &["--json", "status"],
    ] {
        let flat = me.ok(&store, args);
        let mut pretty_args = vec!["--pretty"];
        pretty_args.extend_from_slice(args);
        let pretty = me.ok(&store, &pretty_args);
        assert_eq!(flat.lines().count(), 1, "{args:?}: {flat}");
        assert!(pretty.lines().count() > 1, "{args:?}: {pretty}");
        let (a, b): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(&flat).unwrap(),
            serde_json::from_str(&pretty).unwrap(),
        );
        if args[0] != "status" && args.get(1) != Some(&"status") {
            assert_eq!(a, b, "{args:?}");
        }
    }
    // status --json: the other device's heartbeat with RFC 3339 times.
    let status: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["status", "--json"])).unwrap();
    let seen = status["presence"][0]["seen_at"].as_str().unwrap();
    assert!(is_rfc3339(seen), "{seen}");
    // log --json: JSON lines, oldest first, RFC 3339 times, messages.
    let lines = |args: &[&str]| -> Vec<serde_json::Value> {
        me.ok(&store, args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = lines(&["log", "--json"]);
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|c| is_rfc3339(c["time"].as_str().unwrap())));
    assert_eq!(all[1]["message"], "the second");
    assert_eq!(all[0]["message"], serde_json::Value::Null);
    let last = lines(&["log", "--json", "--limit", "2"]);
    assert_eq!(last, all[1..].to_vec());
    assert_eq!(lines(&["log", "--json", "--since", "1h"]).len(), 3);
    assert_eq!(
        lines(&["log", "--json", "--since", "2999-01-01T00:00:00Z"]).len(),
        0
    );
    assert_eq!(
        lines(&["log", "--json", "--since", "2000-01-01T00:00:00Z"]).len(),
        3
    );
    let text = me.ok(&store, &["log"]);
    assert!(
        text.lines().nth(1).unwrap().ends_with("the second"),
        "{text}"
    );
    let out = me.run(&store, &["log", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `2026-12-01T09:00:00Z`: a date, `T`, a time, `Z`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && s.chars()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19].contains(&i) || c.is_ascii_digit())
}

/// A compaction that would make the store bigger says so: on the question, and with
/// `--yes` as a note; the snapshot of a tiny store uses small pages.
#[test]
fn a_compaction_that_grows_the_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    let out = me.run(&store, &["compact", "--yes"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the store would grow"), "{err}");
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let after = outcome["bytes_after"].as_u64().unwrap();
    assert!(after < 10_000, "a tiny snapshot takes {after} bytes");
}

/// `export` writes the merged document as an .automerge file that Automerge itself loads,
/// with the same heads and content; `export -` writes the same bytes to a pipe; a file
/// that cannot be written is one error line and the store is unchanged.
#[test]
fn export_writes_a_file_automerge_loads() {
    use crdtdir::automerge::{Automerge, ReadDoc, ROOT};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (me, phone) = (
        Dev::new(dir.path(), "laptop"),
        Dev::new(dir.path(), "phone"),
    );
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/title", r#""Groceries""#]);
    phone.ok(&store, &["append", "set", "/n", "7"]);
    let file = dir.path().join("todo.automerge");
    std::fs::write(&file, b"an older export").unwrap();
    let printed: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["export", file.to_str().unwrap()])).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(printed["bytes"], bytes.len());
    let doc = Automerge::load(&bytes).unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["status", "--json"])).unwrap();
    let heads: Vec<String> = doc.get_heads().iter().map(|h| h.to_string()).collect();
    let mut expected: Vec<String> = status["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    expected.sort();
    let mut got = heads.clone();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(
        doc.text(doc.get(ROOT, "title").unwrap().unwrap().1)
            .unwrap(),
        "Groceries"
    );
    assert_eq!(doc.get(ROOT, "n").unwrap().unwrap().0.as_i64(), Some(7));
    // To a pipe: the same bytes.
    let out = me.run(&store, &["export", "-"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, bytes);
    // Nowhere to write: one line, exit 1, the store as it was.
    let before = tree(&store);
    let out = me.run(
        &store,
        &[
            "export",
            dir.path().join("no/such/dir/x.automerge").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    assert_same(&before, &tree(&store), "a failed export");
}

/// Shell completions load in a real bash, and every shell gets a script; the man page is
/// roff, one page per command with --dir.
#[test]
fn completions_and_man_pages() {
    let dir = tempfile::tempdir().unwrap();
    let me = Dev::new(dir.path(), "laptop");
    let nowhere = dir.path().join("no-store");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = me.ok(&nowhere, &["completions", shell]);
        assert!(
            script.contains("crdtdir") && script.contains("append"),
            "{shell}"
        );
    }
    let script = dir.path().join("crdtdir.bash");
    std::fs::write(&script, me.ok(&nowhere, &["completions", "bash"])).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p crdtdir",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("crdtdir"));
    let page = me.ok(&nowhere, &["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH crdtdir"),
        "{}",
        &page[..200.min(page.len())]
    );
    assert!(page.contains("append"));
    let man_dir = dir.path().join("man1");
    me.ok(&nowhere, &["man", "--dir", man_dir.to_str().unwrap()]);
    for page in [
        "crdtdir.1",
        "crdtdir-append.1",
        "crdtdir-export.1",
        "crdtdir-append-set.1",
    ] {
        assert!(man_dir.join(page).exists(), "{page}");
    }
    assert!(!nowhere.exists(), "completions and man touch no store");
}

/// An encrypted store through the binary: a device without the key gets one clear line
/// (exit 3, code `locked`) from every command that needs the plaintext and writes nothing;
/// `key export | key import` (text or words) gives it a byte-identical merge; a wrong key
/// is refused.
#[test]
fn an_encrypted_store_and_its_key_handoff() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (me, phone, other) = (
        Dev::new(dir.path(), "laptop"),
        Dev::new(dir.path(), "phone"),
        Dev::new(dir.path(), "other"),
    );
    let made: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["init", "--encrypt"])).unwrap();
    assert_eq!(made["encrypted"], true);
    me.ok(&store, &["append", "set", "/title", r#""Secret plans""#]);
    me.ok(&store, &["append", "-m", "a message", "set", "/n", "1"]);
    let before = tree(&store);
    for args in [
        &["merge"][..],
        &["get", "/title"],
        &["log"],
        &["append", "set", "/x", "1"],
        &["compact", "--yes"],
        &["export", "-"],
        &["key", "export"],
    ] {
        let out = phone.run(&store, args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let (error, hint) = error_and_hint(&err);
        assert!(error.contains("has no key"), "{args:?}: {err}");
        assert!(
            hint.is_some_and(|h| h.contains("crdtdir key import")),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let status = phone.ok(&store, &["status"]);
    assert!(status.contains("no key"), "{status}");
    assert!(
        status.contains("(name sealed)"),
        "no empty name column: {status}"
    );
    assert_same(&before, &tree(&store), "a device without the key");
    // A key of another store is refused.
    let other_store = dir.path().join("other");
    other.ok(&other_store, &["init", "--encrypt"]);
    let wrong = other.ok(&other_store, &["key", "export"]);
    let out = phone.run_with_input(&store, &["--json", "key", "import"], &wrong);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong-key"));
    // The words, as arguments.
    let words = me.ok(&store, &["key", "export", "--words"]);
    let mut args = vec!["key", "import"];
    args.extend(words.split_whitespace());
    phone.ok(&store, &args);
    assert_eq!(phone.ok(&store, &["merge"]), me.ok(&store, &["merge"]));
    assert_eq!(phone.ok(&store, &["get", "/title"]), "\"Secret plans\"\n");
    phone.ok(&store, &["append", "set", "/from_phone", "true"]);
    assert!(me.ok(&store, &["merge"]).contains("from_phone"));
    // The text form, from stdin, on a third device.
    let text = me.ok(&store, &["key", "export"]);
    assert!(text.starts_with("crdtdir-key-1-"));
    let json: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["--json", "key", "export"])).unwrap();
    assert_eq!(json["key"], text.trim_end());
    let third = Dev::new(dir.path(), "third");
    assert!(third
        .run_with_input(&store, &["key", "import"], &text)
        .status
        .success());
    assert_eq!(third.ok(&store, &["merge"]), me.ok(&store, &["merge"]));
    // Nothing of it is readable in the folder.
    let all: Vec<u8> = tree(&store).into_values().flatten().collect();
    for secret in [
        "Secret plans",
        "laptop",
        "phone",
        "a message",
        &text[14..78],
    ] {
        assert!(
            !all.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret:?} is readable in the folder"
        );
    }
}

/// An encrypted store with `{"a":1}` written by the laptop, and two devices without its key.
fn encrypted_with_three_devices(dir: &Path) -> (PathBuf, Dev, Dev, Dev) {
    let store = dir.join("s");
    let (me, phone, tablet) = (
        Dev::new(dir, "laptop"),
        Dev::new(dir, "phone"),
        Dev::new(dir, "tablet"),
    );
    me.ok(&store, &["init", "--encrypt"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    (store, me, phone, tablet)
}

/// `key export --qr` prints a QR code that a QR reader (rqrr) decodes back to the key text,
/// and that key imports; `key passphrase` and `key import --passphrase` read the passphrase
/// from stdin when it is not a terminal.
#[test]
fn key_as_qr_code_and_by_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let (store, me, phone, tablet) = encrypted_with_three_devices(dir.path());
    let text = me.ok(&store, &["key", "export"]);
    let art = me.ok(&store, &["key", "export", "--qr"]);
    // Each character is two modules: upper and lower half.
    let rows: Vec<Vec<char>> = art.lines().map(|l| l.chars().collect()).collect();
    let width = rows.iter().map(Vec::len).max().unwrap();
    let dark = |x: usize, y: usize| {
        let c = rows
            .get(y / 2)
            .and_then(|r| r.get(x))
            .copied()
            .unwrap_or(' ');
        matches!((c, y % 2), ('█', _) | ('▀', 0) | ('▄', 1))
    };
    const SCALE: usize = 4;
    let mut image =
        rqrr::PreparedImage::prepare_from_bitmap(width * SCALE, rows.len() * 2 * SCALE, |x, y| {
            dark(x / SCALE, y / SCALE)
        });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    let (_, decoded) = grids[0].decode().unwrap();
    assert_eq!(decoded, text.trim_end());
    phone.ok(&store, &["key", "import", &decoded]);
    assert_eq!(phone.ok(&store, &["merge"]), "{\"a\":1}\n");
    // By passphrase, through stdin.
    let feed = |dev: &Dev, args: &[&str], input: &str| dev.run_with_input(&store, args, input);
    let added = feed(&me, &["key", "passphrase"], "a long passphrase here\n");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let wrong = feed(
        &tablet,
        &["key", "import", "--passphrase"],
        "not the passphrase\n",
    );
    assert_eq!(wrong.status.code(), Some(3));
    let right = feed(
        &tablet,
        &["key", "import", "--passphrase"],
        "a long passphrase here\n",
    );
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    assert_eq!(tablet.ok(&store, &["merge"]), "{\"a\":1}\n");
}

/// `crdtdir pack` through the binary: this device's op files become one pack, the loose
/// files go once the other device's beat has them, `status` counts it all, a read-only
/// device is refused, and every device still merges the same.
#[test]
fn pack_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (a, b) = (Dev::new(dir.path(), "a"), Dev::new(dir.path(), "b"));
    a.ok(&store, &["init"]);
    for i in 0..5 {
        a.ok(
            &store,
            &["append", "set", &format!("/k{i}"), &i.to_string()],
        );
    }
    let status = a.ok(&store, &["status"]);
    assert!(status.contains("packing would save"), "{status}");
    let before = tree(&store);
    let refused = a.run(&store, &["--read-only", "pack"]);
    assert_eq!(refused.status.code(), Some(3));
    assert_same(&before, &tree(&store), "read-only pack");
    // b merges (and beats): a may delete its loose files at once.
    let want = b.ok(&store, &["merge"]);
    b.ok(&store, &["status"]);
    let out: serde_json::Value = serde_json::from_str(&a.ok(&store, &["--json", "pack"])).unwrap();
    assert_eq!(out["packed"], 5, "{out}");
    assert_eq!(out["deleted"], 5, "{out}");
    assert_eq!(op_files(&store).len(), 0);
    assert_eq!(files_ending(&store, ".pack").len(), 1);
    let status: serde_json::Value =
        serde_json::from_str(&a.ok(&store, &["--json", "status"])).unwrap();
    assert_eq!(status["files"]["packs"], 1, "{status}");
    assert_eq!(status["files"]["packed"], 5, "{status}");
    assert_eq!(status["files"]["ops"], 0, "{status}");
    let c = Dev::new(dir.path(), "c");
    assert_eq!(c.ok(&store, &["merge"]), want);
    assert_eq!(b.ok(&store, &["merge"]), want);
    let text = a.ok(&store, &["pack"]);
    assert!(text.contains("packed 0 op file(s)"), "{text}");
}

/// `crdtdir checkpoint` through the binary: a new device's first `get` starts from it (and
/// says so with -vv), reads what came after, and prints what a device reading every op file
/// prints; a read-only device is refused and nothing changes; a second checkpoint with
/// nothing new publishes nothing; a real crash at each step leaves a folder that reads the
/// same.
#[test]
fn checkpoint_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (a, b) = (Dev::new(dir.path(), "a"), Dev::new(dir.path(), "b"));
    a.ok(&store, &["init"]);
    for i in 0..6 {
        a.ok(
            &store,
            &["append", "set", &format!("/k{i}"), &i.to_string()],
        );
    }
    let before = tree(&store);
    let refused = a.run(&store, &["--read-only", "checkpoint"]);
    assert_eq!(refused.status.code(), Some(3));
    assert_same(&before, &tree(&store), "read-only checkpoint");
    let out: serde_json::Value =
        serde_json::from_str(&a.ok(&store, &["--json", "checkpoint"])).unwrap();
    let path = out["checkpoint"].as_str().unwrap().to_string();
    assert_eq!(out["changes"], 6, "{out}");
    assert_eq!(out["covered"], 6, "{out}");
    assert!(store.join(&path).is_file());
    a.ok(&store, &["append", "set", "/late", "1"]);
    let want = a.ok(&store, &["merge"]);
    let fresh = b.run(&store, &["-vv", "merge"]);
    assert!(fresh.status.success());
    assert_eq!(String::from_utf8_lossy(&fresh.stdout), want);
    let log = String::from_utf8_lossy(&fresh.stderr);
    assert!(log.contains("from a checkpoint"), "{log}");
    let text = b.ok(&store, &["checkpoint"]);
    assert!(text.starts_with("published checkpoints/"), "{text}");
    let text = a.ok(&store, &["checkpoint"]);
    assert!(text.starts_with("no checkpoint published"), "{text}");
    for step in [
        "checkpoint-staged",
        "checkpoint-published",
        "checkpoint-replaced",
    ] {
        a.ok(&store, &["append", "set", "/n", &format!("\"{step}\"")]);
        let crashed = a
            .cmd(&store, &["checkpoint"])
            .env("CRDTDIR_CRASH_AT", step)
            .output()
            .unwrap();
        assert!(
            !crashed.status.success(),
            "{step}: {}{}",
            String::from_utf8_lossy(&crashed.stdout),
            String::from_utf8_lossy(&crashed.stderr)
        );
        let c = Dev::new(&dir.path().join(step), "c");
        assert_eq!(c.ok(&store, &["merge"]), a.ok(&store, &["merge"]), "{step}");
    }
    a.ok(&store, &["checkpoint"]);
    let temps: Vec<String> = tree(&store)
        .into_keys()
        .filter(|r| r.contains(".crdtdir-"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

/// A real crash (the process aborts) at every step of `crdtdir pack`: readers never see a
/// change go missing, the next `crdtdir pack` finishes the job, and no temp is left.
#[test]
fn a_crash_at_every_packing_step_loses_nothing() {
    for step in [
        "pack-kept",
        "pack-published",
        "loose-deleting",
        "pack-settled",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        let (me, other) = (
            Dev::new(dir.path(), "laptop"),
            Dev::new(dir.path(), "phone"),
        );
        me.ok(&store, &["init"]);
        for i in 0..4 {
            me.ok(&store, &["append", "set", &format!("/k{i}"), "1"]);
        }
        // The phone has it all (and says so in its beat): loose files may go at once.
        let want = other.ok(&store, &["merge"]);
        let out = me
            .cmd(&store, &["pack"])
            .env("CRDTDIR_CRASH_AT", step)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{step}: the crash point was not reached"
        );
        assert_eq!(other.ok(&store, &["merge"]), want, "{step}");
        let fresh = Dev::new(dir.path(), "fresh");
        assert_eq!(fresh.ok(&store, &["merge"]), want, "{step}");
        let done: serde_json::Value =
            serde_json::from_str(&me.ok(&store, &["--json", "pack"])).unwrap();
        assert!(done["republished"].as_array().is_some(), "{done}");
        assert_eq!(op_files(&store).len(), 0, "{step}: {done}");
        assert_eq!(files_ending(&store, ".pack").len(), 1, "{step}");
        assert!(
            tree(&store).keys().all(|p| !p.contains(".crdtdir-")),
            "{step}: a temp is left"
        );
        let again = Dev::new(dir.path(), "again");
        assert_eq!(again.ok(&store, &["merge"]), want, "{step}");
    }
}

/// A laptop and a phone, each with its own synced folder (made by neither yet).
fn laptop_and_phone(dir: &Path) -> (PathBuf, PathBuf, Dev, Dev) {
    (
        dir.join("laptop-sync"),
        dir.join("phone-sync"),
        Dev::new(dir, "laptop"),
        Dev::new(dir, "phone"),
    )
}

/// Copies the op files one folder has and the other lacks, both ways (a sync tool).
fn exchange_ops(a: &Path, b: &Path) {
    for (from, to) in [(a, b), (b, a)] {
        for rel in op_files(from) {
            let target = to.join(&rel);
            if !target.exists() {
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::copy(from.join(&rel), &target).unwrap();
            }
        }
    }
}

/// Two devices rewrite one list with `append set` while apart: the laptop puts "milk" in
/// front, the phone changes "cheese" to "cheddar". Once the files cross both print both
/// edits. (A diff by position printed ["milk","apples","brddarad","cheese"].) Then a `set` of
/// a counter moves it by the difference, so a concurrent increment adds up and it stays a
/// counter; and `--key` matches records by another field.
#[test]
fn append_set_keeps_both_devices_edits_and_counters_stay_counters() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two, laptop, phone) = laptop_and_phone(dir.path());
    let from = dir.path().join("init.json");
    std::fs::write(
        &from,
        r#"{"items": ["apples", "bread", "cheese"],
            "todo": [{"uuid": "u1", "title": "call", "done": false},
                     {"uuid": "u2", "title": "dishes", "note": "", "done": false}]}"#,
    )
    .unwrap();
    laptop.ok(&one, &["init", "--from", from.to_str().unwrap()]);
    laptop.ok(&one, &["append", "increment", "/visits", "2"]);
    copy_tree(&one, &two);
    laptop.ok(
        &one,
        &[
            "append",
            "set",
            "/items",
            r#"["milk","apples","bread","cheese"]"#,
        ],
    );
    phone.ok(
        &two,
        &["append", "set", "/items", r#"["apples","bread","cheddar"]"#],
    );
    laptop.ok(&one, &["append", "set", "/visits", "5"]);
    phone.ok(&two, &["append", "increment", "/visits"]);
    // The laptop rewrites most fields of u2 and puts a record in front of it; the phone
    // ticks u2. Matched by `uuid`, u2 is edited in place and the tick survives (matched by
    // its fields alone, it is no longer u2: deleted and written anew, without the tick).
    laptop.ok(
        &one,
        &[
            "append",
            "set",
            "--key",
            "uuid",
            "/todo",
            r#"[{"uuid": "u1", "title": "call", "done": false},
                {"uuid": "u3", "title": "new", "done": false},
                {"uuid": "u2", "title": "wash every dish", "note": "and pots", "tag": "home",
                 "done": false}]"#,
        ],
    );
    phone.ok(&two, &["append", "set", "/todo/1/done", "true"]);
    exchange_ops(&one, &two);
    let merged = laptop.ok(&one, &["merge"]);
    assert_eq!(merged, phone.ok(&two, &["merge"]));
    let doc: serde_json::Value = serde_json::from_str(&merged).unwrap();
    assert_eq!(
        doc["items"],
        serde_json::json!(["milk", "apples", "bread", "cheddar"])
    );
    assert_eq!(doc["visits"], 6);
    assert_eq!(
        doc["todo"],
        serde_json::json!([
            {"uuid": "u1", "title": "call", "done": false},
            {"uuid": "u3", "title": "new", "done": false},
            {"uuid": "u2", "title": "wash every dish", "note": "and pots", "tag": "home",
             "done": true}])
    );
    // Still a counter.
    phone.ok(&two, &["append", "increment", "/visits"]);
    assert_eq!(phone.ok(&two, &["get", "/visits"]), "7\n");
    // Another kind of value onto a counter: one line, exit 1, nothing written.
    let before = tree(&two);
    let out = phone.run(&two, &["append", "set", "/visits", r#""seven""#]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("a counter takes a whole number"), "{err}");
    assert_same(&before, &tree(&two), "a refused set on a counter");
}

/// `--scalar` and `--text` pick what the strings of a `set` become; without either, a new
/// string is text and an existing string keeps its kind.
#[test]
fn append_set_strings_keep_their_kind_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(
        &store,
        &["append", "set", "--scalar", "/due", r#""2025-01-31""#],
    );
    me.ok(&store, &["append", "set", "/due", r#""2025-02-07""#]);
    // Still a scalar: a splice is refused.
    let out = me.run(&store, &["append", "splice", "/due", "0", "0", "x"]);
    assert_eq!(out.status.code(), Some(1));
    me.ok(
        &store,
        &["append", "set", "--text", "/due", r#""2025-02-08""#],
    );
    me.ok(&store, &["append", "splice", "/due", "0", "0", "due "]);
    assert_eq!(me.ok(&store, &["get", "/due"]), "\"due 2025-02-08\"\n");
    let out = me.run(
        &store,
        &["append", "set", "--scalar", "--text", "/due", "1"],
    );
    assert_eq!(out.status.code(), Some(2));
}

/// `crdtdir watch` lines read back as `crdtdir::Event`s whose patches, applied to the first
/// line's `doc`, give the merged document — in Rust (`JsonPatch::apply_all`) and in Python
/// (`examples/watch_client.py`, the client README shows for other languages).
#[test]
fn watch_lines_rebuild_the_document_in_rust_and_in_python() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (a, b) = (Dev::new(dir.path(), "a"), Dev::new(dir.path(), "b"));
    let from = dir.path().join("init.json");
    std::fs::write(
        &from,
        r#"{"items": ["apples", "bread", "cheese"], "note": "héllo", "m": {"a/b": 1}}"#,
    )
    .unwrap();
    a.ok(&store, &["init", "--from", from.to_str().unwrap()]);
    let (mut child, lines) = spawn_watch(&a, &store, &["--debounce", "0"]);
    let first = line_within(&lines, 20);
    let mut all = vec![first.to_string()];
    let first: crdtdir::Event = serde_json::from_value(first).unwrap();
    assert!(first.initial);
    let mut doc = first.document.expect("the first line carries the document");
    for args in [
        &[
            "append",
            "set",
            "/items",
            r#"["milk","apples","bread","cheddar"]"#,
        ][..],
        &["append", "splice", "/note", "1", "1", "e, wörld: h"],
        &["append", "set", "/m/a~1b", "2"],
        &["append", "increment", "/m/n", "5"],
        &["append", "delete", "/items/1"],
        &[
            "append",
            "set",
            "/m",
            r#"{"a/b": 9, "n": 2, "x": [1, {"y": "z"}]}"#,
        ],
        &["append", "insert", "/items/0", r#""tea""#],
    ] {
        b.ok(&store, args);
    }
    let want: serde_json::Value = serde_json::from_str(&a.ok(&store, &["merge"])).unwrap();
    let started = std::time::Instant::now();
    while doc != want {
        assert!(
            started.elapsed().as_secs() < 30,
            "stuck at {doc} wanting {want}"
        );
        let line = line_within(&lines, 20);
        all.push(line.to_string());
        let event: crdtdir::Event = serde_json::from_value(line).unwrap();
        if event.reset {
            doc = serde_json::json!({});
        }
        crdtdir::JsonPatch::apply_all(&event.patches, &mut doc).unwrap();
    }
    let _ = child.kill();
    let _ = child.wait();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/watch_client.py");
    let mut python = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    {
        use std::io::Write;
        let mut stdin = python.stdin.take().unwrap();
        for line in &all {
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let out = python.wait_with_output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(printed.lines().last().unwrap()).unwrap();
    assert_eq!(last, want);
    assert_eq!(printed.lines().count(), all.len());
}

/// An argument that is not UTF-8 is a usage error (exit 2, one line), with or without
/// `--json`: never a panic. (Looking for `--json` among the arguments panicked.)
#[test]
fn a_non_utf8_argument_is_a_usage_error_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    let bad = std::ffi::OsStr::from_bytes(b"/ti\xfftle");
    for json in [false, true] {
        let mut c = me.cmd(&store, &[]);
        if json {
            c.arg("--json");
        }
        let out = c.args(["append", "delete"]).arg(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        if json {
            let line: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
            assert_eq!(line["error"]["code"], "usage");
        }
    }
}

/// Sync tools' copies of a feature marker mark the feature: rclone bisync renames two
/// devices' identical `features/packs` to `packs..path1` and `packs..path2` (the merge warned
/// "skipped" on every run), OneDrive writes `packs-laptop` (the store became read-only:
/// "needs a newer crdtdir"). A copy of a feature this build does not know still refuses.
#[test]
fn copies_of_feature_markers_neither_warn_nor_lock_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    for i in 0..3 {
        me.ok(&store, &["append", "set", &format!("/k{i}"), "1"]);
    }
    me.ok(&store, &["pack"]);
    let features = store.join("features");
    assert!(features.join("packs").exists());
    std::fs::rename(features.join("packs"), features.join("packs..path1")).unwrap();
    std::fs::copy(features.join("packs..path1"), features.join("packs..path2")).unwrap();
    std::fs::copy(features.join("packs..path1"), features.join("packs-laptop")).unwrap();
    std::fs::copy(
        features.join("packs..path1"),
        features.join("snapshots (1)"),
    )
    .unwrap();
    let out = me.run(&store, &["merge"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "a warning");
    me.ok(&store, &["append", "set", "/k9", "2"]);
    let status: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["--json", "status"])).unwrap();
    let text = status.to_string();
    assert!(!text.contains("packs..path"), "{text}");
    assert!(!text.contains("packs-laptop"), "{text}");
    // A copy of a feature this build does not know: reads work, writes are refused.
    std::fs::write(features.join("zeta..path1"), b"x").unwrap();
    let out = me.run(&store, &["append", "set", "/k9", "3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("zeta"));
}

/// The first use of a state dir by several processes at once (an app starting its watcher
/// while a script merges) succeeds in every one of them: local state files are replaced
/// through temps of their own. (They shared one temp name: one process's rename found the
/// other's temp gone, ENOENT on `folder` or `marker`.)
#[test]
fn concurrent_first_use_of_a_state_dir_succeeds_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    for round in 0..4 {
        let fresh = dir.path().join(format!("fresh-{round}"));
        let children: Vec<std::process::Child> = (0..8)
            .map(|i| {
                let args: &[&str] = if i % 2 == 0 { &["merge"] } else { &["status"] };
                me.cmd(&store, args)
                    .env("CRDTDIR_STATE_DIR", &fresh)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A read-only tmpfs, unmounted when dropped.
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    /// Mounts a tmpfs at `at`, lets `fill` put files in it, and makes it read-only. `None`
    /// where this machine does not let the tests mount (not root).
    fn new(at: &Path, fill: impl FnOnce(&Path)) -> Option<ReadOnlyMount> {
        std::fs::create_dir_all(at).unwrap();
        let mount = |args: &[&str]| {
            Command::new("mount")
                .args(args)
                .arg(at)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !mount(&["-t", "tmpfs", "none"]) {
            return None;
        }
        let guard = ReadOnlyMount(at.to_path_buf());
        fill(at);
        assert!(mount(&["-o", "remount,ro"]), "remount read-only");
        Some(guard)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A state dir that cannot be written (a read-only mount) still reads: `merge`, `get` and
/// `status` work, fresh or after the folder moved (reads wrote the folder claim and
/// failed); a write is refused with one line and changes nothing in the folder.
#[test]
fn a_read_only_state_dir_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    let moved = dir.path().join("moved");
    std::fs::rename(&store, &moved).unwrap();
    for (case, fill) in [("fresh", false), ("moved", true)] {
        let at = dir.path().join(format!("ro-{case}"));
        let state = me.state.clone();
        let Some(_mount) = ReadOnlyMount::new(&at, |at| {
            if fill {
                copy_tree(&state, at);
            }
        }) else {
            eprintln!("not run: this machine does not let tests mount a tmpfs");
            return;
        };
        let ro = Dev {
            state: at.clone(),
            name: "laptop",
        };
        assert_eq!(ro.ok(&moved, &["merge"]), "{\"a\":1}\n", "{case}");
        assert_eq!(ro.ok(&moved, &["get", "/a"]), "1\n", "{case}");
        ro.ok(&moved, &["status"]);
        let before = tree(&moved);
        let out = ro.run(&moved, &["append", "set", "/b", "2"]);
        assert_eq!(out.status.code(), Some(1), "{case}");
        assert_same(&before, &tree(&moved), "a refused write");
    }
}

/// A sync tool that does not carry `devices/` (a `.stignore`): the other device's changes
/// keep arriving but its heartbeats never do, so this device looks alone. `compact` says so
/// (nothing was lost, but "alone" was a guess); with the heartbeats carried, it does not.
#[test]
fn compact_warns_about_devices_that_write_without_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two, laptop, phone) = laptop_and_phone(dir.path());
    laptop.ok(&one, &["init"]);
    copy_tree(&one, &two);
    phone.ok(&two, &["append", "set", "/p", "1"]);
    laptop.ok(&one, &["append", "set", "/l", "1"]);
    // Everything but devices/ crosses.
    exchange_ops(&one, &two);
    let out = laptop.run(&one, &["compact", "--yes"]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("publish no heartbeat (phone"), "{err}");
    assert!(err.contains(".stignore"), "{err}");
    // The heartbeats cross too: no warning.
    phone.ok(&two, &["append", "set", "/p", "2"]);
    exchange_ops(&one, &two);
    copy_tree(&two.join("devices"), &one.join("devices"));
    // The laptop sees the phone's beat, which then does not change for two seconds: the
    // phone is offline at a threshold of 1 s.
    laptop.ok(&one, &["status"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = laptop.run(&one, &["compact", "--yes", "--threshold", "1"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("heartbeat"),
        "{out:?}"
    );
}

/// `crdtdir forget`: a device by name; an unknown name (or this device's own) is one line
/// and exit 1; a read-only device refuses (exit 3); `status` lists the forgotten device no
/// more.
#[test]
fn forget_a_device_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (me, ghost) = (
        Dev::new(dir.path(), "laptop"),
        Dev::new(dir.path(), "ghost"),
    );
    me.ok(&store, &["init"]);
    ghost.ok(&store, &["merge"]);
    assert!(me.ok(&store, &["status"]).contains("ghost"));
    for (name, want) in [
        ("nobody", "no other device here is named"),
        ("laptop", "no other device here is named"),
    ] {
        let before = tree(&store);
        let out = me.run(&store, &["forget", name]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        let (error, hint) = error_and_hint(&err);
        assert!(error.contains(want), "{err}");
        assert!(hint.is_some_and(|h| h.contains("crdtdir status")), "{err}");
        assert_same(&before, &tree(&store), "a refused forget");
    }
    let out = me.run(&store, &["--read-only", "forget", "ghost"]);
    assert_eq!(out.status.code(), Some(3));
    let done: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["forget", "ghost"])).unwrap();
    assert_eq!(done["forgotten"]["name"], "ghost");
    assert!(!me.ok(&store, &["status"]).contains("ghost"));
}

/// `-vv` says what a command did, step by step with timings, on stderr (stdout is the same);
/// without `-v` or `CRDTDIR_LOG` nothing is logged.
#[test]
fn verbose_merge_shows_its_steps_and_quiet_shows_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/items", "[1]"]);
    let quiet = me.run(&store, &["merge"]);
    assert!(quiet.status.success());
    assert!(quiet.stderr.is_empty(), "{quiet:?}");
    let loud = me.run(&store, &["-vv", "merge"]);
    assert!(loud.status.success());
    assert_eq!(loud.stdout, quiet.stdout);
    let log = String::from_utf8(loud.stderr).unwrap();
    for step in ["folder listed", "no merge", "beat", "time.busy="] {
        assert!(log.contains(step), "{step:?} missing in {log}");
    }
    // Nothing new: the heartbeat takes its heads from the saved view and loads no document.
    assert!(log.contains("heads from the saved view"), "{log}");
    assert!(!log.contains("base: the cache files"), "{log}");
    // Nor does `get` of a value that is there; one that is not gets the library's error.
    let got = me.run(&store, &["-vv", "get", "/items/0"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "1");
    let log = String::from_utf8(got.stderr).unwrap();
    assert!(!log.contains("base: the cache files"), "{log}");
    let missing = me.run(&store, &["get", "/items/5"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("/items/5"),
        "{missing:?}"
    );
    // A new change: the cache decides, and the merge says how it merged.
    me.ok(&store, &["append", "set", "/items", "[1, 2]"]);
    let log = String::from_utf8(me.run(&store, &["-vv", "merge"]).stderr).unwrap();
    assert!(log.contains("base: the cache files"), "{log}");
    assert!(log.contains("incremental merge"), "{log}");
    let filtered = me
        .cmd(&store, &["merge"])
        .env("CRDTDIR_LOG", "crdtdir::folder=debug")
        .output()
        .unwrap();
    let log = String::from_utf8(filtered.stderr).unwrap();
    assert!(
        log.contains("folder listed") && !log.contains("base:"),
        "{log}"
    );
}

/// `crdtdir watch` in one terminal and `crdtdir append` in another, both as this device: the
/// first line carries the document, and the append from the other process shows up at once
/// (not at the safety listing a minute later), a string inserted into a list as an empty
/// text and a splice. (The README's watch example itself is run by cli/tests/walkthrough.rs.)
#[test]
fn watch_sees_an_append_from_another_process_of_this_device() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/items", r#"["milk","eggs"]"#]);
    let mut watch = me
        .cmd(&store, &["watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait = std::time::Duration::from_secs(20);
    let first: serde_json::Value = serde_json::from_str(&rx.recv_timeout(wait).unwrap()).unwrap();
    assert_eq!(first["initial"], true);
    assert_eq!(first["doc"], serde_json::json!({"items": ["milk", "eggs"]}));
    let sent = std::time::Instant::now();
    me.ok(&store, &["append", "insert", "/items/-", "\"tea\""]);
    let second: serde_json::Value =
        serde_json::from_str(&rx.recv_timeout(wait).expect("an event at once")).unwrap();
    let took = sent.elapsed();
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert_eq!(
        second["patches"],
        serde_json::json!([
            {"op": "insert", "path": "/items/2", "values": [""]},
            {"op": "splice", "path": "/items/2", "pos": 0, "text": "tea"}
        ]),
        "{second}"
    );
}

/// Store discovery and the no-store message: without --store, a command run inside a
/// store's folders acts on the store (as git finds its repository); a folder with no store
/// says so with its absolute path (exit 4), even when the state dir is inside it (`$HOME`),
/// where it said "the state dir is inside the synced folder" (exit 3).
#[test]
fn a_store_is_found_from_inside_it_and_no_store_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    let inside = store.join("ops");
    let here = |cwd: &Path, state: &Path, args: &[&str]| {
        Command::new(BIN)
            .current_dir(cwd)
            .args(args)
            .env("CRDTDIR_STATE_DIR", state)
            .env("CRDTDIR_DEVICE", "laptop")
            .env_remove("CRDTDIR_STORE")
            .env_remove("CRDTDIR_LOG")
            .output()
            .unwrap()
    };
    let out = here(&inside, &me.state, &["merge"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"a":1}"#);
    // A home folder: no store in it or above, and the state dir inside it.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = here(&home, &home.join(".local/crdtdir"), &["merge"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (error, hint) = error_and_hint(&stderr);
    assert!(
        error.contains(&format!("no crdtdir store at {}", home.display())),
        "the absolute path: {stderr}"
    );
    assert!(!home.join(".local").exists(), "nothing written");
    assert!(hint.is_some_and(|h| h.contains("crdtdir init")), "{stderr}");
}

/// Passphrase files can be listed and removed, and a passphrase can come from a file or a
/// command (as restic's --password-file and --password-command): a removed passphrase no
/// longer lets a device join, removal asks (refused without a terminal or --yes), and an
/// unknown id is one line and exit 1.
#[test]
fn passphrase_files_are_listed_removed_and_read_from_a_file_or_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let (store, me, phone, tablet) = encrypted_with_three_devices(dir.path());
    assert_eq!(me.ok(&store, &["key", "list"]), "");
    let file = dir.path().join("pass.txt");
    std::fs::write(&file, "a long passphrase here\nignored second line\n").unwrap();
    let added: serde_json::Value = serde_json::from_str(&me.ok(
        &store,
        &[
            "key",
            "passphrase",
            "--passphrase-file",
            file.to_str().unwrap(),
        ],
    ))
    .unwrap();
    let listed = me.ok(&store, &["key", "list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let id = listed.split_whitespace().next().unwrap().to_string();
    assert_eq!(
        listed.split_whitespace().nth(1).unwrap(),
        added["file"].as_str().unwrap()
    );
    let json_line = me.ok(&store, &["--json", "key", "list"]);
    let v: serde_json::Value = serde_json::from_str(json_line.trim()).unwrap();
    assert_eq!(v["id"], id.as_str());
    // From a command.
    phone.ok(
        &store,
        &[
            "key",
            "import",
            "--passphrase",
            "--passphrase-command",
            "printf 'a long passphrase here\\n'",
        ],
    );
    assert_eq!(phone.ok(&store, &["merge"]), "{\"a\":1}\n");
    // Removal asks; without a terminal it needs --yes.
    let before = tree(&store);
    let out = me.run(&store, &["key", "remove", &id]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_same(&before, &tree(&store), "an unconfirmed removal");
    let out = me.run(&store, &["key", "remove", "nope", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    assert_same(&before, &tree(&store), "an unknown id");
    me.ok(&store, &["key", "remove", &id, "--yes"]);
    assert_eq!(me.ok(&store, &["key", "list"]), "");
    let out = tablet.run(
        &store,
        &[
            "key",
            "import",
            "--passphrase",
            "--passphrase-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "nothing to open any more: {out:?}"
    );
    // The devices that have the key keep it.
    assert_eq!(phone.ok(&store, &["merge"]), "{\"a\":1}\n");
}

/// `compact --dry-run` prints the plan — what it would fold, the snapshot's size, the other
/// devices and whether they look online — and changes nothing in the folder, not even a
/// heartbeat; the compaction itself then goes as planned.
#[test]
fn compact_dry_run_prints_the_plan_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (me, phone) = (
        Dev::new(dir.path(), "laptop"),
        Dev::new(dir.path(), "phone"),
    );
    me.ok(&store, &["init"]);
    for i in 0..5 {
        me.ok(&store, &["append", "set", &format!("/k{i}"), "1"]);
    }
    phone.ok(&store, &["append", "set", "/p", "1"]);
    let before = tree(&store);
    let plan: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["compact", "--dry-run"])).unwrap();
    assert_same(&before, &tree(&store), "a dry run");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["op_files"], 6, "five appends here, one there: {plan}");
    assert!(plan["new_snapshot_bytes"].as_u64().unwrap() > 0, "{plan}");
    let others = plan["others"].as_array().unwrap();
    assert_eq!(others.len(), 1, "{plan}");
    assert_eq!(others[0]["name"], "phone");
    assert_eq!(others[0]["online"], true, "phone just wrote: {plan}");
    assert_eq!(plan["alone"], false);
    // As planned: refused while the phone looks online.
    let out = me.run(&store, &["compact", "--yes"]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let out = me.run(&store, &["compact", "--dry-run", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--dry-run and --yes do not go together"
    );
}

/// `log --since` takes a date alone (its midnight, UTC), as well as RFC 3339 and an age.
#[test]
fn log_since_takes_a_date() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    let all = me.ok(&store, &["log", "--json", "--since", "2000-01-01"]);
    assert_eq!(all.lines().count(), 1, "{all}");
    let none = me.ok(&store, &["log", "--json", "--since", "2999-01-01"]);
    assert_eq!(none.lines().count(), 0, "{none}");
    let out = me.run(&store, &["log", "--since", "2026-13-01"]);
    assert_eq!(out.status.code(), Some(2), "not a date: {out:?}");
}

/// The global options' help says what the binary does: every command `--read-only`'s help
/// names as refused is refused (exit 3), and every command `--json`'s help names as printing
/// text prints text without it and JSON with it.
#[test]
fn the_help_of_read_only_and_json_is_what_the_binary_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    let help = me.ok(&store, &["--help"]);
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let listed = |after: &str, before: &str| -> Vec<String> {
        let from = flat
            .find(after)
            .unwrap_or_else(|| panic!("{after:?} in {flat}"))
            + after.len();
        let to = from + flat[from..].find(before).unwrap();
        flat[from..to]
            .replace(" and ", ", ")
            .split(", ")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let refused = listed("shows status and watches; ", " are refused (exit 3)");
    assert!(refused.len() >= 5, "{refused:?}");
    let elsewhere = dir.path().join("other");
    for command in &refused {
        let args: Vec<&str> = match command.as_str() {
            "append" => vec!["--read-only", "append", "set", "/a", "1"],
            "compact" => vec!["--read-only", "compact", "--yes"],
            "init" => vec!["--read-only", "init"],
            other => vec!["--read-only", other],
        };
        let target = if command == "init" {
            &elsewhere
        } else {
            &store
        };
        if command != "init" && !store.exists() {
            me.ok(&store, &["init", "--encrypt"]);
            me.ok(&store, &["append", "set", "/a", "1"]);
        }
        let out = me.run(target, &args);
        assert_eq!(out.status.code(), Some(3), "{command}: {out:?}");
    }
    let text = listed("JSON output for every command (", " print text otherwise)");
    for command in &text {
        let args: Vec<&str> = command.split(' ').collect();
        let plain = me.ok(&store, &args);
        assert!(
            serde_json::from_str::<serde_json::Value>(plain.trim()).is_err()
                || plain.trim().is_empty(),
            "{command} prints text: {plain}"
        );
        let mut json_args = vec!["--json"];
        json_args.extend(&args);
        let json = me.ok(&store, &json_args);
        for line in json.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{command} --json: {e}: {line}"));
        }
    }
}

/// Many documents through the binary: `docs new`, `--doc` on append, get, log, merge and
/// export, `docs` listing, `status` counting, `docs delete`; bad ids and whole-store commands
/// on a document are refused with nothing changed on disk.
#[test]
fn documents_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (me, phone) = (
        Dev::new(dir.path(), "laptop"),
        Dev::new(dir.path(), "phone"),
    );
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/app", "\"notes\""]);
    let out = me.run_with_input(
        &store,
        &["docs", "new", "--from", "-"],
        r#"{"title": "Groceries", "items": []}"#,
    );
    assert!(out.status.success(), "{out:?}");
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(made["url"], format!("crdtdir:{id}"));
    let url = format!("crdtdir:{id}");
    me.ok(
        &store,
        &["--doc", &id, "append", "insert", "/items/-", "\"milk\""],
    );
    phone.ok(
        &store,
        &["--doc", &url, "append", "insert", "/items/-", "\"eggs\""],
    );
    let doc: serde_json::Value =
        serde_json::from_str(&phone.ok(&store, &["--doc", &id, "get"])).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({"title": "Groceries", "items": ["milk", "eggs"]})
    );
    let merged: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["--doc", &id, "merge"])).unwrap();
    assert_eq!(merged, doc);
    assert_eq!(me.ok(&store, &["get"]).trim(), r#"{"app":"notes"}"#);
    let log = me.ok(&store, &["--json", "--doc", &id, "log"]);
    assert_eq!(log.lines().count(), 3, "{log}");
    let export = dir.path().join("doc.automerge");
    me.ok(&store, &["--doc", &id, "export", export.to_str().unwrap()]);
    assert!(std::fs::metadata(&export).unwrap().len() > 0);
    // The listing, as text and as JSON.
    let text = me.ok(&store, &["docs"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&id) && l.ends_with("Groceries")),
        "{text}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["--json", "docs"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["root"], true);
    assert_eq!(listed[1]["id"], id.as_str());
    let status: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["--json", "status"])).unwrap();
    assert_eq!(status["documents"], 2);
    assert!(me.ok(&store, &["status"]).contains("2 documents"));
    // Refused with one line and nothing changed.
    let before = tree(&store);
    for (args, code) in [
        (vec!["--doc", "nope", "get"], 1),
        (
            vec![
                "--doc",
                "0123456789abcdef0123456789abcdef",
                "append",
                "set",
                "/a",
                "1",
            ],
            1,
        ),
        (vec!["--doc", &id, "compact", "--yes"], 3),
        (vec!["--doc", &id, "pack"], 3),
        (
            vec!["docs", "delete", "0123456789abcdef0123456789abcdef"],
            1,
        ),
    ] {
        let out = me.run(&store, &args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.lines().filter(|l| !l.contains("hint:")).count(),
            1,
            "{err}"
        );
    }
    assert_eq!(tree(&store), before);
    // Deleted: gone from the listing (but for --all), and refused by --doc.
    me.ok(&store, &["docs", "delete", &id]);
    assert_eq!(me.ok(&store, &["docs"]).lines().count(), 1);
    assert!(me.ok(&store, &["docs", "--all"]).contains("deleted"));
    let out = me.run(&store, &["--doc", &id, "get"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("deleted"));
}

/// `--doc` on watch: the lines are that document's, from its first state on, and another
/// document's writes (the root one's here) make none.
#[test]
fn watch_follows_the_document_doc_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (a, b) = (Dev::new(dir.path(), "a"), Dev::new(dir.path(), "b"));
    a.ok(&store, &["init"]);
    let out = a.run_with_input(
        &store,
        &["docs", "new", "--from", "-"],
        r#"{"items": ["bread"]}"#,
    );
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut child, lines) = spawn_watch(&a, &store, &["--doc", &id, "--debounce", "0"]);
    let first = line_within(&lines, 20);
    assert_eq!(first["initial"], true);
    assert_eq!(first["doc"], serde_json::json!({"items": ["bread"]}));
    b.ok(&store, &["append", "set", "/root", "1"]);
    b.ok(
        &store,
        &["--doc", &id, "append", "insert", "/items/-", "\"milk\""],
    );
    // Lines that only say the report changed (a temp in flight) may come first.
    let next = (0..10)
        .map(|_| line_within(&lines, 20))
        .find(|l| l["changes"].as_array().is_some_and(|c| !c.is_empty()))
        .expect("a line with a change");
    let text = next["patches"].to_string();
    assert!(text.contains("milk") && !text.contains("root"), "{next}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `watch --all`: one process, one watching thread and one inotify instance follow every
/// document of a store (not one per document); each line names its document, a change to
/// one is a line of that one only, and its first line is the document as found.
#[test]
fn watch_all_follows_every_document_with_one_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (a, b) = (Dev::new(dir.path(), "a"), Dev::new(dir.path(), "b"));
    a.ok(&store, &["init"]);
    let ids: Vec<String> = (0..30)
        .map(|n| {
            let out = a.run_with_input(
                &store,
                &["docs", "new", "--from", "-"],
                &format!(r#"{{"n": {n}, "items": []}}"#),
            );
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let (mut child, lines) = spawn_watch(&a, &store, &["--all", "--debounce", "0"]);
    let mut initial = std::collections::BTreeMap::new();
    for _ in 0..31 {
        let line = line_within(&lines, 20);
        assert_eq!(line["initial"], true, "{line}");
        initial.insert(line["id"].as_str().unwrap().to_string(), line);
    }
    assert_eq!(
        initial[&ids[4]]["doc"],
        serde_json::json!({"n": 4, "items": []})
    );
    assert_eq!(initial[&ids[4]]["root"], false);
    // The process: its threads (main, the signal handler, the watcher, notify's) and one
    // inotify instance, for thirty-one documents.
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", child.id()));
    let threads = std::fs::read_dir(proc_dir.join("task")).unwrap().count();
    let inotify = std::fs::read_dir(proc_dir.join("fd"))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("inotify"))
        })
        .count();
    assert!(threads <= 5, "{threads} threads");
    assert_eq!(inotify, 1);
    b.ok(
        &store,
        &["--doc", &ids[7], "append", "insert", "/items/-", "\"milk\""],
    );
    let next = (0..10)
        .map(|_| line_within(&lines, 20))
        .find(|l| l["changes"].as_array().is_some_and(|c| !c.is_empty()))
        .expect("a line with a change");
    assert_eq!(next["id"], ids[7].as_str());
    assert!(next["patches"].to_string().contains("milk"), "{next}");
    child.kill().unwrap();
    child.wait().unwrap();
    // --all with --doc is refused with one line.
    let out = a.run(&store, &["--doc", &ids[0], "watch", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("leave out --doc"));
}

/// `crdtdir repair` repairs every document this device holds: a document's op file the
/// folder lost is published again, and the line names the document.
#[test]
fn repair_covers_every_document() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    let out = me.run_with_input(&store, &["docs", "new", "--from", "-"], r#"{"a": 1}"#);
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let lost: Vec<String> = op_files(&store)
        .into_iter()
        .filter(|p| p.contains(&id))
        .collect();
    assert_eq!(lost.len(), 1);
    std::fs::remove_file(store.join(&lost[0])).unwrap();
    let repaired: serde_json::Value = serde_json::from_str(&me.ok(&store, &["repair"])).unwrap();
    assert_eq!(
        repaired["documents"][&id]["republished"],
        serde_json::json!([lost[0]])
    );
    assert!(store.join(&lost[0]).is_file());
    let fresh = Dev::new(dir.path(), "fresh");
    assert_eq!(
        fresh.ok(&store, &["--doc", &id, "get"]).trim(),
        r#"{"a":1}"#
    );
}

/// Starts `crdtdir serve --socket-only` for `dev` and waits for its socket.
fn spawn_serve(dev: &Dev, store: &Path) -> (std::process::Child, PathBuf) {
    let status: serde_json::Value =
        serde_json::from_str(&dev.ok(store, &["--json", "status"])).unwrap();
    let socket = dev
        .state
        .join("stores")
        .join(status["store_id"].as_str().unwrap())
        .join("serve.sock");
    let child = dev
        .cmd(store, &["serve", "--socket-only"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child, socket)
}

/// `crdtdir serve`: this device's `append`, `get` and `merge` go to it (a fresh device's
/// `get` reads the change back), a second server is refused, the Python and JavaScript
/// clients of examples/ talk to it with the real `python3` and `node`, a watch over the
/// socket hears another device's write, and a server killed in the middle of a stream of
/// appends has lost none it answered.
#[test]
fn serve_answers_this_devices_commands_and_apps_in_other_languages() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (me, other) = (Dev::new(dir.path(), "me"), Dev::new(dir.path(), "other"));
    me.run_with_input(&store, &["init", "--from", "-"], r#"{"items": []}"#);
    let (mut server, socket) = spawn_serve(&me, &store);
    // Forwarded: the command itself lists nothing (no library step in its -vv log).
    let out = me.run(&store, &["-vv", "append", "insert", "/items/-", "\"milk\""]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("crdtdir::"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(written["written"][0]["path"]
        .as_str()
        .unwrap()
        .starts_with("ops/"));
    assert_eq!(me.ok(&store, &["get", "/items"]).trim(), r#"["milk"]"#);
    assert_eq!(me.ok(&store, &["merge"]).trim(), r#"{"items":["milk"]}"#);
    // CRDTDIR_SERVE=0 runs here, and says so in its log; a fresh device reads the change.
    let local = me
        .cmd(&store, &["-vv", "get", "/items"])
        .env("CRDTDIR_SERVE", "0")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&local.stderr).contains("crdtdir::"));
    assert_eq!(other.ok(&store, &["get", "/items"]).trim(), r#"["milk"]"#);
    // An error comes back as the command's own error.
    let bad = me.run(&store, &["get", "/nope"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));
    // One server per store and device.
    let second = me.run(&store, &["serve", "--socket-only"]);
    assert_eq!(second.status.code(), Some(3), "{second:?}");
    // The clients of examples/, with the real interpreters.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let py = Command::new("python3")
        .arg(examples.join("serve_client.py"))
        .arg(&socket)
        .arg("eggs")
        .output()
        .expect("python3 runs");
    assert!(py.status.success(), "{py:?}");
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        r#"["milk", "eggs"]"#
    );
    let js = Command::new("node")
        .arg(examples.join("serve_client.js"))
        .arg(&socket)
        .arg("bread")
        .output()
        .expect("node runs (.ci/run installs it)");
    assert!(js.status.success(), "{js:?}");
    assert_eq!(
        String::from_utf8_lossy(&js.stdout).trim(),
        r#"["milk","eggs","bread"]"#
    );
    // A watch over the socket: another device's write is an event line of that request.
    let conn = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let mut lines = std::io::BufReader::new(conn.try_clone().unwrap()).lines();
    let mut send = conn.try_clone().unwrap();
    send.write_all(b"{\"id\":\"w\",\"op\":\"watch\"}\n")
        .unwrap();
    let mut next =
        || -> serde_json::Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(next());
    }
    assert!(
        seen.iter().any(|l| l["result"]["watching"] == true),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l["event"]["initial"] == true),
        "{seen:?}"
    );
    other.ok(&store, &["append", "insert", "/items/-", "\"tea\""]);
    let event = (0..20)
        .map(|_| next())
        .find(|l| l["event"]["patches"].to_string().contains("tea"))
        .expect("an event with the other device's write");
    assert_eq!(event["id"], "w");
    drop(send);
    // A stream of appends, and the server killed while it answers them: every change it
    // answered is in the folder.
    let mut conn = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let reader = std::io::BufReader::new(conn.try_clone().unwrap());
    for i in 0..60 {
        let request = serde_json::json!({"id": i, "op": "append",
            "patch": [{"op": "add", "path": "/items/-", "value": format!("n{i}")}]});
        conn.write_all(format!("{request}\n").as_bytes()).unwrap();
    }
    let mut answered = Vec::new();
    for line in reader.lines() {
        let line: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        assert!(line.get("error").is_none(), "{line}");
        answered.push(format!("n{}", line["id"]));
        if answered.len() == 10 {
            server.kill().unwrap();
            break;
        }
    }
    server.wait().unwrap();
    let items: Vec<String> =
        serde_json::from_str(other.ok(&store, &["get", "/items"]).trim()).unwrap();
    for a in &answered {
        assert!(
            items.contains(a),
            "{a} was answered and is not in {items:?}"
        );
    }
    // The socket of the killed server is left behind: commands run here again.
    assert!(socket.exists());
    let local: Vec<String> =
        serde_json::from_str(me.ok(&store, &["get", "/items"]).trim()).unwrap();
    assert_eq!(local, items);
}

/// `crdtdir serve` on stdin and stdout: an answer per request line, bad lines answered
/// with an error, and the server ends when its input does (the app that started it went).
#[test]
fn serve_on_stdio_answers_each_line_and_ends_with_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "me");
    me.run_with_input(&store, &["init", "--from", "-"], r#"{"items": []}"#);
    let input = concat!(
        r#"{"id": 1, "op": "append", "patch": [{"op": "add", "path": "/items/-", "value": "x"}]}"#,
        "\n",
        "not json\n",
        r#"{"id": 2, "op": "get", "path": "/items"}"#,
        "\n",
        r#"{"id": 3, "op": "fly"}"#,
        "\n",
    );
    let out = me.run_with_input(&store, &["serve"], input);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0]["result"]["change"].is_string());
    assert_eq!(lines[1]["error"]["code"], "input");
    assert_eq!(lines[2]["result"], serde_json::json!(["x"]));
    assert_eq!(lines[3]["error"]["code"], "input");
    // Its socket went with it.
    assert_eq!(me.ok(&store, &["get", "/items"]).trim(), r#"["x"]"#);
}

/// Long work shows a progress bar on a terminal only: a merge from nothing of thousands of
/// op files with stderr on a pipe (and with --json) prints nothing there, not a bar.
#[test]
fn no_progress_bar_on_a_pipe() {
    use crdtdir::automerge::transaction::Transactable;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "me");
    me.ok(&store, &["init"]);
    let mut doc = crdtdir::automerge::AutoCommit::new();
    for i in 0..4500 {
        doc.put(crdtdir::automerge::ROOT, format!("k{}", i % 40), i as i64)
            .unwrap();
        doc.commit();
    }
    for change in doc.document().get_changes(&[]) {
        let mut bytes = Vec::new();
        ciborium::into_writer(
            &ciborium::Value::Map(vec![
                (
                    ciborium::Value::Text("v".into()),
                    ciborium::Value::Integer(1.into()),
                ),
                (
                    ciborium::Value::Text("device".into()),
                    ciborium::Value::Text("gen".into()),
                ),
                (
                    ciborium::Value::Text("change".into()),
                    ciborium::Value::Bytes(change.raw_bytes().to_vec()),
                ),
            ]),
            &mut bytes,
        )
        .unwrap();
        let hash = &blake3::hash(&bytes).to_hex()[..32];
        let dir = store.join("ops").join(change.actor_id().to_hex_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{:010}-{hash}.op", change.seq())), &bytes).unwrap();
    }
    for args in [&["merge"][..], &["--json", "merge"]] {
        let fresh = Dev::new(dir.path(), "fresh");
        let _ = std::fs::remove_dir_all(&fresh.state);
        let out = fresh.run(&store, args);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc.as_object().unwrap().len(), 40);
    }
}

/// `status` with nothing new answers from the saved view and what the last status found,
/// without loading the document (its -vv log says so), and says the same; a change from
/// another device makes it merge again.
#[test]
fn status_with_nothing_new_loads_no_document() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (me, phone) = (Dev::new(dir.path(), "me"), Dev::new(dir.path(), "phone"));
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/a", "1"]);
    phone.ok(&store, &["append", "set", "/b", "2"]);
    let status = |dev: &Dev| -> (serde_json::Value, String) {
        let out = dev.run(&store, &["-vv", "--json", "status"]);
        assert!(out.status.success(), "{out:?}");
        let mut json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // Ages move with the clock.
        for p in json["presence"].as_array_mut().unwrap() {
            for key in ["seen_secs_ago", "beat_secs_ago", "seen_at", "beat_time"] {
                p.as_object_mut().unwrap().remove(key);
            }
        }
        (json, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (first, log) = status(&me);
    assert!(!log.contains("status from the saved view"), "{log}");
    let (second, log) = status(&me);
    assert!(log.contains("status from the saved view"), "{log}");
    assert_eq!(second, first);
    assert_eq!(first["changes"], 2);
    // Another device's change: merged again, and counted.
    phone.ok(&store, &["append", "set", "/c", "3"]);
    let (third, log) = status(&me);
    assert!(!log.contains("status from the saved view"), "{log}");
    assert_eq!(third["changes"], 3);
    assert_eq!(status(&me).0, third);
}

/// `crdtdir serve` on a device without an encrypted store's key is refused with the
/// locked error, and leaves no socket behind (this device's commands then run by
/// themselves and say the same).
#[test]
fn serve_without_the_key_is_refused_and_leaves_no_socket() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (me, phone) = (Dev::new(dir.path(), "me"), Dev::new(dir.path(), "phone"));
    me.ok(&store, &["init", "--encrypt"]);
    let out = phone.run(&store, &["serve", "--socket-only"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key"),
        "{out:?}"
    );
    let sockets: Vec<String> = tree(&phone.state)
        .into_keys()
        .filter(|p| p.ends_with("serve.sock"))
        .collect();
    assert!(sockets.is_empty(), "{sockets:?}");
}

/// Flips one bit of `path`'s byte at `at` (from the end when negative).
fn flip(path: &Path, at: isize) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = if at < 0 {
        bytes.len() - at.unsigned_abs()
    } else {
        at as usize
    };
    bytes[i] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

/// `crdtdir check` reads every file again and names each damaged one, whatever its kind —
/// a loose op file, a pack (whole and entry), a snapshot, a compaction record, a
/// checkpoint, a heartbeat, a passphrase file, a document's op file, an op file whose
/// hash matches but whose change is not the one its name says — and nothing else: sync
/// temps are noticed, not damage. It writes nothing in the folder, not even a heartbeat; exit 1 and code
/// `damaged` when anything is damaged; `--doc` checks one document.
#[test]
fn check_names_every_damaged_file_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, me, _, _) = encrypted_with_three_devices(dir.path());
    let pass = dir.path().join("pass.txt");
    std::fs::write(&pass, "a long passphrase here\n").unwrap();
    me.ok(
        &store,
        &[
            "key",
            "passphrase",
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
    );
    me.ok(&store, &["compact", "--yes"]);
    for i in 0..4 {
        me.ok(&store, &["append", "set", &format!("/p{i}"), "1"]);
    }
    me.ok(&store, &["pack"]);
    for i in 0..3 {
        me.ok(&store, &["append", "set", &format!("/k{i}"), "1"]);
    }
    me.ok(&store, &["checkpoint"]);
    let made = me.run_with_input(&store, &["docs", "new", "--from", "-"], r#"{"title": "t"}"#);
    assert!(made.status.success(), "{made:?}");
    let made: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    let doc_id = made["id"].as_str().unwrap().to_string();
    me.ok(
        &store,
        &["--doc", &doc_id, "append", "set", "/title", "\"n\""],
    );

    // The change hint of a bucket the folder is bridged to is neither damage nor news.
    std::fs::write(store.join("devices/touched"), "0123456789abcdef\n").unwrap();
    let clean = me.run(&store, &["--json", "check"]);
    assert!(clean.status.success(), "{clean:?}");
    let report: serde_json::Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert_eq!(report["damaged"], serde_json::json!([]), "{report}");
    assert!(!report.to_string().contains("devices/touched"), "{report}");
    assert_eq!(report["documents"], 2, "{report}");
    for kind in [
        "op_files",
        "packs",
        "snapshots",
        "records",
        "checkpoints",
        "heartbeats",
        "keys",
    ] {
        assert!(report[kind].as_u64().unwrap() > 0, "{kind}: {report}");
    }
    assert!(me.ok(&store, &["check"]).contains("no damaged file"));

    // One file of each kind damaged.
    let rels = |dir: &str, ext: &str| -> Vec<String> {
        walk(&store.join(dir))
            .into_iter()
            .filter(|p| p.ends_with(ext))
            .map(|p| format!("{dir}/{p}"))
            .collect()
    };
    let mut damaged = Vec::new();
    let ops = rels("ops", ".op");
    // A document's op file names start with its name (a keyed hash of its id here).
    let is_doc_op = |p: &str| p.rsplit('/').next().unwrap().len() > 50;
    let (doc_ops, root_ops): (Vec<&String>, Vec<&String>) = ops.iter().partition(|p| is_doc_op(p));
    let loose = root_ops.last().unwrap().to_string();
    flip(&store.join(&loose), -3);
    damaged.push(loose.clone());
    let doc_op = doc_ops.first().expect("the document's op file").to_string();
    flip(&store.join(&doc_op), 40);
    damaged.push(doc_op);
    for (dir, ext, at) in [
        ("packs", ".pack", -20),
        ("snapshots", ".sqlite", 200),
        ("checkpoints", ".sqlite", -1),
        ("devices", ".beat", -2),
        ("keys", ".key", 30),
    ] {
        let rel = rels(dir, ext)
            .first()
            .unwrap_or_else(|| panic!("a {ext}"))
            .to_string();
        flip(&store.join(&rel), at);
        damaged.push(rel);
    }
    let record = rels("snapshots", ".record").first().unwrap().to_string();
    std::fs::write(store.join(&record), b"not a record").unwrap();
    damaged.push(record);
    // A whole op file under another seq: its name's hash is right, its place is not.
    let moved = root_ops[root_ops.len() - 2].to_string();
    let (folder, name) = moved.rsplit_once('/').unwrap();
    let (_, hash) = name.split_once('-').unwrap();
    let misplaced = format!("{folder}/0000009999-{hash}");
    std::fs::copy(store.join(&moved), store.join(&misplaced)).unwrap();
    damaged.push(misplaced);
    let temp = format!("{folder}/.syncthing.x.op.tmp");
    std::fs::write(store.join(&temp), b"partial").unwrap();
    damaged.sort();

    let before = tree(&store);
    let out = me.run(&store, &["--json", "check"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut named: Vec<String> = report["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect();
    named.dedup();
    assert_eq!(named, damaged, "{report}");
    assert!(
        report["noticed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["path"] == temp.as_str()),
        "{report}"
    );
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["code"], "damaged", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{} damaged file(s)", damaged.len())),
        "{err}"
    );
    // Text: a line per damaged file, and the error with its hint.
    let text = me.run(&store, &["check"]);
    assert_eq!(text.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&text.stdout);
    for path in &damaged {
        assert!(
            stdout.contains(&format!("damaged  {path}: ")),
            "{path}: {stdout}"
        );
    }
    let stderr = String::from_utf8_lossy(&text.stderr);
    let (error, hint) = error_and_hint(&stderr);
    assert!(error.contains("damaged file(s)"), "{stderr}");
    assert!(
        hint.is_some_and(|h| h.contains("crdtdir repair")),
        "{stderr}"
    );
    // One document alone: its files only.
    let one: serde_json::Value = serde_json::from_slice(
        &me.run(&store, &["--json", "--doc", &doc_id, "check"])
            .stdout,
    )
    .unwrap();
    assert_eq!(one["documents"], 1, "{one}");
    let one_named: Vec<&str> = one["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    let doc_damaged: Vec<&str> = damaged
        .iter()
        .filter(|p| p.starts_with("ops/") && is_doc_op(p))
        .map(String::as_str)
        .collect();
    assert_eq!(one_named, doc_damaged, "{one}");
    // Nothing written in the folder, not even a heartbeat.
    assert_same(&before, &tree(&store), "check");
}

/// The files under `dir`, relative to it, sorted.
fn walk(dir: &Path) -> Vec<String> {
    tree(dir)
        .into_keys()
        .filter(|k| !k.ends_with('/'))
        .collect()
}

/// `init --encrypt --from-store OLD` through the binary: a plain store's whole history in a
/// new encrypted store (the old folder only read, not even a heartbeat), which another
/// device joins with the key; a source that cannot give its whole history, a missing one,
/// and `--from` with `--from-store` are refused with nothing made.
#[test]
fn init_from_store_keeps_the_history_in_an_encrypted_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    let (me, phone) = (
        Dev::new(dir.path(), "laptop"),
        Dev::new(dir.path(), "phone"),
    );
    me.ok(&old, &["init"]);
    me.ok(&old, &["append", "set", "/note", "\"secret-note\""]);
    phone.ok(&old, &["append", "-m", "tea please", "set", "/tea", "1"]);
    let want = me.ok(&old, &["merge"]);
    let before = tree(&old);
    let out: serde_json::Value = serde_json::from_str(&me.ok(
        &new,
        &["init", "--encrypt", "--from-store", old.to_str().unwrap()],
    ))
    .unwrap();
    assert_eq!(out["encrypted"], true, "{out}");
    assert_ne!(out["id"], out["from_store"]["id"], "{out}");
    assert_same(&before, &tree(&old), "init --from-store (the source)");
    assert_eq!(me.ok(&new, &["merge"]), want);
    let all: Vec<u8> = tree(&new).into_values().flatten().collect();
    assert!(!all.windows(11).any(|w| w == b"secret-note"), "plaintext");
    let key = me.ok(&new, &["key", "export"]);
    phone.ok(&new, &["key", "import", key.trim()]);
    assert_eq!(phone.ok(&new, &["merge"]), want);
    let log = phone.ok(&new, &["log"]);
    assert!(log.contains("phone") && log.contains("tea please"), "{log}");

    // Refusals: nothing made.
    let target = dir.path().join("t");
    let both = me.run(
        &target,
        &[
            "init",
            "--from",
            "x.json",
            "--from-store",
            old.to_str().unwrap(),
        ],
    );
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    let missing = me.run(&target, &["init", "--from-store", "/nonexistent/store"]);
    assert_eq!(missing.status.code(), Some(4), "{missing:?}");
    let first = tree(&old)
        .into_keys()
        .find(|p| {
            p.starts_with("ops/") && p.contains("/0000000001-") && {
                let bytes = std::fs::read(old.join(p)).unwrap();
                bytes.windows(5).any(|w| w == b"phone")
            }
        })
        .unwrap();
    phone.ok(&old, &["append", "set", "/tea", "2"]);
    std::fs::remove_file(old.join(&first)).unwrap();
    let fresh = Dev::new(dir.path(), "fresh");
    let gap = fresh.run(&target, &["init", "--from-store", old.to_str().unwrap()]);
    assert_eq!(gap.status.code(), Some(3), "{gap:?}");
    let err = String::from_utf8_lossy(&gap.stderr);
    assert!(err.contains("cannot give its whole history"), "{err}");
    assert!(!target.exists(), "nothing made");
}

/// `--help` of the top command and of a command lists the options every command takes
/// under their own heading, "Global options:", apart from the command's own options.
#[test]
fn help_lists_global_options_under_their_own_heading() {
    const GLOBALS: [&str; 8] = [
        "--store ",
        "--device ",
        "--doc ",
        "--state-dir ",
        "--read-only ",
        "--json ",
        "--pretty ",
        "-v, --verbose",
    ];
    fn has_option(section: &str, name: &str) -> bool {
        section
            .lines()
            .any(|line| line.trim_start().starts_with(name))
    }
    let dir = tempfile::tempdir().unwrap();
    let me = Dev::new(dir.path(), "laptop");
    let nowhere = dir.path().join("no-store");
    for (args, own) in [
        (&["--help"][..], "-V, --version"),
        (&["status", "--help"][..], "--threshold "),
    ] {
        let help = me.ok(&nowhere, args);
        let (before, globals) = help
            .split_once("\nGlobal options:\n")
            .unwrap_or_else(|| panic!("{args:?}: no \"Global options:\" heading\n{help}"));
        let (_, options) = before
            .split_once("\nOptions:\n")
            .unwrap_or_else(|| panic!("{args:?}: no \"Options:\" heading\n{help}"));
        // The global options' block ends at the blank line before the examples.
        let globals = globals.split("\n\n").next().unwrap();
        assert!(has_option(options, own), "{args:?}: {own}\n{help}");
        assert!(has_option(options, "-h, --help"), "{args:?}\n{help}");
        for name in GLOBALS {
            assert!(has_option(globals, name), "{args:?}: {name}\n{help}");
            assert!(!has_option(options, name), "{args:?}: {name}\n{help}");
        }
        assert!(!has_option(globals, own), "{args:?}: {own}\n{help}");
    }
}

/// The part of a man page's roff source under `.SH heading`, up to the next section.
fn man_section<'a>(page: &'a str, heading: &str) -> Option<&'a str> {
    let start = page.find(&format!("\n.SH {heading}\n"))?;
    let body = &page[start + 1..];
    let body = body.split_once('\n').map_or("", |(_, rest)| rest);
    Some(body.split("\n.SH ").next().unwrap())
}

/// The `"CRDTDIR_…"` string literals in the Rust sources under `dir`, with a file each is in.
fn env_literals(dir: &Path, found: &mut BTreeMap<String, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            env_literals(&path, found);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices("\"CRDTDIR_") {
            let rest = &text[at + 1..];
            let len = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            if rest[len..].starts_with('"') {
                found
                    .entry(rest[..len].to_string())
                    .or_insert_with(|| path.clone());
            }
        }
    }
}

/// Every page of `crdtdir man` ends with ENVIRONMENT, naming every variable the binary or
/// the library reads (every `"CRDTDIR_…"` literal in their sources but the test-only ones
/// below), and EXIT STATUS, naming every exit code the binary has (0 and the `EXIT_*`
/// constants of cli/src/output.rs).
#[test]
fn man_pages_list_every_environment_variable_and_exit_status() {
    /// Read by crdtdir but not for users, with why.
    const TEST_ONLY: [(&str, &str); 1] = [(
        "CRDTDIR_CRASH_AT",
        "fault injection for crash tests (src/fs/fault.rs): aborts the process at a named step",
    )];
    let cli = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut vars = BTreeMap::new();
    env_literals(&cli.join("src"), &mut vars);
    env_literals(&cli.join("../src"), &mut vars);
    for (name, why) in TEST_ONLY {
        assert!(
            vars.remove(name).is_some(),
            "{name} ({why}) is read no more"
        );
    }
    for name in [
        "CRDTDIR_STORE",
        "CRDTDIR_STATE_DIR",
        "CRDTDIR_PACK_SIZE",
        "CRDTDIR_LOG",
    ] {
        assert!(vars.contains_key(name), "{name} not found in {vars:?}");
    }
    let output_rs = std::fs::read_to_string(cli.join("src/output.rs")).unwrap();
    let mut exits = vec![0u8];
    for line in output_rs.lines() {
        if let Some(rest) = line.strip_prefix("pub(crate) const EXIT_") {
            let (_, value) = rest.split_once(": u8 = ").unwrap();
            exits.push(value.trim_end_matches(';').parse().unwrap());
        }
    }
    assert!(exits.len() >= 6, "{exits:?}");

    let dir = tempfile::tempdir().unwrap();
    let me = Dev::new(dir.path(), "laptop");
    let nowhere = dir.path().join("no-store");
    let man_dir = dir.path().join("man1");
    me.ok(&nowhere, &["man", "--dir", man_dir.to_str().unwrap()]);
    let mut pages = vec![("crdtdir man".to_string(), me.ok(&nowhere, &["man"]))];
    for page in walk(&man_dir) {
        pages.push((
            page.clone(),
            std::fs::read_to_string(man_dir.join(page)).unwrap(),
        ));
    }
    assert!(pages.len() > 20, "{}", pages.len());
    for (name, page) in &pages {
        let environment = man_section(page, "ENVIRONMENT")
            .unwrap_or_else(|| panic!("{name}: no ENVIRONMENT section"));
        for (var, file) in &vars {
            assert!(
                environment.contains(&format!(".TP\n\\fB{var}\\fR\n")),
                "{name}: {var} (read in {}) is not in ENVIRONMENT",
                file.display()
            );
        }
        for (var, _) in TEST_ONLY {
            assert!(!environment.contains(var), "{name}: {var}");
        }
        let exit_status = man_section(page, "\"EXIT STATUS\"")
            .unwrap_or_else(|| panic!("{name}: no EXIT STATUS section"));
        for code in &exits {
            assert!(
                exit_status.contains(&format!(".TP\n\\fB{code}\\fR\n")),
                "{name}: exit code {code} is not in EXIT STATUS"
            );
        }
    }
}

/// The man page shows each example of `--help` as one line, as written (roff filled a long
/// one into the next: `#  a  real  two-device` / `merge in a temp folder`), and an option's
/// description below the option however short its name (not `--json JSON output …`).
#[test]
fn man_page_keeps_each_example_on_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let me = Dev::new(dir.path(), "laptop");
    let nowhere = dir.path().join("no-store");
    let help = me.ok(&nowhere, &["--help"]);
    let examples: Vec<&str> = help
        .split_once("\nExamples:\n")
        .unwrap()
        .1
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .map(str::trim)
        .collect();
    assert!(
        examples.len() > 3 && examples[0].contains("  # "),
        "{examples:?}"
    );
    let page = me.ok(&nowhere, &["man"]);
    let rendered = Command::new("man")
        .args(["-l", "-"])
        // A terminal's width, narrower than the longest example with its indent.
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env_remove("MAN_KEEP_FORMATTING")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(page.as_bytes())
                .ok()?;
            let out = child.wait_with_output().ok()?;
            out.status.success().then_some(out.stdout)
        })
        .filter(|out| !out.is_empty());
    match rendered {
        Some(out) => {
            // Plain text: no overstrike, ASCII hyphens and quotes.
            let mut text = String::new();
            for c in String::from_utf8_lossy(&out).chars() {
                match c {
                    '\u{8}' => {
                        text.pop();
                    }
                    '\u{2010}' | '\u{2212}' => text.push('-'),
                    '\u{2018}' | '\u{2019}' => text.push('\''),
                    c => text.push(c),
                }
            }
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            for example in &examples {
                assert!(
                    lines.contains(example),
                    "{example:?} not one line in\n{text}"
                );
            }
            assert!(
                lines.contains(&"--json"),
                "--json runs into its text\n{text}"
            );
        }
        // No `man` here: the roff source keeps the examples unfilled.
        None => {
            let section = man_section(&page, "EXAMPLES").expect("an EXAMPLES section");
            assert!(section.starts_with(".nf\n"), "{section}");
            let first = examples[0].replace('-', "\\-");
            assert!(section.lines().any(|l| l == first), "{first}\n{section}");
            assert!(page.contains(".TP\n\\fB\\-\\-json\\fR\n.br\n"), "{page}");
        }
    }
}

/// `key rotate` through the binary: refused without a terminal or `--yes` (nothing
/// changed); then the laptop's next write is sealed with the new key, which the phone with
/// the old key cannot read (its merge still succeeds and warns, `check` notices and does not
/// call it damage) until it imports the new key.
#[test]
fn key_rotate_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (store, me, phone, _) = encrypted_with_three_devices(dir.path());
    let key = me.ok(&store, &["key", "export"]);
    phone.ok(&store, &["key", "import", key.trim()]);
    let before = tree(&store);
    let refused = me.run(&store, &["key", "rotate"]);
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    assert_same(&before, &tree(&store), "an unconfirmed rotation");

    let out: serde_json::Value =
        serde_json::from_str(&me.ok(&store, &["key", "rotate", "--yes"])).unwrap();
    assert_eq!(out["key"], "rotated", "{out}");
    let new_key = me.ok(&store, &["key", "export"]);
    assert_ne!(new_key, key);
    me.ok(&store, &["append", "set", "/after", "\"rotated-secret\""]);
    let seen = phone.run(&store, &["merge"]);
    assert!(seen.status.success(), "{seen:?}");
    assert!(!String::from_utf8_lossy(&seen.stdout).contains("rotated-secret"));
    let warned = String::from_utf8_lossy(&seen.stderr);
    assert!(warned.contains("crdtdir status"), "{warned}");
    let checked: serde_json::Value =
        serde_json::from_slice(&phone.run(&store, &["--json", "check"]).stdout).unwrap();
    assert_eq!(checked["damaged"], serde_json::json!([]), "{checked}");
    assert!(
        checked["noticed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "other-key"),
        "{checked}"
    );
    phone.ok(&store, &["key", "import", new_key.trim()]);
    assert_eq!(
        phone.ok(&store, &["get", "/after"]).trim(),
        "\"rotated-secret\""
    );
    assert_eq!(phone.ok(&store, &["merge"]), me.ok(&store, &["merge"]));
}

/// `log` names each change by the start of its hash and says where it wrote — the JSON
/// Pointers of map keys it set or deleted and of lists and texts it edited, where they are
/// now, the first three and how many more — and `--json` gives every path; what the
/// document no longer shows (a deleted item's text) is left out.
#[test]
fn log_names_each_change_by_hash_and_where_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&store, &["init"]);
    me.ok(&store, &["append", "set", "/title", "\"a\""]);
    me.ok(&store, &["append", "set", "/items", "[]"]);
    me.ok(&store, &["append", "insert", "/items/-", "\"milk\""]);
    me.ok(&store, &["append", "insert", "/items/-", "\"tea\""]);
    me.ok(
        &store,
        &["append", "splice", "/items/1", "0", "0", "green "],
    );
    me.ok(
        &store,
        &[
            "append",
            "set",
            "/m",
            r#"{"a": {"b": 1}, "c": [1], "d": "x"}"#,
        ],
    );
    me.ok(&store, &["append", "-m", "drop milk", "delete", "/items/0"]);
    let lines: Vec<serde_json::Value> = me
        .ok(&store, &["--json", "log"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let paths: Vec<Vec<String>> = lines
        .iter()
        .map(|l| serde_json::from_value(l["paths"].clone()).unwrap())
        .collect();
    let want: Vec<Vec<&str>> = vec![
        vec!["/title"],
        vec!["/items"],
        // milk's own text is deleted now: only the list it went into.
        vec!["/items"],
        // tea's text (the insert made it, then wrote into it), at index 0 now.
        vec!["/items", "/items/0"],
        vec!["/items/0"],
        vec!["/m", "/m/a", "/m/c", "/m/d", "/m/a/b"],
        vec!["/items"],
    ];
    assert_eq!(paths, want);
    let text = me.ok(&store, &["log"]);
    let text: Vec<&str> = text.lines().collect();
    assert_eq!(text.len(), lines.len());
    for (line, json) in text.iter().zip(&lines) {
        let hash = &json["hash"].as_str().unwrap()[..8];
        assert!(line.contains(&format!("  {hash}  ")), "{line}");
    }
    assert!(
        text[text.len() - 2].ends_with("on /m, /m/a, /m/c and 2 more"),
        "{text:?}"
    );
    assert!(
        text[text.len() - 1].ends_with("on /items  drop milk"),
        "{text:?}"
    );
}

/// The config file (`CRDTDIR_CONFIG`, or `~/.config/crdtdir/config.toml`) gives the store,
/// device name and state dir that no flag or environment variable gave, with `~/` and
/// relative paths; a flag or variable wins, a store the current folder is inside wins; a
/// config that does not parse or sets an unknown key is one error line (and a hint), exit
/// 1, and nothing is written.
#[test]
fn a_config_file_gives_the_store_device_and_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(home.join(".config/crdtdir")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let run = |cwd: &Path, env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(BIN);
        c.current_dir(cwd).args(args).env("HOME", &home);
        for var in [
            "CRDTDIR_STORE",
            "CRDTDIR_DEVICE",
            "CRDTDIR_STATE_DIR",
            "CRDTDIR_DOC",
            "CRDTDIR_CONFIG",
            "XDG_CONFIG_HOME",
        ] {
            c.env_remove(var);
        }
        c.envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // The default place, with ~/ paths.
    std::fs::write(
        home.join(".config/crdtdir/config.toml"),
        "store = \"~/Sync/groceries\"\ndevice = \"desk\"\nstate_dir = \"~/state\"\n",
    )
    .unwrap();
    let store = home.join("Sync/groceries");
    let made = run(
        &elsewhere,
        &[],
        &["--store", store.to_str().unwrap(), "init"],
    );
    assert!(made.status.success(), "{made:?}");
    assert!(home.join("state").is_dir(), "the config's state dir");
    let out = run(&elsewhere, &[], &["append", "set", "/a", "1"]);
    assert!(out.status.success(), "{out:?}");
    let log = run(&elsewhere, &[], &["log"]);
    let log = String::from_utf8_lossy(&log.stdout).to_string();
    assert!(log.contains("desk"), "the config's device name: {log}");
    // A flag and a variable win over it.
    let flagged = run(
        &elsewhere,
        &[],
        &["--device", "flag-name", "append", "set", "/b", "1"],
    );
    assert!(flagged.status.success(), "{flagged:?}");
    let other = dir.path().join("other");
    let other_state = dir.path().join("other-state");
    let made = run(
        &elsewhere,
        &[("CRDTDIR_STATE_DIR", other_state.to_str().unwrap())],
        &["--store", other.to_str().unwrap(), "init"],
    );
    assert!(made.status.success(), "{made:?}");
    assert!(other_state.is_dir());
    let read = run(
        &elsewhere,
        &[
            ("CRDTDIR_STORE", other.to_str().unwrap()),
            ("CRDTDIR_STATE_DIR", other_state.to_str().unwrap()),
        ],
        &["merge"],
    );
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "{}");
    // Inside another store, that store wins.
    let inside = run(
        &other.join("ops"),
        &[("CRDTDIR_STATE_DIR", other_state.to_str().unwrap())],
        &["merge"],
    );
    assert_eq!(
        String::from_utf8_lossy(&inside.stdout).trim(),
        "{}",
        "{inside:?}"
    );
    let mine = run(&elsewhere, &[], &["merge"]);
    assert_eq!(
        String::from_utf8_lossy(&mine.stdout).trim(),
        r#"{"a":1,"b":1}"#
    );
    // CRDTDIR_CONFIG names another file, relative paths in its folder; empty: none.
    let conf_dir = dir.path().join("conf");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let named = conf_dir.join("c.toml");
    std::fs::write(
        &named,
        "store = \"../other\"\nstate_dir = \"../other-state\"\n",
    )
    .unwrap();
    let via = run(
        &elsewhere,
        &[("CRDTDIR_CONFIG", named.to_str().unwrap())],
        &["merge"],
    );
    assert_eq!(String::from_utf8_lossy(&via.stdout).trim(), "{}", "{via:?}");
    let none = run(&elsewhere, &[("CRDTDIR_CONFIG", "")], &["merge"]);
    assert_eq!(
        none.status.code(),
        Some(4),
        "no config, no store here: {none:?}"
    );
    // Bad configs: one line and a hint, exit 1, nothing written.
    let before = (tree(&store), tree(&home.join("state")));
    for (text, says) in [
        ("store = [1, 2]\n", "line 1"),
        ("stor = \"x\"\n", "stor"),
        ("device = \"a\"\ndevice = \"b\"\n", "line 2"),
    ] {
        std::fs::write(&named, text).unwrap();
        let out = run(
            &elsewhere,
            &[("CRDTDIR_CONFIG", named.to_str().unwrap())],
            &["append", "set", "/z", "1"],
        );
        assert_eq!(out.status.code(), Some(1), "{text}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let (error, hint) = error_and_hint(&err);
        assert!(
            error.contains("config file") && error.contains(says),
            "{text}: {err}"
        );
        assert!(hint.is_some(), "{err}");
    }
    let missing = run(
        &elsewhere,
        &[("CRDTDIR_CONFIG", "/no/such/config.toml")],
        &["merge"],
    );
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert_eq!(
        (tree(&store), tree(&home.join("state"))),
        before,
        "nothing written"
    );
}

/// `forget --local`: lists the stores this device holds local state of; refuses to forget
/// one whose folder still holds it, and one it would have to ask about without a terminal;
/// forgets one the device left (by the start of its id) with `--yes`, and only that one.
#[test]
fn forget_local_deletes_only_the_state_of_a_store_this_device_left() {
    let dir = tempfile::tempdir().unwrap();
    let (left, kept) = (dir.path().join("left"), dir.path().join("kept"));
    let me = Dev::new(dir.path(), "laptop");
    me.ok(&left, &["init"]);
    me.ok(&left, &["append", "set", "/a", "1"]);
    me.ok(&kept, &["init"]);
    let id = |store: &Path| {
        let status: serde_json::Value =
            serde_json::from_str(&me.ok(store, &["--json", "status"])).unwrap();
        status["store_id"].as_str().unwrap().to_string()
    };
    let (left_id, kept_id) = (id(&left), id(&kept));
    let listed = me.ok(&left, &["forget", "--local"]);
    assert!(listed.contains(&format!("{left_id}  in use")), "{listed}");
    let in_use = me.run(&left, &["forget", "--local", &left_id, "--yes"]);
    assert_eq!(in_use.status.code(), Some(3), "{in_use:?}");
    let stores = me.state.join("stores");
    assert!(stores.join(&left_id).is_dir());

    std::fs::remove_dir_all(&left).unwrap();
    let listed = me.ok(&kept, &["forget", "--local"]);
    assert!(listed.contains(&format!("{left_id}  left")), "{listed}");
    let before = tree(&me.state);
    let unasked = me.run(&kept, &["forget", "--local", &left_id]);
    assert_eq!(unasked.status.code(), Some(3), "{unasked:?}");
    let err = String::from_utf8_lossy(&unasked.stderr);
    assert!(err.contains("this device's copy of the document"), "{err}");
    let unknown = me.run(&kept, &["--json", "forget", "--local", "ffffffff"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown-store"));
    assert_eq!(tree(&me.state), before, "nothing deleted");
    let out: serde_json::Value =
        serde_json::from_str(&me.ok(&kept, &["forget", "--local", &left_id[..6], "--yes"]))
            .unwrap();
    assert_eq!(out["forgotten_store"]["id"], left_id.as_str());
    assert!(!stores.join(&left_id).exists());
    assert!(
        stores.join(&kept_id).is_dir(),
        "the other store's state stays"
    );
    assert_eq!(me.ok(&kept, &["merge"]).trim(), "{}");
}

/// `pack --dry-run` changes nothing, not even a heartbeat, and says what `pack` then does:
/// the packs it writes and the files they take, the loose files it deletes and keeps, the
/// packs it publishes again.
#[test]
fn pack_dry_run_changes_nothing_and_says_what_pack_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (a, b) = (Dev::new(dir.path(), "a"), Dev::new(dir.path(), "b"));
    a.ok(&store, &["init"]);
    b.ok(&store, &["merge"]);
    for i in 0..6 {
        a.ok(&store, &["append", "set", &format!("/k{i}"), "1"]);
    }
    let json = |dev: &Dev, args: &[&str]| -> serde_json::Value {
        serde_json::from_str(&dev.ok(&store, args)).unwrap()
    };
    let dry = |dev: &Dev| {
        let before = (tree(&store), tree(&dev.state));
        let plan = json(dev, &["--json", "pack", "--dry-run"]);
        assert_same(&before.0, &tree(&store), "pack --dry-run");
        assert_same(&before.1, &tree(&dev.state), "pack --dry-run (local state)");
        plan
    };
    // New packs: b has not merged a's changes, so the loose files stay.
    let plan = dry(&a);
    assert!(plan["packed"].as_u64().unwrap() >= 6, "{plan}");
    assert_eq!(plan["waiting_for"], serde_json::json!(["b"]), "{plan}");
    let done = json(&a, &["--json", "pack"]);
    assert_eq!(done["packed"], plan["packed"], "{plan} {done}");
    assert_eq!(
        done["packs"].as_array().unwrap().len() as u64,
        plan["new_packs"].as_u64().unwrap()
    );
    assert!(done["kept_loose"].as_u64().unwrap() > 0, "{done}");
    // b merges and beats: the loose files a pack holds may go now.
    b.ok(&store, &["merge"]);
    let plan = dry(&a);
    assert_eq!(plan["new_packs"], 0, "{plan}");
    assert_eq!(plan["deletable_loose"], done["kept_loose"], "{plan}");
    assert_eq!(plan["waiting_for"], serde_json::json!([]), "{plan}");
    let text = a.ok(&store, &["pack", "--dry-run"]);
    assert!(text.contains("nothing was changed"), "{text}");
    let done = json(&a, &["--json", "pack"]);
    assert_eq!(done["deleted"], plan["deletable_loose"], "{plan} {done}");
    assert_eq!(done["kept_loose"], plan["kept_loose"], "{plan} {done}");
    // A pack the folder lost is published again.
    let pack = done["packs"]
        .as_array()
        .unwrap()
        .first()
        .and_then(|p| p.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            tree(&store)
                .into_keys()
                .find(|p| p.starts_with("packs/") && p.ends_with(".pack"))
                .unwrap()
        });
    std::fs::remove_file(store.join(&pack)).unwrap();
    let plan = dry(&a);
    assert_eq!(plan["republish"], serde_json::json!([pack]), "{plan}");
    let done = json(&a, &["--json", "pack"]);
    assert_eq!(done["republished"], plan["republish"], "{done}");
}

/// A big `init --from` shows a spinner on a terminal once it has taken a second, and clears
/// it before the output; through a pipe it shows nothing. (The terminal is `script`'s.)
#[test]
fn init_from_a_big_file_spins_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let notes: Vec<serde_json::Value> = (0..40_000)
        .map(|i| serde_json::json!({"id": i.to_string(), "title": format!("note {i}"), "items": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]}))
        .collect();
    let file = dir.path().join("big.json");
    std::fs::write(&file, serde_json::json!({ "notes": notes }).to_string()).unwrap();
    let me = Dev::new(dir.path(), "laptop");
    let piped = me.run(
        &dir.path().join("piped"),
        &["init", "--from", file.to_str().unwrap()],
    );
    assert!(piped.status.success(), "{piped:?}");
    assert!(
        piped.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    let command = format!(
        "{BIN} --store {} init --from {}",
        dir.path().join("tty").display(),
        file.display()
    );
    let tty = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("CRDTDIR_STATE_DIR", &me.state)
        .env("CRDTDIR_DEVICE", "laptop")
        .env("CRDTDIR_CONFIG", "")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    assert!(tty.status.success(), "{tty:?}");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(
        shown.contains("building the store's first document"),
        "{shown}"
    );
    // Cleared before the output line, which is the last thing on the terminal.
    let last = shown.rsplit('\r').find(|l| !l.trim().is_empty()).unwrap();
    assert!(!last.contains("building"), "{last:?}");
}
