//! The store's packing protocol: this device folds its own loose op files into packs and
//! deletes them only once the packs read back whole and every other device has them (or
//! the grace period passed). The pieces are in `crate::pack`.

use crate::error::{Error, Result};
use crate::fault;
use crate::folder::scan::{self, OpEntry, Scan};
use crate::format::names;
use crate::format::pack;
use crate::fs;
use crate::local::kept::Release;
use crate::local::WriterRecord;
use crate::merged::MergedState;
use crate::pack::{
    all_covered, holds, kept_copies, repack_groups, runs, unsuperseded, Acks, Kept, Mode,
    PackOutcome, PackPlan, DEFAULT_PACK_SIZE, PACK_GRACE_SECS, SETTLED,
};
use crate::store::session::Name;
use crate::store::Store;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Packing's step 2, planned ([`Store::plan_loose`]).
#[derive(Default)]
struct LoosePlan<'s> {
    /// Each new pack: its actor and its loose op files, consecutive seqs.
    chunks: Vec<(String, Vec<&'s OpEntry>)>,
    /// Each actor's loose op files that stay loose (runs too short for `mode`).
    left: Vec<(String, u64)>,
    /// Loose op files not in any pack, of every actor of this device.
    total: usize,
}

impl Store {
    /// Packs this device's loose op files (every run of two or more consecutive changes, at
    /// most the pack size per pack), deletes the loose files its packs hold once that is
    /// safe, and publishes again any of its packs the folder lost. Never touches another
    /// device's files. Writes do this on their own once the pack size is reached.
    pub fn pack(&self) -> Result<PackOutcome> {
        self.whole_store("pack")?;
        self.pack_with(Mode::All)
    }

    /// What [`Store::pack`] would do now, without doing it: nothing is written, deleted or
    /// published, not even a heartbeat. Its packs of loose op files are exactly the ones
    /// `pack` would write; folds count the packs already in the folder that would fold into
    /// bigger ones (new packs may complete another fold); loose files count those a pack in
    /// the folder already holds (the loose files of new packs go later, once every other
    /// device has their changes). Documents beside the root one are not planned.
    pub fn pack_plan(&self) -> Result<PackPlan> {
        self.whole_store("pack")?;
        self.check_unlocked()?;
        let mut plan = PackPlan::default();
        let Some(record) = self.inner.state.read_record() else {
            return Ok(plan);
        };
        let own: Vec<String> = std::iter::once(record.actor.clone())
            .chain(record.retired.iter().cloned())
            .collect();
        let scan = self.scan();
        let (state, _, _) = self.merged(&scan, false);
        let kept_dir = self.packs_dir();
        plan.republish = self
            .lost_packs(&scan, &state, &kept_dir)
            .into_iter()
            .map(|(k, ..)| k.rel())
            .collect();
        let loose = self.plan_loose(&scan, &state, &record, Mode::All);
        for (_, chunk) in &loose.chunks {
            plan.new_packs += 1;
            plan.packed += chunk.len();
            plan.packed_bytes += chunk
                .iter()
                .filter_map(|o| self.inner.folder.stat(&o.rel).ok().flatten()?.len)
                .sum::<u64>();
        }
        plan.left_loose = loose.left.iter().map(|(_, n)| *n as usize).sum();
        let size = self.pack_size_or_default();
        for actor in &own {
            for group in self.plan_repack(&scan, actor, size) {
                plan.bigger_packs += 1;
                plan.folds += group.len();
            }
        }
        let kept = kept_copies(&kept_dir);
        let unmerged_by_some = || self.unmerged_by_some(&state);
        let acks = Acks::new(self.source(), &state, &unmerged_by_some);
        let (go, kept_loose) = self.loose_deletions(&scan, &acks, &own, &kept);
        plan.deletable_loose = go.iter().map(|(_, e)| e.len()).sum();
        plan.kept_loose = kept_loose;
        // Who holds loose files back: the other devices whose latest beat lacks some of this
        // device's changes (read only: nothing is remembered).
        let own_set: HashSet<String> = own.iter().cloned().collect();
        for (actor, _, beat) in crate::folder::live_beats(&self.source()) {
            if !own_set.contains(&actor)
                && !crate::presence::unmerged(&state, &own_set, &beat).is_empty()
            {
                plan.waiting_for.push(beat.device.clone());
            }
        }
        plan.waiting_for.sort();
        plan.waiting_for.dedup();
        Ok(plan)
    }

