//! Changing the document with JSON: RFC 6902 JSON Patch (JSON Pointer paths) plus the CRDT
//! operations JSON Patch lacks.
//!
//! The op table, the fields and the merge-friendly rules are on [`PatchOp`]; how a whole
//! value is written as the smallest change is in `diff`; typed values in `typed`.

pub(crate) mod diff;
pub(crate) mod json;
pub(crate) mod typed;

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, Prop, ReadDoc, ScalarValue, Value, ROOT};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::render;
pub(crate) use diff::Style;
use diff::{Slot, Strings};

/// One operation of a patch: RFC 6902 JSON Patch (JSON Pointer paths) plus the CRDT
/// operations JSON Patch lacks.
///
/// | op          | fields                          | meaning                                          |
/// |-------------|---------------------------------|--------------------------------------------------|
/// | `add`       | `path`, `value`, `scalar`?, `key`? | RFC 6902: map key add/replace, list insert, `-` appends |
/// | `remove`    | `path`                          | RFC 6902                                         |
/// | `replace`   | `path`, `value`, `scalar`?, `key`? | RFC 6902 (the target must exist)              |
/// | `move`      | `from`, `path`                  | RFC 6902                                         |
/// | `copy`      | `from`, `path`                  | RFC 6902                                         |
/// | `test`      | `path`, `value`                 | RFC 6902: the whole patch fails if not equal     |
/// | `splice`    | `path`, `pos`, `del`, `text`?   | edit a text: delete `del` code points at `pos`, insert `text` |
/// | `increment` | `path`, `value`? (default 1)    | add to a counter; a missing map key becomes one  |
/// | `set`       | `path`, `value`, `scalar`?, `key`? | map key: add or replace; list index: replace  |
/// | `insert`    | `path`, `value`, `scalar`?      | list index or `-`: insert                        |
///
/// Merge-friendly writing:
/// - New strings become collaborative Text, so concurrent typing interleaves; an existing
///   string keeps its kind. `"scalar": true` stores every string the op changes as an atomic
///   last-writer-wins string instead (for values nobody types into: ids, dates, enum-like
///   values; also far cheaper for big values), and `"scalar": false` as text.
/// - Writing a value onto an existing one (`set`, `add` or `replace` onto a key or element
///   that has a value) writes only the difference: keys and elements that did not change are
///   not touched, so what other devices concurrently did to them survives. Lists are compared
///   by their longest common subsequence, never by position: an insert stays an insert, a
///   delete a delete, and a changed element is edited in place. List elements that are
///   objects with an `id` field (or the field `key` names; `""` for none) are matched by it,
///   so an edited record is recognised. A counter moves by the difference. Writing a value
///   equal to the current one is no operation at all. A change of kind replaces the value.
/// - `move` and `copy` write the JSON value of `from` anew: the copy is a new object.
/// - Members an operation does not define are ignored (RFC 6902 §4); an unknown operation
///   is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum PatchOp {
    Add {
        path: String,
        value: Json,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scalar: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    Remove {
        path: String,
    },
    Replace {
        path: String,
        value: Json,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scalar: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    Move {
        from: String,
        path: String,
    },
    Copy {
        from: String,
        path: String,
    },
    Test {
        path: String,
        value: Json,
    },
    Splice {
        path: String,
        pos: usize,
        del: usize,
        #[serde(default)]
        text: String,
    },
    Increment {
        path: String,
        #[serde(default = "one")]
        value: i64,
    },
    Set {
        path: String,
        value: Json,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scalar: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    Insert {
        path: String,
        value: Json,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scalar: Option<bool>,
    },
}

fn one() -> i64 {
    1
}

/// Constructors, so that a patch reads as what it does:
///
/// ```
/// use crdtdir::PatchOp;
/// use serde_json::json;
/// let patch = [
///     PatchOp::insert("/items/-", json!("milk")),
///     PatchOp::set("/due", json!("2025-01-31")).scalar(),
///     PatchOp::set("/todo", json!([{"id": "a", "done": true}])).key("id"),
///     PatchOp::splice("/title", 0, 0, "Weekly "),
///     PatchOp::increment("/visits", 1),
///     PatchOp::remove("/note"),
/// ];
/// assert_eq!(
///     serde_json::to_value(&patch[1]).unwrap(),
///     json!({"op": "set", "path": "/due", "value": "2025-01-31", "scalar": true})
/// );
/// ```
impl PatchOp {
    /// RFC 6902 `add`.
    pub fn add(path: impl Into<String>, value: Json) -> PatchOp {
        PatchOp::Add {
            path: path.into(),
            value,
            scalar: None,
            key: None,
        }
    }

    /// RFC 6902 `remove`.
    pub fn remove(path: impl Into<String>) -> PatchOp {
        PatchOp::Remove { path: path.into() }
    }

    /// RFC 6902 `replace`.
    pub fn replace(path: impl Into<String>, value: Json) -> PatchOp {
        PatchOp::Replace {
            path: path.into(),
            value,
            scalar: None,
            key: None,
        }
    }

    /// RFC 6902 `move`.
    pub fn move_value(from: impl Into<String>, path: impl Into<String>) -> PatchOp {
        PatchOp::Move {
            from: from.into(),
            path: path.into(),
        }
    }

    /// RFC 6902 `copy`.
    pub fn copy(from: impl Into<String>, path: impl Into<String>) -> PatchOp {
        PatchOp::Copy {
            from: from.into(),
            path: path.into(),
        }
    }

    /// RFC 6902 `test`.
    pub fn test(path: impl Into<String>, value: Json) -> PatchOp {
        PatchOp::Test {
            path: path.into(),
            value,
        }
    }

    /// Edit a text: delete `del` code points at `pos`, insert `text`.
    pub fn splice(
        path: impl Into<String>,
        pos: usize,
        del: usize,
        text: impl Into<String>,
    ) -> PatchOp {
        PatchOp::Splice {
            path: path.into(),
            pos,
            del,
            text: text.into(),
        }
    }

    /// Add `by` to a counter (a missing map key becomes one).
    pub fn increment(path: impl Into<String>, by: i64) -> PatchOp {
        PatchOp::Increment {
            path: path.into(),
            value: by,
        }
    }

    /// Map key: add or replace; list index: replace (a diff onto an existing value).
    pub fn set(path: impl Into<String>, value: Json) -> PatchOp {
        PatchOp::Set {
            path: path.into(),
            value,
            scalar: None,
            key: None,
        }
    }

    /// Insert into a list at an index, or at the end with `-`.
    pub fn insert(path: impl Into<String>, value: Json) -> PatchOp {
        PatchOp::Insert {
            path: path.into(),
            value,
            scalar: None,
        }
    }

    /// Strings this op writes are atomic last-writer-wins scalars (`"scalar": true`).
    pub fn scalar(self) -> PatchOp {
        self.strings(true)
    }

    /// Strings this op writes are collaborative text, even over a scalar string
    /// (`"scalar": false`).
    pub fn text(self) -> PatchOp {
        self.strings(false)
    }

    /// A value-writing op as (path, value, scalar, key, mode).
    #[allow(clippy::type_complexity)]
    fn write_parts(&self) -> Option<(&str, &Json, Option<bool>, Option<&str>, Mode)> {
        Some(match self {
            PatchOp::Add {
                path,
                value,
                scalar,
                key,
            } => (path, value, *scalar, key.as_deref(), Mode::Add),
            PatchOp::Replace {
                path,
                value,
                scalar,
                key,
            } => (path, value, *scalar, key.as_deref(), Mode::Replace),
            PatchOp::Set {
                path,
                value,
                scalar,
                key,
            } => (path, value, *scalar, key.as_deref(), Mode::Set),
            PatchOp::Insert {
                path,
                value,
                scalar,
            } => (path, value, *scalar, None, Mode::Insert),
            _ => return None,
        })
    }

    fn strings(mut self, as_scalar: bool) -> PatchOp {
        if let PatchOp::Add { scalar, .. }
        | PatchOp::Replace { scalar, .. }
        | PatchOp::Set { scalar, .. }
        | PatchOp::Insert { scalar, .. } = &mut self
        {
            *scalar = Some(as_scalar);
        }
        self
    }

    /// List elements that are objects are matched by this field (`"key"`; the store's
    /// default is `id`, [`crate::Options::list_key`]; `""` matches by whole value only).
    pub fn key(mut self, field: impl Into<String>) -> PatchOp {
        if let PatchOp::Add { key, .. } | PatchOp::Replace { key, .. } | PatchOp::Set { key, .. } =
            &mut self
        {
            *key = Some(field.into());
        }
        self
    }
}

/// Why a patch cannot be applied. The whole patch is refused; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// The patch is not valid JSON of the right shape.
    #[error("malformed patch: {0}")]
    Malformed(String),
    /// Nothing is at the path (or on the way to it).
    #[error("{path:?}: {reason}")]
    Missing {
        /// The JSON Pointer.
        path: String,
        /// What is missing.
        reason: String,
    },
    /// The value at the path does not fit the type it was read as.
    #[error("{path:?}: the value does not fit the requested type: {reason}")]
    Type {
        /// The JSON Pointer.
        path: String,
        /// How it does not fit.
        reason: String,
    },
    /// A path that does not fit the document.
    #[error("{path:?}: {reason}")]
    Path {
        /// The JSON Pointer.
        path: String,
        /// What does not fit.
        reason: String,
    },
    /// A `test` op found another value.
    #[error("test failed at {path:?}: found {found}")]
    TestFailed {
        /// The JSON Pointer.
        path: String,
        /// The value found there, as JSON.
        found: String,
    },
    /// Automerge refused an operation.
    #[error("{0}")]
    Automerge(String),
    /// Which op of a longer patch failed.
    #[error("op {index}: {source}")]
    At {
        /// Zero-based index of the op in the patch.
        index: usize,
        /// The failure.
        #[source]
        source: Box<PatchError>,
    },
}

impl From<automerge::AutomergeError> for PatchError {
    fn from(e: automerge::AutomergeError) -> Self {
        PatchError::Automerge(e.to_string())
    }
}

/// Parses a patch: a JSON array of ops, or a single op object.
pub fn parse_patch(text: &str) -> Result<Vec<PatchOp>, PatchError> {
    let value: Json =
        serde_json::from_str(text).map_err(|e| PatchError::Malformed(e.to_string()))?;
    let ops = match value {
        Json::Array(items) => items,
        obj @ Json::Object(_) => vec![obj],
        _ => {
            return Err(PatchError::Malformed(
                "expected an array of operations".into(),
            ))
        }
    };
    ops.into_iter()
        .enumerate()
        .map(|(index, op)| {
            serde_json::from_value(op).map_err(|e| PatchError::At {
                index,
                source: Box::new(PatchError::Malformed(e.to_string())),
            })
        })
        .collect()
}

/// Applies all `ops` in one transaction; list elements that are objects are matched by
/// `key` unless an op names its own. On error the caller drops the transaction (nothing is
/// committed).
pub(crate) fn apply<T: Transactable + ReadDoc>(
    tx: &mut T,
    ops: &[PatchOp],
    key: Option<&str>,
) -> Result<(), PatchError> {
    for (index, op) in ops.iter().enumerate() {
        apply_one(tx, op, key).map_err(|e| {
            if ops.len() == 1 {
                e
            } else {
                PatchError::At {
                    index,
                    source: Box::new(e),
                }
            }
        })?;
    }
    Ok(())
}

/// The JSON value at `path` (a JSON Pointer) in `doc`.
pub(crate) fn lookup<R: ReadDoc>(doc: &R, path: &str) -> Result<Json, PatchError> {
    let tokens = parse_pointer(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        return Ok(render::document(doc));
    };
    let parent = resolve(doc, path, parents)?;
    let prop = existing_prop(doc, path, &parent, last)?;
    match doc.get(&parent.id, prop)? {
        Some((value, id)) => Ok(render::value_json(doc, value, &id)),
        None => Err(no_such(path, last)),
    }
}

/// The style of an op: its strings and its list key.
fn style<'a>(scalar: Option<bool>, key: Option<&'a str>) -> Style<'a> {
    Style {
        strings: match scalar {
            None => Strings::Auto,
            Some(true) => Strings::Scalar,
            Some(false) => Strings::Text,
        },
        key: key.filter(|k| !k.is_empty()),
    }
}

