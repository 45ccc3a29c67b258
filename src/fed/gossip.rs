//! The gossip core, sans-IO: who this instance knows, whom to ask next, what to answer.
//!
//! Time (milliseconds since the Unix epoch) and randomness are passed in; the core never
//! sends a request, resolves a name or reads a clock. The runtime around it does:
//!
//! ```text
//! every tick:   for action in gossip.tick(now, rng):
//!                 Ask { peer, after } -> signed GET {peer}/api/s2s/peers[?after=AFTER]
//!                                   ok:  for c in gossip.on_reply(peer, page, now): verify(c)
//!                                   err: gossip.on_unreachable(peer)
//!                 Verify(c)      -> verify(c)
//! verify(c):    SSRF check, signed GET {c}/api/s2s/instance, key checked
//!                                   ok:  gossip.on_verified(c, now)   err: gossip.on_verify_failed(c, now)
//! GET /api/s2s/peers signed by D:   gossip.on_asked_by(D, now).map(verify);
//!                                   answer gossip.reply(after, GOSSIP_REPLY_MAX) as JSON
//! GET /api/s2s/instance signed by D: answer, then (in the background, D's signature
//!                                   checked) gossip.on_asked_by(D, now).map(verify)
//! ```
//!
//! **Invariant:** a domain enters the peer table only through [`Gossip::on_verified`] (or
//! [`Gossip::add_known`] for peers verified before a restart): a name heard in gossip is a
//! [`Candidate`] until its instance document was fetched and its key checked. Self and
//! domains the [`Policy`] refuses are never candidates and never peers.
//!
//! Convergence: an asked instance learns the asker (the signature names it, so pull gossip
//! also pushes), and an instance whose document is fetched learns the fetcher: first
//! contact goes both ways. Every other ask goes to the newest peer never asked (a long
//! jump: it knows most of what we do not), the others to a random peer. The peer list is paged like a change log: peers in the
//! order they were verified, and the asker keeps, per peer, a cursor (`after`) past what it
//! already read, so an answer never repeats a name the asker had from that peer and a
//! capped reply still carries the whole table over a few asks. `benches/gossip.rs` runs the
//! simulator ([`sim`]) on this core for N = 16 … 1,024.

pub mod sim;

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::{valid_domain, FederationConfig};
use crate::fed::policy::Policy;

/// Most peers one instance keeps: bounds memory, the `/peers` listing and delivery fan-out.
pub const MAX_PEERS: usize = 4096;
/// Most domains in one answer to `GET /api/s2s/peers`, and most read from one such answer
/// (the rest of a longer list is ignored).
pub const GOSSIP_REPLY_MAX: usize = 1024;
/// Longest paging cursor kept from a peer's reply (ours are decimal numbers); a longer one
/// is dropped and the next ask starts from the beginning.
pub const MAX_CURSOR_LEN: usize = 32;
/// Most candidates waiting for verification at once: one reply or a burst of askers cannot
/// queue more instance-document fetches than this.
pub const MAX_PENDING: usize = 512;
/// Most failed candidates remembered (so they are not fetched again before the retry time);
/// past it the one whose retry comes first is forgotten.
pub const MAX_FAILED: usize = 4096;
/// A failed candidate is not tried again for this long (production).
pub const VERIFY_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// A failed candidate is not tried again for this long (dev mode).
pub const DEV_VERIFY_RETRY_AFTER: Duration = Duration::from_secs(2);
/// A candidate handed out for verification whose outcome never came back is forgotten after
/// this many gossip intervals (the runtime's task died, or timed out without saying so).
pub const PENDING_TIMEOUT_INTERVALS: u32 = 5;

/// Timings and mode of the gossip core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipConfig {
    /// Time between two asks (and between two attempts at an unverified bootstrap peer).
    pub interval: Duration,
    /// How long a candidate that failed verification is left alone.
    pub verify_retry: Duration,
    /// Dev mode: domains may carry a port.
    pub dev: bool,
}

