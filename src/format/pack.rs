//! Packs: one immutable file holding a contiguous run of ONE actor's op files, written by
//! the device that owns the actor so the folder keeps a few files per device instead of one
//! per change.
//!
//! ```text
//! STORE/packs/<actor>/<first>-<last>-<hash>.pack
//!   <actor>         the actor of every change in it (lowercase hex)
//!   <first>,<last>  seq of its first and last change, zero-padded to 10 digits
//!   <hash>          the first 32 hex digits of the BLAKE3 hash of the whole file
//! pack =
//!   magic      13 bytes  "crdtdir-pack\n"
//!   version    u8        PACK_VERSION (= 1)
//!   actor      u8 length, then the actor id's bytes
//!   count      u32 LE    number of entries (= last - first + 1)
//!   index      count rows of: seq u64 LE, length u32 LE, BLAKE3 of the entry (32 bytes)
//!   check      16 bytes  the first 16 bytes of the BLAKE3 hash of everything above
//!   entries    the entries' bytes, in index order, back to back
//!
//! STORE/packs/<actor>/docs-<hash>.pack   the actor's changes to documents beside the root
//!   one (docs/FORMAT.md §18): the same layout with version 2 (DOCS_PACK_VERSION) and index
//!   rows of: doc (16 bytes), seq u64 LE, length u32 LE, BLAKE3 (32 bytes), in (doc, seq)
//!   order, each (doc, seq) once; any documents, any seqs
//! ```
//! An entry is the exact bytes of the op file `ops/<actor>/<seq>-<hash>.op` it stands for
//! (`ops/<actor>/<doc>-<seq>-<hash>.op` in a version 2 pack),
//! plain or sealed (docs/FORMAT.md §5 and §16): a reader lists it under that name, so a pack
//! and the loose file of one change are one file to a merge, and a pack entry and a loose
//! file with one (actor, seq) but other bytes are a fork like any other. Each entry is
//! verified alone against its row, so a damaged entry costs that entry only.

use super::DecodeError;
use crate::format::names::{HASH_HEX_LEN, SEQ_WIDTH};

/// The pack version of the root document's packs (this build writes and reads it).
pub(crate) const PACK_VERSION: u8 = 1;
/// The pack version of a pack of documents' changes (`docs-<hash>.pack`), the highest read.
pub(crate) const DOCS_PACK_VERSION: u8 = 2;
/// The start of a documents' pack name.
pub(crate) const DOCS_PACK_PREFIX: &str = "docs-";
/// Folder of packs.
pub(crate) const PACKS_DIR: &str = "packs";
/// The feature marker a store with packs carries: a build that cannot read packs must not
/// write (it would see their changes as lost).
pub(crate) const FEATURE: &str = "packs";
/// Extension of packs.
pub(crate) const PACK_EXT: &str = ".pack";
const MAGIC: &[u8; 13] = b"crdtdir-pack\n";
const ROW: usize = 8 + 4 + 32;
const DOC_ROW: usize = 16 + ROW;
const CHECK: usize = 16;

/// One entry of a pack's index, with where its bytes are in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    /// The document (in a documents' pack).
    pub(crate) doc: Option<String>,
    pub(crate) seq: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) hash: [u8; 32],
}

impl Row {
    /// The hash part of the op file name of this entry.
    pub(crate) fn name_hash(&self) -> String {
        hex::encode(&self.hash[..HASH_HEX_LEN / 2])
    }
}

/// A pack's header: its actor and its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    pub(crate) actor: String,
    pub(crate) rows: Vec<Row>,
}

/// A pack of `actor`'s op files, each `(seq, bytes)`, with consecutive seqs.
pub(crate) fn encode(actor: &str, entries: &[(u64, &[u8])]) -> Vec<u8> {
    let actor_bytes = hex::decode(actor).expect("an actor folder name is hex");
    assert!(actor_bytes.len() <= 255, "actor ids are at most 64 bytes");
    let body: usize = entries.iter().map(|(_, b)| b.len()).sum();
    let mut out =
        Vec::with_capacity(MAGIC.len() + 2 + actor_bytes.len() + 4 + entries.len() * ROW + body);
    out.extend_from_slice(MAGIC);
    out.push(PACK_VERSION);
    out.push(actor_bytes.len() as u8);
    out.extend_from_slice(&actor_bytes);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (seq, bytes) in entries {
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(blake3::hash(bytes).as_bytes());
    }
    let check = blake3::hash(&out);
    out.extend_from_slice(&check.as_bytes()[..CHECK]);
    for (_, bytes) in entries {
        out.extend_from_slice(bytes);
    }
    out
}

