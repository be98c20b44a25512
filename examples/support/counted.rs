//! A folder that counts the requests it passes on: by kind (LIST, GET, HEAD, PUT, DELETE,
//! as an object store bills them) and, for listings, by folder. Shared by
//! examples/bucket_requests.rs, benches/bucket.rs and the tests (included with `#[path]`;
//! not an example of its own).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::sync::Mutex;

use crdtdir::folders::{Created, Entry, Folder};

#[derive(Debug)]
pub struct Counted<F> {
    inner: F,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    listed: Mutex<BTreeMap<String, u64>>,
    stated: Mutex<BTreeMap<String, u64>>,
}

impl<F> Counted<F> {
    pub fn new(inner: F) -> Counted<F> {
        Counted {
            inner,
            counts: Mutex::new(BTreeMap::new()),
            listed: Mutex::new(BTreeMap::new()),
            stated: Mutex::new(BTreeMap::new()),
        }
    }

    fn count(&self, what: &'static str) {
        *self.counts.lock().unwrap().entry(what).or_default() += 1;
    }

    /// The requests so far by kind, counting from zero again.
    pub fn take(&self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut self.counts.lock().unwrap())
    }

    /// The requests of kind `what` so far.
    pub fn of(&self, what: &str) -> u64 {
        self.counts.lock().unwrap().get(what).copied().unwrap_or(0)
    }

    /// The listings so far by folder, counting from zero again.
    pub fn take_listed(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut self.listed.lock().unwrap())
    }

    /// The stats so far by path, counting from zero again.
    pub fn take_stated(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut self.stated.lock().unwrap())
    }

    /// The listings of folder `dir` so far.
    pub fn listings_of(&self, dir: &str) -> u64 {
        self.listed.lock().unwrap().get(dir).copied().unwrap_or(0)
    }
}

/// One more request about `path` in `by_path`.
fn tally(by_path: &Mutex<BTreeMap<String, u64>>, path: &str) {
    *by_path.lock().unwrap().entry(path.to_string()).or_default() += 1;
}

impl<F: Folder> Folder for Counted<F> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn list(&self, dir: &str) -> io::Result<Vec<Entry>> {
        self.count("LIST");
        tally(&self.listed, dir);
        self.inner.list(dir)
    }
    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        self.count("GET");
        self.inner.read(path)
    }
    fn read_range(&self, path: &str, range: Range<u64>) -> io::Result<Vec<u8>> {
        self.count("GET");
        self.inner.read_range(path, range)
    }
    fn stat(&self, path: &str) -> io::Result<Option<Entry>> {
        self.count("HEAD");
        tally(&self.stated, path);
        self.inner.stat(path)
    }
    fn create(&self, path: &str, bytes: &[u8], owner: &str) -> io::Result<Created> {
        self.count("PUT");
        self.inner.create(path, bytes, owner)
    }
    fn replace(&self, path: &str, bytes: &[u8], owner: &str) -> io::Result<()> {
        self.count("PUT");
        self.inner.replace(path, bytes, owner)
    }
    fn remove(&self, path: &str) -> io::Result<()> {
        self.count("DELETE");
        self.inner.remove(path)
    }
}
