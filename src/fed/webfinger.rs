//! WebFinger (RFC 7033): `GET /.well-known/webfinger?resource=acct:NICK@DOMAIN` for local
//! users, and [`lookup`] of a user of another instance.
//!
//! The answer for a local user (`application/jrd+json`, `Access-Control-Allow-Origin: *`):
//!
//! ```json
//! {"subject": "acct:alice@rose.example",
//!  "aliases": ["https://rose.example/api/s2s/user/@alice@rose.example"],
//!  "links": [
//!    {"rel": "self", "type": "application/json",
//!     "href": "https://rose.example/api/s2s/user/@alice@rose.example"},
//!    {"rel": "https://rosewire.example/ns/ssh-key",
//!     "properties": {"https://rosewire.example/ns/ssh-key#fingerprint": "SHA256:...",
//!                    "https://rosewire.example/ns/ssh-key#public-key": "ssh-ed25519 AAAA..."}}]}
//! ```
//!
//! One [`SSH_KEY_REL`] link per SSH key, its `authorized_keys` line and fingerprint in the
//! link's properties (a JRD link needs no `href`). `rel=...` parameters keep only the links
//! of those relations (RFC 7033 section 4.3). 400 for a missing, repeated or malformed
//! resource (not `acct:`, no nick, no domain), 404 for a domain that is not this instance's
//! or an unknown user. WebFinger is public: no signature needed.

use std::collections::BTreeMap;
use std::future::Future;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rosewire_shell::Address;
use serde::{Deserialize, Serialize};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::profile::{json, local_profile, plain, profile_url};
use crate::app::App;
use crate::config::Scheme;
use crate::profile::Profile;

/// The media type of a JRD.
pub const JRD_TYPE: &str = "application/jrd+json";
/// The link relation of one of the user's SSH public keys.
pub const SSH_KEY_REL: &str = "https://rosewire.example/ns/ssh-key";
/// Property of an [`SSH_KEY_REL`] link: the key's `authorized_keys` line.
pub const SSH_KEY_PUBLIC_KEY: &str = "https://rosewire.example/ns/ssh-key#public-key";
/// Property of an [`SSH_KEY_REL`] link: the key's `SHA256:...` fingerprint.
pub const SSH_KEY_FINGERPRINT: &str = "https://rosewire.example/ns/ssh-key#fingerprint";
/// The type of the `self` link: the profile document (`GET /api/s2s/user/{address}`).
pub const PROFILE_TYPE: &str = "application/json";
/// What the `resource` parameter keeps unencoded: RFC 3986 unreserved characters.
const QUERY_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Longest `resource` accepted, in bytes: `acct:`, a nickname and a domain fit in far less.
pub const MAX_RESOURCE_LEN: usize = 512;

/// A JSON Resource Descriptor (RFC 7033 section 4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jrd {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// A link of a [`Jrd`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub rel: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, Option<String>>,
}

impl Jrd {
    /// The JRD of a local user's profile; `base_url` is this instance's.
    pub fn of(profile: &Profile, base_url: &str) -> Jrd {
        let url = profile_url(base_url, &profile.address.nick, profile.domain());
        let mut links = vec![Link {
            rel: "self".to_owned(),
            media_type: Some(PROFILE_TYPE.to_owned()),
            href: Some(url.clone()),
            properties: BTreeMap::new(),
        }];
        links.extend(profile.keys.iter().map(|k| Link {
            rel: SSH_KEY_REL.to_owned(),
            media_type: None,
            href: None,
            properties: BTreeMap::from([
                (SSH_KEY_FINGERPRINT.to_owned(), Some(k.fingerprint.clone())),
                (SSH_KEY_PUBLIC_KEY.to_owned(), Some(k.public_key.clone())),
            ]),
        }));
        Jrd {
            subject: format!("acct:{}@{}", profile.address.nick, profile.domain()),
            aliases: vec![url],
            properties: BTreeMap::new(),
            links,
        }
    }

    /// The profile document's URL (the `self` link of type [`PROFILE_TYPE`]).
    pub fn profile_url(&self) -> Option<&str> {
        self.links
            .iter()
            .find(|l| l.rel == "self" && l.media_type.as_deref() == Some(PROFILE_TYPE))
            .and_then(|l| l.href.as_deref())
    }

    /// The `authorized_keys` lines of the user's SSH keys, in order.
    pub fn ssh_keys(&self) -> Vec<&str> {
        self.links
            .iter()
            .filter(|l| l.rel == SSH_KEY_REL)
            .filter_map(|l| l.properties.get(SSH_KEY_PUBLIC_KEY)?.as_deref())
            .collect()
    }
}

/// `GET /.well-known/webfinger`. Always answers (never rejects once the path matches).
pub fn route(app: App) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::path!(".well-known" / "webfinger")
        .and(warp::get())
        .and(query)
        .then(move |query: String| {
            let app = app.clone();
            async move {
                let mut response = reply(&app, &query).await;
                response.headers_mut().insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
                response
            }
        })
}

