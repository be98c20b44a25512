//! The watching thread: one file event source (one notify instance) for the folder, the
//! debounce, the safety listing and the device's upkeep, over a [`Target`] that merges and
//! makes the events — one document ([`One`]) or a repo's documents (`super::repo`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use automerge::ChangeHash;

use super::{explain, is_temp, remote_file_system, Event, EventChange, Live, Signal, WatchOptions};
use crate::render;
use crate::report::MergeReport;

/// What a watching thread watches: it merges and makes the events.
pub(crate) trait Target: Send + 'static {
    /// What an event is.
    type Out: Send;
    /// The store whose folder, counters, actors and upkeep the watcher uses.
    type L: Live;
    fn live(&self) -> &Self::L;
    /// A watcher starts (`true`) or stops.
    fn watching(&self, started: bool);
    /// Lists and merges what `paths` name (`None`: everything); the events, given the
    /// watcher's `notices`. `initial`: the first merge.
    fn merge(
        &mut self,
        initial: bool,
        paths: Option<&[PathBuf]>,
        notices: &mut Vec<String>,
    ) -> Vec<Self::Out>;
    /// The events for this device's own writes (`paths`) that need no listing.
    fn own_writes(&mut self, paths: &[PathBuf], notices: &mut Vec<String>) -> Vec<Self::Out>;
}

/// The watching thread's state.
pub(super) struct Run<T: Target> {
    target: T,
    options: WatchOptions,
    wake: Sender<Signal>,
    stop: Arc<AtomicBool>,
    /// The file event source, when there is one, and the folders it watches.
    source: Option<notify::RecommendedWatcher>,
    /// This device's own actor folders under `ops/` (events there are its own writes).
    own: Arc<RwLock<Vec<PathBuf>>>,
    watched: BTreeSet<PathBuf>,
    notices: Vec<String>,
    last_listing: Instant,
    /// The version of the folder's change hint when the folder was last listed whole
    /// (polling a folder elsewhere); `None`: unknown, the next poll lists.
    touched: Option<Option<String>>,
    last_beat: Option<Instant>,
    /// When packing upkeep last ran (see [`Run::heartbeat`]).
    last_upkeep: Option<Instant>,
}

impl<T: Target> Run<T> {
    pub(super) fn new(
        target: T,
        options: WatchOptions,
        wake: Sender<Signal>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        target.watching(true);
        let mut run = Run {
            target,
            options,
            wake,
            stop,
            source: None,
            own: Arc::new(RwLock::new(Vec::new())),
            watched: BTreeSet::new(),
            notices: Vec::new(),
            last_listing: Instant::now(),
            touched: None,
            last_beat: None,
            last_upkeep: None,
        };
        let elsewhere = !run.target.live().local();
        match remote_file_system(run.target.live().root()) {
            _ if elsewhere && run.options.events => run.notices.push(format!(
                "the folder is not on the local disk ({}): listing it every {} ms",
                run.target.live().root().display(),
                run.options.poll.as_millis()
            )),
            Some(fs) if run.options.events => run.notices.push(format!(
                "the folder is on a {fs} file system, where file events miss other machines' changes: listing the folder every {} ms instead",
                run.options.poll.as_millis()
            )),
            _ if run.options.events => run.start_events(),
            _ => {}
        }
        run
    }

