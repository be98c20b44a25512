//! The one way crdtdir makes, loads and names documents: Unicode code-point text positions,
//! strict loading (a partial load is an error, an Automerge panic is caught), hex heads.
//! Every reader, the cache, retention copies and compaction's read-back load through here.

use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::{Automerge, ChangeHash, LoadOptions, OnPartialLoad, TextEncoding};

/// The text encoding of every document crdtdir builds: positions are Unicode code points,
/// set explicitly so no Cargo feature elsewhere in an app can change it.
pub(crate) const TEXT_ENCODING: TextEncoding = TextEncoding::UnicodeCodePoint;

/// A new empty document with crdtdir's text encoding.
pub(crate) fn new_doc() -> Automerge {
    Automerge::new_with_encoding(TEXT_ENCODING)
}

/// Loads a saved document whole: a document that loads only in part, or on which
/// Automerge panics, is refused with the reason.
pub(crate) fn load(bytes: &[u8]) -> Result<Automerge, String> {
    catch_unwind(AssertUnwindSafe(|| {
        Automerge::load_with_options(
            bytes,
            LoadOptions::new()
                .on_partial_load(OnPartialLoad::Error)
                .text_encoding(TEXT_ENCODING),
        )
    }))
    .map_err(|_| "Automerge failed on the document".to_string())?
    .map_err(|e| format!("the document does not load: {e}"))
}

/// Heads as sorted lowercase hex: the form every file and report names them in.
pub(crate) fn heads_hex(heads: &[ChangeHash]) -> Vec<String> {
    let mut out: Vec<String> = heads.iter().map(ChangeHash::to_string).collect();
    out.sort();
    out
}

/// Loads what a saved document holds, even in part: for this device's own retention copies,
/// where a damaged copy's surviving changes are still worth having (never for files a
/// reader trusts as a whole).
pub(crate) fn salvage(bytes: &[u8]) -> Option<Automerge> {
    catch_unwind(AssertUnwindSafe(|| {
        Automerge::load_with_options(bytes, LoadOptions::new().text_encoding(TEXT_ENCODING))
    }))
    .ok()?
    .ok()
}
