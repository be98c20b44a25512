//! The on-disk formats, one module per kind of file: bytes in, bytes out. Each module starts
//! with its layout block; docs/FORMAT.md is the full, versioned description.

pub(crate) mod beat;
pub(crate) mod cbor;
pub(crate) mod marker;
pub(crate) mod opfile;
pub(crate) mod snapshot;
