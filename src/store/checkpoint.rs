//! Checkpoints (docs/FORMAT.md §19): any device, now and then, publishes its merged document
//! at named heads with the op files it covers, deleting nothing, so a new device reads one
//! file instead of every op file. A device replaces only its own older checkpoint.

use std::time::Instant;

use automerge::{ChangeHash, ReadDoc};
use serde::Serialize;

use crate::compact::{folded, verify};
use crate::error::{Error, Result};
use crate::fault;
use crate::folder::layout;
use crate::format::snapshot;
use crate::fs;
use crate::store::session::Name;
use crate::store::Store;

/// How many changes the folder's newest checkpoint may lag behind a writing device's view
/// before that device publishes a new one ([`crate::Options::checkpoint_every`]).
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 10_000;

/// The environment variable that sets [`crate::Options::checkpoint_every`].
pub const CHECKPOINT_EVERY_ENV: &str = "CRDTDIR_CHECKPOINT_EVERY";

/// What [`Store::checkpoint`] did.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct CheckpointOutcome {
    /// The new checkpoint (path in the store), if one was published.
    pub checkpoint: Option<String>,
    /// Why none was: nothing new since the folder's newest checkpoint, or a view a
    /// checkpoint must not be made of (a fork, a change refused or waiting, an incomplete
    /// view).
    pub skipped: Option<String>,
    /// Changes the checkpoint holds.
    pub changes: u64,
    /// Op files it covers (they stay in the folder).
    pub covered: usize,
    /// Its size in bytes.
    pub bytes: u64,
    /// This device's older checkpoints it replaced (deleted), by path.
    pub replaced: Vec<String>,
    /// Wall time taken, in milliseconds.
    pub millis: u128,
}

impl Store {
    /// Publishes a checkpoint of this device's merged view: the Automerge save at its heads
    /// and the op files it covers, in `checkpoints/` (sealed in an encrypted store). It
    /// deletes nothing but this device's own older checkpoints, so it needs no
    /// confirmation and is never the last copy of anything. A device with no local state
    /// then starts from the newest checkpoint that passes its checks and reads only the op
    /// files it does not cover. Writes publish one on their own every
    /// [`crate::Options::checkpoint_every`] changes.
    ///
    /// Skipped (with the reason in [`CheckpointOutcome::skipped`]) when the folder already
    /// has a checkpoint of as many changes, and when the view holds a fork, a refused or
    /// waiting change, or is incomplete: readers would have to undo what it holds.
    pub fn checkpoint(&self) -> Result<CheckpointOutcome> {
        let started = Instant::now();
        self.check_writable()?;
        self.whole_store("checkpoint")?;
        let session = self.session(Name::Resolve)?;
        let device = session.device.clone().unwrap_or_default();
        let scan = self.scan();
        let (state, report, _) = self.merged(&scan, true);
        let changes = state.doc.stats().num_changes;
        let skipped = |why: String| {
            Ok(CheckpointOutcome {
                skipped: Some(why),
                changes,
                millis: started.elapsed().as_millis(),
                ..CheckpointOutcome::default()
            })
        };
        if let Some(why) = unfit(&report) {
            return skipped(why);
        }
        let newest = newest_checkpoint(&self.source(), &scan.checkpoints);
        if changes <= newest {
            return skipped(format!(
                "the folder has a checkpoint of {newest} changes; this view has {changes}"
            ));
        }
        // The op files it covers: those here, and those the snapshots it holds fold in.
        let (mut ops, _) = folded(&scan, &state);
        ops.extend(state.covered.iter().filter_map(|rel| {
            let (_, name) = crate::folder::split_op_rel(rel)?;
            let op = crate::format::names::parse_op_name(name)?;
            Some((rel.clone(), op.hash.to_string()))
        }));
        ops.sort_unstable();
        ops.dedup();
        if ops.is_empty() {
            return skipped("no op file to cover".into());
        }
        // Readers take a checkpoint only when the files it names account for every change
        // it holds: one that held a change the folder lost would give new devices what the
        // others do not have (`repair` writes such changes back first).
        if ops.len() as u64 != changes || report.unprovided > 0 {
            return skipped(format!(
                "this view holds changes no op file here provides ({} op files for {changes} changes)",
                ops.len()
            ));
        }
        let owner = self.owner_actor()?;
        let (bytes, heads, changes, _) = self.build_snapshot_of(
            &state.doc,
            &device,
            (&ops, &[]),
            &state.devices,
            &[],
            Some(&owner),
        )?;
        let rel = self.publish_checkpoint(&owner, &bytes, &heads, changes)?;
        let replaced = self.replace_own_checkpoints(&scan.checkpoints, &rel)?;
        self.remember_checkpoint(changes);
        Ok(CheckpointOutcome {
            checkpoint: Some(rel),
            skipped: None,
            changes,
            covered: ops.len(),
            bytes: bytes.len() as u64,
            replaced,
            millis: started.elapsed().as_millis(),
        })
    }