fn apply_one<T: Transactable + ReadDoc>(
    tx: &mut T,
    op: &PatchOp,
    default_key: Option<&str>,
) -> Result<(), PatchError> {
    if let Some((path, value, scalar, key, mode)) = op.write_parts() {
        return write(tx, path, value, style(scalar, key.or(default_key)), mode);
    }
    match op {
        PatchOp::Remove { path } => remove(tx, path),
        PatchOp::Move { from, path } => {
            if from == path {
                return lookup(tx, from).map(drop);
            }
            if path.starts_with(&format!("{from}/")) {
                return Err(PatchError::Path {
                    path: path.clone(),
                    reason: format!("cannot move {from:?} into itself"),
                });
            }
            let value = lookup(tx, from)?;
            remove(tx, from)?;
            write(tx, path, &value, style(None, default_key), Mode::Add)
        }
        PatchOp::Copy { from, path } => {
            let value = lookup(tx, from)?;
            write(tx, path, &value, style(None, default_key), Mode::Add)
        }
        PatchOp::Test { path, value } => {
            let found = lookup(tx, path)?;
            if json_equal(&found, value) {
                Ok(())
            } else {
                Err(PatchError::TestFailed {
                    path: path.clone(),
                    found: found.to_string(),
                })
            }
        }
        PatchOp::Splice {
            path,
            pos,
            del,
            text,
        } => splice(tx, path, *pos, *del, text),
        PatchOp::Increment { path, value } => increment(tx, path, *value),
        PatchOp::Add { .. }
        | PatchOp::Replace { .. }
        | PatchOp::Set { .. }
        | PatchOp::Insert { .. } => {
            unreachable!("written above")
        }
    }
}

