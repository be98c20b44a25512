//! The guide's example apps in other languages, examples/todo.py and examples/todo.js, run
//! with the real `python3` and `node` against this build's `crdtdir` (examples/todo.rs runs
//! in the library's tests, tests/guide.rs).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longer than an app's own waits (30 s each), so an app that fails says why first.
const LIMIT: Duration = Duration::from_secs(120);

/// Runs `interpreter examples/SCRIPT --crdtdir BIN FOLDER` in a fresh folder; its stdout.
fn run_app(interpreter: &str, script: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(script);
    let mut child = Command::new(interpreter)
        .arg(&script)
        .arg("--crdtdir")
        .arg(env!("CARGO_BIN_EXE_crdtdir"))
        .arg(dir.path().join("app"))
        // The apps name the store, state dir and device of each command themselves.
        .env_remove("CRDTDIR_STORE")
        .env_remove("CRDTDIR_READ_ONLY")
        .env_remove("CRDTDIR_CRASH_AT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{interpreter} runs: {e}"));
    let stdout = read_all(child.stdout.take().unwrap());
    let stderr = read_all(child.stderr.take().unwrap());
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} ran longer than {LIMIT:?}", script.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (printed, errors) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "{status}\n{printed}\n{errors}");
    printed
}

/// Reads a pipe to its end on a thread of its own (a full pipe would stall the app).
fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        pipe.read_to_string(&mut text).unwrap();
        text
    })
}

/// The last list `device` printed: the `  [x] title` lines after its last `DEVICE's list:`.
fn last_list<'a>(printed: &'a str, device: &str) -> Vec<&'a str> {
    let heading = format!("{device}'s list:");
    let lines: Vec<&str> = printed.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| *l == heading)
        .unwrap_or_else(|| panic!("no {heading:?} in\n{printed}"));
    lines[start + 1..]
        .iter()
        .take_while(|l| l.starts_with("  ["))
        .copied()
        .collect()
}

/// What every version of the app must end with: both devices print the same list; it holds
/// each device's additions, the laptop's delete and tick, and the phone's tick of a todo
/// the delete moved; the phone's watcher reported the laptop's edits.
fn check_story(printed: &str) {
    let laptop = last_list(printed, "laptop");
    let phone = last_list(printed, "phone");
    assert_eq!(laptop, phone, "{printed}");
    let mut shown = laptop.clone();
    shown.sort_unstable();
    assert_eq!(
        shown,
        [
            "  [ ] Buy bread",        // the phone's, added during the laptop's edits
            "  [ ] Buy milk",         // the laptop's, untouched
            "  [ ] Pay rent",         // the laptop's, added during the phone's edits
            "  [x] Book the dentist", // the phone's tick, wherever the delete moved it
            "  [x] Water the plants", // the laptop's tick
        ],
        "\"Call mum\" is deleted and stays deleted, the phone's tick of it notwithstanding:\n{printed}"
    );
    let heard: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("phone's watcher: "))
        .collect();
    assert!(
        heard
            .iter()
            .any(|l| l.contains(r#"added "Buy milk""#) && l.ends_with("(from laptop)")),
        "{printed}"
    );
    assert!(
        heard
            .iter()
            .any(|l| l.contains(r#"deleted "Call mum""#) && l.contains("laptop")),
        "{printed}"
    );
}

#[test]
fn the_python_todo_app_ends_with_both_devices_showing_every_devices_edits() {
    check_story(&run_app("python3", "todo.py"));
}

#[test]
fn the_javascript_todo_app_ends_with_both_devices_showing_every_devices_edits() {
    check_story(&run_app("node", "todo.js"));
}
