//! Packing: a device folds its OWN op files into packs (docs/FORMAT.md §17), so the folder
//! holds a few files per device instead of one per change, with no need to be alone.
//!
//! 1. **Pack.** Runs of this device's loose op files with consecutive seqs, `pack_size` at a
//!    time, become one pack each. A copy of the pack is kept in local state first, then the
//!    pack is published like any file (temp, fsync, rename, fsync the folder). Nothing is
//!    deleted yet: readers see one op file whether it is loose, packed, or both.
//! 2. **Delete the loose files** a pack holds only once the pack in the folder reads back
//!    whole and either every other device's latest heartbeat includes the pack's last
//!    change (they have all of it), or the pack is older than [`PACK_GRACE_SECS`] (a device
//!    that never beats must not keep them forever). Another device's files are never touched.
//! 3. **Keep the copy** until every other device has the pack's changes, or a snapshot folds
//!    them, or [`crate::RETENTION_SECS`] passed with the pack in the folder: a pack the
//!    folder loses meanwhile is published again, byte for byte, by the next packing.
//!
//! ```text
//! STATE/stores/<store id>/packs/<actor>/<name>.pack          kept copy, loose files may remain
//! STATE/stores/<store id>/packs/<actor>/<name>.pack.settled  kept copy, loose files deleted
//! STATE/stores/<store id>/packs/through                      "<actor> <seq>": packing checked
//!                                                             this actor up to this seq
//! ```

use std::collections::HashSet;
use std::path::Path;

use automerge::{Change, ChangeHash};
use serde::Serialize;

use crate::folder::scan::{self, OpEntry, Scan};
use crate::format::names;
use crate::format::{opfile, pack};
use crate::fs;
use crate::merged::MergedState;

/// Changes per pack, and the loose op files a device lets pile up before it packs.
pub const DEFAULT_PACK_SIZE: usize = 256;
/// Environment variable that sets the pack size (see [`crate::Options::pack_size`]).
pub const PACK_SIZE_ENV: &str = "CRDTDIR_PACK_SIZE";
/// A pack's loose files are deleted once every other device has its changes, or once it is
/// this old (seconds: a day).
pub const PACK_GRACE_SECS: u64 = 24 * 3600;

pub(crate) const SETTLED: &str = ".settled";

/// What a packing did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PackOutcome {
    /// Packs written now (paths in the store): of loose op files, and bigger packs that
    /// fold packs ([`REPACK_FAN`] at a time).
    pub packs: Vec<String>,
    /// Loose op files packed now.
    pub packed: usize,
    /// Loose op files of this device deleted: a pack in the folder holds each of them.
    pub deleted: usize,
    /// Loose op files of this device a pack holds, kept until every other device has their
    /// changes or the grace period passes.
    pub kept_loose: usize,
    /// This device's packs the folder had lost, published again.
    pub republished: Vec<String>,
    /// This device's packs folded into bigger packs now (written among `packs`).
    pub folded_packs: usize,
    /// This device's packs deleted: a bigger pack of its own holds all they held.
    pub deleted_packs: usize,
}

/// What packing would do now ([`Store::pack_plan`](crate::Store::pack_plan)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PackPlan {
    /// New packs of this device's loose op files.
    pub new_packs: usize,
    /// Loose op files they take.
    pub packed: usize,
    /// Those files' bytes.
    pub packed_bytes: u64,
    /// This device's loose op files that stay loose (a run of one, a change not applied or
    /// rebased).
    pub left_loose: usize,
    /// This device's packs in the folder that fold into bigger packs.
    pub folds: usize,
    /// The bigger packs they make.
    pub bigger_packs: usize,
    /// Loose op files a pack in the folder holds that may go now.
    pub deletable_loose: usize,
    /// Loose op files a pack holds that stay until every other device has their changes
    /// (or the grace period passes).
    pub kept_loose: usize,
    /// This device's packs the folder lost, to publish again (paths in the store).
    pub republish: Vec<String>,
    /// The other devices (by name) whose latest heartbeat lacks some of this device's
    /// changes: they hold loose files back.
    pub waiting_for: Vec<String>,
}

/// Which runs become packs./// Which runs become packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Every run of two or more (`crdtdir pack`).
    All,
    /// Only full packs (automatic packing).
    Full,
    /// No new pack: only the upkeep of existing ones (automatic packing is off).
    Existing,
}

/// One kept copy of this device's pack.
pub(crate) struct Kept {
    pub(crate) actor: String,
    /// The pack's file name.
    pub(crate) name: String,
    pub(crate) file: crate::local::kept::KeptFile,
    pub(crate) settled: bool,
}

