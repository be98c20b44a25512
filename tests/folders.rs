//! The contract every backend of the folder seam keeps (`crdtdir::folders::Folder`), run on
//! each: a folder on disk, one in memory (exact, and lagging as some object stores do),
//! and (tests/s3.rs) a bucket on a real S3-compatible server.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::sync::Arc;

use crdtdir::folders::{Created, Folder, Lag, Local, Memory};
use crdtdir::{Options, PatchOp, Store, WatchOptions};

/// Checks `folder`, which must be empty, keeps the seam's promises; leaves it empty again
/// but for what it cannot remove (nothing).
pub(crate) fn contract(folder: &dyn Folder) {
    assert!(
        folder.list("").map_or(true, |l| l.is_empty()),
        "{}: not empty",
        folder.describe()
    );
    let owner = "01".repeat(16);

    // Create only if absent; never an overwrite.
    let path = "ops/aa/0000000001-x.op";
    assert_eq!(folder.create(path, b"first", &owner).unwrap(), Created::New);
    assert_eq!(folder.read(path).unwrap(), b"first");
    assert_eq!(
        folder.create(path, b"second!", &owner).unwrap(),
        Created::Existed
    );
    assert_eq!(folder.read(path).unwrap(), b"first", "a create overwrote");

    // Listings: folders and files, sorted, with lengths; nothing else (no temp left).
    folder
        .create("ops/aa/0000000002-y.op", b"0123456789", &owner)
        .unwrap();
    folder
        .create("ops/bb/0000000001-z.op", b"z", &owner)
        .unwrap();
    folder.create("top", b"t", &owner).unwrap();
    let root = folder.list("").unwrap();
    let names: Vec<(&str, bool)> = root.iter().map(|e| (e.name.as_str(), e.is_dir())).collect();
    assert_eq!(names, [("ops", true), ("top", false)]);
    let ops: Vec<String> = folder
        .list("ops")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(ops, ["aa", "bb"]);
    let aa = folder.list("ops/aa").unwrap();
    let files: Vec<(&str, bool)> = aa.iter().map(|e| (e.name.as_str(), e.is_file())).collect();
    assert_eq!(
        files,
        [("0000000001-x.op", true), ("0000000002-y.op", true)]
    );
    // A listing may leave lengths and versions out (a local one does); when it gives
    // them, they are what a stat says.
    for e in &aa {
        let stat = folder.stat(&format!("ops/aa/{}", e.name)).unwrap().unwrap();
        assert!(stat.version.is_some());
        if e.len.is_some() {
            assert_eq!((e.len, &e.version), (stat.len, &stat.version));
        }
    }
    assert_eq!(
        folder.list("ops/none").unwrap_or_default(),
        [],
        "a folder with nothing in it lists as empty or not found"
    );

    // Reads: whole, ranges (the middle, past the end), absent files.
    let y = "ops/aa/0000000002-y.op";
    assert_eq!(folder.read_range(y, 2..5).unwrap(), b"234");
    assert_eq!(folder.read_range(y, 8..20).unwrap(), b"89");
    assert_eq!(folder.read_range(y, 12..20).unwrap(), b"");
    assert_eq!(
        folder.read("ops/aa/absent").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let stat = folder.stat(y).unwrap().expect("a file there");
    assert_eq!((stat.len, stat.is_file()), (Some(10), true));
    assert_eq!(folder.stat("ops/aa/absent").unwrap(), None);

    // Replace: new bytes, a new version.
    folder.replace("top", b"t2", &owner).unwrap();
    assert_eq!(folder.read("top").unwrap(), b"t2");
    let version = |p: &str| folder.stat(p).unwrap().unwrap().version;
    let before = version("top");
    folder.replace("top", b"t3-longer", &owner).unwrap();
    assert_ne!(version("top"), before, "a replaced file keeps its version");

    // Paths never reach outside the folder.
    for bad in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
        assert_eq!(
            folder.read(bad).unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{bad:?}"
        );
        assert!(folder.create(bad, b"x", &owner).is_err(), "{bad:?}");
    }

    // Racing creates of one name: one wins, the others find it there, nothing is torn.
    let race = "ops/cc/0000000001-race.op";
    race_creates(folder, race, 8);

    // Removal, twice.
    for p in [path, y, "ops/bb/0000000001-z.op", "top", race] {
        folder.remove(p).unwrap();
        folder.remove(p).unwrap();
        assert_eq!(folder.read(p).unwrap_err().kind(), ErrorKind::NotFound);
    }
}

