//! `status`: devices, heads and everything the merge found, in one value.

use std::collections::{BTreeMap, HashMap};

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::folder::scan::{self};
use crate::format::names;
use crate::merged::MergedState;
use crate::presence::{Presence, DEFAULT_THRESHOLD_SECS};
use crate::report::{ChangeInfo, MergeReport};
use crate::store::Store;

/// One device as seen in the folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// Display name.
    pub name: String,
    /// Actors written under this name.
    pub actors: Vec<String>,
    /// Changes in the merged document.
    pub ops: usize,
    /// Highest seq per actor.
    pub max_seq: BTreeMap<String, u64>,
}

/// The files crdtdir keeps in the folder: what a sync tool has to carry (some limit the
/// number of files they sync).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FileCounts {
    /// Loose op files (`ops/`), readable or not.
    pub ops: usize,
    /// Packs (`packs/`) whose header reads.
    pub packs: usize,
    /// Op files those packs hold (some may be loose too, until their deletion is safe).
    pub packed: usize,
    /// Files `crdtdir pack` on every device would remove: loose op files a pack already
    /// holds, and loose op files that would become packs (at this device's pack size).
    pub packing_would_save: usize,
    /// Snapshots and compaction records (`snapshots/`).
    pub snapshots: usize,
    /// Heartbeats (`devices/`).
    pub beats: usize,
    /// Loose op files of the store's other documents (those of the root document, or of
    /// documents beside it, that this handle's document is not).
    pub other_docs_ops: usize,
    /// All of them, with the marker, feature markers and key files.
    pub total: usize,
}

/// Counts the files of the store at `root` (its own kinds; not the sync tool's or the
/// user's).
fn file_counts(
    root: &dyn crate::folders::Folder,
    scan: &scan::Scan,
    pack_size: usize,
    other_docs_ops: usize,
) -> FileCounts {
    let files_in = |dir: &str| {
        root.list(dir)
            .into_iter()
            .flatten()
            .filter(crate::folders::Entry::is_file)
            .count()
    };
    let beats = crate::folder::beat_actors(root)
        .into_iter()
        .map(|a| files_in(&crate::folder::layout::actor_beats_rel(&a)))
        .sum();
    let ops = scan.ops.iter().filter(|o| o.loose).count();
    let packs = scan.packs.len();
    let packed = scan.ops.iter().filter(|o| o.packed.is_some()).count();
    let packing_would_save = packing_saves(scan, pack_size);
    let snapshots = scan.snapshots.len() + scan.records.len();
    let marker = usize::from(
        root.stat(crate::format::marker::MARKER)
            .ok()
            .flatten()
            .is_some_and(|m| m.is_file()),
    );
    let others = files_in(crate::format::marker::FEATURES_DIR) + files_in(crate::seal::KEYS_DIR);
    FileCounts {
        ops,
        packs,
        packed,
        packing_would_save,
        snapshots,
        beats,
        other_docs_ops,
        total: ops + packs + snapshots + beats + marker + others + other_docs_ops,
    }
}

/// How many files `crdtdir pack` on every device would remove: loose op files a pack holds
/// already, and per actor, `n` loose files become `n / size` packs, rounded up.
fn packing_saves(scan: &scan::Scan, size: usize) -> usize {
    let size = size.max(2);
    let mut saves = 0;
    let mut unpacked: std::collections::BTreeMap<&str, usize> = Default::default();
    for o in scan.ops.iter().filter(|o| o.loose) {
        if o.packed.is_some() {
            saves += 1;
        } else {
            *unpacked.entry(o.actor()).or_default() += 1;
        }
    }
    saves
        + unpacked
            .values()
            .map(|&n| n - n.div_ceil(size))
            .sum::<usize>()
}