impl Kept {
    pub(crate) fn rel(&self) -> String {
        crate::folder::layout::pack_rel(&self.actor, &self.name)
    }

    /// Its bytes, if they still match the hash in its name.
    pub(crate) fn bytes(&self) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.file.path()).ok()?;
        let (first, last, _) = pack::parse_name(&self.name)?;
        (pack::file_name(first, last, &bytes) == self.name).then_some(bytes)
    }
}

/// The kept copies of one store's packs on this device.
pub(crate) fn kept_copies(dir: &Path) -> Vec<Kept> {
    let mut out = Vec::new();
    for (actor, file) in crate::folder::actor_files(dir) {
        let file_name = file.file_name().to_string_lossy().into_owned();
        let (name, settled) = match file_name.strip_suffix(SETTLED) {
            Some(name) => (name.to_string(), true),
            None => (file_name, false),
        };
        if pack::parse_name(&name).is_some() {
            out.push(Kept {
                actor,
                name,
                file: crate::local::kept::KeptFile::new(file.path()),
                settled,
            });
        }
    }
    out.sort_by(|a, b| (&a.actor, &a.name).cmp(&(&b.actor, &b.name)));
    out
}

/// What one packing learns once and asks often: whether every other device has a change
/// (by their latest beats: read lazily, once, since it walks the history), and whether a
/// pack in the folder reads back whole (each pack read once).
pub(crate) struct Acks<'a> {
    pub(crate) source: crate::folder::Source<'a>,
    pub(crate) state: &'a MergedState,
    /// The changes some other device's latest beat lacks (`None`: no other device beats).
    pub(crate) unmerged_by_some: &'a dyn Fn() -> Option<HashSet<ChangeHash>>,
    pub(crate) unmerged: std::cell::OnceCell<Option<HashSet<ChangeHash>>>,
    pub(crate) read: std::cell::RefCell<std::collections::HashMap<String, Option<ChangeHash>>>,
}

impl<'a> Acks<'a> {
    pub(crate) fn new(
        source: crate::folder::Source<'a>,
        state: &'a MergedState,
        unmerged_by_some: &'a dyn Fn() -> Option<HashSet<ChangeHash>>,
    ) -> Acks<'a> {
        Acks {
            source,
            state,
            unmerged_by_some,
            unmerged: Default::default(),
            read: Default::default(),
        }
    }

    /// The last change of a pack in the folder that reads back whole ([`read_back`]).
    pub(crate) fn read_back(&self, listing: &scan::PackListing) -> Option<ChangeHash> {
        if let Some(known) = self.read.borrow().get(&listing.rel) {
            return *known;
        }
        let last = read_back(&self.source, listing).ok();
        self.read.borrow_mut().insert(listing.rel.clone(), last);
        last
    }

    /// True when some other device beats and every other device's latest beat includes
    /// `hash` (so all it depends on).
    pub(crate) fn everyone_has(&self, hash: &ChangeHash) -> bool {
        let unmerged = self.unmerged.get_or_init(|| (self.unmerged_by_some)());
        unmerged.as_ref().is_some_and(|u| {
            self.state.doc.get_change_meta_by_hash(hash).is_some() && !u.contains(hash)
        })
    }
}

/// A pack's bytes, read back whole: every entry verified, its name matching its bytes.
/// Returns the Automerge hash of its last change.
pub(crate) fn read_back(
    store: &crate::folder::Source<'_>,
    listing: &scan::PackListing,
) -> std::result::Result<ChangeHash, String> {
    let bytes = store.folder.read(&listing.rel).map_err(|e| e.to_string())?;
    let name = listing.rel.rsplit('/').next().unwrap_or_default();
    if pack::file_name(listing.first, listing.last, &bytes) != name {
        return Err("its bytes do not match its name".into());
    }
    let index = pack::decode_index(&bytes).map_err(|e| e.to_string())?;
    let mut last = None;
    for row in &index.rows {
        last = Some((row.seq, pack::entry(&bytes, row)?));
    }
    let (seq, entry) = last.ok_or("empty pack")?;
    let plain = store
        .open("op", &crate::seal::context(&listing.actor, seq), entry)
        .map_err(|(_, r)| r)?;
    let envelope = opfile::decode(&plain).map_err(|e| e.to_string())?;
    let change = Change::from_bytes(envelope.change).map_err(|e| e.to_string())?;
    Ok(change.hash())
}

/// Packs fold into bigger ones this many at a time.
pub const REPACK_FAN: usize = 16;

