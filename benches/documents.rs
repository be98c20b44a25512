//! The many-documents benchmark: a notes app's repo, printed as figures (asserts nothing
//! about time).
//!
//! ```text
//! cargo build --release -p crdtdir-cli     # for the CLI rows
//! cargo bench --bench documents            # 10,000 documents x 5 devices, 100,000 changes
//! cargo bench --bench documents -- --docs 1000 --changes 10
//! ```
//! Two stores are generated once under target/crdtdir-bench/ (deterministic actors, ids and
//! seed) and reused: the repo (each note a document of its own, `--changes` changes each,
//! written by 5 devices) and, for comparison, one document holding the same notes as maps
//! under `/notes`, made of the same number of changes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crdtdir::automerge::transaction::Transactable;
use crdtdir::automerge::{ActorId, Automerge, Change, ObjType, ReadDoc, ROOT};
use crdtdir::{DocId, Options, Repo, Store, WatchOptions};
use rand::rngs::SmallRng;

mod support;
use rand::{RngExt, SeedableRng};
use support::{best_of, flag, median, peak_rss};

const DEVICES: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-open") {
        return child_open(Path::new(&args[2]), Path::new(&args[3]), &args[4..]);
    }
    let flag = |name: &str, default: usize| flag(&args, name, default);
    let docs = flag("--docs", 10_000);
    let per_doc = flag("--changes", 10);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/crdtdir-bench");
    let repo_dir = root.join(format!("docs-{docs}x{per_doc}"));
    let one_dir = root.join(format!("onedoc-{docs}x{per_doc}"));
    if !repo_dir.join("complete").exists() {
        let t = Instant::now();
        let _ = std::fs::remove_dir_all(&repo_dir);
        let _ = std::fs::remove_dir_all(&one_dir);
        generate(&repo_dir, &one_dir, docs, per_doc);
        std::fs::write(repo_dir.join("complete"), b"").unwrap();
        eprintln!("generated {} in {:.1?}", repo_dir.display(), t.elapsed());
    }
    let ids: Vec<DocId> = std::fs::read_to_string(repo_dir.join("ids"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let store = repo_dir.join("store");
    let one = one_dir.join("store");
    let scratch = tempfile::tempdir_in(&root).unwrap();
    let state = |name: &str| scratch.path().join(name);
    let opts = |name: &str| Options::new().state_dir(state(name)).device("bench");
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    println!(
        "crdtdir documents: {docs} documents x {DEVICES} devices, {} changes",
        docs * per_doc
    );
    let row = |what: &str, figure: String| println!("{what:<60} {figure:>16}");

    row(
        "live files in the folder",
        format!("{}", count_files(&store)),
    );
    row(
        "live files, the one-document store of the same changes",
        format!("{}", count_files(&one)),
    );

    // Opening one document cold: a device that never opened it (a state dir of its own).
    let open_one = open_cold(&store, &ids, &state("cold"));
    row(
        &format!("open one document of {per_doc} changes, cold (median)"),
        ms(open_one),
    );
    let whole = best_of(1, || read_every_op_file(&store));
    row("read and decode every op file of the folder", ms(whole));
    row(
        "  one document, cold / the whole folder's history",
        format!(
            "{:.2} %",
            100.0 * open_one.as_secs_f64() / whole.as_secs_f64()
        ),
    );
    let warm = Repo::open(&store, opts("cold-0")).unwrap();
    let again = best_of(5, || {
        warm.find(&ids[0]).unwrap().read().unwrap();
    });
    row("open the same document again (its cache)", ms(again));

    // Listing: the first call opens every document (the catalog is empty); later calls
    // list ops/ and reopen only documents whose files changed.
    let lister = Repo::open(&store, opts("lister")).unwrap();
    let t = Instant::now();
    let listed = lister.docs().unwrap();
    let first = t.elapsed();
    assert_eq!(listed.len(), docs + 1);
    row(
        "list all documents, first time (opens every document)",
        ms(first),
    );
    let later = best_of(5, || {
        lister.docs().unwrap();
    });
    row("list all documents, catalog warm", ms(later));
    let t = Instant::now();
    let s = Store::open(&one, opts("one")).unwrap();
    s.read_json().unwrap();
    let one_cold = t.elapsed();
    row(
        "cold merge, the one-document store of the same changes",
        ms(one_cold),
    );
    row(
        "  every document opened cold (the first listing) / that",
        format!("{:.2}x", first.as_secs_f64() / one_cold.as_secs_f64()),
    );

    // Memory: 100 documents open in one process.
    let rss = |extra: &[&str]| -> String {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .arg("--child-open")
            .arg(&store)
            .arg(state("lister"))
            .args(extra)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let hundred: Vec<&str> = ids.iter().take(100).map(DocId::as_str).collect();
    row("peak RSS, the repo opened, no document", rss(&[]));
    row("peak RSS, 100 documents open and read", rss(&hundred));

    // The CLI, one process per command, on a document this device knows.
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/crdtdir");
    if bin.is_file() {
        let cli = |args: &[&str]| {
            let out = Command::new(&bin)
                .arg("--store")
                .arg(&store)
                .args(args)
                .env("CRDTDIR_STATE_DIR", state("cli"))
                .env("CRDTDIR_DEVICE", "bench")
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {out:?}");
        };
        let id = ids[ids.len() / 2].as_str();
        cli(&["--doc", id, "get"]);
        let get = median(11, |_| cli(&["--doc", id, "get"]));
        row("CLI get --doc (median)", ms(get));
        let append = median(11, |i| {
            cli(&[
                "--doc",
                id,
                "append",
                "insert",
                "/items/-",
                &format!("\"bench {i}\""),
            ])
        });
        row("CLI append --doc (median)", ms(append));
    } else {
        println!("(CLI rows skipped: run `cargo build --release -p crdtdir-cli` first)");
    }

    // A watcher on one document: another device's change to it arrives (a rename into
    // the folder, as a sync tool delivers), until the watcher's event names it.
    {
        let id = &ids[1];
        let repo = Repo::open(&store, opts("watch")).unwrap();
        let doc = repo.find(id).unwrap();
        let writer = Repo::open(&store, opts("watch-writer"))
            .unwrap()
            .find(id)
            .unwrap();
        let watcher = doc
            .watch(WatchOptions::new().debounce(Duration::from_millis(0)))
            .unwrap();
        watcher.recv_timeout(Duration::from_secs(60)).unwrap();
        let mut took: Vec<Duration> = (0..20)
            .map(|i| {
                let t = Instant::now();
                let out = writer
                    .apply_patch(&[crdtdir::PatchOp::insert(
                        "/items/-",
                        serde_json::json!(format!("w{i}")),
                    )])
                    .unwrap();
                let hash = out.change().unwrap().to_string();
                loop {
                    let e = watcher
                        .recv_timeout(Duration::from_secs(60))
                        .expect("an event");
                    if e.changes.iter().any(|c| c.hash == hash) {
                        break;
                    }
                }
                let d = t.elapsed();
                std::thread::sleep(Duration::from_millis(150));
                d
            })
            .collect();
        took.sort();
        row(
            "another device's write -> event of that document's watcher, p50 (debounce 0)",
            ms(took[took.len() / 2]),
        );
    }
    packed_rows(
        &root,
        &store,
        &ids,
        scratch.path(),
        &format!("docs-{docs}x{per_doc}"),
    );
}

/// The rows of a store that holds the same repo with each device's changes in documents'
/// packs of 256 (made once, beside the loose one, by `pack_folder_docs_actor`).
fn packed_rows(root: &Path, store: &Path, ids: &[DocId], scratch: &Path, label: &str) {
    let packed = root.join(format!("{label}-packed"));
    if !packed.join("complete").exists() {
        let _ = std::fs::remove_dir_all(&packed);
        for e in walkdir::WalkDir::new(store)
            .into_iter()
            .filter_map(Result::ok)
        {
            let target = packed
                .join("store")
                .join(e.path().strip_prefix(store).unwrap());
            if e.file_type().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
            } else {
                std::fs::copy(e.path(), &target).unwrap();
            }
        }
        let pstore = packed.join("store");
        for actor in std::fs::read_dir(pstore.join("ops")).unwrap().flatten() {
            let actor = actor.file_name().to_string_lossy().into_owned();
            crdtdir::pack_folder_docs_actor(&pstore, &actor, 256).unwrap();
        }
        std::fs::write(packed.join("complete"), b"").unwrap();
    }
    let store = packed.join("store");
    let opts = |name: &str| Options::new().state_dir(scratch.join(name)).device("bench");
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let row = |what: &str, figure: String| println!("{what:<60} {figure:>16}");
    println!("the same repo, each device's changes in documents' packs of 256:");
    row(
        "  live files in the folder",
        format!("{}", count_files(&store)),
    );
    row(
        "  open one document, cold (median)",
        ms(open_cold(&store, ids, &scratch.join("packed-cold"))),
    );
    let warm = Repo::open(&store, opts("packed-cold-0")).unwrap();
    let again = best_of(5, || {
        warm.find(&ids[0]).unwrap().read().unwrap();
    });
    row("  open the same document again (its cache)", ms(again));
    let mut took: Vec<Duration> = (1..22)
        .map(|i| {
            let id = &ids[(i * 7919) % ids.len()];
            let t = Instant::now();
            warm.find(id).unwrap().read().unwrap();
            t.elapsed()
        })
        .collect();
    took.sort();
    row(
        "  open a document this device never opened, on a device that opened one (median)",
        ms(took[took.len() / 2]),
    );
    let lister = Repo::open(&store, opts("packed-lister")).unwrap();
    let t = Instant::now();
    assert_eq!(lister.docs().unwrap().len(), ids.len() + 1);
    row("  list all documents, first time", ms(t.elapsed()));
    let later = best_of(5, || {
        lister.docs().unwrap();
    });
    row("  list all documents, catalog warm", ms(later));
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/crdtdir");
    if bin.is_file() {
        let cli = |args: &[&str]| {
            let out = Command::new(&bin)
                .arg("--store")
                .arg(&store)
                .args(args)
                .env("CRDTDIR_STATE_DIR", scratch.join("packed-cli"))
                .env("CRDTDIR_DEVICE", "bench")
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {out:?}");
        };
        let id = ids[ids.len() / 2].as_str();
        cli(&["--doc", id, "get"]);
        row(
            "  CLI get --doc (median)",
            ms(median(11, |_| cli(&["--doc", id, "get"]))),
        );
        let append = median(11, |i| {
            let value = format!("\"bench {i}\"");
            cli(&["--doc", id, "append", "insert", "/items/-", &value])
        });
        row("  CLI append --doc (median)", ms(append));
    }
    repo_watcher_row(&store, ids, scratch);
    compaction_rows(&store, ids, scratch);
}

/// One watcher for every document (`Repo::watch`): another device's write to one document
/// (published into the folder as a sync tool delivers) until the watcher's event names it.
fn repo_watcher_row(store: &Path, ids: &[DocId], scratch: &Path) {
    let opts = |name: &str| Options::new().state_dir(scratch.join(name)).device("bench");
    let repo = Repo::open(store, opts("repo-watch")).unwrap();
    let writer = Repo::open(store, opts("repo-watch-writer")).unwrap();
    let t = Instant::now();
    let watcher = repo
        .watch(WatchOptions::new().debounce(Duration::from_millis(0)))
        .unwrap();
    // The first events: every document as found.
    let mut initial = 0;
    while initial < ids.len() + 1 {
        watcher.recv_timeout(Duration::from_secs(600)).unwrap();
        initial += 1;
    }
    let started = t.elapsed();
    let mut took: Vec<Duration> = (0..20)
        .map(|i| {
            let id = &ids[(i * 7919 + 13) % ids.len()];
            let doc = writer.find(id).unwrap();
            let t = Instant::now();
            let out = doc
                .apply_patch(&[crdtdir::PatchOp::insert(
                    "/items/-",
                    serde_json::json!(format!("r{i}")),
                )])
                .unwrap();
            let hash = out.change().unwrap().to_string();
            loop {
                let e = watcher
                    .recv_timeout(Duration::from_secs(60))
                    .expect("an event");
                if e.event.changes.iter().any(|c| c.hash == hash) {
                    break;
                }
            }
            let d = t.elapsed();
            std::thread::sleep(Duration::from_millis(150));
            d
        })
        .collect();
    took.sort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let row = |what: &str, figure: String| println!("{what:<60} {figure:>16}");
    row(
        "  one watcher for every document: start (every first event)",
        ms(started),
    );
    row(
        "  one watcher for every document: a write -> its event, p50",
        ms(took[took.len() / 2]),
    );
}

/// One compaction of the whole repo (a copy of it): its time, the files before and after,
/// and opening a document cold from the snapshot.
fn compaction_rows(store: &Path, ids: &[DocId], scratch: &Path) {
    let copy = scratch.join("compacted");
    for e in walkdir::WalkDir::new(store)
        .into_iter()
        .filter_map(Result::ok)
    {
        let target = copy.join(e.path().strip_prefix(store).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let row = |what: &str, figure: String| println!("{what:<60} {figure:>16}");
    let opts = |name: &str| Options::new().state_dir(scratch.join(name)).device("bench");
    let repo = Repo::open(&copy, opts("compactor")).unwrap();
    let before = count_files(&copy);
    let t = Instant::now();
    let done = repo.root().compact().unwrap();
    row("  compact the whole repo (every document)", ms(t.elapsed()));
    row(
        "  live files before -> after",
        format!("{before} -> {}", count_files(&copy)),
    );
    let snapshot = copy.join(done.snapshot.unwrap());
    row(
        "  the snapshot's size",
        format!(
            "{:.1} MB",
            std::fs::metadata(&snapshot).unwrap().len() as f64 / 1e6
        ),
    );
    row(
        "  after it: open one document, cold (median)",
        ms(open_cold(&copy, ids, &scratch.join("compacted-cold"))),
    );
    let lister = Repo::open(&copy, opts("compacted-lister")).unwrap();
    let t = Instant::now();
    assert_eq!(lister.docs().unwrap().len(), ids.len() + 1);
    row(
        "  after it: list all documents, first time",
        ms(t.elapsed()),
    );
    let later = best_of(5, || {
        lister.docs().unwrap();
    });
    row("  after it: list all documents, catalog warm", ms(later));
}

/// The median time of opening one document on a device that never opened any: 21 of them,
/// each with a state dir of its own (`<state>-<i>`).
fn open_cold(store: &Path, ids: &[DocId], state: &Path) -> Duration {
    median(21, |i| {
        let id = &ids[(i * 7919) % ids.len()];
        let options = Options::new()
            .state_dir(format!("{}-{i}", state.display()))
            .device("bench");
        Repo::open(store, options)
            .unwrap()
            .find(id)
            .unwrap()
            .read()
            .unwrap();
    })
}

/// Opens the repo and reads each document named, keeping them open; prints peak RSS.
fn child_open(store: &Path, state: &Path, ids: &[String]) {
    let repo = Repo::open(store, Options::new().state_dir(state).device("bench")).unwrap();
    let open: Vec<Store> = ids
        .iter()
        .map(|id| {
            let doc = repo.find(&id.parse().unwrap()).unwrap();
            doc.read().unwrap();
            doc
        })
        .collect();
    println!("{}", peak_rss());
    drop(open);
}

/// Writes the repo (`repo_dir/store`, ids in `repo_dir/ids`) and the one-document store.
fn generate(repo_dir: &Path, one_dir: &Path, docs: usize, per_doc: usize) {
    let store = repo_dir.join("store");
    let one = one_dir.join("store");
    let gen_state = repo_dir.join("gen-state");
    Store::init(
        &store,
        Options::new().state_dir(&gen_state).device("gen"),
        None,
    )
    .unwrap();
    Store::init(
        &one,
        Options::new().state_dir(&gen_state).device("gen"),
        None,
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&gen_state);
    std::fs::write(
        store.join("features/docs"),
        b"documents beside the root one\n",
    )
    .unwrap();
    let actors: Vec<ActorId> = (0..DEVICES)
        .map(|d| ActorId::from(vec![d as u8 + 1; 16]))
        .collect();
    let mut rng = SmallRng::seed_from_u64(11);
    let mut big = Automerge::new();
    big.set_actor(actors[0].clone());
    let mut tx = big.transaction();
    tx.put_object(ROOT, "notes", ObjType::Map).unwrap();
    tx.commit();
    write_op(&one, None, &big.get_last_local_change().unwrap());
    let notes = big.get(ROOT, "notes").unwrap().unwrap().1;
    let mut ids = String::new();
    for k in 0..docs {
        let id = hex(&rng.random::<[u8; 16]>());
        ids.push_str(&id);
        ids.push('\n');
        let mut doc = Automerge::new();
        let mut big_note = None;
        for c in 0..per_doc {
            let device = if c == 0 {
                k % DEVICES
            } else {
                rng.random_range(0..DEVICES)
            };
            doc.set_actor(actors[device].clone());
            big.set_actor(actors[device].clone());
            let line = format!("{} {}", words(&mut rng), c);
            let mut tx = doc.transaction();
            let mut btx = big.transaction();
            if c == 0 {
                tx.put(ROOT, "title", format!("Note {k}")).unwrap();
                tx.put_object(ROOT, "items", ObjType::List).unwrap();
                let n = btx.put_object(&notes, &id, ObjType::Map).unwrap();
                btx.put(&n, "title", format!("Note {k}")).unwrap();
                btx.put_object(&n, "items", ObjType::List).unwrap();
                big_note = Some(n);
            } else {
                let items = tx.get(ROOT, "items").unwrap().unwrap().1;
                let at = tx.length(&items);
                tx.insert(&items, at, line.clone()).unwrap();
                let n = big_note.clone().unwrap();
                let bitems = btx.get(&n, "items").unwrap().unwrap().1;
                let at = btx.length(&bitems);
                btx.insert(&bitems, at, line).unwrap();
            }
            tx.commit();
            btx.commit();
            write_op(&store, Some(&id), &doc.get_last_local_change().unwrap());
            write_op(&one, None, &big.get_last_local_change().unwrap());
        }
    }
    std::fs::write(repo_dir.join("ids"), ids).unwrap();
}

fn words(rng: &mut SmallRng) -> String {
    const W: &[&str] = &["buy", "milk", "call", "ann", "fix", "bike", "read", "notes"];
    (0..6)
        .map(|_| W[rng.random_range(0..W.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `change` as an op file of document `doc` (`None`: the root), as
/// docs/FORMAT.md §5 and §18 lay it out.
fn write_op(store: &Path, doc: Option<&str>, change: &Change) {
    use ciborium::Value;
    let device = format!("device-{}", change.actor_id().to_bytes()[0] - 1);
    let mut pairs = vec![(
        Value::Text("v".into()),
        Value::Integer(if doc.is_some() { 2 } else { 1 }.into()),
    )];
    if let Some(doc) = doc {
        pairs.push((Value::Text("doc".into()), Value::Text(doc.into())));
    }
    pairs.push((Value::Text("device".into()), Value::Text(device)));
    pairs.push((
        Value::Text("change".into()),
        Value::Bytes(change.raw_bytes().to_vec()),
    ));
    let mut bytes = Vec::new();
    ciborium::into_writer(&Value::Map(pairs), &mut bytes).unwrap();
    let dir = store.join("ops").join(change.actor_id().to_hex_string());
    std::fs::create_dir_all(&dir).unwrap();
    let hash = &blake3::hash(&bytes).to_hex()[..32];
    let name = match doc {
        Some(doc) => format!("{doc}-{:010}-{hash}.op", change.seq()),
        None => format!("{:010}-{hash}.op", change.seq()),
    };
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Reads every op file under `ops/` and decodes its change (what opening the whole
/// history costs before any merge).
fn read_every_op_file(store: &Path) {
    let mut n = 0usize;
    for e in walkdir::WalkDir::new(store.join("ops"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        let bytes = std::fs::read(e.path()).unwrap();
        let _ = blake3::hash(&bytes);
        let v: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
        let change = v
            .as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_text() == Some("change"))
            .unwrap()
            .1
            .as_bytes()
            .unwrap()
            .clone();
        Change::from_bytes(change).unwrap();
        n += 1;
    }
    assert!(n > 0);
}

fn count_files(store: &Path) -> usize {
    walkdir::WalkDir::new(store)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count()
}