/// What `status` shows.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// The store id.
    pub store_id: String,
    /// The store's format version.
    pub format: u64,
    /// Why this build refuses to write, if it does.
    pub read_only: Option<String>,
    /// The store is encrypted end to end.
    pub encrypted: bool,
    /// It is, and this device has no key: only file counts and skipped files are shown
    /// (`changes` then counts op files).
    pub locked: bool,
    /// Where this device keeps the store's key, if it keeps one (even when the OS keychain
    /// did not give it: `locked` then, and `read_only` says why).
    pub key: Option<crate::KeyPlace>,
    /// Changes in the merged document.
    pub changes: usize,
    /// Documents in the folder: the root one and each other one with an op file in `ops/`
    /// ([`crate::Repo::docs`] lists them).
    pub documents: usize,
    /// Heads of the merged document.
    pub heads: Vec<String>,
    /// Devices, by name.
    pub devices: Vec<DeviceInfo>,
    /// The files crdtdir keeps in the folder.
    pub files: FileCounts,
    /// Other devices' heartbeats, judged with the default threshold.
    pub presence: Vec<Presence>,
    /// What the merge found.
    #[serde(flatten)]
    pub report: MergeReport,
}

/// Every change in `state`'s document, in causal order, with its file and device.
pub(crate) fn history_of(state: &MergedState) -> Vec<ChangeInfo> {
    let mut paths: HashMap<(&str, u64), &str> =
        HashMap::with_capacity(state.files.len() + state.covered.len());
    for rel in state.files.iter().chain(&state.covered) {
        if let Some((actor, name)) = crate::folder::split_op_rel(rel) {
            if let Some(op) = names::parse_op_name(name) {
                paths.insert((actor, op.seq), rel);
            }
        }
    }
    state
        .doc
        .get_changes_meta(&[])
        .into_iter()
        .map(|m| {
            let actor = m.actor.to_hex_string();
            ChangeInfo {
                path: paths
                    .get(&(actor.as_str(), m.seq))
                    .map_or(String::new(), |p| p.to_string()),
                hash: m.hash.to_string(),
                device: state.devices.get(&actor).cloned().unwrap_or_default(),
                actor,
                seq: m.seq,
                time: m.timestamp,
                ops: (m.max_op + 1).saturating_sub(m.start_op) as usize,
                message: m.message.map(|m| m.into_owned()),
            }
        })
        .collect()
}