/// `threads` threads create `path` at once, each with bytes of its own: exactly one is told
/// `New`, the others `Existed`, and the file holds the winner's bytes whole.
pub(crate) fn race_creates(folder: &dyn Folder, path: &str, threads: usize) {
    let bytes = |i: usize| vec![b'a' + i as u8; 1000 + i];
    let results: Vec<(usize, Created)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| s.spawn(move || (i, folder.create(path, &bytes(i), "race").unwrap())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<usize> = results
        .iter()
        .filter(|(_, c)| *c == Created::New)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(won.len(), 1, "{path}: {results:?}");
    assert_eq!(folder.read(path).unwrap(), bytes(won[0]), "{path}");
}

#[test]
fn a_folder_on_disk_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let folder = Local::new(dir.path().join("store"));
    std::fs::create_dir(dir.path().join("store")).unwrap();
    contract(&folder);
}

#[test]
fn a_folder_in_memory_keeps_the_contract() {
    contract(&Memory::new());
}

#[test]
fn a_lagging_folder_lists_late_but_reads_at_once() {
    for seed in 0..20 {
        let folder = Memory::lagging(Lag { listings: 3, seed });
        let owner = "02".repeat(16);
        // Read-after-write, whatever the listings say.
        folder.create("ops/aa/1.op", b"one", &owner).unwrap();
        assert_eq!(folder.read("ops/aa/1.op").unwrap(), b"one");
        // Shown within `listings` more listings, and from then on.
        let shown = (0..=3).position(|_| {
            folder
                .list("ops/aa")
                .is_ok_and(|l| l.iter().any(|e| e.name == "1.op"))
        });
        assert!(shown.is_some(), "seed {seed}: never listed");
        assert!(folder
            .list("ops/aa")
            .unwrap()
            .iter()
            .any(|e| e.name == "1.op"));
        // A removed file may stay listed as long, but never reads.
        folder.remove("ops/aa/1.op").unwrap();
        assert_eq!(
            folder.read("ops/aa/1.op").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let gone = (0..=3).position(|_| {
            folder
                .list("ops/aa")
                .map_or(true, |l| !l.iter().any(|e| e.name == "1.op"))
        });
        assert!(gone.is_some(), "seed {seed}: listed forever");
    }
}

#[test]
fn lagging_listings_are_late_for_some_files() {
    // Lag that never shows would make the lagging tests test nothing.
    let folder = Memory::lagging(Lag {
        listings: 4,
        seed: 7,
    });
    let owner = "03".repeat(16);
    for i in 0..50 {
        folder
            .create(&format!("ops/aa/{i:03}.op"), b"x", &owner)
            .unwrap();
    }
    let first: BTreeSet<String> = folder
        .list("ops/aa")
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(first.len() < 50, "no file was listed late");
    assert!(!first.is_empty(), "every file was listed late");
    folder.settle();
    assert_eq!(folder.list("ops/aa").unwrap().len(), 50);
    assert_eq!(folder.paths().len(), 50);
}

/// A store in a folder elsewhere than on the local disk: every device's writes survive
/// listings that come late and deletions that linger, in any interleaving.
pub(crate) mod elsewhere {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// What a device does: append an item of its own to the shared list, set its own key,
    /// merge, pack its op files (it also packs by itself every 4 of its changes), or compact
    /// the folder as if it were alone (it is not: the others go on writing); and what the
    /// world does to the folder and the devices: objects deleted (a lifecycle rule, a person
    /// with the console; `mask` picks which), deleted objects coming back (a versioned
    /// bucket restored), an op file or pack torn under its name (a bridged sync tool), and
    /// a device's disk cloned (a new device with a copy of its state dir: the same actor).
    /// Device numbers wrap around the devices there are.
    #[derive(Debug, Clone)]
    pub(crate) enum Step {
        Append(usize),
        Set(usize, u32),
        Merge(usize),
        Pack(usize),
        Compact(usize),
        Delete(u64),
        Resurrect,
        Tear(usize),
        Clone(usize),
    }

    fn step(devices: usize) -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..devices).prop_map(Step::Append),
            3 => (0..devices, any::<u32>()).prop_map(|(d, v)| Step::Set(d, v)),
            2 => (0..devices).prop_map(Step::Merge),
            1 => (0..devices).prop_map(Step::Pack),
            1 => (0..devices).prop_map(Step::Compact),
            1 => any::<u64>().prop_map(Step::Delete),
            1 => Just(Step::Resurrect),
            1 => any::<usize>().prop_map(Step::Tear),
            1 => (0..devices).prop_map(Step::Clone),
        ]
    }

    /// The most devices clones grow a case to.
    const MAX_DEVICES: usize = 5;

    /// Three devices (and their clones) on one folder elsewhere, through whatever the steps
    /// do to it; after the lag ends and each device has run `repair` (as a device told its
    /// folder lost something does), every device reads the same document, holding every
    /// item each device appended (once, in each device's order) and each device's last
    /// value. Every device keeps its state dir, so some copy of every write survives.
    pub(crate) fn converge(folder: Arc<dyn Folder>, steps: &[Step], settle: impl Fn()) {
        let dir = tempfile::tempdir().unwrap();
        let options = |d: usize| {
            Options::new()
                .state_dir(dir.path().join(format!("state-{d}")))
                .device(format!("d{d}"))
                .pack_size(4)
        };
        // Device 0 makes the store there: its first change is one of its writes.
        Store::init_in(
            Arc::clone(&folder),
            options(0),
            Some(&json!({"items": [], "by": {}})),
        )
        .unwrap();
        let mut devices: Vec<Store> = (0..3)
            .map(|d| Store::open_in(Arc::clone(&folder), options(d)).unwrap())
            .collect();
        let mut appended: Vec<Vec<String>> = vec![Vec::new(); 3];
        let mut last: Vec<Option<u32>> = vec![None; 3];
        // Objects deleted from the folder, with their bytes.
        let mut graveyard: Vec<(String, Vec<u8>)> = Vec::new();
        let history = |p: &str| {
            (p.starts_with("ops/") && p.ends_with(".op"))
                || (p.starts_with("packs/") && p.ends_with(".pack"))
                || p.starts_with("snapshots/")
        };
        for s in steps {
            match *s {
                // A device whose view lacks the list (the folder lost the first change
                // before it read it) is refused the write: only a write that returned Ok
                // must survive.
                Step::Append(d) => {
                    let d = d % devices.len();
                    let item = format!("d{d}-{}", appended[d].len());
                    match devices[d].apply_patch(&[PatchOp::insert("/items/-", json!(item))]) {
                        Ok(_) => appended[d].push(item),
                        Err(crdtdir::Error::Patch(_)) => {}
                        Err(e) => panic!("device {d} could not write: {e}"),
                    }
                }
                Step::Set(d, v) => {
                    let d = d % devices.len();
                    match devices[d].apply_patch(&[PatchOp::set(format!("/by/d{d}"), json!(v))]) {
                        Ok(_) => last[d] = Some(v),
                        Err(crdtdir::Error::Patch(_)) => {}
                        Err(e) => panic!("device {d} could not write: {e}"),
                    }
                }
                Step::Merge(d) => {
                    devices[d % devices.len()].read_json().unwrap();
                }
                Step::Pack(d) => {
                    devices[d % devices.len()].pack().unwrap();
                }
                // A view that lists a compaction record before its snapshot is incomplete,
                // and compacting it is refused; nothing else may fail.
                Step::Compact(d) => match devices[d % devices.len()].compact() {
                    Ok(_) | Err(crdtdir::Error::Incomplete { .. }) => {}
                    Err(e) => panic!("device {d} could not compact: {e}"),
                },
                Step::Delete(mask) => {
                    for (i, path) in all_files(&*folder).into_iter().enumerate() {
                        if history(&path) && mask >> (i % 64) & 1 == 1 {
                            if let Ok(bytes) = folder.read(&path) {
                                folder.remove(&path).unwrap();
                                graveyard.push((path, bytes));
                            }
                        }
                    }
                }
                Step::Resurrect => {
                    for (path, bytes) in graveyard.drain(..) {
                        folder.create(&path, &bytes, "a restore").unwrap();
                    }
                }
                Step::Tear(pick) => {
                    let torn: Vec<String> = all_files(&*folder)
                        .into_iter()
                        .filter(|p| p.ends_with(".op") || p.ends_with(".pack"))
                        .collect();
                    if let Some(path) = torn.get(pick % torn.len().max(1)) {
                        let bytes = folder.read(path).unwrap();
                        folder
                            .replace(path, &bytes[..bytes.len() / 2], "a sync tool")
                            .unwrap();
                    }
                }
                Step::Clone(from) if devices.len() < MAX_DEVICES => {
                    let from = from % devices.len();
                    let to = devices.len();
                    let (src, dst) = (
                        dir.path().join(format!("state-{from}")),
                        dir.path().join(format!("state-{to}")),
                    );
                    crate::common::copy_dir(&src, &dst);
                    devices.push(Store::open_in(Arc::clone(&folder), options(to)).unwrap());
                    // The clone's view holds what its original's held.
                    appended.push(Vec::new());
                    last.push(None);
                }
                Step::Clone(_) => {}
            }
        }
        settle();
        for d in &devices {
            d.repair().unwrap();
        }
        settle();
        let docs: Vec<Value> = devices
            .iter()
            .map(|s| serde_json::from_str(&s.read_json().unwrap().0).unwrap())
            .collect();
        assert!(
            docs.iter().all(|d| d == &docs[0]),
            "devices disagree: {docs:#?}"
        );
        let items: Vec<&str> = docs[0]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for (d, mine) in appended.iter().enumerate() {
            let seen: Vec<&str> = items
                .iter()
                .copied()
                .filter(|i| i.starts_with(&format!("d{d}-")))
                .collect();
            assert_eq!(&seen, mine, "device {d}'s items: {items:?}");
            match last[d] {
                Some(v) => assert_eq!(docs[0]["by"][format!("d{d}")], json!(v)),
                None => assert!(docs[0]["by"].get(format!("d{d}")).is_none()),
            }
        }
    }

    /// Every file of `folder` by its path, from its listings.
    fn all_files(folder: &dyn Folder) -> Vec<String> {
        crate::common::folder_files(folder)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("CRDTDIR_ELSEWHERE_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(24),
            ..ProptestConfig::default()
        })]

        #[test]
        fn no_write_is_lost_on_a_folder_whose_listings_lag(
            steps in proptest::collection::vec(step(3), 1..32),
            listings in 0u32..4,
            seed in any::<u64>(),
        ) {
            let memory = Memory::lagging(Lag { listings, seed });
            let settled = memory.clone();
            converge(Arc::new(memory), &steps, move || settled.settle());
        }
    }

    /// Many documents in one folder elsewhere: made, edited by two devices, listed, packed
    /// and compacted there; a new device lists them and reads every edit.
    #[test]
    fn many_documents_work_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Memory::lagging(Lag {
            listings: 1,
            seed: 9,
        });
        let options = |n: &str| {
            Options::new()
                .state_dir(dir.path().join(n))
                .device(n)
                .pack_size(4)
        };
        let folder: Arc<dyn Folder> = Arc::new(memory.clone());
        let laptop = crdtdir::Repo::from(
            Store::init_in(
                Arc::clone(&folder),
                options("laptop"),
                Some(&json!({"n": 0})),
            )
            .unwrap(),
        );
        let groceries = laptop
            .create(Some(&json!({"title": "groceries", "items": []})))
            .unwrap();
        let todo = laptop
            .create(Some(&json!({"title": "todo", "items": []})))
            .unwrap();
        for i in 0..6 {
            for id in [&groceries, &todo] {
                laptop
                    .find(id)
                    .unwrap()
                    .apply_patch(&[PatchOp::insert("/items/-", json!(i))])
                    .unwrap();
            }
        }
        memory.settle();
        let phone =
            crdtdir::Repo::from(Store::open_in(Arc::clone(&folder), options("phone")).unwrap());
        phone
            .find(&groceries)
            .unwrap()
            .apply_patch(&[PatchOp::insert("/items/0", json!("from the phone"))])
            .unwrap();
        laptop.root().pack().unwrap();
        memory.settle();
        let compacted = laptop.root().compact().unwrap();
        assert!(compacted.snapshot.is_some(), "{compacted:?}");
        memory.settle();
        assert!(
            !memory
                .paths()
                .iter()
                .any(|p| p.starts_with("ops/") || p.starts_with("packs/")),
            "{:?}",
            memory.paths()
        );
        let fresh =
            crdtdir::Repo::from(Store::open_in(Arc::clone(&folder), options("fresh")).unwrap());
        let listed = fresh.docs().unwrap();
        let titles: Vec<Option<&str>> = listed.iter().map(|d| d.title.as_deref()).collect();
        assert!(titles.contains(&Some("groceries")), "{listed:?}");
        assert!(titles.contains(&Some("todo")), "{listed:?}");
        let read = |id: &crdtdir::DocId| fresh.find(id).unwrap().read().unwrap().json().clone();
        assert_eq!(
            read(&groceries)["items"],
            json!(["from the phone", 0, 1, 2, 3, 4, 5])
        );
        assert_eq!(read(&todo)["items"], json!([0, 1, 2, 3, 4, 5]));
    }
}

