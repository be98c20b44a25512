//! The store's presence protocol: publishing this device's heartbeat, reading the other
//! devices' beats, forgetting a device, and what their beats release. The rules are in
//! `crate::presence`.

use crate::error::{Error, Result};
use crate::fault;
use crate::format::beat;
use crate::fs::{TEMP_PREFIX, TEMP_SUFFIX};
use crate::local::beats;
use crate::local::kept::Release;
use crate::local::retention::Retention;
use crate::local::WriterRecord;
use crate::merged::MergedState;
use crate::presence::{
    out_verified, own_beats, rules, unmerged, Due, Forgotten, Presence, BEAT_EVERY_SECS,
};
use crate::store::session::Name;
use crate::store::Store;
use crate::store::{fresh_record, now};
use automerge::ChangeHash;
use std::collections::HashSet;
use std::sync::Arc;

/// Off the local disk, the tidy step that is not forced looks at the beat folders at most
/// this often (seconds).
const TIDY_ELSEWHERE_SECS: u64 = 30;

impl Store {
    /// Publishes this device's heartbeat (its name, actors, a counter that only increases,
    /// its clock and the heads of its merged view) as a new immutable file, then deletes its
    /// older beats. Skipped (returns `false`) when the view did not change and the last beat
    /// is recent, and when this build must not write to the store.
    pub fn beat(&self) -> Result<bool> {
        self.beat_when(Due::Changed)
    }

    /// Forgets a device that is gone for good (an old laptop, a reader that ran once):
    /// from now on no device waits for its acknowledgement — loose files a pack holds,
    /// kept pack copies, retention copies and outbox entries go once the devices that are
    /// left have what they hold — and `status` and `compact` no longer list it. `device` is
    /// its display name or the start of its actor (as `status` shows them). The note rides
    /// in this device's heartbeats, so every device honours it; it lapses by itself if the
    /// forgotten device publishes a heartbeat again (it was not gone after all).
    pub fn forget(&self, device: &str) -> Result<Forgotten> {
        self.check_writable()?;
        self.whole_store("forget")?;
        let own = self.own_actors();
        let candidates: Vec<(String, beat::Beat)> = crate::folder::beat_actors(&*self.inner.folder)
            .into_iter()
            .filter(|a| !own.contains(a))
            .filter_map(|a| self.latest_beat(&a).map(|(_, b)| (a, b)))
            .filter(|(a, b)| {
                b.device == device
                    || (device.len() >= 4 && a.starts_with(&device.to_ascii_lowercase()))
            })
            .collect();
        let (actor, beat) = match candidates.as_slice() {
            [] => {
                return Err(Error::UnknownDevice {
                    name: device.to_string(),
                })
            }
            [one] => one.clone(),
            many => {
                let actors = many
                    .iter()
                    .map(|(a, _)| a[..8.min(a.len())].to_string())
                    .collect();
                return Err(Error::Refused(crate::error::Refusal::AmbiguousDevice {
                    name: device.to_string(),
                    actors,
                }));
            }
        };
        let local = self.inner.state.path();
        let mut forgotten = beats::read_forgotten(&local);
        forgotten.insert(actor.clone(), beat.counter);
        beats::write_forgotten(&local, &forgotten).map_err(Error::io(&local))?;
        self.beat()?;
        Ok(Forgotten {
            name: beat.device,
            actor,
            beat_counter: beat.counter,
        })
    }

