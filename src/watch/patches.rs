//! Automerge's patches as JSON Pointer patches (see [`JsonPatch`]).

use automerge::{Automerge, ChangeHash, ObjType, Prop, Value};
use serde::Serialize;
use serde_json::Value as Json;

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
/// the JSON of the document after.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
        Prop::Map(key) => key.replace('~', "~0").replace('/', "~1"),
        Prop::Seq(i) => i.to_string(),
    }
}
