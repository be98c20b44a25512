//! End to end through a real file-sync tool: two Syncthing instances on loopback, each its
//! own device, carry one store between two folders while both devices append.
//!
//! Runs when `CRDTDIR_E2E=1` (CI sets it after installing Debian's syncthing); without it the
//! test says it was skipped. With it and no `syncthing` on the PATH, it fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_crdtdir");
/// Every wait below is bounded by this.
const PATIENCE: Duration = Duration::from_secs(120);

struct Syncthing {
    child: Child,
}

impl Drop for Syncthing {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn device_id(home: &Path) -> String {
    let out = Command::new("syncthing")
        .args(["generate", "--no-default-folder", "--skip-port-probing"])
        .arg(format!("--home={}", home.display()))
        .output()
        .expect("run syncthing generate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("syncthing")
        .args(["serve", "--device-id"])
        .arg(format!("--home={}", home.display()))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A config that talks to nothing but the other instance on 127.0.0.1.
fn write_config(home: &Path, me: (&str, u16, u16), other: (&str, u16), folder: &Path) {
    let (my_id, my_port, gui_port) = me;
    let (other_id, other_port) = other;
    let config = format!(
        r#"<configuration version="36">
    <folder id="crdtdir" label="crdtdir" path="{folder}" type="sendreceive" rescanIntervalS="2" fsWatcherEnabled="true" fsWatcherDelayS="1">
        <device id="{my_id}"></device>
        <device id="{other_id}"></device>
        <minDiskFree unit="%">0</minDiskFree>
    </folder>
    <device id="{my_id}" name="self"><address>tcp://127.0.0.1:{my_port}</address></device>
    <device id="{other_id}" name="other"><address>tcp://127.0.0.1:{other_port}</address></device>
    <gui enabled="true" tls="false"><address>127.0.0.1:{gui_port}</address><apikey>crdtdir-e2e</apikey></gui>
    <options>
        <listenAddress>tcp://127.0.0.1:{my_port}</listenAddress>
        <globalAnnounceEnabled>false</globalAnnounceEnabled>
        <localAnnounceEnabled>false</localAnnounceEnabled>
        <relaysEnabled>false</relaysEnabled>
        <natEnabled>false</natEnabled>
        <startBrowser>false</startBrowser>
        <urAccepted>-1</urAccepted>
        <autoUpgradeIntervalH>0</autoUpgradeIntervalH>
        <crashReportingEnabled>false</crashReportingEnabled>
        <minHomeDiskFree unit="%">0</minHomeDiskFree>
        <reconnectionIntervalS>1</reconnectionIntervalS>
    </options>
</configuration>
"#,
        folder = folder.display()
    );
    std::fs::write(home.join("config.xml"), config).unwrap();
}

fn start(home: &Path) -> Syncthing {
    let log = std::fs::File::create(home.join("log.txt")).unwrap();
    let child = Command::new("syncthing")
        .args(["serve", "--no-browser", "--no-restart"])
        .arg(format!("--home={}", home.display()))
        .env("STNODEFAULTFOLDER", "1")
        .env("STNOUPGRADE", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start syncthing");
    Syncthing { child }
}

fn crdtdir(store: &Path, state: &Path, device: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--store")
        .arg(store)
        .arg("--state-dir")
        .arg(state)
        .args(["--device", device])
        .args(args)
        .env_remove("CRDTDIR_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// Polls `done` until it holds or PATIENCE runs out.
fn wait_for(what: &str, homes: &[PathBuf], mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > PATIENCE {
            for h in homes {
                let log = std::fs::read_to_string(h.join("log.txt")).unwrap_or_default();
                eprintln!(
                    "--- {}:\n{}",
                    h.display(),
                    log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
                );
            }
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn two_devices_through_syncthing_converge() {
    converge_through_syncthing(false);
}

/// The same through an encrypted store: the phone imports the key once the store has
/// arrived, and no value crosses Syncthing in plaintext.
#[test]
fn two_devices_through_syncthing_converge_encrypted() {
    converge_through_syncthing(true);
}

fn converge_through_syncthing(encrypt: bool) {
    if std::env::var("CRDTDIR_E2E").as_deref() != Ok("1") {
        eprintln!("skipped: set CRDTDIR_E2E=1 (with syncthing installed) to run it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (home_a, home_b) = (dir.path().join("st-a"), dir.path().join("st-b"));
    let (store_a, store_b) = (
        dir.path().join("laptop/todo"),
        dir.path().join("phone/todo"),
    );
    let (state_a, state_b) = (
        dir.path().join("state-laptop"),
        dir.path().join("state-phone"),
    );
    std::fs::create_dir_all(&store_a).unwrap();
    std::fs::create_dir_all(&store_b).unwrap();
    let (id_a, id_b) = (device_id(&home_a), device_id(&home_b));
    let (port_a, port_b) = (free_port(), free_port());
    write_config(
        &home_a,
        (&id_a, port_a, free_port()),
        (&id_b, port_b),
        &store_a,
    );
    write_config(
        &home_b,
        (&id_b, port_b, free_port()),
        (&id_a, port_a),
        &store_b,
    );
    let homes = vec![home_a.clone(), home_b.clone()];
    let _a = start(&home_a);
    let _b = start(&home_b);

    // The laptop makes the store; the phone receives it through Syncthing.
    let init = dir.path().join("init.json");
    std::fs::write(&init, r#"{"items": [], "note": "shopping"}"#).unwrap();
    let mut init_args = vec!["init", "--from", init.to_str().unwrap()];
    if encrypt {
        init_args.push("--encrypt");
    }
    let (ok, _, err) = crdtdir(&store_a, &state_a, "laptop", &init_args);
    assert!(ok, "{err}");
    let key = crdtdir(&store_a, &state_a, "laptop", &["key", "export"]).1;
    if encrypt {
        wait_for("the store marker to reach the phone", &homes, || {
            store_b.join("crdtdir.store").exists()
        });
        let (ok, _, err) = crdtdir(&store_b, &state_b, "phone", &["key", "import", &key]);
        assert!(ok, "{err}");
    }
    wait_for("the store to reach the phone", &homes, || {
        crdtdir(&store_b, &state_b, "phone", &["merge"]).1 == r#"{"items":[],"note":"shopping"}"#
    });

    // Both append while the other's files may still be in flight.
    for (store, state, device, item) in [
        (&store_a, &state_a, "laptop", r#""milk""#),
        (&store_b, &state_b, "phone", r#""eggs""#),
        (&store_a, &state_a, "laptop", r#""bread""#),
        (&store_b, &state_b, "phone", r#""tea""#),
    ] {
        let (ok, _, err) = crdtdir(
            store,
            state,
            device,
            &["append", "insert", "/items/-", item],
        );
        assert!(ok, "{err}");
    }
    let (ok, _, err) = crdtdir(
        &store_a,
        &state_a,
        "laptop",
        &["append", "splice", "/note", "0", "0", "weekly "],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = crdtdir(
        &store_b,
        &state_b,
        "phone",
        &["append", "splice", "/note", "8", "0", "!"],
    );
    assert!(ok, "{err}");

    // Once the files have crossed, both print the same bytes, with every edit in them.
    wait_for("both devices to agree", &homes, || {
        let a = crdtdir(&store_a, &state_a, "laptop", &["merge"]).1;
        let b = crdtdir(&store_b, &state_b, "phone", &["merge"]).1;
        a == b
            && ["milk", "eggs", "bread", "tea", "weekly shopping!"]
                .iter()
                .all(|w| a.contains(w))
    });
    // Nothing was a conflict for Syncthing: every file has one author.
    for (store, state, name) in [
        (&store_a, &state_a, "laptop"),
        (&store_b, &state_b, "phone"),
    ] {
        let conflicts: Vec<_> = walk(store)
            .into_iter()
            .filter(|p| p.contains(".sync-conflict-"))
            .collect();
        assert!(conflicts.is_empty(), "{conflicts:?}");
        let (ok, status, err) = crdtdir(store, state, name, &["status", "--json"]);
        assert!(ok, "{err}");
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["forks"], serde_json::json!([]));
        assert_eq!(status["changes"], 7);
    }

    // The phone watches; a change on the laptop arrives through Syncthing as a watch line.
    let mut watch = Command::new(BIN)
        .arg("--store")
        .arg(&store_b)
        .arg("--state-dir")
        .arg(&state_b)
        .args(["--device", "phone", "watch"])
        .env_remove("CRDTDIR_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(PATIENCE).expect("the first watch line");
    assert_eq!(first["initial"], true, "{first}");
    let (ok, _, err) = crdtdir(
        &store_a,
        &state_a,
        "laptop",
        &["append", "set", "/seen", r#""from the laptop""#],
    );
    assert!(ok, "{err}");
    let start = Instant::now();
    let line = loop {
        let left = PATIENCE.saturating_sub(start.elapsed());
        let line = lines
            .recv_timeout(left)
            .expect("a watch line with the laptop's change");
        let patches = line["patches"].as_array().cloned().unwrap_or_default();
        if patches.iter().any(|p| p["path"] == "/seen") {
            break line;
        }
    };
    assert!(
        line["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["device"] == "laptop"),
        "{line}"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &watch.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(
        watch.wait().unwrap().success(),
        "watch ends cleanly on SIGTERM"
    );
    wait_for("both devices to agree again", &homes, || {
        crdtdir(&store_a, &state_a, "laptop", &["merge"]).1
            == crdtdir(&store_b, &state_b, "phone", &["merge"]).1
    });

    // Packing: the laptop packs its own op files; once the phone's beat (published by its
    // commands) shows it has them, the loose files go. Syncthing carries the pack and the
    // deletions, and the phone still reads every change.
    let agreed = crdtdir(&store_a, &state_a, "laptop", &["merge"]).1;
    let own_loose_left = |store: &Path| {
        let files = walk(store);
        let packed_actors: Vec<String> = files
            .iter()
            .filter(|f| f.ends_with(".pack"))
            .filter_map(|f| {
                f.split("/packs/")
                    .nth(1)?
                    .split('/')
                    .next()
                    .map(String::from)
            })
            .collect();
        !packed_actors.is_empty()
            && files.iter().any(|f| {
                f.ends_with(".op")
                    && packed_actors
                        .iter()
                        .any(|a| f.contains(&format!("/ops/{a}/")))
            })
    };
    let mut packed_any = false;
    wait_for("the laptop's packed loose files to go", &homes, || {
        crdtdir(&store_b, &state_b, "phone", &["status"]);
        let (ok, out, err) = crdtdir(&store_a, &state_a, "laptop", &["--json", "pack"]);
        assert!(ok, "{err}");
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        packed_any |= out["packed"].as_u64().unwrap_or(0) > 0;
        packed_any && !own_loose_left(&store_a)
    });
    wait_for(
        "the pack and the deletions to reach the phone",
        &homes,
        || walk(&store_b).iter().any(|f| f.ends_with(".pack")) && !own_loose_left(&store_b),
    );
    assert_eq!(crdtdir(&store_b, &state_b, "phone", &["merge"]).1, agreed);
    let packed_reader = dir.path().join("state-packed-reader");
    if encrypt {
        let (ok, _, err) = crdtdir(&store_b, &packed_reader, "reader", &["key", "import", &key]);
        assert!(ok, "{err}");
    }
    assert_eq!(
        crdtdir(&store_b, &packed_reader, "reader", &["merge"]).1,
        agreed,
        "a new device reads the packed store"
    );

    // Compaction on the laptop, once the phone has gone quiet: Syncthing carries the
    // snapshot and the deletions, and the phone still sees every change.
    // The phone's last beats may still be in flight: the laptop refuses (exit 3) while
    // it sees them change, and compacts once they have been still for the threshold.
    let agreed = crdtdir(&store_a, &state_a, "laptop", &["merge"]).1;
    let mut out = String::new();
    wait_for("the phone to look offline to the laptop", &homes, || {
        crdtdir(&store_a, &state_a, "laptop", &["status"]);
        std::thread::sleep(Duration::from_millis(1500));
        let (ok, o, err) = crdtdir(
            &store_a,
            &state_a,
            "laptop",
            &["compact", "--yes", "--threshold", "1"],
        );
        assert!(ok || err.contains("looks online"), "{err}");
        out = o;
        ok
    });
    assert!(out.contains("snapshots/"), "{out}");
    wait_for("the compaction to reach the phone", &homes, || {
        let files = walk(&store_b);
        files.iter().all(|f| !f.ends_with(".op")) && files.iter().any(|f| f.ends_with(".sqlite"))
    });
    let (ok, phone_view, err) = crdtdir(&store_b, &state_b, "phone", &["merge"]);
    assert!(ok && err.is_empty(), "{err}");
    assert_eq!(phone_view, agreed);
    let fresh = dir.path().join("state-fresh");
    if encrypt {
        let (ok, _, err) = crdtdir(&store_b, &fresh, "tablet", &["key", "import", &key]);
        assert!(ok, "{err}");
        // Nothing the devices wrote is readable in what Syncthing carried.
        for f in walk(&store_b) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            for secret in ["milk", "shopping", "laptop", "from the laptop"] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} readable in {f}"
                );
            }
        }
    }
    assert_eq!(
        crdtdir(&store_b, &fresh, "tablet", &["merge"]).1,
        agreed,
        "a new device"
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}
