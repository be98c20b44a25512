//! This device's memory of heartbeats, in local state.
//!
//! ```text
//! STATE/stores/<store id>/beats   CBOR map, local: this device's own beat counter
//!   "v" 1, "counter" unsigned (the last counter used), "at" signed (our clock when written),
//!   "heads" array of text, "verified" array of text (what that beat carried)
//! STATE/stores/<store id>/seen    CBOR map, local: per beat folder (actor) of other devices,
//!   [counter, at]: the last counter seen and our clock when it was first seen
//! STATE/stores/<store id>/forgotten  CBOR map, local: the devices this device forgot, beat
//!   folder (actor) -> the counter of its latest beat then (every beat carries them)
//! STATE/stores/<store id>/tidied  32 bytes, local: BLAKE3 of the beat folders' file names
//!   when the tidy step last ran; the step is skipped while they are the same
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fs;

/// Our memory of our own beats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OwnBeats {
    pub(crate) v: u32,
    pub(crate) counter: u64,
    pub(crate) at: i64,
    pub(crate) heads: Vec<String>,
    #[serde(default)]
    pub(crate) verified: Vec<String>,
    /// The forgotten devices that beat carried.
    #[serde(default)]
    pub(crate) forgotten: Vec<(String, u64)>,
}

/// Our memory of other devices' beats: actor -> (counter, our clock when first seen).
pub(crate) type Seen = BTreeMap<String, (u64, i64)>;

pub(crate) fn read_own(dir: &Path) -> OwnBeats {
    std::fs::read(dir.join(crate::local::names::BEATS))
        .ok()
        .and_then(|b| ciborium::from_reader::<OwnBeats, _>(&b[..]).ok())
        .filter(|o| o.v == 1)
        .unwrap_or_default()
}

/// Durably: the counter is recorded before the beat that uses it appears.
pub(crate) fn write_own(dir: &Path, own: &OwnBeats) -> std::io::Result<()> {
    let mut out = Vec::new();
    ciborium::into_writer(own, &mut out).map_err(std::io::Error::other)?;
    fs::replace_local(&dir.join(crate::local::names::BEATS), &out)
}

pub(crate) fn read_seen(dir: &Path) -> Seen {
    std::fs::read(dir.join(crate::local::names::SEEN))
        .ok()
        .and_then(|b| ciborium::from_reader::<Seen, _>(&b[..]).ok())
        .unwrap_or_default()
}

pub(crate) fn write_seen(dir: &Path, seen: &Seen) -> std::io::Result<()> {
    let mut out = Vec::new();
    ciborium::into_writer(seen, &mut out).map_err(std::io::Error::other)?;
    fs::replace_unsynced(&dir.join(crate::local::names::SEEN), &out)
}

/// The devices this device forgot: beat folder (actor) -> its latest counter then.
pub(crate) fn read_forgotten(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read(dir.join(crate::local::names::FORGOTTEN))
        .ok()
        .and_then(|b| ciborium::from_reader::<BTreeMap<String, u64>, _>(&b[..]).ok())
        .unwrap_or_default()
}

/// Durably: a device forgotten stays forgotten in this device's every later beat.
pub(crate) fn write_forgotten(
    dir: &Path,
    forgotten: &BTreeMap<String, u64>,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    ciborium::into_writer(forgotten, &mut out).map_err(std::io::Error::other)?;
    fs::replace_local(&dir.join(crate::local::names::FORGOTTEN), &out)
}

/// What the last tidy step saw (see the module documentation), if known.
pub(crate) fn read_tidied(dir: &Path) -> Option<[u8; 32]> {
    std::fs::read(dir.join(crate::local::names::TIDIED))
        .ok()?
        .try_into()
        .ok()
}

/// True when the tidy step's note was written less than `secs` seconds ago (a clock that
/// went back counts as long ago).
pub(crate) fn tidied_within(dir: &Path, secs: u64) -> bool {
    std::fs::metadata(dir.join(crate::local::names::TIDIED))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() < secs)
}

/// Not durably: a lost note only makes the next tidy step run.
pub(crate) fn write_tidied(dir: &Path, digest: &[u8; 32]) -> std::io::Result<()> {
    fs::replace_unsynced(&dir.join(crate::local::names::TIDIED), digest)
}
