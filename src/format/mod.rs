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
    /// Not a valid file of this kind: damaged, truncated, or something else.
    #[error("{0}")]
    Damaged(String),
}

impl DecodeError {
    /// The kind of problem a file that fails to decode is.
    pub(crate) fn kind(&self) -> ProblemKind {
        match self {
            DecodeError::Newer { .. } => ProblemKind::Newer,
            DecodeError::Damaged(_) => ProblemKind::Damaged,
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
