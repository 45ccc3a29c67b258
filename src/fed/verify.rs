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
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use futures::StreamExt;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::{Filter, Rejection, Reply};

use super::client::{unix_now, Client, FetchError};
use super::identity::{key_id_domain, key_id_for, PublicKey};
use super::replay::{NonceCache, Seen, NONCE_CACHE_MAX};
use super::signature::{self, Checked, Incoming};
use crate::rate::RateTable;
use crate::store::peer_keys::{self, PeerKey};
use crate::store::Store;

/// The least time between two fetches of one domain's instance document made because of a
/// request (first contact, or a failed signature that may be a rotation).
pub const KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// The most domains whose last fetch is remembered for [`KEY_REFETCH_INTERVAL`].
pub const KEY_FETCHES_TRACKED_MAX: usize = 10_000;
/// Instance documents fetched because of requests, all domains together, per minute: signed
/// requests naming ever new domains cannot make us fetch without end.
pub const KEY_FETCHES_PER_MINUTE: u32 = 120;
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
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
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
                    match verifier
                        .verify(method.as_str(), &target, &headers, &body)
                        .await
                    {
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
    /// Fetches of a domain's document because of a request: one per interval per domain,
    /// and [`KEY_FETCHES_PER_MINUTE`] in all.
    fetches: Mutex<(RateTable<String>, RateTable<()>)>,
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
                fetches: Mutex::new((
                    RateTable::new(1, KEY_REFETCH_INTERVAL, KEY_FETCHES_TRACKED_MAX),
                    RateTable::per_minute(KEY_FETCHES_PER_MINUTE, 1),
                )),
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
            .filter(|d| checked.key_id == key_id_for(&self.inner.client.scheme().base_url(d)))
            .ok_or_else(|| Refusal::unauthorized("keyid is not an instance key id"))?
            .to_owned();
        if !self.allowed(&domain) {
            return Err(Refusal::forbidden(format!("{domain} is blocked here")));
        }
        self.check_key(&domain, &checked, now).await?;
        let seen = match self.inner.nonces.lock() {
            Ok(mut nonces) => nonces.check_and_insert(&domain, &checked.nonce, now),
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
        if !self.may_fetch(domain) {
            return Err(Refusal::unauthorized(match pinned {
                Some(_) => "bad signature",
                None => "unknown signer, retry later",
            }));
        }
        let (doc, key) = self.inner.client.instance_key(domain).await.map_err(|e| {
            tracing::info!(%domain, "cannot fetch a signer's key: {e}");
            Refusal::unauthorized(match e {
                FetchError::Invalid(_) => "the signer's instance document is invalid",
                FetchError::Forbidden(_) => "the signer's address is not one federation reaches",
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
        self.pin(domain, doc.key_id, &key, now).await.map_err(|e| {
            tracing::warn!(%domain, "{e}");
            Refusal::unauthorized("cannot pin the signer's key")
        })?;
        let verifies = checked.verify(&key);
        self.remember(domain, key);
        Ok(verifies)
    }

    /// The key pinned for `domain`, if any (an inbox checks activity proofs with it).
    pub async fn key_of(&self, domain: &str) -> Option<PublicKey> {
        self.pinned(domain).await.ok().flatten()
    }

    /// Learns a would-be peer's key: the one pinned, or else its instance document fetched
    /// from the peer itself and its key pinned (first contact through gossip or bootstrap).
    pub async fn learn_key(&self, domain: &str) -> Result<PublicKey, String> {
        if let Some(key) = self.key_of(domain).await {
            return Ok(key);
        }
        let lock = self.fetch_lock(domain);
        let held = lock.lock().await;
        let result = match self.key_of(domain).await {
            Some(key) => Ok(key),
            None => self.fetch_and_pin(domain).await,
        };
        drop(held);
        self.release_fetch_lock(domain, lock);
        result
    }

    /// Stores `key` as the one pinned for `domain`.
    async fn pin(
        &self,
        domain: &str,
        key_id: String,
        key: &PublicKey,
        now: i64,
    ) -> Result<(), String> {
        let record = PeerKey {
            domain: domain.to_owned(),
            key_id,
            public_key_pem: key.to_pem(),
            pinned_at: now,
        };
        self.inner
            .store
            .call(move |conn| peer_keys::pin(conn, &record))
            .await
            .map_err(|e| format!("cannot pin the key of {domain}: {e}"))
    }

    async fn fetch_and_pin(&self, domain: &str) -> Result<PublicKey, String> {
        let now = unix_now();
        let (doc, key) = self
            .inner
            .client
            .instance_key(domain)
            .await
            .map_err(|e| format!("cannot fetch the instance document of {domain}: {e}"))?;
        // A fetch we chose to make still counts for the domain: a request naming it right
        // after does not fetch again.
        if let Ok(mut limits) = self.inner.fetches.lock() {
            let _ = limits.0.allow(domain.to_owned(), Instant::now());
        }
        self.pin(domain, doc.key_id, &key, now).await?;
        tracing::info!(%domain, "first contact: pinned the peer's key");
        self.remember(domain, key.clone());
        Ok(key)
    }

    /// The key pinned for `domain`, from memory or the table.
    async fn pinned(&self, domain: &str) -> Result<Option<PublicKey>, Refusal> {
        if let Some(key) = self
            .inner
            .pinned
            .lock()
            .ok()
            .and_then(|m| m.get(domain).cloned())
        {
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

    /// Whether a fetch of `domain`'s document may start now; counts it if so.
    fn may_fetch(&self, domain: &str) -> bool {
        let now = Instant::now();
        match self.inner.fetches.lock() {
            Ok(mut limits) => {
                let (per_domain, all) = &mut *limits;
                // Spend from both or neither: a fetch refused by one limit costs nothing.
                let domain = domain.to_owned();
                if !per_domain.would_allow(&domain, now) || !all.would_allow(&(), now) {
                    return false;
                }
                per_domain.allow(domain, now) && all.allow((), now)
            }
            Err(_) => false,
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use tokio::net::TcpListener;
    use warp::filters::BoxedFilter;
    use warp::reply::Response;

    use super::*;
    use crate::fed::client::InstanceDoc;
    use crate::fed::identity::InstanceKey;
    use crate::fed::signature::{sign, SignatureHeaders};
    use crate::store::StoreThread;

    /// The largest body the test route takes.
    const MAX_BODY: u64 = 1024;
    const PATH: &str = "/api/s2s/test";

    /// One instance on 127.0.0.1: it serves its own instance document (counting fetches) and
    /// a signed test route; it signs with `key` and verifies with `verifier`, so it can talk
    /// to itself as a peer would.
    struct Net {
        domain: String,
        base: String,
        key: Arc<InstanceKey>,
        fetches: Arc<AtomicUsize>,
        store: Store,
        verifier: Verifier,
        client: Client,
        _thread: StoreThread,
        _dir: tempfile::TempDir,
    }

    async fn net() -> Net {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let domain = addr.to_string();
        let base = format!("http://{domain}");
        let key = Arc::new(InstanceKey::generate(&base));
        let doc = InstanceDoc::of(&domain, &key);
        let fetches = Arc::new(AtomicUsize::new(0));
        let dir = tempfile::tempdir().unwrap();
        let (store, thread) = Store::open(&dir.path().join("db")).unwrap();
        let client = Client::new(key.clone(), crate::config::Scheme::Http, true, None).unwrap();
        let verifier = Verifier::new(store.clone(), client.clone(), base.clone());
        let count = fetches.clone();
        let instance = warp::path!("api" / "s2s" / "instance").map(move || {
            count.fetch_add(1, Ordering::SeqCst);
            warp::reply::json(&doc).into_response()
        });
        let routes = instance.or(route(verifier.clone())).unify().boxed();
        serve(listener, routes);
        Net {
            domain,
            base,
            key,
            fetches,
            store,
            verifier,
            client,
            _thread: thread,
            _dir: dir,
        }
    }

    /// `PATH` (any method, any query), signed: answers the signer's domain and body length.
    fn route(verifier: Verifier) -> BoxedFilter<(Response,)> {
        warp::path!("api" / "s2s" / "test")
            .and(signed(verifier, MAX_BODY))
            .map(|s: Signed| {
                warp::reply::json(&serde_json::json!({"domain": s.domain, "len": s.body.len()}))
                    .into_response()
            })
            .recover(recover)
            .map(Reply::into_response)
            .boxed()
    }

    fn serve(listener: TcpListener, routes: BoxedFilter<(Response,)>) {
        let service = warp::service(routes);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = TowerToHyperService::new(service.clone());
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
    }

    impl Net {
        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }

        fn url(&self) -> String {
            format!("{}{PATH}", self.base)
        }

        /// Headers for a POST of `body` to the test route, signed by `key` at `created`.
        fn sign_with(&self, key: &InstanceKey, body: &[u8], created: i64) -> SignatureHeaders {
            let nonce = signature::new_nonce();
            sign(key, "POST", &self.url(), Some(body), created, &nonce).unwrap()
        }

        /// Sends a signed POST through the route in memory (warp::test).
        async fn post(&self, headers: Option<&SignatureHeaders>, body: &[u8]) -> (u16, String) {
            let mut req = warp::test::request().method("POST").path(PATH).body(body);
            if let Some(h) = headers {
                for (name, value) in h.pairs() {
                    req = req.header(name, value);
                }
            }
            let res = req.reply(&route(self.verifier.clone())).await;
            (
                res.status().as_u16(),
                String::from_utf8_lossy(res.body()).into_owned(),
            )
        }

        async fn pinned_pem(&self) -> Option<String> {
            let domain = self.domain.clone();
            self.store
                .call(move |conn| peer_keys::get(conn, &domain))
                .await
                .unwrap()
                .map(|k| k.public_key_pem)
        }

        async fn pin(&self, key: &InstanceKey) {
            let record = PeerKey {
                domain: self.domain.clone(),
                key_id: key.key_id().to_owned(),
                public_key_pem: key.public_key_pem(),
                pinned_at: 0,
            };
            self.store
                .call(move |conn| peer_keys::pin(conn, &record))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_signed_request_is_accepted_and_the_key_pinned_on_first_contact() {
        let net = net().await;
        assert_eq!(net.pinned_pem().await, None);
        let answer: serde_json::Value = net
            .client
            .get_json(&format!("{}?after=x&limit=2", net.url()))
            .await
            .unwrap();
        assert_eq!(answer, serde_json::json!({"domain": net.domain, "len": 0}));
        assert_eq!(net.pinned_pem().await, Some(net.key.public_key_pem()));
        net.client
            .post_json(&net.url(), b"{\"a\":1}".to_vec())
            .await
            .unwrap();
        // The pinned key serves from then on: one fetch in all.
        assert_eq!(net.fetches(), 1);
    }

    #[tokio::test]
    async fn concurrent_first_requests_fetch_the_key_once() {
        let net = net().await;
        let url = net.url();
        let calls = (0..5).map(|_| net.client.get_json::<serde_json::Value>(&url));
        for answer in futures::future::join_all(calls).await {
            assert_eq!(answer.unwrap()["domain"], net.domain.as_str());
        }
        assert_eq!(net.fetches(), 1);
    }

    #[tokio::test]
    async fn a_replayed_request_is_refused() {
        let net = net().await;
        let h = net.sign_with(&net.key, b"{}", unix_now());
        assert_eq!(net.post(Some(&h), b"{}").await.0, 200);
        assert_eq!(
            net.post(Some(&h), b"{}").await,
            (401, "replayed nonce\n".into())
        );
    }

    #[tokio::test]
    async fn an_unsigned_request_is_refused() {
        let net = net().await;
        assert_eq!(
            net.post(None, b"{}").await,
            (401, "missing signature-input header\n".into())
        );
        assert_eq!(net.fetches(), 0);
    }

    #[tokio::test]
    async fn a_forged_signature_is_refused_and_refetches_the_key_at_most_once() {
        let net = net().await;
        net.pin(&net.key).await;
        let h = net.sign_with(&net.key, b"{}", unix_now());
        assert_eq!(net.post(Some(&h), b"{}").await.0, 200);
        assert_eq!(net.fetches(), 0);
        // Someone else's key, claiming our key id.
        let forger = InstanceKey::generate(&net.base);
        let forged = net.sign_with(&forger, b"{}", unix_now());
        assert_eq!(
            net.post(Some(&forged), b"{}").await,
            (401, "bad signature\n".into())
        );
        // Fetched again once (a rotation?): the same key, so still refused...
        assert_eq!(net.fetches(), 1);
        let forged = net.sign_with(&forger, b"{}", unix_now());
        assert_eq!(
            net.post(Some(&forged), b"{}").await,
            (401, "bad signature\n".into())
        );
        // ...and not fetched again within the interval.
        assert_eq!(net.fetches(), 1);
        assert_eq!(net.pinned_pem().await, Some(net.key.public_key_pem()));
    }

    #[tokio::test]
    async fn a_rotated_key_is_fetched_again_and_pinned() {
        let net = net().await;
        let old = InstanceKey::generate(&net.base);
        net.pin(&old).await;
        // The peer now serves `net.key`; a request signed with it fails the pinned key.
        let h = net.sign_with(&net.key, b"{}", unix_now());
        assert_eq!(net.post(Some(&h), b"{}").await.0, 200);
        assert_eq!(net.fetches(), 1);
        assert_eq!(net.pinned_pem().await, Some(net.key.public_key_pem()));
        // The old key no longer verifies.
        let stale = net.sign_with(&old, b"{}", unix_now());
        assert_eq!(net.post(Some(&stale), b"{}").await.0, 401);
    }

    #[tokio::test]
    async fn an_expired_or_future_request_is_refused() {
        let net = net().await;
        let now = unix_now();
        let old = net.sign_with(&net.key, b"{}", now - 2 * signature::CREATED_WINDOW_SECS);
        assert_eq!(
            net.post(Some(&old), b"{}").await,
            (401, "signature expired\n".into())
        );
        let future = net.sign_with(&net.key, b"{}", now + 2 * signature::CREATED_WINDOW_SECS);
        assert_eq!(
            net.post(Some(&future), b"{}").await,
            (401, "signature created in the future\n".into())
        );
        assert_eq!(net.fetches(), 0);
    }

    #[tokio::test]
    async fn a_tampered_body_is_refused() {
        let net = net().await;
        let h = net.sign_with(&net.key, b"{\"text\":\"hi\"}", unix_now());
        assert_eq!(
            net.post(Some(&h), b"{\"text\":\"HI\"}").await,
            (401, "content-digest does not match the body\n".into())
        );
    }

    #[tokio::test]
    async fn a_blocked_signer_is_refused_without_a_fetch() {
        let net = net().await;
        let blocked = net.domain.clone();
        net.verifier
            .set_allow(Arc::new(move |d: &str| d != blocked));
        let h = net.sign_with(&net.key, b"{}", unix_now());
        let (status, reason) = net.post(Some(&h), b"{}").await;
        assert_eq!(
            (status, reason.as_str()),
            (403, format!("{} is blocked here\n", net.domain).as_str())
        );
        assert_eq!(net.fetches(), 0);
        assert_eq!(net.pinned_pem().await, None);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let net = net().await;
        let body = vec![b'x'; MAX_BODY as usize + 1];
        let h = net.sign_with(&net.key, &body, unix_now());
        assert_eq!(
            net.post(Some(&h), &body).await,
            (413, format!("body over {MAX_BODY} bytes\n"))
        );
        // Over the real wire too, through the client.
        let err = net.client.post_json(&net.url(), body).await.unwrap_err();
        assert!(matches!(err, FetchError::Status(413, _)), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_signer_is_refused() {
        let net = net().await;
        // Nothing listens on port 1.
        let stranger = InstanceKey::generate("http://127.0.0.1:1");
        let h = net.sign_with(&stranger, b"{}", unix_now());
        assert_eq!(
            net.post(Some(&h), b"{}").await,
            (401, "cannot fetch the signer's key\n".into())
        );
    }

    #[tokio::test]
    async fn a_key_id_of_the_wrong_shape_is_refused() {
        let net = net().await;
        // https in dev mode (the client reaches peers over http), and a path of our own.
        for base in [format!("https://{}", net.domain), format!("{}/x", net.base)] {
            let key = InstanceKey::generate(&base);
            let h = net.sign_with(&key, b"{}", unix_now());
            assert_eq!(
                net.post(Some(&h), b"{}").await,
                (401, "keyid is not an instance key id\n".into()),
                "{base}"
            );
        }
        assert_eq!(net.fetches(), 0);
    }

    #[tokio::test]
    async fn key_fetches_are_limited_per_domain_and_in_all() {
        let net = net().await;
        let v = &net.verifier;
        assert!(v.may_fetch("a.example"));
        assert!(!v.may_fetch("a.example"), "one per interval per domain");
        for i in 1..KEY_FETCHES_PER_MINUTE {
            assert!(v.may_fetch(&format!("d{i}.example")), "{i}");
        }
        assert!(!v.may_fetch("one-more.example"), "all domains together");
        // Refused by the global limit, it was not counted for its domain either.
        let later = Instant::now() + KEY_REFETCH_INTERVAL;
        let limits = v.inner.fetches.lock().unwrap();
        assert!(limits
            .0
            .would_allow(&"one-more.example".to_owned(), Instant::now()));
        assert!(limits.0.would_allow(&"a.example".to_owned(), later));
    }

    #[test]
    fn an_actor_of_another_domain_is_forbidden() {
        assert_eq!(require_actor_domain("a.example", "a.example"), Ok(()));
        assert_eq!(require_actor_domain("a.example", "A.example"), Ok(()));
        let refusal = require_actor_domain("a.example", "b.example").unwrap_err();
        assert_eq!(refusal.status, StatusCode::FORBIDDEN);
        assert_eq!(
            refusal.reason,
            "actor domain b.example is not the signer a.example"
        );
    }
}
