//! The store's compaction protocol: plan, then publish a snapshot, verify it read back,
//! retain a local copy, record it, and delete what it folds. The pieces are in
//! `crate::compact`.

use crate::compact::{folded, usage, verify, CompactOutcome, CompactPlan, Progress};
use crate::error::{Error, Result};
use crate::fault;
use crate::folder::scan::Scan;
use crate::format::record::{self, Record};
use crate::format::snapshot::{self, NewSnapshot};
use crate::local::retention::Retention;
use crate::merged::MergedState;
use crate::presence::Presence;
use crate::render;
use crate::store::compact_docs::{verify_rows, DocFold};
use crate::store::now;
use crate::store::session::Name;
use crate::store::Store;
use automerge::{Automerge, ChangeHash, ReadDoc};
use std::time::Instant;

/// A merged view that compaction may fold, and what it would fold (op files, snapshots).
pub(crate) type Foldable = (
    Scan,
    std::sync::Arc<MergedState>,
    Vec<(String, String)>,
    Vec<String>,
);

impl Store {
    /// Lists and merges the folder (saving the cache with `save`) and finds what a
    /// compaction would fold; refuses when this device's view is incomplete (a record
    /// without its snapshot): compacting then could drop history only another device has.
    pub(crate) fn foldable(&self, save: bool) -> Result<Foldable> {
        let scan = self.scan();
        let (state, report, _) = self.merged(&scan, save);
        if let Some(gap) = report.incomplete.first() {
            return Err(Error::Incomplete {
                path: gap.path.clone(),
                reason: gap.reason.clone(),
            });
        }
        let (ops, snaps) = folded(&scan, &state);
        Ok((scan, state, ops, snaps))
    }

    /// Compacts the way a user asked to should be: refused with [`Error::NotAlone`] while
    /// another device looks online (its heartbeat changed within `threshold_secs`, see
    /// [`Store::presence`]), then only if `confirm` approves the plan (the CLI asks on the
    /// terminal; `--yes` approves) — else [`Error::NotConfirmed`] — and then as
    /// [`Store::compact_with_progress`]. Nothing changes when it is refused.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let opts = crdtdir::Options::new().state_dir(dir.path().join("state")).device("laptop");
    /// let store = crdtdir::Store::init(dir.path().join("store"), opts, Some(&serde_json::json!({"n": 1})))?;
    /// let refused = store.compact_if_alone(300, |_plan| false, |_| {});
    /// assert!(matches!(refused, Err(crdtdir::Error::NotConfirmed)));
    /// let done = store.compact_if_alone(300, |plan| plan.op_files > 0, |_| {})?;
    /// assert!(done.snapshot.is_some());
    /// # Ok::<(), crdtdir::Error>(())
    /// ```
    pub fn compact_if_alone(
        &self,
        threshold_secs: i64,
        confirm: impl FnOnce(&CompactPlan) -> bool,
        progress: impl FnMut(Progress),
    ) -> Result<CompactOutcome> {
        self.check_writable()?;
        self.whole_store("compact")?;
        let plan = self.compact_plan(threshold_secs)?;
        let online: Vec<Presence> = plan.others.iter().filter(|p| p.online).cloned().collect();
        if !online.is_empty() {
            return Err(Error::NotAlone { devices: online });
        }
        if !confirm(&plan) {
            return Err(Error::NotConfirmed);
        }
        self.compact_with_progress(progress)
    }

