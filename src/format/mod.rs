//! The on-disk formats, one module per kind of file, each bytes in and bytes out with the
//! same verbs (`encode`, `decode`, `file_name`, `parse_name`) and the layout block on top.
//! Nothing here touches the disk: reading the folder is [`crate::folder`]'s, writing it is
//! [`crate::fs`]'s. docs/FORMAT.md is the full, versioned description.

use crate::report::ProblemKind;

pub(crate) mod beat;
pub(crate) mod cbor;
pub(crate) mod marker;
pub(crate) mod names;
pub(crate) mod opfile;
pub(crate) mod pack;
pub(crate) mod record;
pub(crate) mod snapshot;

/// Why bytes are not a file of the kind asked for. Every decoder checks its version and says
/// "newer" apart from "damaged": a newer file is fine, only not for this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Of a newer version than this build reads.
    #[error("{what} version {found} is newer than this crdtdir reads ({known})")]
    Newer {
        /// The kind of file ("envelope", "beat", "snapshot", "compaction record").
        what: &'static str,
        /// The version the file has.
        found: u64,
        /// The highest version this build reads.
        known: u64,
    },
    /// Shorter than its own structure says (a cut delivery).
    #[error("{what} is truncated")]
    Truncated {
        /// The part that is cut.
        what: &'static str,
    },
    /// Bytes after the end of the value (two writes in one file, a torn append).
    #[error("trailing bytes after the {what}")]
    TrailingBytes {
        /// The kind of value.
        what: &'static str,
    },
    /// The value is not the map the format says.
    #[error("{what} is not a map")]
    NotAMap {
        /// The kind of value.
        what: &'static str,
    },
    /// A field the format requires is not there.
    #[error("{what} has no {field}")]
    MissingField {
        /// The kind of value.
        what: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A field is there but of the wrong type.
    #[error("{what} {field} is not {expected}")]
    WrongType {
        /// The kind of value.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// What it should be ("an integer", "a text string"…).
        expected: &'static str,
    },
    /// The bytes do not match the check that covers them (bit rot, a torn file).
    #[error("{what} does not match its check (damaged)")]
    CheckMismatch {
        /// What the check covers.
        what: &'static str,
    },
    /// Not a valid file of this kind for another reason.
    #[error("{0}")]
    Damaged(String),
}

impl DecodeError {
    /// The kind of problem a file that fails to decode is: newer, or damaged.
    pub(crate) fn kind(&self) -> ProblemKind {
        match self {
            DecodeError::Newer { .. } => ProblemKind::Newer,
            _ => ProblemKind::Damaged,
        }
    }
}

impl From<String> for DecodeError {
    fn from(reason: String) -> DecodeError {
        DecodeError::Damaged(reason)
    }
}

impl From<&str> for DecodeError {
    fn from(reason: &str) -> DecodeError {
        DecodeError::Damaged(reason.to_string())
    }
}