/// The answer to one query string (`resource=...&rel=...`).
async fn reply(app: &App, query: &str) -> Response {
    let (resource, rels) = match parse_query(query) {
        Ok(parsed) => parsed,
        Err(why) => return plain(StatusCode::BAD_REQUEST, &why),
    };
    let address = match parse_resource(&resource) {
        Ok(address) => address,
        Err(why) => return plain(StatusCode::BAD_REQUEST, &why),
    };
    let profile = match local_profile(app, &address).await {
        Ok(Some(profile)) => profile,
        Ok(None) => {
            return plain(
                StatusCode::NOT_FOUND,
                &format!("no user {address} on {}", app.domain()),
            )
        }
        Err(e) => {
            tracing::warn!("webfinger lookup failed: {e}");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the profile is unavailable",
            );
        }
    };
    let mut jrd = Jrd::of(&profile, &app.config.base_url());
    if !rels.is_empty() {
        jrd.links.retain(|l| rels.contains(&l.rel));
    }
    let mut response = json(StatusCode::OK, &jrd);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JRD_TYPE));
    response
}

/// The one `resource` parameter and the `rel` parameters of a query string. The error is the
/// 400 body.
fn parse_query(query: &str) -> Result<(String, Vec<String>), String> {
    let mut resource = None;
    let mut rels = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "resource" if resource.is_some() => {
                return Err("more than one resource parameter; ask for one".to_owned())
            }
            "resource" => resource = Some(value.into_owned()),
            "rel" => rels.push(value.into_owned()),
            _ => {}
        }
    }
    let resource = resource.ok_or_else(|| {
        "missing resource parameter, like ?resource=acct:alice@rose.example".to_owned()
    })?;
    Ok((resource, rels))
}

/// `acct:nick@domain` (the scheme in any case) as an address. The error is the 400 body.
fn parse_resource(resource: &str) -> Result<Address, String> {
    if resource.len() > MAX_RESOURCE_LEN {
        return Err(format!(
            "resource too long: {} bytes (the limit is {MAX_RESOURCE_LEN})",
            resource.len()
        ));
    }
    let shown = rosewire_shell::sanitize(resource);
    let account = match resource.split_once(':') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("acct") => rest,
        _ => {
            return Err(format!(
                "resource {shown:?} is not an acct: URI; use acct:nick@domain"
            ))
        }
    };
    let bad = || format!("resource {shown:?} is not acct:nick@domain");
    if account.starts_with('@') {
        return Err(bad());
    }
    let address = Address::parse(account).map_err(|_| bad())?;
    if address.domain.is_none() {
        return Err(bad());
    }
    Ok(address)
}

/// Why a remote WebFinger lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0} names no instance; use @nick@domain")]
    NoDomain(String),
    #[error("webfinger lookup of {address} failed: {reason}")]
    Fetch { address: String, reason: String },
    /// The answer is about another account, or one of another domain: one domain may not
    /// speak for another's users (Mastodon's back-check).
    #[error("webfinger of {asked} answered for {subject:?}; refused")]
    WrongSubject { asked: String, subject: String },
}

/// The WebFinger URL for `address` on its own instance, reached over `scheme`.
pub fn webfinger_url(address: &Address, scheme: Scheme) -> Option<String> {
    let domain = address.domain.as_deref()?;
    let resource = format!("acct:{}@{domain}", address.nick);
    Some(format!(
        "{}/.well-known/webfinger?resource={}",
        scheme.base_url(domain),
        utf8_percent_encode(&resource, QUERY_KEEP)
    ))
}

/// Looks `address` up on its own instance with `get(url)` and keeps the answer only if its
/// `subject` is `acct:nick@domain` for the nick and the domain asked (any case).
pub async fn lookup<F, Fut, E>(
    get: F,
    address: &Address,
    scheme: Scheme,
) -> Result<Jrd, LookupError>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<Jrd, E>>,
    E: std::fmt::Display,
{
    let url =
        webfinger_url(address, scheme).ok_or_else(|| LookupError::NoDomain(address.to_string()))?;
    let jrd = get(url).await.map_err(|e| LookupError::Fetch {
        address: address.to_string(),
        reason: e.to_string(),
    })?;
    back_check(&jrd, address)?;
    Ok(jrd)
}

