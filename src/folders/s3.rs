//! A synced folder in a bucket of an S3-compatible object store (AWS S3, MinIO, Cloudflare
//! R2…), on the `object_store` crate's S3 client (cargo feature `s3`).
//!
//! What crdtdir assumes of the store, and checks where it can:
//! - conditional creates: a PUT with `If-None-Match: *` fails (412) when the key exists.
//!   This is what makes [`Folder::create`] never overwrite; [`S3::open`] checks it with a
//!   probe object and refuses a store that ignores the header;
//! - read-after-write for new objects: a created object reads (and HEADs) at once;
//! - listings may lag: a new object may list late and a deleted one for a while, which
//!   callers allow for ([`Folder::list`]).
//!
//! The library's API is blocking while `object_store` is async: each `S3` owns a small tokio
//! runtime, and a blocking call spawns its request there and waits on a channel. So a call
//! works from any thread, an async runtime's worker included.

use std::fmt;
use std::future::Future;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

use super::{check_path, Created, Entry, Folder};

/// How many times [`Folder::create`] tries again when the store reports a conflicting write
/// in flight (409) and nothing is there after it.
const CREATE_TRIES: u32 = 5;

/// A synced folder under `prefix` in an S3 bucket: `s3://bucket/prefix`.
///
/// What crdtdir assumes of the store: conditional creates (a PUT with `If-None-Match: *`
/// fails when the key exists; checked when opening), read-after-write for new objects (a
/// created object reads at once), and nothing of listings, which may lag (a new object
/// listed late, a deleted one for a while). AWS S3, MinIO, Cloudflare R2 and moto qualify.
///
/// There are no real folders on an object store: a folder is the common prefix of the keys
/// under it, so one with no files in it does not exist ([`Folder::list`] says `NotFound`).
pub struct S3 {
    store: Arc<AmazonS3>,
    bucket: String,
    /// `""` or `a/b`: no leading or trailing `/`.
    prefix: String,
    /// Runs the client's requests; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

impl S3 {
    /// The folder at `url`, `s3://bucket` or `s3://bucket/prefix` (the prefix may have
    /// several `/`-separated parts), with credentials, region and endpoint from the
    /// environment, as the AWS tools read them: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` or `AWS_DEFAULT_REGION`,
    /// `AWS_ENDPOINT_URL` or `AWS_ENDPOINT` (an S3-compatible server), `AWS_ALLOW_HTTP`
    /// (`true` for a plain-HTTP endpoint).
    ///
    /// Checks that the store honours conditional creates before returning (see
    /// [`S3::with_builder`]). A malformed URL is `InvalidInput`.
    pub fn open(url: &str) -> io::Result<S3> {
        let (bucket, prefix) = parse_url(url)?;
        S3::with_builder(bucket, prefix, AmazonS3Builder::from_env())
    }

    /// The folder under `prefix` (`""` for the whole bucket) in `bucket`, with the client
    /// configured by `builder` (endpoint, credentials, region, retries…); the bucket name is
    /// set here.
    ///
    /// Before returning, creates a probe object `<prefix>/.crdtdir-probe-<random hex>` twice
    /// with `If-None-Match: *` and deletes it: a store that lets the second create through
    /// (some proxies and older servers ignore the header) or does not implement conditional
    /// creates is refused with an `Unsupported` error, since a racing write could then
    /// overwrite a published file.
    pub fn with_builder(bucket: &str, prefix: &str, builder: AmazonS3Builder) -> io::Result<S3> {
        let s3 = S3::client(bucket, prefix, builder)?;
        s3.check_conditional_create()?;
        Ok(s3)
    }

    /// The folder at `url` with the client from the environment, as [`S3::open`], without
    /// its start-up check (which writes a probe object): for reading only.
    pub(crate) fn open_to_read(url: &str) -> io::Result<S3> {
        let (bucket, prefix) = parse_url(url)?;
        S3::client(bucket, prefix, AmazonS3Builder::from_env())
    }

