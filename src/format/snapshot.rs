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
//!   A snapshot of a repo's documents (docs/FORMAT.md §18, feature `folded-docs`) adds:
//!     documents(name TEXT PRIMARY KEY, id TEXT NOT NULL, heads TEXT NOT NULL,
//!               changes INTEGER NOT NULL, automerge BLOB, json TEXT)
//!       each document beside the root one: its name in file names, its id, heads (JSON)
//!       and change count, its save and JSON; both NULL for a deleted document whose
//!       history the compaction dropped
//!     folded_doc_ops(name TEXT NOT NULL, actor_id INTEGER NOT NULL, seq INTEGER NOT NULL,
//!                    hash BLOB NOT NULL, PRIMARY KEY (name, actor_id, seq, hash)) WITHOUT ROWID
//!       the documents' op files it folds: ops/<actors.hex>/<name>-<seq>-<hash>.op
//!     folded_doc_op_files(name, path, hash)   a view that spells those paths out
//!   In an encrypted store (docs/FORMAT.md §16): document.automerge is the sealed save,
//!   document.json the sealed JSON in hex, meta device is empty, the devices table is
//!   empty and meta devices holds the sealed actor → name map (JSON) in hex.
//!     devices(actor TEXT PRIMARY KEY, name TEXT NOT NULL)
//!       the display name of each actor whose changes the document holds, as far as the
//!       compacting device knew it (from op files and earlier snapshots); optional: a
//!       snapshot without this table (older builds) names no device
//! ```

use rusqlite::{Connection, OpenFlags, OptionalExtension, MAIN_DB};

use super::DecodeError;
use crate::format::names::HASH_HEX_LEN;

/// The snapshot schema version this build writes and reads.
pub(crate) const SNAPSHOT_VERSION: u64 = 1;
/// Folder of snapshots and compaction records.
pub(crate) const SNAPSHOTS_DIR: &str = "snapshots";
/// Folder of checkpoints (docs/FORMAT.md §19): snapshots any device publishes without
/// deleting anything, so that a new device need not read every op file.
pub(crate) const CHECKPOINTS_DIR: &str = "checkpoints";
/// The feature marker a store gets with its first snapshot: builds that do not know
/// snapshots then refuse to write (they would not see what the snapshot holds).
pub(crate) const FEATURE: &str = "snapshots";
/// The feature marker a store gets with its first snapshot that folds documents beside the
/// root one: builds that read documents from their own files only then refuse to write.
pub(crate) const DOCS_FEATURE: &str = "folded-docs";

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
    /// The name of the document whose row of a repo's snapshot this is (`None`: the root
    /// document): what its sealed save is bound to.
    pub(crate) doc: Option<String>,
    /// A deleted document whose history the snapshot dropped (no save; its folded files
    /// are listed all the same).
    pub(crate) dropped: bool,
    /// Meta `checkpoint`: the actor (hex) of the device that published it as a checkpoint
    /// (`checkpoints/`, docs/FORMAT.md §19); `None` for a snapshot of `snapshots/`.
    pub(crate) checkpoint: Option<String>,
    /// In an encrypted store, the check of the key that sealed it when a rotation made
    /// that key (meta `key`); `None`: the store's first key.
    pub(crate) key: Option<String>,
}

/// A document beside the root one, as a snapshot of the repo holds it (docs/FORMAT.md §18).
#[derive(Debug, Clone)]
pub(crate) struct DocRow {
    /// Its name in file names.
    pub(crate) name: String,
    /// Its id (sealed, in hex, in an encrypted store).
    pub(crate) id: String,
    pub(crate) heads: Vec<String>,
    pub(crate) changes: u64,
    /// Its save and JSON (sealed in an encrypted store); `None` for a deleted document
    /// whose history the compaction drops.
    pub(crate) content: Option<(Vec<u8>, String)>,
    /// The op files of it the snapshot folds: (actor, seq, hash hex).
    pub(crate) folded: Vec<(String, u64, String)>,
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
    /// The documents beside the root one (a repo's compaction), by name.
    pub(crate) docs: &'a [DocRow],
    /// A checkpoint (docs/FORMAT.md §19): the publishing device's actor, in meta
    /// `checkpoint`; `folded_ops` then names the op files it covers, which stay.
    pub(crate) checkpoint: Option<&'a str>,
    /// The check of the rotated key that sealed it, in meta `key` (docs/FORMAT.md §16).
    pub(crate) key: Option<&'a str>,
}

