//! `crdtdir serve`: one long-running process for this device that holds the store's
//! documents in memory, watches the folder, and answers requests as JSON lines — on its
//! stdin/stdout (an app starts it as a sidecar) and on a Unix socket in this device's local
//! state (`STATE/stores/<store id>/serve.sock`, private to the user), which `append`, `get`
//! and `merge` of this device use when it runs.
//!
//! The protocol, one JSON object per line each way (README, "Serve"):
//!
//! ```text
//! request   {"id": ANY, "op": OP, "doc": ID (optional: a document beside the root one), ...}
//! answer    {"id": ANY, "result": JSON, "notes": [stderr lines]}
//!       or  {"id": ANY, "error": {"code", "exit", "message", "hint"}}
//! event     {"id": ID OF THE WATCH REQUEST, "event": A LINE OF `crdtdir watch`}
//!
//! ops       ping                          {"store", "device", "version"}
//!           get      "path" (default "")  the value, as `crdtdir get`
//!           merge                         the document, as `crdtdir merge`
//!           append   "patch", "message"   {"change", "written"}, as `crdtdir append`
//!                                         ("patch": a JSON Patch, as `append --patch`)
//!           status                        as `crdtdir --json status`
//!           log                           [entries], as the lines of `crdtdir --json log`
//!           pack                          as `crdtdir --json pack`
//!           docs                          [documents], as `crdtdir --json docs --all`
//!           watch    "all", "whole"       {"watching": true}, then its events
//!           unwatch  "watch": ID          {"stopped": true|false}
//! ```
//!
//! An answer to a write comes once the change is durable in the folder (or in this
//! device's outbox): a server killed after answering has lost nothing it answered.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};

use crdtdir::{PatchOp, Repo, Store, WatchHandle, WatchOptions};
use serde_json::{json, Value as Json};

use crate::output::{bad_input, fail, to_json, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  crdtdir serve                          # requests on stdin, answers on stdout, and the socket\n  crdtdir serve --socket-only &          # a background server for this device's commands\n  echo '{\"id\":1,\"op\":\"get\",\"path\":\"/items\"}' | crdtdir serve"
)]
pub(crate) struct Args {
    /// Serve the socket only (stdin is not read): runs until SIGINT or SIGTERM.
    #[arg(long)]
    socket_only: bool,
}

/// A line-writer shared by a connection's answers and its watches' events.
type Out = Arc<Mutex<Box<dyn Write + Send>>>;

/// A watch a connection asked for: stopped when the connection ends or it is unwatched.
struct Watch {
    stopper: crdtdir::Stopper,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the server holds: the root document's handle, and each document's handle once
/// asked for (kept, so its document stays in memory).
struct Server {
    root: Store,
    /// The device name given to the server (`None`: its state dir's).
    device: Option<String>,
    docs: Mutex<HashMap<String, Store>>,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    if !store.is_root_doc() {
        return Err(fail(
            "`serve` serves every document of the store: leave out --doc",
        ));
    }
    let path = crate::forward::socket_path(store);
    if UnixStream::connect(&path).is_ok() {
        return Err(Failure {
            exit: crate::output::EXIT_REFUSED,
            code: "refused",
            message: format!(
                "a server of this store already runs on this device ({})",
                path.display()
            ),
            hint: None,
        });
    }
    // The root document stays in memory and up to date; the device's heartbeat goes on.
    // (First: a store that cannot be watched, a locked one, leaves no socket behind.)
    let _watching: WatchHandle = store.watch_with(WatchOptions::new(), |_| true)?;
    // A socket left by a server that died: nobody listens on it.
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let server = Arc::new(Server {
        device: crate::forward::explicit_device(),
        root: store.clone(),
        docs: Mutex::new(HashMap::new()),
    });
    let gone = path.clone();
    ctrlc::set_handler(move || {
        let _ = std::fs::remove_file(&gone);
        std::process::exit(0);
    })
    .map_err(|e| fail(format!("cannot handle signals: {e}")))?;
    let accepting = Arc::clone(&server);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let server = Arc::clone(&accepting);
            std::thread::spawn(move || {
                if let Ok(reader) = stream.try_clone() {
                    let out: Out = Arc::new(Mutex::new(Box::new(stream)));
                    serve_lines(&server, BufReader::new(reader), &out);
                }
            });
        }
    });
    if args.socket_only {
        loop {
            std::thread::park();
        }
    }
    let out: Out = Arc::new(Mutex::new(Box::new(std::io::stdout())));
    serve_lines(&server, std::io::stdin().lock(), &out);
    // Stdin closed: the app that started this server is gone.
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Answers every request line of `input` on `out`, until the input ends; the watches it
/// started end with it.
fn serve_lines(server: &Server, input: impl BufRead, out: &Out) {
    let mut watches: HashMap<String, Watch> = HashMap::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let (id, answer) = match serde_json::from_str::<Json>(&line) {
            Ok(request) => {
                let id = request.get("id").cloned().unwrap_or(Json::Null);
                (id, answer(server, &request, out, &mut watches))
            }
            Err(e) => (
                Json::Null,
                Err(bad_input(format!(
                    "a request is one JSON object per line: {e}"
                ))),
            ),
        };
        let line = match answer {
            Ok((result, notes)) => json!({"id": id, "result": result, "notes": notes}),
            Err(f) => {
                let mut error = json!({"code": f.code, "exit": f.exit, "message": f.message});
                if let Some(hint) = f.hint {
                    error["hint"] = hint.into();
                }
                json!({"id": id, "error": error})
            }
        };
        if !write_line(out, &line) {
            break;
        }
    }
}