/// A pack of `actor`'s changes to documents beside the root one, each `(doc, seq, bytes)`,
/// in (doc, seq) order, each (doc, seq) once.
pub(crate) fn encode_docs(actor: &str, entries: &[(&str, u64, &[u8])]) -> Vec<u8> {
    let actor_bytes = hex::decode(actor).expect("an actor folder name is hex");
    assert!(actor_bytes.len() <= 255, "actor ids are at most 64 bytes");
    let body: usize = entries.iter().map(|(_, _, b)| b.len()).sum();
    let mut out = Vec::with_capacity(
        MAGIC.len() + 2 + actor_bytes.len() + 4 + entries.len() * DOC_ROW + body,
    );
    out.extend_from_slice(MAGIC);
    out.push(DOCS_PACK_VERSION);
    out.push(actor_bytes.len() as u8);
    out.extend_from_slice(&actor_bytes);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (doc, seq, bytes) in entries {
        out.extend_from_slice(&hex::decode(doc).expect("a document id is hex"));
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(blake3::hash(bytes).as_bytes());
    }
    let check = blake3::hash(&out);
    out.extend_from_slice(&check.as_bytes()[..CHECK]);
    for (_, _, bytes) in entries {
        out.extend_from_slice(bytes);
    }
    out
}

/// How many bytes of a pack to read to be sure of holding its header, given its first bytes
/// `None` if they are too few or not the start of a pack.
pub(crate) fn header_len(start: &[u8]) -> Option<usize> {
    let row = if *start.get(MAGIC.len())? >= DOCS_PACK_VERSION {
        DOC_ROW
    } else {
        ROW
    };
    let actor_len = *start.get(MAGIC.len() + 1)? as usize;
    let at = MAGIC.len() + 2 + actor_len;
    let count = u32::from_le_bytes(start.get(at..at + 4)?.try_into().ok()?) as usize;
    Some(at + 4 + count.checked_mul(row)? + CHECK)
}

/// Decodes a pack's header from its first bytes (the whole file will do). `Err` says why the
/// pack is not used at all.
pub(crate) fn decode_index(bytes: &[u8]) -> Result<Index, DecodeError> {
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a crdtdir pack".into());
    }
    let version = bytes[MAGIC.len()];
    if version > DOCS_PACK_VERSION {
        return Err(DecodeError::Newer {
            what: "pack",
            found: u64::from(version),
            known: u64::from(DOCS_PACK_VERSION),
        });
    }
    if version == 0 {
        return Err("pack version 0 does not exist".into());
    }
    let docs = version == DOCS_PACK_VERSION;
    let Some(len) = header_len(bytes).filter(|&l| l <= bytes.len()) else {
        return Err(DecodeError::Truncated {
            what: "pack header",
        });
    };
    let (head, check) = bytes[..len].split_at(len - CHECK);
    if &blake3::hash(head).as_bytes()[..CHECK] != check {
        return Err(DecodeError::CheckMismatch {
            what: "pack header",
        });
    }
    let actor_len = bytes[MAGIC.len() + 1] as usize;
    let actor_at = MAGIC.len() + 2;
    let actor = hex::encode(&bytes[actor_at..actor_at + actor_len]);
    let mut offset = len as u64;
    let mut rows: Vec<Row> = Vec::new();
    for row in head[actor_at + actor_len + 4..].chunks_exact(if docs { DOC_ROW } else { ROW }) {
        let (doc, row) = if docs {
            (Some(hex::encode(&row[..16])), &row[16..])
        } else {
            (None, row)
        };
        let seq = u64::from_le_bytes(row[..8].try_into().expect("8 bytes"));
        let entry_len = u32::from_le_bytes(row[8..12].try_into().expect("4 bytes"));
        let in_order = match rows.last() {
            None => true,
            // A documents' pack: (doc, seq) strictly increasing.
            Some(r) if docs => (r.doc.as_ref(), r.seq) < (doc.as_ref(), seq),
            Some(r) => r.seq.checked_add(1) == Some(seq),
        };
        if !in_order || seq == 0 {
            return Err(if docs {
                "pack rows are not in (document, seq) order".into()
            } else {
                "pack seqs are not consecutive".into()
            });
        }
        rows.push(Row {
            doc,
            seq,
            offset,
            len: entry_len,
            hash: row[12..].try_into().expect("32 bytes"),
        });
        offset += u64::from(entry_len);
    }
    if rows.is_empty() {
        return Err("pack is empty".into());
    }
    Ok(Index { actor, rows })
}

