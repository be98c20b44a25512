//! Compaction snapshots: `STORE/snapshots/<hash>.sqlite`, a real SQLite database that
//! `sqlite3 -readonly` can open and query. Its compaction record is [`super::record`].
//!
//! ```text
//! snapshots/<hash>.sqlite   <hash>: the first 32 hex digits of BLAKE3 of the file.
//!   Built in memory, never in WAL mode (rollback journal; no -wal/-shm/-journal file ever
//!   sits in the folder), written like an op file (temp, fsync, read-only, rename) and never
//!   opened for writing again. Pages of 512 bytes when the document and its JSON take under
//!   64 KiB, else 4096. Schema, version 1:
//!     meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)
//!       format  = "1"           snapshot schema version
//!       store   = <store id>
//!       device  = <display name of the compacting device>
//!       created = <unix seconds, the compacting device's clock>
//!       heads   = <JSON array of the document's Automerge heads, hex>
//!       changes = <number of changes in the document>
//!     document(id INTEGER PRIMARY KEY CHECK (id = 1), automerge BLOB NOT NULL, json TEXT NOT NULL)
//!       the Automerge save() of the folded document, and its JSON (docs/FORMAT.md §12)
//!     actors(actor_id INTEGER PRIMARY KEY, hex TEXT NOT NULL UNIQUE)
//!     folded_ops(actor_id INTEGER NOT NULL, seq INTEGER NOT NULL, hash BLOB NOT NULL,
//!                PRIMARY KEY (actor_id, seq, hash)) WITHOUT ROWID   (hash: the 16 bytes)
//!       exactly the op files whose changes the document holds and that compaction deletes:
//!       ops/<actors.hex>/<seq, 10 digits>-<hash>.op (compact: a path is ~75 bytes)
//!     folded_op_files(path, hash)   a view giving those paths, for people and sqlite3
//!     folded_snapshots(name TEXT PRIMARY KEY)
//!       older snapshots it folds in (deleted with their records)
//!   In an encrypted store (docs/FORMAT.md §16): document.automerge is the sealed save,
//!   document.json the sealed JSON in hex, meta device is empty, the devices table is
//!   empty and meta devices holds the sealed actor → name map (JSON) in hex.
//!     devices(actor TEXT PRIMARY KEY, name TEXT NOT NULL)
//!       the display name of each actor whose changes the document holds, as far as the
//!       compacting device knew it (from op files and earlier snapshots); optional: a
//!       snapshot without this table (older builds) names no device
//! ```

use rusqlite::{Connection, OpenFlags, MAIN_DB};

use super::DecodeError;
use crate::format::names::HASH_HEX_LEN;

/// The snapshot schema version this build writes and reads.
pub(crate) const SNAPSHOT_VERSION: u64 = 1;
/// Folder of snapshots and compaction records.
pub(crate) const SNAPSHOTS_DIR: &str = "snapshots";
/// The feature marker a store gets with its first snapshot: builds that do not know
/// snapshots then refuse to write (they would not see what the snapshot holds).
pub(crate) const FEATURE: &str = "snapshots";

/// What a snapshot holds, read back.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) store: String,
    pub(crate) heads: Vec<String>,
    pub(crate) changes: u64,
    pub(crate) automerge: Vec<u8>,
    pub(crate) folded_ops: Vec<(String, String)>,
    /// Actor (hex) → device display name.
    pub(crate) devices: Vec<(String, String)>,
    /// An encrypted store's sealed device names (hex), from meta `devices`.
    pub(crate) sealed_devices: Option<String>,
}

/// What goes into a new snapshot.
pub(crate) struct NewSnapshot<'a> {
    pub(crate) store: &'a str,
    pub(crate) device: &'a str,
    pub(crate) created: i64,
    pub(crate) heads: Vec<String>,
    pub(crate) changes: u64,
    pub(crate) automerge: &'a [u8],
    pub(crate) json: &'a str,
    pub(crate) folded_ops: &'a [(String, String)],
    pub(crate) folded_snapshots: &'a [String],
    pub(crate) devices: &'a std::collections::BTreeMap<String, String>,
    /// An encrypted store's sealed device names (hex), kept in meta `devices`.
    pub(crate) sealed_devices: Option<&'a str>,
}