impl GossipConfig {
    /// The config's `gossip_interval_secs` (at most 1 s in dev mode) and the retry timing of
    /// the mode.
    pub fn new(federation: &FederationConfig, dev: bool) -> GossipConfig {
        GossipConfig {
            interval: federation.effective_gossip_interval(dev),
            verify_retry: if dev {
                DEV_VERIFY_RETRY_AFTER
            } else {
                VERIFY_RETRY_AFTER
            },
            dev,
        }
    }
}

/// A domain heard of but not yet trusted: fetch its instance document, check its key, then
/// call [`Gossip::on_verified`] or [`Gossip::on_verify_failed`] with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Candidate {
    pub domain: String,
}

/// What the runtime should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask this peer for its peers: signed `GET /api/s2s/peers`, with `?after=AFTER` when
    /// `after` is set (the `next` of its previous answer).
    Ask { peer: String, after: Option<String> },
    /// Verify this candidate (a bootstrap peer not reached yet).
    Verify(Candidate),
}

/// One answer to `GET /api/s2s/peers`: `{"peers": ["domain", ..], "next": "CURSOR"}`.
/// `next` is opaque to the asker, who sends it back as `?after=` next time to get only the
/// peers verified since; absent when the answer is empty and there was no cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersPage {
    pub peers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// What the core knows of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// False after [`Gossip::on_unreachable`], until the peer is heard from again. Only
    /// reachable peers are given away in replies, and asked while any is.
    pub reachable: bool,
    /// Last time the peer answered or asked (ms since the epoch).
    pub last_seen: i64,
    /// Order of verification, higher is newer: the position in the paged peer list.
    seq: u64,
    /// When we last asked it (`None`: never); the next ask goes to the oldest.
    asked_at: Option<i64>,
    /// The `next` of its last answer: where our next ask continues.
    cursor: Option<String>,
}

/// One instance's gossip state.
#[derive(Debug, Clone)]
pub struct Gossip {
    /// Our own domain, never a peer.
    self_domain: String,
    config: GossipConfig,
    policy: Policy,
    /// Verified peers (at most [`MAX_PEERS`]); a BTreeMap so runs with one seed repeat.
    peers: BTreeMap<String, PeerInfo>,
    /// Candidates handed out for verification, and when.
    pending: BTreeMap<String, i64>,
    /// Candidates that failed verification, and when they may be tried again.
    failed: BTreeMap<String, i64>,
    /// Bootstrap peers and when to try each again while it is not a peer.
    bootstrap: BTreeMap<String, i64>,
    /// When the next ask is due.
    next_ask: i64,
    /// Sequence number of the next verified peer.
    next_seq: u64,
    /// Asks made: they alternate between the newest unasked peer and a random one.
    asks: u64,
}

impl Gossip {
    pub fn new(self_domain: &str, policy: Policy, config: GossipConfig) -> Gossip {
        Gossip {
            self_domain: normalize(self_domain),
            config,
            policy,
            peers: BTreeMap::new(),
            pending: BTreeMap::new(),
            failed: BTreeMap::new(),
            bootstrap: BTreeMap::new(),
            next_ask: i64::MIN,
            next_seq: 0,
            asks: 0,
        }
    }

    /// A configured bootstrap peer (a domain, see `target::domain_from_url`): verified now,
    /// and again every interval until it is a peer. `None` for self, a refused domain or one
    /// already known.
    pub fn add_bootstrap(&mut self, domain: &str, now: i64) -> Option<Candidate> {
        let domain = self.acceptable(domain)?;
        if self.peers.contains_key(&domain) {
            return None;
        }
        self.bootstrap.insert(
            domain.clone(),
            now.saturating_add(millis(self.config.interval)),
        );
        self.failed.remove(&domain);
        self.pending.remove(&domain);
        self.propose(domain, now).ok().flatten()
    }

    /// A peer verified before (the runtime's `peers` table, at start): known at once, as
    /// reachable. Returns whether it was added.
    pub fn add_known(&mut self, domain: &str, last_seen: i64) -> bool {
        match self.acceptable(domain) {
            Some(domain) => self.insert(domain, last_seen),
            None => false,
        }
    }

