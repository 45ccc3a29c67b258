//! `GET /api/s2s/catalog?after=CURSOR&limit=N`: a page of the files local users share, for a
//! peer's first-contact pull. `{"files": [{"owner", "id", "name", "path", "size"}], "next":
//! CURSOR | null}`; `limit` defaults to [`CATALOG_PAGE_DEFAULT`] and may be at most
//! [`CATALOG_PAGE_MAX`]; a bad cursor or limit is a 400 with a plain-text reason.
//!
//! **Boundary:** this is the HTTP adapter; the page itself is [`Catalog::shared_page`]. The
//! signature check is a filter put in front of [`catalog_route`] where the routes are
//! assembled.

use std::collections::HashMap;

use warp::http::StatusCode;
use warp::reply::Reply;
use warp::{Filter, Rejection};

use crate::app::App;
use crate::catalog::{Catalog, Cursor, CATALOG_PAGE_DEFAULT, CATALOG_PAGE_MAX};

/// The route `GET /api/s2s/catalog`.
pub fn catalog_route(
    app: &App,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let catalog = app.catalog.clone();
    warp::path!("api" / "s2s" / "catalog")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .then(move |params: HashMap<String, String>| {
            let catalog = catalog.clone();
            async move { catalog_page(&catalog, &params).await }
        })
}

/// Answers one request for a catalog page.
pub async fn catalog_page(
    catalog: &Catalog,
    params: &HashMap<String, String>,
) -> warp::reply::Response {
    let (after, limit) = match page_params(params) {
        Ok(p) => p,
        Err(reason) => return plain(StatusCode::BAD_REQUEST, reason),
    };
    match catalog.shared_page(after, limit).await {
        Ok(page) => warp::reply::json(&page).into_response(),
        Err(e) => {
            tracing::error!("catalog page failed: {e}");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the catalog is unavailable; try again later".into(),
            )
        }
    }
}

/// `after` and `limit` from a query string, or why they are wrong.
fn page_params(params: &HashMap<String, String>) -> Result<(Option<Cursor>, usize), String> {
    let after = match params.get("after").map(String::as_str) {
        None | Some("") => None,
        Some(text) => Some(text.parse::<Cursor>().map_err(|e| e.to_string())?),
    };
    let limit = match params.get("limit") {
        None => CATALOG_PAGE_DEFAULT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=CATALOG_PAGE_MAX).contains(n))
            .ok_or_else(|| {
                format!(
                    "bad limit {:?}; give a number of files from 1 to {CATALOG_PAGE_MAX}",
                    text.chars().take(32).collect::<String>()
                )
            })?,
    };
    Ok((after, limit))
}

fn plain(status: StatusCode, text: String) -> warp::reply::Response {
    warp::reply::with_status(format!("{text}\n"), status).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn page_parameters_default_and_refuse_what_is_out_of_range() {
        assert_eq!(page_params(&params(&[])), Ok((None, CATALOG_PAGE_DEFAULT)));
        assert_eq!(
            page_params(&params(&[("after", "42"), ("limit", "1000")])),
            Ok((Some("42".parse().unwrap()), 1000))
        );
        for (key, value, needle) in [
            ("limit", "0", "bad limit \"0\""),
            ("limit", "1001", "bad limit \"1001\""),
            ("limit", "ten", "bad limit \"ten\""),
            ("after", "-1", "bad cursor \"-1\""),
            ("after", "+7", "bad cursor \"+7\""),
            ("after", "x", "bad cursor \"x\""),
        ] {
            let err = page_params(&params(&[(key, value)])).unwrap_err();
            assert!(err.contains(needle), "{key}={value}: {err}");
        }
    }
}
