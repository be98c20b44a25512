//! Changing the document with JSON: RFC 6902 JSON Patch (JSON Pointer paths) plus the CRDT
//! operations JSON Patch lacks.
//!
//! The op table, the fields and the merge-friendly rules are on [`PatchOp`].

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, Prop, ReadDoc, ScalarValue, Value, ROOT};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::render;

/// One operation of a patch: RFC 6902 JSON Patch (JSON Pointer paths) plus the CRDT
/// operations JSON Patch lacks.
///
/// | op          | fields                          | meaning                                          |
/// |-------------|---------------------------------|--------------------------------------------------|
/// | `add`       | `path`, `value`, `scalar`?      | RFC 6902: map key add/replace, list insert, `-` appends |
/// | `remove`    | `path`                          | RFC 6902                                         |
/// | `replace`   | `path`, `value`, `scalar`?      | RFC 6902 (the target must exist)                 |
/// | `move`      | `from`, `path`                  | RFC 6902                                         |
/// | `copy`      | `from`, `path`                  | RFC 6902                                         |
/// | `test`      | `path`, `value`                 | RFC 6902: the whole patch fails if not equal     |
/// | `splice`    | `path`, `pos`, `del`, `text`?   | edit a text: delete `del` code points at `pos`, insert `text` |
/// | `increment` | `path`, `value`? (default 1)    | add to a counter; a missing map key becomes one  |
/// | `set`       | `path`, `value`, `scalar`?      | map key: add or replace; list index: replace     |
/// | `insert`    | `path`, `value`, `scalar`?      | list index or `-`: insert                        |
///
/// Merge-friendly writing:
/// - Strings become collaborative Text, so concurrent typing interleaves. `"scalar": true`
///   stores every string in the value as an atomic last-writer-wins string instead (for
///   values nobody types into: ids, dates, enum-like values; also far cheaper for big values).
/// - Writing an object, array or string onto an existing value of the same kind updates it
///   in place (a diff): keys and elements that did not change are not touched, so what other
///   devices concurrently did to them survives. Writing a scalar equal to the current one is
///   no operation at all. A change of kind replaces the value.
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
        #[serde(default, skip_serializing_if = "is_false")]
        scalar: bool,
    },
    Remove {
        path: String,
    },
    Replace {
        path: String,
        value: Json,
        #[serde(default, skip_serializing_if = "is_false")]
        scalar: bool,
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
        #[serde(default, skip_serializing_if = "is_false")]
        scalar: bool,
    },
    Insert {
        path: String,
        value: Json,
        #[serde(default, skip_serializing_if = "is_false")]
        scalar: bool,
    },
}