    /// [`Store::beat`], when `due` says so.
    pub(crate) fn beat_when(&self, due: Due) -> Result<bool> {
        let _span = tracing::debug_span!("beat").entered();
        if self.inner.doc.is_some() {
            // The device's beats are the root document's handle's (in this version): no
            // other device acknowledges a document's changes, so its outbox entries go by
            // age alone, once the folder holds their op files.
            if let Some(state) = self.inner.memory.peek() {
                if self.check_writable().is_ok() {
                    let _lock = self.inner.state.lock()?;
                    self.release_outbox(&state, None);
                }
            }
            return Ok(false);
        }
        if self.check_writable().is_err() {
            tracing::debug!("no beat: this build does not write to the store");
            return Ok(false);
        }
        let session = self.session(Name::Resolve)?;
        let device = session.device.clone().unwrap_or_default();
        let record = match session.record.clone() {
            Some(r) => r,
            None => {
                let r = fresh_record(None);
                self.inner.state.write_record(&r)?;
                r
            }
        };
        let (heads, verified) = self.beat_view();
        let local = self.inner.state.path();
        let mut own = beats::read_own(&local);
        let now = now();
        let published = own_beats(&*self.inner.folder, &record.actor);
        let previous = published
            .iter()
            .find(|(c, _)| own.counter > 0 && *c == own.counter);
        let forgotten: Vec<(String, u64)> = beats::read_forgotten(&local).into_iter().collect();
        let same = own.heads == heads && own.verified == verified && own.forgotten == forgotten;
        let recent = previous.is_some() && (0..BEAT_EVERY_SECS).contains(&(now - own.at));
        if recent && (same || due == Due::Stale) {
            // A crash after the last beat appeared may have left older ones.
            if let Some((_, name)) = previous.filter(|_| published.len() > 1) {
                self.remove_older_beats(&record, name);
            }
            tracing::debug!(
                age_secs = now - own.at,
                view_changed = !same,
                "no beat: the last one is recent"
            );
            self.tidy(false);
            return Ok(false);
        }
        own = beats::OwnBeats {
            v: 1,
            counter: own.counter + 1,
            at: now,
            heads,
            verified,
            forgotten,
        };
        // The counter is recorded before the beat that uses it appears: it never repeats.
        beats::write_own(&local, &own)
            .and_then(|()| fault::at("beat-counted"))
            .map_err(Error::io(&local))?;
        let name = self.publish_beat(&record, device, &own, now)?;
        self.remove_older_beats(&record, &name);
        self.tidy(true);
        tracing::debug!(counter = own.counter, "beat published");
        Ok(true)
    }

    /// What a beat says of this device's view: the heads of the document it has merged,
    /// and the snapshots it read and verified (among its merged files). From the state in
    /// memory; else from the saved view this process just answered from, or that stands for
    /// the folder's listing (a command that merged nothing new loads no document for its
    /// beat); else from a merge.
    fn beat_view(&self) -> (Vec<String>, Vec<String>) {
        let state = match self.inner.memory.take() {
            Some(state) => state,
            None => {
                // What this process just answered from the saved view: no listing either.
                if let Some(served) = self.inner.memory.take_served() {
                    tracing::debug!("beat: heads from the saved view, no document loaded");
                    return served;
                }
                let scan = self.scan();
                if let Some(view) =
                    self.inner
                        .memory
                        .cache
                        .view(&*self.inner.folder, &scan, &self.key_digest())
                {
                    tracing::debug!("beat: heads from the saved view, no document loaded");
                    return view.beat;
                }
                self.check_out_merged(&scan)
            }
        };
        let heads: Vec<String> = state
            .doc
            .get_heads()
            .iter()
            .map(ChangeHash::to_string)
            .collect();
        let verified = state.verified_snapshots();
        self.inner.memory.put(Arc::new(state));
        (heads, verified)
    }

    /// Publishes the beat `own` (counted already) of `device` under its record's actor,
    /// sealed in an encrypted store; its file name.
    fn publish_beat(
        &self,
        record: &WriterRecord,
        device: String,
        own: &beats::OwnBeats,
        now: i64,
    ) -> Result<String> {
        let dir = crate::folder::layout::actor_beats(&self.inner.root, &record.actor);
        let mut actors = vec![record.actor.clone()];
        actors.extend(record.retired.iter().rev().cloned());
        let plain = beat::encode(&beat::Beat {
            device,
            actors,
            counter: own.counter,
            time: now,
            heads: own.heads.clone(),
            verified: own.verified.clone(),
            forgotten: own.forgotten.clone(),
        });
        let bytes = self.sealed_file(
            "beat",
            &crate::seal::context(&record.actor, own.counter),
            plain,
        )?;
        let name = beat::file_name(own.counter, &bytes);
        let staged = self
            .stage(&dir, &record.actor, &bytes)
            .map_err(Error::io(&dir))?;
        self.publish(staged, &dir.join(&name))
            .and_then(|()| fault::at("beat-published"))
            .map_err(Error::io(&dir))?;
        Ok(name)
    }

    /// Deletes this device's own beats (under any actor it had) but `keep`, and its stale
    /// beat temps.
    fn remove_older_beats(&self, record: &WriterRecord, keep: &str) {
        for actor in std::iter::once(&record.actor).chain(&record.retired) {
            let d = crate::folder::layout::actor_beats(&self.inner.root, actor);
            let listed = self
                .inner
                .folder
                .list(&crate::folder::layout::actor_beats_rel(actor));
            for n in listed.into_iter().flatten().map(|e| e.name) {
                let stale_temp =
                    n.starts_with(&format!("{TEMP_PREFIX}{actor}-")) && n.ends_with(TEMP_SUFFIX);
                if (beat::parse_name(&n).is_some() && n != keep) || stale_temp {
                    self.remove_or_log(d.join(&n), "an older beat of this device");
                }
            }
        }
    }

