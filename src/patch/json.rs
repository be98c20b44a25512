//! Automerge's patches as JSON Pointer patches (see [`JsonPatch`]).

use automerge::{Automerge, ChangeHash, ObjType, Prop, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::patch::{self, PatchError};
use crate::render;

/// One change to the document's JSON, addressed by a JSON Pointer: what changed between two
/// heads, said with the paths apps already use for `get` and `append` (RFC 6901), never with
/// Automerge object ids. In JSON, `op` names the variant:
///
/// | op          | fields                       | meaning                                        |
/// |-------------|------------------------------|------------------------------------------------|
/// | `put`       | `path`, `value`, `conflict`  | a map key or list element now holds `value`    |
/// | `insert`    | `path`, `values`             | `values` inserted into a list at `path`'s index |
/// | `delete`    | `path`, `count`              | a map key, or `count` list elements or text characters from `path`'s index on, removed |
/// | `splice`    | `path`, `pos`, `text`        | `text` inserted into the text at `path`, at code point `pos` |
/// | `increment` | `path`, `by`                 | the counter at `path` changed by `by`          |
///
/// A new map, list or text arrives as an empty `{}`, `[]` or `""`, and its contents as the
/// patches after it. Applied in order to the JSON of the document before, the patches give
/// the JSON of the document after: [`JsonPatch::apply`] does that, and any language can do
/// the same in a few lines. Next to RFC 6902 (JSON Patch), whose `add`/`remove`/`replace`
/// these resemble: `put` is `add` onto a map key and `replace` onto a list element;
/// `insert` is several list `add`s at once; `delete` is `remove`, of `count` elements or
/// characters; `splice` and `increment` have no RFC 6902 counterpart (text and counters).
///
/// ```
/// use crdtdir::JsonPatch;
/// use serde_json::json;
/// let mut doc = json!({"items": ["tea"], "title": "Shop", "visits": 1});
/// let patches: Vec<JsonPatch> = serde_json::from_value(json!([
///     {"op": "insert", "path": "/items/1", "values": ["rice", "milk"]},
///     {"op": "splice", "path": "/title", "pos": 4, "text": "ping"},
///     {"op": "delete", "path": "/items/0", "count": 1},
///     {"op": "increment", "path": "/visits", "by": 2},
///     {"op": "put", "path": "/done", "value": false, "conflict": false},
/// ]))?;
/// JsonPatch::apply_all(&patches, &mut doc)?;
/// assert_eq!(doc, json!({"done": false, "items": ["rice", "milk"], "title": "Shopping", "visits": 3}));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
#[non_exhaustive]
pub enum JsonPatch {
    /// The map key or list element at `path` now holds `value`.
    Put {
        /// JSON Pointer of the key or element.
        path: String,
        /// The new value; a new map, list or text is empty here, its contents follow.
        value: Json,
        /// Concurrent writes conflict there; `value` is the winner every device agrees on.
        #[serde(default)]
        conflict: bool,
    },
    /// `values` were inserted into the list, at the index `path` ends with.
    Insert {
        /// JSON Pointer of the first inserted element.
        path: String,
        /// The inserted values, in order.
        values: Vec<Json>,
    },
    /// A map key, or `count` list elements or text characters from the index `path` ends
    /// with, were removed.
    Delete {
        /// JSON Pointer of the key, or of the first element or character removed.
        path: String,
        /// How many elements or characters (1 for a map key).
        count: usize,
    },
    /// `text` was inserted into the text at `path`, at code point `pos`.
    Splice {
        /// JSON Pointer of the text.
        path: String,
        /// Where, in Unicode code points.
        pos: usize,
        /// What.
        text: String,
    },
    /// The counter at `path` changed by `by`.
    Increment {
        /// JSON Pointer of the counter.
        path: String,
        /// The amount (may be negative).
        by: i64,
    },
}

/// The value at the path `tokens` names in `doc`; the first token that names nothing.
fn walk<'a>(doc: &'a mut Json, tokens: &'a [String]) -> Result<&'a mut Json, &'a str> {
    let mut at = doc;
    for token in tokens {
        at = match at {
            Json::Object(map) => map.get_mut(token),
            Json::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or(token.as_str())?;
    }
    Ok(at)
}

/// `text` with `count` characters from character `pos` replaced by `insert`.
fn splice_chars(text: &str, pos: usize, count: usize, insert: &str) -> String {
    text.chars()
        .take(pos)
        .chain(insert.chars())
        .chain(text.chars().skip(pos + count))
        .collect()
}

impl JsonPatch {
    /// Applies this patch to `doc`, the JSON it was made against (the document before it,
    /// or after the patches before it). A patch that does not fit `doc` (a path that is not
    /// there, an index past the end) is an error, and `doc` is as it was.
    // (Over 80 lines: one arm per kind of patch and of target, each with its own errors.)
    pub fn apply(&self, doc: &mut Json) -> Result<(), PatchError> {
        let path = self.path();
        let tokens = patch::parse_pointer(path)?;
        let missing = |reason: String| PatchError::Missing {
            path: path.to_string(),
            reason,
        };
        let Some((last, parents)) = tokens.split_last() else {
            return Err(PatchError::Path {
                path: path.to_string(),
                reason: "a patch names a key or element, not the whole document".into(),
            });
        };
        let parent =
            walk(doc, parents).map_err(|token| missing(format!("nothing at {token:?}")))?;
        let index = || {
            last.parse::<usize>().map_err(|_| PatchError::Path {
                path: path.to_string(),
                reason: format!("{last:?} is not a list index"),
            })
        };
        let past_end = |what: &str, len: usize| missing(format!("{what} past the end ({len})"));
        match (self, parent) {
            (JsonPatch::Put { value, .. }, Json::Object(map)) => {
                map.insert(last.clone(), value.clone());
            }
            (JsonPatch::Put { value, .. }, Json::Array(items)) => {
                let i = index()?;
                let len = items.len();
                *items.get_mut(i).ok_or_else(|| past_end("index", len))? = value.clone();
            }
            (JsonPatch::Insert { values, .. }, Json::Array(items)) => {
                let i = index()?;
                if i > items.len() {
                    return Err(past_end("index", items.len()));
                }
                items.splice(i..i, values.iter().cloned());
            }
            (JsonPatch::Delete { .. }, Json::Object(map)) => {
                map.remove(last)
                    .ok_or_else(|| missing(format!("nothing at {last:?}")))?;
            }
            (JsonPatch::Delete { count, .. }, Json::Array(items)) => {
                let i = index()?;
                if i.checked_add(*count).is_none_or(|end| end > items.len()) {
                    return Err(past_end("deletion", items.len()));
                }
                items.drain(i..i + count);
            }
            (JsonPatch::Delete { count, .. }, Json::String(text)) => {
                let i = index()?;
                let len = text.chars().count();
                if i.checked_add(*count).is_none_or(|end| end > len) {
                    return Err(past_end("deletion", len));
                }
                *text = splice_chars(text, i, *count, "");
            }
            (JsonPatch::Splice { pos, text, .. }, parent) => {
                let target =
                    child(parent, last).ok_or_else(|| missing(format!("nothing at {last:?}")))?;
                let Json::String(old) = target else {
                    return Err(PatchError::Path {
                        path: path.to_string(),
                        reason: "not a string".into(),
                    });
                };
                let len = old.chars().count();
                if *pos > len {
                    return Err(past_end("position", len));
                }
                *old = splice_chars(old, *pos, 0, text);
            }
            (JsonPatch::Increment { by, .. }, parent) => {
                let target =
                    child(parent, last).ok_or_else(|| missing(format!("nothing at {last:?}")))?;
                let Some(sum) = target.as_i64().and_then(|n| n.checked_add(*by)) else {
                    return Err(PatchError::Path {
                        path: path.to_string(),
                        reason: "not a counter".into(),
                    });
                };
                *target = Json::from(sum);
            }
            (_, other) => {
                return Err(PatchError::Path {
                    path: path.to_string(),
                    reason: format!("this patch does not apply to {}", kind(other)),
                })
            }
        }
        Ok(())
    }

    /// Applies `patches` in order (an [`crate::Event`]'s `patches` to the JSON of the
    /// document before it). On an error, the patches before the failing one are applied.
    pub fn apply_all(patches: &[JsonPatch], doc: &mut Json) -> Result<(), PatchError> {
        patches.iter().try_for_each(|p| p.apply(doc))
    }

    /// The JSON Pointer this patch names.
    pub fn path(&self) -> &str {
        match self {
            JsonPatch::Put { path, .. }
            | JsonPatch::Insert { path, .. }
            | JsonPatch::Delete { path, .. }
            | JsonPatch::Splice { path, .. }
            | JsonPatch::Increment { path, .. } => path,
        }
    }
}

/// The member or element `token` names.
fn child<'a>(parent: &'a mut Json, token: &str) -> Option<&'a mut Json> {
    match parent {
        Json::Object(map) => map.get_mut(token),
        Json::Array(items) => items.get_mut(token.parse::<usize>().ok()?),
        _ => None,
    }
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Object(_) => "an object",
        Json::Array(_) => "an array",
        Json::String(_) => "a string",
        Json::Number(_) => "a number",
        Json::Bool(_) => "a boolean",
        Json::Null => "null",
    }
}

