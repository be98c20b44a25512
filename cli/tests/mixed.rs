//! Mixed worlds: devices that use a store in a bucket directly (`--store s3://bucket/notes`)
//! and devices that use a folder on their own disk which `rclone bisync` keeps level with the
//! same bucket prefix, two ways. One store, two kinds of folder: every device ends with the
//! same document, holding every device's writes, and nothing a device wrote is lost, renamed
//! into a conflict copy or left behind as a temp on either side.
//!
//! Against moto's S3 server on loopback (tests/moto.rs) and the real rclone (1.58 or newer,
//! for `bisync`). Without rclone or moto_server the test says it was skipped; with
//! `CRDTDIR_E2E=1` their absence is a failure.
//!
//! bisync runs only between the devices' commands here, as a scheduled job would on a device
//! that is idle. rclone 1.60's bisync lists both sides, copies, then lists both sides again
//! and takes that second listing as the state it left: a file created in the folder while it
//! runs is refused as "out of sync" (every later run then asks for a resync) or, with
//! `--check-sync=false`, never carried up, and a crdtdir temp it lists may be uploaded to
//! the bucket.

#[path = "../../tests/moto.rs"]
mod moto;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_crdtdir");
/// The store's prefix in the bucket.
const PREFIX: &str = "notes";
/// The devices that use the folder bisync keeps level; every other device uses the bucket.
const ON_DISK: [&str; 2] = ["desk", "laptop"];
/// The devices that write, and how many rounds of writes each makes.
const WRITERS: [&str; 3] = ["desk", "cloud", "phone"];
const ROUNDS: u64 = 4;
/// Every loop below that waits for something to settle stops after this many turns.
const TURNS: usize = 5;