fn one() -> i64 {
    1
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why a patch cannot be applied. The whole patch is refused; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// The patch is not valid JSON of the right shape.
    #[error("malformed patch: {0}")]
    Malformed(String),
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

/// Applies all `ops` in one transaction. On error the caller drops the transaction
/// (nothing is committed).
pub(crate) fn apply<T: Transactable + ReadDoc>(
    tx: &mut T,
    ops: &[PatchOp],
) -> Result<(), PatchError> {
    for (index, op) in ops.iter().enumerate() {
        apply_one(tx, op).map_err(|e| {
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
pub fn lookup<R: ReadDoc>(doc: &R, path: &str) -> Result<Json, PatchError> {
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

fn apply_one<T: Transactable + ReadDoc>(tx: &mut T, op: &PatchOp) -> Result<(), PatchError> {
    match op {
        PatchOp::Add {
            path,
            value,
            scalar,
        } => write(tx, path, value, *scalar, Mode::Add),
        PatchOp::Replace {
            path,
            value,
            scalar,
        } => write(tx, path, value, *scalar, Mode::Replace),
        PatchOp::Set {
            path,
            value,
            scalar,
        } => write(tx, path, value, *scalar, Mode::Set),
        PatchOp::Insert {
            path,
            value,
            scalar,
        } => write(tx, path, value, *scalar, Mode::Insert),
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
            write(tx, path, &value, false, Mode::Add)
        }
        PatchOp::Copy { from, path } => {
            let value = lookup(tx, from)?;
            write(tx, path, &value, false, Mode::Add)
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
    }
}

/// RFC 6902 equality: numbers compare by value (1 == 1.0), objects ignore key order.
fn json_equal(a: &Json, b: &Json) -> bool {
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
enum Mode {
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

fn parse_pointer(path: &str) -> Result<Vec<String>, PatchError> {
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

fn no_such(path: &str, token: &str) -> PatchError {
    PatchError::Path {
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
                return Err(PatchError::Path {
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
enum Existing {
    Object(ObjType, ObjId),
    Scalar(ScalarValue),
}

fn existing<R: ReadDoc>(
    doc: &R,
    parent: &ObjId,
    prop: Prop,
) -> Result<Option<Existing>, PatchError> {
    Ok(doc.get(parent, prop)?.map(|(value, id)| match value {
        Value::Object(kind) => Existing::Object(kind, id),
        Value::Scalar(s) => Existing::Scalar(s.into_owned()),
    }))
}

fn write<T: Transactable + ReadDoc>(
    tx: &mut T,
    path: &str,
    value: &Json,
    scalar: bool,
    mode: Mode,
) -> Result<(), PatchError> {
    let tokens = parse_pointer(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        // The whole document: the root is always a map.
        return match (mode, value) {
            (Mode::Insert, _) => Err(PatchError::Path {
                path: path.into(),
                reason: "insert needs a list index".into(),
            }),
            (_, Json::Object(map)) => update_map(tx, &ROOT, map, scalar),
            _ => Err(PatchError::Path {
                path: path.into(),
                reason: "the document root must be an object".into(),
            }),
        };
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
                create(tx, &parent.id, Prop::Seq(index), true, value, scalar)
            } else {
                let prop = existing_prop(tx, path, &parent, last)?;
                update(tx, &parent.id, prop, value, scalar)
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
            update(tx, &parent.id, prop, value, scalar)
        }
    }
}

fn remove<T: Transactable + ReadDoc>(tx: &mut T, path: &str) -> Result<(), PatchError> {
    let tokens = parse_pointer(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        return Err(PatchError::Path {
            path: path.into(),
            reason: "cannot remove the document".into(),
        });
    };
    let parent = resolve(tx, path, parents)?;
    let prop = existing_prop(tx, path, &parent, last)?;
    if existing(tx, &parent.id, prop.clone())?.is_none() {
        return Err(no_such(path, last));
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
    let tokens = parse_pointer(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        return Err(PatchError::Path {
            path: path.into(),
            reason: "the document is not a text".into(),
        });
    };
    let parent = resolve(tx, path, parents)?;
    let prop = existing_prop(tx, path, &parent, last)?;
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
    let tokens = parse_pointer(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        return Err(PatchError::Path {
            path: path.into(),
            reason: "the document is not a counter".into(),
        });
    };
    let parent = resolve(tx, path, parents)?;
    let prop = existing_prop(tx, path, &parent, last)?;
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

/// Writes `value` at an existing or new map key / existing list index, in place where the
/// kinds match.
fn update<T: Transactable + ReadDoc>(
    tx: &mut T,
    parent: &ObjId,
    prop: Prop,
    value: &Json,
    scalar: bool,
) -> Result<(), PatchError> {
    match (existing(tx, parent, prop.clone())?, value) {
        (Some(Existing::Object(ObjType::Map | ObjType::Table, id)), Json::Object(map)) => {
            update_map(tx, &id, map, scalar)
        }
        (Some(Existing::Object(ObjType::List, id)), Json::Array(items)) => {
            update_list(tx, &id, items, scalar)
        }
        (Some(Existing::Object(ObjType::Text, id)), Json::String(s)) if !scalar => {
            tx.update_text(&id, s)?;
            Ok(())
        }
        (Some(Existing::Scalar(old)), new) if scalar_equal(&old, new, scalar) => Ok(()),
        _ => create(tx, parent, prop, false, value, scalar),
    }
}

fn update_map<T: Transactable + ReadDoc>(
    tx: &mut T,
    map: &ObjId,
    value: &serde_json::Map<String, Json>,
    scalar: bool,
) -> Result<(), PatchError> {
    let gone: Vec<String> = tx.keys(map).filter(|k| !value.contains_key(k)).collect();
    for key in gone {
        tx.delete(map, key.as_str())?;
    }
    for (key, v) in sorted(value) {
        update(tx, map, Prop::Map(key.clone()), v, scalar)?;
    }
    Ok(())
}

fn update_list<T: Transactable + ReadDoc>(
    tx: &mut T,
    list: &ObjId,
    items: &[Json],
    scalar: bool,
) -> Result<(), PatchError> {
    let len = tx.length(list);
    for (i, item) in items.iter().enumerate().take(len) {
        update(tx, list, Prop::Seq(i), item, scalar)?;
    }
    for i in (items.len()..len).rev() {
        tx.delete(list, i)?;
    }
    for (i, item) in items.iter().enumerate().skip(len) {
        create(tx, list, Prop::Seq(i), true, item, scalar)?;
    }
    Ok(())
}

/// Writes `value` as new (insert into a list, or put over whatever is there).
fn create<T: Transactable + ReadDoc>(
    tx: &mut T,
    parent: &ObjId,
    prop: Prop,
    insert: bool,
    value: &Json,
    scalar: bool,
) -> Result<(), PatchError> {
    let make = |tx: &mut T, kind: ObjType| -> Result<ObjId, PatchError> {
        Ok(match (&prop, insert) {
            (Prop::Seq(i), true) => tx.insert_object(parent, *i, kind)?,
            _ => tx.put_object(parent, prop.clone(), kind)?,
        })
    };
    match value {
        Json::Object(map) => {
            let id = make(tx, ObjType::Map)?;
            for (key, v) in sorted(map) {
                create(tx, &id, Prop::Map(key.clone()), false, v, scalar)?;
            }
        }
        Json::Array(items) => {
            let id = make(tx, ObjType::List)?;
            for (i, v) in items.iter().enumerate() {
                create(tx, &id, Prop::Seq(i), true, v, scalar)?;
            }
        }
        Json::String(s) if !scalar => {
            let id = make(tx, ObjType::Text)?;
            tx.splice_text(&id, 0, 0, s)?;
        }
        other => {
            let v = json_scalar(other);
            match (&prop, insert) {
                (Prop::Seq(i), true) => tx.insert(parent, *i, v)?,
                _ => tx.put(parent, prop.clone(), v)?,
            }
        }
    }
    Ok(())
}

fn sorted(map: &serde_json::Map<String, Json>) -> Vec<(&String, &Json)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    entries
}

fn json_scalar(value: &Json) -> ScalarValue {
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

/// True when writing `new` over the scalar `old` would change nothing anyone can see.
fn scalar_equal(old: &ScalarValue, new: &Json, scalar: bool) -> bool {
    match (old, new) {
        (ScalarValue::Str(a), Json::String(b)) => scalar && a.as_str() == b,
        (_, Json::String(_) | Json::Array(_) | Json::Object(_)) => false,
        (old, new) => json_equal(&render::scalar(old), new),
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
        apply(&mut tx, &ops)?;
        tx.commit();
        Ok(())
    }

    #[test]
    fn rfc6902_basics_and_extensions() {
        let mut doc = crate::merge::new_doc();
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
        let mut doc = crate::merge::new_doc();
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
        let mut doc = crate::merge::new_doc();
        run(
            &mut doc,
            r#"{"op":"set","path":"/m","value":{"a":"x","b":1,"c":[true]}}"#,
        )
        .unwrap();
        let ops =
            parse_patch(r#"{"op":"set","path":"/m","value":{"a":"x","b":1,"c":[true]}}"#).unwrap();
        let mut tx = doc.transaction();
        apply(&mut tx, &ops).unwrap();
        assert_eq!(tx.pending_ops(), 0);
    }
}
