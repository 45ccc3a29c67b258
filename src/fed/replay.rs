//! The nonce cache that refuses a replayed signed request. Sans-IO: time is passed in.
//!
//! A signature is accepted while `created` is within
//! [`CREATED_WINDOW_SECS`](super::signature::CREATED_WINDOW_SECS) of our clock, so a nonce
//! must be remembered for twice that from when it was first seen: [`NONCE_KEEP_SECS`]. The
//! cache is bounded; when full of entries still inside that time it refuses new ones (the
//! request is refused, to be retried later) rather than forget one that could be replayed.

use std::collections::{HashMap, HashSet, VecDeque};

/// How long a nonce is remembered after it was first seen, in seconds: the whole time a
/// signature carrying it could still be accepted (2 × the created window).
pub const NONCE_KEEP_SECS: i64 = 2 * super::signature::CREATED_WINDOW_SECS;
/// The most nonces remembered at once (about 100 bytes each): 100,000 is 166 signed
/// requests a second, sustained for the whole keep time.
pub const NONCE_CACHE_MAX: usize = 100_000;

/// What became of a nonce offered to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never seen: it is remembered now.
    Fresh,
    /// Seen within the keep time: a replay.
    Replayed,
    /// The cache is full and this signer holds the most of it: refuse its request for now.
    Full,
}