/// Writes one line; false when the other end is gone.
fn write_line(out: &Out, line: &Json) -> bool {
    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
    out.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

/// The answer to one request: its result and stderr lines.
fn answer(
    server: &Server,
    request: &Json,
    out: &Out,
    watches: &mut HashMap<String, Watch>,
) -> Result<(Json, Vec<String>), Failure> {
    let op = request["op"]
        .as_str()
        .ok_or_else(|| bad_input("a request needs \"op\""))?;
    // A command of this device under another name runs by itself.
    if let Some(device) = request.get("device") {
        if device.as_str() != server.device.as_deref() {
            return Err(Failure {
                exit: crate::output::EXIT_REFUSED,
                code: "not-served",
                message: format!(
                    "this server runs as device {:?}, not {device}",
                    server.device
                ),
                hint: None,
            });
        }
    }
    let store = server.handle(request["doc"].as_str())?;
    let text = |key: &str| request[key].as_str().unwrap_or_default().to_string();
    let plain = |value: Json| Ok((value, Vec::new()));
    match op {
        "ping" => plain(json!({
            "store": server.root.id(),
            "device": server.device,
            "path": server.root.path(),
            "version": env!("CARGO_PKG_VERSION"),
        })),
        // From the document in memory (the server's watcher keeps it current).
        "get" => plain(store.read()?.get(&text("path"))?),
        "merge" => plain(store.read()?.to_json()),
        "append" => {
            let ops: Vec<PatchOp> = crdtdir::parse_patch(&request["patch"].to_string())?;
            let message = request["message"].as_str();
            super::append::apply(&store, &ops, message)
        }
        "status" => plain(to_json(&store.status()?)?),
        "log" => plain(to_json(&store.history()?)?),
        "pack" => plain(to_json(&server.root.pack()?)?),
        "docs" => plain(to_json(&Repo::from(server.root.clone()).docs()?)?),
        "watch" => {
            let key = request["id"].to_string();
            let whole = request["whole"].as_bool().unwrap_or(false);
            let options = WatchOptions::new().document(whole);
            let events = Arc::clone(out);
            let id = request["id"].clone();
            let handle = if request["all"].as_bool().unwrap_or(false) {
                let watcher = Repo::from(server.root.clone()).watch(options)?;
                forward_events(watcher, id, whole, events)
            } else {
                let watcher = store.watch(options)?;
                forward_events(watcher, id, whole, events)
            };
            watches.insert(key, handle);
            plain(json!({"watching": true}))
        }
        "unwatch" => {
            let stopped = watches.remove(&request["watch"].to_string()).is_some();
            plain(json!({ "stopped": stopped }))
        }
        other => Err(bad_input(format!("unknown op {other:?}"))),
    }
}

/// Passes a watcher's events on as event lines of request `id`, until the connection goes.
fn forward_events<E: serde::Serialize + Send + 'static>(
    watcher: crdtdir::Watcher<E>,
    id: Json,
    whole: bool,
    out: Out,
) -> Watch {
    let stopper = watcher.stopper();
    let thread = std::thread::spawn(move || {
        for event in watcher {
            let Ok(line) = super::watch::line(&event, whole) else {
                break;
            };
            if !write_line(&out, &json!({"id": id, "event": line})) {
                break;
            }
        }
    });
    Watch {
        stopper,
        thread: Some(thread),
    }
}

impl Server {
    /// The handle of document `doc` (`None`: the root one), kept once opened.
    fn handle(&self, doc: Option<&str>) -> Result<Store, Failure> {
        let Some(doc) = doc else {
            return Ok(self.root.clone());
        };
        let id: crdtdir::DocId = doc.parse()?;
        let mut docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = docs.get(id.as_str()) {
            return Ok(store.clone());
        }
        let store = Repo::from(self.root.clone()).find(&id)?;
        docs.insert(id.to_string(), store.clone());
        Ok(store)
    }
}
