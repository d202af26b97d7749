//! `ctstream view`: a whole store, its predictions and a training run in the browser.
//!
//! A local, read-only web server ([`server`]) answers one page shipped in the binary
//! ([`page`]: HTML, JavaScript and CSS, no build step and no network) and the routes the
//! page reads ([`routes`]): the scans table with each scan's flags ([`cohort`]), one
//! scan's geometry, label volumes, nodules, candidates and findings, its slices on the
//! three axes (cut on the server from the store's chunks through a decoded-chunk cache with
//! a byte budget, so a store on object storage fetches only the chunks a slice needs, and
//! memory stays bounded while a user scrolls: [`viewer`]), a thumbnail per scan, and a
//! run's logs and FROC curve ([`run`]).
//!
//! Every answer comes from [`routes::answer`], a plain function of the request's method,
//! path and query: bad requests are answered with a JSON error and their status (400 for a
//! malformed path or number, 404 for a scan, label, slice or file that does not exist, 405
//! for a method other than GET or HEAD), never a panic of the server.

pub mod cohort;
pub mod page;
pub mod routes;
pub mod run;
pub mod server;
pub mod viewer;

use std::path::PathBuf;

/// What `ctstream view` serves, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewConfig {
    /// The store's folder or object-storage URL, as the page shows it.
    pub store: String,
    /// A training run's folder (`metrics.csv`, `val.csv`).
    pub run: Option<PathBuf>,
    /// A `ctstream predict` output folder (`volumes/<id>.ctv`, `candidates.csv`).
    pub pred: Option<PathBuf>,
    /// A `ctstream evaluate` output folder (`froc.json`); without it, `eval/` beside the
    /// run or the prediction folder is used where it holds one.
    pub eval: Option<PathBuf>,
    /// The address to listen on; 127.0.0.1 (this machine only) unless told otherwise.
    pub addr: std::net::SocketAddr,
    /// Bytes of decoded chunks kept for slices (the server's memory bound, less the
    /// thumbnails and the requests in flight).
    pub cache_bytes: usize,
}

/// The default port of `ctstream view`.
pub const DEFAULT_PORT: u16 = 8765;

/// The default budget of decoded chunks, bytes (a full-size scan is about 150 MB).
pub const DEFAULT_CACHE_BYTES: usize = 512 << 20;

impl ViewConfig {
    /// `store` on 127.0.0.1:[`DEFAULT_PORT`] with the default cache and nothing else.
    pub fn new(store: &str) -> ViewConfig {
        ViewConfig {
            store: store.to_string(),
            run: None,
            pred: None,
            eval: None,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// Why the viewer cannot start or answer.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The store's index cannot be read.
    #[error("store {location}")]
    Store {
        /// The store's folder or URL.
        location: String,
        /// Why.
        #[source]
        source: crate::store::StoreError,
    },
    /// A folder or file given to the viewer (`--run`, `--pred`, `--eval`) that cannot be read.
    #[error("{path}: {message}")]
    Input {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A setting out of range, named.
    #[error("{0}")]
    Config(String),
    /// The address cannot be listened on, or the server failed.
    #[error("listening on {addr}")]
    Serve {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
