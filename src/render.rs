//! Rendering a document as JSON, deterministically.
//!
//! | Automerge            | JSON                                                   |
//! |----------------------|--------------------------------------------------------|
//! | map                  | object, keys sorted by their UTF-8 bytes               |
//! | list                 | array                                                  |
//! | text                 | string                                                 |
//! | str                  | string                                                 |
//! | int, uint            | number                                                 |
//! | counter              | number (its current value)                             |
//! | f64                  | number; NaN and infinities become `null`               |
//! | timestamp            | number (milliseconds since the Unix epoch)             |
//! | boolean, null        | `true`/`false`, `null`                                 |
//! | bytes                | `{"$bytes": "<lowercase hex>"}`                        |
//! | unknown scalar type  | `null`                                                 |
//!
//! Where concurrent writes conflict on one key, Automerge's winner is rendered (the same
//! on every device).

use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, ScalarValueRef, Value, ValueRef};
use serde_json::{Map, Number, Value as Json};

/// Renders the object `obj` of kind `kind`. One pass over each object (`map_range`,
/// `list_range`): a 20,000-item list renders in milliseconds, not item by item.
pub(crate) fn object<R: ReadDoc>(doc: &R, obj: &ObjId, kind: ObjType) -> Json {
    match kind {
        ObjType::Map | ObjType::Table => {
            let mut entries: Vec<(String, Json)> = doc
                .map_range(obj, ..)
                .map(|item| {
                    let value = value_ref_json(doc, &item.value, || item.id());
                    (item.key.into_owned(), value)
                })
                .collect();
            // Automerge keeps keys in this order already; sorting makes it a promise.
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Json::Object(entries.into_iter().collect())
        }
        ObjType::List => Json::Array(
            doc.list_range(obj, ..)
                .map(|item| value_ref_json(doc, &item.value, || item.id()))
                .collect(),
        ),
        ObjType::Text => Json::String(doc.text(obj).unwrap_or_default()),
    }
}

/// Renders one value of a range; `id` names it when it is an object.
fn value_ref_json<R: ReadDoc>(doc: &R, value: &ValueRef<'_>, id: impl FnOnce() -> ObjId) -> Json {
    match value {
        ValueRef::Object(kind) => object(doc, &id(), *kind),
        ValueRef::Scalar(s) => scalar_ref(s),
    }
}

/// Renders one value found at `id`.
pub(crate) fn value_json<R: ReadDoc>(doc: &R, value: Value<'_>, id: &ObjId) -> Json {
    match value {
        Value::Object(kind) => object(doc, id, kind),
        Value::Scalar(s) => scalar(&s),
    }
}

/// Renders a scalar as a range gives it.
fn scalar_ref(s: &ScalarValueRef<'_>) -> Json {
    match s {
        ScalarValueRef::Str(s) => Json::String(s.to_string()),
        ScalarValueRef::Int(i) => Json::Number((*i).into()),
        ScalarValueRef::Uint(u) => Json::Number((*u).into()),
        ScalarValueRef::F64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        ScalarValueRef::Counter(c) => Json::Number((*c).into()),
        ScalarValueRef::Timestamp(t) => Json::Number((*t).into()),
        ScalarValueRef::Boolean(b) => Json::Bool(*b),
        ScalarValueRef::Null => Json::Null,
        ScalarValueRef::Bytes(b) => bytes(b),
        ScalarValueRef::Unknown { .. } => Json::Null,
    }
}

/// Renders a scalar.
pub(crate) fn scalar(s: &ScalarValue) -> Json {
    match s {
        ScalarValue::Str(s) => Json::String(s.to_string()),
        ScalarValue::Int(i) => Json::Number((*i).into()),
        ScalarValue::Uint(u) => Json::Number((*u).into()),
        ScalarValue::F64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        ScalarValue::Counter(c) => Json::Number(i64::from(c).into()),
        ScalarValue::Timestamp(t) => Json::Number((*t).into()),
        ScalarValue::Boolean(b) => Json::Bool(*b),
        ScalarValue::Null => Json::Null,
        ScalarValue::Bytes(b) => bytes(b),
        ScalarValue::Unknown { .. } => Json::Null,
    }
}

