//! Federation: instances that find each other, sign every request and share chat, catalogs
//! and profiles.
//!
//! - [`identity`]: the instance key, key ids, peers' public keys;
//! - [`signature`]: RFC 9421 signatures in our profile, RFC 9530 content digests;
//! - [`replay`]: the bounded nonce cache;
//! - [`client`]: the signed outgoing client and the instance document;
//! - [`verify`]: the warp filter for signed routes, keys pinned on first contact;
//! - [`activity`]: activities and their envelope, proof over the canonical JSON;
//! - [`webfinger`]: `GET /.well-known/webfinger` (RFC 7033) for local users, and the lookup of
//!   a remote user with its back-check;
//! - [`profile`]: `GET /api/s2s/user/{address}`, and fetching a remote user's profile;
//! - [`catalog`]: `GET /api/s2s/catalog`, the page of local shared files peers pull;
//! - [`files`]: `GET /api/s2s/files/{id}`, a shared file's verified encoding streamed to the
//!   downloader's home instance (the relay), within upload slots;
//! - [`gossip`]: the sans-IO gossip core (who knows whom), and its in-memory simulator;
//! - [`schedule`]: the sans-IO per-peer delivery schedule (backoff, unavailable, probes);
//! - [`target`]: the SSRF check of a peer's address after DNS, and `domain_from_url`;
//! - [`policy`]: the operator's `block` / `allow_only` lists;
//! - [`inbox`], [`outbox`], [`peers`], [`routes`]: the runtime, [`Federation`], that drives
//!   them.
//!
//! **Boundary:** the cores here are sans-IO (`gossip`, `schedule`, `activity`, `signature`,
//! `policy`); [`Federation`] is the runtime that drives them with the database, the clock
//! and the HTTP client, and `http.rs` serves the endpoints that reach it.

pub mod activity;
pub mod catalog;
pub mod client;
pub mod files;
pub mod gossip;
pub mod identity;
pub mod inbox;
pub mod outbox;
pub mod peers;
pub mod policy;
pub mod private;
pub mod profile;
pub mod replay;
pub mod routes;
pub mod schedule;
pub mod signature;
pub mod target;
pub mod verify;
pub mod webfinger;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};
use warp::http::HeaderMap;

use crate::catalog::Catalog;
use crate::chat::lock;
use crate::config::Scheme;
use crate::rate::RateTable;
use crate::store::Store;
use client::Client;
use gossip::{Gossip, PeersPage};
use identity::InstanceKey;
use policy::Policy;
use schedule::{PeerSchedule, ScheduleTiming};
use verify::Verifier;

/// The federation runtime of an instance. Cheap to clone.
#[derive(Clone)]
pub struct Federation {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub domain: String,
    pub base_url: String,
    /// How peers are reached (`Config::scheme`): every peer URL is built with it.
    pub scheme: Scheme,
    /// Dev mode: ports in domains, loopback and private peers, short timers.
    pub dev: bool,
    pub key: Arc<InstanceKey>,
    pub client: Client,
    pub verifier: Verifier,
    pub store: Store,
    pub catalog: Catalog,
    pub policy: Policy,
    pub timing: ScheduleTiming,
    pub gossip_interval: std::time::Duration,
    pub bootstrap: Vec<String>,
    pub schedules: Mutex<HashMap<String, PeerSchedule>>,
    pub last_seen_written: Mutex<HashMap<String, i64>>,
    pub workers: Mutex<HashMap<String, Arc<Notify>>>,
    pub gossip: Mutex<Gossip>,
    pub inbox_rate: Mutex<RateTable<String>>,
    /// Places for introductions being checked in the background
    /// ([`Federation::introduced_by`]).
    pub introductions: Arc<tokio::sync::Semaphore>,
    /// Turns true when the instance shuts down (forwarded by [`Federation::start`]).
    pub down: watch::Sender<bool>,
    /// Told when the outbox settles a private message (`private.rs`).
    pub on_settled: std::sync::OnceLock<private::OnSettled>,
}

