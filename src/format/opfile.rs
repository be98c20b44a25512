//! The op file: one Automerge change in a CBOR envelope.
//!
//! ```text
//! op file = CBOR map (definite length), exactly these keys in this order:
//!   "v"      unsigned integer   1 for a change to the root document, 2 for any other
//!   "doc"    text string        (v2 only) the document's id, 32 lowercase hex digits
//!   "device" text string        display name of the device that wrote the change
//!   "change" byte string        the Automerge change chunk (automerge `Change::raw_bytes`)
//! ```
//! A change to a document other than the root one is version 2, so a reader that knows no
//! documents skips it as newer instead of taking it for a change to the root document.
//! The envelope is a pure function of the change and the device name (no clock of its own:
//! the change carries its timestamp), so writing one change twice yields the same bytes and
//! the same file name. Readers ignore keys they do not know (room for additions within v1),
//! refuse a version above [`ENVELOPE_VERSION`], and refuse a `change` that is not a byte
//! string (an array of integers is what plain serde makes of a `Vec<u8>`: not v1).

use ciborium::Value;

use super::DecodeError;

/// The highest envelope version this build reads (and writes, for a document's change).
pub(crate) const ENVELOPE_VERSION: u64 = 2;
/// The envelope version of a change to the root document.
const ROOT_VERSION: u64 = 1;

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// The document, for a change to a document other than the root one.
    pub(crate) doc: Option<String>,
    pub(crate) device: String,
    pub(crate) change: Vec<u8>,
}