/// Where each object of `doc` is: its id (`counter@actor`) and its JSON Pointer, for every
/// map, list and text the document shows. One pass over the document.
pub(crate) fn object_paths(doc: &automerge::Automerge) -> HashMap<String, String> {
    use automerge::{ObjType, ReadDoc, ValueRef};
    let mut out = HashMap::new();
    let mut stack = vec![(automerge::ROOT, String::new())];
    while let Some((obj, path)) = stack.pop() {
        let mut found = |id: automerge::ObjId, path: String| {
            out.insert(id.to_string(), path.clone());
            stack.push((id, path));
        };
        match doc.object_type(&obj) {
            Ok(ObjType::Map | ObjType::Table) => {
                for item in doc.map_range(&obj, ..) {
                    if let ValueRef::Object(_) = item.value {
                        let key = crate::patch::escape_token(&item.key);
                        found(item.id(), format!("{path}/{key}"));
                    }
                }
            }
            Ok(ObjType::List) => {
                for item in doc.list_range(&obj, ..) {
                    if let ValueRef::Object(_) = item.value {
                        found(item.id(), format!("{path}/{}", item.index));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The JSON Pointers of what each change of `hashes` in `doc` wrote: each map key it set or
/// deleted, and each list or text it edited, where they are in `doc` now (`objects`: from
/// [`object_paths`]), in the order the change first touched them. An object the document no
/// longer shows is left out, and a hash `doc` does not hold gives nothing.
pub(crate) fn touched(
    doc: &automerge::Automerge,
    objects: &HashMap<String, String>,
    hashes: &[automerge::ChangeHash],
) -> Vec<Vec<String>> {
    use automerge::ReadDoc;
    // Automerge rebuilds a change from its op set on each lookup: for many, all at once.
    let changes: Vec<Option<automerge::Change>> = if hashes.len() > 64 {
        let mut all: HashMap<automerge::ChangeHash, automerge::Change> = doc
            .get_changes(&[])
            .into_iter()
            .map(|c| (c.hash(), c))
            .collect();
        hashes.iter().map(|h| all.remove(h)).collect()
    } else {
        hashes.iter().map(|h| doc.get_change_by_hash(h)).collect()
    };
    changes
        .into_iter()
        .map(|c| c.map(|c| paths_of(objects, c)).unwrap_or_default())
        .collect()
}

fn paths_of(objects: &HashMap<String, String>, change: automerge::Change) -> Vec<String> {
    use automerge::legacy::{Key, ObjectId};
    let mut out: Vec<String> = Vec::new();
    for op in change.decode().operations {
        let obj = match &op.obj {
            ObjectId::Root => "",
            ObjectId::Id(id) => match objects.get(&id.to_string()) {
                Some(path) => path.as_str(),
                None => continue,
            },
        };
        let path = match &op.key {
            Key::Map(k) => format!("{obj}/{}", crate::patch::escape_token(k.as_str())),
            Key::Seq(_) if obj.is_empty() => "/".to_string(),
            Key::Seq(_) => obj.to_string(),
        };
        if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

impl Store {
    /// How many documents the folder hasimpl Store {
    /// How many documents the folder has (the root one and each other one with an op file
    /// in `ops/`), and how many loose op files belong to documents other than this one.
    pub(crate) fn documents(&self) -> (usize, usize) {
        // A store that never had another document: nothing to list.
        if !crate::folder::has_feature(&*self.inner.folder, crate::format::marker::DOCS_FEATURE) {
            return (1, 0);
        }
        let counts = crate::folder::documents::counts(&*self.inner.folder);
        let others = counts
            .iter()
            .filter(|(doc, _)| doc.as_deref() != self.inner.doc_name.as_deref())
            .map(|(_, n)| n)
            .sum();
        let documents = 1 + counts.keys().filter(|doc| doc.is_some()).count();
        (documents, others)
    }

    /// What a device without the key of an encrypted store can tell: the op files per
    /// actor (names and content are sealed) and the files the scan skipped.
    fn locked_status(&self) -> Status {
        let scan = self.scan();
        let (documents, others) = self.documents();
        let mut devices: BTreeMap<String, DeviceInfo> = BTreeMap::new();
        for op in &scan.ops {
            let d = devices
                .entry(op.actor().to_string())
                .or_insert_with(|| DeviceInfo {
                    name: String::new(),
                    actors: vec![op.actor().to_string()],
                    ops: 0,
                    max_seq: BTreeMap::new(),
                });
            d.ops += 1;
            let max = d.max_seq.entry(op.actor().to_string()).or_insert(0);
            *max = (*max).max(op.seq);
        }
        let report = MergeReport {
            problems: scan.problems.clone(),
            unknown_features: scan.unknown_features.clone(),
            ..MergeReport::default()
        };
        Status {
            store_id: self.inner.marker.store_id.clone(),
            format: self.inner.marker.format,
            read_only: Some(self.locked().to_string()),
            encrypted: true,
            locked: true,
            key: self.key_place(),
            changes: scan.ops.len(),
            heads: Vec::new(),
            devices: devices.into_values().collect(),
            files: file_counts(
                &*self.inner.folder,
                &scan,
                self.pack_size_or_default(),
                others,
            ),
            documents,
            presence: Vec::new(),
            report: self.with_marker_problem(report),
        }
    }

    /// Status: devices, problems, forks, quarantined and waiting changes. When nothing
    /// came or went since the last status that merged (the saved view stands for the
    /// listing, and no other device's beat is new), it is answered from what that one
    /// found, without loading the document.
    pub fn status(&self) -> Result<Status> {
        if self.check_unlocked().is_err() {
            return Ok(self.locked_status());
        }
        // One scan and one merge serve the history, the presence and the report.
        let scan = self.scan();
        let (documents, others) = self.documents();
        if let Some(status) = self.status_from_cache(&scan, documents, others) {
            tracing::debug!("status from the saved view and the last status: no document loaded");
            return Ok(status);
        }
        let (state, report, _) = self.merged(&scan, true);
        let history = history_of(&state);
        let mut by_actor: BTreeMap<String, (String, u64, usize)> = BTreeMap::new();
        for c in &history {
            let e = by_actor
                .entry(c.actor.clone())
                .or_insert((c.device.clone(), 0, 0));
            if c.seq >= e.1 {
                e.0 = c.device.clone();
                e.1 = c.seq;
            }
            e.2 += 1;
        }
        let mut devices: BTreeMap<String, DeviceInfo> = BTreeMap::new();
        for (actor, (name, max_seq, ops)) in by_actor {
            let d = devices.entry(name.clone()).or_insert_with(|| DeviceInfo {
                name,
                actors: Vec::new(),
                ops: 0,
                max_seq: BTreeMap::new(),
            });
            d.actors.push(actor.clone());
            d.ops += ops;
            d.max_seq.insert(actor, max_seq);
        }
        let status = Status {
            store_id: self.inner.marker.store_id.clone(),
            format: self.inner.marker.format,
            read_only: self.check_writable().err().map(|e| e.to_string()),
            encrypted: self.is_encrypted(),
            locked: false,
            key: self.key_place(),
            changes: history.len(),
            heads: state
                .doc
                .get_heads()
                .iter()
                .map(ChangeHash::to_string)
                .collect(),
            devices: devices.into_values().collect(),
            files: file_counts(
                &*self.inner.folder,
                &scan,
                self.pack_size_or_default(),
                others,
            ),
            documents,
            presence: self.presence_of(&state, DEFAULT_THRESHOLD_SECS),
            report: self.with_marker_problem(report),
        };
        self.save_status(&status);
        Ok(status)
    }

    /// What the last status that merged found, if the saved view still stands for `scan`,
    /// is of the same heads, and every other device's latest beat is one it counted.
    fn status_from_cache(
        &self,
        scan: &scan::Scan,
        documents: usize,
        others: usize,
    ) -> Option<Status> {
        let view = self
            .inner
            .memory
            .cache
            .view(&*self.inner.folder, scan, &self.key_digest())?;
        let bytes = std::fs::read(self.inner.state.path().join(STATUS_FILE)).ok()?;
        let cached: StatusCache = serde_json::from_slice(&bytes).ok()?;
        let mut heads = cached.heads.clone();
        heads.sort();
        if cached.v != STATUS_VERSION || heads != view.beat.0 {
            return None;
        }
        let presence = self.presence_with(DEFAULT_THRESHOLD_SECS, |_, rel, _| {
            cached.unmerged.get(rel).copied()
        })?;
        // The heartbeat that follows takes its heads from here too.
        self.inner.memory.served(view.beat.clone());
        Some(Status {
            store_id: self.inner.marker.store_id.clone(),
            format: self.inner.marker.format,
            read_only: self.check_writable().err().map(|e| e.to_string()),
            encrypted: self.is_encrypted(),
            locked: false,
            key: self.key_place(),
            changes: cached.changes,
            heads: cached.heads,
            devices: cached.devices,
            files: file_counts(
                &*self.inner.folder,
                scan,
                self.pack_size_or_default(),
                others,
            ),
            documents,
            presence,
            report: self.with_marker_problem(view.report),
        })
    }

    /// Remembers what `status` found that needs the document (a cache in local state).
    fn save_status(&self, status: &Status) {
        let cached = StatusCache {
            v: STATUS_VERSION,
            heads: status.heads.clone(),
            changes: status.changes,
            devices: status.devices.clone(),
            unmerged: status
                .presence
                .iter()
                .map(|p| (p.beat.clone(), p.unmerged))
                .collect(),
        };
        let bytes = serde_json::to_vec(&cached).expect("a status cache serializes");
        let path = self.inner.state.path().join(STATUS_FILE);
        if let Err(e) = crate::fs::replace_unsynced(&path, &bytes) {
            tracing::debug!(error = %e, "the status cache was not saved (the next status merges)");
        }
    }
}

/// The local file of what the last status that merged found (a cache: any other version,
/// or one that does not read, is ignored).
const STATUS_FILE: &str = "status";
const STATUS_VERSION: u32 = 1;

/// What `status` remembers of the document it loaded: of these heads, its changes and
/// devices, and how many of this device's changes each other device's beat (by path) has
/// not merged.
#[derive(Debug, Serialize, Deserialize)]
struct StatusCache {
    v: u32,
    heads: Vec<String>,
    changes: usize,
    devices: Vec<DeviceInfo>,
    unmerged: BTreeMap<String, usize>,
}
