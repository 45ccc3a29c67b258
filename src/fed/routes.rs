//! The signed federation endpoints: `POST /api/s2s/inbox`, `GET /api/s2s/peers`,
//! `GET /api/s2s/catalog`, `GET /api/s2s/user/{address}` and `GET /api/s2s/files/{id}`, each behind the signature filter
//! (`fed::verify::signed`). Refusals of that filter become responses in `http.rs` (`recover`).

use std::collections::HashMap;

use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::inbox::{self, Received};
use super::verify::{signed, Signed};
use crate::app::App;

pub fn routes(
    app: &App,
    max_body: u64,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
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
        .and(signed(verifier.clone(), 0))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app.clone())
        .map(|signed: Signed, query: HashMap<String, String>, app: App| {
            app.fed.heard_from(&signed.domain);
            let after = query.get("after").map(String::as_str);
            warp::reply::json(&app.fed.peers_reply(after)).into_response()
        });
    let catalog = warp::path!("api" / "s2s" / "catalog")
        .and(warp::get())
        .and(signed(verifier.clone(), 0))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_app.clone())
        .then(
            |signed: Signed, query: HashMap<String, String>, app: App| async move {
                app.fed.heard_from(&signed.domain);
                super::catalog::catalog_page(&app.catalog, &query).await
            },
        );
    let user = super::profile::user_route(app.clone(), signed(verifier.clone(), 0));
    let files = super::files::route(app.clone(), signed(verifier, 0));
    inbox
        .or(peers)
        .unify()
        .or(catalog)
        .unify()
        .or(user)
        .unify()
        .or(files)
        .unify()
}

/// A plain-text answer: one line.
fn text(status: StatusCode, line: &str) -> warp::reply::Response {
    warp::reply::with_status(format!("{line}\n"), status).into_response()
}