/// Builds the database in memory and returns its bytes.
pub(crate) fn encode(s: &NewSnapshot<'_>) -> rusqlite::Result<Vec<u8>> {
    let mut db = Connection::open_in_memory()?;
    // A small document gets small pages: SQLite keeps at least one page per table and
    // index, and 4 KiB pages made a store of a few tiny op files grow to 45 KB.
    let docs_size: usize = s
        .docs
        .iter()
        .filter_map(|d| d.content.as_ref())
        .map(|(a, j)| a.len() + j.len())
        .sum();
    let small = s.automerge.len() + s.json.len() + docs_size < 64 * 1024;
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
    if !s.docs.is_empty() {
        db.execute_batch(
            "CREATE TABLE documents (name TEXT PRIMARY KEY, id TEXT NOT NULL,
                                     heads TEXT NOT NULL, changes INTEGER NOT NULL,
                                     automerge BLOB, json TEXT);
             CREATE TABLE folded_doc_ops (name TEXT NOT NULL, actor_id INTEGER NOT NULL,
                                          seq INTEGER NOT NULL, hash BLOB NOT NULL,
                                          PRIMARY KEY (name, actor_id, seq, hash))
                                          WITHOUT ROWID;
             CREATE VIEW folded_doc_op_files AS
               SELECT o.name AS name,
                      'ops/' || a.hex || '/' || o.name || '-' || printf('%010d', o.seq) || '-'
                      || lower(hex(o.hash)) || '.op' AS path, lower(hex(o.hash)) AS hash
               FROM folded_doc_ops o JOIN actors a USING (actor_id);",
        )?;
    }
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
        if let Some(owner) = s.checkpoint {
            meta.execute(("checkpoint", owner))?;
        }
        if let Some(key) = s.key {
            meta.execute(("key", key))?;
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
        if !s.docs.is_empty() {
            let mut docs = tx.prepare(
                "INSERT INTO documents (name, id, heads, changes, automerge, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut doc_ops = tx.prepare(
                "INSERT INTO folded_doc_ops (name, actor_id, seq, hash) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for d in s.docs {
                let heads = serde_json::to_string(&d.heads).expect("strings serialize");
                let (automerge, json) = match &d.content {
                    Some((a, j)) => (Some(a.as_slice()), Some(j.as_str())),
                    None => (None, None),
                };
                docs.execute((&d.name, &d.id, heads, d.changes as i64, automerge, json))?;
                for (actor, seq, hash) in &d.folded {
                    let next = ids.len() as i64;
                    let id = *ids.entry(actor.as_str()).or_insert_with(|| next);
                    if id == next {
                        actors.execute((id, actor))?;
                    }
                    let hash = hex::decode(hash).map_err(|_| rusqlite::Error::InvalidQuery)?;
                    doc_ops.execute((&d.name, id, *seq as i64, hash))?;
                }
            }
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
    check_length(bytes.get(..100).unwrap_or(bytes), bytes.len() as u64)?;
    let fail = |e: rusqlite::Error| format!("not a readable snapshot: {e}");
    let db = open_in_memory(bytes)?;
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(fail)?;
    if check != "ok" {
        return Err(format!("snapshot fails its integrity check: {check}").into());
    }
    Ok(db)
}

/// Checks an SQLite file's first 100 bytes (`head`) against its length: SQLite reads a short
/// image without complaint when the missing pages look unused, and the header says how long
/// the database is, so a cut one is caught here.
fn check_length(head: &[u8], size: u64) -> Result<(), DecodeError> {
    if head.len() < 100 || !head.starts_with(b"SQLite format 3\0") {
        return Err("not an SQLite database".into());
    }
    let page_size = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    let pages = u64::from(u32::from_be_bytes([head[28], head[29], head[30], head[31]]));
    if page_size.checked_mul(pages) != Some(size) {
        return Err("snapshot is truncated (its length does not match its header)".into());
    }
    Ok(())
}

/// A snapshot's `meta` value under `key`.
fn meta(db: &Connection, key: &str) -> Result<String, String> {
    db.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .map_err(|e| format!("snapshot has no {key}: {e}"))
}

/// Refuses a snapshot of a schema version this build does not know (newer: reported as
/// newer, not as damage).
fn check_version(db: &Connection) -> Result<(), DecodeError> {
    let version: u64 = meta(db, "format")?
        .parse()
        .map_err(|_| "bad snapshot format".to_string())?;
    if version > SNAPSHOT_VERSION {
        return Err(DecodeError::Newer {
            what: "snapshot",
            found: version,
            known: SNAPSHOT_VERSION,
        });
    }
    Ok(())
}

/// Reads a snapshot from its bytes (read-only, in memory): integrity check, schema
/// version, contents. `Err` says why it is skipped.
pub(crate) fn decode(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let db = open_checked(bytes)?;
    let mut snapshot = head(&db)?;
    snapshot.folded_ops = folded_ops(&db)?;
    Ok(snapshot)
}

/// The op files a snapshot in `bytes` folds (see [`decode`]), read from a copy of its own
/// without SQLite's integrity check: for a reader that checks the rest with
/// [`decode_head`] at the same time.
pub(crate) fn decode_folded(bytes: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    folded_ops(&open_in_memory(bytes)?)
}

/// A copy of the database in `bytes`, in memory, unchecked.
fn open_in_memory(bytes: &[u8]) -> Result<Connection, DecodeError> {
    let fail = |e: rusqlite::Error| format!("not a readable snapshot: {e}");
    let mut db = Connection::open_in_memory_with_flags(
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    db.deserialize_read_exact(MAIN_DB, bytes, bytes.len(), true)
        .map_err(fail)?;
    Ok(db)
}

/// `folded_ops` as (path, hash) pairs sorted by path: the rows of the table, their paths
/// spelt out here (the `folded_op_files` view does it a row at a time in SQL, several
/// times slower on 100,000 rows).
fn folded_ops(db: &Connection) -> Result<Vec<(String, String)>, DecodeError> {
    let fail = |e: rusqlite::Error| format!("not a readable snapshot: {e}");
    let mut actors: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    let mut q = db
        .prepare("SELECT actor_id, hex FROM actors")
        .map_err(fail)?;
    for row in q
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .map_err(fail)?
    {
        let (id, hex) = row.map_err(fail)?;
        actors.insert(id, hex);
    }
    let mut q = db
        .prepare("SELECT actor_id, seq, hash FROM folded_ops")
        .map_err(fail)?;
    let mut out = Vec::new();
    let mut rows = q.query([]).map_err(fail)?;
    while let Some(r) = rows.next().map_err(fail)? {
        let id: i64 = r.get(0).map_err(fail)?;
        let seq: i64 = r.get(1).map_err(fail)?;
        let hash = hex::encode(
            r.get_ref(2)
                .map_err(fail)?
                .as_blob()
                .map_err(|e| e.to_string())?,
        );
        let actor = actors
            .get(&id)
            .ok_or_else(|| "a folded op file of an actor it does not list".to_string())?;
        out.push((format!("ops/{actor}/{seq:010}-{hash}.op"), hash));
    }
    out.sort_unstable();
    Ok(out)
}

/// Everything of a snapshot in `bytes` but its folded op files (`folded_ops` empty): SQLite's
/// integrity check, the schema version, meta, the document and the device names.
pub(crate) fn decode_head(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    head(&open_checked(bytes)?)
}

/// [`decode_head`] of a database already opened and checked.
fn head(db: &Connection) -> Result<Snapshot, DecodeError> {
    let fail = |e: rusqlite::Error| format!("not a readable snapshot: {e}");
    let meta = |key: &str| meta(db, key);
    check_version(db)?;
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
        folded_ops: Vec::new(),
        doc: None,
        dropped: false,
        checkpoint: meta("checkpoint").ok(),
        key: meta("key").ok(),
    })
}

