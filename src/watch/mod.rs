//! A live store: a watcher merges what the sync tool delivers as it arrives and tells the app
//! what changed.
//!
//! File events only *trigger* a merge; correctness comes from listing the folder (a merge
//! with nothing new costs about a listing). Events are known to be lost under bursts, so any
//! overflow or error of the event source lists again, a safety listing runs every
//! [`WatchOptions::safety_listing`] anyway, and where there are no file events (network file
//! systems, FUSE mounts such as `rclone mount`, or [`WatchOptions::events`] off) the watcher
//! lists every [`WatchOptions::poll`]. Events are debounced ([`WatchOptions::debounce`]);
//! one merge runs at a time, so a burst of 10,000 arriving files is one or a few batches.
//!
//! Only the store's own folders are watched (the root, `ops/`, each `ops/<actor>/`,
//! `snapshots/`), not recursively; new actor folders are added as they appear.
//!
//! The watcher keeps the document in memory, shared with the [`Store`](crate::Store) it came from and its
//! clones: a new file costs its apply, not a document load, and a write through any clone is
//! reported too (marked `local`). It publishes this device's heartbeat at most once a minute
//! while it runs, so other devices' `compact` sees it.

pub use crate::patch::json::JsonPatch;

mod live;
pub(crate) mod repo;
mod run;
pub(crate) use live::{Live, Watched};
pub use repo::DocEvent;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::Result;
use crate::report::MergeReport;

/// How a watcher watches.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchOptions {
    /// Quiet time after the last file event before a merge (default 100 ms).
    pub debounce: Duration,
    /// A listing runs at least this often even without file events (default 60 s): events
    /// can be lost.
    pub safety_listing: Duration,
    /// Use the operating system's file events (default `true`). Without them, or where they
    /// do not exist, the folder is listed every [`WatchOptions::poll`].
    pub events: bool,
    /// How often to list the folder when there are no file events (default 1 s).
    pub poll: Duration,
    /// Put the whole document's JSON into every event (default `false`).
    pub document: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(100),
            safety_listing: Duration::from_secs(60),
            events: true,
            poll: Duration::from_secs(1),
            document: false,
        }
    }
}

impl WatchOptions {
    /// The defaults.
    pub fn new() -> WatchOptions {
        WatchOptions::default()
    }

    /// Sets [`WatchOptions::debounce`].
    pub fn debounce(mut self, d: Duration) -> Self {
        self.debounce = d;
        self
    }

    /// Sets [`WatchOptions::safety_listing`].
    pub fn safety_listing(mut self, d: Duration) -> Self {
        self.safety_listing = d;
        self
    }

    /// Sets [`WatchOptions::events`].
    pub fn events(mut self, on: bool) -> Self {
        self.events = on;
        self
    }

    /// Sets [`WatchOptions::poll`].
    pub fn poll(mut self, d: Duration) -> Self {
        self.poll = d;
        self
    }

    /// Sets [`WatchOptions::document`].
    pub fn document(mut self, on: bool) -> Self {
        self.document = on;
        self
    }
}

/// What one merged batch changed.
///
/// `patches` say what changed as JSON Pointer patches (see [`JsonPatch`]): applied in order
/// to the JSON of the document before this event, they give the JSON after it. The first
/// event of a watcher (`initial`) has the current heads and no changes. An app in another
/// process reads the `crdtdir watch` lines back with `serde_json::from_str::<Event>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// The first event: the document as the watcher found it.
    pub initial: bool,
    /// Heads of the merged document after this batch.
    pub heads: Vec<String>,
    /// The changes this batch merged, in causal order.
    pub changes: Vec<EventChange>,
    /// What changed in the document's JSON ([`JsonPatch::apply_all`] applies them).
    #[serde(default)]
    pub patches: Vec<JsonPatch>,
    /// Every change of the batch is this device's own (a write of this process, or of
    /// another process of this device).
    pub local: bool,
    /// The document was rebuilt rather than extended (a fork was resolved, history was
    /// rewritten): `patches` then build the whole document from `{}`.
    pub reset: bool,
    /// The merge report, when it differs from the one the last event carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<MergeReport>,
    /// The whole document: in the first event (the start the later events' patches apply
    /// to), and in every event when [`WatchOptions::document`] is on. (`doc` in the lines of
    /// `crdtdir watch`.)
    #[serde(default, alias = "doc", skip_serializing_if = "Option::is_none")]
    pub document: Option<Json>,
    /// What the app should know about the watching itself (file events unavailable, polling
    /// instead; the inotify limit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
}