/// A folder in memory whose `create` fails from the `fail_at`-th call on.
#[derive(Debug)]
struct FailingCreates {
    inner: Memory,
    fail_at: usize,
    calls: std::sync::atomic::AtomicUsize,
}

impl Folder for FailingCreates {
    fn describe(&self) -> String {
        "failing memory".into()
    }
    fn list(&self, dir: &str) -> std::io::Result<Vec<crdtdir::folders::Entry>> {
        self.inner.list(dir)
    }
    fn read(&self, path: &str) -> std::io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn read_range(&self, path: &str, range: std::ops::Range<u64>) -> std::io::Result<Vec<u8>> {
        self.inner.read_range(path, range)
    }
    fn stat(&self, path: &str) -> std::io::Result<Option<crdtdir::folders::Entry>> {
        self.inner.stat(path)
    }
    fn create(&self, path: &str, bytes: &[u8], owner: &str) -> std::io::Result<Created> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n + 1 >= self.fail_at {
            return Err(std::io::Error::other("the connection dropped"));
        }
        self.inner.create(path, bytes, owner)
    }
    fn replace(&self, path: &str, bytes: &[u8], owner: &str) -> std::io::Result<()> {
        self.inner.replace(path, bytes, owner)
    }
    fn remove(&self, path: &str) -> std::io::Result<()> {
        self.inner.remove(path)
    }
}

