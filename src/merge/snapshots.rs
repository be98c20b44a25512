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
        let verdict = (|| -> Result<ValidSnapshot, (ProblemKind, String)> {
            let damaged = |reason: String| (ProblemKind::Damaged, reason);
            let bytes = std::fs::read(store.join(rel))
                .map_err(|e| (ProblemKind::Unreadable, format!("unreadable: {e}")))?;
            let name = crate::folder::snapshot_name(rel).unwrap_or_default();
            if crate::format::snapshot::file_name(&bytes)
                != crate::format::snapshot::split_doc(name).1
            {
                return Err(damaged(
                    "content does not match the hash in its name (damaged)".into(),
                ));
            }
            let mut snapshot =
                crate::format::snapshot::decode(&bytes).map_err(|e| (e.kind(), e.to_string()))?;
            store.open_snapshot(&mut snapshot)?;
            if snapshot.store != store_id {
                return Err((ProblemKind::Foreign, "snapshot of another store".into()));
            }
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
            Ok(ValidSnapshot {
                rel: rel.clone(),
                snapshot,
                doc,
            })
        })();
        match verdict {
            Ok(v) => out.valid.push(v),
            Err((kind, reason)) => out.problems.push(Problem::new(kind, rel.clone(), reason)),
        }
    }
    for rel in &scan.records {
        let problem = match std::fs::read(store.join(rel)) {
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
