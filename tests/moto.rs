//! A real S3-compatible server on loopback for the tests: moto's server mode (`moto_server`,
//! from `pip install "moto[server]"`), started once per test binary and stopped when it
//! exits. Without `moto_server` on PATH the tests that need it say so and pass, unless
//! `CRDTDIR_E2E=1`, which makes that a failure. Used by tests/s3.rs and by the CLI's tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A moto server on 127.0.0.1. It runs under `sh`, which kills it once our end of its
/// stdin closes: when this process exits, however it exits.
pub struct Moto {
    pub port: u16,
    _child: Child,
    _stdin: ChildStdin,
}

static MOTO: OnceLock<Option<Moto>> = OnceLock::new();

/// The shared server, started on first use; `None` (the test then returns) when
/// `moto_server` is not installed and `CRDTDIR_E2E` is not `1`.
pub fn moto() -> Option<&'static Moto> {
    MOTO.get_or_init(start_moto).as_ref()
}

fn start_moto() -> Option<Moto> {
    let installed = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("moto_server").is_file())
    });
    if !installed {
        assert_ne!(
            std::env::var("CRDTDIR_E2E").as_deref(),
            Ok("1"),
            "CRDTDIR_E2E=1 but moto_server is not on PATH (pip install \"moto[server]\")"
        );
        eprintln!("skipped: moto_server is not on PATH (pip install \"moto[server]\")");
        return None;
    }
    let port = free_port();
    let log = std::env::temp_dir().join(format!("crdtdir-moto-{}.log", std::process::id()));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(
            r#"moto_server -H 127.0.0.1 -p "$1" >"$2" 2>&1 </dev/null & pid=$!; read _; kill $pid"#,
        )
        .arg("sh")
        .arg(port.to_string())
        .arg(&log)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start moto_server");
    let stdin = child.stdin.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(port, "GET", "/").is_err() {
        if Instant::now() > deadline {
            drop(stdin);
            let _ = child.wait();
            panic!(
                "moto_server did not answer on 127.0.0.1:{port} within 30 s: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Moto {
        port,
        _child: child,
        _stdin: stdin,
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One plain (unsigned) HTTP request to 127.0.0.1:`port`: the status and the body.
pub fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Ok((status, body))
}

/// A new empty bucket on `moto`.
pub fn bucket(moto: &Moto) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("crdtdir-test-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let (status, body) = http(moto.port, "PUT", &format!("/{name}")).unwrap();
    assert_eq!(status, 200, "creating bucket {name}: {body}");
    name
}