/// Encodes an envelope of a change to `doc` (`None`: the root document).
pub(crate) fn encode(device: &str, doc: Option<&str>, change: &[u8]) -> Vec<u8> {
    let version = if doc.is_some() {
        ENVELOPE_VERSION
    } else {
        ROOT_VERSION
    };
    let mut pairs = vec![(Value::Text("v".into()), Value::Integer(version.into()))];
    if let Some(doc) = doc {
        pairs.push((Value::Text("doc".into()), Value::Text(doc.into())));
    }
    pairs.push((Value::Text("device".into()), Value::Text(device.into())));
    pairs.push((Value::Text("change".into()), Value::Bytes(change.to_vec())));
    let value = Value::Map(pairs);
    let mut out = Vec::with_capacity(change.len() + device.len() + 24);
    ciborium::into_writer(&value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// Decodes an envelope, strictly.
pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let mut cursor = std::io::Cursor::new(bytes);
    let value: Value = ciborium::from_reader(&mut cursor)
        .map_err(|e| DecodeError::Damaged(format!("undecodable: {}", super::cbor::describe(&e))))?;
    if cursor.position() as usize != bytes.len() {
        return Err(DecodeError::TrailingBytes { what: "envelope" });
    }
    let Value::Map(entries) = value else {
        return Err(DecodeError::NotAMap { what: "envelope" });
    };
    let missing = |field: &'static str| DecodeError::MissingField {
        what: "envelope",
        field,
    };
    let wrong = |field: &'static str, expected: &'static str| DecodeError::WrongType {
        what: "envelope",
        field,
        expected,
    };
    let field = |name: &str| crate::format::cbor::field(&entries, name);
    let version = match field("v") {
        Some(Value::Integer(i)) => {
            u64::try_from(*i).map_err(|_| DecodeError::from("envelope version is negative"))?
        }
        Some(_) => return Err(wrong("version", "an integer")),
        None => return Err(missing("version")),
    };
    if version > ENVELOPE_VERSION {
        return Err(DecodeError::Newer {
            what: "envelope",
            found: version,
            known: ENVELOPE_VERSION,
        });
    }
    if version == 0 {
        return Err("envelope version 0 does not exist".into());
    }
    let doc = match (version, field("doc")) {
        (ROOT_VERSION, _) => None,
        (_, Some(Value::Text(t))) if crate::format::names::is_doc_id(t) => Some(t.clone()),
        (_, Some(_)) => return Err(wrong("doc", "a document id")),
        (_, None) => return Err(missing("doc")),
    };
    let device = match field("device") {
        Some(Value::Text(t)) => t.clone(),
        Some(_) => return Err(wrong("device", "a text string")),
        None => return Err(missing("device")),
    };
    let change = match field("change") {
        Some(Value::Bytes(b)) => b.clone(),
        Some(_) => return Err(wrong("change", "a byte string")),
        None => return Err(missing("change")),
    };
    Ok(Envelope {
        doc,
        device,
        change,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_change() -> Vec<u8> {
        use automerge::transaction::Transactable;
        let mut doc = automerge::Automerge::new();
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "k", "v").unwrap();
        tx.commit();
        doc.get_last_local_change().unwrap().raw_bytes().to_vec()
    }

    #[test]
    fn round_trip() {
        let change = sample_change();
        let bytes = encode("laptop", None, &change);
        let env = decode(&bytes).unwrap();
        assert_eq!(env.device, "laptop");
        assert_eq!(env.doc, None);
        assert_eq!(env.change, change);
        // A pure function: same input, same bytes.
        assert_eq!(encode("laptop", None, &change), bytes);
        // The root document's envelope is format 1's, byte for byte.
        assert_eq!(&bytes[..4], &[0xa3, 0x61, 0x76, 0x01]);
        let doc = "0123456789abcdef0123456789abcdef";
        let bytes = encode("laptop", Some(doc), &change);
        assert_eq!(&bytes[..4], &[0xa4, 0x61, 0x76, 0x02]);
        let env = decode(&bytes).unwrap();
        assert_eq!(env.doc.as_deref(), Some(doc));
        assert_eq!(env.change, change);
    }

    /// An envelope of version `v` with a device and a change and nothing else, by hand.
    fn bare(v: u64) -> Vec<u8> {
        let value = Value::Map(vec![
            (Value::Text("v".into()), Value::Integer(v.into())),
            (Value::Text("device".into()), Value::Text("x".into())),
            (Value::Text("change".into()), Value::Bytes(sample_change())),
        ]);
        let mut bytes = Vec::new();
        ciborium::into_writer(&value, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn a_document_envelope_needs_its_document() {
        assert_eq!(
            decode(&bare(2)),
            Err(DecodeError::MissingField {
                what: "envelope",
                field: "doc"
            })
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = encode("laptop", Some(&"a".repeat(32)), &sample_change());
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "truncated to {len} bytes decoded"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode("laptop", None, &sample_change());
        bytes.push(0);
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::TrailingBytes { what: "envelope" })
        );
    }

    #[test]
    fn future_version_is_refused() {
        assert_eq!(
            decode(&bare(3)),
            Err(DecodeError::Newer {
                what: "envelope",
                found: 3,
                known: 2
            })
        );
    }

    #[test]
    fn integer_array_instead_of_byte_string_is_refused() {
        #[derive(serde::Serialize)]
        struct Naive<'a> {
            v: u64,
            device: &'a str,
            change: Vec<u8>,
        }
        let mut bytes = Vec::new();
        ciborium::into_writer(
            &Naive {
                v: 1,
                device: "x",
                change: sample_change(),
            },
            &mut bytes,
        )
        .unwrap();
        assert_eq!(
            decode(&bytes).map_err(|e| e.to_string()),
            Err("envelope change is not a byte string".into())
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let change = sample_change();
        let value = Value::Map(vec![
            (Value::Text("v".into()), Value::Integer(1.into())),
            (Value::Text("device".into()), Value::Text("x".into())),
            (Value::Text("change".into()), Value::Bytes(change.clone())),
            (Value::Text("later".into()), Value::Bool(true)),
        ]);
        let mut bytes = Vec::new();
        ciborium::into_writer(&value, &mut bytes).unwrap();
        assert_eq!(decode(&bytes).unwrap().change, change);
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    proptest! {
        /// Any bytes, and any single-byte corruption of a valid file: an error, never a panic.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                at in any::<usize>(), flip in 1u8..=255) {
            let _ = super::decode(&bytes);
            let _ = crate::format::marker::decode(&bytes);
            let _ = crate::format::beat::decode(&bytes);
            let _ = crate::format::record::decode(&bytes);
            let _ = crate::format::snapshot::decode(&bytes);
            let mut valid = super::encode("dev", None, &bytes);
            let i = at % valid.len();
            valid[i] ^= flip;
            let _ = super::decode(&valid);
        }
    }
}