/// The JSON Pointer patches that take the document at `before` to the document at `after`.
pub(crate) fn between(
    doc: &Automerge,
    before: &[ChangeHash],
    after: &[ChangeHash],
) -> Vec<JsonPatch> {
    convert(doc.diff(before, after))
}

/// Automerge's patches (from a diff or a patch log) as JSON Pointer patches.
pub(crate) fn convert(patches: Vec<automerge::Patch>) -> Vec<JsonPatch> {
    patches
        .into_iter()
        .filter_map(|p| {
            let base = pointer(p.path.iter().map(|(_, prop)| prop));
            let at = |prop: &Prop| format!("{base}/{}", escape_prop(prop));
            Some(match p.action {
                automerge::PatchAction::PutMap {
                    key,
                    value: (value, _),
                    conflict,
                } => JsonPatch::Put {
                    path: at(&Prop::Map(key)),
                    value: fresh(value),
                    conflict,
                },
                automerge::PatchAction::PutSeq {
                    index,
                    value: (value, _),
                    conflict,
                } => JsonPatch::Put {
                    path: at(&Prop::Seq(index)),
                    value: fresh(value),
                    conflict,
                },
                automerge::PatchAction::Insert { index, values } => JsonPatch::Insert {
                    path: at(&Prop::Seq(index)),
                    values: values.iter().map(|(v, _, _)| fresh(v.clone())).collect(),
                },
                automerge::PatchAction::SpliceText { index, value, .. } => JsonPatch::Splice {
                    path: base,
                    pos: index,
                    text: value.make_string(),
                },
                automerge::PatchAction::Increment { prop, value } => JsonPatch::Increment {
                    path: at(&prop),
                    by: value,
                },
                automerge::PatchAction::DeleteMap { key } => JsonPatch::Delete {
                    path: at(&Prop::Map(key)),
                    count: 1,
                },
                automerge::PatchAction::DeleteSeq { index, length } => JsonPatch::Delete {
                    path: at(&Prop::Seq(index)),
                    count: length,
                },
                // The winner of a conflict comes as a `put`; marks are not part of the JSON.
                automerge::PatchAction::Conflict { .. } | automerge::PatchAction::Mark { .. } => {
                    return None
                }
            })
        })
        .collect()
}