    fn start_events(&mut self) {
        use notify::Watcher as _;
        let wake = self.wake.clone();
        let store = self.target.live().clone();
        let own = Arc::clone(&self.own);
        let made = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Reading a folder (this watcher's own listings among them) is no change.
            if matches!(&res, Ok(e) if matches!(e.kind, notify::EventKind::Access(_))) {
                return;
            }
            let signal = match res {
                Ok(ref e) if e.need_rescan() => Signal::Rescan,
                Ok(ref e) => Signal::Files(e.paths.clone()),
                Err(_) => Signal::Rescan,
            };
            // In this device's own folders: temps, removals (packing; no removal brings
            // news) and files this process published are known already. A file another
            // process of this device published is news.
            let ours = matches!(&res, Ok(e) if !e.need_rescan() && !e.paths.is_empty() && {
                let own = own.read().unwrap_or_else(|p| p.into_inner());
                let removal = matches!(e.kind, notify::EventKind::Remove(_));
                e.paths.iter().all(|p| {
                    own.iter().any(|dir| p.starts_with(dir))
                        && (removal || is_temp(p) || store.watched().published_here(p))
                })
            });
            if !ours {
                store.watched().events.fetch_add(1, Ordering::SeqCst);
            }
            // The watching thread stopped: nobody to wake.
            let _ = wake.send(signal);
        });
        match made {
            Ok(mut w) => {
                let root = self.target.live().root().to_path_buf();
                match w.watch(&root, notify::RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.watched.insert(root);
                        self.source = Some(w);
                        self.target
                            .live()
                            .watched()
                            .live
                            .fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => self.no_events(&e),
                }
            }
            Err(e) => self.no_events(&e),
        }
    }

    fn no_events(&mut self, e: &notify::Error) {
        self.drop_source();
        self.notices.push(explain(e, self.options.poll));
    }

    fn drop_source(&mut self) {
        if self.source.take().is_some() {
            self.target
                .live()
                .watched()
                .live
                .fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Watches the store's folders that exist and are not watched yet (new actor folders).
    /// Runs before each listing, so a file that arrives after the listing has an event.
    fn add_watches(&mut self) {
        use notify::Watcher as _;
        let Some(source) = self.source.as_mut() else {
            return;
        };
        let root = self.target.live().root();
        let mut wanted: Vec<PathBuf> = vec![
            crate::folder::layout::ops(root),
            crate::folder::layout::packs(root),
            crate::folder::layout::snapshots(root),
        ];
        // Changes arrive in actor folders of ops/ and of packs/ (a device that packed).
        for top in [
            crate::folder::layout::ops(root),
            crate::folder::layout::packs(root),
        ] {
            if let Ok(dirs) = std::fs::read_dir(top) {
                wanted.extend(
                    dirs.flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.path()),
                );
            }
        }
        for dir in wanted {
            if self.watched.contains(&dir) || !dir.is_dir() {
                continue;
            }
            match source.watch(&dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir);
                }
                Err(e) => {
                    self.no_events(&e);
                    return;
                }
            }
        }
    }

    pub(super) fn go(
        &mut self,
        signals: Receiver<Signal>,
        mut on_event: impl FnMut(&T::Out) -> bool,
    ) {
        // The first events: where the documents are now.
        if !self.merge(true, None).iter().all(&mut on_event) {
            return;
        }
        while !self.stop.load(Ordering::SeqCst) {
            let wait = match self.source {
                Some(_) => self
                    .options
                    .safety_listing
                    .saturating_sub(self.last_listing.elapsed()),
                None => self.options.poll,
            };
            // Only this device's own writes since the last merge (the document in memory
            // has them): no listing needed. Timeouts (the safety listing, polling) and
            // rescans list everything.
            let (list, paths) = match signals.recv_timeout(wait) {
                Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(signal) => {
                    let mut paths = match signal {
                        Signal::Files(p) => Some(p),
                        _ => None,
                    };
                    let rescan = self.settle(&signals, &mut paths);
                    let quiet = self.target.live().watched().quiet();
                    (
                        rescan || paths.is_none() || !quiet,
                        paths.filter(|_| !rescan),
                    )
                }
                Err(RecvTimeoutError::Timeout) => (true, None),
            };
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let events = if list && paths.is_none() && self.nothing_new() {
                Vec::new()
            } else if list {
                self.merge(false, paths.as_deref())
            } else {
                let mut notices = std::mem::take(&mut self.notices);
                let out = self
                    .target
                    .own_writes(paths.as_deref().unwrap_or_default(), &mut notices);
                self.notices = notices;
                out
            };
            if !events.iter().all(&mut on_event) {
                break;
            }
            self.heartbeat();
        }
    }

    /// Waits until the file events have been quiet for the debounce time (at most ten
    /// times that in all, so a steady stream is still merged in batches), gathering the
    /// paths they name into `paths`. True when a rescan was asked for meanwhile.
    fn settle(&self, signals: &Receiver<Signal>, paths: &mut Option<Vec<PathBuf>>) -> bool {
        let started = Instant::now();
        let cap = self.options.debounce * 10;
        let mut rescan = paths.is_none();
        while started.elapsed() < cap {
            match signals.recv_timeout(self.options.debounce) {
                Ok(Signal::Stop) => {
                    // Passed on to the loop (its own channel: it cannot be closed here).
                    let _ = self.wake.send(Signal::Stop);
                    return rescan;
                }
                Ok(Signal::Rescan) => rescan = true,
                Ok(Signal::Files(more)) => {
                    if let Some(p) = paths.as_mut() {
                        p.extend(more);
                    }
                }
                Err(_) => return rescan,
            }
        }
        rescan
    }

    /// Whether a poll of a folder elsewhere can skip its listing: the folder's change hint
    /// has the version it had at the last full listing, and the safety listing is not due.
    /// Polling a local folder (a network or FUSE file system, where no device writes the
    /// hint) always lists.
    fn nothing_new(&self) -> bool {
        let live = self.target.live();
        if self.source.is_some()
            || live.local()
            || self.last_listing.elapsed() >= self.options.safety_listing
        {
            return false;
        }
        match (&self.touched, live.touched()) {
            (Some(seen), Ok(now)) => *seen == now,
            _ => false,
        }
    }

    /// Lists and merges (what `paths` name, or everything); the events.
    fn merge(&mut self, initial: bool, paths: Option<&[PathBuf]>) -> Vec<T::Out> {
        let store = self.target.live().clone();
        let seen = store.watched().events.load(Ordering::SeqCst);
        let own = store.own_actors();
        *self.own.write().unwrap_or_else(|p| p.into_inner()) = own
            .iter()
            .flat_map(|a| {
                [
                    crate::folder::layout::actor_ops(store.root(), a),
                    crate::folder::layout::actor_packs(store.root(), a),
                ]
            })
            .collect();
        self.add_watches();
        // A merge of what events name lists only that: the safety listing stays due. The
        // change hint is read before the listing: a change published after it moves the
        // hint again.
        if paths.is_none() {
            self.last_listing = Instant::now();
            if !store.local() {
                self.touched = store.touched().ok();
            }
        }
        let mut notices = std::mem::take(&mut self.notices);
        let out = self.target.merge(initial, paths, &mut notices);
        self.notices = notices;
        store.watched().merged.store(seen, Ordering::SeqCst);
        out
    }

    /// This device is alive: a heartbeat at most once a minute (checked every 10 s; every
    /// 30 s in a folder elsewhere, where each check costs listings).
    fn heartbeat(&mut self) {
        let every = Duration::from_secs(if self.target.live().local() { 10 } else { 30 });
        if self.last_beat.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last_beat = Some(Instant::now());
        let store = self.target.live();
        let published = store.beat_if_stale().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the watcher's heartbeat failed (tried again in a minute)");
            false
        });
        // Packing upkeep at start and then once a minute (or with a new beat): packed loose
        // files the other devices now have can go, a lost pack comes back.
        let upkeep = published
            || self
                .last_upkeep
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if upkeep {
            self.last_upkeep = Some(Instant::now());
            // Packing is retried at the next upkeep; nothing is deleted before a pack reads back.
            if let Err(e) = store.upkeep_packs() {
                tracing::warn!(error = %e, "watcher upkeep: packing failed (retried at the next upkeep)");
            }
            // What the folder lost and this device holds goes back without a `repair`; a
            // failure is retried at the next upkeep.
            if let Err(e) = store.write_back_lost() {
                tracing::warn!(error = %e, "watcher upkeep: writing back lost changes failed (retried at the next upkeep)");
            }
        }
    }
}

