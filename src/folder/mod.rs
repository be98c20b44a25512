//! The synced folder: what its files are called and what a listing of it holds.

pub(crate) mod names;
pub(crate) mod scan;