/// Builds the database in memory and returns its bytes.
pub(crate) fn encode(s: &NewSnapshot<'_>) -> rusqlite::Result<Vec<u8>> {
    let mut db = Connection::open_in_memory()?;
    // A small document gets small pages: SQLite keeps at least one page per table and
    // index, and 4 KiB pages made a store of a few tiny op files grow to 45 KB.
    let small = s.automerge.len() + s.json.len() < 64 * 1024;
    db.execute_batch(if small {
        "PRAGMA page_size = 512;"
    } else {
        "PRAGMA page_size = 4096;"
    })?;
    db.execute_batch(
        "PRAGMA journal_mode = DELETE;
         CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE document (id INTEGER PRIMARY KEY CHECK (id = 1),
                                automerge BLOB NOT NULL, json TEXT NOT NULL);
         CREATE TABLE actors (actor_id INTEGER PRIMARY KEY, hex TEXT NOT NULL UNIQUE);
         CREATE TABLE folded_ops (actor_id INTEGER NOT NULL, seq INTEGER NOT NULL,
                                  hash BLOB NOT NULL, PRIMARY KEY (actor_id, seq, hash))
                                  WITHOUT ROWID;
         CREATE VIEW folded_op_files AS
           SELECT 'ops/' || a.hex || '/' || printf('%010d', o.seq) || '-' || lower(hex(o.hash))
                  || '.op' AS path, lower(hex(o.hash)) AS hash
           FROM folded_ops o JOIN actors a USING (actor_id);
         CREATE TABLE folded_snapshots (name TEXT PRIMARY KEY);
         CREATE TABLE devices (actor TEXT PRIMARY KEY, name TEXT NOT NULL);",
    )?;
    let tx = db.transaction()?;
    {
        let mut meta = tx.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2)")?;
        let heads = serde_json::to_string(&s.heads).expect("strings serialize");
        for (k, v) in [
            ("format", SNAPSHOT_VERSION.to_string()),
            ("store", s.store.to_string()),
            ("device", s.device.to_string()),
            ("created", s.created.to_string()),
            ("heads", heads),
            ("changes", s.changes.to_string()),
        ] {
            meta.execute((k, v))?;
        }
        if let Some(sealed) = s.sealed_devices {
            meta.execute(("devices", sealed))?;
        }
        tx.execute(
            "INSERT INTO document (id, automerge, json) VALUES (1, ?1, ?2)",
            (s.automerge, s.json),
        )?;
        let mut actors = tx.prepare("INSERT INTO actors (actor_id, hex) VALUES (?1, ?2)")?;
        let mut ops =
            tx.prepare("INSERT INTO folded_ops (actor_id, seq, hash) VALUES (?1, ?2, ?3)")?;
        let mut ids: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        for (path, hash) in s.folded_ops {
            let (actor, seq) = split_op_path(path).ok_or(rusqlite::Error::InvalidQuery)?;
            let next = ids.len() as i64;
            let id = *ids.entry(actor).or_insert_with(|| next);
            if id == next {
                actors.execute((id, actor))?;
            }
            let hash = hex::decode(hash).map_err(|_| rusqlite::Error::InvalidQuery)?;
            ops.execute((id, seq as i64, hash))?;
        }
        let mut snaps = tx.prepare("INSERT INTO folded_snapshots (name) VALUES (?1)")?;
        for name in s.folded_snapshots {
            snaps.execute([name])?;
        }
        let mut devices = tx.prepare("INSERT INTO devices (actor, name) VALUES (?1, ?2)")?;
        for (actor, name) in s.devices.iter().filter(|(_, n)| !n.is_empty()) {
            devices.execute((actor, name))?;
        }
    }
    tx.commit()?;
    Ok(db.serialize(MAIN_DB)?.to_vec())
}