/// True when a snapshot folds every entry of `actor`'s pack `rows` (`covered`: the op files
/// the folder's valid snapshots fold).
pub(crate) fn all_covered(actor: &str, rows: &[pack::Row], covered: &HashSet<&str>) -> bool {
    rows.iter().all(|r| {
        let name = names::op_name_with_hash(r.seq, &r.name_hash());
        covered.contains(crate::folder::op_rel(actor, &name).as_str())
    })
}

/// True when pack `q` holds every entry of pack `p`, byte for byte (seq and BLAKE3 hash),
/// and more: `p` is superseded. A range of seqs is never proof: a cloned disk packs other
/// changes under the same seqs, and those packs hold the other branch of a fork.
pub(crate) fn holds(q: &scan::PackListing, p: &scan::PackListing) -> bool {
    if q.rel == p.rel || q.first > p.first || p.last > q.last || q.rows.len() <= p.rows.len() {
        return false;
    }
    let entries: HashSet<(u64, &[u8; 32])> = q.rows.iter().map(|r| (r.seq, &r.hash)).collect();
    p.rows.iter().all(|r| entries.contains(&(r.seq, &r.hash)))
}

/// `actor`'s packs in the folder that no bigger pack of its holds, by first seq.
pub(crate) fn unsuperseded<'a>(scan: &'a Scan, actor: &str) -> Vec<&'a scan::PackListing> {
    let mine: Vec<&scan::PackListing> = scan.packs.iter().filter(|p| p.actor == actor).collect();
    let mut live: Vec<&scan::PackListing> = mine
        .iter()
        .filter(|p| !mine.iter().any(|q| holds(q, p)))
        .copied()
        .collect();
    live.sort_by_key(|p| (p.first, p.last));
    live
}

/// Groups of `fan` consecutive packs (by seq) that each hold exactly `size * fan^k`
/// changes, for one `k`.
pub(crate) fn repack_groups<'a>(
    packs: &[&'a scan::PackListing],
    size: usize,
    fan: usize,
) -> Vec<Vec<&'a scan::PackListing>> {
    let levelled = |n: usize| {
        let mut level = size;
        while level < n {
            level = level.saturating_mul(fan);
        }
        level == n
    };
    let mut groups = Vec::new();
    let mut run: Vec<&scan::PackListing> = Vec::new();
    for &p in packs {
        let continues = run
            .last()
            .is_some_and(|l| l.last + 1 == p.first && l.rows.len() == p.rows.len());
        if !continues {
            run.clear();
        }
        if levelled(p.rows.len()) {
            run.push(p);
        }
        if run.len() == fan {
            groups.push(std::mem::take(&mut run));
        }
    }
    groups
}

