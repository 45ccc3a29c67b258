//! The HTTP side: federation will live here. For now it answers `GET /healthz` and `GET /`.
//!
//! warp 0.4 has no TLS and hides its acceptor, so we run our own accept loop (hyper-util
//! serving `warp::service(routes)`) to log every connection's peer address. Put a
//! TLS-terminating proxy in front of it in production.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;
use warp::Filter;

use crate::app::App;

/// A request must arrive complete within this time (slow-loris bound).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub fn routes(
    app: &App,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz").and(warp::get()).map(|| "ok\n");
    let landing_text = landing(app);
    let landing = warp::path::end()
        .and(warp::get())
        .map(move || landing_text.clone());
    healthz.or(landing)
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

/// Serves HTTP on `listener` until `shutdown` turns true.
pub async fn serve(app: App, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let service = warp::service(routes(&app));
    loop {
        let (stream, peer) = tokio::select! {
            _ = crate::app::shutting_down(&mut shutdown) => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("http accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tracing::info!(%peer, "http connection accepted");
        let service = TowerToHyperService::new(service.clone());
        let span = tracing::info_span!("http", %peer);
        tokio::spawn(
            async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!("http connection ended: {e}");
                }
            }
            .instrument(span),
        );
    }
}
