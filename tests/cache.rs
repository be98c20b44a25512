//! The local cache: merges cost what is new, the view never goes back, and a damaged or
//! foreign cache is rebuilt, never trusted.

use std::path::{Path, PathBuf};

use crdtdir::{PatchOp, Store};
use proptest::prelude::*;
use serde_json::json;

use crate::common::{merged, op_files, replica, sync_ops, Device};

fn cache_files(device: &Device) -> Vec<PathBuf> {
    walkdir::WalkDir::new(&device.state)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| matches!(e.file_name().to_str(), Some("cache" | "view")))
        .map(|e| e.into_path())
        .collect()
}

fn store_with_history(dir: &Path) -> (PathBuf, Device) {
    let store = dir.join("store");
    let a = Device::new(dir, "a");
    Store::init(&store, a.options(), Some(&json!({"items": [], "n": {}}))).unwrap();
    for i in 0..5 {
        a.open(&store)
            .apply_patch(&[PatchOp::insert("/items/-", json!(i))])
            .unwrap();
    }
    (store, a)
}

/// What a device with no cache at all sees.
fn cold(store: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    merged(&Device::new(dir.path(), "cold"), store)
}

#[test]
fn a_merge_writes_the_cache_and_the_next_one_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a) = store_with_history(dir.path());
    assert!(cache_files(&a).is_empty(), "writes do not build the cache");
    let first = merged(&a, &store);
    assert_eq!(cache_files(&a).len(), 2);
    assert_eq!(first, cold(&store));
    // The fast path answers from the view without reading any op file: overwrite one in
    // place (same name) to prove it; a read of it would be reported as a problem.
    let victim = store.join(&op_files(&store)[0]);
    let mut perms = std::fs::metadata(&victim).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&victim, perms).unwrap();
    std::fs::write(&victim, b"garbage").unwrap();
    let (json, report) = a.open(&store).read_json().unwrap();
    assert_eq!(json, first);
    assert!(
        report.problems.is_empty(),
        "the fast path read an op file: {report:?}"
    );
}

#[test]
fn damaged_foreign_or_old_caches_give_the_cold_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a) = store_with_history(dir.path());
    let (other, b) = store_with_history(&dir.path().join("other"));
    merged(&a, &store);
    merged(&b, &other);
    let truth = cold(&store);
    let originals: Vec<(PathBuf, Vec<u8>)> = cache_files(&a)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    let foreign: Vec<Vec<u8>> = {
        let mut files = cache_files(&b);
        files.sort();
        files.iter().map(|p| std::fs::read(p).unwrap()).collect()
    };
    type Damage<'a> = Box<dyn Fn(&[u8], usize) -> Vec<u8> + 'a>;
    let damage: Vec<(&str, Damage)> = vec![
        (
            "truncated",
            Box::new(|b: &[u8], _| b[..b.len() / 2].to_vec()),
        ),
        (
            "garbage",
            Box::new(|_: &[u8], _| b"\xff\x00garbage".to_vec()),
        ),
        ("empty", Box::new(|_: &[u8], _| Vec::new())),
        (
            "another store's",
            Box::new(|_: &[u8], i| foreign[i].clone()),
        ),
        (
            "an old version's",
            Box::new(|b: &[u8], _| {
                // {"v": 0, ...}: same shape, version 0.
                let mut v: ciborium::Value = ciborium::from_reader(b).unwrap();
                for (k, val) in v.as_map_mut().unwrap() {
                    if k.as_text() == Some("v") {
                        *val = ciborium::Value::Integer(0.into());
                    }
                }
                let mut out = Vec::new();
                ciborium::into_writer(&v, &mut out).unwrap();
                out
            }),
        ),
    ];
    let mut sorted = originals.clone();
    sorted.sort();
    for (what, f) in &damage {
        for (i, (path, bytes)) in sorted.iter().enumerate() {
            std::fs::write(path, f(bytes, i)).unwrap();
        }
        assert_eq!(merged(&a, &store), truth, "{what} cache");
        assert_eq!(
            a.open(&store).read_json().unwrap().0,
            truth,
            "{what} cache, fast path"
        );
        // Damage only the view, keep a good cache: still the truth.
        for (path, bytes) in &sorted {
            std::fs::write(path, bytes).unwrap();
        }
    }
    for (path, _) in &sorted {
        std::fs::remove_file(path).unwrap();
    }
    assert_eq!(merged(&a, &store), truth, "deleted cache");
}

