//! The S3 backend (`crdtdir::folders::S3`, cargo feature `s3`) against a real S3-compatible
//! server on loopback: moto's server mode (`moto_server`, from `pip install "moto[server]"`),
//! started once for the test binary and stopped when it exits. Without `moto_server` on
//! PATH these tests say so and pass, unless `CRDTDIR_E2E=1`, which makes that a failure.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crdtdir::folders::{Created, Entry, Folder, S3};
use object_store::aws::AmazonS3Builder;

use crate::moto::{bucket, http, moto, Moto};

const OWNER: &str = "0123456789abcdef0123456789abcdef";

/// The keys in `bucket` (whatever their prefix), as moto lists them.
fn keys(moto: &Moto, bucket: &str) -> String {
    let (status, body) = http(moto.port, "GET", &format!("/{bucket}?list-type=2")).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ListBucketResult"), "{body}");
    body
}

/// A client of the server on `port` (moto, or a proxy in front of it).
fn builder(port: u16) -> AmazonS3Builder {
    AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
}

fn open(moto: &Moto, bucket: &str, prefix: &str) -> S3 {
    S3::with_builder(bucket, prefix, builder(moto.port)).unwrap()
}

fn names(entries: &[Entry]) -> Vec<(&str, bool, Option<u64>)> {
    entries
        .iter()
        .map(|e| (e.name.as_str(), e.is_dir(), e.len))
        .collect()
}

#[test]
fn the_contract_holds_on_s3() {
    let Some(moto) = moto() else { return };
    let s3 = open(moto, &bucket(moto), "deep/er");
    assert_eq!(s3.describe(), format!("s3://{}/deep/er", bucket_of(&s3)));
    crate::folders::contract(&s3);
}

/// The bucket named in `s3`'s description.
fn bucket_of(s3: &S3) -> String {
    let url = s3.describe();
    url["s3://".len()..].split('/').next().unwrap().to_string()
}

#[test]
fn a_create_never_overwrites() {
    let Some(moto) = moto() else { return };
    let s3 = open(moto, &bucket(moto), "");
    let path = "ops/aa/0000000001-x.op";
    assert_eq!(s3.create(path, b"first", OWNER).unwrap(), Created::New);
    assert_eq!(
        s3.create(path, b"second!", OWNER).unwrap(),
        Created::Existed
    );
    assert_eq!(s3.read(path).unwrap(), b"first");
    assert_eq!(s3.stat(path).unwrap().unwrap().len, Some(5));
}

#[test]
fn racing_creates_of_one_key_have_one_winner() {
    let Some(moto) = moto() else { return };
    let s3 = open(moto, &bucket(moto), "race");
    for round in 0..4 {
        let path = format!("ops/aa/{round:010}-race.op");
        crate::folders::race_creates(&s3, &path, 12);
    }
}