/// The bytes of entry `row` in `bytes` (the whole pack), verified against its hash.
pub(crate) fn entry<'a>(bytes: &'a [u8], row: &Row) -> Result<&'a [u8], String> {
    let start = usize::try_from(row.offset).map_err(|_| "pack entry out of range")?;
    let end = start + row.len as usize;
    let Some(entry) = bytes.get(start..end) else {
        return Err(format!(
            "entry for seq {} is past the end of the pack (truncated)",
            row.seq
        ));
    };
    check_entry(entry, row)?;
    Ok(entry)
}

/// Checks an entry's bytes against its row's hash.
pub(crate) fn check_entry(entry: &[u8], row: &Row) -> Result<(), String> {
    if blake3::hash(entry).as_bytes() != &row.hash {
        return Err(format!(
            "entry for seq {} does not match its hash (damaged)",
            row.seq
        ));
    }
    Ok(())
}

/// The canonical file name of a pack with these bytes, of seqs `first..=last`.
pub(crate) fn file_name(first: u64, last: u64, bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes).to_hex();
    format!(
        "{first:0w$}-{last:0w$}-{}{PACK_EXT}",
        &hash[..HASH_HEX_LEN],
        w = SEQ_WIDTH
    )
}

/// The canonical file name of a documents' pack with these bytes: `docs-<hash>.pack`.
pub(crate) fn docs_file_name(bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes).to_hex();
    format!("{DOCS_PACK_PREFIX}{}{PACK_EXT}", &hash[..HASH_HEX_LEN])
}

