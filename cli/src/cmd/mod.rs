//! One module per command: its arguments and what it does.

pub(crate) mod append;
pub(crate) mod check;
pub(crate) mod checkpoint;
pub(crate) mod compact;
pub(crate) mod demo;
pub(crate) mod docs;
pub(crate) mod documents;
pub(crate) mod export;
pub(crate) mod forget;
pub(crate) mod get;
pub(crate) mod init;
pub(crate) mod key;
pub(crate) mod log;
pub(crate) mod merge;
pub(crate) mod pack;
pub(crate) mod repair;
pub(crate) mod serve;
pub(crate) mod status;
pub(crate) mod watch;
