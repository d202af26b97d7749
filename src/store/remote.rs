//! Stores on object storage: `s3://bucket/prefix` (AWS or any S3-compatible server such
//! as MinIO), `gs://`, `az://` / `abfs://`, and read-only `http(s)://`, through Apache
//! Arrow's `object_store` client. Credentials, region and endpoint come from the usual
//! environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...; `GOOGLE_SERVICE_ACCOUNT`, ...;
//! `AZURE_STORAGE_ACCOUNT_NAME`, ...), as `object_store`'s builders read them.
//!
//! The loader's threads are plain threads, so every call here blocks on one small shared
//! tokio runtime. Each request is retried with exponential backoff by `object_store` (a
//! connection refused, a 5xx, a timeout), and every call is bounded by
//! [`Remote::deadline`]: a dead or stalled server gives an error naming the object and
//! the byte range, never a hang.
//!
//! ```no_run
//! use ctstream::store::remote::Remote;
//! // AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_ALLOW_HTTP=true for a local MinIO.
//! let r = Remote::open("s3://scans/luna")?;
//! let manifest = r.get("manifest.json", 1 << 20)?;
//! # Ok::<(), ctstream::store::StoreError>(())
//! ```

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload, RetryConfig,
    WriteMultipart,
};

use super::StoreError;

/// Whether `location` names a store on object storage (a URL other than `file://`).
///
/// ```
/// use ctstream::store::remote::is_remote;
/// assert!(is_remote("s3://bucket/luna") && is_remote("https://host/store"));
/// assert!(!is_remote("luna-store") && !is_remote("file:///data/luna") && !is_remote("C:\\data"));
/// ```
pub fn is_remote(location: &str) -> bool {
    match location.split_once("://") {
        Some((scheme, _)) => {
            scheme != "file"
                && scheme.len() > 1
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        }
        None => false,
    }
}

/// Objects larger than this are uploaded in parts (multipart upload).
pub const MULTIPART_BYTES: usize = 16 << 20;
/// Requests of one call in flight at once (listing reads, coalesced ranges).
const CONCURRENCY: usize = 16;

/// `ranges` sorted and merged where at most `gap` bytes apart (empty ones dropped).
///
/// ```
/// use ctstream::store::remote::merge_ranges;
/// // 5 bytes apart merge (at most the gap), 10 do not; the empty range is dropped.
/// assert_eq!(merge_ranges(&[10..20, 0..5, 30..40, 7..7], 5), vec![0..20, 30..40]);
/// assert_eq!(merge_ranges(&[0..5, 5..9, 2..3], 0), vec![0..9]);
/// ```
pub fn merge_ranges(ranges: &[Range<u64>], gap: u64) -> Vec<Range<u64>> {
    let mut rs: Vec<Range<u64>> = ranges.iter().filter(|r| r.end > r.start).cloned().collect();
    rs.sort_unstable_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(rs.len());
    for r in rs {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Settings of the client: timeouts and retries. [`RemoteOptions::from_env`] reads
/// `CTSTREAM_REMOTE_TIMEOUT_S` (one request; default 30), `CTSTREAM_REMOTE_RETRIES`
/// (default 4), `CTSTREAM_REMOTE_DEADLINE_S` (one call with its retries; default 120),
/// `CTSTREAM_REMOTE_COALESCE_KB` (default 1024) and `CTSTREAM_REMOTE_MEMORY_MB` (default
/// 256).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteOptions {
    /// Longest wait for one request.
    pub request_timeout: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Retries of a failed request (with backoff from 100 ms, doubling).
    pub retries: usize,
    /// Longest a call may take, retries included.
    pub deadline: Duration,
    /// Byte ranges of one call less than this apart are fetched in one request, with the
    /// bytes between them (default 1 MiB, `object_store`'s: fewer requests, more bytes).
    pub coalesce_bytes: u64,
    /// Budget of the fetched chunk payloads held in memory ([`super::cache::memory`]):
    /// what coalesced requests brought beyond what was asked for is used from there.
    pub memory_bytes: u64,
}

/// [`RemoteOptions::memory_bytes`] by default: 256 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retries: 4,
            deadline: Duration::from_secs(120),
            coalesce_bytes: object_store::OBJECT_STORE_COALESCE_DEFAULT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
        }
    }
}