    /// What `compact` would fold; refuses when this device's view is incomplete (a record
    /// without its snapshot): compacting then could drop history that only another device
    /// still has.
    pub fn compact_plan(&self, threshold_secs: i64) -> Result<CompactPlan> {
        self.whole_store("compact")?;
        let (scan, state, ops, snaps) = self.foldable(true)?;
        let docs = self.fold_documents(true)?;
        let sizes = crate::compact::sizes(&*self.inner.folder);
        let size = |rel: &String| sizes.get(rel).copied().unwrap_or(0);
        let folded_set: std::collections::HashSet<&str> =
            ops.iter().map(|(p, _)| p.as_str()).collect();
        // Loose files, and the packs the compaction deletes.
        let op_bytes = scan
            .ops
            .iter()
            .filter(|o| o.loose && folded_set.contains(o.rel.as_str()))
            .map(|o| size(&o.rel))
            .sum::<u64>()
            + scan
                .packs
                .iter()
                .filter(|p| p.entry_rels().all(|r| folded_set.contains(r.as_str())))
                .map(|p| size(&p.rel))
                .sum::<u64>();
        let (doc_files, doc_bytes) = self.documents_usage(&docs, &sizes);
        let snapshot_bytes = snaps
            .iter()
            .chain(docs.iter().flat_map(|d| &d.snaps))
            .map(size)
            .sum();
        // Built to know its size (the device name is a placeholder: the plan writes nothing,
        // not even a default name).
        let device = self.inner.device.as_deref().unwrap_or("device");
        let (bytes, ..) =
            self.build_snapshot(&state.doc, device, &ops, &snaps, &state.devices, &docs)?;
        Ok(CompactPlan {
            op_files: ops.len() + doc_files,
            op_bytes: op_bytes + doc_bytes,
            snapshots: snaps.len() + docs.iter().map(|d| d.snaps.len()).sum::<usize>(),
            snapshot_bytes,
            new_snapshot_bytes: bytes.len() as u64,
            others: self.presence_of(&state, threshold_secs),
            silent: self.silent_writers(&scan, &state),
        })
    }

    /// The writers of the folder's op files and packs that no heartbeat names: not this
    /// device, not an actor any device's latest beat lists, not a rebase readers derive.
    fn silent_writers(&self, scan: &Scan, state: &MergedState) -> Vec<String> {
        let own = self.own_actors();
        let mut beaten: std::collections::HashSet<String> = std::collections::HashSet::new();
        for actor in crate::folder::beat_actors(&*self.inner.folder) {
            if let Some((_, beat)) = self.latest_beat(&actor) {
                beaten.extend(beat.actors);
            }
            beaten.insert(actor);
        }
        let rebased: std::collections::HashSet<String> = state
            .rebased
            .iter()
            .filter_map(|r| r.to.parse::<ChangeHash>().ok())
            .filter_map(|h| state.doc.get_change_meta_by_hash(&h))
            .map(|m| m.actor.to_hex_string())
            .collect();
        let writers: std::collections::BTreeSet<&str> =
            scan.ops.iter().map(|o| o.actor()).collect();
        writers
            .into_iter()
            .filter(|a| !own.contains(*a) && !beaten.contains(*a) && !rebased.contains(*a))
            .map(|a| match state.devices.get(a).filter(|n| !n.is_empty()) {
                Some(name) => format!("{name} ({})", &a[..a.len().min(8)]),
                None => a.to_string(),
            })
            .collect()
    }

    /// Compacts: folds the merged document and the files it covers into one SQLite
    /// snapshot, then deletes what it covers, in an order that never leaves a snapshot as
    /// the only copy of history:
    ///
    /// 1. build the snapshot in memory, publish it (temp, fsync, read-only, rename);
    /// 2. read it back from the folder and verify it (hash, integrity check, the document
    ///    loads with the same heads and number of changes);
    /// 3. keep a retention copy of the document in this device's local state;
    /// 4. publish the compaction record;
    /// 5. only then delete the op files and older snapshots it folds in — nothing else.
    ///
    /// A crash at any step leaves a folder that merges to the same document. The caller has
    /// made sure this device is alone (the CLI asks the user); nothing is lost even when
    /// that belief is wrong, since only files whose changes the new snapshot holds are
    /// deleted.
    pub fn compact(&self) -> Result<CompactOutcome> {
        self.compact_with_progress(|_| {})
    }

    /// [`Store::compact`], telling `progress` where it is (for a progress bar).
    pub fn compact_with_progress(
        &self,
        mut progress: impl FnMut(Progress),
    ) -> Result<CompactOutcome> {
        let started = Instant::now();
        self.whole_store("compact")?;
        let session = self.session(Name::Resolve)?;
        let device = session.device.clone().unwrap_or_default();
        let (files_before, bytes_before) = usage(&*self.inner.folder);
        let (scan, state, ops, snaps) = self.foldable(false)?;
        let docs = self.fold_documents(false)?;
        // Nothing to fold, unless this device holds changes the folder lost: the snapshot
        // writes them back (docs/FORMAT.md §14).
        if ops.is_empty()
            && snaps.len() <= 1
            && state.unprovided == 0
            && docs.iter().all(|d| d.ops.is_empty() && d.snaps.is_empty())
        {
            return Ok(CompactOutcome {
                snapshot: None,
                files_before,
                files_after: files_before,
                bytes_before,
                bytes_after: bytes_before,
                millis: started.elapsed().as_millis(),
            });
        }
        progress(Progress::Snapshot);
        self.keeps_every_document(&snaps, &docs)?;
        let name =
            self.publish_snapshot(&state.doc, &device, &ops, &snaps, &state.devices, &docs)?;
        // 5. Only now delete what the verified, recorded snapshot folds in.
        self.delete_folded(&scan, &ops, &snaps, &mut progress)?;
        self.delete_folded_documents(&docs);
        let (files_after, bytes_after) = usage(&*self.inner.folder);
        Ok(CompactOutcome {
            snapshot: Some(crate::folder::snapshot_rel(&name)),
            files_before,
            files_after,
            bytes_before,
            bytes_after,
            millis: started.elapsed().as_millis(),
        })
    }

