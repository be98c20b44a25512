//! A real build from before documents existed, on a store that has them: it reads the root
//! document as it was and refuses every write, with nothing changed on disk.
//!
//! Runs when `CRDTDIR_E2E=1`: it builds that older commit from this repository's history
//! (`git archive`, then `cargo build` into `target/older-build`, which later runs reuse).

use std::path::{Path, PathBuf};
use std::process::Command;

const NEW: &str = env!("CARGO_BIN_EXE_crdtdir");
/// The last commit before documents: its build knows format 1 without `features/docs`.
const BEFORE_DOCUMENTS: &str = "bb33669f0b6813c553ec0fdfe3530a18ba83c205";

fn run(bin: &Path, store: &Path, state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin)
        .arg("--store")
        .arg(store)
        .args(args)
        .env("CRDTDIR_STATE_DIR", state)
        .env("CRDTDIR_DEVICE", "laptop")
        .env_remove("CRDTDIR_STORE")
        .env_remove("CRDTDIR_DOC")
        .output()
        .unwrap()
}

fn ok(bin: &Path, store: &Path, state: &Path, args: &[&str]) -> String {
    let out = run(bin, store, state, args);
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The `crdtdir` binary of `commit`, built from this repository's history; `None` when the
/// history does not hold it (a shallow clone).
fn older_binary(commit: &str) -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let has = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        return None;
    }
    let target = repo.join("target/older-build");
    let bin = target.join(&commit[..12]).join("debug/crdtdir");
    if bin.is_file() {
        return Some(bin);
    }
    let src = tempfile::tempdir().unwrap();
    let archive = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git -C '{}' archive {commit} | tar -x -C '{}'",
            repo.display(),
            src.path().display()
        ))
        .status()
        .unwrap();
    assert!(archive.success(), "git archive {commit}");
    let built = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "crdtdir-cli"])
        .current_dir(src.path())
        .env("CARGO_TARGET_DIR", target.join(&commit[..12]))
        .status()
        .unwrap();
    assert!(built.success(), "building {commit}");
    Some(bin)
}

#[test]
fn a_build_from_before_documents_reads_the_root_one_and_writes_nothing() {
    if std::env::var("CRDTDIR_E2E").as_deref() != Ok("1") {
        eprintln!("skipped: set CRDTDIR_E2E=1 to build the older commit and run it");
        return;
    }
    let Some(old) = older_binary(BEFORE_DOCUMENTS) else {
        eprintln!("skipped: commit {BEFORE_DOCUMENTS} is not in this clone's history");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (new_state, old_state) = (dir.path().join("new"), dir.path().join("old"));
    let new = Path::new(NEW);
    ok(new, &store, &new_state, &["init"]);
    ok(
        new,
        &store,
        &new_state,
        &["append", "set", "/app", "\"notes\""],
    );
    let made: serde_json::Value =
        serde_json::from_str(&ok(new, &store, &new_state, &["docs", "new"])).unwrap();
    let id = made["id"].as_str().unwrap().to_string();
    ok(
        new,
        &store,
        &new_state,
        &["--doc", &id, "append", "set", "/title", "\"Groceries\""],
    );
    // The older build reads the root document as it is.
    assert_eq!(
        ok(&old, &store, &old_state, &["get"]).trim(),
        r#"{"app":"notes"}"#
    );
    // And refuses to write, naming the feature, with nothing changed in the folder.
    let before = common_tree(&store);
    let out = run(
        &old,
        &store,
        &old_state,
        &["append", "set", "/app", "\"x\""],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs a newer crdtdir") && err.contains("\"docs\""),
        "{err}"
    );
    assert_eq!(common_tree(&store), before);
    assert!(ok(&old, &store, &old_state, &["status"]).contains("read-only here"));
    // This build still reads both.
    assert_eq!(
        ok(new, &store, &new_state, &["--doc", &id, "get", "/title"]).trim(),
        "\"Groceries\""
    );
}

/// Every file under `dir` with its bytes.
fn common_tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}