/// RFC 6902 equality: numbers compare by value (1 == 1.0), objects ignore key order.
pub(crate) fn json_equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Add,
    Replace,
    Set,
    Insert,
}

/// A container on the way to a path's target.
struct Container {
    id: ObjId,
    kind: ObjType,
}

pub(crate) fn parse_pointer(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PatchError::Path {
            path: path.into(),
            reason: "a JSON Pointer starts with '/' (or is empty for the whole document)".into(),
        });
    };
    rest.split('/')
        .map(|t| {
            if t.contains('~') && !valid_escapes(t) {
                return Err(PatchError::Path {
                    path: path.into(),
                    reason: "'~' must be followed by 0 or 1".into(),
                });
            }
            Ok(t.replace("~1", "/").replace("~0", "~"))
        })
        .collect()
}

fn valid_escapes(token: &str) -> bool {
    let b = token.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, c)| *c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

/// One reference token of a JSON Pointer (RFC 6901: `~` as `~0`, `/` as `~1`).
pub(crate) fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn no_such(path: &str, token: &str) -> PatchError {
    PatchError::Missing {
        path: path.into(),
        reason: format!("nothing at {token:?}"),
    }
}

/// Walks `tokens` from the root; each must name an existing map or list.
fn resolve<R: ReadDoc>(doc: &R, path: &str, tokens: &[String]) -> Result<Container, PatchError> {
    let mut here = Container {
        id: ROOT,
        kind: ObjType::Map,
    };
    for token in tokens {
        let prop = existing_prop(doc, path, &here, token)?;
        here = match doc.get(&here.id, prop)? {
            Some((Value::Object(kind @ (ObjType::Map | ObjType::Table | ObjType::List)), id)) => {
                Container { id, kind }
            }
            Some((Value::Object(ObjType::Text), _)) => {
                return Err(PatchError::Path {
                    path: path.into(),
                    reason: format!("{token:?} is a text, not a container"),
                })
            }
            Some((Value::Scalar(_), _)) => {
                return Err(PatchError::Path {
                    path: path.into(),
                    reason: format!("{token:?} is a scalar, not a container"),
                })
            }
            None => return Err(no_such(path, token)),
        };
    }
    Ok(here)
}