    /// Compaction's last step: deletes the op files (`ops`), packs and older snapshots
    /// (`snaps`) the verified, recorded snapshot folds in, releases the outbox entries it
    /// holds, and makes the deletions durable. A deletion that fails leaves a file the
    /// snapshot covers (readers skip it; the next compaction deletes it).
    fn delete_folded(
        &self,
        scan: &Scan,
        ops: &[(String, String)],
        snaps: &[String],
        progress: &mut impl FnMut(Progress),
    ) -> Result<()> {
        let mut first = true;
        for (done, (path, _)) in ops.iter().enumerate() {
            self.remove_or_log(self.inner.root.join(path), "a folded op file");
            if std::mem::take(&mut first) {
                fault::at("deleting").map_err(Error::io(self.inner.root.join(path)))?;
            }
            if done % 1024 == 0 {
                progress(Progress::Deleting {
                    done,
                    total: ops.len(),
                });
            }
        }
        progress(Progress::Deleting {
            done: ops.len(),
            total: ops.len(),
        });
        // The verified snapshot and the retention copy now hold this device's folded changes.
        let folded_paths: std::collections::HashSet<&str> =
            ops.iter().map(|(p, _)| p.as_str()).collect();
        for kept in self.outbox().entries() {
            if folded_paths.contains(kept.rel().as_str()) {
                kept.release();
            }
        }
        // Packs whose every op file is folded go too (any device's: the snapshot holds them).
        for p in &scan.packs {
            if p.entry_rels().all(|r| folded_paths.contains(r.as_str())) {
                self.remove_or_log(self.inner.root.join(&p.rel), "a folded pack");
            }
        }
        for old in snaps {
            self.remove_or_log(self.inner.root.join(old), "a folded snapshot");
            if let Some(record) = crate::folder::record_rel(old) {
                self.remove_or_log(self.inner.root.join(record), "a folded compaction record");
            }
        }
        // Folders stay, even emptied: a sync tool that saw a folder deleted may refuse a
        // returning device's new files in it (Unison: "deleted vs changed"). The deletions
        // are made durable folder by folder.
        let mut dirs: Vec<&str> = ops
            .iter()
            .filter_map(|(p, _)| crate::folder::split_op_rel(p).map(|(actor, _)| actor))
            .collect();
        dirs.dedup();
        for d in dirs {
            self.sync_dir_or_log(crate::folder::layout::actor_ops(&self.inner.root, d));
        }
        self.sync_dir_or_log(crate::folder::layout::snapshots(&self.inner.root));
        Ok(())
    }

    /// The snapshot of `doc` as bytes, with its heads, change count and Automerge save.
    #[allow(clippy::type_complexity)]
    fn build_snapshot(
        &self,
        doc: &Automerge,
        device: &str,
        ops: &[(String, String)],
        snaps: &[String],
        devices: &std::collections::BTreeMap<String, String>,
        docs: &[DocFold],
    ) -> Result<(Vec<u8>, Vec<ChangeHash>, u64, Vec<u8>)> {
        self.build_snapshot_of(doc, device, (ops, snaps), devices, docs, None)
    }