/// One change an event merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventChange {
    /// Automerge change hash.
    pub hash: String,
    /// Actor, lowercase hex.
    pub actor: String,
    /// Seq within the actor.
    pub seq: u64,
    /// Display name of the device that wrote it.
    pub device: String,
    /// Written by this device.
    pub local: bool,
}

/// A running watcher: its events as an iterator (blocking) or one at a time. Dropping it
/// stops the watching thread.
///
/// A watcher of one document ([`Store::watch`](crate::Store::watch)) gives [`Event`]s; one of
/// a repo's documents ([`Repo::watch`](crate::Repo::watch)) gives [`DocEvent`]s.
pub struct Watcher<E = Event> {
    events: Receiver<E>,
    handle: WatchHandle,
}

/// A running watcher that calls a function ([`Store::watch_with`](crate::Store::watch_with)). Dropping it stops the
/// watching thread.
#[derive(Debug)]
pub struct WatchHandle {
    stop: Stopper,
    thread: Option<JoinHandle<()>>,
}

/// Stops a watcher from anywhere (a signal handler, another thread); cheap to clone.
#[derive(Debug, Clone)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    wake: Sender<Signal>,
}

impl Stopper {
    /// Asks the watcher to stop; it finishes the merge in flight, if any.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // A watcher already gone has nobody to wake.
        let _ = self.wake.send(Signal::Stop);
    }
}

impl<E> std::fmt::Debug for Watcher<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl<E> Watcher<E> {
    /// The next event, waiting at most `timeout`; `None` on timeout or once stopped.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<E> {
        self.events.recv_timeout(timeout).ok()
    }

    /// The next event if one is ready.
    pub fn try_recv(&self) -> Option<E> {
        self.events.try_recv().ok()
    }

    /// A handle that stops this watcher from another thread.
    pub fn stopper(&self) -> Stopper {
        self.handle.stopper()
    }

    /// Stops watching and waits for the watching thread.
    pub fn stop(self) {}
}

impl<E> Iterator for Watcher<E> {
    type Item = E;

    /// Blocks until the next event; `None` once the watcher stopped.
    fn next(&mut self) -> Option<E> {
        self.events.recv().ok()
    }
}

impl WatchHandle {
    /// A handle that stops this watcher from another thread.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// Stops watching and waits for the watching thread.
    pub fn stop(self) {}

    /// Waits until the watcher stops (a [`Stopper`] was used, or the callback returned
    /// `false`).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            // A watching thread that panicked has nothing more to say; its events ended.
            let _ = t.join();
        }
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            // A watching thread that panicked has nothing more to say; its events ended.
            let _ = t.join();
        }
    }
}

/// What wakes the watching thread.
#[derive(Debug)]
enum Signal {
    /// Files changed in a watched folder (these paths).
    Files(Vec<PathBuf>),
    /// The event source overflowed or failed: list everything.
    Rescan,
    /// Stop.
    Stop,
}

impl Watcher {
    /// A watcher whose events come through a channel.
    pub(crate) fn start(live: impl Live, options: WatchOptions) -> Result<Watcher> {
        // Merge once before returning, so errors (a folder that is gone) come back here.
        live.merge_listed(&live.scan());
        let document = options.document;
        Watcher::start_target(run::One::new(live, document), options)
    }
}

impl<E: Clone + Send + 'static> Watcher<E> {
    /// A watcher of `target` whose events come through a channel.
    pub(crate) fn start_target<T: run::Target<Out = E>>(
        target: T,
        options: WatchOptions,
    ) -> Result<Watcher<E>> {
        let (tx, rx) = mpsc::channel();
        let handle = spawn_target(target, options, move |e: &E| tx.send(e.clone()).is_ok())?;
        Ok(Watcher { events: rx, handle })
    }
}

/// Starts the watching thread over one document (`live`), calling `on_event` for every
/// event.
pub(crate) fn spawn(
    live: impl Live,
    options: WatchOptions,
    on_event: impl FnMut(&Event) -> bool + Send + 'static,
) -> Result<WatchHandle> {
    // Merge once before returning, so errors (a folder that is gone) come back here.
    live.merge_listed(&live.scan());
    let document = options.document;
    spawn_target(run::One::new(live, document), options, on_event)
}

/// Starts the watching thread over `target`, calling `on_event` for every event.
pub(crate) fn spawn_target<T: run::Target>(
    target: T,
    options: WatchOptions,
    on_event: impl FnMut(&T::Out) -> bool + Send + 'static,
) -> Result<WatchHandle> {
    let (wake, signals) = mpsc::channel();
    let stop = Stopper {
        flag: Arc::new(AtomicBool::new(false)),
        wake: wake.clone(),
    };
    let flag = Arc::clone(&stop.flag);
    let root = target.live().root().to_path_buf();
    let thread = std::thread::Builder::new()
        .name("crdtdir-watch".into())
        .spawn(move || {
            let mut run = run::Run::new(target, options, wake, flag);
            run.go(signals, on_event);
        })
        .map_err(crate::error::Error::io(&root))?;
    Ok(WatchHandle {
        stop,
        thread: Some(thread),
    })
}

