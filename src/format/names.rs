//! Names in the synced folder: what an op file is called, and what everything else is.
//!
//! ```text
//! STORE/ops/<actor>/<seq>-<hash>.op          a change to the store's root document
//! STORE/ops/<actor>/<doc>-<seq>-<hash>.op    a change to document <doc> (features/docs)
//!   <actor>  the change's Automerge actor id, lowercase hex (2..=128 digits, even count)
//!   <doc>    the document's id, DOC_ID_LEN lowercase hex digits
//!   <seq>    the change's Automerge seq (in its document), decimal, zero-padded to SEQ_WIDTH
//!   <hash>   the first HASH_HEX_LEN hex digits (128 bits) of the BLAKE3 hash of the file
//! ```
//! A format-1 reader that knows no documents finds no seq in a `<doc>-…` name (32 hex digits
//! are no canonical seq), so it never takes another document's change for the root's.
//! A name is an op file name only in its canonical form (the one [`op_file_name`] writes), so
//! every (actor, seq, content) has exactly one name and duplicates are visible in a listing.
//! Anything else is classified ([`crate::folder::quirks`]), so `status` can say what it is;
//! nothing is ever deleted.

/// Folder of the op files.
pub(crate) const OPS_DIR: &str = "ops";

/// `ops/<actor>/<name>`: the path of an op file.
pub(crate) fn op_rel(actor: &str, name: &str) -> String {
    format!("{OPS_DIR}/{actor}/{name}")
}

/// The actor folder and file name of an op file path `ops/<actor>/<name>`.
pub(crate) fn split_op_rel(rel: &str) -> Option<(&str, &str)> {
    let rest = rel.strip_prefix(OPS_DIR)?.strip_prefix('/')?;
    let (actor, name) = rest.split_once('/')?;
    (!name.contains('/')).then_some((actor, name))
}

/// Digits of the zero-padded seq in an op file name.
pub(crate) const SEQ_WIDTH: usize = 10;
/// Hex digits of the BLAKE3 hash in an op file name (128 bits).
pub(crate) const HASH_HEX_LEN: usize = 32;
/// Extension of op files.
pub(crate) const OP_EXT: &str = ".op";

/// The parts of a canonical op file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpName<'a> {
    /// The document, for a change to a document other than the root one.
    pub(crate) doc: Option<&'a str>,
    pub(crate) seq: u64,
    pub(crate) hash: &'a str,
}

/// Hex digits of a document id (128 bits).
pub(crate) const DOC_ID_LEN: usize = 32;

/// The canonical file name for a change to `doc` (`None`: the root document) with `seq`
/// whose file bytes hash to `file_hash`.
pub(crate) fn op_file_name(doc: Option<&str>, seq: u64, file_hash: &blake3::Hash) -> String {
    let hex = file_hash.to_hex();
    let name = op_name_with_hash(seq, &hex[..HASH_HEX_LEN]);
    match doc {
        None => name,
        Some(doc) => format!("{doc}-{name}"),
    }
}

/// The canonical file name for a change with `seq` whose file hash part is `hash_hex`.
pub(crate) fn op_name_with_hash(seq: u64, hash_hex: &str) -> String {
    format!("{seq:0width$}-{hash_hex}{OP_EXT}", width = SEQ_WIDTH)
}

/// The hash part of an op file name for these file bytes.
pub(crate) fn file_hash_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..HASH_HEX_LEN].to_string()
}

/// Parses a canonical op file name, of the root document or of another one; `None` for
/// anything else.
pub(crate) fn parse_op_name(name: &str) -> Option<OpName<'_>> {
    match name.split_at_checked(DOC_ID_LEN + 1) {
        Some((prefix, rest)) if prefix.ends_with('-') && is_lower_hex(&prefix[..DOC_ID_LEN]) => {
            let mut op = parse_root_op_name(rest)?;
            op.doc = Some(&prefix[..DOC_ID_LEN]);
            Some(op)
        }
        _ => parse_root_op_name(name),
    }
}

/// True for a canonical document id: DOC_ID_LEN lowercase hex digits.
pub(crate) fn is_doc_id(id: &str) -> bool {
    id.len() == DOC_ID_LEN && is_lower_hex(id)
}

/// Parses a canonical op file name of the root document (format 1's only kind).
fn parse_root_op_name(name: &str) -> Option<OpName<'_>> {
    let stem = name.strip_suffix(OP_EXT)?;
    let (seq, hash) = stem.split_once('-')?;
    if !seq.bytes().all(|b| b.is_ascii_digit()) || !is_lower_hex(hash) {
        return None;
    }
    if hash.len() != HASH_HEX_LEN {
        return None;
    }
    // Only the canonical spelling counts: `7-…` and `00000000007-…` are not op files.
    let canonical = seq.len() == SEQ_WIDTH || (seq.len() > SEQ_WIDTH && !seq.starts_with('0'));
    if !canonical {
        return None;
    }
    Some(OpName {
        doc: None,
        seq: seq.parse().ok()?,
        hash,
    })
}

/// True for a canonical actor directory name.
pub(crate) fn is_actor_dir(name: &str) -> bool {
    (2..=128).contains(&name.len()) && name.len().is_multiple_of(2) && is_lower_hex(name)
}

fn is_lower_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_round_trip() {
        let h = blake3::hash(b"x");
        let name = op_file_name(None, 7, &h);
        assert_eq!(name.len(), SEQ_WIDTH + 1 + HASH_HEX_LEN + OP_EXT.len());
        let parsed = parse_op_name(&name).unwrap();
        assert_eq!(parsed.seq, 7);
        assert_eq!(parsed.doc, None);
        assert_eq!(parsed.hash, file_hash_hex(b"x"));
        let doc = "0123456789abcdef0123456789abcdef";
        let name = op_file_name(Some(doc), 7, &h);
        let parsed = parse_op_name(&name).unwrap();
        assert_eq!((parsed.doc, parsed.seq), (Some(doc), 7));
        assert_eq!(parsed.hash, file_hash_hex(b"x"));
        // A reader of format 1 (the root parse alone) sees no op file in it.
        assert_eq!(parse_root_op_name(&name), None);
    }

    #[test]
    fn non_canonical_names_are_not_op_files() {
        let hash = file_hash_hex(b"x");
        for name in [
            format!("7-{hash}.op"),
            format!("00000000007-{hash}.op"),
            format!("0000000007-{}.op", hash.to_uppercase()),
            format!("0000000007-{}.op", &hash[..31]),
            format!("0000000007-{hash}.op.tmp"),
            format!("0000000007-{hash}"),
            format!("+000000007-{hash}.op"),
            format!("0000000007-{hash}.sync-conflict-20240101-120000-ABCDEF.op"),
            format!("0123456789ABCDEF0123456789abcdef-0000000007-{hash}.op"),
            format!("0123456789abcdef0123456789abcde-0000000007-{hash}.op"),
            format!("0123456789abcdef0123456789abcdef-7-{hash}.op"),
            format!("0123456789abcdef0123456789abcdef_0000000007-{hash}.op"),
        ] {
            assert_eq!(parse_op_name(&name), None, "{name}");
        }
    }

    #[test]
    fn actor_dirs() {
        assert!(is_actor_dir("00ff"));
        assert!(!is_actor_dir("0"));
        assert!(!is_actor_dir("0F"));
        assert!(!is_actor_dir("abc"));
        assert!(!is_actor_dir(".stversions"));
    }
}