    /// [`Store::build_snapshot`] of what `folds` names (op files, older snapshots), as a
    /// checkpoint of the device whose actor `checkpoint` names when there is one.
    #[allow(clippy::type_complexity)]
    pub(crate) fn build_snapshot_of(
        &self,
        doc: &Automerge,
        device: &str,
        (ops, snaps): (&[(String, String)], &[String]),
        devices: &std::collections::BTreeMap<String, String>,
        docs: &[DocFold],
        checkpoint: Option<&str>,
    ) -> Result<(Vec<u8>, Vec<ChangeHash>, u64, Vec<u8>)> {
        let heads: Vec<ChangeHash> = doc.get_heads();
        let changes = doc.stats().num_changes;
        let automerge = doc.save();
        let json = render::document(doc).to_string();
        // An encrypted store seals the document, its JSON and the device names, and names
        // no compacting device.
        let ring = self.keyring();
        let sealed = match ring.as_deref().map(|r| r.seal()) {
            Some(seal) if self.is_encrypted() => {
                let names = serde_json::to_vec(devices).expect("a map of strings serializes");
                Some((
                    seal.seal("snapshot-document", "", &automerge),
                    hex::encode(seal.seal("snapshot-json", "", json.as_bytes())),
                    hex::encode(seal.seal("snapshot-devices", "", &names)),
                ))
            }
            _ if self.is_encrypted() => return Err(self.locked()),
            _ => None,
        };
        let no_devices = std::collections::BTreeMap::new();
        let folded_snapshots: Vec<String> = snaps
            .iter()
            .chain(docs.iter().flat_map(|d| &d.snaps))
            .filter_map(|s| crate::folder::snapshot_name(s))
            .map(str::to_string)
            .collect();
        let rows: Vec<_> = docs.iter().map(|d| d.row.clone()).collect();
        let bytes = snapshot::encode(&NewSnapshot {
            store: &self.inner.marker.store_id,
            device: if sealed.is_some() { "" } else { device },
            created: now(),
            heads: heads.iter().map(ChangeHash::to_string).collect(),
            changes,
            automerge: sealed.as_ref().map_or(&automerge, |s| &s.0),
            json: sealed.as_ref().map_or(&json, |s| &s.1),
            folded_ops: ops,
            folded_snapshots: &folded_snapshots,
            devices: if sealed.is_some() {
                &no_devices
            } else {
                devices
            },
            sealed_devices: sealed.as_ref().map(|s| s.2.as_str()),
            docs: &rows,
            checkpoint,
            key: ring
                .as_deref()
                .filter(|_| sealed.is_some())
                .and_then(|r| r.current_check()),
        })
        .map_err(|e| Error::Internal {
            what: format!("the snapshot database could not be built: {e}"),
        })?;
        Ok((bytes, heads, changes, automerge))
    }

    /// Steps 1–4: build, publish, verify, retain, record. Returns the snapshot's name.
    pub(crate) fn publish_snapshot(
        &self,
        doc: &Automerge,
        device: &str,
        ops: &[(String, String)],
        snaps: &[String],
        devices: &std::collections::BTreeMap<String, String>,
        docs: &[DocFold],
    ) -> Result<String> {
        let owner = self.owner_actor()?;
        self.ensure_snapshot_feature(&owner, snapshot::FEATURE)?;
        if !docs.is_empty() {
            self.ensure_snapshot_feature(&owner, snapshot::DOCS_FEATURE)?;
        }
        let (bytes, heads, changes, automerge) =
            self.build_snapshot(doc, device, ops, snaps, devices, docs)?;
        let name = snapshot::doc_file_name(self.inner.doc_name.as_deref(), &bytes);
        self.publish_snapshot_file(&owner, &name, &bytes)?;
        self.verify_read_back(&name, &heads, changes, docs)?;
        self.retain(&name, &automerge)?;
        self.retain_documents(&name, docs)?;
        self.publish_record(&owner, &name, &bytes, &heads, device)?;
        Ok(name)
    }

    /// Compaction step 1: the snapshot's bytes go into `snapshots/` under `name`.
    fn publish_snapshot_file(&self, owner: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = crate::folder::layout::snapshots(&self.inner.root);
        let target = dir.join(name);
        let staged = self.stage(&dir, owner, bytes).map_err(Error::io(&dir))?;
        fault::at("snapshot-staged")
            .and_then(|()| self.publish(staged, &target))
            .and_then(|()| fault::at("snapshot-published"))
            .map_err(Error::io(&target))?;
        Ok(())
    }