/// The runs of consecutive seqs among `entries` (one actor's, sorted by seq) that `take`
/// accepts. A seq listed twice (a fork) ends a run and is never packed.
pub(crate) fn runs<'a>(
    entries: &[&'a OpEntry],
    take: impl Fn(&OpEntry) -> bool,
) -> Vec<Vec<&'a OpEntry>> {
    let mut out: Vec<Vec<&OpEntry>> = Vec::new();
    let mut current: Vec<&OpEntry> = Vec::new();
    for (i, &o) in entries.iter().enumerate() {
        let forked = entries.get(i + 1).is_some_and(|n| n.seq == o.seq)
            || i.checked_sub(1).is_some_and(|p| entries[p].seq == o.seq);
        let follows = current.last().is_none_or(|l| l.seq + 1 == o.seq);
        if !take(o) || forked || !follows {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            if !take(o) || forked {
                continue;
            }
        }
        current.push(o);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Packs every run of `actor`'s loose op files in the store folder at `store` into packs of
/// `size`, folds the packs [`REPACK_FAN`] at a time as a device does, and deletes what the
/// packs hold: for benchmarks and tools that build stores file by file. It skips every
/// safety rule of [`Store::pack`] (other devices' acknowledgements, the grace period, the
/// kept copy): stores pack their own files. Returns the packs left.
#[doc(hidden)]
pub fn pack_folder_actor(store: &Path, actor: &str, size: usize) -> std::io::Result<usize> {
    let size = size.max(2);
    let publish = |files: &[(u64, Vec<u8>)]| -> std::io::Result<()> {
        let refs: Vec<(u64, &[u8])> = files.iter().map(|(s, b)| (*s, b.as_slice())).collect();
        let bytes = pack::encode(actor, &refs);
        let name = pack::file_name(files[0].0, files[files.len() - 1].0, &bytes);
        let dir = crate::folder::layout::actor_packs(store, actor);
        fs::publish(fs::stage(&dir, actor, &bytes)?, &dir.join(name))
    };
    let folder = crate::folders::Local::new(store);
    crate::folder::layout::ensure_feature(&folder, actor, pack::FEATURE, b"packs\n")?;
    let scan = scan::scan(&folder, None);
    let mine: Vec<&OpEntry> = scan
        .ops
        .iter()
        .filter(|o| o.actor() == actor && o.loose && o.packed.is_none())
        .collect();
    for run in runs(&mine, |_| true) {
        for chunk in run.chunks(size).filter(|c| c.len() >= 2) {
            let files: Vec<(u64, Vec<u8>)> = chunk
                .iter()
                .map(|e| Ok((e.seq, std::fs::read(store.join(&e.rel))?)))
                .collect::<std::io::Result<_>>()?;
            publish(&files)?;
            for e in chunk {
                fs::remove(store.join(&e.rel))?;
            }
        }
    }
    loop {
        let scan = scan::scan(&crate::folders::Local::new(store), None);
        let groups = repack_groups(&unsuperseded(&scan, actor), size, REPACK_FAN);
        if groups.is_empty() {
            return Ok(unsuperseded(&scan, actor).len());
        }
        for group in groups {
            let mut files = Vec::new();
            for p in &group {
                let bytes = std::fs::read(store.join(&p.rel))?;
                for row in &p.rows {
                    let entry = pack::entry(&bytes, row).map_err(std::io::Error::other)?;
                    files.push((row.seq, entry.to_vec()));
                }
            }
            publish(&files)?;
            for p in &group {
                fs::remove(store.join(&p.rel))?;
            }
        }
    }
}

/// Packs `actor`'s loose op files of documents beside the root one in the store folder at
/// `store` into documents' packs of `size` (docs/FORMAT.md §18) and deletes what the packs
/// hold: for benchmarks and tools that build stores file by file. It skips every safety rule
/// of [`Store::pack`] (the grace period, the kept copy): stores pack their own files.
/// Returns the packs written.
#[doc(hidden)]
pub fn pack_folder_docs_actor(store: &Path, actor: &str, size: usize) -> std::io::Result<usize> {
    let dir = crate::folder::layout::actor_ops(store, actor);
    let mut loose: Vec<(String, u64, String)> = std::fs::read_dir(&dir)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let op = names::parse_op_name(&name)?;
            Some((op.doc?.to_string(), op.seq, name))
        })
        .collect();
    loose.sort();
    let mut written = 0;
    for chunk in loose.chunks(size.max(2)) {
        let files: Vec<Vec<u8>> = chunk
            .iter()
            .map(|(_, _, name)| std::fs::read(dir.join(name)))
            .collect::<std::io::Result<_>>()?;
        let refs: Vec<(&str, u64, &[u8])> = chunk
            .iter()
            .zip(&files)
            .map(|((doc, seq, _), b)| (doc.as_str(), *seq, b.as_slice()))
            .collect();
        let bytes = pack::encode_docs(actor, &refs);
        let packs = crate::folder::layout::actor_packs(store, actor);
        fs::publish(
            fs::stage(&packs, actor, &bytes)?,
            &packs.join(pack::docs_file_name(&bytes)),
        )?;
        for (_, _, name) in chunk {
            fs::remove(dir.join(name))?;
        }
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs are cut at gaps, at forked seqs (never packed) and at entries not taken.
    #[test]
    pub(crate) fn runs_are_consecutive_unforked_and_taken() {
        let entry = |seq: u64, hash: char| {
            let name = names::op_name_with_hash(seq, &hash.to_string().repeat(32));
            OpEntry::parse(&crate::folder::op_rel("00ff", &name)).unwrap()
        };
        let entries = [
            entry(1, 'a'),
            entry(2, 'a'),
            entry(3, 'a'),
            entry(5, 'a'),
            entry(6, 'a'),
            entry(7, 'a'),
            entry(7, 'b'),
            entry(8, 'a'),
            entry(9, 'a'),
            entry(10, 'c'),
            entry(11, 'a'),
        ];
        let refs: Vec<&OpEntry> = entries.iter().collect();
        let seqs = |runs: Vec<Vec<&OpEntry>>| -> Vec<Vec<u64>> {
            runs.iter()
                .map(|r| r.iter().map(|e| e.seq).collect())
                .collect()
        };
        assert_eq!(
            seqs(runs(&refs, |_| true)),
            [vec![1, 2, 3], vec![5, 6], vec![8, 9, 10, 11]]
        );
        assert_eq!(
            seqs(runs(&refs, |e| e.hash() != "c".repeat(32))),
            [vec![1, 2, 3], vec![5, 6], vec![8, 9], vec![11]]
        );
    }
}
