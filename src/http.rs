//! The HTTP side: federation will live here. For now it answers `GET /healthz` and `GET /`.
//!
//! warp 0.4 has no TLS and hides its acceptor, so we run our own accept loop (hyper-util
//! serving `warp::service(routes)`) to log every connection's peer address and to bound
//! connections: `http.max_connections` in total (a place is taken before `accept`, so past
//! it clients wait in the kernel's backlog) and `http.max_connections_per_address`. Put a
//! TLS-terminating proxy in front of it in production.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::Instrument;
use warp::Filter;

use crate::accept::{Acceptor, Counter, Drain, LogLimiter};
use crate::app::App;

/// A request's head must arrive complete within this time, and an idle connection (before
/// its first request or between two) is closed after it: the slow-loris bound.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long requests in flight get to finish before the server returns anyway.
const DRAIN_GRACE: Duration = Duration::from_secs(3);

pub fn routes(
    app: &App,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok\n");
    let landing_text = landing(app);
    let landing = warp::path::end()
        .and(warp::get())
        .map(move || landing_text.clone());
    healthz
        .or(landing)
        .or(crate::fed::catalog::catalog_route(app))
}

/// What the instance is and how to connect, in plain text.
fn landing(app: &App) -> String {
    let port = app.config.ssh.listen.port();
    let host = app.domain().split(':').next().unwrap_or_default();
    format!(
        "RoseWire instance {domain}\n\n\
         A federated chat and file-sharing network reached with plain SSH.\n\
         Connect with:  ssh -p {port} YOURNICK@{host}\n\
         (make a key first if you have none: ssh-keygen -t ed25519)\n",
        domain = app.domain(),
    )
}

/// Serves HTTP on `listener` until `shutdown` turns true; then stops accepting, lets
/// requests in flight finish within [`DRAIN_GRACE`], closes idle connections and returns.
pub async fn serve(app: App, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let service = warp::service(routes(&app));
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
        let slot = match open.try_take(
            peer.ip(),
            |_, here| {
                if here < per_address {
                    Ok(())
                } else {
                    Err(())
                }
            },
        ) {
            Ok(slot) => slot,
            Err(()) => {
                refusals.log(|| {
                    tracing::warn!(%peer, "http connection refused: too many connections from this address")
                });
                continue;
            }
        };
        tracing::info!(%peer, "http connection accepted");
        let service = TowerToHyperService::new(service.clone());
        let span = tracing::info_span!("http", %peer);
        let live = drain.enter();
        let mut down = shutdown.clone();
        tokio::spawn(
            async move {
                let _held = (place, slot, live);
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
            .instrument(span),
        );
    }
    drop(acceptor);
    if !drain.wait(DRAIN_GRACE + Duration::from_secs(1)).await {
        tracing::warn!("some http connections did not close in time");
    }
}