impl RemoteOptions {
    /// The defaults, changed by `CTSTREAM_REMOTE_*` variables that are set.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] naming a variable that is not a positive number.
    pub fn from_env() -> Result<RemoteOptions, StoreError> {
        let mut o = RemoteOptions::default();
        let secs = |name: &str| -> Result<Option<Duration>, StoreError> {
            match std::env::var(name) {
                Err(_) => Ok(None),
                Ok(v) => match v.trim().parse::<f64>() {
                    Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => {
                        Ok(Some(Duration::from_secs_f64(s)))
                    }
                    _ => Err(StoreError::Invalid {
                        message: format!(
                            "{name}={v:?}: give seconds, more than 0 and at most 86400"
                        ),
                    }),
                },
            }
        };
        if let Some(t) = secs("CTSTREAM_REMOTE_TIMEOUT_S")? {
            o.request_timeout = t;
            o.connect_timeout = o.connect_timeout.min(t);
        }
        if let Some(t) = secs("CTSTREAM_REMOTE_DEADLINE_S")? {
            o.deadline = t;
        }
        if let Ok(v) = std::env::var("CTSTREAM_REMOTE_RETRIES") {
            o.retries = v.trim().parse::<usize>().ok().filter(|&n| n <= 100).ok_or_else(|| {
                StoreError::Invalid {
                    message: format!("CTSTREAM_REMOTE_RETRIES={v:?}: give a count, 0 to 100"),
                }
            })?;
        }
        if let Ok(v) = std::env::var("CTSTREAM_REMOTE_COALESCE_KB") {
            o.coalesce_bytes =
                v.trim().parse::<u64>().ok().filter(|&n| n <= 1 << 20).ok_or_else(|| {
                    StoreError::Invalid {
                        message: format!(
                            "CTSTREAM_REMOTE_COALESCE_KB={v:?}: give KiB, 0 to 1048576"
                        ),
                    }
                })? << 10;
        }
        if let Ok(v) = std::env::var("CTSTREAM_REMOTE_MEMORY_MB") {
            o.memory_bytes =
                v.trim().parse::<u64>().ok().filter(|&n| n <= 1 << 20).ok_or_else(|| {
                    StoreError::Invalid {
                        message: format!("CTSTREAM_REMOTE_MEMORY_MB={v:?}: give MiB, 0 to 1048576"),
                    }
                })? << 20;
        }
        Ok(o)
    }
}

/// Counters of the requests a [`Remote`] made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// GET requests (whole objects and byte ranges) and listings.
    pub requests: u64,
    /// Bytes received.
    pub bytes_fetched: u64,
    /// Bytes of the byte ranges readers asked for ([`Remote::get_ranges`],
    /// [`Remote::get_spans`]), and of the chunk payloads a request brought along that a
    /// reader took later from the memory cache, counted once ([`Remote::note_wanted`]):
    /// the bytes received that were used.
    pub bytes_wanted: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
}

/// A store's location on object storage: the client and the prefix its files lie under.
pub struct Remote {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    options: RemoteOptions,
    requests: AtomicU64,
    fetched: AtomicU64,
    wanted: AtomicU64,
    sent: AtomicU64,
    /// Cache tiers 3 (memory) and 2 (disk) of this store's chunk payloads.
    payloads: super::cache::Payloads,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).field("options", &self.options).finish()
    }
}

/// The runtime every blocking call runs on (two worker threads: the requests are I/O).
fn runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ctstream.remote")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| StoreError::Invalid {
        message: format!("cannot start the object-storage client's runtime: {e}"),
    })
}

impl Remote {
    /// The store at `url`, with [`RemoteOptions::from_env`].
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a URL that is not one of the schemes above, or a client
    /// that cannot be configured (say, no region).
    pub fn open(url: &str) -> Result<Remote, StoreError> {
        Remote::open_with(url, RemoteOptions::from_env()?)
    }

    /// The store at `url` with these client settings.
    ///
    /// # Errors
    /// As [`Remote::open`].
    pub fn open_with(url: &str, options: RemoteOptions) -> Result<Remote, StoreError> {
        Remote::open_with_config(url, options, &[])
    }

