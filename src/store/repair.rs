//! The store's repair: writing back, as a snapshot, the changes this device holds that the
//! folder lost.

use crate::compact::repair::{Repaired, WRITE_BACK_EVERY_SECS};
use crate::error::{Error, Result};
use crate::fs;
use crate::local::retention::Retention;
use crate::merge;
use crate::store::session::Name;
use crate::store::Store;
use automerge::ReadDoc;

impl Store {
    /// Publishes again this device's own op files that the folder lost (from its outbox, with
    /// the same bytes and names), then writes back, as a new snapshot that deletes nothing,
    /// every other change this device holds (in its cache or its retention copies) that no
    /// valid snapshot or op file in the folder provides.
    pub fn repair(&self) -> Result<Repaired> {
        if self.inner.read_only {
            return Err(Error::ReadOnly);
        }
        self.check_unlocked()?;
        let marker_restored = self.restore_marker()?;
        let session = self.session(Name::Resolve)?;
        let device = session.device.clone().unwrap_or_default();
        // Own op files the folder lost come back as they were.
        let record = session.record.clone();
        let republished = self.republish(record.as_ref(), None)?;
        let scan = self.scan();
        let (state, _, _) = self.merged(&scan, false);
        let mut doc = state.doc.clone();
        // A retention copy that holds one side of a fork (a change of an actor and seq whose
        // other change the view holds: a cloned state dir wrote both) cannot merge into the
        // view; it is written back on its own below, and readers resolve the fork.
        let mut forked = Vec::new();
        for mut retained in Retention::new(&self.inner.state.path()).documents() {
            if let Err(e) = doc.merge(&mut retained) {
                tracing::warn!(error = %e, "a retention copy did not merge into the repaired view (it is written back on its own)");
                forked.push(retained);
            }
        }
        // What the folder alone provides. A change the folder's merge rebased (a fork's
        // losing side, and what builds on it) is provided by its rewrite: this device's view
        // may hold the original, carried from before the fork was seen.
        let (folder, report) =
            merge::merge_cold(&self.source(), &self.inner.marker.store_id, &scan, None);
        let rewritten: std::collections::HashSet<String> =
            report.rebased.iter().map(|r| r.from.clone()).collect();
        let lacks = |doc: &automerge::Automerge| {
            folder
                .doc
                .get_missing_deps(&doc.get_heads())
                .into_iter()
                .any(|h| !rewritten.contains(&h.to_string()))
        };
        let mut snapshot = None;
        for doc in std::iter::once(&doc).chain(&forked) {
            if lacks(doc) {
                let name = self.publish_snapshot(doc, &device, &[], &[], &state.devices, &[])?;
                snapshot.get_or_insert(crate::folder::snapshot_rel(&name));
            }
        }
        Ok(Repaired {
            marker_restored,
            republished,
            snapshot,
        })
    }

    /// When the folder lost changes this device holds (a folder restored from a backup, a
    /// lost snapshot), writes them back as [`Store::repair`] does, without being asked: a
    /// write and a running watcher call this, so new devices see the newer edits without
    /// anyone running `repair`. At most once an hour, so a write-back that does not settle
    /// the gap never turns every write into a snapshot. `None` when there was nothing to do.
    pub(crate) fn write_back_lost(&self) -> Result<Option<Repaired>> {
        let unprovided = self.inner.memory.peek().map_or(0, |s| s.unprovided);
        if unprovided == 0 || self.check_writable().is_err() {
            return Ok(None);
        }
        let local = self.inner.state.path();
        let stamp = local.join(crate::local::names::WRITTEN_BACK);
        let recent = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() < WRITE_BACK_EVERY_SECS);
        if recent {
            return Ok(None);
        }
        fs::replace_local(&stamp, b"").map_err(Error::io(&stamp))?;
        let repaired = self.repair()?;
        Ok((!repaired.is_empty()).then_some(repaired))
    }

    /// Writes the store marker again, byte for byte from this device's copy, if it is missing
    /// and this store was opened from what this device knows. A damaged marker is left as
    /// it is.
    pub(crate) fn restore_marker(&self) -> Result<bool> {
        if self.inner.marker_problem.is_none() || self.has_file(crate::format::marker::MARKER) {
            return Ok(false);
        }
        let path = crate::folder::layout::marker(&self.inner.root);
        let Some(bytes) = self.inner.state.kept_marker() else {
            return Ok(false);
        };
        let staged = self
            .stage(&self.inner.root, &self.inner.marker.store_id, &bytes)
            .map_err(Error::io(&self.inner.root))?;
        self.publish_new(staged, &path).map_err(Error::io(&path))
    }
}
