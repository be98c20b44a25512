//! The store marker `STORE/crdtdir.store` and the feature markers `STORE/features/NAME`.
//!
//! ```text
//! crdtdir.store = CBOR map, written once by `init`, never modified:
//!   "format"  unsigned integer   store format version, FORMAT_VERSION (= 1)
//!   "store"   text string        random store id, 32 lowercase hex digits (128 bits)
//! features/NAME = one immutable file per format feature the store uses; NAME is
//!   [a-z0-9-]+, the content is a free-form note for people. Known: `snapshots`.
//! ```
//! A v1 store holds one document. A later format that holds several will announce itself
//! with a feature marker, so that this build keeps reading what it can and refuses to write.

use std::path::Path;

use ciborium::Value;

use crate::error::{Error, Result};

/// The store format version this build writes and fully understands.
pub const FORMAT_VERSION: u64 = 1;
/// File name of the store marker.
pub(crate) const MARKER: &str = "crdtdir.store";
/// Folder of feature markers.
pub(crate) const FEATURES_DIR: &str = "features";
/// Features this build understands.
pub(crate) const KNOWN_FEATURES: &[&str] = &[crate::format::snapshot::FEATURE];

/// The decoded store marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) format: u64,
    pub(crate) store_id: String,
}

pub(crate) fn encode(marker: &Marker) -> Vec<u8> {
    let value = Value::Map(vec![
        (
            Value::Text("format".into()),
            Value::Integer(marker.format.into()),
        ),
        (
            Value::Text("store".into()),
            Value::Text(marker.store_id.clone()),
        ),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<Marker> {
    let corrupt = |reason: &str| Error::Corrupt {
        path: path.to_path_buf(),
        reason: format!("not a crdtdir store marker ({reason})"),
    };
    let value: Value =
        ciborium::from_reader(bytes).map_err(|e| corrupt(&crate::format::cbor::describe(&e)))?;
    let Value::Map(entries) = value else {
        return Err(corrupt("not a map"));
    };
    let field = |name: &str| crate::format::cbor::field(&entries, name);
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
    Ok(Marker { format, store_id })
}

/// Reads the feature markers: the names this build does not know, and the entries of the
/// features folder that are not feature markers at all (sync-tool clutter).
pub(crate) fn read_features(store: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let dir = store.join(FEATURES_DIR);
    let mut unknown = Vec::new();
    let mut clutter = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((unknown, clutter)),
        Err(e) => return Err(Error::io(&dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_feature_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'));
        if !is_feature_name {
            clutter.push(name);
        } else if !KNOWN_FEATURES.contains(&name.as_str()) {
            unknown.push(name);
        }
    }
    unknown.sort();
    clutter.sort();
    Ok((unknown, clutter))
}

/// Reads the marker of the store at `root`: `NoStore` when there is none, `Corrupt` when it
/// is not a regular file or does not decode.
pub(crate) fn read(root: &Path) -> Result<Marker> {
    let path = root.join(MARKER);
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoStore {
                path: root.to_path_buf(),
            })
        }
        Err(e) => return Err(Error::io(&path)(e)),
        // A FIFO or a folder under the marker's name must not hang or confuse a reader.
        Ok(m) if !m.is_file() => {
            return Err(Error::Corrupt {
                path,
                reason: "not a crdtdir store marker (not a regular file)".into(),
            })
        }
        Ok(_) => {}
    }
    let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
    decode(&bytes, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Marker {
            format: 1,
            store_id: "0123456789abcdef0123456789abcdef".into(),
        };
        assert_eq!(decode(&encode(&m), Path::new("x")).unwrap(), m);
    }

    #[test]
    fn garbage_and_truncation_are_corrupt() {
        let m = Marker {
            format: 1,
            store_id: "0123456789abcdef0123456789abcdef".into(),
        };
        let bytes = encode(&m);
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len], Path::new("x")).is_err());
        }
        assert!(decode(b"hello", Path::new("x")).is_err());
    }

    #[test]
    fn newer_format_still_decodes() {
        let m = Marker {
            format: 9,
            store_id: "0123456789abcdef0123456789abcdef".into(),
        };
        assert_eq!(decode(&encode(&m), Path::new("x")).unwrap().format, 9);
    }
}
