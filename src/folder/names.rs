//! Names in the synced folder: what an op file is called, and what everything else is.
//!
//! ```text
//! STORE/ops/<actor>/<seq>-<hash>.op
//!   <actor>  the change's Automerge actor id, lowercase hex (2..=128 digits, even count)
//!   <seq>    the change's Automerge seq, decimal, zero-padded to SEQ_WIDTH digits
//!   <hash>   the first HASH_HEX_LEN hex digits (128 bits) of the BLAKE3 hash of the file
//! ```
//! A name is an op file name only in its canonical form (the one [`op_file_name`] writes), so
//! every (actor, seq, content) has exactly one name and duplicates are visible in a listing.
//! Anything else is classified, so `status` can say what it is; nothing is ever deleted.

use crate::fs::{TEMP_PREFIX, TEMP_SUFFIX};

/// Digits of the zero-padded seq in an op file name.
pub(crate) const SEQ_WIDTH: usize = 10;
/// Hex digits of the BLAKE3 hash in an op file name (128 bits).
pub(crate) const HASH_HEX_LEN: usize = 32;
/// Extension of op files.
pub(crate) const OP_EXT: &str = ".op";

/// The parts of a canonical op file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpName<'a> {
    pub(crate) seq: u64,
    pub(crate) hash: &'a str,
}

/// The canonical file name for a change with `seq` whose file bytes hash to `file_hash`.
pub(crate) fn op_file_name(seq: u64, file_hash: &blake3::Hash) -> String {
    let hex = file_hash.to_hex();
    format!(
        "{seq:0width$}-{}{OP_EXT}",
        &hex[..HASH_HEX_LEN],
        width = SEQ_WIDTH
    )
}

/// The hash part of an op file name for these file bytes.
pub(crate) fn file_hash_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex()[..HASH_HEX_LEN].to_string()
}

/// Parses a canonical op file name; `None` for anything else.
pub(crate) fn parse_op_name(name: &str) -> Option<OpName<'_>> {
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

/// What a name that is not one of crdtdir's own is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Foreign {
    /// A crdtdir temp file: a write in flight, or left by a crash (its owner removes it).
    CrdtdirTemp,
    /// A sync tool's partial download or temp file.
    SyncTemp,
    /// A sync tool's copy of a file it saw changed in two places.
    ConflictCopy,
    /// A cloud service's placeholder for a file not downloaded yet.
    CloudPlaceholder,
    /// Operating-system clutter.
    OsJunk,
    /// Anything else.
    Unknown,
}

impl Foreign {
    /// A short human reason, used in reports.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Foreign::CrdtdirTemp => "crdtdir temp file (a write in progress or interrupted)",
            Foreign::SyncTemp => "sync tool temp file",
            Foreign::ConflictCopy => "sync tool conflict copy",
            Foreign::CloudPlaceholder => "cloud placeholder (file not downloaded yet)",
            Foreign::OsJunk => "operating system file",
            Foreign::Unknown => "not a crdtdir file",
        }
    }
}

impl From<Foreign> for crate::report::ProblemKind {
    fn from(f: Foreign) -> Self {
        use crate::report::ProblemKind as K;
        match f {
            Foreign::CrdtdirTemp => K::CrdtdirTemp,
            Foreign::SyncTemp => K::SyncTemp,
            Foreign::ConflictCopy => K::ConflictCopy,
            Foreign::CloudPlaceholder => K::CloudPlaceholder,
            Foreign::OsJunk => K::OsJunk,
            Foreign::Unknown => K::Foreign,
        }
    }
}

/// Classifies a file name that is not a canonical crdtdir name.
pub(crate) fn classify(name: &str) -> Foreign {
    let lower = name.to_ascii_lowercase();
    if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
        return Foreign::CrdtdirTemp;
    }
    // Conflict copies first: a conflict copy of a temp is still a conflict copy.
    if lower.contains(".sync-conflict-")            // Syncthing
        || lower.contains(" (conflicted copy")      // Nextcloud, older Dropbox
        || lower.contains("'s conflicted copy")     // Dropbox: NAME (<device>'s conflicted copy DATE).ext
        || lower.contains("_conflict-")             // older Nextcloud / ownCloud
        || lower.contains(" (conflict on ")         // Unison copyonconflict
        || lower.contains("(case conflict")         // Dropbox
        || lower.contains("(selective sync conflict")
    {
        return Foreign::ConflictCopy;
    }
    if (name.starts_with(".syncthing.") && lower.ends_with(".tmp"))
        || (name.starts_with("~syncthing~") && lower.ends_with(".tmp"))
        || name.starts_with(".unison.")
        || name.starts_with(".~")
        || name.starts_with("~$")
        || lower.ends_with(".partial")
        || lower.ends_with(".part")
        || lower.ends_with(".!sync")
        || lower.ends_with(".tmp")
        || lower.ends_with(".crdownload")
        || lower.contains(".tmp.drivedownload")
    {
        return Foreign::SyncTemp;
    }
    if name.starts_with('.') && lower.ends_with(".icloud") {
        return Foreign::CloudPlaceholder;
    }
    if matches!(
        lower.as_str(),
        ".ds_store" | "thumbs.db" | "desktop.ini" | ".directory" | "icon\r" | "ehthumbs.db"
    ) || name.starts_with("._")
    {
        return Foreign::OsJunk;
    }
    Foreign::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_round_trip() {
        let h = blake3::hash(b"x");
        let name = op_file_name(7, &h);
        assert_eq!(name.len(), SEQ_WIDTH + 1 + HASH_HEX_LEN + OP_EXT.len());
        let parsed = parse_op_name(&name).unwrap();
        assert_eq!(parsed.seq, 7);
        assert_eq!(parsed.hash, file_hash_hex(b"x"));
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
        ] {
            assert_eq!(parse_op_name(&name), None, "{name}");
        }
    }

    #[test]
    fn foreign_names_are_classified() {
        let cases = [
            (".crdtdir-ab12-0011.tmp", Foreign::CrdtdirTemp),
            (".syncthing.0000000001-aa.op.tmp", Foreign::SyncTemp),
            ("~syncthing~0000000001-aa.op.tmp", Foreign::SyncTemp),
            ("0000000001-aa.op.partial", Foreign::SyncTemp),
            (".unison.0000000001-aa.op.123.unison.tmp", Foreign::SyncTemp),
            (".~lock.0000000001-aa.op#", Foreign::SyncTemp),
            (
                "0000000001-aa.sync-conflict-20240101-120000-ABCDEFG.op",
                Foreign::ConflictCopy,
            ),
            (
                "0000000001-aa (conflicted copy 2024-01-01).op",
                Foreign::ConflictCopy,
            ),
            (
                "0000000001-aa (Conflict on laptop 2024-01-01).op",
                Foreign::ConflictCopy,
            ),
            // Dropbox's own spelling, as its clients write it.
            (
                "0000000001-aa (Ann's MacBook Pro's conflicted copy 2024-01-01).op",
                Foreign::ConflictCopy,
            ),
            (
                "0000000001-aa (laptop's conflicted copy 2024-01-01 (1)).op",
                Foreign::ConflictCopy,
            ),
            (".0000000001-aa.op.icloud", Foreign::CloudPlaceholder),
            (".DS_Store", Foreign::OsJunk),
            ("Thumbs.db", Foreign::OsJunk),
            ("desktop.ini", Foreign::OsJunk),
            ("._0000000001-aa.op", Foreign::OsJunk),
            ("notes.txt", Foreign::Unknown),
        ];
        for (name, want) in cases {
            assert_eq!(classify(name), want, "{name}");
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
