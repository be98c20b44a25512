//! The synced folder: where each kind of file lives, what its names are, and reading it
//! (the scan, the marker, the feature markers, the latest heartbeats). Paths inside the
//! store are relative and `/`-separated; they are built and taken apart only here.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::beat::{self, Beat};
use crate::format::marker::{self, Marker, FEATURES_DIR, MARKER};
use crate::format::record;
use crate::format::snapshot::SNAPSHOTS_DIR;

pub(crate) mod docs_index;
pub(crate) mod documents;
pub(crate) mod layout;
pub(crate) mod quirks;
pub(crate) mod scan;
pub(crate) mod source;
pub(crate) use source::Source;

pub(crate) use crate::format::beat::DEVICES_DIR;
pub(crate) use crate::format::names::{op_rel, split_op_rel, OPS_DIR};

/// The entries of the actor folders `<dir>/<actor>/` (`ops/`, or the same layout in local
/// state), each with its actor; anything unreadable is simply not there.
pub(crate) fn actor_files(dir: &Path) -> impl Iterator<Item = (String, std::fs::DirEntry)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|actor| {
            let name = actor.file_name().to_string_lossy().into_owned();
            crate::format::names::is_actor_dir(&name).then(|| (name, actor.path()))
        })
        .flat_map(|(name, path)| {
            std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(move |file| (name.clone(), file))
        })
}

/// [`actor_files`] of folder `dir` of the synced folder, through its seam: each file's actor
/// and name.
pub(crate) fn listed_actor_files(
    folder: &dyn crate::folders::Folder,
    dir: &str,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for actor in folder.list(dir).into_iter().flatten() {
        if !actor.is_dir() || !crate::format::names::is_actor_dir(&actor.name) {
            continue;
        }
        for file in folder
            .list(&format!("{dir}/{}", actor.name))
            .into_iter()
            .flatten()
        {
            out.push((actor.name.clone(), file.name));
        }
    }
    out
}

/// `snapshots/<name>`: the path of a snapshot or compaction record.
pub(crate) fn snapshot_rel(name: &str) -> String {
    format!("{SNAPSHOTS_DIR}/{name}")
}

/// The file name of a path under `snapshots/`; `None` for any other path.
pub(crate) fn snapshot_name(rel: &str) -> Option<&str> {
    rel.strip_prefix(SNAPSHOTS_DIR)?.strip_prefix('/')
}

/// The path of the compaction record of the snapshot at `snapshot_rel`.
pub(crate) fn record_rel(snapshot_rel: &str) -> Option<String> {
    Some(self::snapshot_rel(&record::file_name(snapshot_name(
        snapshot_rel,
    )?)?))
}

/// The feature an entry of the features folder marks, and whether it is a sync tool's copy
/// of the marker: a marker is `[a-z0-9-]+`; a conflict copy of one (rclone bisync renames two
/// devices' identical markers to `NAME..path1` and `NAME..path2`, OneDrive writes
/// `NAME-PCNAME`, Syncthing `NAME.sync-conflict-…`, Google Drive `NAME (1)`) marks the
/// same feature, so a sync tool can neither make a store read-only nor take a feature away.
/// (Feature names therefore never begin with another feature's name and a hyphen.)
/// `None`: not a marker (other clutter).
fn feature_of(name: &str) -> Option<&str> {
    let is_name = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
    };
    let copy = quirks::classify(name) == quirks::Foreign::ConflictCopy;
    if is_name(name) {
        // OneDrive's `packs-laptop` is a copy of `packs`; any other valid name is itself.
        let known = marker::KNOWN_FEATURES.iter().find(|f| {
            name.strip_prefix(**f)
                .is_some_and(|rest| rest.len() > 1 && rest.starts_with('-'))
        });
        return Some(match known {
            Some(f) if copy => f,
            _ => name,
        });
    }
    if !copy {
        return None;
    }
    let end = name
        .find(|c: char| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
        .unwrap_or(name.len());
    let base = name[..end].trim_end_matches('-');
    is_name(base).then_some(base)
}

/// The feature markers of a store, as [`read_features`] finds them.
#[derive(Debug, Default)]
pub(crate) struct Features {
    /// Every feature a marker names, known or not, sorted.
    pub(crate) present: Vec<String>,
    /// The features this build does not know, sorted.
    pub(crate) unknown: Vec<String>,
    /// Entries of the features folder that are not feature markers at all (sync-tool
    /// clutter).
    pub(crate) clutter: Vec<String>,
}

/// Reads the feature markers. A sync tool's copy of a marker marks its feature
/// ([`feature_of`]).
pub(crate) fn read_features(store: &dyn crate::folders::Folder) -> Result<Features> {
    let mut out = Features::default();
    let entries = match store.list(FEATURES_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            let dir = Path::new(&store.describe()).join(FEATURES_DIR);
            return Err(Error::io(&dir)(e));
        }
    };
    for crate::folders::Entry { name, .. } in entries {
        match feature_of(&name) {
            Some(feature) => {
                out.present.push(feature.to_string());
                if !marker::KNOWN_FEATURES.contains(&feature) {
                    out.unknown.push(feature.to_string());
                }
            }
            None => out.clutter.push(name),
        }
    }
    for list in [&mut out.present, &mut out.unknown, &mut out.clutter] {
        list.sort();
        list.dedup();
    }
    Ok(out)
}

/// Whether the store in `folder` has feature marker `features/<feature>`.
pub(crate) fn has_feature(folder: &dyn crate::folders::Folder, feature: &str) -> bool {
    folder
        .stat(&format!("{FEATURES_DIR}/{feature}"))
        .is_ok_and(|e| e.is_some())
}