/// The prop of an existing element: any key in a map, an index below the length in a list.
fn existing_prop<R: ReadDoc>(
    doc: &R,
    path: &str,
    parent: &Container,
    token: &str,
) -> Result<Prop, PatchError> {
    match parent.kind {
        ObjType::List => {
            let index = parse_index(path, token)?;
            if index >= doc.length(&parent.id) {
                return Err(PatchError::Missing {
                    path: path.into(),
                    reason: format!("index {index} is past the end of the list"),
                });
            }
            Ok(Prop::Seq(index))
        }
        _ => Ok(Prop::Map(token.to_string())),
    }
}

fn parse_index(path: &str, token: &str) -> Result<usize, PatchError> {
    let canonical = token == "0" || (!token.starts_with('0') && !token.is_empty());
    match token.parse::<usize>() {
        Ok(i) if canonical && token.bytes().all(|b| b.is_ascii_digit()) => Ok(i),
        _ => Err(PatchError::Path {
            path: path.into(),
            reason: format!("{token:?} is not a list index"),
        }),
    }
}

/// What is currently at a prop.
pub(crate) enum Existing {
    Object(ObjType, ObjId),
    Scalar(ScalarValue),
}

pub(crate) fn existing<R: ReadDoc>(
    doc: &R,
    parent: &ObjId,
    prop: Prop,
) -> Result<Option<Existing>, PatchError> {
    Ok(doc.get(parent, prop)?.map(|(value, id)| match value {
        Value::Object(kind) => Existing::Object(kind, id),
        Value::Scalar(s) => Existing::Scalar(s.into_owned()),
    }))
}