/// The snapshot database in `bytes`, opened in memory once its length matches its header
/// and it passes SQLite's integrity check.
fn open_checked(bytes: &[u8]) -> Result<Connection, DecodeError> {
    // SQLite reads a short image without complaint when the missing pages look unused: the
    // header says how long the database is, so a cut one is caught here.
    if bytes.len() < 100 || !bytes.starts_with(b"SQLite format 3\0") {
        return Err("not an SQLite database".into());
    }
    let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65536,
        n => usize::from(n),
    };
    let pages = u32::from_be_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]) as usize;
    if page_size.checked_mul(pages) != Some(bytes.len()) {
        return Err("snapshot is truncated (its length does not match its header)".into());
    }
    let fail = |e: rusqlite::Error| format!("not a readable snapshot: {e}");
    let mut db = Connection::open_in_memory_with_flags(
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    db.deserialize_read_exact(MAIN_DB, bytes, bytes.len(), true)
        .map_err(fail)?;
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(fail)?;
    if check != "ok" {
        return Err(format!("snapshot fails its integrity check: {check}").into());
    }
    Ok(db)
}

/// Reads a snapshot from its bytes (read-only, in memory): integrity check, schema
/// version, contents. `Err` says why it is skipped.
pub(crate) fn decode(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let db = open_checked(bytes)?;
    let fail = |e: rusqlite::Error| format!("not a readable snapshot: {e}");
    let meta = |key: &str| -> Result<String, String> {
        db.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .map_err(|e| format!("snapshot has no {key}: {e}"))
    };
    let version: u64 = meta("format")?
        .parse()
        .map_err(|_| "bad snapshot format".to_string())?;
    if version > SNAPSHOT_VERSION {
        return Err(DecodeError::Newer {
            what: "snapshot",
            found: version,
            known: SNAPSHOT_VERSION,
        });
    }
    let heads: Vec<String> =
        serde_json::from_str(&meta("heads")?).map_err(|e| format!("bad heads: {e}"))?;
    let changes: u64 = meta("changes")?
        .parse()
        .map_err(|_| "bad change count".to_string())?;
    let automerge: Vec<u8> = db
        .query_row("SELECT automerge FROM document WHERE id = 1", [], |r| {
            r.get(0)
        })
        .map_err(fail)?;
    // Rows of two text columns.
    let pairs = |sql: &str| -> Result<Vec<(String, String)>, String> {
        let mut q = db.prepare(sql).map_err(fail)?;
        let rows = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(fail)?;
        rows.collect::<rusqlite::Result<Vec<(String, String)>>>()
            .map_err(fail)
    };
    let folded_ops = pairs("SELECT path, hash FROM folded_op_files ORDER BY path")?;
    // Optional: snapshots of older builds have no device names.
    let has_devices: bool = db
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'devices'",
            [],
            |r| r.get(0),
        )
        .map_err(fail)?;
    let devices = if has_devices {
        pairs("SELECT actor, name FROM devices ORDER BY actor")?
    } else {
        Vec::new()
    };
    let sealed_devices = meta("devices").ok();
    Ok(Snapshot {
        store: meta("store")?,
        devices,
        sealed_devices,
        heads,
        changes,
        automerge,
        folded_ops,
    })
}

/// The actor and seq of a canonical op file path `ops/<actor>/<seq>-<hash>.op`.
fn split_op_path(path: &str) -> Option<(&str, u64)> {
    let (actor, name) = crate::format::names::split_op_rel(path)?;
    // A snapshot folds the root document's changes: another document's op file is not one.
    let op = crate::format::names::parse_op_name(name).filter(|op| op.doc.is_none())?;
    Some((actor, op.seq))
}

