//! The HTTP side: `GET /healthz`, the landing page `GET /`, and the federation routes
//! (`fed::routes`, `fed::webfinger`, `fed::profile`, the instance document).
//!
//! warp 0.4 has no TLS and hides its acceptor, so we run our own accept loop (hyper-util
//! serving `warp::service(routes)`) to log every connection's peer address and to bound
//! connections: `http.max_connections` in total (a place is taken before `accept`, so past
//! it clients wait in the kernel's backlog) and `http.max_connections_per_address`.
//! Every request passes the body limit ([`limit`]) before it is routed. With
//! `http.tls_cert` and `http.tls_key` the endpoint speaks HTTPS itself ([`tls`]); otherwise
//! plain HTTP, for a TLS-terminating reverse proxy (`contrib/Caddyfile`, `contrib/nginx.conf`).

pub mod limit;
pub mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;
use warp::Filter;

use crate::accept::{self, Acceptor, Counter, Drain, DrainGuard, LogLimiter, Slot};
use crate::app::App;
use tls::Tls;

/// A request's head must arrive complete within this time, and an idle connection (before
/// its first request or between two) is closed after it: the slow-loris bound.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake must complete within this time after the connection is accepted.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long requests in flight get to finish before the server returns anyway.
const DRAIN_GRACE: Duration = Duration::from_secs(3);
/// The landing page's counts are reused for this long before they are counted again, so
/// that requests for `/` cost at most one count query per period.
const LANDING_REFRESH: Duration = Duration::from_secs(5);

/// The largest request body any route accepts (`http.max_body_bytes`); larger ones are
/// refused with 413 before routing. A route that reads a body uses it as
/// `warp::body::content_length_limit(body_limit(&app)).and(warp::body::bytes())`.
pub fn body_limit(app: &App) -> u64 {
    app.config.http.max_body_bytes
}

pub fn routes(
    app: &App,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok\n");
    let page = Landing::new(app.clone());
    let landing = warp::path::end().and(warp::get()).then(move || {
        let page = page.clone();
        async move { page.text().await }
    });
    // How peers learn our key: readable unsigned; a signed GET also introduces its signer.
    let instance_doc = crate::fed::client::InstanceDoc::of(app.domain(), &app.fed_key);
    let fed = app.fed.clone();
    let instance = warp::path!("api" / "s2s" / "instance")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .map(move |headers: warp::http::HeaderMap| {
            fed.introduced_by(&headers);
            warp::reply::json(&instance_doc)
        });
    let webfinger = crate::fed::webfinger::route(app.clone());
    let signed = crate::fed::routes::routes(app, body_limit(app));
    healthz
        .or(landing)
        .or(instance)
        .or(webfinger)
        .or(signed)
        .recover(crate::fed::verify::recover)
}

/// The landing page, its counts refreshed at most once per [`LANDING_REFRESH`].
#[derive(Clone)]
struct Landing {
    app: App,
    /// The page last made and when; the lock also makes concurrent requests share one count.
    cached: Arc<tokio::sync::Mutex<Option<(Instant, String)>>>,
}

impl Landing {
    fn new(app: App) -> Landing {
        Landing {
            app,
            cached: Arc::default(),
        }
    }

    async fn text(&self) -> String {
        let mut cached = self.cached.lock().await;
        if let Some((made, text)) = cached.as_ref() {
            if made.elapsed() < LANDING_REFRESH {
                return text.clone();
            }
        }
        let shared = match self.app.catalog.shared_count().await {
            Ok(n) => n.to_string(),
            Err(e) => {
                tracing::warn!("landing page: cannot count shared files: {e}");
                "unknown".to_owned()
            }
        };
        let text = landing(&self.app, self.app.peer_count(), &shared);
        *cached = Some((Instant::now(), text.clone()));
        text
    }
}

/// What the instance is, how big its network is, and how to connect, in plain text.
fn landing(app: &App, peers: usize, shared: &str) -> String {
    let port = app.config.ssh.listen.port();
    let host = app.domain().split(':').next().unwrap_or_default();
    format!(
        "RoseWire instance {domain}\n\n\
         A federated chat and file-sharing network reached with plain SSH.\n\
         Known peers: {peers}\n\
         Shared files: {shared}\n\n\
         Connect with:  ssh -p {port} YOURNICK@{host}\n\
         (make a key first if you have none: ssh-keygen -t ed25519)\n",
        domain = app.domain(),
    )
}

