//! The local web server of `ctstream view` (axum on tokio): every request is answered by
//! [`super::routes::answer`] on tokio's blocking threads (at most [`MAX_WORKERS`] at a
//! time, so many clients cannot make it hold more than that many slices at once); the
//! server stops when the future given to [`Server::run`] completes (Ctrl-C in the CLI),
//! after the requests in flight are answered.
//!
//! Bound to a loopback address (the default), it answers only requests whose `Host` is a
//! loopback name (`localhost`, `127.0.0.1`, `[::1]`, with any port): a web page elsewhere
//! cannot read the store through a DNS name that it points at 127.0.0.1.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};

use super::routes::{self, Reply};
use super::viewer::{Refusal, Viewer};
use super::{ViewConfig, ViewError};

/// How long a stopping server waits for the connections still open.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The most requests answered at once (each on a blocking thread).
pub const MAX_WORKERS: usize = 8;

/// A bound, not yet serving, viewer.
pub struct Server {
    viewer: Arc<Viewer>,
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl Server {
    /// Serves `store` as `cfg` says, listening on `cfg.addr` (port 0: any free port).
    ///
    /// # Errors
    /// As [`Viewer::open`]; [`ViewError::Serve`] when the address cannot be listened on.
    pub fn bind(store: Arc<crate::store::Store>, cfg: &ViewConfig) -> Result<Server, ViewError> {
        let viewer = Arc::new(Viewer::open(store, cfg)?);
        let serve = |source| ViewError::Serve { addr: cfg.addr, source };
        let listener = std::net::TcpListener::bind(cfg.addr).map_err(serve)?;
        listener.set_nonblocking(true).map_err(serve)?;
        let addr = listener.local_addr().map_err(serve)?;
        Ok(Server { viewer, listener, addr })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The viewer it serves.
    pub fn viewer(&self) -> &Arc<Viewer> {
        &self.viewer
    }

    /// Serves until `stop` completes, then answers the requests in flight and returns; a
    /// connection still open [`SHUTDOWN_GRACE`] later (a browser tab's idle keep-alive
    /// connection, a request half sent) is dropped rather than waited for.
    ///
    /// # Errors
    /// [`ViewError::Serve`] when the runtime cannot start or the listener fails.
    pub fn run(self, stop: impl Future<Output = ()> + Send + 'static) -> Result<(), ViewError> {
        let addr = self.addr;
        let serve = |source| ViewError::Serve { addr, source };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(MAX_WORKERS)
            .enable_io()
            .enable_time()
            .build()
            .map_err(serve)?;
        let viewer = self.viewer;
        let loopback = addr.ip().is_loopback();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(self.listener)?;
            let app = axum::Router::new().fallback(move |req: Request<Body>| {
                let viewer = viewer.clone();
                async move { handle(viewer, req, loopback).await }
            });
            let (stopping, stopped) = futures::channel::oneshot::channel::<()>();
            let graceful = async move {
                stop.await;
                let _ = stopping.send(());
            };
            let server = std::pin::pin!(
                axum::serve(listener, app).with_graceful_shutdown(graceful).into_future()
            );
            let deadline = std::pin::pin!(async move {
                match stopped.await {
                    Ok(()) => tokio::time::sleep(SHUTDOWN_GRACE).await,
                    // The server ended on its own: it is the one that finishes.
                    Err(_) => std::future::pending::<()>().await,
                }
            });
            match futures::future::select(server, deadline).await {
                futures::future::Either::Left((done, _)) => done,
                futures::future::Either::Right(_) => Ok(()),
            }
        })
        .map_err(serve)?;
        // Requests being answered on blocking threads get the same grace.
        rt.shutdown_timeout(SHUTDOWN_GRACE);
        Ok(())
    }

    /// Serves on a thread of its own until [`Spawned::stop`] (or until the handle is
    /// dropped).
    ///
    /// # Errors
    /// [`ViewError::Serve`] when the thread cannot be started.
    pub fn spawn(self) -> Result<Spawned, ViewError> {
        let addr = self.addr;
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ctstream-view".into())
            .spawn(move || {
                self.run(async move {
                    // A dropped sender stops the server as a sent stop does.
                    let _ = rx.await;
                })
            })
            .map_err(|source| ViewError::Serve { addr, source })?;
        Ok(Spawned { addr, stop: Some(tx), thread: Some(thread) })
    }
}

/// A viewer serving on its own thread ([`Server::spawn`]); dropping it stops it too.
pub struct Spawned {
    addr: SocketAddr,
    stop: Option<futures::channel::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ViewError>>>,
}

impl Spawned {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking requests, answers those in flight, and waits for the thread to end.
    ///
    /// # Errors
    /// What the server failed with, if it did.
    pub fn stop(mut self) -> Result<(), ViewError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), ViewError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ViewError::Serve {
                addr: self.addr,
                source: std::io::Error::other("the server's thread panicked"),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

async fn handle(viewer: Arc<Viewer>, req: Request<Body>, loopback: bool) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string);
    let reply = if loopback && !host.as_deref().is_some_and(loopback_host) {
        let mut r = Reply::refused(&Refusal::BadRequest(format!(
            "host {:?}: the viewer answers localhost only",
            host.unwrap_or_default()
        )));
        r.status = 403;
        r
    } else {
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_string);
        tokio::task::spawn_blocking(move || {
            routes::answer(&viewer, &method, &path, query.as_deref())
        })
        .await
        .unwrap_or_else(|e| Reply::refused(&Refusal::Failed(format!("the request failed: {e}"))))
    };
    response(reply, head)
}

/// Whether a `Host` header names this machine's loopback interface.
pub fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn response(r: Reply, head: bool) -> Response<Body> {
    let body = if head { Body::empty() } else { Body::from(r.body) };
    let mut resp = Response::new(body);
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(r.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The page loads nothing from anywhere else.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data: blob:"),
    );
    for (k, v) in r.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_answered() {
        for ok in
            ["localhost", "localhost:8765", "127.0.0.1:1", "[::1]:8765", "127.1.2.3", "LOCALHOST"]
        {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8765",
            "localhost.evil.example",
            "10.0.0.1:80",
            "[fe80::1]:80",
            "",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }
}
