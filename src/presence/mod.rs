//! Presence: this device's heartbeats, the other devices' latest ones judged by this
//! device's clock, and what the other devices' beats release (outbox entries, retention
//! copies).

pub(crate) mod rules;

use std::collections::HashSet;

use automerge::{ChangeHash, ReadDoc};
use serde::Serialize;

use crate::format::beat;
use crate::merged::MergedState;

/// Another device, as its heartbeats show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Presence {
    /// Its display name.
    pub name: String,
    /// Every actor it has written with (current first).
    pub actors: Vec<String>,
    /// Its latest beat file.
    pub beat: String,
    /// Seconds since its beat counter last changed, by this device's clock.
    pub seen_secs_ago: i64,
    /// Our clock minus its clock at its latest beat, in seconds (large when it is old, or
    /// when its clock is behind; negative when its clock is ahead).
    pub beat_secs_ago: i64,
    /// Whether it may be online (see the threshold given to [`Store::presence`](crate::Store::presence)).
    pub online: bool,
    /// How many of this device's changes its latest beat does not include.
    pub unmerged: usize,
}

/// The default presence threshold, in seconds.
pub const DEFAULT_THRESHOLD_SECS: i64 = 300;

/// The snapshots every other device (by its latest readable beat) has verified; `None`
/// when there is no other device to ask.
pub(crate) fn out_verified(
    live: &[(String, String, beat::Beat)],
    own: &HashSet<String>,
) -> Option<HashSet<String>> {
    let mut all: Option<HashSet<String>> = None;
    for (actor, _, beat) in live {
        if own.contains(actor) {
            continue;
        }
        let verified: HashSet<String> = beat.verified.iter().cloned().collect();
        all = Some(match all {
            None => verified,
            Some(so_far) => so_far.intersection(&verified).cloned().collect(),
        });
    }
    all
}

/// This device's changes (of its actors `own`) that `beat` does not include.
pub(crate) fn unmerged(
    state: &MergedState,
    own: &HashSet<String>,
    beat: &beat::Beat,
) -> Vec<ChangeHash> {
    let known: Vec<ChangeHash> = beat
        .heads
        .iter()
        .filter_map(|h| h.parse().ok())
        .filter(|h| {
            state
                .doc
                .get_missing_deps(std::slice::from_ref(h))
                .is_empty()
        })
        .collect();
    state
        .doc
        .get_changes_meta(&known)
        .iter()
        .filter(|m| own.contains(&m.actor.to_hex_string()))
        .map(|m| m.hash)
        .collect()
}

/// A command publishes a new heartbeat when its view changed or the last is this old.
pub(crate) const BEAT_EVERY_SECS: i64 = 60;

/// When a heartbeat is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// When the view changed, or the last beat is older than [`BEAT_EVERY_SECS`] (a command).
    Changed,
    /// Only when the last beat is older than [`BEAT_EVERY_SECS`] (every write of an app, a
    /// running watcher): enough for other devices to see this one online.
    Stale,
}

/// A device [`Store::forget`](crate::Store::forget) forgot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Forgotten {
    /// Its display name.
    pub name: String,
    /// Its beat folder's actor (hex).
    pub actor: String,
    /// The counter of its latest heartbeat: a later one brings it back.
    pub beat_counter: u64,
}

/// The beats in the beat folder of `actor`: (counter, file name).
pub(crate) fn own_beats(folder: &dyn crate::folders::Folder, actor: &str) -> Vec<(u64, String)> {
    folder
        .list(&crate::folder::layout::actor_beats_rel(actor))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let (counter, _) = beat::parse_name(&e.name)?;
            Some((counter, e.name))
        })
        .collect()
}
