//! Which documents each documents' pack holds, as this device last read their headers: a
//! cache, so that opening one document reads the headers of the packs that hold it only, not
//! of every pack in the folder. A pack's name is the hash of its bytes, so what a name held
//! once it holds for good; names the folder no longer lists are dropped.
//!
//! ```text
//! STATE/stores/<store id>/docs-packs   (unsynced; any damage: rebuilt from the headers)
//!   magic  "crdtdir-docs-packs 1\n"
//!   then per pack: u16 LE length, its path in the store (UTF-8), u32 LE count, then
//!   count document ids of 16 bytes each, sorted, each once
//! ```

use std::collections::BTreeMap;
use std::path::Path;

const MAGIC: &[u8] = b"crdtdir-docs-packs 1\n";

/// A document id as 16 bytes.
pub(crate) type DocKey = [u8; 16];

/// The documents each documents' pack holds, by the pack's path in the store.
#[derive(Debug, Default)]
pub(crate) struct DocsPacks {
    pub(crate) packs: BTreeMap<String, Vec<DocKey>>,
}

impl DocsPacks {
    /// The index at `path`; empty when it is not there or does not read.
    pub(crate) fn load(path: &Path) -> DocsPacks {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default()
    }

    /// Saves it (unsynced: a cache).
    pub(crate) fn save(&self, path: &Path) {
        if let Err(e) = crate::fs::replace_unsynced(path, &self.encode()) {
            tracing::debug!(error = %e, "the index of documents' packs was not saved (it is rebuilt)");
        }
    }

    /// True when the pack at `rel` is known and holds `doc`; `None` when it is not known.
    pub(crate) fn holds(&self, rel: &str, doc: &DocKey) -> Option<bool> {
        self.packs
            .get(rel)
            .map(|docs| docs.binary_search(doc).is_ok())
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (rel, docs) in &self.packs {
            out.extend_from_slice(&(rel.len() as u16).to_le_bytes());
            out.extend_from_slice(rel.as_bytes());
            out.extend_from_slice(&(docs.len() as u32).to_le_bytes());
            for doc in docs {
                out.extend_from_slice(doc);
            }
        }
        out
    }
}

/// The documents a documents' pack holds, sorted, each once (its rows are in document order).
pub(crate) fn docs_of(pack: &crate::format::pack::Index) -> Vec<DocKey> {
    let mut docs: Vec<DocKey> = pack
        .rows
        .iter()
        .filter_map(|r| key(r.doc.as_deref()?))
        .collect();
    docs.dedup();
    docs
}

/// The document id `doc` (hex) as 16 bytes.
pub(crate) fn key(doc: &str) -> Option<DocKey> {
    hex::decode(doc).ok()?.try_into().ok()
}

fn decode(bytes: &[u8]) -> Option<DocsPacks> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let mut packs = BTreeMap::new();
    let take = |n: usize, rest: &mut &[u8]| -> Option<Vec<u8>> {
        let (head, tail) = rest.split_at_checked(n)?;
        *rest = tail;
        Some(head.to_vec())
    };
    while !rest.is_empty() {
        let len = u16::from_le_bytes(take(2, &mut rest)?.try_into().ok()?) as usize;
        let rel = String::from_utf8(take(len, &mut rest)?).ok()?;
        let count = u32::from_le_bytes(take(4, &mut rest)?.try_into().ok()?) as usize;
        let ids = take(count.checked_mul(16)?, &mut rest)?;
        let docs: Vec<DocKey> = ids
            .chunks_exact(16)
            .map(|c| c.try_into().expect("16 bytes"))
            .collect();
        if !docs.windows(2).all(|w| w[0] < w[1]) {
            return None;
        }
        packs.insert(rel, docs);
    }
    Some(DocsPacks { packs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_any_damage_reads_as_empty() {
        let mut index = DocsPacks::default();
        index
            .packs
            .insert("packs/00ff/docs-a.pack".into(), vec![[1; 16], [7; 16]]);
        index.packs.insert("packs/00ff/docs-b.pack".into(), vec![]);
        let bytes = index.encode();
        let back = decode(&bytes).unwrap();
        assert_eq!(back.packs, index.packs);
        assert_eq!(back.holds("packs/00ff/docs-a.pack", &[7; 16]), Some(true));
        assert_eq!(back.holds("packs/00ff/docs-a.pack", &[2; 16]), Some(false));
        assert_eq!(back.holds("packs/00ff/docs-c.pack", &[7; 16]), None);
        for cut in 0..bytes.len() {
            if let Some(short) = decode(&bytes[..cut]) {
                // A cut at a pack's boundary reads as fewer packs, never as wrong ones.
                assert!(short.packs.iter().all(|(k, v)| index.packs[k] == *v));
            }
        }
    }
}