    /// The other devices' latest heartbeats, judged by this device's clock: a device may be
    /// online if its beat counter changed within `threshold_secs` as this device observed it
    /// (a device seen for the first time counts as just seen), or if its own clock at its
    /// latest beat is within `threshold_secs` of ours. Remembers what it saw (local state).
    pub fn presence(&self, threshold_secs: i64) -> Result<Vec<Presence>> {
        self.check_unlocked()?;
        let (state, _, _) = self.merged(&self.scan(), true);
        Ok(self.presence_of(&state, threshold_secs))
    }

    pub(crate) fn presence_of(&self, state: &MergedState, threshold_secs: i64) -> Vec<Presence> {
        self.presence_with(threshold_secs, |own, _, beat| {
            Some(unmerged(state, own, beat).len())
        })
        .unwrap_or_default()
    }

    /// The other devices, with `unmerged` telling, for a device's latest beat (this
    /// device's actors, its path, the beat), how many of this device's changes it has not
    /// merged; `None` when `unmerged` cannot tell for one of them (nothing is remembered).
    pub(crate) fn presence_with(
        &self,
        threshold_secs: i64,
        unmerged: impl Fn(&HashSet<String>, &str, &beat::Beat) -> Option<usize>,
    ) -> Option<Vec<Presence>> {
        let record = self.inner.state.read_record();
        let own: HashSet<String> = record
            .iter()
            .flat_map(|r| std::iter::once(r.actor.clone()).chain(r.retired.iter().cloned()))
            .collect();
        let local = self.inner.state.path();
        let mut seen = beats::read_seen(&local);
        let now = now();
        let mut out = Vec::new();
        let live = crate::folder::live_beats(&self.source());
        for (actor, rel, beat) in live.iter().filter(|(a, _, _)| !own.contains(a)) {
            let changed_at = rules::observe(&mut seen, actor, beat.counter, now);
            let unmerged = unmerged(&own, rel, beat)?;
            out.push(Presence {
                name: beat.device.clone(),
                actors: beat.actors.clone(),
                beat: rel.clone(),
                seen_secs_ago: now - changed_at,
                beat_secs_ago: now - beat.time,
                online: rules::looks_online(changed_at, beat.time, now, threshold_secs),
                unmerged,
            });
        }
        // What was seen is remembered; failing to remember only makes devices look fresher.
        if let Err(e) = beats::write_seen(&local, &seen) {
            tracing::warn!(error = %e, "when other devices' beats changed was not remembered (they may look fresher)");
        }
        Some(out)
    }

    /// The tidy step: this device's local copies that are no longer needed go — retention
    /// copies every other device verified (or a later copy holds), outbox entries every other
    /// device merged (or old ones the folder holds). Runs with the writer lock held, from the
    /// heartbeat: when the beat folders changed since it last ran (no file is read to know),
    /// and whenever a beat is published while the document is in memory (`force`: at least
    /// once a minute while the device is active). A command that merged nothing new loads the
    /// document for it only when other devices' beats changed. So reads (`status`,
    /// `presence`, `compact_plan`) only read.
    ///
    /// Off the local disk the beat folders' digest costs a listing per device: unless
    /// `force`, it is taken at most every [`TIDY_ELSEWHERE_SECS`] (local copies then go a
    /// little later, never sooner).
    fn tidy(&self, force: bool) {
        let local = self.inner.state.path();
        let elsewhere = !self.is_local();
        if elsewhere && !force && beats::tidied_within(&local, TIDY_ELSEWHERE_SECS) {
            return;
        }
        let beats_now = crate::folder::beats_digest(&*self.inner.folder);
        let in_memory = self.inner.memory.peek();
        let changed = beats::read_tidied(&local) != Some(beats_now);
        let due = changed || (force && in_memory.is_some());
        if !due {
            if elsewhere {
                // The digest was taken now: the next one waits its turn.
                let _ = beats::write_tidied(&local, &beats_now);
            }
            return;
        }
        let state = match in_memory {
            Some(state) => state,
            None => {
                let state = Arc::new(self.merge_and_check_out().0);
                self.inner.memory.put(Arc::clone(&state));
                state
            }
        };
        let own = self.own_actors();
        let live = crate::folder::live_beats(&self.source());
        self.release_retention(&out_verified(&live, &own));
        self.release_outbox(&state, unmerged_in(&live, &own, &state).as_ref());
        if let Err(e) = beats::write_tidied(&local, &beats_now) {
            tracing::debug!(error = %e, "the tidy step's note was not written (it runs again)");
        }
    }

