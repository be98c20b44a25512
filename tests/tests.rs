//! Integration tests of the library, built as one binary.

mod common;

mod accidents;
mod cache;
mod checkpoints;
mod compact;
mod convergence;
mod crashes;
mod docs;
mod encryption;
mod fixtures;
mod folders;
mod forks;
mod guide;
mod hostile;
mod intent;
#[cfg(feature = "s3")]
mod moto;
mod packs;
mod reader;
#[cfg(feature = "s3")]
mod s3;
mod semantics;
mod watch;
mod writer;