impl<T: Target> Drop for Run<T> {
    fn drop(&mut self) {
        self.drop_source();
        self.target.watching(false);
    }
}

/// One document's events: what the app was last told of it.
#[derive(Debug, Default)]
pub(crate) struct Follow {
    heads: Vec<ChangeHash>,
    report: Option<MergeReport>,
    /// Whether the app was told of it at all (its first event is `initial`).
    told: bool,
}

impl Follow {
    /// True until its first event.
    pub(crate) fn is_new(&self) -> bool {
        !self.told
    }

    /// The event that takes the app from the last event's heads to `state`; `None` when
    /// nothing changed (the first one is `initial`, and always made). `document`: put the
    /// whole document into every event.
    pub(crate) fn event(
        &mut self,
        store: &impl Live,
        state: &crate::merged::MergedState,
        report: MergeReport,
        document: bool,
        notices: &mut Vec<String>,
    ) -> Option<Event> {
        let initial = !self.told;
        let heads = state.doc.get_heads();
        let same_report = self.report.as_ref() == Some(&report);
        if !initial && heads == self.heads && same_report && notices.is_empty() {
            return None;
        }
        // Read only when there is an event to make: most listings find nothing new.
        let own = store.own_actors();
        let reset = !initial
            && self
                .heads
                .iter()
                .any(|h| state.doc.get_change_meta_by_hash(h).is_none());
        let from: Vec<ChangeHash> = if reset {
            Vec::new()
        } else {
            self.heads.clone()
        };
        let (changes, patches) = if initial {
            (Vec::new(), Vec::new())
        } else {
            let changes: Vec<EventChange> = state
                .doc
                .get_changes_meta(&from)
                .into_iter()
                .map(|m| {
                    let actor = m.actor.to_hex_string();
                    EventChange {
                        hash: m.hash.to_string(),
                        seq: m.seq,
                        device: state.devices.get(&actor).cloned().unwrap_or_default(),
                        local: own.contains(&actor),
                        actor,
                    }
                })
                .collect();
            let logged = store.logged(&from, &heads);
            let patches =
                logged.unwrap_or_else(|| crate::patch::json::between(&state.doc, &from, &heads));
            (changes, patches)
        };
        let event = Event {
            initial,
            heads: heads.iter().map(ChangeHash::to_string).collect(),
            local: !changes.is_empty() && changes.iter().all(|c| c.local),
            changes,
            patches,
            reset,
            report: (!same_report).then(|| report.clone()),
            // The first event carries the document, so that its patches have a start.
            document: (initial || document).then(|| render::document(&state.doc)),
            notices: std::mem::take(notices),
        };
        self.heads = heads;
        self.report = Some(report);
        self.told = true;
        Some(event)
    }
}