/// Writes `value` at `path` as `mode` says: a list insert is new, anything else onto an
/// existing value is a diff ([`diff`]).
pub(crate) fn write<T: Transactable + ReadDoc>(
    tx: &mut T,
    path: &str,
    value: &Json,
    style: Style<'_>,
    mode: Mode,
) -> Result<(), PatchError> {
    write_from(tx, path, None, value, style, mode)
}

/// [`write`], as the edit from `base` to `value` when there is a base (see [`diff::write`]).
pub(crate) fn write_from<T: Transactable + ReadDoc>(
    tx: &mut T,
    path: &str,
    base: Option<&Json>,
    value: &Json,
    style: Style<'_>,
    mode: Mode,
) -> Result<(), PatchError> {
    let tokens = parse_pointer(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        // The whole document: the root is always a map.
        if mode == Mode::Insert {
            return Err(PatchError::Path {
                path: path.into(),
                reason: "insert needs a list index".into(),
            });
        }
        return diff::write(tx, path, &Slot::Root, base, value, style);
    };
    let parent = resolve(tx, path, parents)?;
    match parent.kind {
        ObjType::List => {
            let len = tx.length(&parent.id);
            let insert = matches!(mode, Mode::Add | Mode::Insert);
            let index = if insert && last == "-" {
                len
            } else {
                parse_index(path, last)?
            };
            if insert {
                if index > len {
                    return Err(PatchError::Path {
                        path: path.into(),
                        reason: format!("index {index} is past the end of the list ({len})"),
                    });
                }
                diff::create(tx, &parent.id, Prop::Seq(index), true, value, style)
            } else {
                let prop = existing_prop(tx, path, &parent, last)?;
                diff::write(tx, path, &Slot::At(parent.id, prop), base, value, style)
            }
        }
        _ => {
            if mode == Mode::Insert {
                return Err(PatchError::Path {
                    path: path.into(),
                    reason: "insert needs a list index; use set for a map key".into(),
                });
            }
            let prop = Prop::Map(last.clone());
            if mode == Mode::Replace && existing(tx, &parent.id, prop.clone())?.is_none() {
                return Err(no_such(path, last));
            }
            diff::write(tx, path, &Slot::At(parent.id, prop), base, value, style)
        }
    }
}

