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

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use automerge::{Change, ChangeHash};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::fault;
use crate::folder::scan::{self, OpEntry, Scan};
use crate::format::marker::FEATURES_DIR;
use crate::format::names;
use crate::format::{opfile, pack};
use crate::fs;
use crate::merged::MergedState;
use crate::store::Store;

/// Changes per pack, and the loose op files a device lets pile up before it packs.
pub const DEFAULT_PACK_SIZE: usize = 256;
/// Environment variable that sets the pack size (see [`crate::Options::pack_size`]).
pub const PACK_SIZE_ENV: &str = "CRDTDIR_PACK_SIZE";
/// A pack's loose files are deleted once every other device has its changes, or once it is
/// this old (seconds: a day).
pub const PACK_GRACE_SECS: u64 = 24 * 3600;

const SETTLED: &str = ".settled";

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

/// Which runs become packs.
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
struct Kept {
    actor: String,
    /// The pack's file name.
    name: String,
    path: PathBuf,
    settled: bool,
}

impl Kept {
    fn rel(&self) -> String {
        format!("{}/{}/{}", pack::PACKS_DIR, self.actor, self.name)
    }

    fn age_secs(&self) -> u64 {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or(0, |d| d.as_secs())
    }

    /// Its bytes, if they still match the hash in its name.
    fn bytes(&self) -> Option<Vec<u8>> {
        let bytes = std::fs::read(&self.path).ok()?;
        let (first, last, _) = pack::parse_name(&self.name)?;
        (pack::file_name(first, last, &bytes) == self.name).then_some(bytes)
    }
}

