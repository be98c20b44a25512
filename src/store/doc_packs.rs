//! Documents' packs (docs/FORMAT.md §18): a device folds its own loose op files of every
//! document beside the root one into packs of many documents, `packs/<actor>/docs-<hash>.pack`,
//! so ten thousand small documents cost the folder a few files per device, as one document
//! does. The root document's handle does it, as part of its packing.
//!
//! 1. **Republish** a kept copy whose pack the folder lost.
//! 2. **Pack** this device's loose op files of documents that no documents' pack of its actor
//!    holds yet (a (document, seq) written twice, a fork, waits): `size` at a time, the kept
//!    copy first, then the pack (temp, fsync, no-clobber rename, fsync the folder).
//! 3. **Delete the loose files** a pack holds once the pack in the folder reads back whole
//!    and its kept copy is older than [`crate::PACK_GRACE_SECS`]: heartbeats carry no
//!    document's heads yet, so the grace period alone says the other devices had the time
//!    to receive it (the kept copy puts a lost pack back, and devices that merged hold the
//!    changes and write them back, §18).
//! 4. **Release** a kept copy older than [`crate::RETENTION_SECS`] whose pack reads back whole.
//!
//! ```text
//! STATE/stores/<store id>/packs/<actor>/docs-<hash>.pack    kept copy
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{names, opfile, pack};
use crate::fs::{self, fault};
use crate::local::kept::KeptFile;
use crate::pack::{Mode, PackOutcome};
use crate::store::Store;

/// One of this device's loose op files of a document.
#[derive(Debug, Clone)]
struct Loose {
    doc: String,
    seq: u64,
    hash: String,
    name: String,
}

impl Store {
    /// Packing of documents' changes for this device's actors `own` (the root document's
    /// handle, its writer lock held): the steps in the module comment, into `out`.
    pub(crate) fn pack_docs(
        &self,
        own: &[String],
        mode: Mode,
        kept_dir: &Path,
        out: &mut PackOutcome,
    ) -> Result<()> {
        let size = self.pack_size_or_default();
        for actor in own {
            let copies = kept_docs_copies(&kept_dir.join(actor));
            out.republished
                .extend(self.republish_docs_packs(actor, &copies)?);
            let published = crate::folder::scan::docs_packs(&*self.inner.folder, actor);
            let packed: HashSet<(String, u64, String)> = published
                .iter()
                .flat_map(|(_, index)| &index.rows)
                .map(|r| (r.doc.clone().unwrap_or_default(), r.seq, r.name_hash()))
                .collect();
            let loose = self.loose_doc_files(actor);
            let unpacked: Vec<&Loose> = loose
                .iter()
                .filter(|l| !packed.contains(&(l.doc.clone(), l.seq, l.hash.clone())))
                .collect();
            let chunks: Vec<&[&Loose]> = match mode {
                Mode::Existing => Vec::new(),
                Mode::Full => unpacked.chunks_exact(size).collect(),
                Mode::All if unpacked.len() >= 2 => unpacked.chunks(size).collect(),
                Mode::All => Vec::new(),
            };
            let mut wrote = false;
            for chunk in chunks {
                if let Some(rel) = self.write_docs_pack(actor, chunk, kept_dir)? {
                    out.packed += chunk.len();
                    out.packs.push(rel);
                    wrote = true;
                }
            }
            let published = if wrote {
                crate::folder::scan::docs_packs(&*self.inner.folder, actor)
            } else {
                published
            };
            let copies = kept_docs_copies(&kept_dir.join(actor));
            let (deleted, kept_loose) =
                self.delete_docs_loose(actor, &published, &copies, &loose)?;
            out.deleted += deleted;
            out.kept_loose += kept_loose;
            for copy in &copies {
                let rel = crate::folder::layout::pack_rel(actor, &copy.name);
                if !copy.file.within_retention() && self.reads_back_whole(&rel).is_ok() {
                    copy.file.release("a kept copy of a documents' pack");
                }
            }
        }
        Ok(())
    }