/// Reads the marker of the store at `root`: `NoStore` when there is none, `Corrupt` when it
/// is not a regular file or does not decode.
pub(crate) fn read_marker(root: &Path) -> Result<Marker> {
    read_marker_in(&crate::folders::Local::new(root), root)
}

/// [`read_marker`] of the store in `folder` (at `root`, for messages).
pub(crate) fn read_marker_in(folder: &dyn crate::folders::Folder, root: &Path) -> Result<Marker> {
    let path = root.join(MARKER);
    match folder.stat(MARKER) {
        Ok(None) => {
            return Err(Error::NoStore {
                path: root.to_path_buf(),
            })
        }
        Err(e) => return Err(Error::io(&path)(e)),
        // A FIFO or a folder under the marker's name must not hang or confuse a reader.
        Ok(Some(m)) if !m.is_file() => {
            return Err(Error::Corrupt {
                path,
                reason: "not a crdtdir store marker (not a regular file)".into(),
            })
        }
        Ok(Some(_)) => {}
    }
    let bytes = folder.read(MARKER).map_err(Error::io(&path))?;
    marker::decode(&bytes).map_err(|e| Error::Corrupt {
        path,
        reason: e.to_string(),
    })
}

/// The beat folders (`devices/<actor>/`) in the store, sorted.
pub(crate) fn beat_actors(store: &dyn crate::folders::Folder) -> Vec<String> {
    let mut dirs: Vec<String> = store
        .list(DEVICES_DIR)
        .into_iter()
        .flatten()
        .filter(crate::folders::Entry::is_dir)
        .map(|e| e.name)
        .filter(|n| crate::format::names::is_actor_dir(n))
        .collect();
    dirs.sort();
    dirs
}

/// A digest of the names of every file in the beat folders (no file is read): it changes
/// when any device publishes or removes a beat.
pub(crate) fn beats_digest(store: &dyn crate::folders::Folder) -> [u8; 32] {
    let mut digest = blake3::Hasher::new();
    for actor in beat_actors(store) {
        let mut names: Vec<String> = store
            .list(&layout::actor_beats_rel(&actor))
            .into_iter()
            .flatten()
            .map(|e| e.name)
            .collect();
        names.sort_unstable();
        for name in std::iter::once(actor).chain(names) {
            digest.update(name.as_bytes());
            digest.update(b"\0");
        }
    }
    digest.finalize().into()
}

/// The latest beat of every device no device has forgotten (`crdtdir forget`, a note in
/// beats, docs/FORMAT.md §13), as (actor, path, beat): a note holds while the forgotten
/// device publishes no beat with a higher counter than the one it names. These are the
/// devices whose acknowledgements count ("every other device"). Each beat is read once.
pub(crate) fn live_beats(store: &crate::folder::Source<'_>) -> Vec<(String, String, Beat)> {
    let latest: Vec<(String, String, Beat)> = beat_actors(&*store.folder)
        .into_iter()
        .filter_map(|a| latest_beat(store, &a).map(|(rel, beat)| (a, rel, beat)))
        .collect();
    let mut forgotten: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (actor, counter) in latest.iter().flat_map(|(_, _, b)| &b.forgotten) {
        let at = forgotten.entry(actor.as_str()).or_insert(0);
        *at = (*at).max(*counter);
    }
    let live: Vec<bool> = latest
        .iter()
        .map(|(actor, _, beat)| {
            forgotten
                .get(actor.as_str())
                .is_none_or(|&at| beat.counter > at)
        })
        .collect();
    latest
        .into_iter()
        .zip(live)
        .filter_map(|(entry, live)| live.then_some(entry))
        .collect()
}

/// The valid beat with the highest counter in `devices/<actor>/`, with its path. Only
/// regular files are read (a FIFO named like a beat must not hang a reader).
pub(crate) fn latest_beat(
    store: &crate::folder::Source<'_>,
    actor: &str,
) -> Option<(String, Beat)> {
    let dir = layout::actor_beats_rel(actor);
    let mut names: Vec<(u64, String)> = store
        .folder
        .list(&dir)
        .ok()?
        .into_iter()
        .filter(crate::folders::Entry::is_file)
        .filter_map(|e| {
            let counter = beat::parse_name(&e.name)?.0;
            Some((counter, e.name))
        })
        .collect();
    names.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    names.into_iter().find_map(|(_, n)| {
        let bytes = store.folder.read(&format!("{dir}/{n}")).ok()?;
        let (counter, hash) = beat::parse_name(&n)?;
        (crate::format::names::file_hash_hex(&bytes) == hash).then_some(())?;
        let plain = store
            .open("beat", &crate::seal::context(actor, counter), &bytes)
            .ok()?;
        let beat = beat::decode(&plain).ok()?;
        Some((format!("{dir}/{n}"), beat))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_tool_copies_of_a_feature_marker_mark_the_feature() {
        for (name, want) in [
            ("packs", Some("packs")),
            ("packs..path1", Some("packs")),
            ("packs..path2", Some("packs")),
            ("packs.conflict1", Some("packs")),
            ("packs-laptop", Some("packs")),
            (
                "snapshots.sync-conflict-20240101-120000-ABCDEFG",
                Some("snapshots"),
            ),
            ("encrypted (1)", Some("encrypted")),
            ("packs (laptop's conflicted copy 2024-01-01)", Some("packs")),
            // A copy of a feature this build does not know is that unknown feature.
            ("frobnicate..path1", Some("frobnicate")),
            ("frobnicate-laptop", Some("frobnicate-laptop")),
            ("README.txt", None),
            (".DS_Store", None),
        ] {
            assert_eq!(feature_of(name), want, "{name}");
        }
    }
}