/// The kept copies of one store's packs on this device.
fn kept_copies(dir: &Path) -> Vec<Kept> {
    let mut out = Vec::new();
    for (actor, file) in crate::local::outbox::actor_files(dir) {
        let file_name = file.file_name().to_string_lossy().into_owned();
        let (name, settled) = match file_name.strip_suffix(SETTLED) {
            Some(name) => (name.to_string(), true),
            None => (file_name, false),
        };
        if pack::parse_name(&name).is_some() {
            out.push(Kept {
                actor,
                name,
                path: file.path(),
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
struct Acks<'a> {
    store: &'a Store,
    state: &'a MergedState,
    unmerged: std::cell::OnceCell<Option<HashSet<ChangeHash>>>,
    read: std::cell::RefCell<std::collections::HashMap<String, Option<ChangeHash>>>,
}

impl<'a> Acks<'a> {
    fn new(store: &'a Store, state: &'a MergedState) -> Acks<'a> {
        Acks {
            store,
            state,
            unmerged: Default::default(),
            read: Default::default(),
        }
    }

    /// The last change of a pack in the folder that reads back whole ([`read_back`]).
    fn read_back(&self, listing: &scan::PackListing) -> Option<ChangeHash> {
        if let Some(known) = self.read.borrow().get(&listing.rel) {
            return *known;
        }
        let last = read_back(&self.store.source(), listing).ok();
        self.read.borrow_mut().insert(listing.rel.clone(), last);
        last
    }

    /// True when some other device beats and every other device's latest beat includes
    /// `hash` (so all it depends on).
    fn everyone_has(&self, hash: &ChangeHash) -> bool {
        let unmerged = self
            .unmerged
            .get_or_init(|| self.store.unmerged_by_some(self.state));
        unmerged.as_ref().is_some_and(|u| {
            self.state.doc.get_change_meta_by_hash(hash).is_some() && !u.contains(hash)
        })
    }
}

/// A pack's bytes, read back whole: every entry verified, its name matching its bytes.
/// Returns the Automerge hash of its last change.
fn read_back(
    store: &crate::folder::Source<'_>,
    listing: &scan::PackListing,
) -> std::result::Result<ChangeHash, String> {
    let bytes = std::fs::read(store.join(&listing.rel)).map_err(|e| e.to_string())?;
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

impl Store {
    /// Packs this device's loose op files (every run of two or more consecutive changes, at
    /// most the pack size per pack), deletes the loose files its packs hold once that is
    /// safe, and publishes again any of its packs the folder lost. Never touches another
    /// device's files. Writes do this on their own once the pack size is reached.
    pub fn pack(&self) -> Result<PackOutcome> {
        self.pack_with(Mode::All)
    }

    fn packs_dir(&self) -> PathBuf {
        self.inner
            .state
            .store_dir(&self.inner.marker.store_id)
            .join("packs")
    }

    /// After a write: packs when this device has a pack's worth of loose op files, and
    /// deletes packed loose files when a heartbeat went out (other devices' beats are then
    /// worth reading again).
    pub(crate) fn maintain_packs(&self, beat_published: bool) -> Result<Option<PackOutcome>> {
        let size = self.inner.pack_size;
        if self.inner.read_only {
            return Ok(None);
        }
        let Some(record) = self.inner.state.read_record(&self.inner.marker.store_id) else {
            return Ok(None);
        };
        let through = self.packed_through(&record.actor);
        let due = size > 0 && record.seq.saturating_sub(through) >= size as u64;
        // Kept copies are few: those of packs some other device may still lack.
        let kept = kept_copies(&self.packs_dir());
        // A pack of this device the folder lost is put back at once.
        let lost = || {
            kept.iter()
                .any(|k| !self.inner.root.join(k.rel()).is_file())
        };
        // When a beat went out (at most once a minute), loose files that other devices now
        // have can go.
        let unsettled = || {
            kept.iter()
                .any(|k| !k.settled && k.age_secs() < crate::RETENTION_SECS as u64)
        };
        if !(due || lost() || (beat_published && unsettled())) {
            return Ok(None);
        }
        let mode = if size == 0 {
            Mode::Existing
        } else {
            Mode::Full
        };
        self.pack_with(mode).map(Some)
    }

    /// The seq up to which packing has checked `actor` (its packs, or a packing that found
    /// too few loose files).
    fn packed_through(&self, actor: &str) -> u64 {
        let mut cached = self
            .inner
            .packed_through
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((_, seq)) = cached.as_ref().filter(|(a, _)| a == actor) {
            return *seq;
        }
        let recorded = std::fs::read_to_string(self.packs_dir().join("through"))
            .ok()
            .and_then(|t| {
                let (a, seq) = t.trim().split_once(' ')?;
                (a == actor).then(|| seq.parse().ok()).flatten()
            });
        let in_folder = std::fs::read_dir(self.inner.root.join(pack::PACKS_DIR).join(actor))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| pack::parse_name(&e.file_name().to_string_lossy()).map(|p| p.1))
            .max();
        let seq = recorded.unwrap_or(0).max(in_folder.unwrap_or(0));
        *cached = Some((actor.to_string(), seq));
        seq
    }

    fn set_packed_through(&self, actor: &str, seq: u64) {
        let dir = self.packs_dir();
        let _ = fs::create_private_dir(&dir).and_then(|()| {
            fs::replace_local(&dir.join("through"), format!("{actor} {seq}\n").as_bytes())
        });
        *self
            .inner
            .packed_through
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((actor.to_string(), seq));
    }

    /// Changes per pack: the option, or the default when automatic packing is off.
    pub(crate) fn pack_size_or_default(&self) -> usize {
        match self.inner.pack_size {
            0 => DEFAULT_PACK_SIZE,
            n => n.max(2),
        }
    }

    pub(crate) fn pack_with(&self, mode: Mode) -> Result<PackOutcome> {
        self.check_writable()?;
        let size = self.pack_size_or_default();
        let _lock = self.inner.state.lock(&self.inner.marker.store_id)?;
        // A watcher's merge in flight finishes first (as for a write).
        let _gate = self.inner.gate.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = PackOutcome::default();
        let Some(record) = self.inner.state.read_record(&self.inner.marker.store_id) else {
            return Ok(out);
        };
        let own: Vec<String> = std::iter::once(record.actor.clone())
            .chain(record.retired.iter().cloned())
            .collect();
        let kept_dir = self.packs_dir();
        self.remove_stale_temps(&record);
        let mut scan = scan::scan(&self.inner.root);
        let (state, _, _) = self.merged(&scan, false);

        // 1. This device's packs the folder lost come back.
        out.republished = self.republish_packs(&scan, &state, &kept_dir)?;

        // 2. New packs.
        let applied: HashSet<&str> = state.files.iter().map(String::as_str).collect();
        let rebased: HashSet<&str> = state.rebased.iter().map(|r| r.path.as_str()).collect();
        for actor in &own {
            let mine: Vec<&OpEntry> = scan.ops.iter().filter(|o| o.actor() == actor).collect();
            let mut loose_left = 0u64;
            for run in runs(&mine, |o| {
                o.loose
                    && o.packed.is_none()
                    && applied.contains(o.rel.as_str())
                    && !rebased.contains(o.rel.as_str())
            }) {
                for chunk in run.chunks(size) {
                    let skip = match mode {
                        Mode::All => chunk.len() < 2,
                        Mode::Full => chunk.len() < size,
                        Mode::Existing => true,
                    };
                    if skip {
                        loose_left += chunk.len() as u64;
                        continue;
                    }
                    if let Some(rel) = self.write_pack(actor, chunk, &kept_dir)? {
                        out.packed += chunk.len();
                        out.packs.push(rel);
                    }
                }
            }
            if actor == &record.actor {
                self.set_packed_through(actor, record.seq.saturating_sub(loose_left));
            }
        }
        if !out.packs.is_empty() || !out.republished.is_empty() {
            scan = scan::scan(&self.inner.root);
        }
        // 2b. Packs fold into bigger packs, REPACK_FAN at a time.
        if mode != Mode::Existing {
            let mut repacked = false;
            for actor in &own {
                let (written, folded) = self.repack(&scan, actor, size, &kept_dir)?;
                repacked |= !written.is_empty();
                out.packs.extend(written);
                out.folded_packs += folded;
            }
            if repacked {
                scan = scan::scan(&self.inner.root);
            }
        }

        // 3. Loose files the packs hold, when every other device has them or the grace passed.
        let kept = kept_copies(&kept_dir);
        let acks = Acks::new(self, &state);
        let (deleted, kept_loose) = self.delete_packed_loose(&scan, &acks, &own, &kept)?;
        out.deleted = deleted;
        out.kept_loose = kept_loose;
        out.deleted_packs = self.delete_superseded(&scan, &acks, &own, &kept)?;
        if deleted > 0 || out.deleted_packs > 0 {
            scan = scan::scan(&self.inner.root);
        }

        // 4. Kept copies settle, then go.
        self.settle_copies(&scan, &acks, &kept)?;
        Ok(out)
    }

    /// Writes one pack of `chunk` (consecutive seqs of `actor`, loose files): the kept copy
    /// first, then the pack in the folder. `None` when a loose file no longer reads as
    /// listed (the next packing tries again).
    fn write_pack(
        &self,
        actor: &str,
        chunk: &[&OpEntry],
        kept_dir: &Path,
    ) -> Result<Option<String>> {
        let mut files = Vec::with_capacity(chunk.len());
        for entry in chunk {
            match std::fs::read(self.inner.root.join(&entry.rel)) {
                Ok(bytes) if names::file_hash_hex(&bytes) == entry.hash() => {
                    files.push((entry.seq, bytes))
                }
                _ => return Ok(None),
            }
        }
        self.publish_pack(actor, &files, kept_dir).map(Some)
    }

    /// Publishes the pack of `files` (consecutive seqs of `actor`, op file bytes): the kept
    /// copy first, then the pack in the folder. Returns its path in the store.
    fn publish_pack(
        &self,
        actor: &str,
        files: &[(u64, Vec<u8>)],
        kept_dir: &Path,
    ) -> Result<String> {
        let refs: Vec<(u64, &[u8])> = files.iter().map(|(s, b)| (*s, b.as_slice())).collect();
        let bytes = pack::encode(actor, &refs);
        let (first, last) = (files[0].0, files[files.len() - 1].0);
        let name = pack::file_name(first, last, &bytes);
        self.ensure_packs_feature(actor)?;
        let copy_dir = kept_dir.join(actor);
        fs::create_private_dir_durably(&copy_dir)
            .and_then(|()| fs::replace_local(&copy_dir.join(&name), &bytes))
            .and_then(|()| fault::at("pack-kept"))
            .map_err(Error::io(&copy_dir))?;
        let dir = self.inner.root.join(pack::PACKS_DIR).join(actor);
        let staged = fs::stage(&dir, actor, &bytes).map_err(Error::io(&dir))?;
        let target = dir.join(&name);
        fs::publish(staged, &target)
            .and_then(|()| fault::at("pack-published"))
            .map_err(Error::io(&target))?;
        Ok(format!("{}/{actor}/{name}", pack::PACKS_DIR))
    }

    /// Folds runs of [`REPACK_FAN`] consecutive packs of one size (the pack size times a
    /// power of the fan) into one pack: the file count stays logarithmic in a device's
    /// history. The packs folded are deleted later, like loose files
    /// ([`Store::delete_superseded`]). Returns the packs written and how many they fold.
    fn repack(
        &self,
        scan: &Scan,
        actor: &str,
        size: usize,
        kept_dir: &Path,
    ) -> Result<(Vec<String>, usize)> {
        // Packs whose seqs overlap another's hold two branches of a fork (a cloned disk):
        // they are not folded, so a bigger pack never mixes branches.
        let all = unsuperseded(scan, actor);
        let live: Vec<&scan::PackListing> = all
            .iter()
            .filter(|p| {
                !all.iter()
                    .any(|q| q.rel != p.rel && q.first <= p.last && p.first <= q.last)
            })
            .copied()
            .collect();
        let mut written = Vec::new();
        let mut folded = 0;
        for group in repack_groups(&live, size, self.inner.repack_fan) {
            let mut files = Vec::new();
            for p in &group {
                let Ok(bytes) = std::fs::read(self.inner.root.join(&p.rel)) else {
                    return Ok((written, folded));
                };
                for row in &p.rows {
                    match pack::entry(&bytes, row) {
                        Ok(entry) => files.push((row.seq, entry.to_vec())),
                        // A damaged pack is not folded: its owner's copy may replace it.
                        Err(_) => return Ok((written, folded)),
                    }
                }
            }
            written.push(self.publish_pack(actor, &files, kept_dir)?);
            folded += group.len();
        }
        Ok((written, folded))
    }

    /// Deletes this device's packs that a bigger pack of its own holds whole, once that pack
    /// reads back whole and every other device has its changes or the grace period passed.
    /// The kept copy goes first (a pack in the folder without one is harmless; the other
    /// way round it would be published again). Returns how many went.
    fn delete_superseded(
        &self,
        scan: &Scan,
        acks: &Acks<'_>,
        own: &[String],
        kept: &[Kept],
    ) -> Result<usize> {
        let mut deleted = 0;
        for actor in own {
            let mine: Vec<&scan::PackListing> =
                scan.packs.iter().filter(|p| &p.actor == actor).collect();
            for p in &mine {
                // The biggest holder: it is not deleted in this pass.
                let holder = mine
                    .iter()
                    .filter(|q| holds(q, p))
                    .max_by_key(|q| q.rows.len());
                let Some(holder) = holder else {
                    continue;
                };
                let Some(last) = acks.read_back(holder) else {
                    continue;
                };
                let aged = kept
                    .iter()
                    .find(|k| k.rel() == holder.rel)
                    .is_some_and(|k| k.age_secs() >= PACK_GRACE_SECS);
                if !(aged || acks.everyone_has(&last)) {
                    continue;
                }
                for k in kept.iter().filter(|k| k.rel() == p.rel) {
                    fs::remove(&k.path).map_err(Error::io(&k.path))?;
                }
                let path = self.inner.root.join(&p.rel);
                let _ = fs::remove(&path);
                deleted += 1;
            }
            let _ = fs::sync_dir(&self.inner.root.join(pack::PACKS_DIR).join(actor));
        }
        Ok(deleted)
    }

    /// `features/packs`, before the first pack: a build that cannot read packs must not
    /// write (it would take packed changes for lost ones).
    fn ensure_packs_feature(&self, owner: &str) -> Result<()> {
        let path = self.inner.root.join(FEATURES_DIR).join(pack::FEATURE);
        if path.exists() {
            return Ok(());
        }
        let dir = self.inner.root.join(FEATURES_DIR);
        let note = b"packs in packs/: a build that cannot read them must not write\n";
        let staged = fs::stage(&dir, owner, note).map_err(Error::io(&dir))?;
        fs::publish_new(staged, &path).map_err(Error::io(&path))?;
        Ok(())
    }

    /// Publishes again the kept packs the folder lost, unless a snapshot folds all they hold.
    fn republish_packs(
        &self,
        scan: &Scan,
        state: &MergedState,
        kept_dir: &Path,
    ) -> Result<Vec<String>> {
        let listed: HashSet<&str> = scan.packs.iter().map(|p| p.rel.as_str()).collect();
        let covered: HashSet<&str> = state.covered.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for kept in kept_copies(kept_dir) {
            let rel = kept.rel();
            if listed.contains(rel.as_str()) {
                continue;
            }
            let Some(bytes) = kept.bytes() else {
                continue;
            };
            let Ok(index) = pack::decode_index(&bytes) else {
                continue;
            };
            let folded = all_covered(&kept.actor, &index.rows, &covered);
            if folded {
                continue;
            }
            let dir = self.inner.root.join(pack::PACKS_DIR).join(&kept.actor);
            let target = dir.join(&kept.name);
            // Under its name but not read by the scan: a damaged copy (a torn delivery, bit
            // rot) that the right bytes replace; a sound one (unreadable for now) stays.
            let damaged = match std::fs::read(&target) {
                Ok(there) => there != bytes,
                Err(e) => e.kind() != std::io::ErrorKind::NotFound,
            };
            if target.exists() && !damaged {
                continue;
            }
            let staged = fs::stage(&dir, &kept.actor, &bytes).map_err(Error::io(&dir))?;
            if damaged {
                fs::publish_over_damaged(staged, &target)
            } else {
                fs::publish(staged, &target)
            }
            .and_then(|()| fault::at("republished"))
            .map_err(Error::io(&target))?;
            out.push(rel);
        }
        Ok(out)
    }

    /// Deletes this device's loose op files that a verified pack in the folder holds, pack
    /// by pack, when every other device has the pack's changes or the pack is older than
    /// the grace period. Returns (deleted, kept).
    fn delete_packed_loose(
        &self,
        scan: &Scan,
        acks: &Acks<'_>,
        own: &[String],
        kept: &[Kept],
    ) -> Result<(usize, usize)> {
        let mut by_pack: BTreeMap<&str, Vec<&OpEntry>> = BTreeMap::new();
        for o in &scan.ops {
            if let Some(p) = o.packed.as_ref().filter(|_| o.loose) {
                if own.iter().any(|a| a == o.actor()) {
                    by_pack.entry(&*p.pack).or_default().push(o);
                }
            }
        }
        if by_pack.is_empty() {
            return Ok((0, 0));
        }
        let (mut deleted, mut kept_loose) = (0, 0);
        for (pack_rel, entries) in by_pack {
            let Some(listing) = scan.packs.iter().find(|p| p.rel == pack_rel) else {
                continue;
            };
            let Some(last) = acks.read_back(listing) else {
                kept_loose += entries.len();
                continue;
            };
            let everyone_has = acks.everyone_has(&last);
            let aged = kept
                .iter()
                .find(|k| k.rel() == pack_rel)
                .is_some_and(|k| k.age_secs() >= PACK_GRACE_SECS);
            if !(everyone_has || aged) {
                kept_loose += entries.len();
                continue;
            }
            for (i, o) in entries.iter().enumerate() {
                let path = self.inner.root.join(&o.rel);
                let _ = fs::remove(&path);
                if i == 0 {
                    fault::at("loose-deleting").map_err(Error::io(&path))?;
                }
            }
            deleted += entries.len();
            let dir = self
                .inner
                .root
                .join(crate::folder::OPS_DIR)
                .join(&listing.actor);
            let _ = fs::sync_dir(&dir);
        }
        Ok((deleted, kept_loose))
    }

    /// A kept copy whose pack no longer has a loose file beside it is settled; a settled
    /// copy goes once every other device has its changes, a snapshot folds them, or it is
    /// older than [`crate::RETENTION_SECS`] with its pack in the folder.
    fn settle_copies(&self, scan: &Scan, acks: &Acks<'_>, kept: &[Kept]) -> Result<()> {
        let loose_packed: HashSet<&str> = scan
            .ops
            .iter()
            .filter(|o| o.loose)
            .flat_map(|o| o.packs().map(|p| &*p.pack))
            .collect();
        let covered: HashSet<&str> = acks.state.covered.iter().map(String::as_str).collect();
        for k in kept {
            let rel = k.rel();
            let listing = scan.packs.iter().find(|p| p.rel == rel);
            // A snapshot folds all it holds: the pack is the snapshot's now (compaction may
            // have deleted it), and the copy has nothing left to give.
            let folded = !covered.is_empty()
                && k.bytes()
                    .and_then(|b| pack::decode_index(&b).ok())
                    .is_some_and(|index| all_covered(&k.actor, &index.rows, &covered));
            if folded {
                let _ = fs::remove(&k.path);
                continue;
            }
            if !k.settled {
                if listing.is_some() && !loose_packed.contains(rel.as_str()) {
                    let settled = k.path.with_file_name(format!("{}{SETTLED}", k.name));
                    std::fs::rename(&k.path, &settled)
                        .and_then(|()| fault::at("pack-settled"))
                        .map_err(Error::io(&k.path))?;
                }
                continue;
            }
            let everyone_has = listing
                .and_then(|l| acks.read_back(l))
                .is_some_and(|last| acks.everyone_has(&last));
            let old = listing.is_some() && k.age_secs() > crate::RETENTION_SECS as u64;
            if everyone_has || old {
                let _ = fs::remove(&k.path);
            }
        }
        Ok(())
    }
}

/// Packs fold into bigger ones this many at a time.
pub const REPACK_FAN: usize = 16;

/// True when a snapshot folds every entry of `actor`'s pack `rows` (`covered`: the op files
/// the folder's valid snapshots fold).
fn all_covered(actor: &str, rows: &[pack::Row], covered: &HashSet<&str>) -> bool {
    rows.iter().all(|r| {
        let name = names::op_name_with_hash(r.seq, &r.name_hash());
        covered.contains(crate::folder::op_rel(actor, &name).as_str())
    })
}

/// True when pack `q` holds every entry of pack `p`, byte for byte (seq and BLAKE3 hash),
/// and more: `p` is superseded. A range of seqs is never proof: a cloned disk packs other
/// changes under the same seqs, and those packs hold the other branch of a fork.
fn holds(q: &scan::PackListing, p: &scan::PackListing) -> bool {
    if q.rel == p.rel || q.first > p.first || p.last > q.last || q.rows.len() <= p.rows.len() {
        return false;
    }
    let entries: HashSet<(u64, &[u8; 32])> = q.rows.iter().map(|r| (r.seq, &r.hash)).collect();
    p.rows.iter().all(|r| entries.contains(&(r.seq, &r.hash)))
}

/// `actor`'s packs in the folder that no bigger pack of its holds, by first seq.
fn unsuperseded<'a>(scan: &'a Scan, actor: &str) -> Vec<&'a scan::PackListing> {
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
fn repack_groups<'a>(
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
fn runs<'a>(entries: &[&'a OpEntry], take: impl Fn(&OpEntry) -> bool) -> Vec<Vec<&'a OpEntry>> {
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
        let dir = store.join(pack::PACKS_DIR).join(actor);
        fs::publish(fs::stage(&dir, actor, &bytes)?, &dir.join(name))
    };
    let features = store.join(FEATURES_DIR);
    if !features.join(pack::FEATURE).exists() {
        fs::publish_new(
            fs::stage(&features, actor, b"packs\n")?,
            &features.join(pack::FEATURE),
        )?;
    }
    let scan = scan::scan(store);
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
        let scan = scan::scan(store);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs are cut at gaps, at forked seqs (never packed) and at entries not taken.
    #[test]
    fn runs_are_consecutive_unforked_and_taken() {
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
