//! Whole-value writes: what one `set` or `put` costs when little changed. Prints figures,
//! asserts nothing about time.
//!
//! ```text
//! cargo bench --bench writes
//! ```
//! Each row: the operations the change holds (what every device must apply and store) and
//! the median wall time of the write, over 5 writes on a fresh store each.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crdtdir::automerge::ReadDoc;
use crdtdir::{Options, PatchOp, Store};
use serde_json::{json, Value as Json};

fn main() {
    println!("crdtdir whole-value writes");
    println!("{:<58} {:>9} {:>12}", "measure", "ops", "time");
    let root = tempfile::tempdir().unwrap();

    // A 10,000-element list of short strings, then the same list with one element in front.
    let items: Vec<Json> = (0..10_000).map(|i| json!(format!("item {i}"))).collect();
    let mut with_one_more = items.clone();
    with_one_more.insert(0, json!("new item"));
    row(
        "set of a 10,000-string list, one inserted in front",
        5,
        |i| {
            let store = fresh(
                &root.path().join(format!("list-{i}")),
                json!({ "items": items }),
            );
            (store, PatchOp::set("/items", json!(with_one_more)))
        },
    );

    // The same with records ({"id", "title", "done"}), one edited in the middle.
    let records: Vec<Json> = (0..10_000)
        .map(|i| json!({"id": i, "title": format!("todo {i}"), "done": false}))
        .collect();
    let mut edited = records.clone();
    edited[5_000]["done"] = json!(true);
    row("set of a 10,000-record list, one field edited", 5, |i| {
        let store = fresh(
            &root.path().join(format!("records-{i}")),
            json!({ "todo": records }),
        );
        (store, PatchOp::set("/todo", json!(edited)))
    });

    // A 1,000-field struct (as a map; serde writes a struct the same way), one field changed.
    let fields: BTreeMap<String, String> = (0..1_000)
        .map(|i| (format!("field{i:04}"), format!("value {i}")))
        .collect();
    let mut changed = fields.clone();
    changed.insert("field0500".into(), "changed".into());
    let times: Vec<(Duration, usize)> = (0..5)
        .map(|i| {
            let store = fresh(&root.path().join(format!("struct-{i}")), json!({}));
            store.put("/settings", &fields).unwrap();
            let t = Instant::now();
            let out = store.put("/settings", &changed).unwrap();
            (t.elapsed(), ops_of(&store, out.change()))
        })
        .collect();
    print(
        "put of a 1,000-field struct, one field changed",
        median(times),
    );
}

fn fresh(dir: &Path, initial: Json) -> Store {
    Store::init(
        dir.join("store"),
        Options::new().state_dir(dir.join("state")).device("bench"),
        Some(&initial),
    )
    .unwrap()
}

/// Times `n` writes, each of the patch `setup` gives on the store it makes.
fn row(what: &str, n: usize, setup: impl Fn(usize) -> (Store, PatchOp)) {
    let times: Vec<(Duration, usize)> = (0..n)
        .map(|i| {
            let (store, op) = setup(i);
            // A first read, so the write measures the write and not the first merge.
            store.read().unwrap();
            let t = Instant::now();
            let out = store.apply_patch(&[op]).unwrap();
            (t.elapsed(), ops_of(&store, out.change()))
        })
        .collect();
    print(what, median(times));
}

/// How many operations the change holds.
fn ops_of(store: &Store, change: Option<&str>) -> usize {
    let Some(hash) = change else { return 0 };
    let view = store.read().unwrap();
    let hash = hash.parse().unwrap();
    view.doc().get_change_by_hash(&hash).map_or(0, |c| c.len())
}

fn median(mut times: Vec<(Duration, usize)>) -> (Duration, usize) {
    times.sort();
    times[times.len() / 2]
}

fn print(what: &str, (time, ops): (Duration, usize)) {
    println!("{what:<58} {ops:>9} {:>9.1} ms", time.as_secs_f64() * 1e3);
}
