//! What sync tools, cloud services and operating systems leave in a synced folder, as a
//! table: one row per tool and habit, each with a name it really writes. A name that is not
//! one of crdtdir's own is classified by the first row that matches, so `status` can say
//! what it is; nothing is ever deleted.

use crate::fs::{TEMP_PREFIX, TEMP_SUFFIX};

/// What a name that is not one of crdtdir's own is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Foreign {
    /// A crdtdir temp file: a write in flight, or left by a crash (its owner removes it).
    CrdtdirTemp,
    /// A sync tool's partial download or temp file.
    SyncTemp,
    /// A sync tool's copy of a file it saw changed in two places.
    ConflictCopy,
    /// A cloud service's placeholder for a file not downloaded yet.
    CloudPlaceholder,
    /// Operating-system clutter.
    OsJunk,
    /// Anything else.
    Unknown,
}

impl Foreign {
    /// A short human reason, used in reports.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Foreign::CrdtdirTemp => "crdtdir temp file (a write in progress or interrupted)",
            Foreign::SyncTemp => "sync tool temp file",
            Foreign::ConflictCopy => "sync tool conflict copy",
            Foreign::CloudPlaceholder => "cloud placeholder (file not downloaded yet)",
            Foreign::OsJunk => "operating system file",
            Foreign::Unknown => "not a crdtdir file",
        }
    }
}

impl From<Foreign> for crate::report::ProblemKind {
    fn from(f: Foreign) -> Self {
        use crate::report::ProblemKind as K;
        match f {
            Foreign::CrdtdirTemp => K::CrdtdirTemp,
            Foreign::SyncTemp => K::SyncTemp,
            Foreign::ConflictCopy => K::ConflictCopy,
            Foreign::CloudPlaceholder => K::CloudPlaceholder,
            Foreign::OsJunk => K::OsJunk,
            Foreign::Unknown => K::Foreign,
        }
    }
}

