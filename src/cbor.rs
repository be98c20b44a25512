//! The one CBOR idiom every crdtdir file format shares: a map with text keys.

use ciborium::Value;

/// The value of the text key `name` in a CBOR map's entries.
pub(crate) fn field<'a>(entries: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|(k, _)| k.as_text() == Some(name))
        .map(|(_, v)| v)
}