    /// Called every so often (at least once per interval): the asks and bootstrap
    /// verifications due at `now`.
    pub fn tick(&mut self, now: i64, rng: &mut impl Rng) -> Vec<Action> {
        let timeout = millis(self.config.interval).saturating_mul(PENDING_TIMEOUT_INTERVALS.into());
        self.pending
            .retain(|_, since| now.saturating_sub(*since) < timeout);
        self.failed.retain(|_, retry_at| *retry_at > now);
        let mut actions = Vec::new();
        let due: Vec<String> = self
            .bootstrap
            .iter()
            .filter(|(d, at)| {
                **at <= now && !self.peers.contains_key(*d) && !self.pending.contains_key(*d)
            })
            .map(|(d, _)| d.clone())
            .collect();
        for domain in due {
            self.bootstrap.insert(
                domain.clone(),
                now.saturating_add(millis(self.config.interval)),
            );
            if let Ok(Some(candidate)) = self.propose(domain, now) {
                actions.push(Action::Verify(candidate));
            }
        }
        if now >= self.next_ask {
            if let Some(peer) = self.pick(rng) {
                self.next_ask = now.saturating_add(millis(self.config.interval));
                let info = self.peers.get_mut(&peer);
                let after = info.and_then(|p| {
                    p.asked_at = Some(now);
                    p.cursor.clone()
                });
                actions.push(Action::Ask { peer, after });
            }
        }
        actions
    }

    /// `from` answered an ask with `page`: returns the new domains to verify (at most
    /// [`GOSSIP_REPLY_MAX`] read; self, refused, known, pending and recently failed domains,
    /// duplicates and malformed names skipped), and keeps its cursor for the next ask,
    /// unless a name was left out for lack of room (then the page is asked for again).
    pub fn on_reply(&mut self, from: &str, page: PeersPage, now: i64) -> Vec<Candidate> {
        self.on_reached(from, now);
        let mut candidates = Vec::new();
        let mut left_out = false;
        for domain in page.peers.into_iter().take(GOSSIP_REPLY_MAX) {
            if let Some(domain) = self.acceptable(&domain) {
                match self.propose(domain, now) {
                    Ok(Some(candidate)) => candidates.push(candidate),
                    Ok(None) => {}
                    Err(NoRoom) => left_out = true,
                }
            }
        }
        if let Some(peer) = self.peers.get_mut(&normalize(from)) {
            if !left_out {
                peer.cursor = page.next.filter(|c| c.len() <= MAX_CURSOR_LEN);
            }
        }
        candidates
    }

    /// `asker` (named by its request's signature) asked us for our peers: a candidate when we
    /// did not know it. Pull gossip thus also pushes the asker's name, which is what lets a
    /// new instance be found by the rest.
    pub fn on_asked_by(&mut self, asker: &str, now: i64) -> Option<Candidate> {
        let domain = self.acceptable(asker)?;
        if self.peers.contains_key(&domain) {
            self.on_reached(&domain, now);
            return None;
        }
        self.propose(domain, now).ok().flatten()
    }

    /// The candidate's instance document was fetched and its key checked: it is a peer now
    /// (unless the table is full of reachable peers). Returns whether it was added.
    pub fn on_verified(&mut self, domain: &str, now: i64) -> bool {
        let Some(domain) = self.acceptable(domain) else {
            return false;
        };
        self.pending.remove(&domain);
        self.failed.remove(&domain);
        self.insert(domain, now)
    }