impl Federation {
    pub fn new(
        config: &crate::config::Config,
        key: Arc<InstanceKey>,
        store: Store,
        catalog: Catalog,
    ) -> anyhow::Result<Federation> {
        let client = Client::new(
            key.clone(),
            config.scheme(),
            config.dev,
            config.federation.dev_trusted_root.clone(),
        )?;
        let policy = Policy::from_config(&config.federation);
        let verifier = Verifier::new(store.clone(), client.clone(), config.base_url());
        // Receiving obeys the operator's policy: a blocked signer gets 403, before any fetch.
        let allow = policy.clone();
        verifier.set_allow(Arc::new(move |domain: &str| {
            let allowed = allow.allows(domain);
            if !allowed {
                tracing::info!(%domain, "refused a request from a blocked instance");
            }
            allowed
        }));
        let gossip = Gossip::new(
            &config.domain,
            policy.clone(),
            gossip::GossipConfig::new(&config.federation, config.dev),
        );
        let (inbox_burst, inbox_refill) = config.federation.inbox_rate();
        Ok(Federation {
            inner: Arc::new(Inner {
                domain: config.domain.clone(),
                base_url: config.base_url(),
                scheme: config.scheme(),
                dev: config.dev,
                key,
                client,
                verifier,
                store,
                catalog,
                policy,
                timing: ScheduleTiming::for_mode(config.dev),
                gossip_interval: config.federation.effective_gossip_interval(config.dev),
                bootstrap: config.federation.bootstrap.clone(),
                schedules: Mutex::default(),
                last_seen_written: Mutex::default(),
                workers: Mutex::default(),
                gossip: Mutex::new(gossip),
                inbox_rate: Mutex::new(RateTable::new(
                    inbox_burst,
                    inbox_refill,
                    inbox::INBOX_RATE_TABLE,
                )),
                introductions: Arc::new(tokio::sync::Semaphore::new(MAX_INTRODUCTIONS_IN_FLIGHT)),
                down: watch::channel(false).0,
                on_settled: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn key(&self) -> &InstanceKey {
        &self.inner.key
    }

    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Starts the background work: known peers' delivery workers, the bootstrap peers, the
    /// gossip rounds, and the pruning of old activity ids. Everything stops on `shutdown`.
    pub fn start(&self, mut shutdown: watch::Receiver<bool>) {
        let fed = self.clone();
        tokio::spawn(async move {
            crate::app::shutting_down(&mut shutdown).await;
            let _ = fed.inner.down.send(true);
        });
        let fed = self.clone();
        tokio::spawn(async move {
            fed.load_peers().await;
            for url in fed.inner.bootstrap.clone() {
                match target::domain_from_url(&url, fed.inner.scheme, fed.inner.dev) {
                    Ok(domain) => {
                        let candidate = lock(&fed.inner.gossip).add_bootstrap(&domain, now_ms());
                        if let Some(candidate) = candidate {
                            fed.learn(&candidate.domain).await;
                        }
                    }
                    Err(e) => tracing::warn!(%url, "bad bootstrap peer: {e}"),
                }
            }
            fed.gossip_loop().await;
        });
    }

    /// Every tick: what the gossip core says is due (asks, bootstrap retries), and now and
    /// then the pruning of remembered activity ids.
    async fn gossip_loop(&self) {
        let mut shutdown = self.shutdown();
        let mut next_prune = std::time::Instant::now();
        // Ticks a few times per interval, so asks keep their pace within a tick's error.
        let tick = (self.inner.gossip_interval / 4).max(std::time::Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = crate::app::shutting_down(&mut shutdown) => return,
                _ = tokio::time::sleep(tick) => {}
            }
            let actions = lock(&self.inner.gossip).tick(now_ms(), &mut rand::thread_rng());
            for action in actions {
                match action {
                    gossip::Action::Ask { peer, after } => self.gossip_with(&peer, after).await,
                    gossip::Action::Verify(candidate) => {
                        self.learn(&candidate.domain).await;
                    }
                }
            }
            if std::time::Instant::now() >= next_prune {
                next_prune = std::time::Instant::now() + SEEN_PRUNE_EVERY;
                let pruned = self
                    .inner
                    .store
                    .call(|conn| crate::store::fed::prune_seen(conn, crate::chat::unix_now()))
                    .await;
                if let Err(e) = pruned {
                    tracing::warn!("cannot prune applied activity ids: {e}");
                }
            }
        }
    }

    /// Asks `peer` for its peers (those after `after`) and learns the new ones.
    async fn gossip_with(&self, peer: &str, after: Option<String>) {
        let mut url = format!("{}/api/s2s/peers", self.inner.scheme.base_url(peer));
        if let Some(after) = &after {
            url.push_str("?after=");
            url.push_str(&peers::percent_encode(after));
        }
        match self.inner.client.get_json::<PeersPage>(&url).await {
            Ok(page) => {
                let offered = page.peers.len();
                let candidates = lock(&self.inner.gossip).on_reply(peer, page, now_ms());
                tracing::debug!(%peer, offered, new = candidates.len(), "gossip: asked");
                for candidate in candidates {
                    self.learn(&candidate.domain).await;
                }
            }
            Err(e) => {
                tracing::debug!(%peer, "gossip: asking failed: {e}");
                lock(&self.inner.gossip).on_unreachable(peer);
            }
        }
    }

    /// A signed request from `domain` reached us: learn it if it is new (in the background).
    pub fn heard_from(&self, domain: &str) {
        let new = lock(&self.inner.gossip).on_asked_by(domain, now_ms());
        if let Some(candidate) = new {
            let fed = self.clone();
            tokio::spawn(async move {
                fed.learn(&candidate.domain).await;
            });
        }
    }

    /// Someone fetched our instance document with a signed GET (as an instance does when it
    /// first hears of us): check that signature in the background, fetching and pinning the
    /// signer's key as for any signed request, and learn the signer if it is new. First
    /// contact thus goes both ways, which is what makes gossip converge in a few rounds
    /// (`benches/gossip.rs`). The document is answered first, without waiting: the signer
    /// may be fetching our key while we fetch its. Unsigned fetches, and fetches while
    /// [`MAX_INTRODUCTIONS_IN_FLIGHT`] checks are running, change nothing.
    pub fn introduced_by(&self, headers: &HeaderMap) {
        if !headers.contains_key("signature-input") {
            return;
        }
        let Ok(place) = self.inner.introductions.clone().try_acquire_owned() else {
            return;
        };
        let (fed, headers) = (self.clone(), headers.clone());
        tokio::spawn(async move {
            let signer = fed
                .inner
                .verifier
                .verify("GET", identity::INSTANCE_PATH, &headers, b"")
                .await;
            drop(place);
            match signer {
                Ok(domain) => fed.heard_from(&domain),
                Err(refusal) => {
                    tracing::debug!("introduction not taken: {}", refusal.reason);
                }
            }
        });
    }

    /// The instance's shutdown flag.
    pub(crate) fn shutdown(&self) -> watch::Receiver<bool> {
        self.inner.down.subscribe()
    }

    /// What we answer to `GET /api/s2s/peers[?after=CURSOR]`.
    pub fn peers_reply(&self, after: Option<&str>) -> PeersPage {
        lock(&self.inner.gossip).reply(after, gossip::GOSSIP_REPLY_MAX)
    }
}

/// Most introductions ([`Federation::introduced_by`]) checked at once; more are ignored.
pub const MAX_INTRODUCTIONS_IN_FLIGHT: usize = 16;

/// How often applied activity ids older than their keep time are forgotten.
const SEEN_PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Milliseconds since the epoch: the clock of the sans-IO cores.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
