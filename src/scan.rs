//! Listing the store folder: which entries are op files, and what everything else is.
//!
//! Scanning never fails because of one entry: an unreadable folder, a foreign file or a
//! folder where none belongs becomes a [`Problem`] and the scan goes on.

use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::marker::{self, FEATURES_DIR, MARKER};
use crate::naming::{self, Foreign, OpName};
use crate::report::Problem;

/// Folder of op files.
pub(crate) const OPS_DIR: &str = "ops";
/// Names in the store root that belong to the format (now or in later versions).
const RESERVED_ROOT: &[&str] = &[MARKER, FEATURES_DIR, OPS_DIR, "snapshots", "devices"];

/// An op file found by the scan, not yet read.
#[derive(Debug, Clone)]
pub(crate) struct OpEntry {
    /// Path relative to the store, `/`-separated.
    pub(crate) rel: String,
    pub(crate) path: PathBuf,
    pub(crate) actor: String,
    pub(crate) name: OpName,
}

/// Everything a scan found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Op files, sorted by path.
    pub(crate) ops: Vec<OpEntry>,
    /// Entries that are not op files, sorted by path.
    pub(crate) problems: Vec<Problem>,
    /// Feature markers this build does not know.
    pub(crate) unknown_features: Vec<String>,
}

pub(crate) fn scan(store: &Path) -> Scan {
    let mut out = Scan::default();
    scan_root(store, &mut out);
    match marker::read_features(store) {
        Ok((unknown, clutter)) => {
            out.unknown_features = unknown;
            for name in clutter {
                let kind = naming::classify(&name);
                out.problems.push(Problem::new(
                    format!("{FEATURES_DIR}/{name}"),
                    kind.reason(),
                ));
            }
        }
        Err(e) => out.problems.push(Problem::new(FEATURES_DIR, e.to_string())),
    }
    scan_ops(store, &mut out);
    out.problems.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn scan_root(store: &Path, out: &mut Scan) {
    let Ok(entries) = std::fs::read_dir(store) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if RESERVED_ROOT.contains(&name.as_str()) {
            continue;
        }
        // The root is the user's synced folder: unknown entries there (.stfolder, notes)
        // are none of crdtdir's business. Copies and temps of its own files are reported.
        match naming::classify(&name) {
            Foreign::Unknown | Foreign::OsJunk => {}
            kind if name.contains("crdtdir") => {
                out.problems.push(Problem::new(name, kind.reason()))
            }
            _ => {}
        }
    }
}

fn scan_ops(store: &Path, out: &mut Scan) {
    let ops = store.join(OPS_DIR);
    if !ops.exists() {
        return;
    }
    let mut walk = WalkDir::new(&ops)
        .min_depth(1)
        .max_depth(2)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let rel = e
                    .path()
                    .map(|p| rel_path(store, p))
                    .unwrap_or_else(|| OPS_DIR.to_string());
                out.problems
                    .push(Problem::new(rel, format!("unreadable: {e}")));
                continue;
            }
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = rel_path(store, entry.path());
        let is_dir = entry.file_type().is_dir();
        if entry.depth() == 1 {
            if is_dir && naming::is_actor_dir(&name) {
                continue; // descend
            }
            if is_dir {
                walk.skip_current_dir();
                out.problems
                    .push(Problem::new(rel, "folder that is not an actor folder"));
            } else {
                out.problems
                    .push(Problem::new(rel, naming::classify(&name).reason()));
            }
            continue;
        }
        if is_dir {
            walk.skip_current_dir();
            out.problems
                .push(Problem::new(rel, "folder inside an actor folder"));
            continue;
        }
        if !entry.file_type().is_file() {
            out.problems.push(Problem::new(rel, "not a regular file"));
            continue;
        }
        match naming::parse_op_name(&name) {
            Some(op) => {
                let actor = entry
                    .path()
                    .parent()
                    .and_then(Path::file_name)
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.ops.push(OpEntry {
                    rel,
                    path: entry.into_path(),
                    actor,
                    name: op,
                });
            }
            None => out
                .problems
                .push(Problem::new(rel, naming::classify(&name).reason())),
        }
    }
}

/// `path` relative to `store`, with `/` separators on every platform.
pub(crate) fn rel_path(store: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(store).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}