/// The type of the file system `path` is on, when it is one where file events do not see
/// changes made by other machines (network file systems, FUSE mounts such as
/// `rclone mount`). Linux only (from `/proc/self/mounts`); `None` elsewhere.
fn remote_file_system(path: &std::path::Path) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    remote_in(&std::fs::read_to_string("/proc/self/mounts").ok()?, &real)
}

/// [`remote_file_system`] for a mount table in the format of `/proc/self/mounts`.
fn remote_in(mounts: &str, real: &std::path::Path) -> Option<String> {
    let (_, fs) = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (_, point, fs) = (fields.next()?, fields.next()?, fields.next()?);
            // Mount points escape spaces and a few others as octal (`\040`).
            let point = point.replace("\\040", " ").replace("\\011", "\t");
            real.starts_with(&point)
                .then(|| (point.len(), fs.to_string()))
        })
        .max_by_key(|(len, _)| *len)?;
    let remote = [
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "davfs",
    ];
    // FUSE file systems are mostly remote (rclone, sshfs, gcsfuse); fuse-overlayfs (a
    // container's root) is local.
    let fuse = (fs == "fuse" || fs.starts_with("fuse.")) && !fs.contains("overlay");
    (remote.contains(&fs.as_str()) || fuse).then_some(fs)
}

/// True for a staged temp (a write in progress, of this process or another).
fn is_temp(path: &std::path::Path) -> bool {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .is_some_and(|n| {
            n.starts_with(crate::fs::TEMP_PREFIX) && n.ends_with(crate::fs::TEMP_SUFFIX)
        })
}

/// Why there are no file events, and what the watcher does instead.
fn explain(e: &notify::Error, poll: Duration) -> String {
    let limit = matches!(e.kind, notify::ErrorKind::MaxFilesWatch)
        || matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(28));
    // Creating an inotify instance past the per-user limit fails with EMFILE.
    let instances = matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(24));
    let why = if limit {
        "the system's limit of watched folders is reached (Linux: raise fs.inotify.max_user_watches, e.g. `sysctl fs.inotify.max_user_watches=524288`)".to_string()
    } else if instances {
        "too many file watchers are open (Linux allows 128 per user by default: raise fs.inotify.max_user_instances, e.g. `sysctl fs.inotify.max_user_instances=1024`, or stop other watchers)".to_string()
    } else {
        e.to_string()
    };
    format!(
        "file events unavailable ({why}): listing the folder every {} ms instead",
        poll.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The two inotify limits are named with the setting that raises them.
    #[test]
    fn running_out_of_watches_or_watchers_names_the_setting() {
        let poll = std::time::Duration::from_secs(1);
        let watchers = notify::Error::io(std::io::Error::from_raw_os_error(24));
        let said = super::explain(&watchers, poll);
        assert!(said.contains("fs.inotify.max_user_instances"), "{said}");
        let watches = notify::Error::io(std::io::Error::from_raw_os_error(28));
        let said = super::explain(&watches, poll);
        assert!(said.contains("fs.inotify.max_user_watches"), "{said}");
        let other = notify::Error::io(std::io::Error::from_raw_os_error(13));
        assert!(!super::explain(&other, poll).contains("fs.inotify"));
    }

    /// Network and FUSE mounts are found by the longest mount point holding the folder.
    #[test]
    fn remote_file_systems_are_recognised() {
        let mounts = "/dev/vda / ext4 rw 0 0\n\
            server:/export /mnt/nfs nfs4 rw 0 0\n\
            gdrive: /home/me/Google\\040Drive fuse.rclone rw 0 0\n\
            fuse-overlayfs /var/lib/app fuse.fuse-overlayfs rw 0 0\n\
            tmpfs /mnt/nfs/local tmpfs rw 0 0\n";
        let on = |p: &str| super::remote_in(mounts, Path::new(p));
        assert_eq!(on("/home/me/Sync"), None);
        assert_eq!(on("/mnt/nfs/todo").as_deref(), Some("nfs4"));
        assert_eq!(
            on("/mnt/nfs/local/todo"),
            None,
            "the longest mount point wins"
        );
        assert_eq!(
            on("/home/me/Google Drive/todo").as_deref(),
            Some("fuse.rclone")
        );
        assert_eq!(on("/var/lib/app/todo"), None, "fuse-overlayfs is local");
    }
}