    fn packs_dir(&self) -> PathBuf {
        self.inner.state.path().join(crate::local::names::PACKS)
    }

    /// After a write: packs when this device has a pack's worth of loose op files, and
    /// deletes packed loose files when a heartbeat went out (other devices' beats are then
    /// worth reading again).
    pub(crate) fn maintain_packs(&self, beat_published: bool) -> Result<Option<PackOutcome>> {
        let size = self.inner.pack_size;
        if self.inner.read_only {
            return Ok(None);
        }
        if self.inner.doc.is_some() {
            return self.count_doc_write();
        }
        let Some(record) = self.inner.state.read_record() else {
            return Ok(None);
        };
        let through = self.packed_through(&record.actor);
        let due = size > 0 && record.seq.saturating_sub(through) >= size as u64;
        // Kept copies are few: those of packs some other device may still lack.
        let kept = kept_copies(&self.packs_dir());
        // A pack of this device the folder lost is put back at once.
        let lost = || kept.iter().any(|k| !self.has_file(&k.rel()));
        // When a beat went out (at most once a minute), loose files that other devices now
        // have can go.
        let unsettled = || kept.iter().any(|k| !k.settled && k.file.within_retention());
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

    /// After a write to a document beside the root one: every pack size of such writes on
    /// this device, the root document's handle packs (documents' packs with it). The count
    /// is a hint in local state (`packs/docs-written`): lost, packing comes a little later.
    fn count_doc_write(&self) -> Result<Option<PackOutcome>> {
        let size = self.inner.pack_size;
        if size == 0 {
            return Ok(None);
        }
        let root = self.for_doc(None);
        let path = root.packs_dir().join(crate::local::names::DOCS_WRITTEN);
        let written = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
            .unwrap_or(0)
            + 1;
        if written < size {
            if let Err(e) = fs::replace_unsynced(&path, written.to_string().as_bytes()) {
                tracing::debug!(error = %e, "the count of document writes was not kept");
            }
            return Ok(None);
        }
        let out = root.pack_with(Mode::Full)?;
        if let Err(e) = fs::replace_unsynced(&path, b"0") {
            tracing::debug!(error = %e, "the count of document writes was not reset");
        }
        Ok(Some(out))
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
        let recorded =
            std::fs::read_to_string(self.packs_dir().join(crate::local::names::PACKED_THROUGH))
                .ok()
                .and_then(|t| {
                    let (a, seq) = t.trim().split_once(' ')?;
                    (a == actor).then(|| seq.parse().ok()).flatten()
                });
        let in_folder = self
            .inner
            .folder
            .list(&crate::folder::layout::actor_packs_rel(actor))
            .into_iter()
            .flatten()
            .filter_map(|e| pack::parse_name(&e.name).map(|p| p.1))
            .max();
        let seq = recorded.unwrap_or(0).max(in_folder.unwrap_or(0));
        *cached = Some((actor.to_string(), seq));
        seq
    }

    fn set_packed_through(&self, actor: &str, seq: u64) {
        let dir = self.packs_dir();
        let noted = fs::create_private_dir(&dir).and_then(|()| {
            fs::replace_local(
                &dir.join(crate::local::names::PACKED_THROUGH),
                format!("{actor} {seq}\n").as_bytes(),
            )
        });
        if let Err(e) = noted {
            // Only costs time: the next packing checks from further back.
            tracing::debug!(error = %e, "how far packing checked was not noted");
        }
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
        let session = self.session(Name::Check)?;
        let size = self.pack_size_or_default();
        // A watcher's merge in flight finishes first (as for a write).
        let _gate = self.inner.memory.gate();
        let mut out = PackOutcome::default();
        let Some(record) = session.record.clone() else {
            return Ok(out);
        };
        let own: Vec<String> = std::iter::once(record.actor.clone())
            .chain(record.retired.iter().cloned())
            .collect();
        let kept_dir = self.packs_dir();
        self.remove_stale_temps(&record);
        let mut scan = self.scan();
        let (state, _, _) = self.merged(&scan, false);

        // 1. This device's packs the folder lost come back.
        out.republished = self.republish_packs(&scan, &state, &kept_dir)?;

        // 2. New packs.
        self.pack_loose(&scan, &state, &record, mode, &kept_dir, &mut out)?;
        if !out.packs.is_empty() || !out.republished.is_empty() {
            scan = self.scan();
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
                scan = self.scan();
            }
        }

        // 3. Loose files the packs hold, when every other device has them or the grace passed.
        let kept = kept_copies(&kept_dir);
        let unmerged_by_some = || self.unmerged_by_some(&state);
        let acks = Acks::new(self.source(), &state, &unmerged_by_some);
        let (deleted, kept_loose) = self.delete_packed_loose(&scan, &acks, &own, &kept)?;
        out.deleted = deleted;
        out.kept_loose = kept_loose;
        out.deleted_packs = self.delete_superseded(&scan, &acks, &own, &kept)?;
        if deleted > 0 || out.deleted_packs > 0 {
            scan = self.scan();
        }

        // 4. Kept copies settle, then go.
        self.settle_copies(&scan, &acks, &kept)?;

        // 5. The documents beside the root one: their own packs.
        self.pack_docs(&own, mode, &kept_dir, &mut out)?;
        Ok(out)
    }