#[test]
fn listings_reads_and_removals() {
    let Some(moto) = moto() else { return };
    let bucket = bucket(moto);
    let s3 = open(moto, &bucket, "p");
    // Keys beside the folder's prefix, one of them sharing its first letter, stay out of it.
    open(moto, &bucket, "pq").create("x", b"x", OWNER).unwrap();
    open(moto, &bucket, "").create("top", b"t", OWNER).unwrap();

    assert_eq!(s3.list("").unwrap_err().kind(), ErrorKind::NotFound);
    for (path, bytes) in [
        ("b", &b"0123456789"[..]),
        ("a/2", b"22"),
        ("a/1", b"1"),
        ("a/sub/x", b"xyz"),
        ("c/d/e/f", b""),
    ] {
        assert_eq!(s3.create(path, bytes, OWNER).unwrap(), Created::New);
    }
    let root = s3.list("").unwrap();
    assert_eq!(
        names(&root),
        [("a", true, None), ("b", false, Some(10)), ("c", true, None)]
    );
    assert!(root.iter().all(|e| e.is_dir() == e.version.is_none()));
    let a = s3.list("a").unwrap();
    assert_eq!(
        names(&a),
        [
            ("1", false, Some(1)),
            ("2", false, Some(2)),
            ("sub", true, None)
        ]
    );
    assert_eq!(names(&s3.list("c/d/e").unwrap()), [("f", false, Some(0))]);
    assert_eq!(s3.list("c/d").unwrap()[0].name, "e");
    assert_eq!(s3.list("a/none").unwrap_err().kind(), ErrorKind::NotFound);

    // A listing and a stat agree; a replace changes the version.
    let listed_b = root.iter().find(|e| e.name == "b").unwrap().clone();
    assert_eq!(s3.stat("b").unwrap(), Some(listed_b.clone()));
    s3.replace("b", b"replaced", OWNER).unwrap();
    assert_eq!(s3.read("b").unwrap(), b"replaced");
    let stat_b = s3.stat("b").unwrap().unwrap();
    assert_eq!((stat_b.len, stat_b.is_dir()), (Some(8), false));
    assert_ne!(stat_b.version, listed_b.version);
    let relisted_b = s3.list("").unwrap().into_iter().find(|e| e.name == "b");
    assert_eq!(relisted_b, Some(stat_b));
    s3.replace("new", b"made by replace", OWNER).unwrap();
    assert_eq!(s3.read("new").unwrap(), b"made by replace");

    // Reads: whole, ranges in the middle, across and past the end, empty.
    assert_eq!(s3.read("a/sub/x").unwrap(), b"xyz");
    assert_eq!(s3.read("c/d/e/f").unwrap(), b"");
    assert_eq!(s3.read_range("b", 2..5).unwrap(), b"pla");
    assert_eq!(s3.read_range("b", 6..20).unwrap(), b"ed");
    assert_eq!(s3.read_range("b", 8..20).unwrap(), b"");
    assert_eq!(s3.read_range("b", 30..40).unwrap(), b"");
    assert_eq!(s3.read_range("b", 3..3).unwrap(), b"");
    assert_eq!(s3.read_range("c/d/e/f", 0..4).unwrap(), b"");

    // Absent files, and folders that are not files.
    let err = s3.read("a/absent").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.to_string()
            .contains(&format!("read s3://{bucket}/p/a/absent")),
        "{err}"
    );
    for absent in ["a/absent", "a", "a/sub"] {
        assert_eq!(s3.stat(absent).unwrap(), None, "{absent}");
        assert_eq!(
            s3.read_range(absent, 0..3).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            s3.read_range(absent, 2..2).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    // Paths never reach outside the folder.
    for bad in ["", "/b", "../pq/x", "a//1", "a/./1"] {
        assert_eq!(
            s3.read(bad).unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{bad:?}"
        );
        assert!(s3.create(bad, b"x", OWNER).is_err(), "{bad:?}");
    }

    // Removal, of present and absent files; a folder goes with its last file.
    for path in ["a/1", "a/1", "a/2", "a/sub/x", "never-there"] {
        s3.remove(path).unwrap();
    }
    assert_eq!(s3.read("a/1").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(s3.list("a").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        names(&s3.list("").unwrap()),
        [
            ("b", false, Some(8)),
            ("c", true, None),
            ("new", false, Some(15))
        ]
    );
    // Nothing was written outside the prefix, nor left behind by the start-up checks.
    let listed = keys(moto, &bucket);
    assert!(!listed.contains("crdtdir-probe"), "{listed}");
    assert_eq!(listed.matches("<Key>").count(), 5, "{listed}");
}

#[test]
fn bad_urls_are_refused_at_once() {
    for url in [
        "",
        "bucket/prefix",
        "https://host/bucket",
        "s3://",
        "s3://b/a//c",
    ] {
        let err = S3::open(url).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url:?}: {err}");
        assert!(err.to_string().contains("s3://bucket"), "{url:?}: {err}");
    }
}

/// `S3::open` reads its endpoint and credentials from the environment: run in a child
/// process of this test binary (setting variables here would race the other tests).
#[test]
fn opening_a_url_takes_the_server_from_the_environment() {
    let Some(moto) = moto() else { return };
    let bucket = bucket(moto);
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "s3::open_a_url_from_the_environment",
            "--ignored",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env("CRDTDIR_S3_TEST_URL", format!("s3://{bucket}/one/two/"))
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", moto.port),
        )
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed = keys(moto, &bucket);
    assert!(listed.contains("<Key>one/two/ops/x.op</Key>"), "{listed}");
    assert!(!listed.contains("crdtdir-probe"), "{listed}");
}

/// The child's half of the test above.
#[test]
#[ignore = "run by opening_a_url_takes_the_server_from_the_environment"]
fn open_a_url_from_the_environment() {
    let url = std::env::var("CRDTDIR_S3_TEST_URL").expect("run by the test above");
    let s3 = S3::open(&url).unwrap();
    assert_eq!(s3.describe(), url.trim_end_matches('/'));
    assert_eq!(s3.create("ops/x.op", b"x", OWNER).unwrap(), Created::New);
}

/// What the proxy does to the requests it forwards.
#[derive(Clone, Copy)]
enum Mangle {
    /// Drops `If-None-Match`, as some proxies and older servers in effect do.
    DropIfNoneMatch,
    /// Answers a conditional PUT itself with 501 Not Implemented.
    RefuseConditionalPut,
}