    /// Forgets outbox entries every other device has merged (`not_merged_by_some` holds the
    /// own changes some other device's latest beat lacks; `None` when no other device beats),
    /// and entries older than [`crate::RETENTION_SECS`] whose op file the folder holds (or a snapshot
    /// folds): age alone never drops the only copy, whatever the clock did.
    pub(crate) fn release_outbox(
        &self,
        state: &MergedState,
        not_merged_by_some: Option<&HashSet<ChangeHash>>,
    ) {
        // Op files a pack in the folder holds count as in the folder (listed only when some
        // entry is old enough to ask).
        let mut packed: Option<HashSet<String>> = None;
        for kept in self.outbox().entries() {
            let merged_everywhere = not_merged_by_some.is_some_and(|missing| {
                kept.change_hash(&self.source()).is_some_and(|h| {
                    state.doc.get_change_meta_by_hash(&h).is_some() && !missing.contains(&h)
                })
            });
            let rel = kept.rel();
            let old = !kept.file.within_retention();
            // Asked only where it decides (an old entry not every device merged): off the
            // local disk each ask is a request.
            let in_folder = old
                && !merged_everywhere
                && (self.has_file(&rel)
                    || state.covered.contains(&rel)
                    || packed
                        .get_or_insert_with(|| {
                            self.scan()
                                .ops
                                .into_iter()
                                .filter(|o| o.packed.is_some())
                                .map(|o| o.rel)
                                .collect()
                        })
                        .contains(&rel));
            let release = Release {
                acknowledged: merged_everywhere,
                in_folder,
                may_age: true,
                ..Release::default()
            };
            if release.allows(&kept.file) {
                kept.release();
            }
        }
    }

    /// Deletes retention copies that are no longer needed: every other device whose beat
    /// this device can read has verified the snapshot, or another retention copy holds every
    /// change this one holds (a later compaction of this device folds the earlier ones). Age
    /// never releases a copy, whatever the clock says: a device that stays away keeps it
    /// until `crdtdir forget` says it is gone.
    pub(crate) fn release_retention(&self, verified_by_all: &Option<HashSet<String>>) {
        let retention = Retention::new(&self.inner.state.path());
        let copies = retention.entries();
        let superseded = if copies.len() > 1 {
            retention.superseded()
        } else {
            HashSet::new()
        };
        for copy in copies {
            let acknowledged = verified_by_all
                .as_ref()
                .is_some_and(|v| v.contains(&copy.snapshot));
            // Never by age: a device that stays away keeps its copy.
            let release = Release {
                acknowledged,
                held_elsewhere: superseded.contains(&copy.snapshot),
                ..Release::default()
            };
            if release.allows(copy.file()) {
                copy.release();
                if self.inner.doc.is_none() {
                    retention.release_documents(&copy.snapshot);
                }
            }
        }
    }

    /// This device's changes that some other device's latest beat does not include; `None`
    /// when no other device has a beat this device can read.
    pub(crate) fn unmerged_by_some(&self, state: &MergedState) -> Option<HashSet<ChangeHash>> {
        let live = crate::folder::live_beats(&self.source());
        unmerged_in(&live, &self.own_actors(), state)
    }

    pub(crate) fn latest_beat(&self, actor: &str) -> Option<(String, beat::Beat)> {
        crate::folder::latest_beat(&self.source(), actor)
    }
}

/// This device's (`own`) changes in `state` that some other device's beat among `live`
/// does not include; `None` when no other device has a live beat.
fn unmerged_in(
    live: &[(String, String, crate::format::beat::Beat)],
    own: &HashSet<String>,
    state: &MergedState,
) -> Option<HashSet<ChangeHash>> {
    let mut out: Option<HashSet<ChangeHash>> = None;
    for (actor, _, beat) in live {
        if !own.contains(actor) {
            out.get_or_insert_default()
                .extend(unmerged(state, own, beat));
        }
    }
    out
}