    /// The candidate could not be verified: not tried again before `verify_retry` (a
    /// bootstrap peer: the next interval).
    pub fn on_verify_failed(&mut self, domain: &str, now: i64) {
        let domain = normalize(domain);
        self.pending.remove(&domain);
        if self.bootstrap.contains_key(&domain) {
            return;
        }
        if self.failed.len() >= MAX_FAILED {
            if let Some(first) = self
                .failed
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(d, _)| d.clone())
            {
                self.failed.remove(&first);
            }
        }
        self.failed
            .insert(domain, now.saturating_add(millis(self.config.verify_retry)));
    }

    /// A request to the peer failed (transport error, or its schedule says unavailable):
    /// left out of replies, and asked only when no peer is reachable.
    pub fn on_unreachable(&mut self, domain: &str) {
        if let Some(peer) = self.peers.get_mut(&normalize(domain)) {
            peer.reachable = false;
        }
    }

    /// The peer answered or asked (any signed exchange): reachable again.
    pub fn on_reached(&mut self, domain: &str, now: i64) {
        if let Some(peer) = self.peers.get_mut(&normalize(domain)) {
            peer.reachable = true;
            peer.last_seen = peer.last_seen.max(now);
        }
    }

    /// What to answer `GET /api/s2s/peers?after=AFTER`: at most `limit` (capped at
    /// [`GOSSIP_REPLY_MAX`]) reachable peers verified after the cursor, oldest first, and the
    /// cursor past them. A cursor we cannot read, or one ahead of ours (we restarted with a
    /// clock set back), starts from the beginning.
    pub fn reply(&self, after: Option<&str>, limit: usize) -> PeersPage {
        let limit = limit.min(GOSSIP_REPLY_MAX);
        let after = after
            .and_then(|a| a.parse::<u64>().ok())
            .filter(|a| *a < self.next_seq);
        let mut newer: Vec<(&String, &PeerInfo)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.reachable && after.is_none_or(|a| p.seq > a))
            .collect();
        newer.sort_unstable_by_key(|(_, p)| p.seq);
        newer.truncate(limit);
        let next = newer.last().map(|(_, p)| p.seq).or(after);
        PeersPage {
            peers: newer.into_iter().map(|(d, _)| d.clone()).collect(),
            next: next.map(|n| n.to_string()),
        }
    }

    /// The peer table, in domain order.
    pub fn peers(&self) -> impl Iterator<Item = (&str, &PeerInfo)> {
        self.peers.iter().map(|(d, p)| (d.as_str(), p))
    }

    /// Whether `domain` is a (verified) peer.
    pub fn knows(&self, domain: &str) -> bool {
        self.peers.contains_key(&normalize(domain))
    }

    /// The number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Whether `domain` may ever be a peer: well formed, not ours, allowed by the policy.
    pub fn allows(&self, domain: &str) -> bool {
        self.acceptable(domain).is_some()
    }

    /// A new policy (the operator changed `block` / `allow_only`): peers it refuses are
    /// dropped and returned.
    pub fn set_policy(&mut self, policy: Policy) -> Vec<String> {
        self.policy = policy;
        let refused: Vec<String> = self
            .peers
            .keys()
            .filter(|d| !self.policy.allows(d))
            .cloned()
            .collect();
        for domain in &refused {
            self.peers.remove(domain);
        }
        self.pending.retain(|d, _| self.policy.allows(d));
        self.bootstrap.retain(|d, _| self.policy.allows(d));
        refused
    }

    /// The domain, normalized, when it is well formed, not ours and allowed by the policy.
    fn acceptable(&self, domain: &str) -> Option<String> {
        let domain = normalize(domain);
        let ok = domain != self.self_domain
            && valid_domain(&domain, self.config.dev)
            && !domain.ends_with(":0")
            && self.policy.allows(&domain);
        ok.then_some(domain)
    }

    /// A candidate for an acceptable domain unless it is known, pending or failed recently
    /// (`Ok(None)`), or there is no room for it (`Err`).
    fn propose(&mut self, domain: String, now: i64) -> Result<Option<Candidate>, NoRoom> {
        let busy = self.peers.contains_key(&domain)
            || self.pending.contains_key(&domain)
            || self.failed.get(&domain).is_some_and(|at| *at > now);
        if busy {
            return Ok(None);
        }
        let room = self.pending.len() < MAX_PENDING
            && (self.peers.len() < MAX_PEERS || self.peers.values().any(|p| !p.reachable));
        if !room {
            return Err(NoRoom);
        }
        self.pending.insert(domain.clone(), now);
        Ok(Some(Candidate { domain }))
    }

    /// Adds a verified peer; when the table is full, it takes the place of the unreachable
    /// peer seen longest ago, and is dropped if every peer is reachable.
    fn insert(&mut self, domain: String, now: i64) -> bool {
        if let Some(peer) = self.peers.get_mut(&domain) {
            peer.reachable = true;
            peer.last_seen = peer.last_seen.max(now);
            return true;
        }
        if self.peers.len() >= MAX_PEERS {
            let stale = self
                .peers
                .iter()
                .filter(|(_, p)| !p.reachable)
                .min_by_key(|(_, p)| p.last_seen)
                .map(|(d, _)| d.clone());
            match stale {
                Some(stale) => self.peers.remove(&stale),
                None => return false,
            };
        }
        // Sequence numbers start from the clock (4,096 a millisecond), so after a restart
        // they are above every cursor handed out before it.
        let from_clock = u64::try_from(now).unwrap_or(0).saturating_mul(4096);
        let seq = self.next_seq.max(from_clock);
        self.next_seq = seq.saturating_add(1);
        self.peers.insert(
            domain,
            PeerInfo {
                reachable: true,
                last_seen: now,
                seq,
                asked_at: None,
                cursor: None,
            },
        );
        true
    }

    /// Every other ask, the reachable peer never asked that was verified last (it knows
    /// most of what we do not: a long jump); otherwise, and when every peer was asked, a
    /// random reachable one. When none is reachable, any peer the same way.
    fn pick(&mut self, rng: &mut impl Rng) -> Option<String> {
        self.asks = self.asks.wrapping_add(1);
        let any_reachable = self.peers.values().any(|p| p.reachable);
        let pool = || {
            self.peers
                .iter()
                .filter(move |(_, p)| p.reachable || !any_reachable)
        };
        if self.asks % 2 == 1 {
            let newest = pool()
                .filter(|(_, p)| p.asked_at.is_none())
                .max_by_key(|(_, p)| p.seq);
            if let Some((domain, _)) = newest {
                return Some(domain.clone());
            }
        }
        let count = pool().count();
        if count == 0 {
            return None;
        }
        let n = rng.gen_range(0..count);
        pool().nth(n).map(|(d, _)| d.clone())
    }
}