    /// Compaction step 2: the snapshot is read back from the folder and verified, with the
    /// reader's own rules; one that does not read back as written is removed again.
    fn verify_read_back(
        &self,
        name: &str,
        heads: &[ChangeHash],
        changes: u64,
        docs: &[DocFold],
    ) -> Result<()> {
        let rel = crate::folder::snapshot_rel(name);
        let checked = verify(&self.source(), &rel, name, heads, changes)
            .and_then(|()| verify_rows(&self.source(), &rel, docs));
        if let Err(reason) = checked {
            let target = self.inner.root.join(&rel);
            self.remove_or_log(&target, "a snapshot that failed its read-back");
            return Err(Error::Unverified {
                path: target,
                reason,
            });
        }
        Ok(())
    }

    /// Compaction step 3: a retention copy of the document, in local state.
    pub(crate) fn retain(&self, name: &str, automerge: &[u8]) -> Result<()> {
        Retention::new(&self.inner.state.path())
            .keep(name, automerge)
            .and_then(|_| fault::at("retained"))
            .map_err(Error::io(self.inner.state.path()))?;
        Ok(())
    }

    /// Compaction step 4: the compaction record, before any deletion.
    fn publish_record(
        &self,
        owner: &str,
        name: &str,
        bytes: &[u8],
        heads: &[ChangeHash],
        device: &str,
    ) -> Result<()> {
        let record = record::encode(&Record {
            snapshot: name.to_string(),
            blake3: blake3::hash(bytes).to_hex().to_string(),
            size: bytes.len() as u64,
            heads: heads.iter().map(ChangeHash::to_string).collect(),
            device: if self.is_encrypted() {
                String::new()
            } else {
                device.to_string()
            },
            time: now(),
        });
        let dir = crate::folder::layout::snapshots(&self.inner.root);
        let record_path = dir.join(record::file_name(name).expect("a snapshot name"));
        let staged = self.stage(&dir, owner, &record).map_err(Error::io(&dir))?;
        self.publish(staged, &record_path)
            .and_then(|()| fault::at("recorded"))
            .map_err(Error::io(&record_path))?;
        Ok(())
    }

    fn ensure_snapshot_feature(&self, owner: &str, feature: &str) -> Result<()> {
        let note: &[u8] = if feature == snapshot::DOCS_FEATURE {
            b"snapshots in snapshots/ fold documents beside the root one: a build that reads documents only from their own files must not write\n"
        } else {
            b"compaction snapshots in snapshots/: a build that cannot read them must not write\n"
        };
        // The temp is this device's (its actor), so only this device ever removes it.
        crate::folder::layout::ensure_feature(&*self.inner.folder, owner, feature, note).map_err(
            Error::io(crate::folder::layout::feature(&self.inner.root, feature)),
        )
    }

    /// Refuses to fold away a snapshot of the root document that holds a document this
    /// compaction has no row for (one this device cannot open): its history would go.
    fn keeps_every_document(&self, snaps: &[String], docs: &[DocFold]) -> Result<()> {
        let kept: std::collections::HashSet<&str> =
            docs.iter().map(|d| d.row.name.as_str()).collect();
        for rel in snaps {
            let Ok(rows) = self.source().doc_rows(rel) else {
                continue;
            };
            for (name, _, _) in rows.names().unwrap_or_default() {
                if !kept.contains(name.as_str()) {
                    return Err(Error::Incomplete {
                        path: rel.clone(),
                        reason: format!(
                            "it holds document {name}, which this device cannot open: compacting would drop its history"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The documents' op files a compaction deletes (loose ones, and the documents' packs
    /// all of whose entries it folds), and their bytes.
    fn documents_usage(
        &self,
        docs: &[DocFold],
        sizes: &std::collections::BTreeMap<String, u64>,
    ) -> (usize, u64) {
        let folded: std::collections::HashSet<&str> = docs
            .iter()
            .flat_map(|d| &d.ops)
            .map(String::as_str)
            .collect();
        let mut files = 0;
        let mut bytes = 0;
        for rel in &folded {
            if let Some(len) = sizes.get(*rel) {
                files += 1;
                bytes += len;
            }
        }
        let folder = &*self.inner.folder;
        for actor in crate::folder::scan::pack_actors(folder) {
            for (rel, index) in crate::folder::scan::docs_packs(folder, &actor) {
                let entries = crate::folder::scan::docs_pack_entries(&rel, &actor, index);
                if !entries.is_empty()
                    && entries.iter().all(|(e, _)| folded.contains(e.rel.as_str()))
                {
                    files += 1;
                    bytes += sizes.get(&rel).copied().unwrap_or(0);
                }
            }
        }
        (files, bytes)
    }
}
