//! Peers at run time: learning one (its instance document fetched and its key pinned first),
//! each one's delivery schedule, the catalog pulled on first contact, and what `/peers` shows.

use std::time::Duration;

use super::schedule::{PeerSchedule, PeerState};
use super::{now_ms, Federation};
use crate::catalog::CatalogPage;
use crate::chat::{lock, unix_now};
use crate::store::fed as db;

/// Catalog pages pulled from a new peer at most (each at most [`CATALOG_PAGE`] files); the
/// per-peer bound of the catalog applies on top.
const MAX_CATALOG_PAGES: usize = 1_000;
/// Files asked for per catalog page.
const CATALOG_PAGE: usize = 500;

/// A peer as `/peers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub domain: String,
    pub state: PeerState,
    /// Unix seconds of the last successful exchange.
    pub last_seen: Option<i64>,
}

impl Federation {
    /// Loads the known peers and starts their delivery workers.
    pub(super) async fn load_peers(&self) {
        let rows = match self.inner.store.call(|conn| db::peers(conn)).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!("cannot load peers: {e}");
                return;
            }
        };
        for row in rows {
            if !self.inner.policy.allows(&row.domain) {
                tracing::info!(peer = %row.domain, "peer is blocked by the configuration: forgotten");
                self.forget(&row.domain).await;
                continue;
            }
            let schedule = PeerSchedule::from_columns(
                &row.state,
                row.failures,
                row.first_failure_ms,
                row.next_attempt_ms,
            )
            .unwrap_or_default();
            lock(&self.inner.schedules).insert(row.domain.clone(), schedule);
            lock(&self.inner.gossip).add_known(&row.domain, row.last_seen.unwrap_or(0) * 1000);
            self.start_worker(&row.domain);
            if !row.catalog_pulled {
                self.spawn_catalog_pull(&row.domain);
            }
        }
    }

    /// Learns `domain` as a peer if policy allows and it proves itself: its address passes the
    /// SSRF check and its instance document names it, with a key we pin. Returns whether it
    /// is a peer now.
    pub async fn learn(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        if domain == self.inner.domain || !self.inner.policy.allows(&domain) {
            return false;
        }
        if lock(&self.inner.schedules).contains_key(&domain) {
            return true;
        }
        if let Err(e) = super::target::resolve(&domain, self.inner.scheme, self.inner.dev).await {
            tracing::info!(peer = %domain, "not a peer: {e}");
            lock(&self.inner.gossip).on_verify_failed(&domain, now_ms());
            return false;
        }
        if let Err(e) = self.inner.verifier.learn_key(&domain).await {
            tracing::info!(peer = %domain, "not a peer: {e}");
            lock(&self.inner.gossip).on_verify_failed(&domain, now_ms());
            return false;
        }
        let d = domain.clone();
        let added = match self
            .inner
            .store
            .call(move |conn| db::add_peer(conn, &d, unix_now()))
            .await
        {
            Ok(added) => added,
            Err(e) => {
                tracing::warn!("cannot store peer {domain}: {e}");
                return false;
            }
        };
        lock(&self.inner.schedules)
            .entry(domain.clone())
            .or_default();
        lock(&self.inner.gossip).on_verified(&domain, now_ms());
        if added {
            tracing::info!(peer = %domain, "new peer");
        }
        self.start_worker(&domain);
        self.spawn_catalog_pull(&domain);
        true
    }

    /// Drops a peer: its schedule, what it was owed, and its catalog.
    pub async fn forget(&self, domain: &str) {
        lock(&self.inner.schedules).remove(domain);
        let d = domain.to_owned();
        if let Err(e) = self
            .inner
            .store
            .call(move |conn| db::remove_peer(conn, &d))
            .await
        {
            tracing::warn!("cannot forget peer {domain}: {e}");
        }
        if let Err(e) = self.inner.catalog.forget_peer(domain).await {
            tracing::warn!("cannot drop the catalog of {domain}: {e}");
        }
    }

    /// How long until `peer` may be tried again; `None` when due now.
    pub(super) async fn until_due(&self, peer: &str) -> Option<Duration> {
        let schedules = lock(&self.inner.schedules);
        let s = schedules.get(peer)?;
        let now = now_ms();
        (!s.due(now)).then(|| s.until_due(now))
    }

    pub(super) async fn on_success(&self, peer: &str) {
        let changed = {
            let mut schedules = lock(&self.inner.schedules);
            let Some(s) = schedules.get_mut(peer) else {
                return;
            };
            let was = *s;
            s.on_success(now_ms());
            (was.state != PeerState::Ok || was.failures != 0).then_some(*s)
        };
        // Stored on every state change, and the time seen at most once a minute otherwise.
        self.store_schedule(peer, changed, true).await;
    }

    pub(super) async fn on_failure(&self, peer: &str) {
        let s = {
            let mut schedules = lock(&self.inner.schedules);
            let Some(s) = schedules.get_mut(peer) else {
                return;
            };
            s.on_failure(now_ms(), &self.inner.timing, &mut rand::thread_rng());
            *s
        };
        self.store_schedule(peer, Some(s), false).await;
    }

    async fn store_schedule(&self, peer: &str, schedule: Option<PeerSchedule>, seen: bool) {
        let now = unix_now();
        let seen_due = seen && {
            let mut last = lock(&self.inner.last_seen_written);
            let due = last.get(peer).is_none_or(|t| now - *t >= 60);
            if due {
                last.insert(peer.to_owned(), now);
            }
            due
        };
        if schedule.is_none() && !seen_due {
            return;
        }
        let s = schedule.unwrap_or_else(|| {
            lock(&self.inner.schedules)
                .get(peer)
                .copied()
                .unwrap_or_default()
        });
        let p = peer.to_owned();
        let result = self
            .inner
            .store
            .call(move |conn| {
                db::set_schedule(
                    conn,
                    &p,
                    s.state.as_str(),
                    i64::from(s.failures),
                    s.first_failure,
                    s.next_attempt,
                    seen.then_some(now),
                )
            })
            .await;
        if let Err(e) = result {
            tracing::warn!("cannot store the schedule of {peer}: {e}");
        }
    }

    /// The known peers with their state, for `/peers`.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        let rows = self
            .inner
            .store
            .call(|conn| db::peers(conn))
            .await
            .unwrap_or_default();
        let schedules = lock(&self.inner.schedules);
        rows.into_iter()
            .map(|r| PeerInfo {
                state: schedules
                    .get(&r.domain)
                    .map(|s| s.state)
                    .or_else(|| PeerState::parse(&r.state))
                    .unwrap_or(PeerState::Ok),
                last_seen: r.last_seen,
                domain: r.domain,
            })
            .collect()
    }

    /// Known peers (for the landing page).
    pub fn peer_count(&self) -> usize {
        lock(&self.inner.schedules).len()
    }

    /// Pulls a new peer's current shared catalog, page by page, in the background.
    fn spawn_catalog_pull(&self, domain: &str) {
        let fed = self.clone();
        let domain = domain.to_owned();
        tokio::spawn(async move {
            match fed.pull_catalog(&domain).await {
                Ok(files) => {
                    tracing::info!(peer = %domain, files, "pulled the peer's catalog");
                    let d = domain.clone();
                    let _ = fed
                        .inner
                        .store
                        .call(move |conn| db::set_catalog_pulled(conn, &d))
                        .await;
                }
                Err(e) => tracing::info!(peer = %domain, "cannot pull the catalog yet: {e}"),
            }
        });
    }

    /// Pulls every page of `domain`'s shared catalog; files it no longer shares are dropped
    /// at the end. Returns the files received.
    async fn pull_catalog(&self, domain: &str) -> Result<usize, String> {
        let base = self.inner.scheme.base_url(domain);
        let catalog = &self.inner.catalog;
        let pull = catalog
            .begin_catalog_pull(domain)
            .await
            .map_err(|e| e.to_string())?;
        let mut after: Option<String> = None;
        let mut total = 0;
        for _ in 0..MAX_CATALOG_PAGES {
            let mut url = format!("{base}/api/s2s/catalog?limit={CATALOG_PAGE}");
            if let Some(cursor) = &after {
                url.push_str("&after=");
                url.push_str(&percent_encode(cursor));
            }
            let page: CatalogPage = self
                .inner
                .client
                .get_json(&url)
                .await
                .map_err(|e| e.to_string())?;
            total += page.files.len();
            let next = page.next.map(|c| c.to_string());
            catalog
                .apply_catalog_page(domain, page)
                .await
                .map_err(|e| e.to_string())?;
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        catalog
            .finish_catalog_pull(domain, pull)
            .await
            .map_err(|e| e.to_string())?;
        Ok(total)
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