/// The container, prop and last token of the existing element at `path` (a map key may be
/// missing); `whole` says why the whole document is not one.
fn element<R: ReadDoc>(
    doc: &R,
    path: &str,
    whole: &str,
) -> Result<(Container, Prop, String), PatchError> {
    let tokens = parse_pointer(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        return Err(PatchError::Path {
            path: path.into(),
            reason: whole.into(),
        });
    };
    let parent = resolve(doc, path, parents)?;
    let prop = existing_prop(doc, path, &parent, last)?;
    Ok((parent, prop, last.clone()))
}

fn remove<T: Transactable + ReadDoc>(tx: &mut T, path: &str) -> Result<(), PatchError> {
    let (parent, prop, last) = element(tx, path, "cannot remove the document")?;
    if existing(tx, &parent.id, prop.clone())?.is_none() {
        return Err(no_such(path, &last));
    }
    tx.delete(&parent.id, prop)?;
    Ok(())
}

fn splice<T: Transactable + ReadDoc>(
    tx: &mut T,
    path: &str,
    pos: usize,
    del: usize,
    text: &str,
) -> Result<(), PatchError> {
    let (parent, prop, _) = element(tx, path, "the document is not a text")?;
    let Some(Existing::Object(ObjType::Text, id)) = existing(tx, &parent.id, prop)? else {
        return Err(PatchError::Path {
            path: path.into(),
            reason: "not a text (set a string without --scalar to make one)".into(),
        });
    };
    let len = tx.length(&id);
    if pos > len || del > len - pos {
        return Err(PatchError::Path {
            path: path.into(),
            reason: format!("splice {pos}+{del} is outside the text ({len} characters)"),
        });
    }
    let del = isize::try_from(del).map_err(|_| PatchError::Malformed("del too large".into()))?;
    tx.splice_text(&id, pos, del, text)?;
    Ok(())
}

fn increment<T: Transactable + ReadDoc>(tx: &mut T, path: &str, by: i64) -> Result<(), PatchError> {
    let (parent, prop, _) = element(tx, path, "the document is not a counter")?;
    match existing(tx, &parent.id, prop.clone())? {
        Some(Existing::Scalar(ScalarValue::Counter(c))) => {
            // Automerge counters wrap silently at the i64 bounds: refuse instead.
            if i64::from(&c).checked_add(by).is_none() {
                return Err(PatchError::Path {
                    path: path.into(),
                    reason: format!("the counter would overflow ({} + {by})", i64::from(&c)),
                });
            }
            tx.increment(&parent.id, prop, by)?
        }
        None => tx.put(&parent.id, prop, ScalarValue::counter(by))?,
        Some(_) => {
            return Err(PatchError::Path {
                path: path.into(),
                reason: "not a counter (increment a missing key to create one)".into(),
            })
        }
    }
    Ok(())
}

pub(crate) fn sorted(map: &serde_json::Map<String, Json>) -> Vec<(&String, &Json)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    entries
}

