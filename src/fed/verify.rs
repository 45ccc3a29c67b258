//! Checking signed S2S requests: the warp filter [`signed`], the [`Verifier`] behind it,
//! peers' keys pinned on first contact (table `peer_keys`) and the nonce cache.
//!
//! A request is accepted when its signature (our RFC 9421 profile, see
//! [`super::signature`]) verifies with the key pinned for the domain its key id names, its
//! `created` is within the window and its nonce is new. A domain seen for the first time has
//! its instance document fetched (over https outside dev) and its key pinned. When a pinned
//! key fails, the document is fetched again once, in case the peer rotated its key; such
//! fetches are rate-limited per domain so a forger cannot make us fetch at will.
//!
//! Refusals are 401 with a short lowercase plain-text reason; 403 for a blocked signer;
//! 413 for a body over the limit; 503 when the nonce cache is full. Routes that use
//! [`signed`] need `.recover(recover)` to turn them into responses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use bytes::{BufMut, Bytes};
use futures::StreamExt;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::{Filter, Rejection, Reply};

use super::client::{unix_now, Client, FetchError};
use super::identity::{key_id_domain, key_id_for, PublicKey};
use super::replay::{NonceCache, Seen, NONCE_CACHE_MAX};
use super::signature::{self, Checked, Incoming};
use crate::store::peer_keys::{self, PeerKey};
use crate::store::Store;

/// The least time, in seconds, between two fetches of one domain's instance document made
/// because of a request (first contact, or a failed signature that may be a rotation).
pub const KEY_REFETCH_INTERVAL_SECS: i64 = 60;
/// The most domains whose last fetch time is remembered; past it, fetches for new domains
/// are refused until old entries age out.
pub const KEY_FETCHES_TRACKED_MAX: usize = 10_000;
/// The most peers' keys kept in memory in front of the `peer_keys` table.
pub const PINNED_CACHE_MAX: usize = 10_000;

/// Decides whether a domain may talk to us (the operator's block / allow_only lists).
pub type AllowFn = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A request whose signature checked out.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The signer's domain (the authority of its key id).
    pub domain: String,
    pub body: Bytes,
}

/// Why a request was refused: the status and the short plain-text reason sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
}

impl Refusal {
    pub fn unauthorized(reason: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason: reason.into(),
        }
    }

    pub fn forbidden(reason: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            reason: reason.into(),
        }
    }
}

impl warp::reject::Reject for Refusal {}

impl Reply for Refusal {
    fn into_response(self) -> warp::reply::Response {
        warp::reply::with_status(format!("{}\n", self.reason), self.status).into_response()
    }
}

/// Turns a [`Refusal`] rejection into its response; other rejections pass on.
pub async fn recover(rejection: Rejection) -> Result<Refusal, Rejection> {
    match rejection.find::<Refusal>() {
        Some(refusal) => Ok(refusal.clone()),
        None => Err(rejection),
    }
}

/// An activity's actor must belong to the instance that signed the request carrying it:
/// 403 otherwise.
pub fn require_actor_domain(signed_domain: &str, actor_domain: &str) -> Result<(), Refusal> {
    if signed_domain.eq_ignore_ascii_case(actor_domain) {
        Ok(())
    } else {
        Err(Refusal::forbidden(format!(
            "actor domain {actor_domain} is not the signer {signed_domain}"
        )))
    }
}

/// The warp filter for signed S2S routes: reads the body (at most `max_body` bytes, else
/// 413), checks the signature, extracts the signer's domain and the body.
pub fn signed(
    verifier: Verifier,
    max_body: u64,
) -> impl Filter<Extract = (Signed,), Error = Rejection> + Clone {
    let query = warp::query::raw()
        .or(warp::any().map(String::new))
        .unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(bounded_body(max_body))
        .and_then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  body: Bytes| {
                let verifier = verifier.clone();
                async move {
                    let target = if query.is_empty() {
                        path.as_str().to_owned()
                    } else {
                        format!("{}?{query}", path.as_str())
                    };
                    match verifier.verify(method.as_str(), &target, &headers, &body).await {
                        Ok(domain) => Ok(Signed { domain, body }),
                        Err(refusal) => Err(warp::reject::custom(refusal)),
                    }
                }
            },
        )
}

/// The request body, refused with 413 past `max` bytes (by its Content-Length before
/// reading, or while reading a body without one).
fn bounded_body(max: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |length, stream| read_bounded(length, stream, max))
}