    /// The client of [`S3::with_builder`], unchecked.
    fn client(bucket: &str, prefix: &str, builder: AmazonS3Builder) -> io::Result<S3> {
        if bucket.is_empty() || bucket.contains('/') {
            return Err(invalid(format!("not an S3 bucket name: {bucket:?}")));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            check_path(prefix)?;
        }
        let store = builder.with_bucket_name(bucket).build().map_err(|e| {
            let url = format!("s3://{bucket}/{prefix}");
            invalid(format!(
                "cannot set up the S3 client for {}: {e}",
                url.trim_end_matches('/')
            ))
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("crdtdir-s3")
            .enable_all()
            .build()?;
        let s3 = S3 {
            store: Arc::new(store),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            runtime: Some(runtime),
        };
        Ok(s3)
    }

    /// The start-up check described at [`S3::with_builder`].
    fn check_conditional_create(&self) -> io::Result<()> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(io::Error::other)?;
        let name = format!(".crdtdir-probe-{}", hex::encode(nonce));
        let key = self.key(&name)?;
        let unsupported = |why: &str| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the object store at {} {why}: crdtdir cannot use it safely (a racing \
                     write could overwrite a published file)",
                    self.describe()
                ),
            )
        };
        let not_implemented = |e: &object_store::Error| {
            let text = error_chain(e);
            matches!(e, object_store::Error::NotImplemented { .. })
                || text.contains("501 Not Implemented")
                || text.contains("<Code>NotImplemented</Code>")
        };
        match self.run(create_object(&self.store, &key, b"probe"))? {
            Ok(()) => {}
            Err(e) if not_implemented(&e) => {
                return Err(unsupported(
                    "does not support conditional creates (If-None-Match)",
                ))
            }
            Err(e) => return Err(self.error("check conditional creates at", &name, e)),
        }
        let second = self.run(create_object(&self.store, &key, b"probe again"))?;
        let store = self.store.clone();
        let removed = self.run({
            let key = key.clone();
            async move { store.delete(&key).await }
        })?;
        match second {
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Ok(()) => return Err(unsupported("ignores conditional creates (If-None-Match)")),
            Err(e) if not_implemented(&e) => {
                return Err(unsupported(
                    "does not support conditional creates (If-None-Match)",
                ))
            }
            Err(e) => return Err(self.error("check conditional creates at", &name, e)),
        }
        if let Err(e) = removed {
            // The check passed; a stray probe is harmless (crdtdir ignores names it does not
            // know), so this is worth a warning only.
            tracing::warn!(probe = %self.url(&name), error = %e, "could not delete the probe object");
        }
        Ok(())
    }

    /// `s3://bucket/prefix/path` (`path` may be empty), for messages.
    fn url(&self, path: &str) -> String {
        let mut url = format!("s3://{}", self.bucket);
        for part in [self.prefix.as_str(), path] {
            if !part.is_empty() {
                url.push('/');
                url.push_str(part);
            }
        }
        url
    }

    /// The key of `path` (a checked path, or `""` for the folder's root), verbatim (no
    /// escaping), so that a listing gives back the very names written.
    fn key(&self, path: &str) -> io::Result<Path> {
        let key = match (self.prefix.is_empty(), path.is_empty()) {
            (true, _) => path.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{path}", self.prefix),
        };
        Path::parse(&key).map_err(|e| invalid(format!("not an object key: {path:?}: {e}")))
    }

    /// Runs `future` on the folder's own runtime and waits for it on this thread, which
    /// may be any thread (blocking on a channel, never on a runtime).
    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> io::Result<T> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| io::Error::other("the S3 client's runtime is gone"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv()
            .map_err(|_| io::Error::other("an S3 request stopped half-way (its task panicked)"))
    }

    /// An io error for operation `op` on `path`: `NotFound` for a missing object (or
    /// bucket), `PermissionDenied` for refused credentials, `Other` else.
    fn error(&self, op: &str, path: &str, e: object_store::Error) -> io::Error {
        use object_store::Error as E;
        let kind = match &e {
            E::NotFound { .. } => io::ErrorKind::NotFound,
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
                io::ErrorKind::PermissionDenied
            }
            E::InvalidPath { .. } => io::ErrorKind::InvalidData,
            E::NotImplemented { .. } | E::NotSupported { .. } => io::ErrorKind::Unsupported,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(
            kind,
            format!("{op} {}: {}", self.url(path), error_chain(&e)),
        )
    }

    /// `path`'s metadata, `None` when nothing is there.
    fn head(&self, path: &str) -> io::Result<Option<ObjectMeta>> {
        let store = self.store.clone();
        let key = self.key(path)?;
        match self.run(async move { store.head(&key).await })? {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("stat", path, e)),
        }
    }
}

