//! Reading op files: each one verified (its hash against its name, the envelope, the change,
//! its actor and seq against its path) and loaded as a change, or skipped with the reason.

use automerge::{ActorId, Change, ChangeHash};

use crate::folder::scan::{OpEntry, Packed};
use crate::folder::Source;
use crate::format::names;
use crate::format::{opfile, pack};
use crate::merged::Pending;
use crate::report::{Problem, ProblemKind};

/// A verified change and where it came from.
pub(crate) struct Loaded {
    pub(crate) rel: String,
    pub(crate) device: String,
    /// The change itself, until the merge hands it to Automerge (see [`Loaded::change`]);
    /// boxed, so that the 100,000 records a cold merge keeps after applying cost little.
    pub(crate) held: Option<Box<Change>>,
    pub(crate) hash: ChangeHash,
    pub(crate) actor: ActorId,
}

impl Loaded {
    pub(crate) fn new(rel: String, device: String, change: Change) -> Loaded {
        Loaded {
            rel,
            device,
            hash: change.hash(),
            actor: change.actor_id().clone(),
            held: Some(Box::new(change)),
        }
    }

    /// The change. Only a merge's apply step takes it out, after every other use.
    pub(crate) fn change(&self) -> &Change {
        self.held
            .as_ref()
            .expect("a change is read after it was applied")
    }
}

/// The packs one loader reads: for each of the last few, the open file and a window of its
/// bytes, so entries of one pack cost a few large reads even when entries of several
/// actors' packs come interleaved (a streaming merge takes them in seq order), and memory
/// stays a few windows whatever the packs' sizes.
#[derive(Default)]
pub(crate) struct PackReader {
    recent: std::collections::VecDeque<Window>,
}

struct Window {
    pack: std::sync::Arc<str>,
    start: u64,
    bytes: Vec<u8>,
    /// Why the pack did not read: said again for its other entries, not read again.
    unreadable: Option<String>,
}

/// Packs a loader keeps open at once.
const RECENT_PACKS: usize = 16;
/// Bytes read from a pack at once (more when one entry is bigger).
const WINDOW: u64 = 1 << 20;

impl PackReader {
    /// The bytes of a pack entry, verified against its row.
    fn entry(&mut self, store: &Source<'_>, packed: &Packed) -> Result<Vec<u8>, String> {
        let row = &packed.row;
        let end = row.offset + u64::from(row.len);
        let at = match self.recent.iter().position(|w| w.pack == packed.pack) {
            Some(at) => at,
            None => {
                if self.recent.len() == RECENT_PACKS {
                    self.recent.pop_front();
                }
                self.recent.push_back(Window {
                    pack: packed.pack.clone(),
                    start: 0,
                    bytes: Vec::new(),
                    unreadable: None,
                });
                self.recent.len() - 1
            }
        };
        let w = &mut self.recent[at];
        if let Some(why) = &w.unreadable {
            return Err(why.clone());
        }
        let held = w.start <= row.offset && end <= w.start + w.bytes.len() as u64;
        if !held {
            let range = row.offset..row.offset + u64::from(row.len).max(WINDOW);
            match store.folder.read_range(&packed.pack, range) {
                Ok(bytes) => {
                    w.start = row.offset;
                    w.bytes = bytes;
                }
                Err(e) => return Err(w.unreadable.insert(format!("unreadable: {e}")).clone()),
            }
        }
        let from = (row.offset - w.start) as usize;
        let bytes = w.bytes.get(from..from + row.len as usize).ok_or_else(|| {
            format!(
                "entry for seq {} is past the end of the pack (truncated)",
                row.seq
            )
        })?;
        pack::check_entry(bytes, row)?;
        Ok(bytes.to_vec())
    }
}

/// Reads and verifies one op file: the loose file, or else its pack's entry. `Err` says
/// why it is skipped (the loose file's reason when both fail; a pack's entry is reported
/// at the pack's path).
pub(crate) fn load(
    store: &Source<'_>,
    entry: &OpEntry,
    packs: &mut PackReader,
) -> Result<Loaded, Problem> {
    let loose = entry.loose.then(|| load_loose(store, entry));
    if let Some(Ok(loaded)) = loose {
        return Ok(loaded);
    }
    // The packs that hold it, in turn; the first one's reason is reported.
    let mut first_failure = None;
    for packed in entry.packs() {
        match load_packed(store, entry, packed, packs) {
            Ok(loaded) => return Ok(loaded),
            Err(problem) => {
                first_failure.get_or_insert(problem);
            }
        }
    }
    match (loose, first_failure) {
        (Some(Err(problem)), _) => Err(problem),
        (_, Some(problem)) => Err(problem),
        _ => unreachable!("a listed op file is loose or packed"),
    }
}

/// Every copy of one op file read and verified on its own — the loose file and each pack
/// entry that holds it — as `crdtdir check` does: how many copies were read, and a problem
/// for each damaged one.
pub(crate) fn check_copies(
    store: &Source<'_>,
    entry: &OpEntry,
    packs: &mut PackReader,
) -> (usize, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut read = 0;
    if entry.loose {
        read += 1;
        problems.extend(load_loose(store, entry).err());
    }
    for packed in entry.packs() {
        read += 1;
        problems.extend(load_packed(store, entry, packed, packs).err());
    }
    (read, problems)
}