async fn read_bounded<S, B>(length: Option<u64>, stream: S, max: u64) -> Result<Bytes, Rejection>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    let too_large = || {
        warp::reject::custom(Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            reason: format!("body over {max} bytes"),
        })
    };
    if length.is_some_and(|l| l > max) {
        return Err(too_large());
    }
    let mut stream = Box::pin(stream);
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            warp::reject::custom(Refusal {
                status: StatusCode::BAD_REQUEST,
                reason: "cannot read the body".into(),
            })
        })?;
        if body.len() as u64 + chunk.remaining() as u64 > max {
            return Err(too_large());
        }
        body.put(chunk);
    }
    Ok(Bytes::from(body))
}

/// Checks signed requests. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where pinned keys live.
    store: Store,
    /// Fetches instance documents on first contact and rotation.
    client: Client,
    /// Our own base URL: `@target-uri` is rebuilt from it, never from `Host`.
    base_url: String,
    /// Nonces seen within the keep time.
    nonces: Mutex<NonceCache>,
    /// Pinned keys in memory, in front of the table.
    pinned: Mutex<HashMap<String, PublicKey>>,
    /// When each domain's document was last fetched because of a request.
    fetched: Mutex<HashMap<String, i64>>,
    /// One lock per domain being fetched, so that concurrent first requests fetch once.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The operator's policy; everyone is allowed until set.
    allow: RwLock<Option<AllowFn>>,
}

impl Verifier {
    /// A verifier for the instance reached at `base_url`, pinning keys in `store` and
    /// fetching documents with `client` (whose dev mode decides http or https key ids).
    pub fn new(store: Store, client: Client, base_url: String) -> Verifier {
        Verifier {
            inner: Arc::new(Inner {
                store,
                client,
                base_url,
                nonces: Mutex::new(NonceCache::new(NONCE_CACHE_MAX)),
                pinned: Mutex::new(HashMap::new()),
                fetched: Mutex::new(HashMap::new()),
                fetching: Mutex::new(HashMap::new()),
                allow: RwLock::new(None),
            }),
        }
    }

    /// Sets the policy: a signer for which `allow` is false is refused with 403, before any
    /// key is fetched for it.
    pub fn set_allow(&self, allow: AllowFn) {
        if let Ok(mut slot) = self.inner.allow.write() {
            *slot = Some(allow);
        }
    }

    fn allowed(&self, domain: &str) -> bool {
        match self.inner.allow.read() {
            Ok(slot) => slot.as_ref().is_none_or(|allow| allow(domain)),
            Err(_) => false,
        }
    }

