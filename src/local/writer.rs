//! The writer record: which actor this device writes a store with, and the last seq it
//! handed out. Recorded before each op file appears, so no seq is ever handed out twice.
//!
//! ```text
//! STATE/stores/<store id>/writer     CBOR map, replaced atomically (temp, fsync, rename):
//!   "v"       unsigned integer   record version (= 1)
//!   "actor"   text string        the actor this device writes with, lowercase hex
//!   "seq"     unsigned integer   the last seq written with that actor (recorded BEFORE the
//!                                op file appears, so no seq is ever handed out twice)
//!   "hash"    text string        the Automerge hash of that change ("" before the first)
//!   "retired" array of text      actors this device wrote with before (it owns their temps)
//! ```

use ciborium::Value;

/// The writer's durable record for one store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct WriterRecord {
    pub(crate) actor: String,
    pub(crate) seq: u64,
    pub(crate) hash: String,
    pub(crate) retired: Vec<String>,
}

/// Encodes a record.
pub(crate) fn encode(r: &WriterRecord) -> Vec<u8> {
    let value = Value::Map(vec![
        (Value::Text("v".into()), Value::Integer(1.into())),
        (Value::Text("actor".into()), Value::Text(r.actor.clone())),
        (Value::Text("seq".into()), Value::Integer(r.seq.into())),
        (Value::Text("hash".into()), Value::Text(r.hash.clone())),
        (
            Value::Text("retired".into()),
            Value::Array(r.retired.iter().map(|a| Value::Text(a.clone())).collect()),
        ),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// Decodes a record; `None` for anything torn, foreign or of another version (the writer
/// then takes a fresh actor, which is never wrong).
pub(crate) fn decode(bytes: &[u8]) -> Option<WriterRecord> {
    let Value::Map(entries) = ciborium::from_reader::<Value, _>(bytes).ok()? else {
        return None;
    };
    let field = |name: &str| crate::format::cbor::field(&entries, name);
    if field("v")?.as_integer()? != 1.into() {
        return None;
    }
    let text = |name: &str| field(name)?.as_text().map(str::to_string);
    let retired = field("retired")?
        .as_array()?
        .iter()
        .map(|v| v.as_text().map(str::to_string))
        .collect::<Option<Vec<_>>>()?;
    Some(WriterRecord {
        actor: text("actor")?,
        seq: u64::try_from(field("seq")?.as_integer()?).ok()?,
        hash: text("hash")?,
        retired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_torn_record() {
        let r = WriterRecord {
            actor: "00ff".into(),
            seq: 42,
            hash: "ab".into(),
            retired: vec!["11".into()],
        };
        let bytes = encode(&r);
        assert_eq!(decode(&bytes), Some(r));
        for len in 0..bytes.len() {
            assert_eq!(decode(&bytes[..len]), None);
        }
    }
}