    /// After a write: a checkpoint when the folder's newest one lags this device's view by
    /// [`crate::Options::checkpoint_every`] changes. What this device last saw of the
    /// folder's checkpoints is a hint in local state, so most writes only compare numbers.
    pub(crate) fn maintain_checkpoint(&self) -> Result<Option<CheckpointOutcome>> {
        let every = self.inner.checkpoint_every;
        if every == 0 || self.inner.read_only || self.inner.doc.is_some() {
            return Ok(None);
        }
        let Some(state) = self.inner.memory.peek() else {
            return Ok(None);
        };
        let changes = state.doc.stats().num_changes;
        drop(state);
        if changes < self.remembered_checkpoint().saturating_add(every) {
            return Ok(None);
        }
        let listed = crate::folder::scan::checkpoints(&*self.inner.folder);
        let newest = newest_checkpoint(&self.source(), &listed);
        if changes < newest.saturating_add(every) {
            self.remember_checkpoint(newest);
            return Ok(None);
        }
        let out = self.checkpoint()?;
        if out.checkpoint.is_none() {
            // Not now (a fork, a waiting change): asked again after `every` more changes.
            self.remember_checkpoint(changes);
        }
        Ok(Some(out))
    }

    /// The actor this device publishes under: its writer record's, or a fresh one.
    pub(crate) fn owner_actor(&self) -> Result<String> {
        Ok(
            match self
                .inner
                .state
                .read_record()
                .or_else(|| self.adopted_record())
            {
                Some(r) => {
                    self.remove_stale_temps(&r);
                    r.actor
                }
                None => {
                    let r = crate::store::fresh_record(None);
                    self.inner.state.write_record(&r)?;
                    r.actor
                }
            },
        )
    }

    /// Publishes the checkpoint `bytes` (temp, fsync, read-only, rename) and reads it back
    /// by the reader's rules; one that does not read back as written is removed again.
    fn publish_checkpoint(
        &self,
        owner: &str,
        bytes: &[u8],
        heads: &[ChangeHash],
        changes: u64,
    ) -> Result<String> {
        let dir = layout::checkpoints(&self.inner.root);
        if self.is_local() {
            std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        }
        let name = snapshot::file_name(bytes);
        let target = dir.join(&name);
        let staged = self.stage(&dir, owner, bytes).map_err(Error::io(&dir))?;
        fault::at("checkpoint-staged")
            .and_then(|()| self.publish(staged, &target))
            .and_then(|()| fault::at("checkpoint-published"))
            .map_err(Error::io(&target))?;
        if let Err(reason) = verify(
            &self.source(),
            &layout::checkpoint_rel(&name),
            &name,
            heads,
            changes,
        ) {
            self.remove_or_log(&target, "a checkpoint that failed its read-back");
            return Err(Error::Unverified {
                path: target,
                reason,
            });
        }
        Ok(layout::checkpoint_rel(&name))
    }

    /// Deletes this device's checkpoints (of any actor it writes or wrote with) other than
    /// `new`: the new one holds everything they held.
    fn replace_own_checkpoints(&self, listed: &[String], new: &str) -> Result<Vec<String>> {
        let own = self.own_actors();
        let mut replaced = Vec::new();
        for rel in listed.iter().filter(|r| r.as_str() != new) {
            let path = self.inner.root.join(rel);
            let owner = self
                .source()
                .doc_rows(rel)
                .ok()
                .and_then(|rows| rows.meta("checkpoint"));
            if owner.is_some_and(|o| own.contains(&o)) {
                self.remove_or_log(&path, "an older checkpoint of this device");
                fault::at("checkpoint-replaced").map_err(Error::io(&path))?;
                replaced.push(rel.clone());
            }
        }
        if !replaced.is_empty() {
            self.sync_dir_or_log(layout::checkpoints(&self.inner.root));
        }
        Ok(replaced)
    }

    /// `checkpoint-seen` in local state: the hint below.
    fn checkpoint_seen(&self) -> std::path::PathBuf {
        self.inner
            .state
            .path()
            .join(crate::local::names::CHECKPOINT_SEEN)
    }

    /// The change count of the newest checkpoint this device saw or published (a hint).
    fn remembered_checkpoint(&self) -> u64 {
        std::fs::read_to_string(self.checkpoint_seen())
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    fn remember_checkpoint(&self, changes: u64) {
        let seen = self.checkpoint_seen();
        if let Err(e) = fs::replace_unsynced(&seen, changes.to_string().as_bytes()) {
            tracing::debug!(error = %e, "the checkpoint hint was not kept");
        }
    }
}

/// Why a view must not become a checkpoint, if it must not: readers start from a
/// checkpoint only in a folder without forks, and never undo what one holds.
fn unfit(report: &crate::MergeReport) -> Option<String> {
    if !report.forks.is_empty() || !report.rebased.is_empty() {
        Some("this view holds a fork (two changes claim one actor and seq)".into())
    } else if !report.quarantined.is_empty() {
        Some("this view refused a change".into())
    } else if !report.waiting.is_empty() {
        Some("changes of this view wait for others that have not arrived".into())
    } else {
        report
            .incomplete
            .first()
            .map(|gap| format!("this view is incomplete ({}: {})", gap.path, gap.reason))
    }
}

/// The most changes any of the checkpoints at `rels` claims (0 without one).
fn newest_checkpoint(source: &crate::folder::Source<'_>, rels: &[String]) -> u64 {
    rels.iter()
        .filter_map(|rel| source.claimed_changes(rel).ok())
        .max()
        .unwrap_or(0)
}
