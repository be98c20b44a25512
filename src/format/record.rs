//! The compaction record: published after a snapshot was read back and verified, and BEFORE
//! anything it covers is deleted.
//!
//! ```text
//! snapshots/<hash>.record   <hash>: the same as its snapshot's name
//!   CBOR map: "v" RECORD_VERSION (= 1), "snapshot" <file name>, "blake3" <full hex hash>,
//!   "size" <bytes>, "heads" [hex], "device" <name>, "time" <unix seconds>
//! ```
//! A record whose snapshot is missing or invalid means this folder's history is incomplete
//! (the sync tool delivered the deletions, not the snapshot).

use ciborium::Value;

use super::DecodeError;

/// The record version this build writes and the highest it reads.
pub(crate) const RECORD_VERSION: u64 = 1;
/// The extension of a record's name.
pub(crate) const RECORD_EXT: &str = ".record";

/// A compaction record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) snapshot: String,
    pub(crate) blake3: String,
    pub(crate) size: u64,
    pub(crate) heads: Vec<String>,
    pub(crate) device: String,
    pub(crate) time: i64,
}

/// Encodes a record.
pub(crate) fn encode(r: &Record) -> Vec<u8> {
    let value = Value::Map(vec![
        (
            Value::Text("v".into()),
            Value::Integer(RECORD_VERSION.into()),
        ),
        (
            Value::Text("snapshot".into()),
            Value::Text(r.snapshot.clone()),
        ),
        (Value::Text("blake3".into()), Value::Text(r.blake3.clone())),
        (Value::Text("size".into()), Value::Integer(r.size.into())),
        (
            Value::Text("heads".into()),
            Value::Array(r.heads.iter().map(|h| Value::Text(h.clone())).collect()),
        ),
        (Value::Text("device".into()), Value::Text(r.device.clone())),
        (Value::Text("time".into()), Value::Integer(r.time.into())),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// Decodes a record, strictly; a version above [`RECORD_VERSION`] is `Newer`.
pub(crate) fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let mut cursor = std::io::Cursor::new(bytes);
    let value: Value = ciborium::from_reader(&mut cursor).map_err(|e| super::cbor::describe(&e))?;
    if cursor.position() as usize != bytes.len() {
        return Err(DecodeError::TrailingBytes { what: "record" });
    }
    let Value::Map(entries) = value else {
        return Err(DecodeError::NotAMap { what: "record" });
    };
    let field = |name: &str| super::cbor::field(&entries, name);
    let missing = |field: &'static str| DecodeError::MissingField {
        what: "record",
        field,
    };
    let uint = |name: &'static str| {
        field(name)
            .and_then(Value::as_integer)
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| missing(name))
    };
    let version = uint("v")?;
    if version > RECORD_VERSION {
        return Err(DecodeError::Newer {
            what: "compaction record",
            found: version,
            known: RECORD_VERSION,
        });
    }
    if version == 0 {
        return Err("record version 0 does not exist".into());
    }
    let text = |name: &'static str| {
        field(name)
            .and_then(Value::as_text)
            .map(str::to_string)
            .ok_or_else(|| missing(name))
    };
    Ok(Record {
        snapshot: text("snapshot")?,
        blake3: text("blake3")?,
        size: uint("size")?,
        heads: field("heads")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|v| v.as_text().map(str::to_string)).collect())
            .ok_or_else(|| missing("heads"))?,
        device: text("device")?,
        time: field("time")
            .and_then(Value::as_integer)
            .and_then(|i| i64::try_from(i).ok())
            .ok_or_else(|| missing("time"))?,
    })
}

/// The name of the record of the snapshot named `snapshot` (`<hash>.sqlite`); `None` for
/// a name that is not a canonical snapshot name.
pub(crate) fn file_name(snapshot: &str) -> Option<String> {
    let prefix = match super::snapshot::split_doc(snapshot).0 {
        Some(doc) => format!("{doc}-"),
        None => String::new(),
    };
    match super::snapshot::parse_name(snapshot)? {
        (hash, false) => Some(format!("{prefix}{hash}{RECORD_EXT}")),
        (_, true) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            snapshot: "a.sqlite".into(),
            blake3: "ff".into(),
            size: 9,
            heads: vec!["h".into()],
            device: "d".into(),
            time: 1,
        }
    }

    #[test]
    fn round_trip() {
        assert_eq!(decode(&encode(&sample())), Ok(sample()));
    }

    #[test]
    fn truncated_records_are_damaged_and_newer_ones_newer() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err_and(|e| e.kind() == crate::ProblemKind::Damaged));
        }
        let mut v: Value = ciborium::from_reader(&bytes[..]).unwrap();
        if let Value::Map(m) = &mut v {
            m[0].1 = Value::Integer(2.into());
        }
        let mut future = Vec::new();
        ciborium::into_writer(&v, &mut future).unwrap();
        assert_eq!(
            decode(&future),
            Err(DecodeError::Newer {
                what: "compaction record",
                found: 2,
                known: 1
            })
        );
    }

    #[test]
    fn a_record_is_named_after_its_snapshot() {
        let hash = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            file_name(&format!("{hash}.sqlite")),
            Some(format!("{hash}.record"))
        );
        assert_eq!(file_name(&format!("{hash}.record")), None);
        assert_eq!(file_name("x.sqlite"), None);
    }
}