/// No room for another candidate (pending verifications, or a table full of reachable
/// peers).
struct NoRoom;

/// Lowercase, without surrounding blanks or a trailing dot.
fn normalize(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::sim::{Network, Topology};
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const INTERVAL: i64 = 60_000;

    fn config() -> GossipConfig {
        GossipConfig::new(&FederationConfig::default(), false)
    }

    fn gossip() -> Gossip {
        Gossip::new("self.example", Policy::default(), config())
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(1)
    }

    fn names(candidates: &[Candidate]) -> Vec<&str> {
        candidates.iter().map(|c| c.domain.as_str()).collect()
    }

    fn list(domains: &[&str]) -> PeersPage {
        page(domains.iter().map(|d| d.to_string()).collect())
    }

    fn page(peers: Vec<String>) -> PeersPage {
        PeersPage { peers, next: None }
    }

    #[test]
    fn a_learned_domain_is_a_candidate_until_verified() {
        let mut g = gossip();
        g.add_known("a.example", 0);
        let candidates = g.on_reply("a.example", list(&["b.example"]), 1);
        assert_eq!(names(&candidates), ["b.example"]);
        assert!(!g.knows("b.example"));
        // Heard again while pending: not a second candidate.
        assert!(g.on_reply("a.example", list(&["b.example"]), 2).is_empty());
        assert!(g.on_verified("b.example", 3));
        assert!(g.knows("b.example"));
        assert!(g.on_reply("a.example", list(&["b.example"]), 4).is_empty());
    }

    #[test]
    fn self_blocked_malformed_and_duplicate_names_are_never_candidates() {
        let policy = Policy::new(&["evil.example".into()], None);
        let mut g = Gossip::new("Self.Example", policy, config());
        g.add_known("a.example", 0);
        let reply = list(&[
            "self.example",
            "SELF.example.",
            "evil.example",
            "not a domain",
            "",
            "127.0.0.2:8080",
            "new.example",
            "NEW.example",
        ]);
        assert_eq!(names(&g.on_reply("a.example", reply, 1)), ["new.example"]);
        assert_eq!(g.on_asked_by("evil.example", 1), None);
        assert_eq!(g.on_asked_by("self.example", 1), None);
        assert!(!g.on_verified("evil.example", 2));
        assert!(!g.on_verified("self.example", 2));
        assert!(!g.add_known("evil.example", 2));
        assert_eq!(g.add_bootstrap("evil.example", 2), None);
        assert!(g.peers().all(|(d, _)| d == "a.example"));
    }

    #[test]
    fn a_reply_longer_than_the_cap_is_read_only_up_to_the_cap() {
        let mut g = gossip();
        g.add_known("a.example", 0);
        let mut long = vec!["a.example".to_string(); GOSSIP_REPLY_MAX - 1];
        long.extend(["inside.example".into(), "beyond.example".into()]);
        let candidates = g.on_reply("a.example", page(long), 1);
        assert_eq!(names(&candidates), ["inside.example"]);
    }

    #[test]
    fn pending_candidates_are_bounded() {
        let mut g = gossip();
        g.add_known("a.example", 0);
        let mut total = 0;
        for batch in 0..10 {
            let reply: Vec<String> = (0..GOSSIP_REPLY_MAX)
                .map(|i| format!("p{batch}-{i}.example"))
                .collect();
            let answer = PeersPage {
                peers: reply,
                next: Some("9".into()),
            };
            total += g.on_reply("a.example", answer, 1).len();
        }
        assert_eq!(total, MAX_PENDING);
        assert_eq!(g.on_asked_by("asker.example", 1), None);
        // The page that did not fit is asked for again: the cursor did not move.
        let (_, a) = g.peers().next().unwrap();
        assert_eq!(a.cursor, None);
        // A verification outcome frees a place.
        g.on_verify_failed("p0-0.example", 2);
        assert!(g.on_asked_by("asker.example", 2).is_some());
    }

    #[test]
    fn a_failed_candidate_is_not_tried_again_before_the_retry_time() {
        let mut g = gossip();
        g.add_known("a.example", 0);
        assert_eq!(
            g.on_reply("a.example", list(&["ghost.example"]), 0).len(),
            1
        );
        g.on_verify_failed("ghost.example", 0);
        let retry = millis(VERIFY_RETRY_AFTER);
        assert!(g
            .on_reply("a.example", list(&["ghost.example"]), retry - 1)
            .is_empty());
        assert_eq!(
            g.on_reply("a.example", list(&["ghost.example"]), retry)
                .len(),
            1
        );
        assert!(!g.knows("ghost.example"));
    }

    #[test]
    fn failed_candidates_remembered_are_bounded() {
        let mut g = gossip();
        for i in 0..MAX_FAILED + 10 {
            g.on_verify_failed(&format!("f{i}.example"), i as i64);
        }
        assert_eq!(g.failed.len(), MAX_FAILED);
        // The earliest retries were forgotten first.
        assert!(!g.failed.contains_key("f0.example"));
        assert!(g
            .failed
            .contains_key(&format!("f{}.example", MAX_FAILED + 9)));
    }

    #[test]
    fn the_peer_table_is_bounded_and_an_unreachable_peer_makes_room() {
        let mut g = gossip();
        for i in 0..MAX_PEERS {
            assert!(g.add_known(&format!("p{i}.example"), 0));
        }
        assert!(!g.add_known("extra.example", 1));
        assert_eq!(g.on_asked_by("extra.example", 1), None);
        assert_eq!(g.len(), MAX_PEERS);
        g.on_unreachable("p7.example");
        let candidate = g.on_asked_by("extra.example", 2).unwrap();
        assert!(g.on_verified(&candidate.domain, 3));
        assert_eq!(g.len(), MAX_PEERS);
        assert!(g.knows("extra.example") && !g.knows("p7.example"));
    }

    #[test]
    fn our_reply_from_a_table_larger_than_the_cap_is_capped_and_pages_on() {
        let mut g = gossip();
        let n = GOSSIP_REPLY_MAX + 10;
        assert!(n <= MAX_PEERS);
        for i in 0..n {
            assert!(g.add_known(&format!("p{i:05}.example"), i as i64));
        }
        // Whatever limit is asked for, one page holds at most the cap.
        let first = g.reply(None, usize::MAX);
        assert_eq!(first.peers.len(), GOSSIP_REPLY_MAX);
        assert_eq!(first.peers[0], "p00000.example");
        // The rest comes on the next page, none repeated.
        let second = g.reply(first.next.as_deref(), usize::MAX);
        assert_eq!(second.peers.len(), 10);
        assert!(second.peers.iter().all(|p| !first.peers.contains(p)));
    }

    #[test]
    fn tick_asks_one_random_reachable_peer_each_interval() {
        let (mut g, mut rng) = (gossip(), rng());
        assert!(g.tick(0, &mut rng).is_empty(), "no peer, nothing to ask");
        g.add_known("a.example", 0);
        g.add_known("b.example", 0);
        g.on_unreachable("b.example");
        let mut asked = Vec::new();
        let mut now = 1;
        for _ in 0..20 {
            let actions = g.tick(now, &mut rng);
            assert_eq!(actions.len(), 1);
            assert!(
                g.tick(now + INTERVAL - 1, &mut rng).is_empty(),
                "one ask per interval"
            );
            asked.extend(actions);
            now += INTERVAL;
        }
        let a = |after: Option<&str>| Action::Ask {
            peer: "a.example".into(),
            after: after.map(str::to_owned),
        };
        assert!(asked.iter().all(|x| *x == a(None)), "{asked:?}");
        // With no reachable peer, an unreachable one is asked rather than none.
        g.on_unreachable("a.example");
        assert_eq!(g.tick(now, &mut rng).len(), 1);
    }

    #[test]
    fn an_asker_becomes_a_candidate_and_a_known_asker_is_reachable_again() {
        let mut g = gossip();
        assert_eq!(
            g.on_asked_by("new.example", 0),
            Some(Candidate {
                domain: "new.example".into()
            })
        );
        g.add_known("old.example", 0);
        g.on_unreachable("old.example");
        assert_eq!(g.on_asked_by("old.example", 5), None);
        let (_, info) = g.peers().find(|(d, _)| *d == "old.example").unwrap();
        assert!(info.reachable);
        assert_eq!(info.last_seen, 5);
    }

    #[test]
    fn a_bootstrap_peer_is_verified_again_every_interval_until_it_answers() {
        let (mut g, mut rng) = (gossip(), rng());
        let first = g.add_bootstrap("boot.example", 0).unwrap();
        g.on_verify_failed(&first.domain, 10);
        assert!(g.tick(10, &mut rng).is_empty());
        let actions = g.tick(INTERVAL, &mut rng);
        assert_eq!(actions, [Action::Verify(first.clone())]);
        assert!(g.tick(INTERVAL + 1, &mut rng).is_empty(), "still pending");
        g.on_verified("boot.example", INTERVAL + 2);
        let ask = Action::Ask {
            peer: "boot.example".into(),
            after: None,
        };
        assert_eq!(g.tick(2 * INTERVAL + 2, &mut rng), [ask]);
    }

    #[test]
    fn a_lost_verification_is_forgotten_after_a_few_intervals() {
        let (mut g, mut rng) = (gossip(), rng());
        g.add_known("a.example", 0);
        assert_eq!(g.on_reply("a.example", list(&["slow.example"]), 0).len(), 1);
        g.tick(INTERVAL * i64::from(PENDING_TIMEOUT_INTERVALS), &mut rng);
        assert_eq!(
            g.on_reply("a.example", list(&["slow.example"]), INTERVAL * 6)
                .len(),
            1
        );
    }

    #[test]
    fn a_reply_holds_only_reachable_peers_in_pages_that_never_repeat() {
        let mut g = gossip();
        for i in 0..10 {
            g.add_known(&format!("p{i}.example"), i);
        }
        g.on_unreachable("p3.example");
        let all = g.reply(None, GOSSIP_REPLY_MAX);
        assert_eq!(all.peers.len(), 9);
        assert!(!all.peers.contains(&"p3.example".to_string()));
        let first = g.reply(None, 4);
        assert_eq!(
            first.peers,
            ["p0.example", "p1.example", "p2.example", "p4.example"]
        );
        let second = g.reply(first.next.as_deref(), 4);
        assert_eq!(
            second.peers,
            ["p5.example", "p6.example", "p7.example", "p8.example"]
        );
        let third = g.reply(second.next.as_deref(), 4);
        assert_eq!(third.peers, ["p9.example"]);
        // Nothing new: an empty page, the same cursor.
        let fourth = g.reply(third.next.as_deref(), 4);
        assert!(fourth.peers.is_empty());
        assert_eq!(fourth.next, third.next);
        // A peer verified later is on the next page.
        g.on_verified("p10.example", 100);
        assert_eq!(g.reply(third.next.as_deref(), 4).peers, ["p10.example"]);
        assert!(g.reply(None, usize::MAX).peers.len() <= GOSSIP_REPLY_MAX);
    }

    #[test]
    fn a_cursor_we_cannot_read_or_from_the_future_starts_from_the_beginning() {
        let mut g = gossip();
        g.add_known("a.example", 5);
        for bad in [
            "junk",
            "-1",
            "99999999999999999999999",
            "18446744073709551615",
        ] {
            assert_eq!(g.reply(Some(bad), 10).peers, ["a.example"], "{bad}");
        }
    }

    #[test]
    fn the_asker_sends_back_the_cursor_of_the_last_answer() {
        let (mut g, mut rng) = (gossip(), rng());
        g.add_known("a.example", 0);
        let answer = PeersPage {
            peers: vec![],
            next: Some("77".into()),
        };
        g.on_reply("a.example", answer, 1);
        let asks = g.tick(1, &mut rng);
        assert_eq!(
            asks,
            [Action::Ask {
                peer: "a.example".into(),
                after: Some("77".into())
            }]
        );
        // A cursor longer than we keep is dropped.
        let long = PeersPage {
            peers: vec![],
            next: Some("7".repeat(MAX_CURSOR_LEN + 1)),
        };
        g.on_reply("a.example", long, 2);
        let asks = g.tick(1 + INTERVAL, &mut rng);
        assert_eq!(
            asks,
            [Action::Ask {
                peer: "a.example".into(),
                after: None
            }]
        );
    }

    #[test]
    fn a_new_policy_drops_the_peers_it_refuses() {
        let mut g = gossip();
        g.add_known("a.example", 0);
        g.add_known("x.evil.example", 0);
        let dropped = g.set_policy(Policy::new(&["*.evil.example".into()], None));
        assert_eq!(dropped, ["x.evil.example"]);
        assert!(g.knows("a.example") && !g.knows("x.evil.example"));
    }

    #[test]
    fn sixty_four_instances_learn_each_other_within_two_log2_n_plus_two_rounds() {
        for topology in [Topology::RandomEarlier, Topology::Chain] {
            for seed in 0..3 {
                let mut network = Network::new(64, topology, seed);
                let rounds = network.run_until_converged(100);
                assert!(
                    rounds.is_some_and(|r| r <= 2 * 6 + 2),
                    "{topology:?} seed {seed}: {rounds:?} rounds"
                );
                for i in 0..64 {
                    assert_eq!(network.node(i).len(), 63);
                    assert!(!network.node(i).knows(&Network::domain(i)));
                }
            }
        }
    }

    #[test]
    fn in_the_simulation_blocked_instances_self_and_ghosts_are_never_peers() {
        // Instances 0..8 block instance 5; instance 2 allows only 0..32 (i1.sim .. i3x.sim
        // patterns would be clumsy, so: blocks everything matching *.sim but those).
        let allow: Vec<String> = (0..32).map(Network::domain).collect();
        let mut network = Network::with_policies(64, Topology::RandomEarlier, 9, |i| match i {
            0..=1 | 3..=7 => Policy::new(&[Network::domain(5)], None),
            2 => Policy::new(&[], Some(&allow)),
            _ => Policy::default(),
        });
        // A liar knows a domain that does not exist and gossips it.
        network.node_mut(40).add_known("ghost.sim", 0);
        let mut every_round_ok = true;
        for _ in 0..40 {
            network.round();
            for i in 0..64 {
                let node = network.node(i);
                every_round_ok &= !node.knows(&Network::domain(i));
                every_round_ok &= i > 7 || i == 2 || !node.knows(&Network::domain(5));
                every_round_ok &= i != 2 || node.peers().all(|(d, _)| allow.iter().any(|a| a == d));
                every_round_ok &= i == 40 || !node.knows("ghost.sim");
            }
        }
        assert!(every_round_ok);
        assert!(network.converged(), "the others still learn each other");
        assert!(network.node(8).knows(&Network::domain(5)));
    }
}