/// A view computed from a different listing is never served: a new file, a removed file
/// (the view keeps its content) and a damaged file completed in place all show.
#[test]
fn the_view_follows_the_folder_and_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a) = store_with_history(dir.path());
    let b = Device::new(dir.path(), "b");
    let before = merged(&a, &store);
    // New file from another device.
    b.open(&store)
        .apply_patch(&[PatchOp::set("/n/b", json!(1))])
        .unwrap();
    let with_b = merged(&a, &store);
    assert_ne!(with_b, before);
    assert_eq!(with_b, cold(&store));
    // Files disappear (a compaction elsewhere, a sync tool still delivering): no content
    // is lost from this device's view.
    for rel in op_files(&store).into_iter().take(3) {
        std::fs::remove_file(store.join(rel)).unwrap();
    }
    assert_eq!(merged(&a, &store), with_b);
    assert_eq!(a.open(&store).read_json().unwrap().0, with_b);
}

/// A torn op file that a sync tool later completes in place (same name) is picked up.
#[test]
fn a_damaged_file_completed_in_place_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a) = store_with_history(dir.path());
    let b = Device::new(dir.path(), "b");
    let elsewhere = dir.path().join("elsewhere");
    replica(&store, &elsewhere);
    sync_ops(&store, &elsewhere, |_| true);
    b.open(&elsewhere)
        .apply_patch(&[PatchOp::set("/n/b", json!(2))])
        .unwrap();
    let new_file = op_files(&elsewhere)
        .into_iter()
        .find(|f| !store.join(f).exists())
        .unwrap();
    let bytes = std::fs::read(elsewhere.join(&new_file)).unwrap();
    std::fs::create_dir_all(store.join(&new_file).parent().unwrap()).unwrap();
    std::fs::write(store.join(&new_file), &bytes[..bytes.len() / 2]).unwrap();
    let (_, report) = a.open(&store).read_json().unwrap();
    assert_eq!(report.problems.len(), 1);
    std::fs::write(store.join(&new_file), &bytes).unwrap();
    let (json, report) = a.open(&store).read_json().unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    assert!(json.contains(r#""b":2"#), "{json}");
}

/// A fork that arrives after the cache was built is decided as a cold merge decides it.
#[test]
fn a_fork_arriving_later_rebuilds_and_agrees_with_a_cold_merge() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a) = store_with_history(dir.path());
    merged(&a, &store);
    // A cloned state writes a different change under a's actor and next seq.
    let clone = Device::new(dir.path(), "clone");
    crate::common::clone_state(&a, &clone);
    let elsewhere = dir.path().join("elsewhere");
    replica(&store, &elsewhere);
    sync_ops(&store, &elsewhere, |_| true);
    a.open(&store)
        .apply_patch(&[PatchOp::set("/n/x", json!("a"))])
        .unwrap();
    clone
        .open(&elsewhere)
        .apply_patch(&[PatchOp::set("/n/x", json!("clone"))])
        .unwrap();
    merged(&a, &store); // the cache holds a's branch
    sync_ops(&elsewhere, &store, |_| true);
    let view = a.open(&store).read().unwrap();
    assert_eq!(view.report().forks.len(), 1);
    assert_eq!(
        serde_json::to_string(&view.to_json()).unwrap(),
        cold(&store)
    );
}

