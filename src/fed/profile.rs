//! Profiles between instances: `GET /api/s2s/user/{address}` serves a local user's
//! [`ProfileDoc`]; [`fetch_remote`] asks another instance for one of its users.
//!
//! The endpoint answers:
//! - 200 `application/json`: the [`ProfileDoc`] (see [`crate::profile`]);
//! - 400 when the address is malformed (not UTF-8 once percent-decoded, no nick, no domain);
//! - 404 when the domain is not this instance's or no local user has the nickname.
//!
//! The address is `@nick@domain`, raw or percent-encoded (`%40nick%40domain`); the leading
//! `@` may be left out.

use std::future::Future;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rosewire_shell::Address;
use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::app::App;
use crate::config::Scheme;
use crate::profile::{Profile, ProfileDoc, ProfileDocError};

/// What a nick or domain keeps unencoded in a profile URL: RFC 3986 unreserved characters,
/// and `:` (a port, in dev mode).
const PATH_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// The URL of a user's profile on the instance at `base_url` (see `config::base_url`):
/// The path under which profiles are served.
const USER_PATH: &str = "/api/s2s/user/";

/// `{base_url}/api/s2s/user/@nick@domain`.
pub fn profile_url(base_url: &str, nick: &str, domain: &str) -> String {
    format!(
        "{base_url}/api/s2s/user/@{}@{}",
        utf8_percent_encode(nick, PATH_KEEP),
        utf8_percent_encode(domain, PATH_KEEP)
    )
}

/// `GET /api/s2s/user/{address}`, behind `guard`: the signature filter
/// (`fed::verify::signed(verifier, 0)`), whose rejections (401, 403) stop the request before
/// any lookup, or [`unsigned`]. Past the guard it always answers (200, 400 or 404), never
/// rejects.
pub fn user_route<G, T>(
    app: App,
    guard: G,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone
where
    G: Filter<Extract = (T,), Error = Rejection> + Clone + Send + Sync + 'static,
    T: Send + 'static,
{
    warp::path!("api" / "s2s" / "user" / String)
        .and(warp::get())
        .and(guard)
        .then(move |address: String, _verified: T| {
            let app = app.clone();
            async move { user_reply(&app, &address).await }
        })
}

/// A guard for [`user_route`] that lets every request through (no signature checked).
pub fn unsigned() -> impl Filter<Extract = ((),), Error = Rejection> + Clone {
    warp::any().and_then(|| async { Ok::<(), Rejection>(()) })
}

/// The answer to `GET /api/s2s/user/{segment}` (`segment` as it came, still percent-encoded).
pub async fn user_reply(app: &App, segment: &str) -> Response {
    let address = match decode_address(segment) {
        Ok(address) => address,
        Err(why) => return plain(StatusCode::BAD_REQUEST, &why),
    };
    match local_profile(app, &address).await {
        Ok(Some(profile)) => json(StatusCode::OK, &ProfileDoc::from(&profile)),
        Ok(None) => plain(
            StatusCode::NOT_FOUND,
            &format!("no user {address} on {}", app.domain()),
        ),
        Err(e) => {
            tracing::warn!("profile lookup failed: {e}");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the profile is unavailable",
            )
        }
    }
}

/// A path segment as an address with a domain: percent-decoded, `@nick@domain` or
/// `nick@domain`. The error is the 400 body.
fn decode_address(segment: &str) -> Result<Address, String> {
    let decoded = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| "the address is not UTF-8 once percent-decoded".to_owned())?;
    let shown = rosewire_shell::sanitize(&decoded);
    let address =
        Address::parse(&decoded).map_err(|e| format!("{shown:?} is not a user address: {e}"))?;
    if address.domain.is_none() {
        return Err(format!(
            "{shown:?} names no domain; use @nick@domain, like @alice@rose.example"
        ));
    }
    Ok(address)
}

/// The profile of `address` if it is a user of this instance: `None` for another domain, an
/// impossible nickname or an unknown one.
pub(super) async fn local_profile(
    app: &App,
    address: &Address,
) -> Result<Option<Profile>, crate::store::StoreError> {
    if !address.is_on(app.domain()) || crate::nick::validate(&address.nick).is_err() {
        return Ok(None);
    }
    app.users.profile(&address.nick).await
}

/// Why a remote profile could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchProfileError {
    #[error("{0} names no instance; use @nick@domain")]
    NoDomain(String),
    #[error("cannot fetch the profile of {address}: {reason}")]
    Fetch { address: String, reason: String },
    #[error("{address}'s instance sent a profile that was refused: {error}")]
    Invalid {
        address: String,
        error: ProfileDocError,
    },
}

/// Asks `address`'s instance for the user's profile with `get_json(url)` (the lead passes the
/// signed client: `|url| async move { client.get_json::<ProfileDoc>(&url).await }`), and
/// checks the answer (see [`ProfileDoc::into_profile`]: it must be the profile asked for, from
/// the domain asked). The instance is reached over `scheme`, as every peer.
pub async fn fetch_remote<F, Fut, E>(
    get_json: F,
    address: &Address,
    scheme: Scheme,
) -> Result<Profile, FetchProfileError>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<ProfileDoc, E>>,
    E: std::fmt::Display,
{
    let Some(domain) = address.domain.as_deref() else {
        return Err(FetchProfileError::NoDomain(address.to_string()));
    };
    let base = scheme.base_url(domain);
    fetch_remote_at(get_json, address, profile_url(&base, &address.nick, domain)).await
}

