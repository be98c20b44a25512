//! The store marker `STORE/crdtdir.store` and the feature markers `STORE/features/NAME`.
//!
//! ```text
//! crdtdir.store = CBOR map, written once by `init`, never modified:
//!   "format"  unsigned integer   store format version, FORMAT_VERSION (= 1)
//!   "store"   text string        random store id, 32 lowercase hex digits (128 bits)
//!   "sealed"  text string        only in an encrypted store: the key check (src/seal.rs);
//!                                every op file, beat and snapshot is sealed
//! features/NAME = one immutable file per format feature the store uses; NAME is
//!   [a-z0-9-]+, the content is a free-form note for people. Known: `snapshots`.
//! ```
//! A v1 store holds one document. A later format that holds several will announce itself
//! with a feature marker, so that this build keeps reading what it can and refuses to write.

use ciborium::Value;

use super::DecodeError;

/// The store format version this build writes and fully understands.
pub const FORMAT_VERSION: u64 = 1;
/// File name of the store marker.
pub(crate) const MARKER: &str = "crdtdir.store";
/// Folder of feature markers.
pub(crate) const FEATURES_DIR: &str = "features";
/// The feature marker of an encrypted store (sealed files: `crate::seal`).
pub(crate) const ENCRYPTED_FEATURE: &str = "encrypted";
/// An encrypted store whose key was rotated (docs/FORMAT.md §16): files sealed with a newer
/// key name it, so builds that do not know rotation must not write.
pub(crate) const ROTATED_FEATURE: &str = "rotated-keys";
/// Features this build understands.
pub(crate) const KNOWN_FEATURES: &[&str] = &[
    crate::format::snapshot::FEATURE,
    ENCRYPTED_FEATURE,
    crate::format::pack::FEATURE,
    DOCS_FEATURE,
    crate::format::snapshot::DOCS_FEATURE,
    ROTATED_FEATURE,
];
/// The feature marker of a store with documents beside its root one (`crate::repo`).
pub(crate) const DOCS_FEATURE: &str = "docs";

/// The decoded store marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) format: u64,
    pub(crate) store_id: String,
    /// The key check of an encrypted store.
    pub(crate) sealed: Option<String>,
}

/// Encodes a marker.
pub(crate) fn encode(marker: &Marker) -> Vec<u8> {
    let mut entries = vec![
        (
            Value::Text("format".into()),
            Value::Integer(marker.format.into()),
        ),
        (
            Value::Text("store".into()),
            Value::Text(marker.store_id.clone()),
        ),
    ];
    if let Some(check) = &marker.sealed {
        entries.push((Value::Text("sealed".into()), Value::Text(check.clone())));
    }
    let value = Value::Map(entries);
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// Decodes a marker. A newer `format` still decodes: the store is then read-only here.
pub(crate) fn decode(bytes: &[u8]) -> Result<Marker, DecodeError> {
    let corrupt =
        |reason: &str| DecodeError::Damaged(format!("not a crdtdir store marker ({reason})"));
    let value: Value =
        ciborium::from_reader(bytes).map_err(|e| corrupt(&super::cbor::describe(&e)))?;
    let Value::Map(entries) = value else {
        return Err(corrupt("not a map"));
    };
    let field = |name: &str| super::cbor::field(&entries, name);
    let format = match field("format") {
        Some(Value::Integer(i)) => u64::try_from(*i).map_err(|_| corrupt("bad format"))?,
        _ => return Err(corrupt("no format version")),
    };
    let store_id = match field("store") {
        Some(Value::Text(t))
            if t.len() == 32 && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            t.clone()
        }
        _ => return Err(corrupt("no store id")),
    };
    let sealed = match field("sealed") {
        None => None,
        Some(Value::Text(t)) if t.len() == 32 => Some(t.clone()),
        Some(_) => return Err(corrupt("bad key check")),
    };
    Ok(Marker {
        format,
        store_id,
        sealed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Marker {
            format: 1,
            store_id: "0123456789abcdef0123456789abcdef".into(),
            sealed: None,
        };
        assert_eq!(decode(&encode(&m)).unwrap(), m);
    }

    #[test]
    fn garbage_and_truncation_are_corrupt() {
        let m = Marker {
            format: 1,
            store_id: "0123456789abcdef0123456789abcdef".into(),
            sealed: None,
        };
        let bytes = encode(&m);
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err());
        }
        assert!(decode(b"hello").is_err());
    }

    #[test]
    fn newer_format_still_decodes() {
        let m = Marker {
            format: 9,
            store_id: "0123456789abcdef0123456789abcdef".into(),
            sealed: None,
        };
        assert_eq!(decode(&encode(&m)).unwrap().format, 9);
    }
}