/// The nonces seen from one signer, oldest first.
#[derive(Debug, Default)]
struct Signer {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

/// Nonces seen recently, per signer, at most `max` in all.
///
/// When the cache is full, the signer holding the most nonces pays: its own request is
/// refused, or, for a request from any other signer, its oldest nonce is forgotten to make
/// room. One peer sending as fast as it can therefore fills the cache with its own nonces
/// and is then held back, while every other peer's requests still go through (what it
/// loses is replay protection for its own oldest requests, whose activities are still
/// applied once by id).
#[derive(Debug)]
pub struct NonceCache {
    max: usize,
    len: usize,
    signers: HashMap<String, Signer>,
    /// Every nonce remembered, in the order first seen: (when, signer, nonce).
    order: VecDeque<(i64, String, String)>,
}

impl NonceCache {
    pub fn new(max: usize) -> NonceCache {
        NonceCache {
            max,
            len: 0,
            signers: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Checks `nonce` from `signer` at `now` (seconds) and remembers it if it is fresh.
    pub fn check_and_insert(&mut self, signer: &str, nonce: &str, now: i64) -> Seen {
        self.expire(now);
        if self
            .signers
            .get(signer)
            .is_some_and(|s| s.seen.contains(nonce))
        {
            return Seen::Replayed;
        }
        if self.len >= self.max && !self.make_room_for(signer) {
            return Seen::Full;
        }
        let entry = self.signers.entry(signer.to_owned()).or_default();
        entry.seen.insert(nonce.to_owned());
        entry.order.push_back(nonce.to_owned());
        self.order
            .push_back((now, signer.to_owned(), nonce.to_owned()));
        self.len += 1;
        Seen::Fresh
    }

    /// Nonces remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nonces remembered from `signer`.
    pub fn held_by(&self, signer: &str) -> usize {
        self.signers.get(signer).map_or(0, |s| s.seen.len())
    }

    /// Forgets the oldest nonce of the signer holding the most, unless that is `signer`
    /// itself (or ties with it). Returns whether there is room now.
    fn make_room_for(&mut self, signer: &str) -> bool {
        let own = self.held_by(signer);
        let Some((heaviest, held)) = self
            .signers
            .iter()
            .map(|(name, s)| (name, s.seen.len()))
            .max_by_key(|(_, held)| *held)
        else {
            return false;
        };
        if held <= own {
            return false;
        }
        let heaviest = heaviest.clone();
        let Some(entry) = self.signers.get_mut(&heaviest) else {
            return false;
        };
        let Some(oldest) = entry.order.pop_front() else {
            return false;
        };
        entry.seen.remove(&oldest);
        self.len -= 1;
        // Its place in `order` is skipped when it comes up (not in `seen` any more).
        true
    }

    fn expire(&mut self, now: i64) {
        while let Some((at, _, _)) = self.order.front() {
            if now.saturating_sub(*at) <= NONCE_KEEP_SECS {
                break;
            }
            let Some((_, signer, nonce)) = self.order.pop_front() else {
                break;
            };
            let Some(entry) = self.signers.get_mut(&signer) else {
                continue;
            };
            // Forgotten already to make room: its signer's oldest entries went first, so
            // a nonce still remembered is at the front of its signer's order.
            if entry.seen.remove(&nonce) {
                entry.order.pop_front();
                self.len -= 1;
            }
            if entry.seen.is_empty() {
                self.signers.remove(&signer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_seen_twice_is_a_replay() {
        let mut cache = NonceCache::new(10);
        assert_eq!(cache.check_and_insert("d.example", "a", 0), Seen::Fresh);
        assert_eq!(cache.check_and_insert("d.example", "b", 1), Seen::Fresh);
        assert_eq!(cache.check_and_insert("d.example", "a", 2), Seen::Replayed);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_nonce_is_kept_for_the_whole_keep_time_then_forgotten() {
        let mut cache = NonceCache::new(10);
        assert_eq!(cache.check_and_insert("d.example", "a", 100), Seen::Fresh);
        assert_eq!(
            cache.check_and_insert("d.example", "a", 100 + NONCE_KEEP_SECS),
            Seen::Replayed
        );
        assert_eq!(
            cache.check_and_insert("d.example", "a", 100 + NONCE_KEEP_SECS + 1),
            Seen::Fresh
        );
    }

    #[test]
    fn a_nonce_is_remembered_while_its_signature_is_still_accepted() {
        use crate::fed::signature::CREATED_WINDOW_SECS;
        let created = 10_000;
        // The first instant a signature is accepted (created in our future) and the last
        // (created in our past).
        let (first, last) = (created - CREATED_WINDOW_SECS, created + CREATED_WINDOW_SECS);
        let mut cache = NonceCache::new(10);
        assert_eq!(cache.check_and_insert("d.example", "a", first), Seen::Fresh);
        assert_eq!(
            cache.check_and_insert("d.example", "a", last),
            Seen::Replayed
        );
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forget_a_young_nonce() {
        let mut cache = NonceCache::new(3);
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(
                cache.check_and_insert("d.example", n, i as i64),
                Seen::Fresh
            );
        }
        assert_eq!(cache.check_and_insert("d.example", "d", 10), Seen::Full);
        // Every young nonce is still there: replays are still caught.
        assert_eq!(cache.check_and_insert("d.example", "a", 10), Seen::Replayed);
        assert_eq!(cache.len(), 3);
        // Once the oldest is old enough to forget, there is room again.
        assert_eq!(
            cache.check_and_insert("d.example", "d", NONCE_KEEP_SECS),
            Seen::Full
        );
        assert_eq!(
            cache.check_and_insert("d.example", "d", NONCE_KEEP_SECS + 1),
            Seen::Fresh
        );
        assert_eq!(
            cache.check_and_insert("d.example", "b", NONCE_KEEP_SECS + 1),
            Seen::Replayed
        );
    }

    #[test]
    fn the_default_bound_is_the_named_constant() {
        let mut cache = NonceCache::new(NONCE_CACHE_MAX);
        for i in 0..NONCE_CACHE_MAX {
            assert_eq!(
                cache.check_and_insert("d.example", &i.to_string(), 0),
                Seen::Fresh
            );
        }
        assert_eq!(
            cache.check_and_insert("d.example", "one more", 1),
            Seen::Full
        );
    }

    #[test]
    fn a_full_cache_holds_back_the_signer_that_filled_it_and_no_one_else() {
        let mut cache = NonceCache::new(100);
        for i in 0..100 {
            assert_eq!(
                cache.check_and_insert("flood.example", &i.to_string(), 0),
                Seen::Fresh
            );
        }
        // The flooder is refused; another peer gets in, at the flooder's expense.
        assert_eq!(
            cache.check_and_insert("flood.example", "more", 1),
            Seen::Full
        );
        for i in 0..10 {
            let nonce = format!("b{i}");
            assert_eq!(cache.check_and_insert("b.example", &nonce, 1), Seen::Fresh);
        }
        assert_eq!(cache.len(), 100);
        assert_eq!(cache.held_by("flood.example"), 90);
        assert_eq!(cache.check_and_insert("b.example", "b3", 2), Seen::Replayed);
        // The flooder's oldest nonces were forgotten, its newest are still caught.
        assert_eq!(
            cache.check_and_insert("flood.example", "99", 2),
            Seen::Replayed
        );
        // When all expire, the accounting is back to nothing.
        assert_eq!(
            cache.check_and_insert("c.example", "x", NONCE_KEEP_SECS + 2),
            Seen::Fresh
        );
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.held_by("flood.example"), 0);
    }

    #[test]
    fn two_signers_with_equal_shares_do_not_push_each_other_out() {
        let mut cache = NonceCache::new(4);
        for i in 0..2 {
            assert_eq!(
                cache.check_and_insert("a.example", &i.to_string(), 0),
                Seen::Fresh
            );
            assert_eq!(
                cache.check_and_insert("b.example", &i.to_string(), 0),
                Seen::Fresh
            );
        }
        assert_eq!(cache.check_and_insert("a.example", "x", 0), Seen::Full);
        assert_eq!(cache.check_and_insert("b.example", "x", 0), Seen::Full);
        // Nonces are per signer: the same text from another signer is not a replay.
        assert_eq!(cache.check_and_insert("c.example", "0", 0), Seen::Fresh);
    }
}