/// A store made in a folder elsewhere appears whole or not at all: a create that fails at
/// any step leaves the folder as it was, and a folder that holds a store is refused before
/// anything is written.
#[test]
fn a_store_made_elsewhere_is_all_or_nothing() {
    let initial = serde_json::json!({"items": ["a"]});
    let dir = tempfile::tempdir().unwrap();
    let options = |n: &str| Options::new().state_dir(dir.path().join(n)).device(n);
    // How many files a whole store is.
    let whole = Memory::new();
    Store::init_in(Arc::new(whole.clone()), options("count"), Some(&initial)).unwrap();
    let files = whole.paths().len();
    assert!(files >= 3, "{:?}", whole.paths());
    for fail_at in 1..=files {
        let memory = Memory::new();
        let failing = FailingCreates {
            inner: memory.clone(),
            fail_at,
            calls: Default::default(),
        };
        let made = Store::init_in(
            Arc::new(failing),
            options(&format!("f{fail_at}")),
            Some(&initial),
        );
        assert!(made.is_err(), "failing at create {fail_at}");
        assert_eq!(
            memory.paths(),
            Vec::<String>::new(),
            "failing at create {fail_at}"
        );
    }
    // A store there already: refused, nothing written.
    let before = whole.paths();
    let again = Store::init_in(Arc::new(whole.clone()), options("again"), None).unwrap_err();
    assert_eq!(again.code(), "already-store");
    assert_eq!(whole.paths(), before);
    // The store made there reads as made, from another device.
    let other = Store::open_in(Arc::new(whole.clone()), options("other")).unwrap();
    let (json, _) = other.read_json().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).unwrap(),
        initial
    );
}

