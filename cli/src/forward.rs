//! Forwarding to a running `crdtdir serve` of the same store and device: `append`, `get`
//! and `merge` ask the server, which holds the document in memory and watches the folder,
//! instead of opening and listing the store themselves. Without a server (no socket, or
//! nobody listening) the command runs here as it always did.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crdtdir::Store;
use serde_json::Value as Json;

use crate::output::{fail, Failure};

/// The environment variable that keeps commands from forwarding (`0`).
pub(crate) const SERVE_ENV: &str = "CRDTDIR_SERVE";

/// Set when this process's command was answered by a server (which beats for the device).
static FORWARDED: AtomicBool = AtomicBool::new(false);

/// True when this process's command was answered by a server.
pub(crate) fn forwarded() -> bool {
    FORWARDED.load(Ordering::Relaxed)
}

/// Where a server of `store` on this device listens.
pub(crate) fn socket_path(store: &Store) -> PathBuf {
    store.local_dir().join("serve.sock")
}

/// The options that decide what a server must match: this process's explicit device name
/// and read-only flag (set once in `main`).
static READ_ONLY: AtomicBool = AtomicBool::new(false);
static DEVICE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

pub(crate) fn set_options(device: Option<String>, read_only: bool) {
    READ_ONLY.store(read_only, Ordering::Relaxed);
    let _ = DEVICE.set(device);
}

/// The device name given to this process (`--device`, `CRDTDIR_DEVICE`), if any.
pub(crate) fn explicit_device() -> Option<String> {
    DEVICE.get().cloned().flatten()
}

/// Asks a server of `store` (this device's) to answer `request` (a request of the
/// protocol, docs in `cmd/serve.rs`); the result and the stderr lines it came with. `None`
/// when no server answers, or forwarding is off: the command then runs here. `writes`: the
/// request changes the store; a server that stops while answering it is then an error
/// (the change may be written or not), never a second try here.
pub(crate) fn ask(
    store: &Store,
    mut request: Json,
    writes: bool,
) -> Option<Result<(Json, Vec<String>), Failure>> {
    if std::env::var(SERVE_ENV).is_ok_and(|v| v == "0") || READ_ONLY.load(Ordering::Relaxed) {
        return None;
    }
    let path = socket_path(store);
    if !path.exists() {
        return None;
    }
    let mut stream = UnixStream::connect(&path).ok()?;
    if !store.is_root_doc() {
        request["doc"] = store.doc_id().to_string().into();
    }
    // The server answers only for the same device name (null: the state dir's).
    request["device"] = explicit_device().into();
    request["id"] = 1.into();
    let mut line = request.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes()).ok()?;
    let mut answer = String::new();
    let read = BufReader::new(&stream).read_line(&mut answer);
    let response: Option<Json> = read
        .ok()
        .filter(|n| *n > 0)
        .and_then(|_| serde_json::from_str(&answer).ok());
    let Some(response) = response else {
        if writes {
            return Some(Err(fail(format!(
                "the server at {} stopped while answering: the change may or may not be written (`crdtdir get` shows which)",
                path.display()
            ))));
        }
        return None;
    };
    // A server of another device name (or one that refuses to serve this) lets the command
    // run here.
    if response["error"]["code"] == "not-served" {
        return None;
    }
    FORWARDED.store(true, Ordering::Relaxed);
    let notes = response["notes"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(error) = response.get("error") {
        return Some(Err(Failure {
            exit: error["exit"]
                .as_u64()
                .and_then(|e| u8::try_from(e).ok())
                .unwrap_or(crate::output::EXIT_ERROR),
            code: code_of(error["code"].as_str().unwrap_or("error")),
            message: error["message"].as_str().unwrap_or_default().to_string(),
            hint: error["hint"].as_str().map(str::to_string),
        }));
    }
    Some(Ok((response["result"].clone(), notes)))
}

/// An error code the server sent, as a failure carries it (once per process: it exits
/// after reporting it).
fn code_of(code: &str) -> &'static str {
    Box::leak(code.to_string().into_boxed_str())
}