/// One document watched.
pub(crate) struct One<L: Live> {
    store: L,
    follow: Follow,
    document: bool,
    /// The last listing, brought up to date with the new files events name.
    last: Option<crate::folder::scan::Scan>,
}

impl<L: Live> One<L> {
    pub(crate) fn new(store: L, document: bool) -> Self {
        One {
            store,
            follow: Follow::default(),
            document,
            last: None,
        }
    }
}

impl<L: Live> Target for One<L> {
    type Out = Event;
    type L = L;

    fn live(&self) -> &L {
        &self.store
    }

    fn watching(&self, started: bool) {
        self.store.watching(started);
    }

    fn merge(
        &mut self,
        _initial: bool,
        paths: Option<&[PathBuf]>,
        notices: &mut Vec<String>,
    ) -> Vec<Event> {
        let scan = match (paths, self.last.take()) {
            (Some(paths), Some(last)) => {
                let updated = self.store.scan_after(last, paths);
                tracing::debug!(?paths, listed = updated.is_none(), "file events");
                updated.unwrap_or_else(|| self.store.scan())
            }
            _ => self.store.scan(),
        };
        let (state, report) = self.store.merge_listed(&scan);
        self.last = Some(scan);
        self.follow
            .event(&self.store, &state, report, self.document, notices)
            .into_iter()
            .collect()
    }

    /// The event for what this device's own writes (through any clone of the store) did to
    /// the document in memory; a full merge when there is no document in memory.
    fn own_writes(&mut self, _paths: &[PathBuf], notices: &mut Vec<String>) -> Vec<Event> {
        match (self.store.in_memory(), self.follow.report.clone()) {
            (Some(state), Some(report)) => self
                .follow
                .event(&self.store, &state, report, self.document, notices)
                .into_iter()
                .collect(),
            _ => self.merge(false, None, notices),
        }
    }
}