/// An encrypted store in a folder elsewhere: the folder only ever holds sealed files (the
/// provider sees no document), a device without the key reads nothing and writes nothing,
/// one with the key reads every device's writes, and a compaction there leaves a sealed
/// snapshot every device with the key reads.
#[test]
fn an_encrypted_store_elsewhere_holds_only_sealed_files() {
    let memory = Memory::lagging(Lag {
        listings: 2,
        seed: 5,
    });
    let (settled, listed) = (memory.clone(), memory.clone());
    sealed_elsewhere(
        std::sync::Arc::new(memory),
        move || settled.settle(),
        move || listed.paths(),
    );
}

/// [`an_encrypted_store_elsewhere_holds_only_sealed_files`] in `folder`; `paths` lists
/// every file it holds once `settle` has ended any lag.
pub(crate) fn sealed_elsewhere(
    folder: std::sync::Arc<dyn Folder>,
    settle: impl Fn(),
    paths: impl Fn() -> Vec<String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let options = |n: &str| Options::new().state_dir(dir.path().join(n)).device(n);
    let laptop = Store::init_in(
        Arc::clone(&folder),
        options("laptop").encrypt(true),
        Some(&serde_json::json!({"secret": "the plans"})),
    )
    .unwrap();
    laptop
        .apply_patch(&[PatchOp::set("/more", serde_json::json!("secret too"))])
        .unwrap();
    let phone = Store::open_in(Arc::clone(&folder), options("phone")).unwrap();
    let refused = phone
        .apply_patch(&[PatchOp::set("/x", serde_json::json!(1))])
        .unwrap_err();
    assert_eq!(refused.code(), "locked", "{refused}");
    phone.import_key(&laptop.key().unwrap()).unwrap();
    phone
        .apply_patch(&[PatchOp::set("/from_phone", serde_json::json!("hello"))])
        .unwrap();
    settle();
    let read =
        |s: &Store| serde_json::from_str::<serde_json::Value>(&s.read_json().unwrap().0).unwrap();
    let (a, b) = (read(&laptop), read(&phone));
    assert_eq!(a, b);
    assert_eq!(a["more"], "secret too");
    assert_eq!(a["from_phone"], "hello");
    let plain_anywhere = |when: &str| {
        for path in paths() {
            let bytes = folder.read(&path).unwrap();
            for plain in ["the plans", "secret too", "hello", "laptop", "phone"] {
                assert!(
                    !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
                    "{when}: {path} shows {plain:?}"
                );
            }
        }
    };
    // Nothing the folder holds shows the document or a device's name.
    plain_anywhere("after the writes");
    // Compacted there, the history is one sealed snapshot; both devices read it.
    let compacted = laptop.compact().unwrap();
    let snapshot = compacted.snapshot.expect("a snapshot");
    settle();
    assert!(paths().contains(&snapshot), "{:?}", paths());
    assert!(
        !paths().iter().any(|p| p.starts_with("ops/")),
        "{:?}",
        paths()
    );
    plain_anywhere("after the compaction");
    assert_eq!(read(&phone), a);
    let fresh = Store::open_in(Arc::clone(&folder), options("fresh")).unwrap();
    fresh.import_key(&laptop.key().unwrap()).unwrap();
    assert_eq!(read(&fresh), a);

    // The key rotated there: what comes after is sealed with the new key; a device given
    // only the new key reads everything (the older keys through the rotation record in
    // the folder), and one with the old key reads on once it imports the new one.
    let new = laptop.rotate_key().unwrap();
    laptop
        .apply_patch(&[PatchOp::set("/after", serde_json::json!("rotated"))])
        .unwrap();
    settle();
    let late = Store::open_in(Arc::clone(&folder), options("late")).unwrap();
    late.import_key(&new).unwrap();
    let all = read(&late);
    assert_eq!(all["after"], "rotated");
    assert_eq!(all["more"], "secret too");
    phone.import_key(&new).unwrap();
    assert_eq!(read(&phone), all);
    assert_eq!(read(&laptop), all);
    plain_anywhere("after the rotation");
}

