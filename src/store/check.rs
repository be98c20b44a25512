//! `crdtdir check`: every file of the folder read again and verified, ignoring this device's
//! cache and view. Nothing is written.

use std::collections::HashSet;

use crate::error::Result;
use crate::folder::quirks;
use crate::folder::scan::OpEntry;
use crate::folder::Source;
use crate::folders::Folder;
use crate::format::{beat, names, pack};
use crate::merge::load::{check_copies, on_every_core};
use crate::report::{CheckReport, Problem, ProblemKind};
use crate::Store;

impl Store {
    /// Reads and verifies every file of the folder again, ignoring this device's cache and
    /// view: each op file (the loose file, and each pack entry that holds it, on its own:
    /// its hash, its seal, its envelope, and that its change is the one its name says), each
    /// pack whole against its name, snapshots (SQLite's integrity check, the document loads
    /// with the heads it claims) and compaction records, checkpoints (every check a new
    /// device makes before it starts from one), heartbeats and passphrase files. Each damaged
    /// file is reported by its path; temps, conflict copies and other files crdtdir did not
    /// write are noticed, not damage. Nothing is written, so it runs on a read-only device.
    ///
    /// On a document's handle, that document's op files and snapshots only;
    /// [`Repo::check`](crate::Repo::check) checks every document. [`Error::Locked`] on an
    /// encrypted store without its key.
    ///
    /// [`Error::Locked`]: crate::Error::Locked
    pub fn check(&self) -> Result<CheckReport> {
        self.check_unlocked()?;
        let _span = tracing::info_span!("check").entered();
        let source = self.source();
        let scan = self.scan();
        let mut report = CheckReport::default();
        for p in scan.problems.iter().cloned() {
            report.found(p);
        }
        let (copies, problems) = check_all(&source, &scan.ops);
        report.op_files = copies;
        problems.into_iter().for_each(|p| report.found(p));

        let snaps = crate::merge::snapshots::load_snapshots(&source, self.id(), &scan);
        report.snapshots = scan.snapshots.len();
        report.records = scan.records.len();
        snaps.problems.into_iter().for_each(|p| report.found(p));
        if self.inner.doc.is_none() {
            let folded: HashSet<&str> = snaps
                .valid
                .iter()
                .flat_map(|s| s.snapshot.folded_ops.iter().map(|(p, _)| p.as_str()))
                .collect();
            for rel in &scan.checkpoints {
                report.checkpoints += 1;
                match crate::merge::checkpoint::verify(&source, self.id(), &scan, rel, &folded) {
                    Ok(Some(_)) => {}
                    Ok(None) => report.found(Problem::new(
                        ProblemKind::Gap,
                        rel.clone(),
                        "checkpoint of op files this folder does not hold (all of them): a new device reads the op files instead",
                    )),
                    Err((kind, reason)) => report.found(Problem::new(
                        kind,
                        rel.clone(),
                        format!("checkpoint: {reason}"),
                    )),
                }
            }
            check_packs(&source, &mut report);
            check_beats(&source, &mut report);
            check_keys(&source, &mut report);
        }
        report.documents = 1;
        report.sort();
        Ok(report)
    }
}

/// Every copy of `entries` checked on every core (as a merge from nothing reads them): the
/// copies read and the damaged ones.
fn check_all(source: &Source<'_>, entries: &[OpEntry]) -> (usize, Vec<Problem>) {
    on_every_core(source, entries, check_copies)
        .into_iter()
        .fold((0, Vec::new()), |mut acc, (n, problems)| {
            acc.0 += n;
            acc.1.extend(problems);
            acc
        })
}

/// The regular files of each actor folder of `dir` (`packs/`, `devices/`), as (actor, name);
/// anything else there is noticed.
fn actor_files(folder: &dyn Folder, dir: &str, report: &mut CheckReport) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(actors) = folder.list(dir) else {
        return out;
    };
    for actor in actors {
        let is_dir = actor.is_dir();
        let actor_name = actor.name;
        // The change hint a folder elsewhere keeps (or a copy a sync tool brought here).
        if format!("{dir}/{actor_name}") == beat::TOUCHED {
            continue;
        }
        if !is_dir || !names::is_actor_dir(&actor_name) {
            report.found(quirks::problem(format!("{dir}/{actor_name}"), &actor_name));
            continue;
        }
        let entries = match folder.list(&format!("{dir}/{actor_name}")) {
            Ok(entries) => entries,
            Err(e) => {
                report.found(Problem::unreadable(format!("{dir}/{actor_name}"), &e));
                continue;
            }
        };
        for f in entries {
            if f.is_file() {
                out.push((actor_name.clone(), f.name));
            } else {
                report.found(Problem::new(
                    ProblemKind::NotAFile,
                    format!("{dir}/{actor_name}/{}", f.name),
                    "not a regular file",
                ));
            }
        }
    }
    out.sort();
    out
}