fn bytes(b: &[u8]) -> Json {
    let mut m = Map::new();
    m.insert("$bytes".into(), Json::String(hex::encode(b)));
    Json::Object(m)
}

/// Renders the whole document.
pub(crate) fn document<R: ReadDoc>(doc: &R) -> Json {
    object(doc, &automerge::ROOT, ObjType::Map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;

    #[test]
    fn keys_sorted_by_bytes_and_types_rendered() {
        let mut doc = crate::doc::new_doc();
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "b", 1).unwrap();
        tx.put(automerge::ROOT, "B", 2.5).unwrap();
        tx.put(automerge::ROOT, "é", true).unwrap();
        tx.put(automerge::ROOT, "a", ScalarValue::counter(3))
            .unwrap();
        tx.put(automerge::ROOT, "n", f64::NAN).unwrap();
        tx.put(automerge::ROOT, "bytes", vec![0u8, 255]).unwrap();
        tx.put(automerge::ROOT, "ts", ScalarValue::Timestamp(1000))
            .unwrap();
        let t = tx.put_object(automerge::ROOT, "t", ObjType::Text).unwrap();
        tx.splice_text(&t, 0, 0, "héllo").unwrap();
        let l = tx.put_object(automerge::ROOT, "l", ObjType::List).unwrap();
        tx.insert(&l, 0, "x").unwrap();
        tx.insert(&l, 1, ScalarValue::Null).unwrap();
        tx.commit();
        let json = serde_json::to_string(&document(&doc)).unwrap();
        assert_eq!(
            json,
            r#"{"B":2.5,"a":3,"b":1,"bytes":{"$bytes":"00ff"},"l":["x",null],"n":null,"t":"héllo","ts":1000,"é":true}"#
        );
    }

    /// The one-pass renderer gives what per-key lookups (`get`, Automerge's conflict winner
    /// and counter totals) give, on a document with conflicts and increments.
    #[test]
    fn ranges_render_what_lookups_give() {
        fn by_lookup(doc: &automerge::Automerge, obj: &ObjId, kind: ObjType) -> Json {
            let one = |value: Value<'_>, id: ObjId| match value {
                Value::Object(k) => by_lookup(doc, &id, k),
                Value::Scalar(s) => scalar(&s),
            };
            match kind {
                ObjType::Map | ObjType::Table => Json::Object(
                    doc.keys(obj)
                        .filter_map(|k| {
                            let (v, id) = doc.get(obj, k.as_str()).ok()??;
                            Some((k, one(v, id)))
                        })
                        .collect(),
                ),
                ObjType::List => Json::Array(
                    (0..doc.length(obj))
                        .map(|i| {
                            doc.get(obj, i)
                                .ok()
                                .flatten()
                                .map_or(Json::Null, |(v, id)| one(v, id))
                        })
                        .collect(),
                ),
                ObjType::Text => Json::String(doc.text(obj).unwrap()),
            }
        }
        let mut a = crate::doc::new_doc();
        let mut tx = a.transaction();
        let l = tx.put_object(automerge::ROOT, "l", ObjType::List).unwrap();
        tx.insert(&l, 0, ScalarValue::counter(1)).unwrap();
        let m = tx.insert_object(&l, 1, ObjType::Map).unwrap();
        tx.put(&m, "k", "v").unwrap();
        tx.put(automerge::ROOT, "c", ScalarValue::counter(10))
            .unwrap();
        tx.commit();
        let mut b = a.fork();
        let mut tx = a.transaction();
        tx.increment(&l, 0, 5).unwrap();
        tx.increment(automerge::ROOT, "c", -3).unwrap();
        tx.put(automerge::ROOT, "x", "from a").unwrap();
        tx.put(&m, "k", 1).unwrap();
        tx.commit();
        let mut tx = b.transaction();
        tx.increment(automerge::ROOT, "c", 100).unwrap();
        tx.put_object(automerge::ROOT, "x", ObjType::Map).unwrap();
        tx.put(&m, "k", 2).unwrap();
        tx.insert(&l, 0, "first").unwrap();
        tx.commit();
        a.merge(&mut b).unwrap();
        let fast = document(&a);
        assert_eq!(fast, by_lookup(&a, &automerge::ROOT, ObjType::Map));
        assert_eq!(fast["c"], 107);
        assert_eq!(fast["l"][1], 6);
    }
}
