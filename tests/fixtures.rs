//! Stores written by earlier versions are read forever: fixtures/ holds real stores with
//! their expected merge output (see fixtures/README.md for how each was made).

use std::path::{Path, PathBuf};

use crate::common::Device;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn check(name: &str) -> (crdtdir::View, Vec<crdtdir::ChangeInfo>) {
    check_with(name, None)
}

/// [`check`], for a reader that holds `key`.
fn check_with(
    name: &str,
    key: Option<&crdtdir::StoreKey>,
) -> (crdtdir::View, Vec<crdtdir::ChangeInfo>) {
    let dir = tempfile::tempdir().unwrap();
    let reader = Device::new(dir.path(), "reader");
    let store = fixture(name).join("store");
    if let Some(key) = key {
        reader.open(&store).import_key(key).unwrap();
    }
    let view = reader.open(&store).read().unwrap();
    let history = reader.open(&store).history().unwrap();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(name).join("expected.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(view.to_json(), expected, "fixture {name}");
    (view, history)
}

#[test]
fn v1_clean_store_reads_as_expected() {
    let (view, history) = check("v1-clean");
    assert!(view.report().problems.is_empty(), "{:?}", view.report());
    assert!(view.report().forks.is_empty());
    let files = crate::common::op_files(&fixture("v1-clean").join("store"));
    assert_eq!(history.len(), files.len(), "every op file is one change");
    let devices: std::collections::BTreeSet<&str> =
        history.iter().map(|c| c.device.as_str()).collect();
    assert_eq!(devices, ["laptop", "phone", "tablet"].into_iter().collect());
    assert!(history.iter().all(|c| c.path.starts_with("ops/")));
}

#[test]
fn v1_messy_store_reads_as_expected_and_reports_every_problem() {
    let (view, _) = check("v1-messy");
    let expected: Vec<String> =
        std::fs::read_to_string(fixture("v1-messy").join("expected-problems.txt"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
    let mut found: Vec<String> = view
        .report()
        .problems
        .iter()
        .map(|p| p.path.clone())
        .collect();
    found.extend(view.report().quarantined.iter().map(|p| p.path.clone()));
    // The fork's losing change was quarantined when the fixture was made; it is rebased now.
    found.extend(view.report().rebased.iter().map(|r| r.path.clone()));
    found.sort();
    assert_eq!(found, expected);
    assert_eq!(view.report().forks.len(), 1);
}

/// The encrypted fixture: with its key (fixtures/v1-encrypted/key.txt) it reads as
/// expected, device names and commit messages included; without it nothing reads and status
/// is locked; none of its plaintext is in its files.
#[test]
fn v1_encrypted_store_reads_with_its_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = fixture("v1-encrypted").join("store");
    let stranger = Device::new(dir.path(), "stranger").open(&store);
    assert!(matches!(stranger.read(), Err(crdtdir::Error::Locked)));
    assert!(stranger.status().unwrap().locked);
    let key = crdtdir::StoreKey::parse(
        &std::fs::read_to_string(fixture("v1-encrypted").join("key.txt")).unwrap(),
    )
    .unwrap();
    let (view, history) = check_with("v1-encrypted", Some(&key));
    assert!(view.report().problems.is_empty(), "{:?}", view.report());
    let devices: std::collections::BTreeSet<&str> =
        history.iter().map(|c| c.device.as_str()).collect();
    assert_eq!(devices, ["laptop", "phone"].into_iter().collect());
    assert!(history
        .iter()
        .any(|c| c.message.as_deref() == Some("a sealed message")));
    let all: Vec<u8> = crate::common::tree(&store)
        .into_values()
        .flatten()
        .collect();
    for secret in [
        "Sealed plans",
        "milk",
        "after compaction",
        "laptop",
        "phone",
        "sealed message",
    ] {
        assert!(
            !all.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is readable in the fixture"
        );
    }
}

#[test]
fn v1_packed_store_reads_as_expected() {
    let (view, history) = check("v1-packed");
    assert!(view.report().problems.is_empty(), "{:?}", view.report());
    assert!(view.report().forks.is_empty());
    let store = fixture("v1-packed").join("store");
    let files: Vec<String> = crate::common::tree(&store).into_keys().collect();
    let packs = files.iter().filter(|p| p.ends_with(".pack")).count();
    let loose = files.iter().filter(|p| p.ends_with(".op")).count();
    assert!(packs >= 4 && loose >= 1, "{files:?}");
    // Every change counts once, whether loose, packed or both.
    assert_eq!(history.len(), 15, "{history:?}");
}

/// A store of an earlier build is a repo of one document: its root one, which reads as the
/// store did.
#[test]
fn a_v1_store_opens_as_a_repo_of_one_document() {
    let dir = tempfile::tempdir().unwrap();
    let reader = Device::new(dir.path(), "reader");
    let repo = crdtdir::Repo::open(fixture("v1-clean").join("store"), reader.options()).unwrap();
    let docs = repo.docs().unwrap();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert!(docs[0].root && !docs[0].deleted);
    assert_eq!(docs[0].id, repo.root().doc_id());
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("v1-clean").join("expected.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        repo.find(&docs[0].id).unwrap().read().unwrap().to_json(),
        expected
    );
}

/// A store with documents beside its root one (`features/docs`) reads as expected: every
/// document, the deleted one listed as deleted, nothing reported.
#[test]
fn v1_docs_store_reads_every_document_as_expected() {
    let dir = tempfile::tempdir().unwrap();
    let reader = Device::new(dir.path(), "reader");
    let store = fixture("v1-docs").join("store");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("v1-docs").join("expected.json")).unwrap(),
    )
    .unwrap();
    let repo = crdtdir::Repo::open(&store, reader.options()).unwrap();
    let root = repo.root().read().unwrap();
    assert_eq!(root.to_json(), expected["root"]);
    assert!(root.report().problems.is_empty(), "{:?}", root.report());
    let docs = repo.docs().unwrap();
    let deleted: Vec<&str> = expected["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        docs.len(),
        1 + expected["docs"].as_object().unwrap().len() + deleted.len()
    );
    for info in &docs[1..] {
        let id = info.id.as_str();
        assert_eq!(info.deleted, deleted.contains(&id), "{id}");
        if info.deleted {
            assert!(repo.find(&info.id).is_err());
            continue;
        }
        let view = repo.find(&info.id).unwrap().read().unwrap();
        assert_eq!(view.to_json(), expected["docs"][id], "{id}");
        assert!(view.report().problems.is_empty(), "{:?}", view.report());
        assert_eq!(
            info.title.as_deref(),
            expected["docs"][id]["title"].as_str()
        );
    }
    // A build that knows no documents finds a feature it does not know: it writes nothing.
    assert!(store.join("features/docs").is_file());
}