/// The loose op file of `entry`, read and verified.
fn load_loose(store: &Source<'_>, entry: &OpEntry) -> Result<Loaded, Problem> {
    let skip = |kind, reason: String| Problem::new(kind, entry.rel.clone(), reason);
    let bytes = store
        .folder
        .read(&entry.rel)
        .map_err(|e| skip(ProblemKind::Unreadable, format!("unreadable: {e}")))?;
    if names::file_hash_hex(&bytes) != entry.hash() {
        return Err(skip(
            ProblemKind::Damaged,
            "content does not match the hash in its name (damaged or truncated)".into(),
        ));
    }
    verify(store, entry, &bytes).map_err(|(kind, reason)| skip(kind, reason))
}

/// The entry of `entry` in the pack `packed`, read and verified; a problem names the pack.
fn load_packed(
    store: &Source<'_>,
    entry: &OpEntry,
    packed: &Packed,
    packs: &mut PackReader,
) -> Result<Loaded, Problem> {
    packs
        .entry(store, packed)
        .map_err(|r| (ProblemKind::Damaged, r))
        .and_then(|bytes| verify(store, entry, &bytes))
        .map_err(|(kind, reason)| {
            Problem::new(
                kind,
                packed.pack.to_string(),
                format!("seq {}: {reason}", entry.seq),
            )
        })
}

/// The change in op file bytes whose hash already matched, checked against its place.
fn verify(
    store: &Source<'_>,
    entry: &OpEntry,
    bytes: &[u8],
) -> Result<Loaded, (ProblemKind, String)> {
    let plain = store.open(
        "op",
        &crate::seal::op_context(store.doc, entry.actor(), entry.seq),
        bytes,
    )?;
    let envelope = opfile::decode(&plain).map_err(|e| (e.kind(), e.to_string()))?;
    let named = envelope.doc.as_deref().and_then(|id| store.doc_name(id));
    if named.as_deref() != store.doc {
        return Err((
            ProblemKind::Damaged,
            match &envelope.doc {
                Some(doc) => format!("a change to document {doc}, not to the one its name says"),
                None => "a change to the root document, not to the one its name says".into(),
            },
        ));
    }
    let change = Change::from_bytes(envelope.change).map_err(|e| {
        (
            ProblemKind::Damaged,
            format!("not an Automerge change: {e}"),
        )
    })?;
    let actor = change.actor_id().to_hex_string();
    if actor != entry.actor() {
        return Err((
            ProblemKind::Damaged,
            format!("change belongs to actor {actor}, not to its folder"),
        ));
    }
    if change.seq() != entry.seq {
        return Err((
            ProblemKind::Damaged,
            format!("change has seq {}, not the seq in its name", change.seq()),
        ));
    }
    Ok(Loaded::new(entry.rel.clone(), envelope.device, change))
}

/// How many op files between two progress reports of a merge.
pub(crate) const PROGRESS_EVERY: usize = 4096;

/// Reads and verifies op files on every core; results come back in the order of `entries`.
pub(crate) fn load_all(store: &Source<'_>, entries: &[OpEntry]) -> (Vec<Loaded>, Vec<Problem>) {
    let results = on_every_core(store, entries, load);
    let mut loaded = Vec::with_capacity(entries.len());
    let mut problems = Vec::new();
    for r in results {
        match r {
            Ok(l) => loaded.push(l),
            Err(p) => problems.push(p),
        }
    }
    // Entries of one damaged pack: one problem per pack is enough to say it.
    problems.dedup_by(|b, a| a.path == b.path && a.path.ends_with(pack::PACK_EXT));
    (loaded, problems)
}

/// `f` of each of `entries` (each worker with its own pack reader), on every core, in the
/// order of `entries`; long work says how far it is (every 4,096 files, and at the end).
pub(crate) fn on_every_core<T: Send>(
    store: &Source<'_>,
    entries: &[OpEntry],
    f: impl Fn(&Source<'_>, &OpEntry, &mut PackReader) -> T + Sync,
) -> Vec<T> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = entries.len().div_ceil(workers).max(256);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let total = entries.len();
    let tell = |n: usize| store.tell(crate::Progress::Reading { done: n, total });
    let results: Vec<Vec<T>> = std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                let (done, tell, f) = (&done, &tell, &f);
                s.spawn(move || {
                    let mut packs = PackReader::default();
                    part.iter()
                        .map(|e| {
                            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                            if n.is_multiple_of(PROGRESS_EVERY) {
                                tell(n);
                            }
                            f(store, e, &mut packs)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reading op files panicked"))
            .collect()
    });
    if total > 0 && !total.is_multiple_of(PROGRESS_EVERY) {
        tell(total);
    }
    results.into_iter().flatten().collect()
}

/// Cached waiting changes as loaded changes (they were verified when first read).
pub(super) fn pending(waiting: &[Pending]) -> Vec<Loaded> {
    waiting
        .iter()
        .filter_map(|p| {
            let change = Change::from_bytes(p.change.to_vec()).ok()?;
            Some(Loaded::new(p.path.clone(), p.device.clone(), change))
        })
        .collect()
}