/// A device's op file a folder elsewhere lost (a lifecycle rule, a person with the
/// console) is published again by that device's next write, from its outbox.
#[test]
fn an_op_file_a_folder_elsewhere_lost_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let options = |n: &str| Options::new().state_dir(dir.path().join(n)).device(n);
    let memory = Memory::lagging(Lag {
        listings: 2,
        seed: 11,
    });
    let laptop = Store::init_in(Arc::new(memory.clone()), options("laptop"), None).unwrap();
    let written = laptop
        .apply_patch(&[PatchOp::set("/a", serde_json::json!(1))])
        .unwrap();
    let lost = written.written[0].path.clone();
    memory.remove(&lost).unwrap();
    laptop
        .apply_patch(&[PatchOp::set("/b", serde_json::json!(2))])
        .unwrap();
    assert!(memory.read(&lost).is_ok(), "{lost} not written back");
    memory.settle();
    let phone = Store::open_in(Arc::new(memory.clone()), options("phone")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&phone.read_json().unwrap().0).unwrap();
    assert_eq!(doc, serde_json::json!({"a": 1, "b": 2}));
}

#[path = "../examples/support/counted.rs"]
mod counted;

/// A watcher polling a folder elsewhere lists it only when the folder's change hint moved
/// (or its safety listing is due): idle, a poll costs one stat, not a listing of every
/// folder; another device's write moves the hint and shows within a poll or two.
#[test]
fn a_watcher_elsewhere_lists_only_when_the_folder_changed() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let options = |n: &str| Options::new().state_dir(dir.path().join(n)).device(n);
    let memory = Memory::new();
    Store::init_in(
        Arc::new(memory.clone()),
        options("a"),
        Some(&serde_json::json!({"n": 0})),
    )
    .unwrap();
    let counting = Arc::new(counted::Counted::new(memory.clone()));
    let counts = || (counting.listings_of("ops"), counting.of("HEAD"));
    let a = Store::open_in(counting.clone(), options("a")).unwrap();
    let b = Store::open_in(Arc::new(memory.clone()), options("b")).unwrap();
    let watcher = a
        .watch(
            WatchOptions::new()
                .poll(Duration::from_millis(20))
                .safety_listing(Duration::from_secs(3600)),
        )
        .unwrap();
    assert!(
        watcher
            .recv_timeout(Duration::from_secs(20))
            .unwrap()
            .initial
    );
    let (listed, stated) = counts();
    std::thread::sleep(Duration::from_secs(1));
    let (idle_listed, idle_stated) = counts();
    assert!(
        idle_listed - listed <= 1,
        "{} listings of ops/ in an idle second of polling every 20 ms",
        idle_listed - listed
    );
    assert!(
        idle_stated - stated >= 10,
        "{} stats of the hint in a second",
        idle_stated - stated
    );
    b.apply_patch(&[PatchOp::set("/n", serde_json::json!(1))])
        .unwrap();
    let event = loop {
        let event = watcher
            .recv_timeout(Duration::from_secs(20))
            .expect("an event for b's write");
        if !event.changes.is_empty() {
            break event;
        }
    };
    assert!(event.changes.iter().all(|c| c.device == "b"), "{event:?}");
    assert!(counts().0 > idle_listed, "b's write was not listed");
}

