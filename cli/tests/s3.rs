//! `--store s3://bucket/prefix` through the real binary, against moto's S3 server on
//! loopback (tests/moto.rs): devices that share a bucket, and what is refused there.

#[path = "../../tests/moto.rs"]
mod moto;

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_crdtdir");

/// `crdtdir` with the store in `url`, device `device` with a state dir of its own, and the
/// AWS environment pointing at moto.
fn crdtdir(port: u16, state: &std::path::Path, url: &str, device: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--store", url, "--device", device, "--state-dir"])
        .arg(state.join(device))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env_remove("CRDTDIR_STORE")
        .env_remove("CRDTDIR_CONFIG")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The keys of `bucket`, as moto lists them.
fn keys(port: u16, bucket: &str) -> Vec<String> {
    let (_, body) = moto::http(port, "GET", &format!("/{bucket}?list-type=2")).unwrap();
    body.split("<Key>")
        .skip(1)
        .filter_map(|k| k.split_once("</Key>").map(|(k, _)| k.to_string()))
        .collect()
}

#[test]
fn devices_share_a_store_in_a_bucket() {
    let Some(moto) = moto::moto() else { return };
    let bucket = moto::bucket(moto);
    let url = format!("s3://{bucket}/notes");
    let state = tempfile::tempdir().unwrap();
    let run = |device: &str, args: &[&str]| crdtdir(moto.port, state.path(), &url, device, args);

    let made: serde_json::Value = serde_json::from_str(&ok(run("laptop", &["init"]))).unwrap();
    assert_eq!(made["store"], serde_json::json!(url), "{made}");
    ok(run("laptop", &["append", "set", "/items", "[]"]));
    ok(run("laptop", &["append", "insert", "/items/-", "\"milk\""]));
    ok(run("phone", &["append", "insert", "/items/-", "\"eggs\""]));
    ok(run("phone", &["append", "set", "/title", "\"groceries\""]));
    let seen: Vec<serde_json::Value> = ["laptop", "phone", "tablet"]
        .iter()
        .map(|d| serde_json::from_str(&ok(run(d, &["get"]))).unwrap())
        .collect();
    assert!(seen.iter().all(|s| s == &seen[0]), "{seen:?}");
    let items = seen[0]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{}", seen[0]);
    assert!(
        items.contains(&serde_json::json!("milk")) && items.contains(&serde_json::json!("eggs"))
    );
    assert_eq!(seen[0]["title"], "groceries");
    assert!(keys(moto.port, &bucket)
        .iter()
        .all(|k| k.starts_with("notes/")));

    // Packing works there: the phone's op files go into a pack, and every device still
    // reads the same document.
    ok(run("phone", &["pack"]));
    assert!(
        keys(moto.port, &bucket)
            .iter()
            .any(|k| k.contains("/packs/")),
        "{:?}",
        keys(moto.port, &bucket)
    );
    let again: serde_json::Value = serde_json::from_str(&ok(run("tablet", &["get"]))).unwrap();
    assert_eq!(again, seen[0]);

    // Compaction works there: confirmed (`--yes`; the others count as offline with
    // `--threshold 0`), it folds every op file and pack into one snapshot, and every device
    // still reads the same document and goes on writing. The others' beats count as
    // unchanged once this device has seen them and a second has passed.
    ok(run("laptop", &["status"]));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let planned: serde_json::Value = serde_json::from_str(&ok(run(
        "laptop",
        &["--json", "compact", "--dry-run", "--threshold", "0"],
    )))
    .unwrap();
    assert!(planned["op_files"].as_u64().unwrap() > 0, "{planned}");
    let done: serde_json::Value = serde_json::from_str(&ok(run(
        "laptop",
        &["compact", "--yes", "--threshold", "0"],
    )))
    .unwrap();
    let snapshot = done["snapshot"].as_str().expect("a snapshot").to_string();
    let listed = keys(moto.port, &bucket);
    assert!(listed.contains(&format!("notes/{snapshot}")), "{listed:?}");
    assert!(
        !listed
            .iter()
            .any(|k| k.contains("/ops/") || k.contains("/packs/")),
        "folded files stayed: {listed:?}"
    );
    for d in ["laptop", "phone", "tablet"] {
        let read: serde_json::Value = serde_json::from_str(&ok(run(d, &["get"]))).unwrap();
        assert_eq!(read, seen[0], "{d} after the compaction");
    }
    ok(run(
        "tablet",
        &["append", "insert", "/items/0", "\"bread\""],
    ));
    let after: serde_json::Value = serde_json::from_str(&ok(run("phone", &["get"]))).unwrap();
    assert_eq!(after["items"][0], "bread", "{after}");
    assert_eq!(after["items"].as_array().unwrap().len(), 3, "{after}");

    // check reads every object there again and finds nothing damaged; repair finds
    // nothing to write back.
    let checked: serde_json::Value =
        serde_json::from_str(&ok(run("phone", &["--json", "check"]))).unwrap();
    assert_eq!(checked["damaged"], serde_json::json!([]), "{checked}");
    assert!(checked["op_files"].as_u64().unwrap() > 0, "{checked}");
    let repaired: serde_json::Value =
        serde_json::from_str(&ok(run("phone", &["--json", "repair"]))).unwrap();
    assert_eq!(repaired["snapshot"], serde_json::Value::Null, "{repaired}");

    // A checkpoint there: a new device starts from it.
    let made: serde_json::Value =
        serde_json::from_str(&ok(run("laptop", &["--json", "checkpoint"]))).unwrap();
    let checkpoint = made["checkpoint"]
        .as_str()
        .expect("a checkpoint")
        .to_string();
    assert!(
        keys(moto.port, &bucket).contains(&format!("notes/{checkpoint}")),
        "{made}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&ok(run("newcomer", &["--json", "status"]))).unwrap();
    assert_eq!(
        status["checkpoint"],
        serde_json::json!(checkpoint),
        "{status}"
    );

    // A second init finds the store there and writes nothing.
    let before = keys(moto.port, &bucket);
    let again = run("phone", &["init"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("store marker"));
    let after: Vec<String> = keys(moto.port, &bucket)
        .into_iter()
        .filter(|k| !k.contains("/devices/"))
        .collect();
    let before: Vec<String> = before
        .into_iter()
        .filter(|k| !k.contains("/devices/"))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn a_bad_bucket_url_is_one_clear_line() {
    let Some(moto) = moto::moto() else { return };
    let state = tempfile::tempdir().unwrap();
    let out = crdtdir(moto.port, state.path(), "s3://", "laptop", &["get"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.lines().filter(|l| !l.contains("hint")).count(),
        1,
        "{err}"
    );
}