/// The hash of a canonical documents' pack name (`docs-<hash>.pack`).
pub(crate) fn parse_docs_name(name: &str) -> Option<&str> {
    let hash = name
        .strip_prefix(DOCS_PACK_PREFIX)?
        .strip_suffix(PACK_EXT)?;
    (hash.len() == HASH_HEX_LEN && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then_some(hash)
}

/// The first and last seq and the hash of a canonical pack name.
pub(crate) fn parse_name(name: &str) -> Option<(u64, u64, &str)> {
    let stem = name.strip_suffix(PACK_EXT)?;
    let mut parts = stem.splitn(3, '-');
    let (first, last, hash) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| s.len() == SEQ_WIDTH && s.bytes().all(|b| b.is_ascii_digit());
    let canonical = digits(first)
        && digits(last)
        && hash.len() == HASH_HEX_LEN
        && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !canonical {
        return None;
    }
    let (first, last) = (first.parse().ok()?, last.parse().ok()?);
    (first >= 1 && first <= last).then_some((first, last, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<u8>, Vec<Vec<u8>>) {
        let entries: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 10 + i]).collect();
        let refs: Vec<(u64, &[u8])> = entries
            .iter()
            .enumerate()
            .map(|(i, b)| (7 + i as u64, b.as_slice()))
            .collect();
        (encode("00ff", &refs), entries)
    }

    #[test]
    fn entries_round_trip_and_each_is_verified_alone() {
        let (pack, entries) = sample();
        let index = decode_index(&pack).unwrap();
        assert_eq!(index.actor, "00ff");
        assert_eq!(
            index.rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [7, 8, 9, 10, 11]
        );
        for (row, want) in index.rows.iter().zip(&entries) {
            assert_eq!(entry(&pack, row).unwrap(), want.as_slice());
            assert_eq!(row.name_hash(), crate::format::names::file_hash_hex(want));
        }
        // The header alone is enough for the index.
        let len = header_len(&pack).unwrap();
        assert_eq!(decode_index(&pack[..len]).unwrap(), index);
        // A flipped bit in one entry costs that entry only.
        let mut damaged = pack.clone();
        let row = &index.rows[2];
        damaged[row.offset as usize + 3] ^= 1;
        let index2 = decode_index(&damaged).unwrap();
        for (i, row) in index2.rows.iter().enumerate() {
            assert_eq!(entry(&damaged, row).is_ok(), i != 2, "entry {i}");
        }
        // A truncated pack keeps the entries it still holds.
        let cut = &pack[..index.rows[3].offset as usize + 2];
        let index3 = decode_index(cut).unwrap();
        assert!(entry(cut, &index3.rows[2]).is_ok());
        assert!(entry(cut, &index3.rows[3]).is_err());
    }

    #[test]
    fn a_damaged_header_or_a_newer_version_is_refused() {
        let (pack, _) = sample();
        let len = header_len(&pack).unwrap();
        for at in 0..len {
            let mut bad = pack.clone();
            bad[at] ^= 0x40;
            assert!(decode_index(&bad).is_err(), "flip at {at}");
        }
        let mut newer = pack.clone();
        newer[MAGIC.len()] = DOCS_PACK_VERSION + 1;
        assert!(matches!(
            decode_index(&newer),
            Err(DecodeError::Newer { .. })
        ));
        assert!(decode_index(&pack[..len - 1]).is_err());
    }

    #[test]
    fn a_documents_pack_round_trips_and_keeps_its_order() {
        let (a, b) = ("0".repeat(32), "f".repeat(32));
        let entries: Vec<Vec<u8>> = (0..3).map(|i| vec![i as u8; 5 + i]).collect();
        let rows = [
            (a.as_str(), 3u64, entries[0].as_slice()),
            (a.as_str(), 9, entries[1].as_slice()),
            (b.as_str(), 1, entries[2].as_slice()),
        ];
        let pack = encode_docs("00ff", &rows);
        let index = decode_index(&pack).unwrap();
        assert_eq!(index.actor, "00ff");
        let got: Vec<(Option<&str>, u64)> = index
            .rows
            .iter()
            .map(|r| (r.doc.as_deref(), r.seq))
            .collect();
        assert_eq!(got, [(Some(&*a), 3), (Some(&*a), 9), (Some(&*b), 1)]);
        for (row, want) in index.rows.iter().zip(&entries) {
            assert_eq!(entry(&pack, row).unwrap(), want.as_slice());
        }
        let len = header_len(&pack).unwrap();
        assert_eq!(decode_index(&pack[..len]).unwrap(), index);
        for at in 0..len {
            let mut bad = pack.clone();
            bad[at] ^= 0x40;
            assert!(decode_index(&bad).is_err(), "flip at {at}");
        }
        // Out of order: refused.
        let swapped = encode_docs("00ff", &[rows[2], rows[0]]);
        assert!(decode_index(&swapped).is_err());
        let name = docs_file_name(&pack);
        assert_eq!(
            parse_docs_name(&name),
            Some(&blake3::hash(&pack).to_hex()[..HASH_HEX_LEN])
        );
        assert_eq!(parse_name(&name), None, "not a root pack's name");
        assert_eq!(parse_docs_name(&file_name(1, 2, &pack)), None);
    }

    #[test]
    fn names_round_trip() {
        let (pack, _) = sample();
        let name = file_name(7, 11, &pack);
        let (first, last, hash) = parse_name(&name).unwrap();
        assert_eq!((first, last), (7, 11));
        assert_eq!(hash, &blake3::hash(&pack).to_hex()[..HASH_HEX_LEN]);
        for bad in [
            name.replace(".pack", ".op"),
            format!("x{name}"),
            name.replacen("0000000007", "7", 1),
            file_name(11, 7, &pack),
            file_name(0, 7, &pack),
        ] {
            assert_eq!(parse_name(&bad), None, "{bad}");
        }
    }
}