    /// This device's loose op files of documents under `actor` whose (document, seq) has
    /// one name only (two names: a fork, which waits), in (document, seq) order.
    fn loose_doc_files(&self, actor: &str) -> Vec<Loose> {
        let dir = crate::folder::layout::actor_ops_rel(actor);
        let mut by_slot: BTreeMap<(String, u64), Vec<Loose>> = BTreeMap::new();
        for entry in self.inner.folder.list(&dir).into_iter().flatten() {
            let name = entry.name;
            let Some(op) = names::parse_op_name(&name) else {
                continue;
            };
            let Some(doc) = op.doc else { continue };
            let loose = Loose {
                doc: doc.to_string(),
                seq: op.seq,
                hash: op.hash.to_string(),
                name: name.clone(),
            };
            by_slot
                .entry((loose.doc.clone(), loose.seq))
                .or_default()
                .push(loose);
        }
        by_slot
            .into_values()
            .filter(|names| names.len() == 1)
            .flatten()
            .collect()
    }

    /// Writes one documents' pack of `chunk` (their bytes must still match their names):
    /// the kept copy, then the pack. `None` when a file changed or went meanwhile.
    fn write_docs_pack(
        &self,
        actor: &str,
        chunk: &[&Loose],
        kept_dir: &Path,
    ) -> Result<Option<String>> {
        let dir = crate::folder::layout::actor_ops_rel(actor);
        let mut files = Vec::with_capacity(chunk.len());
        for l in chunk {
            match self.inner.folder.read(&format!("{dir}/{}", l.name)) {
                Ok(bytes) if names::file_hash_hex(&bytes) == l.hash => files.push(bytes),
                _ => return Ok(None),
            }
        }
        let refs: Vec<(&str, u64, &[u8])> = chunk
            .iter()
            .zip(&files)
            .map(|(l, b)| (l.doc.as_str(), l.seq, b.as_slice()))
            .collect();
        let bytes = pack::encode_docs(actor, &refs);
        let name = pack::docs_file_name(&bytes);
        let copy_dir = kept_dir.join(actor);
        fs::create_private_dir_durably(&copy_dir)
            .and_then(|()| fs::replace_local(&copy_dir.join(&name), &bytes))
            .and_then(|()| fault::at("pack-kept"))
            .map_err(Error::io(&copy_dir))?;
        self.publish_docs_pack(actor, &name, &bytes)?;
        Ok(Some(crate::folder::layout::pack_rel(actor, &name)))
    }

    /// Publishes a documents' pack (no clobber: a file already under its name holds the
    /// same bytes, or is a torn copy the scan skips until it is replaced).
    fn publish_docs_pack(&self, actor: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = crate::folder::layout::actor_packs(&self.inner.root, actor);
        let target = dir.join(name);
        let staged = self.stage(&dir, actor, bytes).map_err(Error::io(&dir))?;
        self.inner.memory.watched.published(target.clone());
        let rel = crate::folder::layout::pack_rel(actor, name);
        if self.inner.folder.read(&rel).is_ok_and(|have| have != bytes) {
            // A torn copy under the name (a sync tool's partial delivery): replaced.
            self.publish_over_damaged(staged, &target)
        } else {
            self.publish_new(staged, &target).map(drop)
        }
        .and_then(|()| fault::at("pack-published"))
        .map_err(Error::io(&target))
    }

    /// Step 1: the kept copies whose pack the folder lost (or holds torn) are published
    /// again. Returns their paths.
    fn republish_docs_packs(&self, actor: &str, copies: &[DocsCopy]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut folded: Option<HashSet<String>> = None;
        for copy in copies {
            let rel = crate::folder::layout::pack_rel(actor, &copy.name);
            if self.reads_back_whole(&rel).is_ok() {
                continue;
            }
            let Some(bytes) = copy.bytes() else { continue };
            // A pack a compaction folded went on purpose: its copy is released instead.
            let folded = folded.get_or_insert_with(|| self.folded_doc_files());
            let all_folded = pack::decode_index(&bytes).is_ok_and(|index| {
                crate::folder::scan::docs_pack_entries(&rel, actor, index)
                    .iter()
                    .all(|(e, _)| folded.contains(&e.rel))
            });
            if all_folded {
                copy.file.release("a kept copy of a folded documents' pack");
                continue;
            }
            self.publish_docs_pack(actor, &copy.name, &bytes)?;
            out.push(rel);
        }
        Ok(out)
    }