pub(crate) fn json_scalar(value: &Json) -> ScalarValue {
    match value {
        Json::Null => ScalarValue::Null,
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                ScalarValue::Uint(u)
            } else {
                ScalarValue::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Array(_) | Json::Object(_) => unreachable!("containers are not scalars"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_parsing() {
        assert_eq!(parse_pointer("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_pointer("/a~1b/c~0d/").unwrap(),
            vec!["a/b", "c~d", ""]
        );
        assert!(parse_pointer("a").is_err());
        assert!(parse_pointer("/a~2").is_err());
    }

    #[test]
    fn patch_parsing_rejects_unknown_ops_and_ignores_unknown_members() {
        assert!(parse_patch(r#"[{"op":"frobnicate","path":"/a"}]"#).is_err());
        // RFC 6902 §4: members not defined for the operation are ignored.
        assert_eq!(
            parse_patch(r#"[{"op":"add","path":"/a","value":1,"extra":2,"from":"/b"}]"#).unwrap(),
            parse_patch(r#"[{"op":"add","path":"/a","value":1}]"#).unwrap()
        );
        assert!(parse_patch(r#"[{"op":"add","path":"/a"}]"#).is_err());
        assert!(parse_patch(r#"{"op":"remove","path":"/a"}"#).is_ok());
        assert!(parse_patch("3").is_err());
        assert!(parse_patch("[").is_err());
        assert_eq!(
            parse_patch(r#"[{"op":"increment","path":"/n"}]"#).unwrap(),
            vec![PatchOp::Increment {
                path: "/n".into(),
                value: 1
            }]
        );
    }

    fn run(doc: &mut automerge::Automerge, patch: &str) -> Result<(), PatchError> {
        let ops = parse_patch(patch)?;
        let mut tx = doc.transaction();
        apply(&mut tx, &ops, Some("id"))?;
        tx.commit();
        Ok(())
    }

    #[test]
    fn rfc6902_basics_and_extensions() {
        let mut doc = crate::doc::new_doc();
        run(
            &mut doc,
            r#"[{"op":"add","path":"/a","value":{"b":[1,2]}},
                          {"op":"add","path":"/a/b/1","value":9},
                          {"op":"add","path":"/a/b/-","value":3},
                          {"op":"replace","path":"/a/b/0","value":"x"},
                          {"op":"copy","from":"/a/b","path":"/c"},
                          {"op":"move","from":"/c","path":"/d"},
                          {"op":"splice","path":"/a/b/0","pos":1,"del":0,"text":"yz"},
                          {"op":"increment","path":"/n","value":2},
                          {"op":"increment","path":"/n"},
                          {"op":"test","path":"/n","value":3.0},
                          {"op":"remove","path":"/a/b/1"}]"#,
        )
        .unwrap();
        assert_eq!(
            render::document(&doc),
            serde_json::json!({"a":{"b":["xyz",2,3]},"d":["x",9,2,3],"n":3})
        );
    }

    #[test]
    fn failures_name_the_problem() {
        let mut doc = crate::doc::new_doc();
        run(
            &mut doc,
            r#"{"op":"add","path":"/s","value":"hi","scalar":true}"#,
        )
        .unwrap();
        run(
            &mut doc,
            r#"{"op":"increment","path":"/big","value":9223372036854775800}"#,
        )
        .unwrap();
        for (patch, want) in [
            (
                r#"{"op":"increment","path":"/big","value":8}"#,
                "would overflow",
            ),
            (r#"{"op":"remove","path":"/nope"}"#, "nothing at"),
            (r#"{"op":"replace","path":"/nope","value":1}"#, "nothing at"),
            (
                r#"{"op":"add","path":"/s/x","value":1}"#,
                "scalar, not a container",
            ),
            (
                r#"{"op":"splice","path":"/s","pos":0,"del":0,"text":"x"}"#,
                "not a text",
            ),
            (r#"{"op":"increment","path":"/s"}"#, "not a counter"),
            (r#"{"op":"test","path":"/s","value":"ho"}"#, "test failed"),
            (
                r#"{"op":"add","path":"","value":[]}"#,
                "root must be an object",
            ),
            (
                r#"{"op":"insert","path":"/k","value":1}"#,
                "needs a list index",
            ),
        ] {
            let err = run(&mut doc, patch).unwrap_err().to_string();
            assert!(err.contains(want), "{patch}: {err}");
        }
    }

    #[test]
    fn setting_an_equal_value_is_no_operation() {
        let mut doc = crate::doc::new_doc();
        run(
            &mut doc,
            r#"{"op":"set","path":"/m","value":{"a":"x","b":1,"c":[true]}}"#,
        )
        .unwrap();
        let ops =
            parse_patch(r#"{"op":"set","path":"/m","value":{"a":"x","b":1,"c":[true]}}"#).unwrap();
        let mut tx = doc.transaction();
        apply(&mut tx, &ops, Some("id")).unwrap();
        assert_eq!(tx.pending_ops(), 0);
    }
}
