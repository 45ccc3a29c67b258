//! The federation endpoints, each behind the signature filter: `POST /api/s2s/inbox` and
//! `GET /api/s2s/peers` (the instance document, WebFinger, profiles and catalogs join here).

use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::inbox::{self, Received};
use super::verify::{signed, Signed};
use crate::app::App;

pub fn routes(
    app: &App,
    max_body: u64,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let verifier = app.fed.verifier().clone();
    let with_app = {
        let app = app.clone();
        warp::any().map(move || app.clone())
    };
    let inbox = warp::path!("api" / "s2s" / "inbox")
        .and(warp::post())
        .and(signed(verifier.clone(), max_body))
        .and(with_app.clone())
        .then(|signed: Signed, app: App| async move {
            app.fed.heard_from(&signed.domain);
            match inbox::receive(&app, &signed.domain, &signed.body).await {
                Ok(Received::Applied) => text(StatusCode::ACCEPTED, "accepted"),
                Ok(Received::Duplicate) => text(StatusCode::ACCEPTED, "duplicate: already applied"),
                Err(refusal) => {
                    tracing::info!(peer = %signed.domain, status = refusal.status, "inbox refused: {}", refusal.reason);
                    text(
                        StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
                        &refusal.reason,
                    )
                }
            }
        });
    let peers = warp::path!("api" / "s2s" / "peers")
        .and(warp::get())
        .and(signed(verifier, 0))
        .and(with_app)
        .map(|signed: Signed, app: App| {
            app.fed.heard_from(&signed.domain);
            warp::reply::json(&app.fed.peers_reply()).into_response()
        });
    inbox.or(peers)
}

/// A plain-text answer: one line.
fn text(status: StatusCode, line: &str) -> warp::reply::Response {
    warp::reply::with_status(format!("{line}\n"), status).into_response()
}
