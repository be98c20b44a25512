//! Reading snapshots: each one verified (hash, SQLite integrity, schema version, store id,
//! document and heads) before its document counts.

use crate::folder::Source;

use automerge::Automerge;

use crate::folder::scan::Scan;
use crate::report::{Problem, ProblemKind};

/// A snapshot read back from the folder and verified.
pub(crate) struct ValidSnapshot {
    pub(crate) rel: String,
    pub(crate) snapshot: crate::format::snapshot::Snapshot,
    pub(crate) doc: Automerge,
}

/// The folder's snapshots: the valid ones, and the problems.
pub(crate) struct Snapshots {
    pub(crate) valid: Vec<ValidSnapshot>,
    pub(crate) problems: Vec<Problem>,
}

/// Reads and verifies every snapshot: its hash against its name, SQLite's integrity
/// check, its schema version, its store id, and that Automerge loads its document.
pub(crate) fn load_snapshots(store: &Source<'_>, store_id: &str, scan: &Scan) -> Snapshots {
    let mut out = Snapshots {
        valid: Vec::new(),
        problems: Vec::new(),
    };
    for rel in &scan.snapshots {
        let name = crate::folder::snapshot_name(rel).unwrap_or_default();
        if let (Some(doc), (None, _)) = (store.doc, crate::format::snapshot::split_doc(name)) {
            match doc_row(store, store_id, rel, doc) {
                Ok(v) => out.valid.push(v),
                Err((kind, reason)) => out.problems.push(Problem::new(kind, rel.clone(), reason)),
            }
            continue;
        }
        let verdict = read_whole(store, store_id, rel);
        match verdict {
            Ok(v) => out.valid.push(v),
            Err((kind, reason)) => out.problems.push(Problem::new(kind, rel.clone(), reason)),
        }
    }
    for rel in &scan.records {
        if store.doc.is_some()
            && crate::folder::snapshot_name(rel)
                .is_some_and(|n| crate::format::snapshot::split_doc(n).0.is_none())
        {
            continue; // the root document's reader reports it
        }
        let problem = match store.folder.read(rel) {
            Err(e) => Problem::unreadable(rel.clone(), &e),
            Ok(bytes) => match crate::format::record::decode(&bytes) {
                Ok(_) => continue,
                Err(e) => Problem::new(
                    e.kind(),
                    rel.clone(),
                    format!("not a readable compaction record: {e}"),
                ),
            },
        };
        out.problems.push(problem);
    }
    out
}

/// The snapshot (or checkpoint) at `rel`, read whole and verified: its hash against its
/// name, SQLite's integrity check, its schema version, its store id, and that Automerge
/// loads its document with the heads it claims.
pub(crate) fn read_whole(
    store: &Source<'_>,
    store_id: &str,
    rel: &str,
) -> Result<ValidSnapshot, (ProblemKind, String)> {
    let damaged = |reason: String| (ProblemKind::Damaged, reason);
    let bytes = store
        .folder
        .read(rel)
        .map_err(|e| (ProblemKind::Unreadable, format!("unreadable: {e}")))?;
    let name = rel.rsplit('/').next().unwrap_or_default();
    if crate::format::snapshot::file_name(&bytes) != crate::format::snapshot::split_doc(name).1 {
        return Err(damaged(
            "content does not match the hash in its name (damaged)".into(),
        ));
    }
    tracing::debug!(rel, bytes = bytes.len(), "snapshot read and hashed");
    // The list of folded op files (100,000 rows for a big history) is read on another
    // core while this one checks the database and loads the document.
    let (head, folded) = std::thread::scope(|s| {
        let folded = s.spawn(|| crate::format::snapshot::decode_folded(&bytes));
        let head = (|| {
            let mut snapshot = crate::format::snapshot::decode_head(&bytes)
                .map_err(|e| (e.kind(), e.to_string()))?;
            store.open_snapshot(&mut snapshot)?;
            if snapshot.store != store_id {
                return Err((ProblemKind::Foreign, "snapshot of another store".into()));
            }
            let doc = loaded(&snapshot)?;
            Ok((snapshot, doc))
        })();
        (head, folded.join())
    });
    let (mut snapshot, doc) = head?;
    snapshot.folded_ops = match folded {
        Ok(Ok(folded)) => folded,
        Ok(Err(e)) => return Err((e.kind(), e.to_string())),
        Err(_) => return Err(damaged("its folded op files do not read".into())),
    };
    tracing::debug!(
        rel,
        folded = snapshot.folded_ops.len(),
        "snapshot verified, its document loaded"
    );
    Ok(ValidSnapshot {
        rel: rel.to_string(),
        snapshot,
        doc,
    })
}

/// The document a verified snapshot (or a row of one) holds, loaded by the reader's rule,
/// with the heads it claims.
fn loaded(
    snapshot: &crate::format::snapshot::Snapshot,
) -> Result<Automerge, (ProblemKind, String)> {
    let damaged = |reason: String| (ProblemKind::Damaged, reason);
    let doc = crate::doc::load(&snapshot.automerge)
        .map_err(|e| damaged(format!("the snapshot's document: {e}")))?;
    let heads = crate::doc::heads_hex(&doc.get_heads());
    let mut claimed = snapshot.heads.clone();
    claimed.sort();
    if heads != claimed {
        return Err(damaged(
            "the snapshot's document does not have the heads it claims".into(),
        ));
    }
    Ok(doc)
}

/// Document `doc`'s row of a snapshot of the root document (a repo's compaction folds every
/// document, docs/FORMAT.md §18), read where the file lies: its length against its header,
/// its schema and store, and the row's document with the heads it claims. The whole file's
/// hash and integrity are the root document's reader's to check. A snapshot without a row
/// of the document is an empty base (it was made before the document, or without
/// documents); a deleted document whose history it dropped is one too, with its folded
/// files.
fn doc_row(
    store: &Source<'_>,
    store_id: &str,
    rel: &str,
    doc: &str,
) -> Result<ValidSnapshot, (ProblemKind, String)> {
    let rows = store.doc_rows(rel).map_err(|e| (e.kind(), e.to_string()))?;
    if rows.store() != store_id {
        return Err((ProblemKind::Foreign, "snapshot of another store".into()));
    }
    let row = rows.row(doc).map_err(|e| (e.kind(), e.to_string()))?;
    let Some(mut snapshot) = row else {
        let snapshot = crate::format::snapshot::Snapshot {
            store: store_id.to_string(),
            heads: Vec::new(),
            changes: 0,
            automerge: Vec::new(),
            folded_ops: Vec::new(),
            devices: Vec::new(),
            sealed_devices: None,
            doc: Some(doc.to_string()),
            dropped: false,
            checkpoint: None,
            key: None,
        };
        return Ok(ValidSnapshot {
            rel: rel.to_string(),
            snapshot,
            doc: crate::doc::new_doc(),
        });
    };
    store.open_snapshot(&mut snapshot)?;
    let doc = if snapshot.dropped {
        crate::doc::new_doc()
    } else {
        loaded(&snapshot)?
    };
    Ok(ValidSnapshot {
        rel: rel.to_string(),
        snapshot,
        doc,
    })
}
