//! A live store: watchers, their events and patches, heartbeats from apps.

use std::path::Path;
use std::time::{Duration, Instant};

use crdtdir::{Event, JsonPatch, PatchOp, Store, WatchOptions};
use proptest::prelude::*;
use serde_json::{json, Value as Json};

use crate::common::{merged, op_files, replica, Device};

const WAIT: Duration = Duration::from_secs(20);

/// Delivers the op files of `from` that `to` lacks the way Syncthing does: a temp file in
/// the target folder, then a rename. Returns how many.
fn deliver(from: &Path, to: &Path) -> usize {
    let mut n = 0;
    for rel in op_files(from) {
        let target = to.join(&rel);
        if target.exists() {
            continue;
        }
        let dir = target.parent().unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let temp = dir.join(format!(
            ".syncthing.{}.tmp",
            target.file_name().unwrap().to_string_lossy()
        ));
        std::fs::copy(from.join(&rel), &temp).unwrap();
        std::fs::rename(&temp, &target).unwrap();
        n += 1;
    }
    n
}

/// Two folders of one store: `here` (device a watches it) and `there` (device b writes).
fn two_folders(
    dir: &Path,
    initial: Json,
) -> (std::path::PathBuf, std::path::PathBuf, Device, Device) {
    let (here, there) = (dir.join("here"), dir.join("there"));
    let (a, b) = (Device::new(dir, "a"), Device::new(dir, "b"));
    Store::init(&here, a.options(), Some(&initial)).unwrap();
    replica(&here, &there);
    deliver(&here, &there);
    (here, there, a, b)
}

fn next(w: &crdtdir::Watcher) -> Event {
    w.recv_timeout(WAIT)
        .expect("an event within the time limit")
}

/// Applies JSON Pointer patches to a JSON value, as an app would (the library's applier:
/// every test that checks patches against the document checks it too).
fn apply(doc: &mut Json, patches: &[JsonPatch]) {
    JsonPatch::apply_all(patches, doc).unwrap();
}

/// A file delivered into a watched folder makes exactly one event, with the right change
/// and patches.
#[test]
fn a_delivered_file_makes_exactly_one_event_with_its_patches() {
    let dir = tempfile::tempdir().unwrap();
    let (here, there, a, b) = two_folders(dir.path(), json!({"n": {}, "title": "Shop"}));
    let watcher = a.open(&here).watch(WatchOptions::new()).unwrap();
    let first = next(&watcher);
    assert!(first.initial && first.patches.is_empty(), "{first:?}");
    let written = b
        .open(&there)
        .apply_patch(&crdtdir::parse_patch(
            r#"[{"op":"add","path":"/n/x","value":5},{"op":"splice","path":"/title","pos":4,"del":0,"text":"ping"}]"#,
        ).unwrap())
        .unwrap();
    assert_eq!(deliver(&there, &here), 1);
    let event = next(&watcher);
    assert!(!event.initial && !event.local && !event.reset, "{event:?}");
    assert_eq!(event.changes.len(), 1);
    assert_eq!(event.changes[0].device, "b");
    assert_eq!(event.changes[0].hash, written.change().unwrap());
    assert_eq!(
        serde_json::to_value(&event.patches).unwrap(),
        json!([
            {"op": "put", "path": "/n/x", "value": 5, "conflict": false},
            {"op": "splice", "path": "/title", "pos": 4, "text": "ping"},
        ])
    );
    assert!(
        watcher.recv_timeout(Duration::from_millis(700)).is_none(),
        "one file, one event"
    );
}

/// 1,000 files arriving at once make a few events, not 1,000, and the watcher's document is
/// what a cold merge of the folder gives.
#[test]
fn a_thousand_files_at_once_make_few_events_and_the_cold_document() {
    let dir = tempfile::tempdir().unwrap();
    let (here, there, a, b) = two_folders(dir.path(), json!({"l": []}));
    let writer = b.open(&there);
    for i in 0..1000 {
        writer
            .apply_patch(&[PatchOp::insert("/l/-", json!(i))])
            .unwrap();
    }
    let watcher = a.open(&here).watch(WatchOptions::new()).unwrap();
    let mut doc = next(&watcher);
    assert!(doc.initial);
    let mut json = a.open(&here).read().unwrap().to_json();
    assert_eq!(deliver(&there, &here), 1000);
    let cold = merged(&Device::new(dir.path(), "cold"), &there);
    let mut events = 0;
    let started = Instant::now();
    while serde_json::to_string(&json).unwrap() != cold {
        assert!(started.elapsed() < WAIT * 3, "the watcher never caught up");
        doc = next(&watcher);
        events += 1;
        apply(&mut json, &doc.patches);
    }
    assert!(events <= 10, "{events} events for one burst");
    let changes: usize = 1000;
    assert_eq!(
        doc.heads,
        Device::new(dir.path(), "cold2")
            .open(&there)
            .read()
            .unwrap()
            .heads()
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>(),
        "the watcher's heads are the cold merge's ({changes} changes)"
    );
}

