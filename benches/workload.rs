//! The crdtdir workload benchmark: prints figures, asserts nothing about time.
//!
//! ```text
//! cargo build --release -p crdtdir-cli     # for the CLI rows
//! cargo bench --bench workload             # 5 devices x 20,000 commits
//! cargo bench --bench workload -- --devices 5 --commits 2000
//! cargo bench --bench workload -- --generate-only   # only make the store
//! ```
//! The store is generated once per size under target/crdtdir-bench/ (deterministic
//! actors and seed) and reused. Every figure is wall time on a warm page cache.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crdtdir::automerge::transaction::Transactable;
use crdtdir::automerge::{ActorId, Automerge, Change, ObjType, ReadDoc, ROOT};
use crdtdir::{Options, PatchOp, Store, WatchOptions};
use rand::rngs::SmallRng;

mod support;
use rand::{RngExt, SeedableRng};
use support::{best_of, flag, median, peak_rss};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-cold-merge") {
        return child_cold_merge(Path::new(&args[2]), Path::new(&args[3]));
    }
    if args.get(1).map(String::as_str) == Some("--child-reference") {
        reference_pipeline(Path::new(&args[2]));
        return println!("{}", peak_rss());
    }
    let flag = |name: &str, default: usize| flag(&args, name, default);
    let devices = flag("--devices", 5);
    let commits = flag("--commits", 20_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/crdtdir-bench");
    let store = root.join(format!("store-{devices}x{commits}"));
    if !store.join("complete").exists() {
        let t = Instant::now();
        let _ = std::fs::remove_dir_all(&store);
        generate(&store, devices, commits);
        std::fs::write(store.join("complete"), b"").unwrap();
        eprintln!("generated {} in {:.1?}", store.display(), t.elapsed());
    }
    if args.iter().any(|a| a == "--generate-only") {
        return;
    }
    let scratch = tempfile::tempdir_in(&root).unwrap();
    let n_files = count_ops(&store);
    println!("crdtdir workload: {devices} devices x {commits} commits = {n_files} op files");
    println!("{:<52} {:>12}", "measure", "figure");
    let row = |what: &str, figure: String| println!("{what:<52} {figure:>12}");
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);

    let list = best_of(5, || {
        walkdir::WalkDir::new(store.join("ops"))
            .into_iter()
            .filter_map(Result::ok)
            .count();
    });
    row("list the folder (walkdir)", ms(list));
    let reference = best_of(3, || reference_pipeline(&store));
    row(
        "reference pipeline: walk+read+hash+decode+apply",
        ms(reference),
    );

    let state = |name: &str| scratch.path().join(name);
    let open =
        |st: &Path| Store::open(&store, Options::new().state_dir(st).device("bench")).unwrap();
    let mut cold = Duration::MAX;
    for i in 0..3 {
        let st = state(&format!("cold{i}"));
        let t = Instant::now();
        let (json, _) = open(&st).read_json().unwrap();
        cold = cold.min(t.elapsed());
        assert!(json.len() > 2);
    }
    row("cold merge (no cache; JSON out, cache written)", ms(cold));
    row(
        "  ratio to the reference pipeline",
        format!("{:.2}x", ratio(cold, reference)),
    );
    let warm = state("cold0");
    let nothing = best_of(5, || {
        open(&warm).read_json().unwrap();
    });
    row("merge, nothing new", ms(nothing));
    row(
        "  ratio to listing the folder",
        format!("{:.2}x", ratio(nothing, list)),
    );
    // The first call on a view renders (unless the merge just rendered it); later calls,
    // and other views of the same heads, reuse it.
    let todos = scratch.path().join("todos");
    drop(todo_store(&todos, 20_000).read().unwrap());
    let reopen = || {
        Store::open(
            todos.join("store"),
            Options::new().state_dir(todos.join("state")),
        )
        .unwrap()
    };
    let first = (0..3)
        .map(|_| {
            let view = reopen().read().unwrap();
            let t = Instant::now();
            view.to_json();
            t.elapsed()
        })
        .min()
        .unwrap();
    row("View::to_json, 20,000 todo items, first call", ms(first));
    let store20k = reopen();
    let view = store20k.read().unwrap();
    let again = best_of(5, || {
        view.to_json();
    });
    row("View::to_json, 20,000 todo items, again", ms(again));
    let other = best_of(5, || {
        store20k.read().unwrap().to_json();
    });
    row("read() + to_json(), nothing new, same Store", ms(other));

    // New files from one more device, on top of everything.
    let mut doc = Automerge::new();
    let t = Instant::now();
    doc.apply_changes(open(&state("cold1")).read().unwrap().doc().get_changes(&[]))
        .unwrap();
    eprintln!(
        "(building the extra device's document took {:.1?})",
        t.elapsed()
    );
    doc.set_actor(ActorId::from(vec![0xee; 16]));
    let mut rng = SmallRng::seed_from_u64(99);
    let extra = root.join(format!("extra-{devices}x{commits}"));
    for (n, label) in [
        (10usize, "merge, 10 new files"),
        (1000, "merge, 1,000 new files"),
    ] {
        let _ = std::fs::remove_dir_all(&extra);
        copy_tree(&store, &extra);
        // The cache is a copy too, so each measurement starts from the same warm state.
        let st = state(&format!("warm-{n}"));
        copy_tree(&warm, &st);
        forget_folder(&st);
        // The 10-file round works on a copy of the extra device's document: the folder of
        // the 1,000-file round (and everything after) then holds every change of `doc`,
        // and nothing waits for a change only the other round's folder had.
        let mut round = doc.clone();
        let changes: Vec<Change> = (0..n).map(|_| commit(&mut round, &mut rng)).collect();
        if n != 10 {
            doc = round;
        }
        for c in &changes {
            let _ = write_op(&extra, "extra", c);
        }
        // Flush the copies' dirty pages so the write-back does not land in the measurement.
        let _ = Command::new("sync").status();
        let t = Instant::now();
        Store::open(&extra, Options::new().state_dir(&st).device("bench"))
            .unwrap()
            .read_json()
            .unwrap();
        let took = t.elapsed();
        row(label, ms(took));
        if n == 1000 {
            row(
                "  ratio to a cold merge",
                format!("{:.2}x", ratio(took, cold)),
            );
        }
    }

    // The same history in an encrypted store (docs/FORMAT.md §16).
    let (enc, key) = encrypted_copy(&root, &store, devices, commits);
    let enc_cold = (0..3)
        .map(|i| {
            let s = Store::open(
                &enc,
                Options::new().state_dir(state(&format!("enc-cold{i}"))),
            )
            .unwrap();
            s.import_key(&key).unwrap();
            let t = Instant::now();
            s.read_json().unwrap();
            t.elapsed()
        })
        .min()
        .unwrap();
    row("cold merge, encrypted store (same history)", ms(enc_cold));
    row(
        "  ratio to the plain cold merge",
        format!("{:.2}x", ratio(enc_cold, cold)),
    );
    let mut appends = Vec::new();
    for (label, from, key) in [("plain", &store, None), ("encrypted", &enc, Some(&key))] {
        let copy = scratch.path().join(format!("{label}-copy"));
        copy_tree(from, &copy);
        let s = Store::open(
            &copy,
            Options::new()
                .state_dir(state(&format!("{label}-append")))
                .device("bench"),
        )
        .unwrap();
        if let Some(key) = key {
            s.import_key(key).unwrap();
        }
        s.read_json().unwrap();
        let took = median(10, |i| {
            s.apply_patch(&[set(i)]).unwrap();
        });
        row(
            &format!("append, library, {label} store ({n_files} changes)"),
            ms(took),
        );
        appends.push(took);
    }
    row(
        "  encrypted append, ratio to plain",
        format!("{:.2}x", ratio(appends[1], appends[0])),
    );

    // Appends.
    let small = scratch.path().join("small");
    let small_state = state("small-state");
    Store::init(
        &small,
        Options::new().state_dir(&small_state).device("bench"),
        Some(&serde_json::json!({"meta": {}})),
    )
    .unwrap();
    let lib_small = {
        let s = Store::open(
            &small,
            Options::new().state_dir(&small_state).device("bench"),
        )
        .unwrap();
        median(20, |i| {
            s.apply_patch(&[set(i)]).unwrap();
        })
    };
    row("append, library, small store", ms(lib_small));
    let big_state = state("cold2");
    forget_folder(&big_state);
    let lib_big = {
        let s = Store::open(&extra, Options::new().state_dir(&big_state).device("bench")).unwrap();
        s.read_json().unwrap();
        median(5, |i| {
            s.apply_patch(&[set(i)]).unwrap();
        })
    };
    row(
        &format!("append, library, {}-change store", n_files + 1000),
        ms(lib_big),
    );
    match cli_binary() {
        Some(bin) => {
            let cli = |store: &Path, st: &Path, i: usize| {
                let out = Command::new(&bin)
                    .args(["--store"])
                    .arg(store)
                    .args(["--state-dir"])
                    .arg(st)
                    .args([
                        "--device",
                        "bench",
                        "append",
                        "set",
                        &format!("/meta/k{}", i % 7),
                        &i.to_string(),
                    ])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            row(
                "append, CLI process, small store",
                ms(median(10, |i| cli(&small, &small_state, i))),
            );
            row(
                &format!("append, CLI process, {}-change store", n_files + 1000),
                ms(median(3, |i| cli(&extra, &big_state, i + 100))),
            );
            // The same with `crdtdir serve` running for the device: the CLI asks it.
            let mut server = Command::new(&bin)
                .arg("--store")
                .arg(&extra)
                .arg("--state-dir")
                .arg(&big_state)
                .args(["--device", "bench", "serve", "--socket-only"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let socket = big_state
                .join("stores")
                .join(
                    Store::open(&extra, Options::new().state_dir(&big_state))
                        .unwrap()
                        .id(),
                )
                .join("serve.sock");
            while std::os::unix::net::UnixStream::connect(&socket).is_err() {
                std::thread::sleep(Duration::from_millis(20));
            }
            cli(&extra, &big_state, 200);
            row(
                &format!(
                    "append, CLI process, {}-change store, `crdtdir serve` running",
                    n_files + 1000
                ),
                ms(median(10, |i| cli(&extra, &big_state, i + 300))),
            );
            server.kill().unwrap();
            server.wait().unwrap();
            let _ = std::fs::remove_file(&socket);
        }
        None => row(
            "append, CLI (build it: cargo build --release -p crdtdir-cli)",
            "skipped".into(),
        ),
    }

    // A live store: a watcher on the big store. A file "arrives" as a sync tool delivers
    // it (a rename into the folder); the time runs until the watcher's event names it.
    {
        let s = Store::open(&extra, Options::new().state_dir(&big_state).device("bench")).unwrap();
        s.read_json().unwrap();
        let stage = scratch.path().join("stage");
        // A replica of the watcher's document: what Automerge alone takes to apply each
        // change (with the patch log a watcher keeps) is timed on it, so the event's time
        // splits into Automerge's and crdtdir's own.
        let mut replica = doc.fork();
        let mut arrive = |watcher: &crdtdir::Watcher| {
            let change = commit(&mut doc, &mut rng);
            let rel = write_op(&stage, "extra", &change);
            let hash = change.hash().to_string();
            let _ = Command::new("sync").status();
            let t = Instant::now();
            std::fs::rename(stage.join(&rel), extra.join(&rel)).unwrap();
            let took = loop {
                let e = watcher
                    .recv_timeout(Duration::from_secs(60))
                    .expect("an event");
                if e.changes.iter().any(|c| c.hash == hash) {
                    break t.elapsed();
                }
            };
            let t = Instant::now();
            let mut log = automerge::PatchLog::active();
            replica
                .apply_changes_log_patches([change], &mut log)
                .unwrap();
            drop(replica.make_patches(&mut log));
            (took, t.elapsed())
        };
        let mut own_time = Duration::ZERO;
        for debounce in [100u64, 0] {
            let watcher = s
                .watch(WatchOptions::new().debounce(Duration::from_millis(debounce)))
                .unwrap();
            watcher.recv_timeout(Duration::from_secs(60)).unwrap();
            let (mut took, mut applying, mut own): (Vec<_>, Vec<_>, Vec<_>) =
                (vec![], vec![], vec![]);
            for _ in 0..40 {
                let (d, a) = arrive(&watcher);
                took.push(d);
                applying.push(a);
                own.push(d.saturating_sub(a));
                std::thread::sleep(Duration::from_millis(150));
            }
            let p = |v: &mut Vec<Duration>| {
                v.sort();
                format!("{} / {}", ms(v[v.len() / 2]), ms(v[v.len() * 99 / 100]))
            };
            row(
                &format!("file arrival -> watch event, debounce {debounce} ms, p50 / p99"),
                p(&mut took),
            );
            row(
                "  of which Automerge applying it, p50 / p99",
                p(&mut applying),
            );
            row("  crdtdir's own time, p50 / p99", p(&mut own));
            own_time = took[took.len() / 2];
        }
        let watcher = s.watch(WatchOptions::new()).unwrap();
        watcher.recv_timeout(Duration::from_secs(60)).unwrap();
        let with_watcher = median(20, |i| {
            s.apply_patch(&[set(i)]).unwrap();
        });
        row(
            &format!(
                "append, library, {}-change store, watcher running",
                n_files + 1000
            ),
            ms(with_watcher),
        );
        drop(watcher);
        if let Some(bin) = cli_binary() {
            // The same one new file, merged by a CLI process from the saved cache.
            s.read_json().unwrap();
            let change = commit(&mut doc, &mut rng);
            let _ = write_op(&extra, "extra", &change);
            let _ = Command::new("sync").status();
            let t = Instant::now();
            let out = Command::new(&bin)
                .arg("--store")
                .arg(&extra)
                .arg("--state-dir")
                .arg(&big_state)
                .args(["--device", "bench", "merge"])
                .output()
                .unwrap();
            assert!(out.status.success());
            let cli = t.elapsed();
            row("merge, 1 new file, CLI process", ms(cli));
            row(
                "  watcher (debounce 0, p50) to CLI merge",
                format!("{:.3}x", ratio(own_time, cli)),
            );
        }
    }

    // Peak memory of a cold merge, in a child process of its own.
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--child-cold-merge")
        .arg(&store)
        .arg(state("rss"))
        .output()
        .unwrap();
    let rss = String::from_utf8_lossy(&out.stdout).trim().to_string();
    row("peak RSS of a cold merge (VmHWM)", rss);
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--child-reference")
        .arg(&store)
        .output()
        .unwrap();
    row(
        "peak RSS of the reference pipeline",
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    );
    let (apparent, allocated) = disk_usage(&store.join("ops"));
    row(
        "store on disk, apparent",
        format!("{:.1} MB", apparent as f64 / 1e6),
    );
    row(
        "store on disk, allocated",
        format!("{:.1} MB", allocated as f64 / 1e6),
    );
    let _ = std::fs::remove_dir_all(&extra);

    // Packs: the same history, each actor's op files in packs of 256 folded 16 at a time
    // (as every device packing its own would leave it), made once per size.
    let packed = root.join(format!("store-{devices}x{commits}-packed-v2"));
    if !packed.join("complete").exists() {
        let _ = std::fs::remove_dir_all(&packed);
        copy_tree(&store, &packed);
        let _ = std::fs::remove_file(packed.join("complete"));
        let t = Instant::now();
        let mut n = 0;
        for actor in std::fs::read_dir(packed.join("ops")).unwrap().flatten() {
            let actor = actor.file_name().to_string_lossy().into_owned();
            n += crdtdir::pack_folder_actor(&packed, &actor, crdtdir::DEFAULT_PACK_SIZE).unwrap();
        }
        std::fs::write(packed.join("complete"), b"").unwrap();
        eprintln!("packed a copy: {n} packs in {:.1?}", t.elapsed());
    }
    let _ = Command::new("sync").status();
    let files = |dir: &Path| {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file() && e.file_name() != "complete")
            .count()
    };
    row(
        "live files, loose -> packed (256s, folded by 16)",
        format!("{} -> {}", files(&store), files(&packed)),
    );
    let (loose_apparent, loose_allocated) = disk_usage(&store);
    let (packed_apparent, packed_allocated) = disk_usage(&packed);
    row(
        "store on disk, packed, apparent / allocated",
        format!(
            "{:.1} / {:.1} MB",
            packed_apparent as f64 / 1e6,
            packed_allocated as f64 / 1e6
        ),
    );
    row(
        "  allocated / apparent, loose -> packed",
        format!(
            "{:.2}x -> {:.2}x",
            loose_allocated as f64 / loose_apparent as f64,
            packed_allocated as f64 / packed_apparent as f64
        ),
    );
    let open_packed = |st: &Path, size: usize| {
        Store::open(
            &packed,
            Options::new().state_dir(st).device("bench").pack_size(size),
        )
        .unwrap()
    };
    let packed_cold = (0..3)
        .map(|i| {
            let st = state(&format!("packed-cold{i}"));
            let t = Instant::now();
            open_packed(&st, 0).read_json().unwrap();
            t.elapsed()
        })
        .min()
        .unwrap();
    row("cold merge, packed store (same history)", ms(packed_cold));
    row(
        "  ratio to the loose cold merge",
        format!("{:.2}x", ratio(packed_cold, cold)),
    );
    let packed_warm = state("packed-cold0");
    let packed_nothing = best_of(5, || {
        open_packed(&packed_warm, 0).read_json().unwrap();
    });
    row("merge, nothing new, packed store", ms(packed_nothing));
    // The write-time cost of packing: a device writes a pack's worth of changes on a copy of
    // the packed store; one of its writes makes the pack.
    let packer_copy = scratch.path().join("packer-store");
    copy_tree(&packed, &packer_copy);
    let packer = Store::open(
        &packer_copy,
        Options::new()
            .state_dir(state("packer"))
            .device("packer")
            .pack_size(crdtdir::DEFAULT_PACK_SIZE),
    )
    .unwrap();
    packer.read_json().unwrap();
    let pack_dir_count = || files(&packer_copy.join("packs"));
    let mut plain_writes = Vec::new();
    let mut packing_write = None;
    for i in 0..crdtdir::DEFAULT_PACK_SIZE {
        let before = pack_dir_count();
        let t = Instant::now();
        packer.apply_patch(&[set(i)]).unwrap();
        let took = t.elapsed();
        if pack_dir_count() > before {
            packing_write = Some(took);
        } else {
            plain_writes.push(took);
        }
    }
    plain_writes.sort();
    let plain_median = plain_writes[plain_writes.len() / 2];
    row("append, library, packed store, median", ms(plain_median));
    match packing_write {
        Some(took) => {
            row("  the append that packs 256 changes", ms(took));
            row(
                "  packing cost per change, amortised",
                format!(
                    "{:.2} ms",
                    (took.saturating_sub(plain_median)).as_secs_f64() * 1e3
                        / crdtdir::DEFAULT_PACK_SIZE as f64
                ),
            );
        }
        None => row("  the append that packs 256 changes", "none".into()),
    }
    drop(packer);
    let _ = std::fs::remove_dir_all(&packer_copy);

    // Checkpoints (docs/FORMAT.md §19): a copy of the store, loose and packed, with one
    // checkpoint; a fresh device's first merge from it, against the cold merges above.
    for (label, from, without) in [("loose", &store, cold), ("packed", &packed, packed_cold)] {
        let copy = scratch.path().join(format!("checkpointed-{label}"));
        copy_tree(from, &copy);
        let opts = |st: PathBuf| {
            Options::new()
                .state_dir(st)
                .device("bench")
                .pack_size(0)
                .checkpoint_every(0)
        };
        let maker = Store::open(&copy, opts(state(&format!("checkpointer-{label}")))).unwrap();
        maker.read_json().unwrap();
        let t = Instant::now();
        let made = maker.checkpoint().unwrap();
        row(
            &format!("publish a checkpoint, {label} store (warm device)"),
            ms(t.elapsed()),
        );
        assert!(made.checkpoint.is_some(), "{:?}", made.skipped);
        let fresh = (0..3)
            .map(|i| {
                let st = state(&format!("checkpoint-fresh-{label}{i}"));
                let t = Instant::now();
                let view = Store::open(&copy, opts(st)).unwrap().read().unwrap();
                let json = view.to_json();
                let took = t.elapsed();
                assert!(json.to_string().len() > 2);
                assert!(
                    view.report().checkpoint.is_some(),
                    "not from the checkpoint"
                );
                took
            })
            .min()
            .unwrap();
        row(
            &format!("fresh device's first merge, {label}, from a checkpoint"),
            ms(fresh),
        );
        row(&format!("  without one (cold merge, {label})"), ms(without));
        let out = Command::new(std::env::current_exe().unwrap())
            .arg("--child-cold-merge")
            .arg(&copy)
            .arg(state(&format!("checkpoint-rss-{label}")))
            .output()
            .unwrap();
        row(
            &format!("  peak RSS, from a checkpoint, {label}"),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        );
        let _ = std::fs::remove_dir_all(&copy);
    }

    // Compaction of a copy of the store.
    let compacted = root.join(format!("compacted-{devices}x{commits}"));
    let _ = std::fs::remove_dir_all(&compacted);
    copy_tree(&store, &compacted);
    let _ = Command::new("sync").status();
    let (apparent, allocated) = disk_usage(&compacted);
    let st = state("compactor");
    let compactor = Store::open(&compacted, Options::new().state_dir(&st).device("bench")).unwrap();
    compactor.read_json().unwrap();
    let t = Instant::now();
    compactor.compact().unwrap();
    row("compact (warm cache)", ms(t.elapsed()));
    let (apparent_after, allocated_after) = disk_usage(&compacted);
    row(
        "store on disk before -> after compaction, apparent",
        format!(
            "{:.1} -> {:.1} MB",
            apparent as f64 / 1e6,
            apparent_after as f64 / 1e6
        ),
    );
    row(
        "store on disk before -> after compaction, allocated",
        format!(
            "{:.1} -> {:.1} MB",
            allocated as f64 / 1e6,
            allocated_after as f64 / 1e6
        ),
    );
    let fresh = state("after-compaction");
    let t = Instant::now();
    Store::open(&compacted, Options::new().state_dir(&fresh).device("bench"))
        .unwrap()
        .read_json()
        .unwrap();
    row(
        "cold merge after compaction (before: see above)",
        ms(t.elapsed()),
    );
    let _ = std::fs::remove_dir_all(&compacted);
}

fn set(i: usize) -> PatchOp {
    PatchOp::set(format!("/meta/k{}", i % 7), serde_json::json!(i))
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn child_cold_merge(store: &Path, state: &Path) {
    let s = Store::open(store, Options::new().state_dir(state).device("bench")).unwrap();
    s.read_json().unwrap();
    println!("{}", peak_rss());
}

/// The plain pipeline crdtdir's own overhead is measured against: single-threaded walk,
/// read, BLAKE3, CBOR decode, `Change::from_bytes`, one `apply_changes`.
fn reference_pipeline(store: &Path) {
    let mut changes = Vec::new();
    for e in walkdir::WalkDir::new(store.join("ops"))
        .into_iter()
        .filter_map(Result::ok)
    {
        if !e.file_type().is_file() {
            continue;
        }
        let bytes = std::fs::read(e.path()).unwrap();
        std::hint::black_box(blake3::hash(&bytes));
        let v: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
        let change = v
            .as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_text() == Some("change"))
            .and_then(|(_, v)| v.as_bytes())
            .unwrap()
            .clone();
        changes.push(Change::from_bytes(change).unwrap());
    }
    let mut doc = Automerge::new();
    doc.apply_changes(changes).unwrap();
    std::hint::black_box(doc.get_heads());
}

/// `devices` documents edit a notes/todo app: map puts, list inserts, text splices; every
/// 50 rounds each device merges what its neighbour has.
fn generate(store: &Path, devices: usize, commits: usize) {
    Store::init(
        store,
        Options::new()
            .state_dir(store.join("../gen-state"))
            .device("gen"),
        None,
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(store.join("../gen-state"));
    let mut docs: Vec<Automerge> = (0..devices)
        .map(|d| Automerge::new().with_actor(ActorId::from(vec![d as u8 + 1; 16])))
        .collect();
    // Shared containers, created once.
    let mut tx = docs[0].transaction();
    tx.put_object(ROOT, "notes", ObjType::Text).unwrap();
    tx.put_object(ROOT, "todo", ObjType::List).unwrap();
    tx.put_object(ROOT, "meta", ObjType::Map).unwrap();
    tx.commit();
    let first = docs[0].get_last_local_change().unwrap();
    write_op(store, "device-0", &first);
    for d in docs.iter_mut().skip(1) {
        d.apply_changes([first.clone()]).unwrap();
    }
    let mut rng = SmallRng::seed_from_u64(7);
    for round in 0..commits {
        for (d, doc) in docs.iter_mut().enumerate() {
            let c = commit(doc, &mut rng);
            write_op(store, &format!("device-{d}"), &c);
        }
        if round % 50 == 49 {
            for d in 0..devices {
                let next = (d + 1) % devices;
                let theirs = docs[next].get_changes(&docs[d].get_heads());
                docs[d].apply_changes(theirs).unwrap();
            }
        }
    }
}

/// One realistic commit: a map put, a list insert, or a text splice.
fn commit(doc: &mut Automerge, rng: &mut SmallRng) -> Change {
    let notes = doc.get(ROOT, "notes").unwrap().unwrap().1;
    let todo = doc.get(ROOT, "todo").unwrap().unwrap().1;
    let meta = doc.get(ROOT, "meta").unwrap().unwrap().1;
    let kind = rng.random_range(0..10);
    let mut tx = doc.transaction();
    match kind {
        0..=3 => {
            let k = format!("k{}", rng.random_range(0..50));
            tx.put(&meta, k, rng.random_range(0..1_000_000i64)).unwrap();
        }
        4..=6 => {
            let len = tx.length(&todo);
            let at = rng.random_range(0..=len);
            tx.insert(&todo, at, format!("item {}", rng.random_range(0..1000)))
                .unwrap();
        }
        _ => {
            let len = tx.length(&notes);
            let at = rng.random_range(0..=len);
            let text: String = (0..rng.random_range(1..6))
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            tx.splice_text(&notes, at, 0, &text).unwrap();
        }
    }
    let h = tx.commit().0.unwrap();
    doc.get_change_by_hash(&h).unwrap()
}

/// Writes a change as a v1 op file (docs/FORMAT.md), without fsync: this is set-up. Returns
/// its path in the store.
fn write_op(store: &Path, device: &str, change: &Change) -> String {
    use ciborium::Value;
    let v = Value::Map(vec![
        (Value::Text("v".into()), Value::Integer(1.into())),
        (Value::Text("device".into()), Value::Text(device.into())),
        (
            Value::Text("change".into()),
            Value::Bytes(change.raw_bytes().to_vec()),
        ),
    ]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&v, &mut bytes).unwrap();
    let dir = store.join("ops").join(change.actor_id().to_hex_string());
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!(
        "{:010}-{}.op",
        change.seq(),
        &blake3::hash(&bytes).to_hex()[..32]
    );
    std::fs::write(dir.join(&name), bytes).unwrap();
    format!("ops/{}/{name}", change.actor_id().to_hex_string())
}

/// An encrypted store holding the same op files as `store`, sealed (made once per size, its
/// key kept beside it).
fn encrypted_copy(
    root: &Path,
    store: &Path,
    devices: usize,
    commits: usize,
) -> (PathBuf, crdtdir::StoreKey) {
    let enc = root.join(format!("store-{devices}x{commits}-encrypted"));
    let key_file = root.join(format!("store-{devices}x{commits}-encrypted.key"));
    if !enc.join("complete").exists() {
        let t = Instant::now();
        let _ = std::fs::remove_dir_all(&enc);
        let made = tempfile::tempdir_in(root).unwrap();
        let s = Store::init(
            &enc,
            Options::new().state_dir(made.path()).encrypt(true),
            None,
        )
        .unwrap();
        let key = s.key().unwrap();
        for entry in walkdir::WalkDir::new(store.join("ops"))
            .into_iter()
            .filter_map(Result::ok)
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".op") {
                continue;
            }
            let actor = entry
                .path()
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let seq: u64 = name[..10].parse().unwrap();
            let plain = std::fs::read(entry.path()).unwrap();
            let sealed = crdtdir::seal_op_file(&key, s.id(), &actor, seq, &plain);
            let dir = enc.join("ops").join(&actor);
            std::fs::create_dir_all(&dir).unwrap();
            let file = format!("{seq:010}-{}.op", &blake3::hash(&sealed).to_hex()[..32]);
            std::fs::write(dir.join(file), sealed).unwrap();
        }
        std::fs::write(&key_file, key.to_text()).unwrap();
        std::fs::write(enc.join("complete"), b"").unwrap();
        eprintln!("sealed a copy at {} in {:.1?}", enc.display(), t.elapsed());
    }
    let key = crdtdir::StoreKey::parse(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    (enc, key)
}

fn count_ops(store: &Path) -> usize {
    walkdir::WalkDir::new(store.join("ops"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count()
}

fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from)
        .into_iter()
        .filter_map(Result::ok)
    {
        let target = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    for e in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        if let Ok(m) = e.metadata() {
            apparent += m.len();
            allocated += m.blocks() * 512;
        }
    }
    (apparent, allocated)
}

/// The release CLI next to this bench binary (target/release/crdtdir).
fn cli_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("crdtdir");
    bin.exists().then_some(bin)
}

/// A state dir copied or reused for a copy of the store folder: it forgets which folder it
/// belonged to (crdtdir refuses a second folder of one store on one device otherwise), as if
/// the copy were the same folder on another machine.
fn forget_folder(state: &Path) {
    for store in std::fs::read_dir(state.join("stores"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_file(store.path().join("folder"));
    }
}

/// A store whose document is a list of `n` todo items (`{"title", "done"}`), in one change.
fn todo_store(at: &Path, n: usize) -> Store {
    let items: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"title": format!("item {i}"), "done": i % 3 == 0}))
        .collect();
    Store::init(
        at.join("store"),
        Options::new().state_dir(at.join("state")).device("bench"),
        Some(&serde_json::json!({ "todo": items })),
    )
    .unwrap()
}
