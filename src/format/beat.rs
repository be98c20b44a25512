//! Heartbeats: each device says, in files of its own, that it is alive and what it has
//! merged. Never rewritten: a device publishes a new beat and then deletes its older ones,
//! so no sync tool ever sees one file change in two places.
//!
//! ```text
//! STORE/devices/<actor>/<counter>-<hash>.beat
//!   <actor>    the device's current actor (lowercase hex); a device that has not written
//!              yet has an actor all the same (its writer record has seq 0)
//!   <counter>  the device's beat counter, decimal, zero-padded to COUNTER_WIDTH digits;
//!              it only ever increases (kept in local state)
//!   <hash>     the first 32 hex digits of the BLAKE3 hash of the file
//! beat = CBOR map:
//!   "v"        unsigned       BEAT_VERSION (= 1)
//!   "device"   text           display name
//!   "actors"   array of text  every actor this device has written with (current first)
//!   "counter"  unsigned       as in the name
//!   "time"     signed         the device's wall clock, seconds since the Unix epoch
//!   "heads"    array of text  Automerge heads of the device's merged view (hex)
//!   "verified" array of text  snapshots the device has verified (none before compaction)
//!   "forgotten" array of text optional: devices this device forgot (`crdtdir forget`), each
//!              "<actor>@<counter>": the beat folder's actor and the counter of its latest
//!              beat then; every reader leaves that device out of "every other device" until
//!              it publishes a beat with a higher counter
//! ```
//! A beat is published like an op file (temp, fsync, read-only, rename, fsync the folder).

use ciborium::Value;

use super::DecodeError;
use crate::format::names::HASH_HEX_LEN;

/// The beat version this build writes and reads.
pub(crate) const BEAT_VERSION: u64 = 1;
/// Folder of heartbeats.
pub(crate) const DEVICES_DIR: &str = "devices";
/// The folder's change hint (docs/FORMAT.md §20): in a folder elsewhere than on a local
/// disk, a device that created an op file, a pack, a snapshot or a checkpoint then writes
/// a few random bytes here, so a polling device learns from one request that a listing is
/// worth making. A hint only: lost, stale or never written, it costs a wait for the next
/// full listing, never a change.
pub(crate) const TOUCHED: &str = "devices/touched";
/// Digits of the zero-padded counter in a beat's name.
pub(crate) const COUNTER_WIDTH: usize = 12;
const BEAT_EXT: &str = ".beat";

/// One heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Beat {
    pub(crate) device: String,
    pub(crate) actors: Vec<String>,
    pub(crate) counter: u64,
    pub(crate) time: i64,
    pub(crate) heads: Vec<String>,
    pub(crate) verified: Vec<String>,
    /// Devices this device forgot: (beat folder actor, its latest counter then).
    pub(crate) forgotten: Vec<(String, u64)>,
}

