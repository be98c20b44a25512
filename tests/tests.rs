//! Integration tests of the library, built as one binary.

mod common;

mod cache;
mod compact;
mod convergence;
mod fixtures;
mod reader;
mod semantics;
mod writer;