/// Whether `jrd` is about `asked`: its subject is `acct:` the same nick at the same domain.
fn back_check(jrd: &Jrd, asked: &Address) -> Result<(), LookupError> {
    let refused = || LookupError::WrongSubject {
        asked: asked.to_string(),
        subject: rosewire_shell::sanitize(&jrd.subject)
            .chars()
            .take(80)
            .collect(),
    };
    let account = match jrd.subject.split_once(':') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("acct") => rest,
        _ => return Err(refused()),
    };
    let (nick, domain) = account.rsplit_once('@').ok_or_else(refused)?;
    let same_nick = nick.to_lowercase() == asked.nick.to_lowercase();
    let same_domain = asked
        .domain
        .as_deref()
        .is_some_and(|d| d.eq_ignore_ascii_case(domain));
    if same_nick && same_domain {
        Ok(())
    } else {
        Err(refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// What an instance answered, as JSON text.
    fn answered(json: &str) -> Result<Jrd, LookupError> {
        let jrd: Jrd = serde_json::from_str(json).unwrap();
        let alice = Address::parse("@alice@rose.example").unwrap();
        run(lookup(
            |_| async { Ok::<_, String>(jrd) },
            &alice,
            Scheme::Https,
        ))
    }

    #[test]
    fn the_back_check_keeps_an_answer_about_the_user_asked() {
        for subject in ["acct:alice@rose.example", "ACCT:Alice@ROSE.example"] {
            let json = format!(
                r#"{{"subject": "{subject}", "links": [{{"rel": "self",
                    "type": "application/json", "href": "https://rose.example/api/s2s/user/@alice@rose.example"}}]}}"#
            );
            let jrd = answered(&json).unwrap();
            assert_eq!(
                jrd.profile_url(),
                Some("https://rose.example/api/s2s/user/@alice@rose.example")
            );
        }
    }

    #[test]
    fn the_back_check_refuses_another_domain_or_user() {
        for subject in [
            "acct:alice@evil.example",
            "acct:alice@rose.example.evil.example",
            "acct:mallory@rose.example",
            "acct:alice@evil.example@rose.example",
            "https://rose.example/alice",
            "acct:alice",
            "",
        ] {
            let json = format!(r#"{{"subject": "{subject}"}}"#);
            let err = answered(&json).unwrap_err();
            assert!(
                matches!(err, LookupError::WrongSubject { .. }),
                "{subject}: {err}"
            );
        }
    }

    #[test]
    fn a_lookup_asks_the_users_own_instance() {
        let alice = Address::parse("@alice@127.0.0.2:8080").unwrap();
        assert_eq!(
            webfinger_url(&alice, Scheme::Http).as_deref(),
            Some("http://127.0.0.2:8080/.well-known/webfinger?resource=acct%3Aalice%40127.0.0.2%3A8080")
        );
        assert_eq!(
            webfinger_url(&alice, Scheme::Https).as_deref(),
            Some("https://127.0.0.2:8080/.well-known/webfinger?resource=acct%3Aalice%40127.0.0.2%3A8080")
        );
        let err = run(lookup(
            |_| async { Err::<Jrd, _>("connection refused") },
            &alice,
            Scheme::Http,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("connection refused"), "{err}");
    }

    #[test]
    fn resources_parse_or_are_refused_with_a_reason() {
        assert_eq!(
            parse_resource("acct:alice@rose.example")
                .unwrap()
                .to_string(),
            "@alice@rose.example"
        );
        assert_eq!(
            parse_resource("ACCT:alice@Rose.Example")
                .unwrap()
                .to_string(),
            "@alice@rose.example"
        );
        for bad in [
            "alice@rose.example",
            "mailto:alice@rose.example",
            "https://rose.example/alice",
            "acct:alice",
            "acct:@alice@rose.example",
            "acct:@rose.example",
            "acct:alice@",
            "acct:",
        ] {
            assert!(parse_resource(bad).is_err(), "{bad}");
        }
        let long = format!("acct:{}@rose.example", "a".repeat(MAX_RESOURCE_LEN));
        assert!(parse_resource(&long).unwrap_err().contains("too long"));
    }

    #[test]
    fn queries_need_exactly_one_resource() {
        let (resource, rels) =
            parse_query("resource=acct%3Aalice%40rose.example&rel=self&x=1").unwrap();
        assert_eq!(
            (resource.as_str(), rels),
            ("acct:alice@rose.example", vec!["self".to_owned()])
        );
        assert!(parse_query("").is_err());
        assert!(parse_query("rel=self").is_err());
        assert!(parse_query("resource=acct:a@b&resource=acct:c@b").is_err());
    }

    #[test]
    fn a_local_jrd_links_the_profile_and_lists_the_keys() {
        let profile = Profile {
            address: Address::new("Alice", "rose.example"),
            joined: 0,
            shared_files: 0,
            keys: vec![crate::profile::ProfileKey {
                fingerprint: "SHA256:abc".into(),
                public_key: "ssh-ed25519 AAAA".into(),
            }],
            bio: String::new(),
        };
        let jrd = Jrd::of(&profile, "https://rose.example");
        assert_eq!(jrd.subject, "acct:Alice@rose.example");
        assert_eq!(
            jrd.profile_url(),
            Some("https://rose.example/api/s2s/user/@Alice@rose.example")
        );
        assert_eq!(jrd.ssh_keys(), ["ssh-ed25519 AAAA"]);
        let json = serde_json::to_value(&jrd).unwrap();
        let reread: Jrd = serde_json::from_value(json).unwrap();
        assert_eq!(reread, jrd);
    }
}
