//! How many requests a store in a bucket costs: an append, and a watcher's idle minute
//! (it lists the folder every second there). Prints figures; asserts nothing.
//!
//! ```sh
//! moto_server -H 127.0.0.1 -p 5055 &     # or any S3-compatible server
//! curl -X PUT http://127.0.0.1:5055/crdtdir-requests
//! AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
//!   AWS_ENDPOINT_URL=http://127.0.0.1:5055 AWS_ALLOW_HTTP=true \
//!   cargo run --release --features s3 --example bucket_requests -- s3://crdtdir-requests/notes
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crdtdir::folders::S3;
use crdtdir::{Options, PatchOp, Store, WatchOptions};

#[path = "support/counted.rs"]
mod counted;
use counted::Counted;

/// Requests of a kind S3 bills at the LIST/PUT rate, and at the GET rate.
fn billed(counts: &BTreeMap<&'static str, u64>) -> (u64, u64) {
    let get = |k| counts.get(k).copied().unwrap_or(0);
    (get("LIST") + get("PUT"), get("GET") + get("HEAD"))
}

fn main() {
    let url = std::env::args()
        .nth(1)
        .expect("usage: bucket_requests s3://bucket/prefix");
    let folder = Arc::new(Counted::new(S3::open(&url).expect("the bucket")));
    let state = std::env::temp_dir().join(format!("crdtdir-requests-{}", std::process::id()));
    let store = Store::init_in(
        folder.clone(),
        Options::new().state_dir(state.join("a")).device("laptop"),
        Some(&serde_json::json!({"items": []})),
    )
    .expect("a new store there");
    let init = folder.take();
    // Other devices have written: three more devices, 20 changes each.
    for d in 0..3 {
        let other = Store::open_in(
            folder.clone(),
            Options::new()
                .state_dir(state.join(format!("d{d}")))
                .device(format!("d{d}")),
        )
        .unwrap();
        for i in 0..20 {
            other
                .apply_patch(&[PatchOp::insert(
                    "/items/-",
                    serde_json::json!(format!("d{d}-{i}")),
                )])
                .unwrap();
        }
    }
    store.read_json().unwrap();
    folder.take();
    let appends = 20;
    for i in 0..appends {
        store
            .apply_patch(&[PatchOp::insert("/items/-", serde_json::json!(i))])
            .unwrap();
    }
    let per_append = folder.take();
    let watcher = store
        .watch(WatchOptions::new().poll(Duration::from_secs(1)))
        .unwrap();
    watcher.recv_timeout(Duration::from_secs(30)).unwrap();
    folder.take();
    // Two minutes: two of the watcher's safety listings (one a minute) fall in it.
    let idle = Duration::from_secs(120);
    let started = Instant::now();
    while started.elapsed() < idle {
        let _ = watcher.recv_timeout(idle.saturating_sub(started.elapsed()));
    }
    let watched = folder.take();
    drop(watcher);
    let _ = std::fs::remove_dir_all(&state);

    let per = |counts: &BTreeMap<&'static str, u64>, n: f64| {
        counts
            .iter()
            .map(|(k, v)| format!("{k} {:.1}", *v as f64 / n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("store in {url}, 4 devices, 80 changes");
    println!("init: {}", per(&init, 1.0));
    println!(
        "append (mean of {appends}): {}",
        per(&per_append, appends as f64)
    );
    let minutes = idle.as_secs_f64() / 60.0;
    println!(
        "watcher, idle minute (polling every 1 s): {}",
        per(&watched, minutes)
    );
    // AWS S3 Standard list prices: $0.005 per 1,000 PUT/COPY/POST/LIST, $0.0004 per 1,000
    // GET and the rest.
    let (list_put, get) = billed(&watched);
    let month = 30.0 * 24.0 * 60.0 / minutes;
    let cost = month * (list_put as f64 * 0.005 + get as f64 * 0.0004) / 1000.0;
    println!("an idle watcher for a month at AWS S3 list prices: ${cost:.2}");
}
