//! The one CBOR idiom every crdtdir file format shares: a map with text keys.

use ciborium::Value;

/// The value of the text key `name` in a CBOR map's entries.
pub(crate) fn field<'a>(entries: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|(k, _)| k.as_text() == Some(name))
        .map(|(_, v)| v)
}

/// A CBOR decoding error in words, for one line of a report (ciborium's own Display shows
/// Rust debug output for I/O errors).
pub(crate) fn describe(e: &ciborium::de::Error<std::io::Error>) -> String {
    use ciborium::de::Error as E;
    match e {
        E::Io(_) => "truncated".into(),
        E::Syntax(offset) => format!("not CBOR (at byte {offset})"),
        E::Semantic(_, reason) => reason.clone(),
        E::RecursionLimitExceeded => "nested too deeply".into(),
    }
}