    /// Packing's step 2, planned: the chunks of this device's loose op files that `state`
    /// applied (rebased ones aside) that become packs of the pack size, run by run of
    /// consecutive seqs (`mode` says which chunks), with each actor's loose files left.
    fn plan_loose<'s>(
        &self,
        scan: &'s Scan,
        state: &MergedState,
        record: &WriterRecord,
        mode: Mode,
    ) -> LoosePlan<'s> {
        let size = self.pack_size_or_default();
        let applied: HashSet<&str> = state.files.iter().map(String::as_str).collect();
        let rebased: HashSet<&str> = state.rebased.iter().map(|r| r.path.as_str()).collect();
        let mut plan = LoosePlan::default();
        for actor in std::iter::once(&record.actor).chain(&record.retired) {
            let mine: Vec<&OpEntry> = scan.ops.iter().filter(|o| o.actor() == actor).collect();
            plan.total += mine
                .iter()
                .filter(|o| o.loose && o.packed.is_none())
                .count();
            let mut left = 0u64;
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
                        left += chunk.len() as u64;
                    } else {
                        plan.chunks.push((actor.clone(), chunk.to_vec()));
                    }
                }
            }
            plan.left.push((actor.clone(), left));
        }
        plan
    }

    /// Packing's step 2: the planned chunks go into new packs; the record's actor notes how
    /// far it is packed.
    fn pack_loose(
        &self,
        scan: &Scan,
        state: &MergedState,
        record: &WriterRecord,
        mode: Mode,
        kept_dir: &Path,
        out: &mut PackOutcome,
    ) -> Result<()> {
        let plan = self.plan_loose(scan, state, record, mode);
        let mut done = 0;
        for (actor, chunk) in &plan.chunks {
            if let Some(rel) = self.write_pack(actor, chunk, kept_dir)? {
                out.packed += chunk.len();
                out.packs.push(rel);
            }
            done += chunk.len();
            self.source().tell(crate::Progress::Packing {
                done: done.min(plan.total),
                total: plan.total,
            });
        }
        for (actor, left) in &plan.left {
            if actor == &record.actor {
                self.set_packed_through(actor, record.seq.saturating_sub(*left));
            }
        }
        Ok(())
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
            match self.inner.folder.read(&entry.rel) {
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
        let dir = crate::folder::layout::actor_packs(&self.inner.root, actor);
        let staged = self.stage(&dir, actor, &bytes).map_err(Error::io(&dir))?;
        let target = dir.join(&name);
        // Noted first: a running watcher's event for it may come before this returns.
        self.inner.memory.watched.published(target.clone());
        self.publish(staged, &target)
            .and_then(|()| fault::at("pack-published"))
            .map_err(Error::io(&target))?;
        Ok(crate::folder::layout::pack_rel(actor, &name))
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
        let mut written = Vec::new();
        let mut folded = 0;
        for group in self.plan_repack(scan, actor, size) {
            let mut files = Vec::new();
            for p in &group {
                let Ok(bytes) = self.inner.folder.read(&p.rel) else {
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

    /// The groups of `actor`'s packs that fold into one bigger pack each ([`repack_groups`]).
    /// Packs whose seqs overlap another's hold two branches of a fork (a cloned disk): they
    /// are not folded, so a bigger pack never mixes branches.
    fn plan_repack<'s>(
        &self,
        scan: &'s Scan,
        actor: &str,
        size: usize,
    ) -> Vec<Vec<&'s scan::PackListing>> {
        let all = unsuperseded(scan, actor);
        let live: Vec<&scan::PackListing> = all
            .iter()
            .filter(|p| {
                !all.iter()
                    .any(|q| q.rel != p.rel && q.first <= p.last && p.first <= q.last)
            })
            .copied()
            .collect();
        repack_groups(&live, size, self.inner.repack_fan)
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
                    .is_some_and(|k| k.file.age_secs() >= PACK_GRACE_SECS);
                if !(aged || acks.everyone_has(&last)) {
                    continue;
                }
                for k in kept.iter().filter(|k| k.rel() == p.rel) {
                    fs::remove(k.file.path()).map_err(Error::io(k.file.path()))?;
                }
                self.remove_or_log(self.inner.root.join(&p.rel), "a superseded pack");
                deleted += 1;
            }
            self.sync_dir_or_log(crate::folder::layout::actor_packs(&self.inner.root, actor));
        }
        Ok(deleted)
    }

    /// `features/packs`, before the first pack: a build that cannot read packs must not
    /// write (it would take packed changes for lost ones).
    fn ensure_packs_feature(&self, owner: &str) -> Result<()> {
        let note = b"packs in packs/: a build that cannot read them must not write\n";
        crate::folder::layout::ensure_feature(&*self.inner.folder, owner, pack::FEATURE, note)
            .map_err(Error::io(crate::folder::layout::feature(
                &self.inner.root,
                pack::FEATURE,
            )))
    }

    /// The kept packs the folder lost (or holds damaged) that packing publishes again,
    /// unless a snapshot folds all they hold: each with its bytes, and whether a damaged
    /// file lies under its name.
    fn lost_packs(
        &self,
        scan: &Scan,
        state: &MergedState,
        kept_dir: &Path,
    ) -> Vec<(Kept, Vec<u8>, bool)> {
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
            // Under its name but not read by the scan: a damaged copy (a torn delivery, bit
            // rot) that the right bytes replace; a sound one (unreadable for now) stays.
            let (there, damaged) = match self.inner.folder.read(&kept.rel()) {
                Ok(there) => (true, there != bytes),
                Err(e) => (false, e.kind() != std::io::ErrorKind::NotFound),
            };
            if there && !damaged {
                continue;
            }
            out.push((kept, bytes, damaged));
        }
        out
    }

    /// Publishes again the kept packs the folder lost ([`Store::lost_packs`]).
    fn republish_packs(
        &self,
        scan: &Scan,
        state: &MergedState,
        kept_dir: &Path,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (kept, bytes, damaged) in self.lost_packs(scan, state, kept_dir) {
            let rel = kept.rel();
            let dir = crate::folder::layout::actor_packs(&self.inner.root, &kept.actor);
            let target = dir.join(&kept.name);
            let staged = self
                .stage(&dir, &kept.actor, &bytes)
                .map_err(Error::io(&dir))?;
            if damaged {
                self.publish_over_damaged(staged, &target)
            } else {
                self.publish(staged, &target)
            }
            .and_then(|()| fault::at("republished"))
            .map_err(Error::io(&target))?;
            out.push(rel);
        }
        Ok(out)
    }

    /// This device's loose op files that a verified pack in the folder holds, by pack: those
    /// that may go now (every other device has the pack's changes, or the pack is older than
    /// the grace period), and how many stay.
    fn loose_deletions<'s>(
        &self,
        scan: &'s Scan,
        acks: &Acks<'_>,
        own: &[String],
        kept: &[Kept],
    ) -> (Vec<(&'s scan::PackListing, Vec<&'s OpEntry>)>, usize) {
        let mut by_pack: BTreeMap<&str, Vec<&OpEntry>> = BTreeMap::new();
        for o in &scan.ops {
            if let Some(p) = o.packed.as_ref().filter(|_| o.loose) {
                if own.iter().any(|a| a == o.actor()) {
                    by_pack.entry(&*p.pack).or_default().push(o);
                }
            }
        }
        let mut out = Vec::new();
        let mut kept_loose = 0;
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
                .is_some_and(|k| k.file.age_secs() >= PACK_GRACE_SECS);
            if !(everyone_has || aged) {
                kept_loose += entries.len();
                continue;
            }
            out.push((listing, entries));
        }
        (out, kept_loose)
    }

    /// Deletes the loose op files [`Store::loose_deletions`] lets go. Returns (deleted,
    /// kept).
    fn delete_packed_loose(
        &self,
        scan: &Scan,
        acks: &Acks<'_>,
        own: &[String],
        kept: &[Kept],
    ) -> Result<(usize, usize)> {
        let (go, kept_loose) = self.loose_deletions(scan, acks, own, kept);
        let mut deleted = 0;
        for (listing, entries) in go {
            for (i, o) in entries.iter().enumerate() {
                let path = self.inner.root.join(&o.rel);
                self.remove_or_log(&path, "a loose op file a pack holds");
                if i == 0 {
                    fault::at("loose-deleting").map_err(Error::io(&path))?;
                }
            }
            deleted += entries.len();
            self.sync_dir_or_log(crate::folder::layout::actor_ops(
                &self.inner.root,
                &listing.actor,
            ));
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
            if (Release {
                held_elsewhere: folded,
                ..Release::default()
            })
            .allows(&k.file)
            {
                k.file.release("a kept pack copy a snapshot folds");
                continue;
            }
            if !k.settled {
                if listing.is_some() && !loose_packed.contains(rel.as_str()) {
                    let settled = k.file.path().with_file_name(format!("{}{SETTLED}", k.name));
                    std::fs::rename(k.file.path(), &settled)
                        .and_then(|()| fault::at("pack-settled"))
                        .map_err(Error::io(k.file.path()))?;
                }
                continue;
            }
            let everyone_has = listing
                .and_then(|l| acks.read_back(l))
                .is_some_and(|last| acks.everyone_has(&last));
            let release = Release {
                acknowledged: everyone_has,
                in_folder: listing.is_some(),
                may_age: true,
                ..Release::default()
            };
            if release.allows(&k.file) {
                k.file.release("a settled kept pack copy");
            }
        }
        Ok(())
    }
}