/// Serves HTTP (HTTPS with `tls`) on `listener` until `shutdown` turns true; then stops
/// accepting, lets requests in flight finish within [`DRAIN_GRACE`], closes idle
/// connections and returns.
pub async fn serve(
    app: App,
    listener: TcpListener,
    tls: Option<Tls>,
    mut shutdown: watch::Receiver<bool>,
) {
    let routes = TowerToHyperService::new(warp::service(routes(&app)));
    let max_body = body_limit(&app);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let routes = routes.clone();
        async move {
            match limit::read_body(request, max_body).await {
                Ok(request) => hyper::service::Service::call(&routes, request).await,
                Err(refusal) => Ok(refusal),
            }
        }
    });
    let http = &app.config.http;
    let places = Arc::new(Semaphore::new(http.max_connections));
    let per_address = http.max_connections_per_address;
    let open = Counter::default();
    let mut acceptor = Acceptor::new(listener, "http");
    let mut refusals = LogLimiter::new();
    let drain = Drain::new();
    loop {
        // A place before accepting: at the limit, new clients wait in the backlog and cost
        // this process no file descriptor.
        let place = tokio::select! {
            _ = crate::app::shutting_down(&mut shutdown) => break,
            place = places.clone().acquire_owned() => match place {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = crate::app::shutting_down(&mut shutdown) => break,
            accepted = acceptor.next() => accepted,
        };
        let slot = match open.try_take(accept::source(peer.ip()), |_, here| {
            if here < per_address {
                Ok(())
            } else {
                Err(())
            }
        }) {
            Ok(slot) => slot,
            Err(()) => {
                refusals.log(|| {
                    tracing::warn!(%peer, "http connection refused: too many connections from this address")
                });
                continue;
            }
        };
        tracing::info!(%peer, tls = tls.is_some(), "http connection accepted");
        let held = Held {
            _place: place,
            _slot: slot,
            _live: drain.enter(),
        };
        let (service, tls, mut down) = (service.clone(), tls.clone(), shutdown.clone());
        tokio::spawn(
            async move {
                let _held = held;
                // The handshake runs here, never in the accept loop: a slow client holds
                // only its own task.
                let Some(stream) = secure(stream, tls.as_ref(), &mut down).await else {
                    return;
                };
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                let ended = tokio::select! {
                    ended = conn.as_mut() => ended,
                    _ = crate::app::shutting_down(&mut down) => {
                        // Finish the request in flight, if any, then close.
                        conn.as_mut().graceful_shutdown();
                        match tokio::time::timeout(DRAIN_GRACE, conn).await {
                            Ok(ended) => ended,
                            Err(_) => return,
                        }
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!("http connection ended: {e}");
                }
            }
            .instrument(tracing::info_span!("http", %peer)),
        );
    }
    drop(acceptor);
    if !drain.wait(DRAIN_GRACE + Duration::from_secs(1)).await {
        tracing::warn!("some http connections did not close in time");
    }
}

/// What one connection holds until it closes: its place under `http.max_connections`, its
/// count against its address, and its mark in the drain.
struct Held {
    _place: tokio::sync::OwnedSemaphorePermit,
    _slot: Slot,
    _live: DrainGuard,
}

/// A connection's byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The stream to serve HTTP on: `stream` itself, or its TLS session once the handshake is
/// done within [`TLS_HANDSHAKE_TIMEOUT`]. `None` if the handshake failed, timed out or
/// shutdown came first.
async fn secure(
    stream: tokio::net::TcpStream,
    tls: Option<&Tls>,
    down: &mut watch::Receiver<bool>,
) -> Option<Box<dyn Io>> {
    let Some(tls) = tls else {
        return Some(Box::new(stream));
    };
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream));
    tokio::select! {
        done = handshake => match done {
            Ok(Ok(session)) => Some(Box::new(session)),
            Ok(Err(e)) => {
                tracing::debug!("tls handshake failed: {e}");
                None
            }
            Err(_) => {
                tracing::debug!("tls handshake not done within {TLS_HANDSHAKE_TIMEOUT:?}");
                None
            }
        },
        _ = crate::app::shutting_down(down) => None,
    }
}
