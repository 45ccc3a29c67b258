//! The nonce cache that refuses a replayed signed request. Sans-IO: time is passed in.
//!
//! A signature is accepted while `created` is within
//! [`CREATED_WINDOW_SECS`](super::signature::CREATED_WINDOW_SECS) of our clock, so a nonce
//! must be remembered for twice that from when it was first seen: [`NONCE_KEEP_SECS`]. The
//! cache is bounded; when full of entries still inside that time it refuses new ones (the
//! request is refused, to be retried later) rather than forget one that could be replayed.

use std::collections::{HashSet, VecDeque};

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
    /// The cache is full of nonces it must keep: refuse the request for now.
    Full,
}

/// Nonces seen within [`NONCE_KEEP_SECS`], in the order they arrived.
#[derive(Debug)]
pub struct NonceCache {
    /// The most entries kept.
    max: usize,
    /// What is remembered, for lookups.
    seen: HashSet<String>,
    /// The same entries with the time each arrived, oldest first, for expiry.
    order: VecDeque<(i64, String)>,
}

impl NonceCache {
    pub fn new(max: usize) -> NonceCache {
        NonceCache {
            max,
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `nonce` (already namespaced by the caller, for example with the signer's
    /// domain) at time `now`, unless it was seen within the keep time or the cache is full.
    pub fn check_and_insert(&mut self, nonce: &str, now: i64) -> Seen {
        self.expire(now);
        if self.seen.contains(nonce) {
            return Seen::Replayed;
        }
        if self.seen.len() >= self.max {
            return Seen::Full;
        }
        self.seen.insert(nonce.to_owned());
        self.order.push_back((now, nonce.to_owned()));
        Seen::Fresh
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Forgets nonces that arrived more than [`NONCE_KEEP_SECS`] before `now`.
    fn expire(&mut self, now: i64) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_sub(*at) <= NONCE_KEEP_SECS {
                break;
            }
            if let Some((_, nonce)) = self.order.pop_front() {
                self.seen.remove(&nonce);
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
        assert_eq!(cache.check_and_insert("a", 0), Seen::Fresh);
        assert_eq!(cache.check_and_insert("b", 1), Seen::Fresh);
        assert_eq!(cache.check_and_insert("a", 2), Seen::Replayed);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_nonce_is_kept_for_the_whole_keep_time_then_forgotten() {
        let mut cache = NonceCache::new(10);
        assert_eq!(cache.check_and_insert("a", 100), Seen::Fresh);
        assert_eq!(
            cache.check_and_insert("a", 100 + NONCE_KEEP_SECS),
            Seen::Replayed
        );
        assert_eq!(
            cache.check_and_insert("a", 100 + NONCE_KEEP_SECS + 1),
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
        assert_eq!(cache.check_and_insert("a", first), Seen::Fresh);
        assert_eq!(cache.check_and_insert("a", last), Seen::Replayed);
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forget_a_young_nonce() {
        let mut cache = NonceCache::new(3);
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(cache.check_and_insert(n, i as i64), Seen::Fresh);
        }
        assert_eq!(cache.check_and_insert("d", 10), Seen::Full);
        // Every young nonce is still there: replays are still caught.
        assert_eq!(cache.check_and_insert("a", 10), Seen::Replayed);
        assert_eq!(cache.len(), 3);
        // Once the oldest is old enough to forget, there is room again.
        assert_eq!(cache.check_and_insert("d", NONCE_KEEP_SECS), Seen::Full);
        assert_eq!(
            cache.check_and_insert("d", NONCE_KEEP_SECS + 1),
            Seen::Fresh
        );
        assert_eq!(
            cache.check_and_insert("b", NONCE_KEEP_SECS + 1),
            Seen::Replayed
        );
    }

    #[test]
    fn the_default_bound_is_the_named_constant() {
        let mut cache = NonceCache::new(NONCE_CACHE_MAX);
        for i in 0..NONCE_CACHE_MAX {
            assert_eq!(cache.check_and_insert(&i.to_string(), 0), Seen::Fresh);
        }
        assert_eq!(cache.check_and_insert("one more", 1), Seen::Full);
    }
}