pub(crate) fn encode(beat: &Beat) -> Vec<u8> {
    let texts = |v: &[String]| Value::Array(v.iter().map(|s| Value::Text(s.clone())).collect());
    let value = Value::Map(vec![
        (Value::Text("v".into()), Value::Integer(BEAT_VERSION.into())),
        (
            Value::Text("device".into()),
            Value::Text(beat.device.clone()),
        ),
        (Value::Text("actors".into()), texts(&beat.actors)),
        (
            Value::Text("counter".into()),
            Value::Integer(beat.counter.into()),
        ),
        (Value::Text("time".into()), Value::Integer(beat.time.into())),
        (Value::Text("heads".into()), texts(&beat.heads)),
        (Value::Text("verified".into()), texts(&beat.verified)),
    ]);
    let value = match value {
        // Only when there is one: older readers ignore keys they do not know anyway.
        Value::Map(mut entries) if !beat.forgotten.is_empty() => {
            let notes: Vec<String> = beat
                .forgotten
                .iter()
                .map(|(actor, counter)| format!("{actor}@{counter}"))
                .collect();
            entries.push((Value::Text("forgotten".into()), texts(&notes)));
            Value::Map(entries)
        }
        other => other,
    };
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// Decodes a beat; `Err` says why it is skipped.
pub(crate) fn decode(bytes: &[u8]) -> Result<Beat, DecodeError> {
    let mut cursor = std::io::Cursor::new(bytes);
    let value: Value = ciborium::from_reader(&mut cursor).map_err(|e| super::cbor::describe(&e))?;
    if cursor.position() as usize != bytes.len() {
        return Err(DecodeError::TrailingBytes { what: "beat" });
    }
    let Value::Map(entries) = value else {
        return Err(DecodeError::NotAMap { what: "beat" });
    };
    let field = |name: &str| crate::format::cbor::field(&entries, name);
    let missing = |field: &'static str| DecodeError::MissingField {
        what: "beat",
        field,
    };
    let uint = |name: &'static str| -> Result<u64, DecodeError> {
        field(name)
            .and_then(Value::as_integer)
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| missing(name))
    };
    let version = uint("v")?;
    if version > BEAT_VERSION {
        return Err(DecodeError::Newer {
            what: "beat",
            found: version,
            known: BEAT_VERSION,
        });
    }
    let texts = |name: &'static str| -> Result<Vec<String>, DecodeError> {
        field(name)
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|v| v.as_text().map(str::to_string)).collect())
            .ok_or_else(|| missing(name))
    };
    Ok(Beat {
        device: field("device")
            .and_then(Value::as_text)
            .ok_or_else(|| missing("device"))?
            .to_string(),
        actors: texts("actors")?,
        counter: uint("counter")?,
        time: field("time")
            .and_then(Value::as_integer)
            .and_then(|i| i64::try_from(i).ok())
            .ok_or_else(|| missing("time"))?,
        heads: texts("heads")?,
        verified: texts("verified")?,
        forgotten: match field("forgotten") {
            None => Vec::new(),
            Some(_) => texts("forgotten")?
                .iter()
                .map(|note| {
                    let (actor, counter) = note.split_once('@')?;
                    Some((actor.to_string(), counter.parse().ok()?))
                })
                .collect::<Option<Vec<_>>>()
                .ok_or("beat has a malformed forgotten note")?,
        },
    })
}

/// The canonical file name of a beat with these bytes.
pub(crate) fn file_name(counter: u64, bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes).to_hex();
    format!(
        "{counter:0w$}-{}{BEAT_EXT}",
        &hash[..HASH_HEX_LEN],
        w = COUNTER_WIDTH
    )
}

/// The counter and hash of a canonical beat name.
pub(crate) fn parse_name(name: &str) -> Option<(u64, &str)> {
    let stem = name.strip_suffix(BEAT_EXT)?;
    let (counter, hash) = stem.split_once('-')?;
    let canonical = counter.len() == COUNTER_WIDTH
        && counter.bytes().all(|b| b.is_ascii_digit())
        && hash.len() == HASH_HEX_LEN
        && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    canonical
        .then(|| Some((counter.parse().ok()?, hash)))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Beat {
        Beat {
            device: "phone".into(),
            actors: vec!["00ff".into()],
            counter: 7,
            time: -3,
            heads: vec!["ab".into()],
            verified: vec![],
            forgotten: vec![],
        }
    }

    #[test]
    fn round_trip_and_name() {
        let bytes = encode(&sample());
        assert_eq!(decode(&bytes).unwrap(), sample());
        // A beat without notes has no "forgotten" key: the bytes older builds wrote.
        assert!(!bytes.windows(9).any(|w| w == b"forgotten"));
        let noted = Beat {
            forgotten: vec![("0a0b".into(), 12)],
            ..sample()
        };
        assert_eq!(decode(&encode(&noted)).unwrap(), noted);
        let name = file_name(7, &bytes);
        let (counter, hash) = parse_name(&name).unwrap();
        assert_eq!(counter, 7);
        assert_eq!(hash, &blake3::hash(&bytes).to_hex()[..HASH_HEX_LEN]);
        assert_eq!(parse_name("7-00.beat"), None);
    }

    #[test]
    fn truncated_and_future_beats_are_refused() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err());
        }
        let mut v: Value = ciborium::from_reader(&bytes[..]).unwrap();
        if let Value::Map(m) = &mut v {
            m[0].1 = Value::Integer(2.into());
        }
        let mut future = Vec::new();
        ciborium::into_writer(&v, &mut future).unwrap();
        assert!(matches!(
            decode(&future),
            Err(DecodeError::Newer { found: 2, .. })
        ));
    }
}