/// An append on a folder elsewhere lists what it must and no more: the feature markers once
/// (its checks share one listing), and no beat folder while the tidy step's last look is
/// recent. A feature marker another device adds still stops its writes, as soon as the
/// shared listing is older than a moment.
#[test]
fn an_append_elsewhere_lists_each_folder_it_needs_once() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let options = |n: &str| Options::new().state_dir(dir.path().join(n)).device(n);
    let memory = Memory::new();
    let counting = Arc::new(counted::Counted::new(memory.clone()));
    let a = Store::init_in(
        counting.clone(),
        options("a"),
        Some(&serde_json::json!({"n": []})),
    )
    .unwrap();
    for d in ["b", "c", "d"] {
        let other = Store::open_in(Arc::new(memory.clone()), options(d)).unwrap();
        for i in 0..20 {
            other
                .apply_patch(&[PatchOp::insert(
                    "/n/-",
                    serde_json::json!(format!("{d}{i}")),
                )])
                .unwrap();
        }
    }
    let append = |i: i64| {
        a.apply_patch(&[PatchOp::insert("/n/-", serde_json::json!(i))])
            .unwrap()
    };
    a.read_json().unwrap();
    for i in 0..3 {
        append(i);
    }
    counting.take();
    counting.take_listed();
    append(2);
    let listed = counting.take_listed();
    assert_eq!(listed.get("features"), Some(&1), "{listed:?}");
    assert_eq!(listed.get("devices"), None, "{listed:?}");
    let beat_folders = listed.keys().filter(|d| d.starts_with("devices/")).count();
    assert!(beat_folders <= 1, "only its own beat folder: {listed:?}");
    // Its own actor folder: the actor check's listing and the scan's (which republishing
    // reuses).
    assert!(
        listed
            .iter()
            .filter(|(d, _)| d.starts_with("ops/"))
            .all(|(_, n)| *n <= 2),
        "{listed:?}"
    );
    assert!(counting.of("LIST") <= 13, "{listed:?}");

    memory
        .create("features/a-later-feature", b"later\n", "d")
        .unwrap();
    let fresh = Store::open_in(Arc::new(memory.clone()), options("e")).unwrap();
    let refused = fresh.apply_patch(&[PatchOp::set("/x", serde_json::json!(1))]);
    assert!(
        matches!(refused, Err(crdtdir::Error::NeedsNewer { .. })),
        "{refused:?}"
    );
    std::thread::sleep(Duration::from_millis(2100));
    let refused = a.apply_patch(&[PatchOp::set("/x", serde_json::json!(1))]);
    assert!(
        matches!(refused, Err(crdtdir::Error::NeedsNewer { .. })),
        "{refused:?}"
    );
}

/// Listing the documents of a store elsewhere sizes their loose op files from the listing,
/// and learns which features the store has from its listing of `features/`: no request per
/// file or per document.
#[test]
fn listing_documents_elsewhere_asks_nothing_per_op_file() {
    let dir = tempfile::tempdir().unwrap();
    let options = |n: &str| Options::new().state_dir(dir.path().join(n)).device(n);
    let memory = Memory::new();
    let laptop = crdtdir::Repo::from(
        Store::init_in(Arc::new(memory.clone()), options("laptop"), None).unwrap(),
    );
    for title in ["groceries", "todo", "books"] {
        let id = laptop
            .create(Some(&serde_json::json!({"title": title, "items": []})))
            .unwrap();
        for i in 0..5 {
            laptop
                .find(&id)
                .unwrap()
                .apply_patch(&[PatchOp::insert("/items/-", serde_json::json!(i))])
                .unwrap();
        }
    }
    let loose = memory
        .paths()
        .iter()
        .filter(|p| p.starts_with("ops/") && p.ends_with(".op"))
        .count();
    assert!(loose >= 18, "{loose} op files");
    let counting = Arc::new(counted::Counted::new(memory.clone()));
    let phone = crdtdir::Repo::from(Store::open_in(counting.clone(), options("phone")).unwrap());
    counting.take_stated();
    let listed = phone.docs().unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(
        listed.iter().filter(|d| !d.root).all(|d| d.bytes > 0),
        "{listed:?}"
    );
    // At most the marker: no op file, and no feature marker the listing of features/ showed.
    let stated = counting.take_stated();
    assert!(
        stated.keys().all(|p| p == "crdtdir.store"),
        "{stated:?} to list {loose} op files"
    );
}

/// A device on a folder elsewhere beats as it does on a disk: a second beat with nothing
/// new soon after the first is skipped (it finds its own recent beat by listing the folder).
#[test]
fn a_recent_beat_elsewhere_is_not_published_again() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::new();
    let store = Store::init_in(
        Arc::new(memory.clone()),
        Options::new().state_dir(dir.path().join("a")).device("a"),
        Some(&serde_json::json!({"n": 0})),
    )
    .unwrap();
    store.read_json().unwrap();
    store.beat().unwrap();
    let beats = |m: &Memory| -> Vec<String> {
        m.paths()
            .into_iter()
            .filter(|p| p.starts_with("devices/") && p.ends_with(".beat"))
            .collect()
    };
    let first = beats(&memory);
    assert_eq!(first.len(), 1, "{first:?}");
    for _ in 0..3 {
        assert!(!store.beat().unwrap(), "a beat published again");
    }
    assert_eq!(beats(&memory), first);
}