/// How a row recognises a name. Prefixes are compared as written; everything else ignores
/// ASCII case.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pattern {
    /// The lowercased name contains this.
    Contains(&'static str),
    /// The name starts with this.
    Prefix(&'static str),
    /// The lowercased name ends with this.
    Suffix(&'static str),
    /// The name starts with the first and its lowercased form ends with the second.
    Around(&'static str, &'static str),
    /// The lowercased name is this.
    Exact(&'static str),
    /// This test says so (for shapes the others cannot say).
    Test(fn(&str) -> bool),
}

impl Pattern {
    fn matches(self, name: &str, lower: &str) -> bool {
        match self {
            Pattern::Contains(p) => lower.contains(p),
            Pattern::Prefix(p) => name.starts_with(p),
            Pattern::Suffix(p) => lower.ends_with(p),
            Pattern::Around(a, b) => name.starts_with(a) && lower.ends_with(b),
            Pattern::Exact(p) => lower == p,
            Pattern::Test(f) => f(name),
        }
    }
}

/// One habit of one tool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quirk {
    /// Who does it.
    pub(crate) tool: &'static str,
    /// How to recognise it.
    pub(crate) pattern: Pattern,
    /// What it is.
    pub(crate) kind: Foreign,
    /// A name the tool writes: each row's test.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) example: &'static str,
}

const fn row(tool: &'static str, pattern: Pattern, kind: Foreign, example: &'static str) -> Quirk {
    Quirk {
        tool,
        pattern,
        kind,
        example,
    }
}

use Foreign::{CloudPlaceholder, ConflictCopy, OsJunk, SyncTemp};
use Pattern::{Around, Contains, Exact, Prefix, Suffix, Test};

/// rclone bisync's copies of a file both sides changed: `NAME..path1`, `NAME..path2`
/// (before v1.66), `NAME.conflict1`, `NAME.conflict2` (since).
fn rclone_copy(name: &str) -> bool {
    [".path", "conflict"].iter().any(|tag| {
        name.rsplit_once(&format!(".{tag}"))
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// OneDrive's copy of a file another PC changed too: the PC's name after a hyphen, before
/// the extension (`0000000001-<hash>-LAPTOP.op`, `packs-laptop`). Only said of names whose
/// first part is a crdtdir name's: ten-digit seqs, or a feature's name.
fn onedrive_copy(name: &str) -> bool {
    let stem = name.split_once('.').map_or(name, |(stem, _)| stem);
    let parts: Vec<&str> = stem.split('-').collect();
    let seqs = parts
        .iter()
        .take_while(|p| p.len() == 10 && p.bytes().all(|b| b.is_ascii_digit()))
        .count();
    let hash = parts
        .get(seqs)
        .is_some_and(|p| p.len() == 32 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    let crdtdir_stem = seqs > 0 && hash && parts.len() > seqs + 1;
    let feature = crate::format::marker::KNOWN_FEATURES.iter().any(|f| {
        stem.strip_prefix(f)
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('-'))
    });
    crdtdir_stem || feature
}

/// Google Drive's (and many desktop tools') numbered copy: ` (1)` before the extension.
fn numbered_copy(name: &str) -> bool {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    stem.strip_suffix(')')
        .and_then(|s| s.rsplit_once(" ("))
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Every known habit, in the order they are tried: conflict copies first (a conflict copy of
/// a temp is still a conflict copy).
#[rustfmt::skip]
pub(crate) static QUIRKS: &[Quirk] = &[
    row("Syncthing", Contains(".sync-conflict-"), ConflictCopy, "0000000001-aa.sync-conflict-20240101-120000-ABCDEFG.op"),
    row("Nextcloud, older Dropbox", Contains(" (conflicted copy"), ConflictCopy, "0000000001-aa (conflicted copy 2024-01-01).op"),
    row("Dropbox", Contains("'s conflicted copy"), ConflictCopy, "0000000001-aa (Ann's MacBook Pro's conflicted copy 2024-01-01).op"),
    row("ownCloud, older Nextcloud", Contains("_conflict-"), ConflictCopy, "0000000001-aa_conflict-20240101-120000.op"),
    row("Unison (copyonconflict)", Contains(" (conflict on "), ConflictCopy, "0000000001-aa (Conflict on laptop 2024-01-01).op"),
    row("Dropbox (case conflict)", Contains("(case conflict"), ConflictCopy, "0000000001-AA (Case Conflict).op"),
    row("Dropbox (selective sync)", Contains("(selective sync conflict"), ConflictCopy, "ops (Selective Sync Conflict)"),
    row("rclone bisync", Test(rclone_copy), ConflictCopy, "0000000001-aa.op..path1"),
    row("OneDrive", Test(onedrive_copy), ConflictCopy, "0000000001-0123456789abcdef0123456789abcdef-LAPTOP.op"),
    row("Google Drive", Test(numbered_copy), ConflictCopy, "0000000001-aa (1).op"),
    row("Syncthing", Around(".syncthing.", ".tmp"), SyncTemp, ".syncthing.0000000001-aa.op.tmp"),
    row("Syncthing (Windows)", Around("~syncthing~", ".tmp"), SyncTemp, "~syncthing~0000000001-aa.op.tmp"),
    row("Unison", Prefix(".unison."), SyncTemp, ".unison.0000000001-aa.op.123.unison.tmp"),
    row("LibreOffice lock", Prefix(".~"), SyncTemp, ".~lock.0000000001-aa.op#"),
    row("Microsoft Office", Prefix("~$"), SyncTemp, "~$notes.docx"),
    row("rclone, browsers", Suffix(".partial"), SyncTemp, "0000000001-aa.op.partial"),
    row("Firefox, KDE", Suffix(".part"), SyncTemp, "0000000001-aa.op.part"),
    row("Resilio Sync", Suffix(".!sync"), SyncTemp, "0000000001-aa.op.!sync"),
    row("many tools", Suffix(".tmp"), SyncTemp, "0000000001-aa.op.tmp"),
    row("Chrome", Suffix(".crdownload"), SyncTemp, "0000000001-aa.op.crdownload"),
    row("Google Drive", Contains(".tmp.drivedownload"), SyncTemp, "0000000001-aa.op.tmp.drivedownload"),
    row("iCloud Drive", Around(".", ".icloud"), CloudPlaceholder, ".0000000001-aa.op.icloud"),
    row("macOS Finder", Exact(".ds_store"), OsJunk, ".DS_Store"),
    row("macOS (AppleDouble)", Prefix("._"), OsJunk, "._0000000001-aa.op"),
    row("macOS (folder icon)", Exact("icon\r"), OsJunk, "Icon\r"),
    row("Windows Explorer", Exact("thumbs.db"), OsJunk, "Thumbs.db"),
    row("Windows Media Center", Exact("ehthumbs.db"), OsJunk, "ehthumbs.db"),
    row("Windows Explorer", Exact("desktop.ini"), OsJunk, "desktop.ini"),
    row("KDE Dolphin", Exact(".directory"), OsJunk, ".directory"),
];

/// The first row of [`QUIRKS`] that matches `name`.
pub(crate) fn quirk_of(name: &str) -> Option<&'static Quirk> {
    let lower = name.to_ascii_lowercase();
    QUIRKS.iter().find(|q| q.pattern.matches(name, &lower))
}

/// Classifies a file name that is not a canonical crdtdir name, with a reason for people
/// that names the tool where one is known.
pub(crate) fn describe(name: &str) -> (Foreign, String) {
    let kind = classify(name);
    match quirk_of(name).filter(|q| q.kind == kind) {
        Some(q) => (kind, format!("{} ({})", kind.reason(), q.tool)),
        None => (kind, kind.reason().to_string()),
    }
}

/// Classifies a file name that is not a canonical crdtdir name.
pub(crate) fn classify(name: &str) -> Foreign {
    if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
        return Foreign::CrdtdirTemp;
    }
    quirk_of(name).map_or(Foreign::Unknown, |q| q.kind)
}

/// The problem a name the scan does not own is: classified, with its reason.
pub(crate) fn problem(path: impl Into<String>, name: &str) -> crate::report::Problem {
    let (kind, reason) = describe(name);
    crate::report::Problem::new(kind.into(), path, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test row per tool: the name each tool writes is recognised by its own row, so
    /// no row is shadowed by an earlier one.
    #[test]
    fn every_tool_is_recognised_by_its_own_row() {
        for (i, q) in QUIRKS.iter().enumerate() {
            let found = quirk_of(q.example).map(|f| f as *const Quirk);
            assert_eq!(
                found,
                Some(q as *const Quirk),
                "row {i} ({}): {:?}",
                q.tool,
                q.example
            );
            assert_eq!(classify(q.example), q.kind, "row {i} ({})", q.tool);
        }
    }

    #[test]
    fn foreign_names_are_classified() {
        let cases = [
            (".crdtdir-ab12-0011.tmp", Foreign::CrdtdirTemp),
            (".syncthing.0000000001-aa.op.tmp", Foreign::SyncTemp),
            ("~syncthing~0000000001-aa.op.tmp", Foreign::SyncTemp),
            ("0000000001-aa.op.partial", Foreign::SyncTemp),
            (".unison.0000000001-aa.op.123.unison.tmp", Foreign::SyncTemp),
            (".~lock.0000000001-aa.op#", Foreign::SyncTemp),
            (
                "0000000001-aa.sync-conflict-20240101-120000-ABCDEFG.op",
                Foreign::ConflictCopy,
            ),
            (
                "0000000001-aa (conflicted copy 2024-01-01).op",
                Foreign::ConflictCopy,
            ),
            (
                "0000000001-aa (Conflict on laptop 2024-01-01).op",
                Foreign::ConflictCopy,
            ),
            // Dropbox's own spelling, as its clients write it.
            (
                "0000000001-aa (Ann's MacBook Pro's conflicted copy 2024-01-01).op",
                Foreign::ConflictCopy,
            ),
            (
                "0000000001-aa (laptop's conflicted copy 2024-01-01 (1)).op",
                Foreign::ConflictCopy,
            ),
            (".0000000001-aa.op.icloud", Foreign::CloudPlaceholder),
            (".DS_Store", Foreign::OsJunk),
            ("Thumbs.db", Foreign::OsJunk),
            ("desktop.ini", Foreign::OsJunk),
            ("._0000000001-aa.op", Foreign::OsJunk),
            ("0000000001-aa.op.conflict2", Foreign::ConflictCopy),
            ("packs..path2", Foreign::ConflictCopy),
            ("packs-laptop", Foreign::ConflictCopy),
            (
                "0000000001-0000000004-0123456789abcdef0123456789abcdef-DESKTOP-7.pack",
                Foreign::ConflictCopy,
            ),
            ("0000000001-aa (12).op", Foreign::ConflictCopy),
            ("notes.txt", Foreign::Unknown),
            ("notes (draft).txt", Foreign::Unknown),
            ("frobnicate-laptop", Foreign::Unknown),
            ("0000000001-aa.path", Foreign::Unknown),
        ];
        for (name, want) in cases {
            assert_eq!(classify(name), want, "{name}");
        }
    }
}