    /// Checks a request to `path_and_query` on this instance; returns the signer's domain.
    pub async fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<String, Refusal> {
        let target_uri = format!("{}{path_and_query}", self.inner.base_url);
        let (input, sig, digest) = (
            joined(headers, "signature-input"),
            joined(headers, "signature"),
            joined(headers, "content-digest"),
        );
        let now = unix_now();
        let checked = signature::check(
            &Incoming {
                method,
                target_uri: &target_uri,
                signature_input: input.as_deref(),
                signature: sig.as_deref(),
                content_digest: digest.as_deref(),
                body,
            },
            now,
        )
        .map_err(|e| Refusal::unauthorized(e.to_string()))?;
        let domain = key_id_domain(&checked.key_id)
            .filter(|d| {
                checked.key_id == key_id_for(&crate::config::base_url(d, self.inner.client.dev()))
            })
            .ok_or_else(|| Refusal::unauthorized("keyid is not an instance key id"))?
            .to_owned();
        if !self.allowed(&domain) {
            return Err(Refusal::forbidden(format!("{domain} is blocked here")));
        }
        self.check_key(&domain, &checked, now).await?;
        let seen = match self.inner.nonces.lock() {
            Ok(mut nonces) => nonces.check_and_insert(&format!("{domain} {}", checked.nonce), now),
            Err(_) => Seen::Full,
        };
        match seen {
            Seen::Fresh => Ok(domain),
            Seen::Replayed => Err(Refusal::unauthorized("replayed nonce")),
            Seen::Full => Err(Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                reason: "too many signed requests, retry later".into(),
            }),
        }
    }

    /// The signature must verify with the key pinned for `domain`; pins it on first contact
    /// and fetches it again once when it fails (rotation).
    async fn check_key(&self, domain: &str, checked: &Checked, now: i64) -> Result<(), Refusal> {
        let bad = || Refusal::unauthorized("bad signature");
        let pinned = self.pinned(domain).await?;
        if pinned.as_ref().is_some_and(|key| checked.verify(key)) {
            return Ok(());
        }
        // One fetch per domain at a time: a request waiting here may find the key pinned by
        // the one before it.
        let lock = self.fetch_lock(domain);
        let _held = lock.lock().await;
        let again = self.pinned(domain).await?;
        if again != pinned && again.as_ref().is_some_and(|key| checked.verify(key)) {
            return Ok(());
        }
        let result = self.refetch(domain, again.as_ref(), checked, now).await;
        drop(_held);
        self.release_fetch_lock(domain, lock);
        match result {
            Ok(true) => Ok(()),
            Ok(false) => Err(bad()),
            Err(refusal) => Err(refusal),
        }
    }

    /// Fetches `domain`'s document (if the rate limit allows), pins its key if it is new,
    /// and says whether the signature verifies with it.
    async fn refetch(
        &self,
        domain: &str,
        pinned: Option<&PublicKey>,
        checked: &Checked,
        now: i64,
    ) -> Result<bool, Refusal> {
        if !self.may_fetch(domain, now) {
            return Err(Refusal::unauthorized(match pinned {
                Some(_) => "bad signature",
                None => "unknown signer, retry later",
            }));
        }
        let (doc, key) = self.inner.client.instance_key(domain).await.map_err(|e| {
            tracing::info!(%domain, "cannot fetch a signer's key: {e}");
            Refusal::unauthorized(match e {
                FetchError::Invalid(_) => "the signer's instance document is invalid",
                _ => "cannot fetch the signer's key",
            })
        })?;
        if pinned == Some(&key) {
            return Ok(false);
        }
        if pinned.is_some() {
            tracing::info!(%domain, "a peer's key changed: pinning the new one");
        } else {
            tracing::info!(%domain, "first contact: pinning the peer's key");
        }
        let record = PeerKey {
            domain: domain.to_owned(),
            key_id: doc.key_id,
            public_key_pem: key.to_pem(),
            pinned_at: now,
        };
        self.inner
            .store
            .call(move |conn| peer_keys::pin(conn, &record))
            .await
            .map_err(|e| {
                tracing::warn!(%domain, "cannot pin a peer's key: {e}");
                Refusal::unauthorized("cannot pin the signer's key")
            })?;
        let verifies = checked.verify(&key);
        self.remember(domain, key);
        Ok(verifies)
    }

    /// The key pinned for `domain`, from memory or the table.
    async fn pinned(&self, domain: &str) -> Result<Option<PublicKey>, Refusal> {
        if let Some(key) = self.inner.pinned.lock().ok().and_then(|m| m.get(domain).cloned()) {
            return Ok(Some(key));
        }
        let d = domain.to_owned();
        let record = self
            .inner
            .store
            .call(move |conn| peer_keys::get(conn, &d))
            .await
            .map_err(|e| {
                tracing::warn!(%domain, "cannot read a peer's key: {e}");
                Refusal::unauthorized("cannot read the signer's key")
            })?;
        let Some(record) = record else {
            return Ok(None);
        };
        match PublicKey::from_pem(&record.public_key_pem) {
            Ok(key) => {
                self.remember(domain, key.clone());
                Ok(Some(key))
            }
            Err(e) => {
                tracing::warn!(%domain, "the pinned key does not parse: {e}");
                Ok(None)
            }
        }
    }

    fn remember(&self, domain: &str, key: PublicKey) {
        if let Ok(mut pinned) = self.inner.pinned.lock() {
            if pinned.len() >= PINNED_CACHE_MAX && !pinned.contains_key(domain) {
                pinned.clear();
            }
            pinned.insert(domain.to_owned(), key);
        }
    }

    /// Whether a fetch of `domain`'s document may start at `now`; records it if so.
    fn may_fetch(&self, domain: &str, now: i64) -> bool {
        let Ok(mut fetched) = self.inner.fetched.lock() else {
            return false;
        };
        let recent = |at: &i64| now.saturating_sub(*at) < KEY_REFETCH_INTERVAL_SECS;
        if fetched.get(domain).is_some_and(recent) {
            return false;
        }
        if fetched.len() >= KEY_FETCHES_TRACKED_MAX && !fetched.contains_key(domain) {
            fetched.retain(|_, at| recent(at));
            if fetched.len() >= KEY_FETCHES_TRACKED_MAX {
                return false;
            }
        }
        fetched.insert(domain.to_owned(), now);
        true
    }

    fn fetch_lock(&self, domain: &str) -> Arc<tokio::sync::Mutex<()>> {
        match self.inner.fetching.lock() {
            Ok(mut locks) => locks.entry(domain.to_owned()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Forgets `domain`'s fetch lock once no other request holds or waits for it.
    fn release_fetch_lock(&self, domain: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        if let Ok(mut locks) = self.inner.fetching.lock() {
            // Ours and the map's: nobody else holds it.
            if Arc::strong_count(&lock) <= 2 {
                locks.remove(domain);
            }
        }
    }
}

/// Every value of header `name`, joined with `", "` as RFC 9110 combines field lines.
/// `None` if absent; a value that is not visible ASCII makes it malformed, so it is dropped
/// and the check then refuses the request.
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{1}"))
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}