/// A pack put right in place in a folder elsewhere (a sync tool completing or restoring it
/// under its name) is read again, not answered from the view saved while it was damaged:
/// the listing's version of each pack is part of what that view stands for.
#[test]
fn a_pack_put_right_in_place_elsewhere_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::new();
    let options = |n: &str| Options::new().state_dir(dir.path().join(n)).device(n);
    let writer = Store::init_in(
        Arc::new(memory.clone()),
        options("w"),
        Some(&serde_json::json!({"n": 0})),
    )
    .unwrap();
    for i in 1..=3 {
        writer
            .apply_patch(&[PatchOp::set("/n", serde_json::json!(i))])
            .unwrap();
    }
    writer.pack().unwrap();
    let pack = memory
        .paths()
        .into_iter()
        .find(|p| p.starts_with("packs/") && p.ends_with(".pack"))
        .expect("a pack");
    // The packer's loose files are gone (as once every device has the pack): the pack is
    // the only copy the reader reads.
    for op in memory.paths().into_iter().filter(|p| p.starts_with("ops/")) {
        memory.remove(&op).unwrap();
    }
    let good = memory.read(&pack).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    memory.replace(&pack, &bad, "a sync tool").unwrap();
    // Each read a new handle, as each run of the CLI is: the second one may answer from the
    // view the first saved, but only while the folder is as it was.
    let read = || {
        let reader = Store::open_in(Arc::new(memory.clone()), options("r")).unwrap();
        let (json, report) = reader.read_json().unwrap();
        (
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            report,
        )
    };
    let (damaged, report) = read();
    assert!(!report.problems.is_empty(), "{report:?}");
    assert_ne!(damaged["n"], 3, "{damaged}");
    memory.replace(&pack, &good, "a sync tool").unwrap();
    let (mended, report) = read();
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(
        mended["n"], 3,
        "the mended pack was not read again: {mended}"
    );
}

/// Repair and check work on a folder elsewhere: a snapshot the folder lost is written back
/// by the device that holds its changes, and check names a damaged object by its path.
#[test]
fn repair_and_check_work_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::lagging(Lag {
        listings: 1,
        seed: 3,
    });
    let options = |n: &str| Options::new().state_dir(dir.path().join(n)).device(n);
    let laptop = Store::init_in(
        Arc::new(memory.clone()),
        options("laptop"),
        Some(&serde_json::json!({"items": []})),
    )
    .unwrap();
    for item in ["milk", "eggs", "bread"] {
        laptop
            .apply_patch(&[PatchOp::insert("/items/-", serde_json::json!(item))])
            .unwrap();
    }
    let snapshot = laptop.compact().unwrap().snapshot.expect("a snapshot");
    memory.settle();
    let read =
        |s: &Store| serde_json::from_str::<serde_json::Value>(&s.read_json().unwrap().0).unwrap();
    let want = read(&laptop);
    // The folder loses the snapshot and its record (a lifecycle rule, a person with the
    // console): a new device sees a gap, the laptop writes the history back.
    for lost in memory
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("snapshots/"))
    {
        memory.remove(&lost).unwrap();
    }
    memory.settle();
    assert!(!memory.paths().contains(&snapshot));
    let repaired = laptop.repair().unwrap();
    assert!(repaired.snapshot.is_some(), "{repaired:?}");
    memory.settle();
    let phone = Store::open_in(Arc::new(memory.clone()), options("phone")).unwrap();
    assert_eq!(read(&phone), want);
    assert!(phone.check().unwrap().damaged.is_empty());

    // A damaged object is named by check, by its path in the folder.
    let victim = memory
        .paths()
        .into_iter()
        .find(|p| p.starts_with("snapshots/") && p.ends_with(".sqlite"))
        .unwrap();
    let mut bytes = memory.read(&victim).unwrap();
    bytes[200] ^= 0xff;
    memory.replace(&victim, &bytes, "a sync tool").unwrap();
    let report = phone.check().unwrap();
    assert!(
        report.damaged.iter().any(|p| p.path == victim),
        "{report:?}"
    );
}

/// Checkpoints work on a folder elsewhere: a writing device publishes them on its own every
/// few changes, replacing its older one, and a new device starts from the newest.
#[test]
fn checkpoints_work_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let memory = Memory::new();
    let options = |n: &str| Options::new().state_dir(dir.path().join(n)).device(n);
    let laptop = Store::init_in(
        Arc::new(memory.clone()),
        options("laptop").checkpoint_every(4),
        Some(&serde_json::json!({"n": 0})),
    )
    .unwrap();
    for i in 1..=9 {
        laptop
            .apply_patch(&[PatchOp::set("/n", serde_json::json!(i))])
            .unwrap();
    }
    let checkpoints: Vec<String> = memory
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("checkpoints/"))
        .collect();
    assert_eq!(checkpoints.len(), 1, "{:?}", memory.paths());
    let fresh = Store::open_in(Arc::new(memory.clone()), options("fresh")).unwrap();
    let (json, report) = fresh.read_json().unwrap();
    assert_eq!(
        report.checkpoint.as_ref(),
        Some(&checkpoints[0]),
        "{report:?}"
    );
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).unwrap()["n"],
        9
    );
}