/// A tiny HTTP proxy on 127.0.0.1 in front of `target`, one request per connection (it
/// asks the server to close after each, so no request slips through unmangled on a
/// kept-alive connection). Stops when dropped.
struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: u16, mangle: Mangle) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                std::thread::spawn(move || {
                    let _ = forward(client, target, mangle);
                });
            }
        });
        Proxy { port, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Forwards one request on `client` to 127.0.0.1:`target`, mangled, and the answer back.
fn forward(mut client: TcpStream, target: u16, mangle: Mangle) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 1 << 20 {
            return Ok(());
        }
    };
    let rest = head.split_off(end);
    let head = String::from_utf8_lossy(&head).into_owned();
    let conditional = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("if-none-match:"));
    if matches!(mangle, Mangle::RefuseConditionalPut) && head.starts_with("PUT ") && conditional {
        let body = "<Error><Code>NotImplemented</Code></Error>";
        write!(
            client,
            "HTTP/1.1 501 Not Implemented\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    }
    let mut forwarded = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("connection:")
            || (matches!(mangle, Mangle::DropIfNoneMatch) && lower.starts_with("if-none-match:"))
        {
            continue;
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(("127.0.0.1", target))?;
    server.write_all(forwarded.as_bytes())?;
    server.write_all(&rest)?;
    let (mut up_from, mut up_to) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_from, &mut up_to);
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}

#[test]
fn a_store_that_ignores_if_none_match_is_refused() {
    let Some(moto) = moto() else { return };
    let bucket = bucket(moto);
    let proxy = Proxy::start(moto.port, Mangle::DropIfNoneMatch);
    let err = S3::with_builder(&bucket, "a/b", builder(proxy.port)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("s3://{bucket}/a/b"))
            && message.contains("ignores conditional creates (If-None-Match)")
            && message.contains("crdtdir cannot use it safely"),
        "{message}"
    );
    let listed = keys(moto, &bucket);
    assert!(
        !listed.contains("<Key>"),
        "the probe was left behind: {listed}"
    );
    // The same server without the proxy passes the check.
    open(moto, &bucket, "a/b");
    assert!(!keys(moto, &bucket).contains("<Key>"));
}

#[test]
fn a_store_without_conditional_puts_is_refused() {
    let Some(moto) = moto() else { return };
    let bucket = bucket(moto);
    let proxy = Proxy::start(moto.port, Mangle::RefuseConditionalPut);
    // No retries of the 501: the check fails as fast as the server answers.
    let retry = object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    };
    let err = S3::with_builder(&bucket, "", builder(proxy.port).with_retry(retry)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(
        err.to_string()
            .contains("does not support conditional creates (If-None-Match)"),
        "{err}"
    );
    assert!(!keys(moto, &bucket).contains("<Key>"));
}

#[test]
fn a_missing_bucket_is_a_clear_error() {
    let Some(moto) = moto() else { return };
    let err = S3::with_builder("crdtdir-no-such-bucket", "", builder(moto.port)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains("s3://crdtdir-no-such-bucket"),
        "{err}"
    );
}

/// The blocking API called on an async runtime's own threads: requests run on the
/// folder's runtime, never on the caller's, and dropping it there does not panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_api_works_inside_a_multi_thread_runtime() {
    let Some(moto) = moto() else { return };
    let s3 = open(moto, &bucket(moto), "rt");
    assert_eq!(s3.create("f", b"bytes", OWNER).unwrap(), Created::New);
    let s3 = tokio::spawn(async move {
        assert_eq!(s3.read("f").unwrap(), b"bytes");
        assert_eq!(s3.list("").unwrap().len(), 1);
        s3
    })
    .await
    .unwrap();
    drop(s3);
}

#[tokio::test(flavor = "current_thread")]
async fn the_blocking_api_works_inside_a_current_thread_runtime() {
    let Some(moto) = moto() else { return };
    let s3 = open(moto, &bucket(moto), "");
    assert_eq!(s3.create("f", b"bytes", OWNER).unwrap(), Created::New);
    assert_eq!(s3.read_range("f", 1..3).unwrap(), b"yt");
    drop(s3);
}

#[test]
fn names_are_kept_verbatim() {
    let Some(moto) = moto() else { return };
    let s3 = open(moto, &bucket(moto), "v");
    // Characters object_store would escape in a key built part by part.
    let name = "a%20b~c[1]{x}^.op";
    assert_eq!(
        s3.create(&format!("odd/{name}"), b"odd", OWNER).unwrap(),
        Created::New
    );
    assert_eq!(s3.list("odd").unwrap()[0].name, name);
    assert_eq!(s3.read(&format!("odd/{name}")).unwrap(), b"odd");
    assert_eq!(
        s3.create("odd/tab\there", b"x", OWNER).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

/// Three devices share a store in a bucket: appends and values from each, merges in
/// between, and every device ends with the same document holding every write.
#[test]
fn three_devices_converge_through_a_bucket() {
    use crate::folders::elsewhere::{converge, Step};
    let Some(moto) = moto() else { return };
    let s3 = open(moto, &bucket(moto), "notes");
    let steps: Vec<Step> = (0..18)
        .map(|i| match i % 6 {
            0 => Step::Append(i % 3),
            1 => Step::Set((i + 1) % 3, i as u32),
            2 => Step::Merge((i + 2) % 3),
            3 => Step::Pack(i % 3),
            4 => Step::Compact((i + 1) % 3),
            _ => Step::Append((i + 1) % 3),
        })
        .collect();
    converge(std::sync::Arc::new(s3), &steps, || {});
}

/// An encrypted store in a bucket: the provider sees only sealed objects, before and after
/// a compaction there, and devices with the key read every write.
#[test]
fn an_encrypted_store_in_a_bucket_shows_the_provider_nothing() {
    let Some(moto) = moto() else { return };
    let s3 = std::sync::Arc::new(open(moto, &bucket(moto), "sealed"));
    let listed = std::sync::Arc::clone(&s3);
    crate::folders::sealed_elsewhere(s3, || {}, move || crate::common::folder_files(&*listed));
}