/// Puts `bytes` at `key` only if nothing is there (`If-None-Match: *`); an object already
/// there is `object_store::Error::AlreadyExists`.
fn create_object(
    store: &Arc<AmazonS3>,
    key: &Path,
    bytes: &[u8],
) -> impl Future<Output = object_store::Result<()>> + Send + 'static {
    let store = store.clone();
    let key = key.clone();
    let payload = PutPayload::from(bytes.to_vec());
    async move {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        store.put_opts(&key, payload, options).await.map(|_| ())
    }
}

/// Whether an `AlreadyExists` from a create is the store's word that the key exists (412,
/// or 304 from some servers) rather than a conflicting write still in flight (409).
fn surely_exists(e: &object_store::Error) -> bool {
    use std::error::Error as _;
    e.source()
        .and_then(|s| s.downcast_ref::<object_store::Error>())
        .is_some_and(|s| {
            matches!(
                s,
                object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. }
            )
        })
}

/// `e` and its sources, for a message that keeps the server's word.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The bucket and prefix of `s3://bucket/prefix` (prefix `""` when absent).
fn parse_url(url: &str) -> io::Result<(&str, &str)> {
    let bad = |why: &str| {
        invalid(format!(
            "not an S3 folder URL ({why}): {url:?}; expected s3://bucket or s3://bucket/prefix"
        ))
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("it must start with s3://"))?;
    if rest.contains(['?', '#']) || rest.chars().any(char::is_whitespace) {
        return Err(bad("no query, fragment or spaces allowed"));
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("no bucket"));
    }
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    if !prefix.is_empty() && check_path(prefix).is_err() {
        return Err(bad("the prefix has an empty, `.` or `..` part"));
    }
    Ok((bucket, prefix))
}

