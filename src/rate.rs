//! Token buckets keyed by whoever spends them (a user, an address), with time passed in so
//! they are tested without sleeping. Chat lines per user and new SSH connections per address
//! are both limited here.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A bucket per key: `burst` tokens, one back every `refill`.
#[derive(Debug)]
pub struct RateTable<K> {
    /// Tokens a key may spend at once; also the size of its bucket.
    burst: f64,
    /// Time one token takes to come back.
    refill: Duration,
    /// Keys remembered before full buckets are forgotten, so the table does not grow with
    /// every key ever seen.
    max_keys: usize,
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: Hash + Eq + Clone> RateTable<K> {
    /// `burst` at once, then one every `refill`; `burst` and `max_keys` at least 1.
    pub fn new(burst: u32, refill: Duration, max_keys: usize) -> RateTable<K> {
        RateTable {
            burst: f64::from(burst.max(1)),
            refill,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// `per_minute` at once, refilled at `per_minute` a minute.
    pub fn per_minute(per_minute: u32, max_keys: usize) -> RateTable<K> {
        let per_minute = per_minute.max(1);
        RateTable::new(per_minute, Duration::from_secs(60) / per_minute, max_keys)
    }

    /// Spends one of `key`'s tokens at `now`; false when it has none left.
    ///
    /// The table never holds more than `max_keys`: a new key finding it full of buckets
    /// still refilling takes the place of the one used longest ago (which starts afresh if
    /// it comes back: the bound on memory wins over that key's history).
    pub fn allow(&mut self, key: K, now: Instant) -> bool {
        if self.buckets.len() >= self.max_keys && !self.buckets.contains_key(&key) {
            self.forget_full(now);
            if self.buckets.len() >= self.max_keys {
                let oldest = self
                    .buckets
                    .iter()
                    .min_by_key(|(_, (_, last))| *last)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.buckets.remove(&oldest);
                }
            }
        }
        let tokens = self.tokens(&key, now);
        let allowed = tokens >= 1.0;
        let left = if allowed { tokens - 1.0 } else { tokens };
        self.buckets.insert(key, (left, now));
        allowed
    }

    /// Whether `key` has a token at `now`, without spending it.
    pub fn would_allow(&self, key: &K, now: Instant) -> bool {
        self.tokens(key, now) >= 1.0
    }

    /// `key`'s tokens at `now`: what it had, plus what came back since, at most `burst`.
    fn tokens(&self, key: &K, now: Instant) -> f64 {
        let (burst, refill) = (self.burst, self.refill.as_secs_f64());
        match self.buckets.get(key) {
            None => burst,
            Some((tokens, last)) => {
                let earned = if refill > 0.0 {
                    now.saturating_duration_since(*last).as_secs_f64() / refill
                } else {
                    burst
                };
                (tokens + earned).min(burst)
            }
        }
    }

    /// Forgets the buckets that have refilled completely: they hold nothing a new bucket
    /// would not.
    pub fn forget_full(&mut self, now: Instant) {
        let full = self.refill.mul_f64(self.burst);
        self.buckets
            .retain(|_, (_, last)| now.saturating_duration_since(*last) < full);
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_token_per_refill_each_key_its_own() {
        let mut rate = RateTable::new(3, Duration::from_secs(1), 100);
        let t0 = Instant::now();
        assert!((0..3).all(|_| rate.allow("alice", t0)));
        assert!(!rate.allow("alice", t0), "the burst is spent");
        assert!(rate.allow("bob", t0), "keys have their own buckets");
        assert!(rate.allow("alice", t0 + Duration::from_secs(1)));
        assert!(!rate.allow("alice", t0 + Duration::from_secs(1)));
    }

    #[test]
    fn per_minute_refills_evenly_over_the_minute() {
        let mut rate = RateTable::per_minute(3, 100);
        let t0 = Instant::now();
        assert!((0..3).all(|_| rate.allow(1, t0)));
        assert!(!rate.allow(1, t0));
        assert!(
            rate.allow(1, t0 + Duration::from_secs(20)),
            "one token per 20 s at 3/min"
        );
    }

    #[test]
    fn the_table_forgets_full_buckets_when_it_reaches_its_size() {
        let mut rate = RateTable::new(2, Duration::from_secs(1), 2);
        let t0 = Instant::now();
        assert!(rate.allow(1, t0));
        assert!(rate.allow(2, t0));
        // Both buckets are full again 2 s later: the third key makes room by forgetting them.
        assert!(rate.allow(3, t0 + Duration::from_secs(2)));
        assert_eq!(rate.len(), 1);
        // Full of buckets still refilling: a new key takes the place of the one used longest
        // ago, and the table stays at its size.
        let (t1, t2) = (
            t0 + Duration::from_millis(2200),
            t0 + Duration::from_millis(2500),
        );
        assert!(rate.allow(4, t1) && rate.allow(4, t1));
        assert!(rate.allow(5, t2));
        assert_eq!(rate.len(), 2);
        assert!(
            !rate.would_allow(&4, t2),
            "4, used last, kept its spent bucket"
        );
    }

    #[test]
    fn a_key_can_be_asked_without_spending() {
        let mut rate = RateTable::new(1, Duration::from_secs(10), 10);
        let t0 = Instant::now();
        assert!(rate.would_allow(&"a", t0));
        assert!(rate.would_allow(&"a", t0), "asking spends nothing");
        assert!(rate.allow("a", t0));
        assert!(!rate.would_allow(&"a", t0));
        assert!(rate.would_allow(&"a", t0 + Duration::from_secs(10)));
    }
}