/// The canonical file name of a snapshot with these bytes.
pub(crate) fn file_name(bytes: &[u8]) -> String {
    format!("{}.sqlite", &blake3::hash(bytes).to_hex()[..HASH_HEX_LEN])
}

/// The canonical file name of a snapshot of document `doc` (`None`: the root document) with
/// these bytes: `<hash>.sqlite`, or `<doc>-<hash>.sqlite` (docs/FORMAT.md §18).
pub(crate) fn doc_file_name(doc: Option<&str>, bytes: &[u8]) -> String {
    match doc {
        None => file_name(bytes),
        Some(doc) => format!("{doc}-{}", file_name(bytes)),
    }
}

/// The document of a snapshot or record name (`None`: the root document's), and the name
/// without it.
pub(crate) fn split_doc(name: &str) -> (Option<&str>, &str) {
    match name.split_at_checked(crate::format::names::DOC_ID_LEN + 1) {
        Some((prefix, rest))
            if prefix.ends_with('-')
                && crate::format::names::is_doc_id(&prefix[..prefix.len() - 1]) =>
        {
            (Some(&prefix[..prefix.len() - 1]), rest)
        }
        _ => (None, name),
    }
}

/// The hash part of a canonical snapshot (`.sqlite`) or record (`.record`) name, of the root
/// document or of another one (`<doc>-<hash>.sqlite`).
pub(crate) fn parse_name(name: &str) -> Option<(&str, bool)> {
    let name = split_doc(name).1;
    let (stem, is_record) = match name.strip_suffix(".sqlite") {
        Some(stem) => (stem, false),
        None => (name.strip_suffix(".record")?, true),
    };
    let ok =
        stem.len() == HASH_HEX_LEN && stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then_some((stem, is_record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_read_round_trip_and_damage() {
        let hash = "0123456789abcdef0123456789abcdef".to_string();
        let ops = vec![(format!("ops/aa/0000000001-{hash}.op"), hash)];
        let bytes = encode(&NewSnapshot {
            store: "s",
            device: "laptop",
            created: 5,
            heads: vec!["h".into()],
            changes: 3,
            automerge: b"doc",
            json: "{}",
            folded_ops: &ops,
            folded_snapshots: &[],
            devices: &[("aa".to_string(), "laptop".to_string())].into(),
            sealed_devices: None,
        })
        .unwrap();
        let snap = decode(&bytes).unwrap();
        assert_eq!(snap.automerge, b"doc");
        assert_eq!(snap.devices, [("aa".to_string(), "laptop".to_string())]);
        assert_eq!(snap.folded_ops, ops);
        assert_eq!(snap.changes, 3);
        // Not WAL: byte 18 and 19 of the header are 1 (legacy/rollback), not 2 (WAL).
        assert_eq!((bytes[18], bytes[19]), (1, 1));
        assert!(decode(&bytes[..bytes.len() / 2]).is_err());
        let mut flipped = bytes.clone();
        flipped[bytes.len() - 100] ^= 0xff;
        let _ = decode(&flipped); // must not panic; a flipped byte in free space may pass
        assert!(decode(b"not sqlite").is_err());
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// A snapshot with any byte flipped is refused or read, never a panic; a truncated
        /// one is refused.
        #[test]
        fn damaged_snapshots_never_panic(at in any::<usize>(), flip in 1u8..=255, cut in any::<usize>()) {
            let bytes = super::encode(&super::NewSnapshot {
                store: "s",
                device: "d",
                created: 1,
                heads: vec![],
                changes: 0,
                automerge: b"doc",
                json: "{}",
                folded_ops: &[],
                folded_snapshots: &[],
                devices: &Default::default(),
                sealed_devices: None,
            })
            .unwrap();
            let mut damaged = bytes.clone();
            let i = at % damaged.len();
            damaged[i] ^= flip;
            let _ = super::decode(&damaged);
            let keep = cut % bytes.len();
            prop_assert!(super::decode(&bytes[..keep]).is_err());
        }
    }
}