/// A listing's [`Entry`] of file `name`: its version is the ETag, or the last-modified time
/// and size where the store gives no ETag.
fn file_entry(name: String, meta: &ObjectMeta) -> Entry {
    Entry::file(
        name,
        Some(meta.size),
        Some(
            meta.e_tag
                .clone()
                .unwrap_or_else(|| format!("{} {}", meta.last_modified, meta.size)),
        ),
    )
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3").field("url", &self.url("")).finish()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        // Not a plain drop, which waits for the runtime's threads and panics inside another
        // runtime: no request is in flight here (every call waits for its own).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Folder for S3 {
    fn describe(&self) -> String {
        self.url("")
    }

    /// Lists the keys under `prefix/dir/` with a delimiter: common prefixes are folders,
    /// objects are files. A folder with no keys under it does not exist on an object store,
    /// so it lists as `NotFound` (the root too, when the folder is empty).
    fn list(&self, dir: &str) -> io::Result<Vec<Entry>> {
        if !dir.is_empty() {
            check_path(dir)?;
        }
        let store = self.store.clone();
        let key = self.key(dir)?;
        let listed = self.run({
            let key = key.clone();
            async move { store.list_with_delimiter(Some(&key)).await }
        })?;
        let listed = listed.map_err(|e| self.error("list", dir, e))?;
        let dirs = listed
            .common_prefixes
            .iter()
            .filter_map(|p| Some(Entry::dir(p.filename()?)));
        let files = listed.objects.iter().filter_map(|meta| {
            // A zero-length `dir/` marker some tools write is not a file.
            let name = meta.location.filename()?;
            (meta.location != key).then(|| file_entry(name.to_string(), meta))
        });
        let mut out: Vec<Entry> = dirs.chain(files).collect();
        if out.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("list {}: no such folder (no keys under it)", self.url(dir)),
            ));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        check_path(path)?;
        let store = self.store.clone();
        let key = self.key(path)?;
        let got = self.run(async move { store.get(&key).await?.bytes().await })?;
        got.map(|b| b.to_vec())
            .map_err(|e| self.error("read", path, e))
    }

    /// A ranged GET; a range past the end gives what there is (possibly nothing).
    fn read_range(&self, path: &str, range: Range<u64>) -> io::Result<Vec<u8>> {
        check_path(path)?;
        if range.is_empty() {
            // Nothing to fetch, but an absent file is still `NotFound`.
            return match self.head(path)? {
                Some(_) => Ok(Vec::new()),
                None => Err(self.error(
                    "read",
                    path,
                    object_store::Error::NotFound {
                        path: path.to_string(),
                        source: "no such object".into(),
                    },
                )),
            };
        }
        let store = self.store.clone();
        let key = self.key(path)?;
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..Default::default()
        };
        let got = self.run(async move { store.get_opts(&key, options).await?.bytes().await })?;
        match got {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(e @ object_store::Error::NotFound { .. }) => Err(self.error("read", path, e)),
            // A range that starts at or past the end is refused (416): nothing is there.
            Err(e) => match self.head(path)? {
                Some(meta) if meta.size <= range.start => Ok(Vec::new()),
                _ => Err(self.error("read", path, e)),
            },
        }
    }

    fn stat(&self, path: &str) -> io::Result<Option<Entry>> {
        check_path(path)?;
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        Ok(self.head(path)?.map(|meta| file_entry(name, &meta)))
    }

    /// A PUT with `If-None-Match: *`. A 409 (a conflicting write in flight, as AWS S3 may
    /// answer) is checked with a HEAD and the create tried again while nothing is there.
    fn create(&self, path: &str, bytes: &[u8], _owner: &str) -> io::Result<Created> {
        check_path(path)?;
        let key = self.key(path)?;
        for attempt in 1..=CREATE_TRIES {
            match self.run(create_object(&self.store, &key, bytes))? {
                Ok(()) => return Ok(Created::New),
                Err(e @ object_store::Error::AlreadyExists { .. }) => {
                    if surely_exists(&e) || self.head(path)?.is_some() {
                        return Ok(Created::Existed);
                    }
                    if attempt == CREATE_TRIES {
                        return Err(self.error("create", path, e));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50 << attempt));
                }
                Err(e) => return Err(self.error("create", path, e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// An unconditional PUT.
    fn replace(&self, path: &str, bytes: &[u8], _owner: &str) -> io::Result<()> {
        check_path(path)?;
        let store = self.store.clone();
        let key = self.key(path)?;
        let payload = PutPayload::from(bytes.to_vec());
        let put = self.run(async move { store.put(&key, payload).await })?;
        put.map(|_| ()).map_err(|e| self.error("replace", path, e))
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        check_path(path)?;
        let store = self.store.clone();
        let key = self.key(path)?;
        match self.run(async move { store.delete(&key).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("remove", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls_give_a_bucket_and_a_prefix() {
        assert_eq!(parse_url("s3://b").unwrap(), ("b", ""));
        assert_eq!(parse_url("s3://b/").unwrap(), ("b", ""));
        assert_eq!(parse_url("s3://b/p").unwrap(), ("b", "p"));
        assert_eq!(parse_url("s3://b/p/q/r/").unwrap(), ("b", "p/q/r"));
        for bad in [
            "b/p",
            "http://b/p",
            "s3://",
            "s3:///p",
            "s3://b/p//q",
            "s3://b/../q",
            "s3://b/p?x=1",
            "s3://b/p q",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{bad}");
        }
    }
}
