//! Typed values: `serde` types written through [`crate::Store::put`] and friends.
//!
//! The one rule for strings: in a typed value, a `String` (an id, a date, an enum's name) is
//! an atomic scalar, so two devices that set it concurrently end with one of the two values,
//! never a mix of both; a [`Text`] is collaborative text, so two devices typing into it
//! both keep their typing. (On the command line and in JSON patches strings are text unless
//! `--scalar` / `"scalar": true` says otherwise: [`crate::PatchOp`].)

use std::cell::Cell;
use std::fmt;

use automerge::ReadDoc;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value as Json};

use super::diff::{Strings, Style};
use super::PatchError;

/// How typed values are written: plain strings are scalars, [`Text`] is text.
pub(crate) fn style(key: Option<&str>) -> Style<'_> {
    Style {
        strings: Strings::Scalar,
        key,
    }
}

/// The value at a JSON Pointer as a `T`. A missing value reads as JSON `null`, so an
/// `Option<T>` reads `None`; any other `T` gets [`PatchError::Missing`]. A value that does
/// not fit `T` is [`PatchError::Type`].
pub(crate) fn read<R: ReadDoc, T: DeserializeOwned>(doc: &R, path: &str) -> Result<T, PatchError> {
    match super::lookup(doc, path) {
        Ok(json) => serde_json::from_value(json).map_err(|e| PatchError::Type {
            path: path.to_string(),
            reason: e.to_string(),
        }),
        Err(missing @ PatchError::Missing { .. }) => {
            serde_json::from_value(Json::Null).map_err(|_| missing)
        }
        Err(e) => Err(e),
    }
}

/// A string that is collaborative text in the document (an Automerge Text): two devices
/// typing into it concurrently both keep their typing, and a write that changes it splices
/// only the characters that changed. Plain `String`s in typed values are atomic scalars
/// instead (ids, dates, names: one device's value wins, never a mix).
///
/// It serializes as a plain string everywhere else, so a struct with `Text` fields still
/// writes ordinary JSON.
///
/// ```
/// use crdtdir::Text;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Note {
///     id: String, // a scalar: concurrent sets keep one of them
///     body: Text, // collaborative text: concurrent typing merges
/// }
/// let note = Note { id: "n1".into(), body: Text::from("Buy milk") };
/// assert_eq!(serde_json::to_string(&note).unwrap(), r#"{"id":"n1","body":"Buy milk"}"#);
/// assert_eq!(note.body.as_str(), "Buy milk");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(pub String);

impl Text {
    /// The text as a `&str`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(s)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(s.to_string())
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

thread_local! {
    /// On while [`to_json`] serializes a typed value: a [`Text`] then says it is text.
    static MARKING: Cell<bool> = const { Cell::new(false) };
}

/// The key of the one-entry object a [`Text`] serializes as inside [`to_json`]. It starts
/// with NUL, which no sensible document key does.
const TEXT_MARK: &str = "\u{0}crdtdir:text";

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if MARKING.get() {
            use serde::ser::SerializeMap;
            let mut map = serializer.serialize_map(Some(1))?;
            map.serialize_entry(TEXT_MARK, &self.0)?;
            map.end()
        } else {
            serializer.serialize_str(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        String::deserialize(deserializer).map(Text)
    }
}

/// A typed value as the JSON a write takes, its [`Text`] values marked as text.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Json, serde_json::Error> {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            MARKING.set(self.0);
        }
    }
    let _restore = Restore(MARKING.replace(true));
    serde_json::to_value(value)
}

/// The string of a marked [`Text`], if `map` is one.
pub(crate) fn text_mark(map: &Map<String, Json>) -> Option<&str> {
    if map.len() != 1 {
        return None;
    }
    map.get(TEXT_MARK)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_marked_only_inside_a_write() {
        #[derive(Serialize)]
        struct Note {
            id: String,
            body: Text,
            tags: Vec<Text>,
        }
        let note = Note {
            id: "n".into(),
            body: "hi".into(),
            tags: vec!["a".into()],
        };
        let marked = to_json(&note).unwrap();
        assert_eq!(text_mark(marked["body"].as_object().unwrap()), Some("hi"));
        assert_eq!(text_mark(marked["tags"][0].as_object().unwrap()), Some("a"));
        assert_eq!(marked["id"], "n");
        // Outside a write, and after one, it is a plain string.
        assert_eq!(
            serde_json::to_value(&note).unwrap(),
            serde_json::json!({"id": "n", "body": "hi", "tags": ["a"]})
        );
        let back: Text = serde_json::from_str("\"x\"").unwrap();
        assert_eq!(back, "x");
    }
}