    /// The documents' op files (paths) the snapshots of the root document in the folder
    /// fold, whichever document's.
    fn folded_doc_files(&self) -> HashSet<String> {
        let (snapshots, _) = crate::folder::scan::snapshots_of(&*self.inner.folder, None);
        snapshots
            .iter()
            .filter_map(|rel| {
                crate::format::snapshot::DocRows::open(&self.inner.root.join(rel)).ok()
            })
            .filter(|rows| rows.store() == self.inner.marker.store_id)
            .flat_map(|rows| rows.folded_doc_files())
            .collect()
    }

    /// Step 3: the loose files the packs hold go, pack by pack, once the pack reads back
    /// whole and its kept copy is past the grace period. Returns (deleted, kept).
    fn delete_docs_loose(
        &self,
        actor: &str,
        published: &[(String, pack::Index)],
        copies: &[DocsCopy],
        loose: &[Loose],
    ) -> Result<(usize, usize)> {
        let here: HashSet<&str> = loose.iter().map(|l| l.name.as_str()).collect();
        let dir = crate::folder::layout::actor_ops(&self.inner.root, actor);
        let (mut deleted, mut kept) = (0, 0);
        for (rel, index) in published {
            let held: Vec<String> = index
                .rows
                .iter()
                .map(|r| {
                    let doc = r.doc.as_deref().unwrap_or_default();
                    format!("{doc}-{}", names::op_name_with_hash(r.seq, &r.name_hash()))
                })
                .filter(|name| here.contains(name.as_str()))
                .collect();
            if held.is_empty() {
                continue;
            }
            let name = rel.rsplit('/').next().unwrap_or_default();
            let aged = copies
                .iter()
                .any(|c| c.name == name && c.file.age_secs() >= crate::PACK_GRACE_SECS);
            if !aged || self.reads_back_whole(rel).is_err() {
                kept += held.len();
                continue;
            }
            for (i, name) in held.iter().enumerate() {
                if i > 0 {
                    fault::at("loose-deleting").map_err(Error::io(&dir))?;
                }
                self.remove_file(&dir.join(name))
                    .map_err(Error::io(dir.join(name)))?;
                deleted += 1;
            }
            self.sync_dir_or_log(&dir);
        }
        Ok((deleted, kept))
    }

    /// The documents' pack at `rel` read back whole: its bytes match its name, its header
    /// decodes, every entry matches its row, and its last entry opens as a change of the
    /// document its row names.
    fn reads_back_whole(&self, rel: &str) -> std::result::Result<(), String> {
        let bytes = self.inner.folder.read(rel).map_err(|e| e.to_string())?;
        let name = rel.rsplit('/').next().unwrap_or_default();
        if pack::docs_file_name(&bytes) != name {
            return Err("its bytes do not match its name".into());
        }
        let index = pack::decode_index(&bytes).map_err(|e| e.to_string())?;
        let mut last = None;
        for row in &index.rows {
            last = Some((row, pack::entry(&bytes, row)?));
        }
        let (row, entry) = last.ok_or("empty pack")?;
        let context = crate::seal::op_context(row.doc.as_deref(), &index.actor, row.seq);
        let plain = self
            .source()
            .open("op", &context, entry)
            .map_err(|(_, r)| r)?;
        let envelope = opfile::decode(&plain).map_err(|e| e.to_string())?;
        let named = envelope
            .doc
            .as_deref()
            .and_then(|id| self.source().doc_name(id));
        if named != row.doc {
            return Err("an entry of another document than its row says".into());
        }
        automerge::Change::from_bytes(envelope.change).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A kept copy of one of this device's documents' packs.
#[derive(Debug)]
struct DocsCopy {
    name: String,
    file: KeptFile,
}

impl DocsCopy {
    /// Its bytes, if they still match its name.
    fn bytes(&self) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.file.path()).ok()?;
        (pack::docs_file_name(&bytes) == self.name).then_some(bytes)
    }
}

/// The kept copies of documents' packs in `dir` (one actor's).
fn kept_docs_copies(dir: &Path) -> Vec<DocsCopy> {
    let mut out: Vec<DocsCopy> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            pack::parse_docs_name(&name)?;
            Some(DocsCopy {
                name,
                file: KeptFile::new(e.path()),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
