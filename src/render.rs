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

use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value};
use serde_json::{Map, Number, Value as Json};

/// Renders the object `obj` of kind `kind`.
pub(crate) fn object<R: ReadDoc>(doc: &R, obj: &ObjId, kind: ObjType) -> Json {
    match kind {
        ObjType::Map | ObjType::Table => {
            let mut keys: Vec<String> = doc.keys(obj).collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            let mut map = Map::new();
            for key in keys {
                if let Ok(Some((value, id))) = doc.get(obj, key.as_str()) {
                    map.insert(key, value_json(doc, value, &id));
                }
            }
            Json::Object(map)
        }
        ObjType::List => {
            let len = doc.length(obj);
            let mut items = Vec::with_capacity(len);
            for i in 0..len {
                match doc.get(obj, i) {
                    Ok(Some((value, id))) => items.push(value_json(doc, value, &id)),
                    _ => items.push(Json::Null),
                }
            }
            Json::Array(items)
        }
        ObjType::Text => Json::String(doc.text(obj).unwrap_or_default()),
    }
}

/// Renders one value found at `id`.
pub(crate) fn value_json<R: ReadDoc>(doc: &R, value: Value<'_>, id: &ObjId) -> Json {
    match value {
        Value::Object(kind) => object(doc, id, kind),
        Value::Scalar(s) => scalar(&s),
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
        ScalarValue::Bytes(b) => {
            let mut m = Map::new();
            m.insert("$bytes".into(), Json::String(hex::encode(b)));
            Json::Object(m)
        }
        ScalarValue::Unknown { .. } => Json::Null,
    }
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
        let mut doc = crate::merge::new_doc();
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
}