/// Whether `rclone` with `bisync` can run here. Without it the test is skipped, and fails
/// when `CRDTDIR_E2E=1`.
fn rclone_ready() -> bool {
    let bisync = Command::new("rclone")
        .args(["bisync", "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if bisync.is_ok_and(|s| s.success()) {
        return true;
    }
    assert_ne!(
        std::env::var("CRDTDIR_E2E").as_deref(),
        Ok("1"),
        "CRDTDIR_E2E=1 but rclone with `bisync` (1.58 or newer) is not on PATH \
         (apt-get install rclone)"
    );
    eprintln!("skipped: rclone with `bisync` is not on PATH (apt-get install rclone)");
    false
}

/// One store on moto, seen from the bucket and from the folder bisync keeps level with it.
struct World {
    port: u16,
    bucket: String,
    /// `s3://bucket/notes`, the bucket devices' `--store`.
    url: String,
    /// The disk devices' `--store`.
    folder: PathBuf,
    root: tempfile::TempDir,
    /// The log of every bisync run after the first (`--resync`) one.
    logs: Vec<String>,
}

impl World {
    /// `crdtdir` as `device`, with a state dir of its own, on the folder or the bucket.
    fn run(&self, device: &str, args: &[&str]) -> Output {
        let store = if ON_DISK.contains(&device) {
            self.folder.as_os_str().to_owned()
        } else {
            self.url.clone().into()
        };
        self.run_at(&store, device, args)
    }

    /// `crdtdir` as `device` on the store at `store` (a path or a URL).
    fn run_at(&self, store: &std::ffi::OsStr, device: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("--store").arg(store);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CRDTDIR_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(["--device", device, "--state-dir"])
            .arg(self.root.path().join("state").join(device))
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env(
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env("AWS_ALLOW_HTTP", "true")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `run`, which must succeed and say nothing on stderr: a skipped file, a fork, a change
    /// waiting for another, an op file published again because the folder lost it or one
    /// not published yet would each be a line there.
    fn ok(&self, device: &str, args: &[&str]) -> String {
        let out = self.run(device, args);
        Self::succeeded(out, device, args)
    }

    /// [`World::ok`] on the store at `store`.
    fn ok_at(&self, store: &std::ffi::OsStr, device: &str, args: &[&str]) -> String {
        let out = self.run_at(store, device, args);
        Self::succeeded(out, device, args)
    }

    /// The output of a run that must have succeeded and said nothing on stderr.
    fn succeeded(out: Output, device: &str, args: &[&str]) -> String {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{device}: crdtdir {args:?}: {}\n{stderr}",
            out.status
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, device: &str, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(device, args)).unwrap()
    }

    /// One `rclone bisync` run between the folder (Path1) and the bucket prefix (Path2),
    /// which must succeed. rclone is configured by environment variables alone, with its
    /// config kept in memory and its working files in this test's temp dir; nothing else
    /// from the environment reaches it (an `AWS_CA_BUNDLE` there, for one, makes its S3
    /// client refuse to start).
    fn bisync(&mut self, resync: bool) -> String {
        let mut cmd = self.rclone();
        cmd.arg("bisync")
            .arg(&self.folder)
            .arg(format!("moto:{}/{PREFIX}", self.bucket))
            .arg("--workdir")
            .arg(self.root.path().join("bisync"))
            .arg("--verbose");
        if resync {
            cmd.arg("--resync");
        }
        let out = cmd.output().expect("run rclone");
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "rclone bisync failed:\n{log}");
        if !resync {
            self.logs.push(log.clone());
        }
        log
    }

    /// `rclone` with the remote `moto:` set up by environment variables alone.
    fn rclone(&self) -> Command {
        let mut cmd = Command::new("rclone");
        for (k, _) in std::env::vars_os() {
            let name = k.to_string_lossy();
            if name.starts_with("RCLONE_") || name.starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RCLONE_CONFIG", "/dev/null")
            .env("RCLONE_CACHE_DIR", self.root.path().join("rclone-cache"))
            .env("RCLONE_CONFIG_MOTO_TYPE", "s3")
            .env("RCLONE_CONFIG_MOTO_PROVIDER", "Other")
            .env(
                "RCLONE_CONFIG_MOTO_ENDPOINT",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env("RCLONE_CONFIG_MOTO_ACCESS_KEY_ID", "test")
            .env("RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY", "test")
            .env("RCLONE_CONFIG_MOTO_REGION", "us-east-1")
            .stdin(Stdio::null());
        cmd
    }

    /// The files in the bucket under the store's prefix, named as in the folder.
    fn bucket_files(&self) -> BTreeSet<String> {
        let (status, body) =
            moto::http(self.port, "GET", &format!("/{}?list-type=2", self.bucket)).unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains("<IsTruncated>true"), "{body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|k| k.split_once("</Key>"))
            .map(|(k, _)| {
                k.strip_prefix(&format!("{PREFIX}/"))
                    .unwrap_or_else(|| panic!("{k} is outside the store's prefix"))
                    .to_string()
            })
            .collect()
    }

    /// The files in the folder, named relative to it.
    fn folder_files(&self) -> BTreeSet<String> {
        fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), base, out);
                } else {
                    let rel = e.path().strip_prefix(base).unwrap().to_path_buf();
                    out.insert(rel.to_string_lossy().into_owned());
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.folder, &self.folder, &mut out);
        out
    }
}

/// What bisync found changed in one run: (side, what, path) for each of its "File is new",
/// "File is newer", "File is older" and "File was deleted" lines.
fn found(log: &str) -> Vec<(String, String, String)> {
    log.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(" - Path")?;
            let side = format!("Path{}", rest.get(..1)?);
            let (what, path) = rest.get(1..)?.trim_start().split_once(" - ")?;
            let what = what.trim();
            what.starts_with("File ")
                .then(|| (side, what.to_string(), path.trim().to_string()))
        })
        .collect()
}

/// `ops/<actor>/<seq>-<hash>.op`: the actor and the seq.
fn op_file(path: &str) -> Option<(&str, u64)> {
    let rest = path.strip_prefix("ops/")?.strip_suffix(".op")?;
    let (actor, name) = rest.split_once('/')?;
    let (seq, hash) = name.split_once('-')?;
    (seq.len() == 10 && hash.len() == 32).then_some((actor, seq.parse().ok()?))
}