/// A value as it first appears: objects empty (their contents are later patches).
fn fresh(value: Value<'_>) -> Json {
    match value {
        Value::Object(ObjType::Map | ObjType::Table) => Json::Object(Default::default()),
        Value::Object(ObjType::List) => Json::Array(Vec::new()),
        Value::Object(ObjType::Text) => Json::String(String::new()),
        Value::Scalar(s) => render::scalar(&s),
    }
}

fn pointer<'a>(props: impl Iterator<Item = &'a Prop>) -> String {
    props.map(|p| format!("/{}", escape_prop(p))).collect()
}

/// One reference token of a JSON Pointer (RFC 6901: `~` as `~0`, `/` as `~1`).
fn escape_prop(prop: &Prop) -> String {
    match prop {
        Prop::Map(key) => patch::escape_token(key),
        Prop::Seq(i) => i.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_that_does_not_fit_is_refused_and_changes_nothing() {
        let doc = json!({"l": [1, 2], "t": "ab", "m": {"k": 1}, "n": 1.5});
        for (patch, want) in [
            (
                json!({"op": "put", "path": "/l/2", "value": 0}),
                "past the end",
            ),
            (
                json!({"op": "insert", "path": "/l/3", "values": [0]}),
                "past the end",
            ),
            (
                json!({"op": "delete", "path": "/l/1", "count": 2}),
                "past the end",
            ),
            (
                json!({"op": "delete", "path": "/t/1", "count": 2}),
                "past the end",
            ),
            (
                json!({"op": "delete", "path": "/m/x", "count": 1}),
                "nothing at",
            ),
            (
                json!({"op": "splice", "path": "/t", "pos": 3, "text": "x"}),
                "past the end",
            ),
            (
                json!({"op": "splice", "path": "/l", "pos": 0, "text": "x"}),
                "not a string",
            ),
            (
                json!({"op": "increment", "path": "/n", "by": 1}),
                "not a counter",
            ),
            (
                json!({"op": "put", "path": "/x/y", "value": 0}),
                "nothing at",
            ),
            (
                json!({"op": "insert", "path": "/m/k", "values": []}),
                "does not apply",
            ),
            (
                json!({"op": "put", "path": "", "value": 0}),
                "not the whole document",
            ),
        ] {
            let patch: JsonPatch = serde_json::from_value(patch.clone()).unwrap();
            let mut copy = doc.clone();
            let err = patch.apply(&mut copy).unwrap_err().to_string();
            assert!(err.contains(want), "{patch:?}: {err}");
            assert_eq!(copy, doc, "{patch:?} changed the document");
        }
    }

    #[test]
    fn patches_round_trip_through_json() {
        let patches = vec![
            JsonPatch::Put {
                path: "/a~1b".into(),
                value: json!({}),
                conflict: true,
            },
            JsonPatch::Delete {
                path: "/t/0".into(),
                count: 2,
            },
        ];
        let text = serde_json::to_string(&patches).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<JsonPatch>>(&text).unwrap(),
            patches
        );
        let mut doc = json!({"t": "abc"});
        JsonPatch::apply_all(&patches, &mut doc).unwrap();
        assert_eq!(doc, json!({"a/b": {}, "t": "c"}));
    }
}