    /// The store at `url` with these client settings and `object_store` configuration
    /// keys on top of the environment's (`("aws_endpoint", "http://127.0.0.1:9000")`,
    /// `("aws_allow_http", "true")`, ...; the same keys as the environment variables, in
    /// lower case).
    ///
    /// # Errors
    /// As [`Remote::open`], and [`StoreError::Invalid`] naming a key the client does not know.
    pub fn open_with_config(
        url: &str,
        options: RemoteOptions,
        config: &[(&str, &str)],
    ) -> Result<Remote, StoreError> {
        let url = url.trim_end_matches('/');
        let bad = |m: String| StoreError::Invalid { message: format!("{url}: {m}") };
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
        let (scheme, prefix) = ObjectStoreScheme::parse(&parsed).map_err(|e| {
            bad(format!("not an object-storage URL (s3://, gs://, az://, http(s)://): {e}"))
        })?;
        let client = ClientOptions::new()
            .with_timeout(options.request_timeout)
            .with_connect_timeout(options.connect_timeout);
        let retry = RetryConfig {
            max_retries: options.retries,
            retry_timeout: options.deadline,
            ..RetryConfig::default()
        };
        let cfg = |e: object_store::Error| bad(format!("cannot configure the client: {e}"));
        // object_store unwraps the endpoint URL when it signs a request: check it here.
        let endpoints = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .into_iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)));
        let given = config
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k.to_ascii_lowercase().as_str(),
                    "aws_endpoint" | "aws_endpoint_url" | "endpoint" | "endpoint_url"
                )
            })
            .map(|(k, v)| (k.to_string(), v.to_string()));
        for (k, v) in endpoints.chain(given) {
            if url::Url::parse(&v).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                return Err(bad(format!("{k}={v:?} is not an http(s) URL")));
            }
        }
        // Each builder: our timeouts and retries, then the environment's keys (as the
        // builders' `from_env` reads them: AWS_ALLOW_HTTP and the like are client options
        // too, so they must come after ours), then the URL, then the keys given here.
        macro_rules! build {
            ($builder:ty, $key:ty, $env_prefix:expr) => {{
                let mut b = <$builder>::new().with_client_options(client).with_retry(retry);
                for (k, v) in std::env::vars() {
                    if k.starts_with($env_prefix) {
                        if let Ok(key) = k.to_ascii_lowercase().parse::<$key>() {
                            b = b.with_config(key, v);
                        }
                    }
                }
                b = b.with_url(url);
                for (k, v) in config {
                    let key: $key = k
                        .to_ascii_lowercase()
                        .parse()
                        .map_err(|e| bad(format!("configuration key `{k}`: {e}")))?;
                    b = b.with_config(key, *v);
                }
                Arc::new(b.build().map_err(cfg)?)
            }};
        }
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::AmazonS3 => build!(
                object_store::aws::AmazonS3Builder,
                object_store::aws::AmazonS3ConfigKey,
                "AWS_"
            ),
            ObjectStoreScheme::GoogleCloudStorage => build!(
                object_store::gcp::GoogleCloudStorageBuilder,
                object_store::gcp::GoogleConfigKey,
                "GOOGLE_"
            ),
            ObjectStoreScheme::MicrosoftAzure => build!(
                object_store::azure::MicrosoftAzureBuilder,
                object_store::azure::AzureConfigKey,
                "AZURE_"
            ),
            ObjectStoreScheme::Http => {
                if !config.is_empty() {
                    return Err(bad("an http(s) store takes no configuration keys".into()));
                }
                let base = &url[..parsed[..url::Position::BeforePath].len()];
                Arc::new(
                    object_store::http::HttpBuilder::new()
                        .with_url(base)
                        .with_client_options(client)
                        .with_retry(retry)
                        .build()
                        .map_err(cfg)?,
                )
            }
            other => {
                return Err(bad(format!(
                    "{other:?} is not an object store ctstream reads (a local folder is given as a path)"
                )));
            }
        };
        Ok(Remote {
            url: url.to_string(),
            store,
            prefix,
            options,
            requests: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            wanted: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            payloads: super::cache::Payloads::new(
                usize::try_from(options.memory_bytes).unwrap_or(usize::MAX),
            ),
        })
    }

    /// Keeps the chunk bytes this store's volumes fetch in `cache` too, and reads them from
    /// there first ([`super::cache::disk`]). Set once; false when one was set already.
    pub fn set_disk_cache(&self, cache: super::cache::disk::DiskCache) -> bool {
        self.payloads.set_disk(cache)
    }

    /// The disk cache of fetched chunks, when one is set.
    pub fn disk_cache(&self) -> Option<&super::cache::disk::DiskCache> {
        self.payloads.disk()
    }

    /// The fetched chunk payloads held in memory, and those being fetched now.
    pub fn memory_cache(&self) -> &super::cache::memory::MemoryCache {
        self.payloads.memory()
    }

    /// The cache tiers of this store's chunk payloads ([`super::cache`]).
    pub fn payloads(&self) -> &super::cache::Payloads {
        &self.payloads
    }

    /// Counts `n` bytes of chunk payloads an earlier request brought along that a reader
    /// has now taken for the first time ([`RemoteStats::bytes_wanted`]).
    pub fn note_wanted(&self, n: u64) {
        self.wanted.fetch_add(n, Ordering::Relaxed);
    }

    /// The store's URL, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client settings.
    pub fn options(&self) -> RemoteOptions {
        self.options
    }

    /// Requests made so far.
    pub fn stats(&self) -> RemoteStats {
        RemoteStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_fetched: self.fetched.load(Ordering::Relaxed),
            bytes_wanted: self.wanted.load(Ordering::Relaxed),
            bytes_sent: self.sent.load(Ordering::Relaxed),
        }
    }

    /// The URL of the store's file `rel` (for messages; a `PathBuf` as local files are named).
    pub fn name(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("{}/{rel}", self.url))
    }

    fn object(&self, rel: &str) -> ObjectPath {
        rel.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |p, part| p.clone().join(part))
    }

    fn error(
        &self,
        rel: &str,
        range: Option<&Range<u64>>,
        message: impl std::fmt::Display,
    ) -> StoreError {
        StoreError::Remote {
            object: self.name(rel).display().to_string(),
            range: range.map(|r| (r.start, r.end)),
            message: message.to_string(),
        }
    }

    /// The error of a failed request for `rel`, with its causes.
    fn describe(
        &self,
        rel: &str,
        range: Option<&Range<u64>>,
        e: &object_store::Error,
    ) -> StoreError {
        let mut message = crate::message::causes_once(crate::message::chain(e));
        if asked_metadata_service(&message) {
            message.push_str(&format!("; {NO_CREDENTIALS_HINT}"));
        }
        self.error(rel, range, message)
    }

    /// Runs `fut` (a request of `object_store` for `rel`) to completion on the runtime,
    /// within the deadline.
    fn block<T>(
        &self,
        rel: &str,
        range: Option<&Range<u64>>,
        fut: impl std::future::Future<Output = Result<T, object_store::Error>>,
    ) -> Result<T, StoreError> {
        self.run(rel, range, self.options.deadline, async {
            fut.await.map_err(|e| self.describe(rel, range, &e))
        })
    }

    /// Runs `fut` to completion on the runtime within `deadline`; `rel` and `range` name
    /// what it asked for when it does not finish.
    fn run<T>(
        &self,
        rel: &str,
        range: Option<&Range<u64>>,
        deadline: Duration,
        fut: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let rt = runtime()?;
        // The timer is made inside the runtime (it needs its time driver). A panic inside
        // the client (it has unwraps on configuration it did not check) becomes an error.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(async { tokio::time::timeout(deadline, fut).await })
        }));
        match run {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self.error(
                rel,
                range,
                format!(
                    "no answer within {:.0} s (CTSTREAM_REMOTE_DEADLINE_S)",
                    deadline.as_secs_f64()
                ),
            )),
            Err(p) => {
                let what = p
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                Err(self.error(rel, range, format!("the object-storage client failed ({what}); check the endpoint and credentials settings")))
            }
        }
    }

    /// The whole object `rel`, or None when there is none; at most `max_bytes` (a larger
    /// object is an error, so a hostile store cannot exhaust memory).
    ///
    /// # Errors
    /// [`StoreError::Remote`] naming the object.
    pub fn get(&self, rel: &str, max_bytes: u64) -> Result<Option<Bytes>, StoreError> {
        self.run(rel, None, self.options.deadline, self.get_async(rel, max_bytes))
    }

    /// Bytes `range` of object `rel`, exactly that many.
    ///
    /// # Errors
    /// [`StoreError::Remote`] naming the object and the range (a short answer included).
    pub fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        Ok(self.get_ranges(rel, std::slice::from_ref(&range))?.pop().unwrap_or_default())
    }

    /// Byte ranges of object `rel`, each exactly: [`Remote::get_spans`] (ranges at most
    /// [`RemoteOptions::coalesce_bytes`] apart in one request, requests concurrent), each
    /// range then cut from its span.
    ///
    /// # Errors
    /// [`StoreError::Remote`] naming the object and the span of a failed or short request.
    pub fn get_ranges(&self, rel: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, StoreError> {
        let spans = self.get_spans(rel, ranges)?;
        ranges
            .iter()
            .map(|r| {
                if r.end <= r.start {
                    return Ok(Bytes::new());
                }
                // The last span starting at or before the range: the one holding it.
                let held = spans
                    .partition_point(|(s, _)| s.start <= r.start)
                    .checked_sub(1)
                    .map(|i| &spans[i])
                    .filter(|(s, _)| r.end <= s.end);
                match held {
                    Some((s, b)) => {
                        Ok(b.slice((r.start - s.start) as usize..(r.end - s.start) as usize))
                    }
                    None => Err(self.error(rel, Some(r), "no request covered this range")),
                }
            })
            .collect()
    }

    /// Byte ranges of object `rel` as the requests brought them: ranges at most
    /// [`RemoteOptions::coalesce_bytes`] apart are merged into one span, with the bytes
    /// between them, and the spans are fetched concurrently. Returns (span, its bytes) in
    /// order of offset; every range asked for lies in one span.
    ///
    /// # Errors
    /// [`StoreError::Remote`] naming the object and the span of a failed or short request.
    pub fn get_spans(
        &self,
        rel: &str,
        ranges: &[Range<u64>],
    ) -> Result<Vec<(Range<u64>, Bytes)>, StoreError> {
        let spans = merge_ranges(ranges, self.options.coalesce_bytes);
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        let path = self.object(rel);
        self.wanted.fetch_add(
            ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum(),
            Ordering::Relaxed,
        );
        let whole = spans[0].start..spans[spans.len() - 1].end;
        let got = self.run(rel, Some(&whole), self.options.deadline, async {
            futures::stream::iter(spans.iter().cloned().map(|r| {
                let path = path.clone();
                async move {
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    let b = self
                        .store
                        .get_range(&path, r.clone())
                        .await
                        .map_err(|e| self.describe(rel, Some(&r), &e))?;
                    self.fetched.fetch_add(b.len() as u64, Ordering::Relaxed);
                    if b.len() as u64 != r.end - r.start {
                        return Err(self.error(
                            rel,
                            Some(&r),
                            format!(
                                "the server sent {} bytes for a range of {}",
                                b.len(),
                                r.end - r.start
                            ),
                        ));
                    }
                    Ok((r, b))
                }
            }))
            .buffered(CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await
        })?;
        Ok(got)
    }

    /// The objects under `dir` (recursively): (path relative to the store, size), sorted.
    ///
    /// # Errors
    /// [`StoreError::Remote`] naming the folder.
    pub fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix = self.object(dir);
        let base = self.prefix.as_ref().len();
        let mut out = self.block(dir, None, async {
            self.requests.fetch_add(1, Ordering::Relaxed);
            self.store
                .list(Some(&prefix))
                .map_ok(|m| {
                    (m.location.as_ref()[base..].trim_start_matches('/').to_string(), m.size)
                })
                .try_collect::<Vec<_>>()
                .await
        })?;
        out.sort();
        Ok(out)
    }

    /// Whole objects `rels`, at most `max_bytes` each, fetched concurrently; None for one
    /// that does not exist.
    ///
    /// # Errors
    /// [`StoreError::Remote`] naming the first object that failed.
    pub fn get_many(
        &self,
        rels: &[String],
        max_bytes: u64,
    ) -> Result<Vec<Option<Bytes>>, StoreError> {
        let fut = futures::stream::iter(rels.iter().map(|rel| self.get_async(rel, max_bytes)))
            .buffered(CONCURRENCY)
            .try_collect::<Vec<_>>();
        // All of them together may take a few deadlines of one.
        self.run(rels.first().map_or("", String::as_str), None, self.options.deadline * 4, fut)
    }

    async fn get_async(&self, rel: &str, max_bytes: u64) -> Result<Option<Bytes>, StoreError> {
        let path = self.object(rel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let r = match self.store.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.describe(rel, None, &e)),
        };
        if r.meta.size > max_bytes {
            return Err(self.error(
                rel,
                None,
                format!(
                    "{} bytes, more than the {max_bytes} a file of this kind may have",
                    r.meta.size
                ),
            ));
        }
        let b = r.bytes().await.map_err(|e| self.describe(rel, None, &e))?;
        self.fetched.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(Some(b))
    }

    /// Writes object `rel` (in parts when larger than [`MULTIPART_BYTES`]); it appears
    /// whole or not at all.
    ///
    /// # Errors
    /// [`StoreError::Remote`] naming the object.
    pub fn put(&self, rel: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.object(rel);
        let n = bytes.len() as u64;
        self.block(rel, None, async {
            if bytes.len() <= MULTIPART_BYTES {
                self.store.put(&path, PutPayload::from(bytes)).await?;
            } else {
                let upload = self.store.put_multipart(&path).await?;
                let mut w = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
                w.put(bytes);
                w.finish().await?;
            }
            Ok(())
        })?;
        self.sent.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Writes object `rel` unless one exists (a conditional PUT, `If-None-Match: *`):
    /// true when this call created it. A server without conditional writes overwrites, and
    /// the call says true.
    ///
    /// # Errors
    /// [`StoreError::Remote`] naming the object.
    pub fn put_new(&self, rel: &str, bytes: Bytes) -> Result<bool, StoreError> {
        let path = self.object(rel);
        let n = bytes.len() as u64;
        let opts =
            object_store::PutOptions { mode: object_store::PutMode::Create, ..Default::default() };
        let created = self.block(rel, None, async {
            match self.store.put_opts(&path, PutPayload::from(bytes.clone()), opts).await {
                Ok(_) => Ok(true),
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => Ok(false),
                Err(object_store::Error::NotImplemented { .. }) => {
                    self.store.put(&path, PutPayload::from(bytes)).await.map(|_| true)
                }
                Err(e) => Err(e),
            }
        })?;
        if created {
            self.sent.fetch_add(n, Ordering::Relaxed);
        }
        Ok(created)
    }

    /// Deletes object `rel` (no error when it does not exist).
    ///
    /// # Errors
    /// [`StoreError::Remote`] naming the object.
    pub fn delete(&self, rel: &str) -> Result<(), StoreError> {
        let path = self.object(rel);
        self.block(rel, None, async {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }
}

/// What a user without credentials is told: the clients of object_store look for
/// credentials in the environment, then ask the cloud's instance metadata service
/// (169.254.169.254, or `GCE_METADATA_HOST` / `AWS_METADATA_ENDPOINT` where set), which
/// answers only on a cloud VM.
pub const NO_CREDENTIALS_HINT: &str = "no credentials were found in the environment (AWS_*, GOOGLE_*, AZURE_*), so the client asked the cloud's instance metadata service for them, which answers only on a cloud VM: give credentials, or for a public bucket set AWS_SKIP_SIGNATURE=true (s3) or GOOGLE_SKIP_SIGNATURE=true (gs)";

/// Whether a failed request's message is the credential chain's request to an instance
/// metadata service (GCE's token endpoint, EC2's IMDS token or role, Azure's IMDS).
fn asked_metadata_service(message: &str) -> bool {
    [
        "/computeMetadata/v1/",
        "/latest/api/token",
        "/latest/meta-data/",
        "/metadata/identity/oauth2/token",
    ]
    .iter()
    .any(|m| message.contains(m))
}