/// Without file events (or when they are lost), the listing still finds what arrived.
#[test]
fn without_file_events_the_listing_finds_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let (here, there, a, b) = two_folders(dir.path(), json!({"n": 0}));
    let watcher = a
        .open(&here)
        .watch(
            WatchOptions::new()
                .events(false)
                .poll(Duration::from_millis(200)),
        )
        .unwrap();
    assert!(next(&watcher).initial);
    b.open(&there)
        .apply_patch(&[PatchOp::set("/n", json!(7))])
        .unwrap();
    deliver(&there, &here);
    let event = next(&watcher);
    assert_eq!(event.changes.len(), 1);
    assert_eq!(
        serde_json::to_value(&event.patches).unwrap(),
        json!([{"op": "put", "path": "/n", "value": 7, "conflict": false}])
    );
}

/// A watcher and a writer in one process: the write comes back as a local event, and a
/// write sees what the watcher merged.
#[test]
fn a_watcher_and_a_writer_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (here, there, a, b) = two_folders(dir.path(), json!({"n": 1}));
    let store = a.open(&here);
    let watcher = store.watch(WatchOptions::new()).unwrap();
    assert!(next(&watcher).initial);
    let writer = store.clone();
    std::thread::spawn(move || {
        writer
            .apply_patch(&[PatchOp::Increment {
                path: "/c".into(),
                value: 2,
            }])
            .unwrap();
    })
    .join()
    .unwrap();
    let event = next(&watcher);
    assert!(event.local, "{event:?}");
    assert_eq!(
        serde_json::to_value(&event.patches).unwrap(),
        json!([{"op": "put", "path": "/c", "value": 2, "conflict": false}])
    );
    // Another device changes n; the watcher merges it; a test op on the new value passes.
    b.open(&there)
        .apply_patch(&[PatchOp::set("/n", json!(5))])
        .unwrap();
    deliver(&there, &here);
    let event = next(&watcher);
    assert!(!event.local);
    store
        .apply_patch(
            &crdtdir::parse_patch(
                r#"[{"op":"test","path":"/n","value":5},{"op":"replace","path":"/n","value":6}]"#,
            )
            .unwrap(),
        )
        .unwrap();
    let event = next(&watcher);
    assert!(event.local);
    assert_eq!(
        serde_json::to_value(&event.patches).unwrap(),
        json!([{"op": "put", "path": "/n", "value": 6, "conflict": false}])
    );
}