/// `rel`'s bytes when they match `hash`, the hash in its name; otherwise its problem is
/// reported.
fn read_named(
    folder: &dyn Folder,
    rel: &str,
    hash: &str,
    report: &mut CheckReport,
) -> Option<Vec<u8>> {
    match folder.read(rel) {
        Ok(bytes) if names::file_hash_hex(&bytes) == hash => Some(bytes),
        Ok(_) => {
            report.found(Problem::new(
                ProblemKind::Damaged,
                rel,
                "content does not match the hash in its name (damaged or truncated)",
            ));
            None
        }
        Err(e) => {
            report.found(Problem::unreadable(rel, &e));
            None
        }
    }
}

/// Each pack whole against the hash in its name (its entries are checked as op files).
fn check_packs(source: &Source<'_>, report: &mut CheckReport) {
    for (actor, name) in actor_files(&*source.folder, pack::PACKS_DIR, report) {
        let rel = crate::folder::layout::pack_rel(&actor, &name);
        let hash = pack::parse_name(&name)
            .map(|(_, _, h)| h)
            .or_else(|| pack::parse_docs_name(&name));
        let Some(hash) = hash else {
            report.found(quirks::problem(rel, &name));
            continue;
        };
        report.packs += 1;
        read_named(&*source.folder, &rel, hash, report);
    }
}

/// Each heartbeat: its hash, its seal and its fields.
fn check_beats(source: &Source<'_>, report: &mut CheckReport) {
    for (actor, name) in actor_files(&*source.folder, beat::DEVICES_DIR, report) {
        let rel = format!("{}/{actor}/{name}", beat::DEVICES_DIR);
        let Some((counter, hash)) = beat::parse_name(&name) else {
            report.found(quirks::problem(rel, &name));
            continue;
        };
        report.heartbeats += 1;
        let Some(bytes) = read_named(&*source.folder, &rel, hash, report) else {
            continue;
        };
        let verdict = source
            .open("beat", &crate::seal::context(&actor, counter), &bytes)
            .and_then(|plain| beat::decode(&plain).map_err(|e| (e.kind(), e.to_string())));
        if let Err((kind, reason)) = verdict {
            report.found(Problem::new(kind, rel, reason));
        }
    }
}

/// Each passphrase file and rotation record: its hash and its fields (no passphrase is
/// tried).
fn check_keys(source: &Source<'_>, report: &mut CheckReport) {
    let Ok(entries) = source.folder.list(crate::seal::KEYS_DIR) else {
        return;
    };
    let mut files: Vec<(String, bool)> = entries
        .into_iter()
        .map(|e| {
            let is_file = e.is_file();
            (e.name, is_file)
        })
        .collect();
    files.sort();
    for (name, is_file) in files {
        let rel = crate::folder::layout::key_rel(&name);
        type Check = fn(&[u8]) -> std::result::Result<(), String>;
        let (hash, check): (Option<&str>, Check) = match name.strip_suffix(".key") {
            Some(hash) => (Some(hash), crate::seal::check_key_file),
            None => (name.strip_suffix(crate::seal::ROTATION_EXT), |bytes| {
                crate::seal::read_rotation(bytes).map(drop)
            }),
        };
        let hash = hash.filter(|h| h.len() == names::HASH_HEX_LEN);
        let (Some(hash), true) = (hash, is_file) else {
            report.found(quirks::problem(rel, &name));
            continue;
        };
        report.keys += 1;
        if let Some(bytes) = read_named(&*source.folder, &rel, hash, report) {
            if let Err(reason) = check(&bytes) {
                report.found(Problem::new(ProblemKind::Damaged, rel, reason));
            }
        }
    }
}