/// `packs/<actor>/<first>-<last>-<hash>.pack`: the actor and the seqs it holds.
fn pack_file(path: &str) -> Option<(&str, std::ops::RangeInclusive<u64>)> {
    let rest = path.strip_prefix("packs/")?.strip_suffix(".pack")?;
    let (actor, name) = rest.split_once('/')?;
    let mut parts = name.split('-');
    let (first, last, hash) = (parts.next()?, parts.next()?, parts.next()?);
    (hash.len() == 32 && parts.next().is_none())
        .then_some((actor, first.parse().ok()?..=last.parse().ok()?))
}

/// `devices/<actor>/<n>-<hash>.beat`.
fn is_beat(path: &str) -> bool {
    path.strip_prefix("devices/")
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(actor, name)| {
            actor.len() == 32 && !name.starts_with('.') && name.ends_with(".beat")
        })
}

/// Whether a pack in `files` holds the op file `path`.
fn packed(files: &BTreeSet<String>, path: &str) -> bool {
    let Some((actor, seq)) = op_file(path) else {
        return false;
    };
    files
        .iter()
        .filter_map(|f| pack_file(f))
        .any(|(a, seqs)| a == actor && seqs.contains(&seq))
}

#[test]
fn devices_on_a_bucket_and_on_a_folder_bisync_keeps_level_converge() {
    if !rclone_ready() {
        return;
    }
    let Some(moto) = moto::moto() else { return };
    let started = std::time::Instant::now();
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("desk-folder");
    std::fs::create_dir_all(&folder).unwrap();
    let bucket = moto::bucket(moto);
    let mut w = World {
        port: moto.port,
        url: format!("s3://{bucket}/{PREFIX}"),
        bucket,
        folder,
        root,
        logs: Vec::new(),
    };

    // The cloud device makes the store in the bucket; the first bisync (a resync) brings it
    // down to the desk's folder, where the desk reads it like any other copy.
    let init = w.root.path().join("init.json");
    std::fs::write(&init, r#"{"items": []}"#).unwrap();
    let made = w.json("cloud", &["init", "--from", init.to_str().unwrap()]);
    assert_eq!(made["store"], json!(w.url), "{made}");
    w.bisync(true);
    assert!(
        w.folder.join("crdtdir.store").is_file(),
        "{:?}",
        w.folder_files()
    );
    assert_eq!(w.json("desk", &["get"]), json!({"items": []}));

    // Rounds of writes: each device appends its own items to the one list and sets a key of
    // its own, the bucket devices seeing each other's at once and the desk seeing theirs
    // (and they its) only through bisync. Once its first writes have crossed, the desk
    // packs its op files, and the pack crosses too.
    let mut written: Vec<(String, String)> = Vec::new();
    for round in 1..=ROUNDS {
        for device in WRITERS {
            let item = format!("\"{device}-{round}\"");
            let key = format!("/{device}");
            for args in [
                ["append", "insert", "/items/-", item.as_str()],
                ["append", "set", key.as_str(), &round.to_string()],
            ] {
                let out = w.json(device, &args);
                let files = out["written"].as_array().expect("written");
                assert_eq!(files.len(), 1, "{out}");
                written.push((
                    device.to_string(),
                    files[0]["path"].as_str().unwrap().into(),
                ));
            }
        }
        w.bisync(false);
        if round == 2 {
            let packing = w.json("desk", &["pack", "--json"]);
            assert!(packing["packed"].as_u64().unwrap() >= 2, "{packing}");
            assert_eq!(packing["republished"], json!([]), "{packing}");
            w.bisync(false);
            let in_bucket = w.bucket_files();
            assert!(
                in_bucket.iter().any(|f| pack_file(f).is_some()),
                "the desk's pack did not reach the bucket: {in_bucket:?}"
            );
            assert!(in_bucket.contains("features/packs"), "{in_bucket:?}");
        }
    }
    let desk_actor = op_file(&written.iter().find(|(d, _)| d == "desk").unwrap().1)
        .unwrap()
        .0
        .to_string();

    // The packed loose files go once the bucket devices' heartbeats, carried down by bisync,
    // show they have the desk's changes; the desk packs the rest, and its deletions cross.
    let desk_loose_packed = |files: &BTreeSet<String>| {
        files
            .iter()
            .filter(|f| op_file(f).is_some_and(|(a, _)| a == desk_actor) && packed(files, f))
            .count()
    };
    for _ in 0..TURNS {
        w.ok("cloud", &["get"]);
        w.ok("phone", &["get"]);
        w.bisync(false);
        let packing = w.json("desk", &["pack", "--json"]);
        assert_eq!(packing["republished"], json!([]), "{packing}");
        w.bisync(false);
        let in_bucket = w.bucket_files();
        let desk_loose = in_bucket
            .iter()
            .filter(|f| op_file(f).is_some_and(|(a, _)| a == desk_actor))
            .count();
        if desk_loose == 0 && packing["kept_loose"] == 0 {
            break;
        }
    }
    let in_bucket = w.bucket_files();
    assert_eq!(
        desk_loose_packed(&in_bucket) + desk_loose_packed(&w.folder_files()),
        0,
        "the desk's packed loose files stayed: {in_bucket:?}"
    );

    // Every device, and a new one on each side, reads the same document: every device's
    // items in the order it wrote them, and each device's last value.
    let mut docs = Vec::new();
    for device in ["desk", "cloud", "phone", "laptop", "tablet"] {
        docs.push((device, w.json(device, &["get"])));
    }
    let doc = docs[0].1.clone();
    for (device, seen) in &docs {
        assert_eq!(seen, &doc, "{device} reads another document");
    }
    let items: Vec<&str> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(items.len(), WRITERS.len() * ROUNDS as usize, "{doc}");
    for device in WRITERS {
        let own: Vec<&str> = items
            .iter()
            .copied()
            .filter(|i| i.starts_with(&format!("{device}-")))
            .collect();
        let wrote: Vec<String> = (1..=ROUNDS).map(|r| format!("{device}-{r}")).collect();
        assert_eq!(own, wrote, "{device}'s items in {doc}");
        assert_eq!(doc[device], json!(ROUNDS), "{device}'s key in {doc}");
    }
    assert_eq!(doc.as_object().unwrap().len(), 1 + WRITERS.len(), "{doc}");
    for device in WRITERS {
        let status = w.json(device, &["status", "--json"]);
        let changes = 1 + WRITERS.len() as u64 * ROUNDS * 2;
        assert_eq!(status["changes"], json!(changes), "{device}: {status}");
        for empty in [
            "forks",
            "problems",
            "quarantined",
            "rebased",
            "waiting",
            "incomplete",
        ] {
            assert_eq!(status[empty], json!([]), "{device}: {empty} in {status}");
        }
        assert_eq!(status["unprovided"], 0, "{device}: {status}");
    }

    // Both sides end level, holding only files crdtdir writes under their own names: no
    // conflict copy, no temp, nothing renamed. `check` on the folder finds nothing
    // damaged and notices nothing it did not write.
    w.bisync(false);
    let (in_bucket, in_folder) = (w.bucket_files(), w.folder_files());
    assert_eq!(in_bucket, in_folder);
    for f in &in_bucket {
        assert!(
            ["crdtdir.store", "features/packs", "devices/touched"].contains(&f.as_str())
                || is_beat(f)
                || op_file(f).is_some()
                || pack_file(f).is_some(),
            "{f} is not a file crdtdir writes: {in_bucket:?}"
        );
    }
    let checked = w.json("desk", &["--json", "check"]);
    assert_eq!(checked["damaged"], json!([]), "{checked}");
    assert_eq!(checked["noticed"], json!([]), "{checked}");
    // No write is lost: every op file a device wrote is on both sides, loose or in a pack.
    for (device, path) in &written {
        for (side, files) in [("bucket", &in_bucket), ("folder", &in_folder)] {
            assert!(
                files.contains(path) || packed(files, path),
                "{device}'s {path} is not in the {side}: {files:?}"
            );
        }
    }

    // What bisync did on the way: it made no conflict copy and reported no error; the only
    // file it saw replaced was the change hint the bucket devices rewrite (every other file
    // is immutable); the only deletions it carried were replaced heartbeats and the desk's
    // packed loose op files; it carried each op file up or down once, and no temp.
    let all = w.logs.join("\n");
    for bad in ["..path1", "..path2", ".conflict", "in both paths", "ERROR"] {
        assert!(!all.contains(bad), "bisync logged {bad:?}:\n{all}");
    }
    let seen: Vec<(String, String, String)> = w.logs.iter().flat_map(|l| found(l)).collect();
    for (side, what, path) in &seen {
        match what.as_str() {
            "File is new" => assert!(
                is_beat(path)
                    || op_file(path).is_some()
                    || pack_file(path).is_some()
                    || ["features/packs", "devices/touched"].contains(&path.as_str()),
                "{side}: new {path}"
            ),
            "File is newer" | "File is older" => {
                assert_eq!(
                    (side.as_str(), path.as_str()),
                    ("Path2", "devices/touched"),
                    "{what}"
                )
            }
            "File was deleted" => assert!(
                is_beat(path)
                    || (side == "Path1"
                        && op_file(path).is_some_and(|(a, _)| a == desk_actor)
                        && packed(&in_bucket, path)),
                "{side}: deleted {path}"
            ),
            other => panic!("bisync said {other:?} of {path}"),
        }
    }
    for (device, path) in &written {
        let side = if ON_DISK.contains(&device.as_str()) {
            "Path1"
        } else {
            "Path2"
        };
        let times = seen
            .iter()
            .filter(|(s, what, p)| s == side && what == "File is new" && p == path)
            .count();
        assert_eq!(
            times, 1,
            "bisync saw {device}'s {path} as new on {side} {times} times"
        );
    }
    let count = |what: &str| seen.iter().filter(|(_, w, _)| w == what).count();
    eprintln!(
        "{} bisync runs ({} new, {} newer, {} deleted), {} files in the store, {:.1} s",
        w.logs.len() + 1,
        count("File is new"),
        count("File is newer"),
        count("File was deleted"),
        in_bucket.len(),
        started.elapsed().as_secs_f64()
    );
}

/// A store's folder copied from a disk into a bucket, or from a bucket onto a disk, is a
/// second folder of one store: the device that uses the first is refused the copy, with
/// what to do instead (exit 3, `copied-store`; two folders sharing one device's state would
/// mix two documents), and once the first is gone — the store moved — it uses the new one.
#[test]
fn a_store_copied_between_a_disk_and_a_bucket_is_a_copy() {
    if !rclone_ready() {
        return;
    }
    let Some(moto) = moto::moto() else { return };
    let root = tempfile::tempdir().unwrap();
    let bucket = moto::bucket(moto);
    let w = World {
        port: moto.port,
        url: format!("s3://{bucket}/{PREFIX}"),
        bucket,
        folder: root.path().join("desk-folder"),
        root,
        logs: Vec::new(),
    };
    let copy = |from: String, to: String| {
        let out = w.rclone().args(["copy", &from, &to]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    let refused = |store: &std::ffi::OsStr, device: &str| {
        let out = w.run_at(store, device, &["--json", "get"]);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("copied-store"), "{err}");
    };

    // The desk's store on its disk, copied into the bucket.
    w.ok("desk", &["init"]);
    w.ok("desk", &["append", "set", "/from", "\"desk\""]);
    copy(
        w.folder.to_string_lossy().into_owned(),
        format!("moto:{}/{PREFIX}", w.bucket),
    );
    refused(w.url.as_ref(), "desk");
    // Moved, not copied: the folder on the disk is gone, and the desk uses the bucket.
    std::fs::remove_dir_all(&w.folder).unwrap();
    let read: Value = serde_json::from_str(&w.ok_at(w.url.as_ref(), "desk", &["get"])).unwrap();
    assert_eq!(read, json!({"from": "desk"}));

    // The other way: the bucket's store copied onto a disk.
    let disk_copy = w.root.path().join("disk-copy");
    copy(
        format!("moto:{}/{PREFIX}", w.bucket),
        disk_copy.to_string_lossy().into_owned(),
    );
    refused(disk_copy.as_os_str(), "desk");
    // And a device that never used the store reads either copy.
    let elsewhere: Value =
        serde_json::from_str(&w.ok_at(disk_copy.as_os_str(), "newcomer", &["get"])).unwrap();
    assert_eq!(elsewhere, read);
}