/// A device that only watches (an app that never writes) publishes heartbeats: another
/// device's compaction then refuses.
#[test]
fn a_watching_app_makes_another_devices_compaction_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (a, viewer) = (
        Device::new(dir.path(), "a"),
        Device::new(dir.path(), "viewer"),
    );
    Store::init(&store, a.options(), Some(&json!({"n": 1}))).unwrap();
    let watching = viewer.open(&store).watch(WatchOptions::new()).unwrap();
    assert!(next(&watching).initial);
    let started = Instant::now();
    let refused = loop {
        match a.open(&store).compact_if_alone(300, |_| true, |_| {}) {
            Err(crdtdir::Error::NotAlone { devices }) => break devices,
            other => {
                assert!(started.elapsed() < WAIT, "never refused: {other:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert_eq!(refused[0].name, "viewer");
    drop(watching);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    /// For random edits delivered in random batches, the patches of each event, applied to
    /// the JSON before it, give the JSON after it.
    #[test]
    fn patches_applied_in_order_give_the_document(
        edits in proptest::collection::vec((0u8..6, 0usize..8, "[a-zé]{0,3}", -3i64..4), 1..25),
        batch in 1usize..6,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (here, there, a, b) = two_folders(dir.path(), json!({"l": [], "t": "", "m": {}, "c": 0}));
        let watcher = a.open(&here).watch(WatchOptions::new().debounce(Duration::from_millis(20))).unwrap();
        prop_assert!(next(&watcher).initial);
        let mut json = a.open(&here).read().unwrap().to_json();
        let writer = b.open(&there);
        for (round, chunk) in edits.chunks(batch).enumerate() {
            for (kind, at, text, n) in chunk {
                let view = writer.read().unwrap().to_json();
                let len = view["l"].as_array().unwrap().len();
                let tlen = view["t"].as_str().unwrap().chars().count();
                let op = match kind {
                    0 => PatchOp::insert(format!("/l/{}", at % (len + 1)), json!(text)).scalar(),
                    1 if len > 0 => PatchOp::Remove { path: format!("/l/{}", at % len) },
                    2 => PatchOp::Splice { path: "/t".into(), pos: at % (tlen + 1), del: usize::from(tlen > 0 && at % 2 == 0), text: text.clone() },
                    3 => PatchOp::set(format!("/m/k{at}"), json!({"v": n, "s": text})),
                    4 => PatchOp::Increment { path: "/c".into(), value: *n },
                    _ => PatchOp::set(format!("/m/k{}", at % 3), json!(null)),
                };
                let _ = writer.apply_patch(&[op]);
            }
            deliver(&there, &here);
            let want = merged(&Device::new(dir.path(), &format!("cold{round}")), &here);
            let started = Instant::now();
            while serde_json::to_string(&json).unwrap() != want {
                prop_assert!(started.elapsed() < WAIT, "stuck at {json} wanting {want}");
                let event = next(&watcher);
                prop_assert!(!event.reset);
                apply(&mut json, &event.patches);
            }
        }
    }
}

/// Changes that arrive only in a pack (the other device packed and its loose files went)
/// make an event as soon as the pack lands, not at the next safety listing a minute later:
/// the watcher watches `packs/` and its actor folders too.
#[test]
fn a_change_that_arrives_only_in_a_pack_makes_an_event_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (here, there, a, b) = two_folders(dir.path(), json!({"n": 0}));
    let writer = Store::open(&there, b.options().pack_size(0)).unwrap();
    for i in 0..3 {
        writer
            .apply_patch(&[PatchOp::set(format!("/k{i}"), json!(i))])
            .unwrap();
    }
    writer.pack().unwrap();
    let packs: Vec<String> = crate::common::tree(&there)
        .into_keys()
        .filter(|p| p.starts_with("packs/"))
        .collect();
    assert_eq!(packs.len(), 1, "{packs:?}");
    // The pack's folder is there already (a sync tool made it); the watcher starts.
    let target = here.join(&packs[0]);
    let folder = target.parent().unwrap();
    std::fs::create_dir_all(folder).unwrap();
    let watcher = a
        .open(&here)
        .watch(WatchOptions::new().debounce(Duration::from_millis(0)))
        .unwrap();
    assert!(next(&watcher).initial);
    // The pack alone, as a sync tool delivers it (temp, rename).
    let started = Instant::now();
    let temp = folder.join(".syncthing.p.tmp");
    std::fs::copy(there.join(&packs[0]), &temp).unwrap();
    std::fs::rename(&temp, &target).unwrap();
    // (The temp may make an event of its own first: the report lists it while it is there.)
    let mut changes = 0;
    while changes < 3 {
        let left = Duration::from_secs(10).saturating_sub(started.elapsed());
        let event = watcher
            .recv_timeout(left)
            .expect("an event well before the safety listing");
        changes += event.changes.len();
    }
    assert_eq!(changes, 3);
}

/// A write of this device made by another process (here: a second store opened apart, with
/// the same state dir, as `crdtdir append` in another terminal) is an event at once, not at
/// the next safety listing a minute later; the watcher's own process's writes still come
/// back as local events without a listing.
#[test]
fn another_process_of_this_device_writes_and_the_watcher_sees_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (here, _there, a, _b) = two_folders(dir.path(), json!({"n": 1}));
    let watching = a.open(&here);
    let watcher = watching
        .watch(WatchOptions::new().safety_listing(std::time::Duration::from_secs(600)))
        .unwrap();
    assert!(next(&watcher).initial);
    // Not a clone: its own memory, like another process.
    let other_process = a.open(&here);
    other_process
        .apply_patch(&[PatchOp::set("/n", json!(2))])
        .unwrap();
    let event = next(&watcher);
    assert!(event.local, "this device's change: {event:?}");
    assert_eq!(
        serde_json::to_value(&event.patches).unwrap(),
        json!([{"op": "put", "path": "/n", "value": 2, "conflict": false}])
    );
    // Its own process's write: an event too, from memory.
    watching
        .apply_patch(&[PatchOp::set("/n", json!(3))])
        .unwrap();
    let event = next(&watcher);
    assert!(event.local);
    assert_eq!(
        serde_json::to_value(&event.patches).unwrap(),
        json!([{"op": "put", "path": "/n", "value": 3, "conflict": false}])
    );
}

/// One watcher for a repo's documents: each delivered change an event of its own document
/// only, a new document an `initial` event, a deletion a `deleted` one; a watcher of some
/// documents hears of those only. (Its one thread and one inotify instance are counted
/// through the binary, in `cli/tests`.)
#[test]
fn one_watcher_follows_every_document_of_a_repo() {
    use crdtdir::{DocEvent, Repo};
    let dir = tempfile::tempdir().unwrap();
    let (here, there, a, b) = two_folders(dir.path(), json!({"app": "notes"}));
    let there_repo = Repo::open(&there, b.options()).unwrap();
    let ids: Vec<crdtdir::DocId> = (0..40)
        .map(|n| {
            there_repo
                .create(Some(&json!({"n": n, "items": []})))
                .unwrap()
        })
        .collect();
    deliver(&there, &here);
    let repo = Repo::open(&here, a.options()).unwrap();
    let watcher = repo.watch(WatchOptions::new()).unwrap();
    let some = repo
        .watch_docs(WatchOptions::new(), &[ids[3].clone()])
        .unwrap();
    let next_of = |w: &crdtdir::Watcher<DocEvent>| -> DocEvent {
        w.recv_timeout(WAIT).expect("an event in time")
    };
    // The first events: every document as found, the root one among them.
    let mut initial = std::collections::BTreeMap::new();
    for _ in 0..41 {
        let e = next_of(&watcher);
        assert!(e.event.initial, "{e:?}");
        initial.insert(e.id.clone(), e);
    }
    assert_eq!(initial.len(), 41);
    assert!(initial[repo.root().id()].root);
    assert_eq!(
        initial[ids[7].as_str()].event.document,
        Some(json!({"n": 7, "items": []}))
    );
    let first = next_of(&some);
    assert_eq!(first.id, ids[3].as_str());
    // A change to one document: an event of that document only, with its patch.
    there_repo
        .find(&ids[3])
        .unwrap()
        .apply_patch(&[PatchOp::insert("/items/-", json!("milk"))])
        .unwrap();
    deliver(&there, &here);
    let e = next_of(&watcher);
    assert_eq!(e.id, ids[3].as_str());
    assert!(!e.root && !e.event.initial && !e.event.local);
    assert_eq!(
        serde_json::to_value(&e.event.patches[0]).unwrap()["path"],
        "/items/0"
    );
    assert!(watcher.recv_timeout(Duration::from_millis(500)).is_none());
    assert_eq!(next_of(&some).id, ids[3].as_str());
    // A new document, and a deletion.
    let new = there_repo.create(Some(&json!({"title": "new"}))).unwrap();
    there_repo.delete(&ids[5]).unwrap();
    deliver(&there, &here);
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 2 {
        let e = next_of(&watcher);
        seen.insert(e.id.clone(), e);
    }
    assert!(seen[new.as_str()].event.initial);
    assert_eq!(
        seen[new.as_str()].event.document,
        Some(json!({"title": "new"}))
    );
    assert!(seen[ids[5].as_str()].deleted);
    // The watcher of one document heard of none of that.
    assert!(some.recv_timeout(Duration::from_millis(300)).is_none());
    // A write of this process through another handle is an event too, marked local.
    repo.find(&ids[9])
        .unwrap()
        .apply_patch(&[PatchOp::set("/n", json!(99))])
        .unwrap();
    let e = next_of(&watcher);
    assert_eq!(e.id, ids[9].as_str());
    assert!(e.event.local);
}

/// The async API under a real tokio runtime: a watcher's events as a `Stream` (another
/// device's delivered write arrives as an event), a repo's events as one, and the blocking
/// calls awaited without blocking the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_api_runs_under_tokio() {
    use futures_lite::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let (here, there, a, b) = two_folders(dir.path(), json!({"items": []}));
    let store = Store::open(&here, a.options()).unwrap();
    let mut events = store.watch_stream(WatchOptions::new()).unwrap();
    let first = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap();
    assert!(first.initial);
    let other = Store::open(&there, b.options()).unwrap().nonblocking();
    other
        .apply_patch(vec![PatchOp::insert("/items/-", json!("milk"))])
        .await
        .unwrap();
    deliver(&there, &here);
    let event = loop {
        let e = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap();
        if !e.changes.is_empty() {
            break e;
        }
    };
    assert!(!event.local);
    assert_eq!(
        store.nonblocking().read_json().await.unwrap().0,
        r#"{"items":["milk"]}"#
    );
    // A repo's events: a document made here comes as its first event.
    let repo = crdtdir::Repo::from(store.clone());
    let mut docs = repo.watch_stream(WatchOptions::new()).unwrap();
    let root = tokio::time::timeout(WAIT, docs.next())
        .await
        .unwrap()
        .unwrap();
    assert!(root.root);
    let id = repo
        .create_nonblocking(Some(json!({"title": "async"})))
        .await
        .unwrap();
    let made = tokio::time::timeout(WAIT, docs.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(made.id, id.as_str());
    assert!(made.event.initial);
    let listed = repo.docs_nonblocking().await.unwrap();
    assert_eq!(listed.len(), 2);
}
