//! An instance-wide byte rate: every transfer it covers takes its bytes from one budget, so
//! together they send at most `bytes_per_second` (after a burst of one second's worth). A
//! generic cell rate (GCRA): each byte has a theoretical time, and a sender whose bytes are
//! due later than a second from now waits until they are not. Waiting is in arrival order
//! and costs nothing while it waits.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::chat::lock;

/// What the budget may run ahead of real time: one second's worth of bytes at once.
pub const THROTTLE_BURST: Duration = Duration::from_secs(1);

/// A shared byte rate, or none (`bytes_per_second` 0). Cheap to clone.
#[derive(Clone)]
pub struct Throttle {
    inner: Option<Arc<Mutex<Budget>>>,
}

/// The pure core: when bytes may go, given when they are asked for.
#[derive(Debug)]
pub struct Budget {
    per_byte: f64,
    /// When the bytes taken so far would all have gone at the rate.
    due: Option<Instant>,
}

impl Budget {
    pub fn new(bytes_per_second: u64) -> Budget {
        Budget {
            per_byte: 1.0 / bytes_per_second.max(1) as f64,
            due: None,
        }
    }

    /// Takes `n` bytes at `now`; returns how long the sender waits before sending them.
    pub fn take(&mut self, n: u64, now: Instant) -> Duration {
        let start = self.due.map_or(now, |due| due.max(now));
        let due = start + Duration::from_secs_f64(n as f64 * self.per_byte);
        self.due = Some(due);
        due.saturating_duration_since(now + THROTTLE_BURST)
    }
}

impl Throttle {
    /// A budget of `bytes_per_second`; 0 means no limit.
    pub fn new(bytes_per_second: u64) -> Throttle {
        Throttle {
            inner: (bytes_per_second > 0)
                .then(|| Arc::new(Mutex::new(Budget::new(bytes_per_second)))),
        }
    }

    /// Waits until `n` more bytes may go.
    pub async fn take(&self, n: usize) {
        let Some(budget) = &self.inner else {
            return;
        };
        let wait = lock(budget).take(n as u64, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// The same, for a blocking task (a stream read on a thread of its own).
    pub fn take_blocking(&self, n: usize) {
        let Some(budget) = &self.inner else {
            return;
        };
        let wait = lock(budget).take(n as u64, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    #[cfg(test)]
    fn is_limited(&self) -> bool {
        self.inner.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_second_goes_at_once_then_the_rate_holds() {
        let mut budget = Budget::new(1_000_000);
        let t0 = Instant::now();
        // One second's worth goes without waiting.
        for _ in 0..10 {
            assert_eq!(budget.take(100_000, t0), Duration::ZERO);
        }
        // Past it, each 100 KB waits 0.1 s more.
        let wait = budget.take(100_000, t0);
        assert!(
            wait.as_secs_f64() > 0.099 && wait.as_secs_f64() < 0.101,
            "{wait:?}"
        );
        let wait = budget.take(100_000, t0);
        assert!((wait.as_secs_f64() - 0.2).abs() < 0.001, "{wait:?}");
    }

    #[test]
    fn several_senders_share_one_rate() {
        // Ten senders taking 64 KiB each in turn for 10 s of virtual time: together they
        // get the rate, not ten times it.
        let rate = 5_000_000u64;
        let mut budget = Budget::new(rate);
        let t0 = Instant::now();
        let mut clock = [t0; 10];
        let mut sent = 0u64;
        let end = t0 + Duration::from_secs(10);
        'outer: loop {
            for c in clock.iter_mut() {
                if *c >= end {
                    break 'outer;
                }
                let wait = budget.take(65_536, *c);
                *c += wait;
                sent += 65_536;
            }
        }
        let expected = rate * 11; // 10 s at the rate, plus the 1 s burst
        assert!(
            sent.abs_diff(expected) < expected / 50,
            "sent {sent}, expected about {expected}"
        );
    }

    #[test]
    fn idle_time_does_not_bank_more_than_the_burst() {
        let mut budget = Budget::new(1_000);
        let t0 = Instant::now();
        assert_eq!(budget.take(1_000, t0), Duration::ZERO);
        // An hour idle: still one second's worth at once, no more.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(budget.take(1_000, later), Duration::ZERO);
        assert!(budget.take(1_000, later) > Duration::from_millis(900));
    }

    #[test]
    fn no_limit_never_waits() {
        let throttle = Throttle::new(0);
        assert!(!throttle.is_limited());
        throttle.take_blocking(usize::MAX);
    }
}
