//! `ctstream view`: a store, its predictions and a training run in the browser (a local,
//! read-only web server; `ctstream::view` has the page and the routes).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ctstream::view::{self, ViewConfig, server::Server};

use crate::ExitError;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Open the address it prints in a browser. The page and its routes are served from this \
process only (nothing is fetched from the network); Ctrl-C stops it. Slices are cut from the store's \
chunks as they are asked for, so a store on object storage fetches only what is looked at."
)]
pub struct Args {
    /// The store: a folder, or a URL on object storage (s3://bucket/prefix, ...).
    pub store: PathBuf,
    /// A training run's folder: its metrics.csv and val.csv as curves.
    #[arg(long, value_name = "RUN")]
    pub run: Option<PathBuf>,
    /// Output of `ctstream predict`: probability maps (volumes/<id>.ctv) and findings
    /// (candidates.csv) over the slices.
    #[arg(long, value_name = "PRED_DIR")]
    pub pred: Option<PathBuf>,
    /// Output of `ctstream evaluate` (froc.json) [default: eval/ beside --run or --pred, if there].
    #[arg(long, value_name = "EVAL_DIR")]
    pub eval: Option<PathBuf>,
    /// The port to listen on (0: any free one).
    #[arg(long, default_value_t = view::DEFAULT_PORT)]
    pub port: u16,
    /// The address to listen on; anything but a loopback address shows the store to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// MiB of decoded chunks kept for slices (the server's memory, less the thumbnails).
    #[arg(long, value_name = "MIB", default_value_t = view::DEFAULT_CACHE_BYTES >> 20)]
    pub cache_mb: usize,
    #[command(flatten)]
    pub disk_cache: crate::DiskCacheArgs,
}

pub fn run(a: Args) -> Result<(), ExitError> {
    let store = crate::open_store(&a.store, &a.disk_cache)?;
    let cfg = ViewConfig {
        store: a.store.display().to_string(),
        run: a.run,
        pred: a.pred,
        eval: a.eval,
        addr: SocketAddr::new(a.host, a.port),
        cache_bytes: a.cache_mb.saturating_mul(1 << 20),
    };
    let server = Server::bind(std::sync::Arc::new(store), &cfg).map_err(|e| match e {
        view::ViewError::Config(_) => ExitError(crate::Exit::Usage, e.into()),
        other => other.into(),
    })?;
    // Ctrl-C (SIGINT) is caught from here on, before the address is printed, so a caller
    // that stops the server as soon as it reads the line stops it cleanly.
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let tx = std::sync::Mutex::new(Some(tx));
    ctrlc::set_handler(move || {
        if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
            let _ = tx.send(());
        }
    })
    .map_err(|e| anyhow::anyhow!("catching Ctrl-C: {e}"))?;
    let addr = server.addr();
    if !addr.ip().is_loopback() {
        eprintln!("note: listening on {addr}: every machine that reaches it can read the store");
    }
    println!(
        "ctstream view: http://{addr}/  ({} scans; Ctrl-C stops)",
        server.viewer().rows().len()
    );
    server.run(async {
        // On Ctrl-C, stop taking requests and end once those in flight are answered.
        let _ = rx.await;
    })?;
    println!("ctstream view: stopped");
    Ok(())
}
