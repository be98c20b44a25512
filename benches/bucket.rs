//! A store in a bucket against the same store on the local disk: cold merges of the
//! workload bench's packed 5 x 20,000 store (98 files), from the folder and from a bucket of
//! a real S3-compatible server on loopback (moto's server mode), with the requests a cold
//! merge makes there. Prints figures; asserts nothing about time.
//!
//! ```text
//! cargo bench --bench workload -- --generate-only   # once: makes the stores
//! cargo bench --features s3 --bench bucket          # moto_server on PATH
//! ```
//! The packed copy is made by the workload bench's full run (target/crdtdir-bench/
//! store-5x20000-packed-v2); without it, or without moto_server, this says so and stops.
//! moto keeps objects in memory and answers on loopback: the figures show crdtdir's own
//! cost of reading through the seam and the requests it makes, not a network's latency.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crdtdir::folders::{Folder, Local, S3};
use crdtdir::{Options, Store};
use object_store::aws::AmazonS3Builder;

#[allow(dead_code)]
mod support;
use support::median;

#[path = "../tests/moto.rs"]
mod moto;

#[path = "../examples/support/counted.rs"]
mod counted;
use counted::Counted;

fn main() {
    let packed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/crdtdir-bench/store-5x20000-packed-v2");
    if !packed.join("complete").exists() {
        eprintln!(
            "skipped: no packed store at {} (`cargo bench --bench workload` makes it)",
            packed.display()
        );
        return;
    }
    let Some(moto) = moto::moto() else { return };
    let bucket = moto::bucket(moto);
    let s3 = S3::with_builder(
        &bucket,
        "bench",
        AmazonS3Builder::new()
            .with_endpoint(format!("http://127.0.0.1:{}", moto.port))
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test"),
    )
    .expect("the bucket");
    let t = Instant::now();
    let mut uploaded = (0, 0);
    for e in walkdir::WalkDir::new(&packed).min_depth(1) {
        let e = e.unwrap();
        if !e.file_type().is_file() || e.file_name() == "complete" {
            continue;
        }
        let rel = e.path().strip_prefix(&packed).unwrap();
        let rel = rel.to_str().unwrap().replace('\\', "/");
        let bytes = std::fs::read(e.path()).unwrap();
        uploaded = (uploaded.0 + 1, uploaded.1 + bytes.len());
        s3.create(&rel, &bytes, "bench").unwrap();
    }
    eprintln!(
        "uploaded {} files ({:.1} MB) in {:.1?}",
        uploaded.0,
        uploaded.1 as f64 / 1e6,
        t.elapsed()
    );

    let runs = 3;
    let state = tempfile::tempdir().unwrap();
    let cold = |label: &str, folder: Arc<dyn Folder>| {
        median(runs, |i| {
            let options = Options::new()
                .state_dir(state.path().join(format!("{label}-{i}")))
                .device("bench")
                .read_only(true);
            Store::open_in(Arc::clone(&folder), options)
                .unwrap()
                .read_json()
                .unwrap();
        })
    };
    let local: Arc<dyn Folder> = Arc::new(Local::new(&packed));
    let remote = Arc::new(Counted::new(s3));
    let local_cold = cold("local", local);
    let remote_cold = cold("bucket", remote.clone());
    let per_run = |counts: BTreeMap<&'static str, u64>| {
        counts
            .iter()
            .map(|(k, v)| format!("{k} {}", v / runs as u64))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "crdtdir bucket bench: the packed 5 x 20,000 store, {} files, {:.1} MB",
        uploaded.0,
        uploaded.1 as f64 / 1e6
    );
    println!("{:<52} {:>12}", "measure", "figure");
    let row = |what: &str, figure: String| println!("{what:<52} {figure:>12}");
    let ms = |d: std::time::Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    row(
        "cold merge, packed, local folder (median of 3)",
        ms(local_cold),
    );
    row(
        "cold merge, packed, bucket on moto (median of 3)",
        ms(remote_cold),
    );
    row(
        "  bucket / local",
        format!(
            "{:.2}x",
            remote_cold.as_secs_f64() / local_cold.as_secs_f64()
        ),
    );
    println!(
        "requests of one cold merge, bucket: {}",
        per_run(remote.take())
    );
}