/// [`fetch_remote`] from a profile URL found elsewhere (the `self` link of the user's
/// WebFinger answer): it must be a profile URL of the user's own instance.
pub async fn fetch_remote_at<F, Fut, E>(
    get_json: F,
    address: &Address,
    url: String,
) -> Result<Profile, FetchProfileError>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<ProfileDoc, E>>,
    E: std::fmt::Display,
{
    let fetch_error = |reason: String| FetchProfileError::Fetch {
        address: address.to_string(),
        reason,
    };
    let domain = address
        .domain
        .as_deref()
        .ok_or_else(|| FetchProfileError::NoDomain(address.to_string()))?;
    // `SCHEME://DOMAIN/api/s2s/user/...`: that very host, that very path.
    let on_home = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .is_some_and(|(host, path)| {
            host.eq_ignore_ascii_case(domain) && path.starts_with(&USER_PATH[1..])
        });
    if !on_home {
        return Err(fetch_error(format!(
            "its profile link {url:?} is not a profile on {domain}"
        )));
    }
    let doc = get_json(url)
        .await
        .map_err(|e| fetch_error(e.to_string()))?;
    doc.into_profile(address)
        .map_err(|error| FetchProfileError::Invalid {
            address: address.to_string(),
            error,
        })
}

/// A plain-text answer (a reason, one line).
pub(super) fn plain(status: StatusCode, text: &str) -> Response {
    let mut response = Response::new(format!("{text}\n").into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A JSON answer; `content_type` is set by the caller when it is not `application/json`.
pub(super) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = match serde_json::to_vec(value) {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!("cannot encode a reply: {e}");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the reply");
        }
    };
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_decode_raw_or_percent_encoded_and_need_a_domain() {
        for segment in [
            "@alice@rose.example",
            "%40alice%40rose.example",
            "alice@rose.example",
        ] {
            assert_eq!(
                decode_address(segment).unwrap().to_string(),
                "@alice@rose.example",
                "{segment}"
            );
        }
        for bad in ["alice", "%40alice", "@", "@alice@", "%ff%40x"] {
            assert!(decode_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_profile_url_encodes_what_a_path_segment_cannot_hold() {
        assert_eq!(
            profile_url("http://127.0.0.2:8080", "alice", "127.0.0.2:8080"),
            "http://127.0.0.2:8080/api/s2s/user/@alice@127.0.0.2:8080"
        );
        assert_eq!(
            profile_url("https://x", "a/b?c", "x"),
            "https://x/api/s2s/user/@a%2Fb%3Fc@x"
        );
    }

    fn doc(nick: &str, domain: &str) -> ProfileDoc {
        ProfileDoc {
            address: format!("@{nick}@{domain}"),
            nick: nick.into(),
            domain: domain.into(),
            joined: "2026-01-01T00:00:00Z".into(),
            shared_files: 0,
            keys: vec![],
            bio: "hi".into(),
        }
    }

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_remote_profile_is_fetched_from_its_own_instance_and_checked() {
        let alice = Address::parse("@alice@rose.example").unwrap();
        let asked = std::cell::RefCell::new(String::new());
        let profile = run(fetch_remote(
            |url| {
                *asked.borrow_mut() = url;
                async { Ok::<_, String>(doc("alice", "rose.example")) }
            },
            &alice,
            Scheme::Https,
        ))
        .unwrap();
        assert_eq!(
            asked.into_inner(),
            "https://rose.example/api/s2s/user/@alice@rose.example"
        );
        assert_eq!(profile.bio, "hi");
        // An instance answering with someone else's profile is refused.
        let err = run(fetch_remote(
            |_| async { Ok::<_, String>(doc("alice", "evil.example")) },
            &alice,
            Scheme::Https,
        ))
        .unwrap_err();
        assert!(matches!(err, FetchProfileError::Invalid { .. }), "{err}");
        let err = run(fetch_remote(
            |_| async { Err::<ProfileDoc, _>("status 404") },
            &alice,
            Scheme::Http,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("status 404"), "{err}");
    }

    #[test]
    fn a_profile_link_to_another_instance_is_not_followed() {
        let alice = Address::parse("@alice@rose.example").unwrap();
        let fetched = std::cell::Cell::new(false);
        for url in [
            "https://evil.example/api/s2s/user/@alice@rose.example",
            "https://rose.example.evil.example/api/s2s/user/@alice@rose.example",
            "https://rose.example/elsewhere",
        ] {
            let err = run(fetch_remote_at(
                |_| {
                    fetched.set(true);
                    async { Ok::<_, String>(doc("alice", "rose.example")) }
                },
                &alice,
                url.to_owned(),
            ))
            .unwrap_err();
            assert!(
                err.to_string().contains("is not a profile on rose.example"),
                "{err}"
            );
        }
        assert!(!fetched.get(), "nothing was fetched");
        let ok = run(fetch_remote_at(
            |_| async { Ok::<_, String>(doc("alice", "rose.example")) },
            &alice,
            "https://rose.example/api/s2s/user/@alice@rose.example".to_owned(),
        ));
        assert!(ok.is_ok());
    }
}