#[derive(Debug, Clone)]
enum Step {
    Write(usize, i64),
    Deliver(u64),
    Merge,
    Remove(u64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        prop_oneof![
            3 => (0usize..3, any::<i64>()).prop_map(|(d, v)| Step::Write(d, v)),
            2 => any::<u64>().prop_map(Step::Deliver),
            2 => Just(Step::Merge),
            1 => any::<u64>().prop_map(Step::Remove),
        ],
        1..30,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    /// A reader merging incrementally after random deliveries (and removals) ends with the
    /// same output as a cold merge of every change present at any of its merges.
    #[test]
    fn incremental_merges_equal_a_cold_merge(steps in steps()) {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        let writers: Vec<Device> = (0..3).map(|i| Device::new(dir.path(), &format!("w{i}"))).collect();
        Store::init(&source, writers[0].options(), Some(&json!({"m": {}, "l": []}))).unwrap();
        let reader_folder = dir.path().join("reader");
        replica(&source, &reader_folder);
        let everything = dir.path().join("everything");
        replica(&source, &everything);
        let reader = Device::new(dir.path(), "reader");
        for step in &steps {
            match step {
                Step::Write(d, v) => {
                    let patch = if v % 2 == 0 {
                        PatchOp::set(format!("/m/k{}", v.rem_euclid(5)), json!(v))
                    } else {
                        PatchOp::insert("/l/-", json!(v))
                    };
                    writers[*d].open(&source).apply_patch(&[patch]).unwrap();
                }
                Step::Deliver(mask) => {
                    let mut bit = 0;
                    sync_ops(&source, &reader_folder, |_| { bit = (bit + 1) % 64; mask & (1 << bit) != 0 });
                }
                Step::Merge => {
                    merged(&reader, &reader_folder);
                    // What the reader has now seen.
                    sync_ops(&reader_folder, &everything, |_| true);
                }
                Step::Remove(mask) => {
                    for (i, rel) in op_files(&reader_folder).into_iter().enumerate() {
                        if mask & (1 << (i % 64)) != 0 {
                            std::fs::remove_file(reader_folder.join(rel)).unwrap();
                        }
                    }
                }
            }
        }
        sync_ops(&reader_folder, &everything, |_| true);
        // The reader's view holds every change it ever merged, removed files included.
        let incremental = merged(&reader, &reader_folder);
        let cold_dir = tempfile::tempdir().unwrap();
        let fresh = Device::new(cold_dir.path(), "fresh");
        // The cold answer for "everything it saw": merge the union folder from nothing.
        let union = merged(&fresh, &everything);
        prop_assert_eq!(incremental, union);
    }
}

/// A log line's writer for the test below: everything the subscriber prints, kept.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A cache save that fails is swallowed (the cache only saves time) but logged, with the
/// reason, for an app that installs a tracing subscriber; without one, nothing is printed.
#[test]
fn a_cache_save_that_fails_is_logged() {
    use crdtdir::fault::{inject, Fault};
    use tracing_subscriber::util::SubscriberInitExt;
    let dir = tempfile::tempdir().unwrap();
    let (store, a) = store_with_history(dir.path());
    let captured = Captured::default();
    let sink = captured.clone();
    let _default = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish()
        .set_default();
    {
        let _armed = inject("cache-saved", Fault::Fail);
        let (json, _) = a.open(&store).read_json().unwrap();
        assert_eq!(json, cold(&store), "a failed cache save fails no read");
    }
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("WARN") && log.contains("the cache was not saved"),
        "{log:?}"
    );
    assert!(
        log.contains("injected at cache-saved"),
        "the reason: {log:?}"
    );
    // A save that works logs no warning.
    captured.0.lock().unwrap().clear();
    let dir2 = tempfile::tempdir().unwrap();
    let (store2, b) = store_with_history(dir2.path());
    b.open(&store2).read_json().unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!log.contains("WARN"), "{log:?}");
}

/// A command that merges nothing new publishes its heartbeat from the saved view (no
/// document is loaded), and the beat says what the device has really merged: another
/// device's presence shows nothing of its own changes missing there.
#[test]
fn a_beat_from_the_saved_view_names_what_was_merged() {
    let dir = tempfile::tempdir().unwrap();
    let (store, a) = store_with_history(dir.path());
    let b = Device::new(dir.path(), "b");
    b.open(&store)
        .apply_patch(&[PatchOp::insert("/items/-", json!("from b"))])
        .unwrap();
    // a merges b's change (and saves its view); its last beat is from before.
    let seen = a.open(&store).read().unwrap();
    assert!(seen.to_json()["items"].to_string().contains("from b"));
    let unmerged_at_b = || {
        b.open(&store)
            .presence(3600)
            .unwrap()
            .into_iter()
            .find(|p| p.name == "a")
            .map(|p| p.unmerged)
    };
    assert_eq!(unmerged_at_b(), Some(1), "a's beat predates b's change");
    // A new process of a, nothing new in the folder: its beat comes from the view.
    assert!(a.open(&store).beat().unwrap(), "a beat was published");
    assert_eq!(
        unmerged_at_b(),
        Some(0),
        "the beat names b's change as merged"
    );
}