/// A snapshot file opened where it lies, read-only, for the rows of documents (docs/FORMAT.md
/// §18): its length must match its header, its schema version be known and its store be
/// `store`. Opening one document reads its row and the pages that lead to it, not the file.
pub(crate) struct DocRows {
    db: Connection,
    store: String,
    has_docs: bool,
    devices: Vec<(String, String)>,
    sealed_devices: Option<String>,
}

impl DocRows {
    pub(crate) fn open(path: &std::path::Path) -> Result<DocRows, DecodeError> {
        use std::io::Read;
        let mut head = [0u8; 100];
        let mut file = std::fs::File::open(path).map_err(|e| format!("unreadable: {e}"))?;
        let size = file
            .metadata()
            .map_err(|e| format!("unreadable: {e}"))?
            .len();
        file.read_exact(&mut head)
            .map_err(|_| "not an SQLite database".to_string())?;
        check_length(&head, size)?;
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("not a readable snapshot: {e}"))?;
        DocRows::of(db)
    }

    /// [`DocRows::open`] of a snapshot read whole into `bytes` (from a folder that is not on
    /// the local disk).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<DocRows, DecodeError> {
        check_length(bytes.get(..100).unwrap_or(bytes), bytes.len() as u64)?;
        DocRows::of(open_in_memory(bytes)?)
    }

    fn of(db: Connection) -> Result<DocRows, DecodeError> {
        let fail = |e: rusqlite::Error| format!("not a readable snapshot: {e}");
        let meta = |key: &str| meta(&db, key);
        check_version(&db)?;
        let has = |table: &str| -> Result<bool, String> {
            db.query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .map_err(fail)
        };
        let has_docs = has("documents")?;
        let devices = if has("devices")? {
            let mut q = db
                .prepare("SELECT actor, name FROM devices ORDER BY actor")
                .map_err(fail)?;
            let rows = q
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(fail)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(fail)?
        } else {
            Vec::new()
        };
        let store = meta("store")?;
        let sealed_devices = meta("devices").ok();
        Ok(DocRows {
            db,
            store,
            has_docs,
            devices,
            sealed_devices,
        })
    }

    /// The row of document `name`, as a [`Snapshot`] of it (sealed as written); `None` when
    /// the snapshot holds no such document.
    pub(crate) fn row(&self, name: &str) -> Result<Option<Snapshot>, DecodeError> {
        if !self.has_docs {
            return Ok(None);
        }
        let fail = |e: rusqlite::Error| format!("not a readable snapshot: {e}");
        let row = self
            .db
            .query_row(
                "SELECT heads, changes, automerge FROM documents WHERE name = ?1",
                [name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<Vec<u8>>>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(fail)?;
        let Some((heads, changes, automerge)) = row else {
            return Ok(None);
        };
        let heads: Vec<String> =
            serde_json::from_str(&heads).map_err(|e| format!("bad heads: {e}"))?;
        let mut q = self
            .db
            .prepare("SELECT path, hash FROM folded_doc_op_files WHERE name = ?1 ORDER BY path")
            .map_err(fail)?;
        let folded_ops = q
            .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(fail)?
            .collect::<rusqlite::Result<Vec<(String, String)>>>()
            .map_err(fail)?;
        Ok(Some(Snapshot {
            store: self.store.clone(),
            heads,
            changes: u64::try_from(changes).map_err(|_| "bad change count".to_string())?,
            dropped: automerge.is_none(),
            automerge: automerge.unwrap_or_default(),
            folded_ops,
            devices: self.devices.clone(),
            sealed_devices: self.sealed_devices.clone(),
            checkpoint: None,
            doc: Some(name.to_string()),
            key: self.meta("key"),
        }))
    }

    /// Every document the snapshot holds: (name, id as written, dropped).
    pub(crate) fn names(&self) -> Result<Vec<(String, String, bool)>, DecodeError> {
        if !self.has_docs {
            return Ok(Vec::new());
        }
        let fail = |e: rusqlite::Error| format!("not a readable snapshot: {e}");
        let mut q = self
            .db
            .prepare("SELECT name, id, automerge IS NULL FROM documents ORDER BY name")
            .map_err(fail)?;
        let rows = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(fail)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>().map_err(fail)?)
    }

    /// The documents' op files it folds (paths), every document's.
    pub(crate) fn folded_doc_files(&self) -> Vec<String> {
        if !self.has_docs {
            return Vec::new();
        }
        let Ok(mut q) = self.db.prepare("SELECT path FROM folded_doc_op_files") else {
            return Vec::new();
        };
        q.query_map([], |r| r.get(0))
            .map(|rows| rows.filter_map(|r| r.ok()).collect())
            .unwrap_or_default()
    }

    /// Whether the snapshot folds the snapshot named `name` (its `folded_snapshots`).
    pub(crate) fn folds(&self, name: &str) -> bool {
        self.db
            .query_row(
                "SELECT count(*) > 0 FROM folded_snapshots WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap_or(false)
    }

    /// The store id the snapshot names.
    pub(crate) fn store(&self) -> &str {
        &self.store
    }

    /// The `meta` value under `key`, if there is one.
    pub(crate) fn meta(&self, key: &str) -> Option<String> {
        meta(&self.db, key).ok()
    }
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
            docs: &[],
            checkpoint: None,
            key: None,
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
                docs: &[],
                checkpoint: None,
                key: None,
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
