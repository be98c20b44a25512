//! An encrypted store's key kept in the OS keychain (`init --encrypt --keychain`, `key import
//! --keychain`, `key move`), against a real Secret Service: gnome-keyring-daemon on a private
//! D-Bus session bus, with its keyrings in a temporary home, read back with libsecret's own
//! `secret-tool`. Without dbus-daemon, gnome-keyring-daemon or secret-tool the tests say they
//! were skipped; with `CRDTDIR_E2E=1` their absence is a failure (`.ci/run` installs them).
//!
//! Linux only: elsewhere the keychain is the user's own (macOS, Windows), which a test must
//! not touch.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_crdtdir");
/// Every wait below stops after this many turns of 50 ms.
const TURNS: usize = 200;

/// A private session bus with a Secret Service on it, its keyrings under a temp home.
struct Keychain {
    dir: tempfile::TempDir,
    address: String,
    bus: Child,
    daemon: Option<Child>,
}

impl Drop for Keychain {
    fn drop(&mut self) {
        for child in self.daemon.iter_mut().chain(std::iter::once(&mut self.bus)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Keychain {
    /// Starts the bus and, when `service`, gnome-keyring's Secret Service on it, unlocked.
    /// `None` (test skipped) when the programs are missing and `CRDTDIR_E2E` is not `1`.
    fn start(service: bool) -> Option<Keychain> {
        let missing: Vec<&str> = ["dbus-daemon", "gnome-keyring-daemon", "secret-tool"]
            .into_iter()
            .filter(|p| !have(p))
            .collect();
        if !missing.is_empty() {
            assert_ne!(
                std::env::var("CRDTDIR_E2E").as_deref(),
                Ok("1"),
                "CRDTDIR_E2E=1 but {missing:?} not on PATH (apt-get install dbus gnome-keyring libsecret-tools)"
            );
            eprintln!("skipped: {missing:?} not on PATH (apt-get install dbus gnome-keyring libsecret-tools)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        for sub in ["home", "run"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let socket = dir.path().join("bus");
        let address = format!("unix:path={}", socket.display());
        // A session bus of its own with no service directory: nothing is started on demand
        // (the system's gnome-keyring among them), so the only Secret Service is the one
        // started below, and without it there is none.
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{address}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#
            ),
        )
        .unwrap();
        let mut keychain = Keychain {
            bus: Self::env_of(dir.path(), &address, &mut Command::new("dbus-daemon"))
                .args(["--nofork", "--nosyslog"])
                .arg(format!("--config-file={}", config.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            daemon: None,
            address,
            dir,
        };
        wait_for("the session bus", || socket.exists());
        if service {
            let mut daemon = keychain
                .env(&mut Command::new("gnome-keyring-daemon"))
                .args(["--unlock", "--components=secrets", "--foreground"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            {
                use std::io::Write;
                let mut stdin = daemon.stdin.take().unwrap();
                stdin.write_all(b"test keyring password").unwrap();
            }
            keychain.daemon = Some(daemon);
            wait_for("the Secret Service", || {
                keychain
                    .env(&mut Command::new("secret-tool"))
                    .args(["search", "--all", "service", "crdtdir-probe"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            });
        }
        Some(keychain)
    }

    fn env_of<'c>(dir: &Path, address: &str, c: &'c mut Command) -> &'c mut Command {
        c.env("DBUS_SESSION_BUS_ADDRESS", address)
            .env("HOME", dir.join("home"))
            .env("XDG_DATA_HOME", dir.join("home/.local/share"))
            .env("XDG_CONFIG_HOME", dir.join("home/.config"))
            .env("XDG_CACHE_HOME", dir.join("home/.cache"))
            .env("XDG_RUNTIME_DIR", dir.join("run"))
    }

    fn env<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        Self::env_of(self.dir.path(), &self.address, c)
    }

    /// The secret of crdtdir's item `account`, as libsecret reads it (`None`: no such item).
    fn lookup(&self, account: &str) -> Option<String> {
        let out = self
            .env(&mut Command::new("secret-tool"))
            .args(["lookup", "service", "crdtdir", "username", account])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    }

    /// Deletes crdtdir's item `account` behind crdtdir's back (a user cleaning the keychain).
    fn clear(&self, account: &str) {
        let out = self
            .env(&mut Command::new("secret-tool"))
            .args(["clear", "service", "crdtdir", "username", account])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..TURNS {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start in {} s", TURNS / 20);
}

/// A device on this machine, in the keychain's session.
struct Dev<'k> {
    keychain: &'k Keychain,
    state: PathBuf,
    name: &'static str,
}

impl<'k> Dev<'k> {
    fn new(keychain: &'k Keychain, root: &Path, name: &'static str) -> Dev<'k> {
        Dev {
            keychain,
            state: root.join(format!("state-{name}")),
            name,
        }
    }

    fn cmd(&self, store: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        self.keychain.env(&mut c);
        c.arg("--store").arg(store).args(args);
        c.env("CRDTDIR_STATE_DIR", &self.state)
            .env("CRDTDIR_DEVICE", self.name)
            .env_remove("CRDTDIR_STORE")
            .env_remove("CRDTDIR_CRASH_AT")
            .env_remove("CRDTDIR_KEYCHAIN")
            .env_remove("CRDTDIR_LOG")
            .env("CRDTDIR_CONFIG", "")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, store: &Path, args: &[&str]) -> Output {
        self.cmd(store, args).output().unwrap()
    }

    fn ok(&self, store: &Path, args: &[&str]) -> String {
        let out = self.run(store, args);
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, store: &Path, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(store, args)).unwrap()
    }

    /// `args` with `input` on stdin; with `crash_at`, the process aborts at that step.
    fn run_with(
        &self,
        store: &Path,
        args: &[&str],
        input: Option<&str>,
        crash_at: Option<&str>,
    ) -> Output {
        use std::io::Write;
        let mut c = self.cmd(store, args);
        if let Some(step) = crash_at {
            c.env("CRDTDIR_CRASH_AT", step);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.unwrap_or("").as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    /// `key import` with the key text on stdin.
    fn import(&self, store: &Path, key: &str, extra: &[&str]) -> Output {
        let mut args = vec!["key", "import"];
        args.extend(extra);
        self.run_with(store, &args, Some(key), None)
    }

    /// The state dir of the one store it holds.
    fn store_state(&self) -> PathBuf {
        let stores: Vec<PathBuf> = std::fs::read_dir(self.state.join("stores"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(stores.len(), 1, "{stores:?}");
        stores.into_iter().next().unwrap()
    }

    /// The keychain item's account, as the state dir names it; `None`: keys in files.
    fn account(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.store_state().join("keychain")).ok()?;
        Some(text.lines().next().unwrap().to_string())
    }

    fn key_place(&self, store: &Path) -> Value {
        self.json(store, &["--json", "status"])["key"].clone()
    }
}

/// Every file under `dir`, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_type().unwrap().is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// The key's secret part (its hex) appears in no file under `dir`.
fn assert_key_nowhere_in(dir: &Path, key: &str, what: &str) {
    let hex = key
        .trim()
        .strip_prefix("crdtdir-key-1-")
        .and_then(|rest| rest.split('-').next())
        .unwrap();
    for (path, bytes) in tree(dir) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(hex),
            "{what}: the key is in {}",
            path.display()
        );
    }
}

fn set(dev: &Dev, store: &Path, path: &str, value: &str) {
    dev.ok(store, &["append", "set", path, value]);
}

fn get(dev: &Dev, store: &Path) -> Value {
    dev.json(store, &["merge"])
}

/// A store made with its key in the keychain: the keychain holds the key that `key export`
/// prints, no file of the device does, the device reads and writes, another device given the
/// key reads every write, and `key move` takes the key to a file and back with the item
/// made and deleted as it goes.
#[test]
fn a_key_kept_in_the_keychain_never_touches_the_disk() {
    let Some(keychain) = Keychain::start(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("notes");
    let (laptop, phone) = (
        Dev::new(&keychain, dir.path(), "laptop"),
        Dev::new(&keychain, dir.path(), "phone"),
    );
    let made = laptop.json(&store, &["init", "--encrypt", "--keychain"]);
    assert_eq!(made["encrypted"], true);
    set(&laptop, &store, "/title", "\"groceries\"");
    let key = laptop.ok(&store, &["key", "export"]);
    let account = laptop.account().expect("the state dir names the item");
    assert_eq!(keychain.lookup(&account).as_deref(), Some(key.as_str()));
    assert_key_nowhere_in(&laptop.state, &key, "with the key in the keychain");
    assert_eq!(laptop.key_place(&store), "keychain");
    let status = laptop.ok(&store, &["status"]);
    assert!(status.contains("in the OS keychain"), "{status}");

    // The phone keeps it in its own item.
    let imported = phone.import(&store, &key, &["--keychain"]);
    assert!(imported.status.success(), "{imported:?}");
    let phone_account = phone.account().unwrap();
    assert_ne!(phone_account, account, "one item per state dir");
    assert_eq!(
        keychain.lookup(&phone_account).as_deref(),
        Some(key.as_str())
    );
    set(&phone, &store, "/items", "[\"milk\"]");
    assert_eq!(
        get(&laptop, &store),
        serde_json::json!({"title": "groceries", "items": ["milk"]})
    );

    // To a file and back.
    let moved = laptop.json(&store, &["--json", "key", "move", "file"]);
    assert_eq!(moved["key"], "file");
    assert_eq!(laptop.account(), None);
    assert_eq!(keychain.lookup(&account), None, "the item is deleted");
    assert_eq!(laptop.key_place(&store), "file");
    let in_file = std::fs::read_to_string(laptop.store_state().join("key")).unwrap();
    assert_eq!(in_file, key);
    set(&laptop, &store, "/title", "\"weekly groceries\"");
    laptop.ok(&store, &["key", "move", "keychain"]);
    assert!(!laptop.store_state().join("key").exists());
    assert_eq!(keychain.lookup(&account).as_deref(), Some(key.as_str()));
    assert_key_nowhere_in(&laptop.state, &key, "back in the keychain");
    // Moving where it is already changes nothing.
    laptop.ok(&store, &["key", "move", "keychain"]);
    assert_eq!(
        get(&phone, &store),
        serde_json::json!({"title": "weekly groceries", "items": ["milk"]})
    );

    // Forgetting the store deletes its item.
    std::fs::rename(&store, dir.path().join("moved-away")).unwrap();
    let forgot = laptop.run(
        &store,
        &[
            "forget",
            "--local",
            &made["id"].as_str().unwrap()[..8],
            "--yes",
        ],
    );
    assert!(forgot.status.success(), "{forgot:?}");
    assert_eq!(keychain.lookup(&account), None, "forget deletes the item");
    assert_eq!(
        keychain.lookup(&phone_account).as_deref(),
        Some(key.as_str()),
        "the phone's item stays"
    );
}

/// A rotation with the keys in the keychain keeps the new key and every older one in the
/// one item: the device reads what each key sealed, a device given only the new key reads
/// everything, and the phone with only the old key still reads what it sealed.
#[test]
fn a_rotation_keeps_every_key_in_the_keychain() {
    let Some(keychain) = Keychain::start(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("notes");
    let [laptop, phone, tablet] =
        ["laptop", "phone", "tablet"].map(|n| Dev::new(&keychain, dir.path(), n));
    laptop.ok(&store, &["init", "--encrypt", "--keychain"]);
    set(&laptop, &store, "/before", "1");
    let first = laptop.ok(&store, &["key", "export"]);
    assert!(phone.import(&store, &first, &[]).status.success());
    laptop.ok(&store, &["key", "rotate", "--yes"]);
    set(&laptop, &store, "/after", "2");
    let new = laptop.ok(&store, &["key", "export"]);
    assert_ne!(new, first);
    let held = keychain.lookup(&laptop.account().unwrap()).unwrap();
    assert_eq!(
        held,
        format!("{new}{first}"),
        "the new key first, then the older"
    );
    assert_key_nowhere_in(&laptop.state, &first, "after the rotation");
    assert_key_nowhere_in(&laptop.state, &new, "after the rotation");
    let want = serde_json::json!({"before": 1, "after": 2});
    assert_eq!(get(&laptop, &store), want);
    assert!(tablet
        .import(&store, &new, &["--keychain"])
        .status
        .success());
    assert_eq!(get(&tablet, &store), want);
    assert_eq!(get(&phone, &store)["before"], 1);
}

/// A keychain that lost the item (a user cleaned it) and a session with no Secret Service:
/// commands that need the key fail with one line naming the keychain and a hint, and change
/// nothing on disk; `key import` of an exported copy then keeps the key in a file.
#[test]
fn a_keychain_that_does_not_give_the_key_is_one_clear_line() {
    let Some(keychain) = Keychain::start(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("notes");
    let laptop = Dev::new(&keychain, dir.path(), "laptop");
    laptop.ok(&store, &["init", "--encrypt", "--keychain"]);
    set(&laptop, &store, "/n", "1");
    let key = laptop.ok(&store, &["key", "export"]);
    keychain.clear(&laptop.account().unwrap());

    let before = (tree(&store), tree(&laptop.state));
    for args in [
        &["get", "/n"][..],
        &["append", "set", "/n", "2"],
        &["key", "export"],
    ] {
        let out = laptop.run(&store, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {stderr}");
        assert!(
            lines[0].starts_with("crdtdir: the OS keychain:")
                && lines[0].contains("is not in the OS keychain"),
            "{args:?}: {stderr}"
        );
        assert!(lines[1].starts_with("crdtdir: hint: "), "{stderr}");
    }
    let status = laptop.json(&store, &["--json", "status"]);
    assert_eq!(status["locked"], true);
    assert_eq!(status["key"], "keychain");
    assert_eq!(
        (tree(&store), tree(&laptop.state)),
        before,
        "failed commands changed nothing"
    );

    // The exported copy brings it back, into a file.
    assert!(laptop.import(&store, &key, &[]).status.success());
    assert_eq!(laptop.key_place(&store), "file");
    set(&laptop, &store, "/n", "2");
    assert_eq!(get(&laptop, &store), serde_json::json!({"n": 2}));

    // No Secret Service at all: init with the keychain makes nothing.
    let empty = Keychain::start(false).unwrap();
    let desk = Dev::new(&empty, dir.path(), "desk");
    let fresh = dir.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let out = desk.run(&fresh, &["init", "--encrypt", "--keychain"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("crdtdir: the OS keychain: no Secret Service answered"),
        "{stderr}"
    );
    assert!(tree(&fresh).is_empty(), "nothing in the folder");
    assert!(
        walk(&desk.state.join("stores")).is_empty(),
        "no key and no store state"
    );
}

/// A crash at the step between the keychain keeping the keys and the state dir naming its
/// item — in `init`, `key move keychain`, `key import --keychain` and `key rotate` — loses
/// no key: the next command reads everything and writes on.
#[test]
fn a_crash_while_keeping_keys_in_the_keychain_loses_no_key() {
    let Some(keychain) = Keychain::start(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let crash = |dev: &Dev, store: &Path, args: &[&str], input: Option<&str>| {
        use std::os::unix::process::ExitStatusExt;
        let out = dev.run_with(store, args, input, Some("keys-kept-older"));
        // SIGABRT: it reached the step and aborted there.
        assert_eq!(out.status.signal(), Some(6), "{args:?}: {out:?}");
    };

    // init: the key was kept, the marker never written; init again makes the store.
    let store = dir.path().join("notes");
    let laptop = Dev::new(&keychain, dir.path(), "laptop");
    crash(&laptop, &store, &["init", "--encrypt", "--keychain"], None);
    laptop.ok(&store, &["init", "--encrypt", "--keychain"]);
    set(&laptop, &store, "/a", "1");
    let key = laptop.ok(&store, &["key", "export"]);

    // A move to the keychain: the file still holds it, and the move runs again.
    laptop.ok(&store, &["key", "move", "file"]);
    crash(&laptop, &store, &["key", "move", "keychain"], None);
    assert_eq!(get(&laptop, &store)["a"], 1);
    laptop.ok(&store, &["key", "move", "keychain"]);
    assert_eq!(laptop.key_place(&store), "keychain");

    // A rotation: the item holds the new key and the old one before the state dir knows.
    crash(&laptop, &store, &["key", "rotate", "--yes"], None);
    set(&laptop, &store, "/b", "2");
    let want = serde_json::json!({"a": 1, "b": 2});
    assert_eq!(get(&laptop, &store), want);
    let new = laptop.ok(&store, &["key", "export"]);

    // An import into the keychain.
    let phone = Dev::new(&keychain, dir.path(), "phone");
    crash(&phone, &store, &["key", "import", "--keychain"], Some(&new));
    let again = phone.import(&store, &new, &["--keychain"]);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(get(&phone, &store), want);
    assert_eq!(phone.key_place(&store), "keychain");
    // The first key still opens what it sealed, on a device given only it.
    let tablet = Dev::new(&keychain, dir.path(), "tablet");
    assert!(tablet.import(&store, &key, &[]).status.success());
    assert_eq!(get(&tablet, &store)["a"], 1);
}

/// `keychain = true` in the config file keeps the keys a device is given in the keychain,
/// as `CRDTDIR_KEYCHAIN=1` does; the environment variable, set to anything, wins over it.
#[test]
fn the_config_file_can_choose_the_keychain() {
    let Some(keychain) = Keychain::start(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "keychain = true\n").unwrap();
    let with_config = |dev: &Dev, store: &Path, args: &[&str], env: Option<&str>| {
        let mut c = dev.cmd(store, args);
        c.env("CRDTDIR_CONFIG", &config);
        if let Some(value) = env {
            c.env("CRDTDIR_KEYCHAIN", value);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    let [laptop, phone] = ["laptop", "phone"].map(|n| Dev::new(&keychain, dir.path(), n));
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    with_config(&laptop, &a, &["init", "--encrypt"], None);
    assert_eq!(laptop.key_place(&a), "keychain");
    with_config(&phone, &b, &["init", "--encrypt"], Some("0"));
    assert_eq!(phone.key_place(&b), "file");
}
