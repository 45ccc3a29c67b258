//! The delivery schedule of one peer, sans-IO: time (milliseconds since the Unix epoch) and
//! randomness are passed in; nothing here sleeps, reads a clock or touches the database.
//!
//! A peer is `ok` until a delivery fails. Then it is in `backoff`: the next attempt waits an
//! exponentially growing, jittered delay (full jitter above the base: uniform in
//! `[base, min(cap, base * 2^failures)]`), so peers that went down together do not come back
//! to a thundering herd. After `unavailable_after` of failures without a single success it is
//! `unavailable`, and tried only every `probe_every`. Any success makes it `ok` again.
//!
//! The whole state is four plain values, stored as SQLite columns by the caller:
//! `state TEXT` ([`PeerState::as_str`]), `failures INTEGER`, `first_failure INTEGER NULL`,
//! `next_attempt INTEGER` (see [`PeerSchedule::from_columns`]).

use std::fmt;
use std::time::Duration;

use rand::Rng;

/// First retry delay in production.
pub const BASE_DELAY: Duration = Duration::from_secs(1);
/// Longest retry delay in production while a peer is in backoff.
pub const MAX_DELAY: Duration = Duration::from_secs(10 * 60);
/// Continuous failure after which a peer is unavailable (production).
pub const UNAVAILABLE_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);
/// How often an unavailable peer is tried (production).
pub const PROBE_EVERY: Duration = Duration::from_secs(6 * 3600);

/// First retry delay in dev mode.
pub const DEV_BASE_DELAY: Duration = Duration::from_millis(100);
/// Longest retry delay in dev mode.
pub const DEV_MAX_DELAY: Duration = Duration::from_secs(2);
/// Continuous failure after which a peer is unavailable in dev mode.
pub const DEV_UNAVAILABLE_AFTER: Duration = Duration::from_secs(5);
/// How often an unavailable peer is tried in dev mode.
pub const DEV_PROBE_EVERY: Duration = Duration::from_secs(3);

/// The timings of the schedule: [`ScheduleTiming::production`] or [`ScheduleTiming::dev`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleTiming {
    /// Delay after the first failure (and the floor of every delay).
    pub base: Duration,
    /// Ceiling of the backoff delay.
    pub cap: Duration,
    /// Continuous failure after which the peer is unavailable.
    pub unavailable_after: Duration,
    /// Delay between two attempts at an unavailable peer.
    pub probe_every: Duration,
}

impl ScheduleTiming {
    /// 1 s, doubling up to 10 min; unavailable after 3 days; then tried every 6 h.
    pub fn production() -> ScheduleTiming {
        ScheduleTiming {
            base: BASE_DELAY,
            cap: MAX_DELAY,
            unavailable_after: UNAVAILABLE_AFTER,
            probe_every: PROBE_EVERY,
        }
    }

    /// 100 ms, doubling up to 2 s; unavailable after 5 s; then tried every 3 s.
    pub fn dev() -> ScheduleTiming {
        ScheduleTiming {
            base: DEV_BASE_DELAY,
            cap: DEV_MAX_DELAY,
            unavailable_after: DEV_UNAVAILABLE_AFTER,
            probe_every: DEV_PROBE_EVERY,
        }
    }

    /// [`ScheduleTiming::dev`] in dev mode, else [`ScheduleTiming::production`].
    pub fn for_mode(dev: bool) -> ScheduleTiming {
        if dev {
            ScheduleTiming::dev()
        } else {
            ScheduleTiming::production()
        }
    }
}

/// A peer's delivery state, as `/peers` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// The last attempt succeeded (or none failed yet).
    Ok,
    /// Recent attempts failed; retried with growing delays.
    Backoff,
    /// Failing for longer than `unavailable_after`; tried rarely.
    Unavailable,
}

impl PeerState {
    /// `"ok"`, `"backoff"` or `"unavailable"`: the SQLite column and the `/peers` JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Ok => "ok",
            PeerState::Backoff => "backoff",
            PeerState::Unavailable => "unavailable",
        }
    }

    /// The inverse of [`PeerState::as_str`].
    pub fn parse(text: &str) -> Option<PeerState> {
        match text {
            "ok" => Some(PeerState::Ok),
            "backoff" => Some(PeerState::Backoff),
            "unavailable" => Some(PeerState::Unavailable),
            _ => None,
        }
    }
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored schedule that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown peer state {0:?}; expected \"ok\", \"backoff\" or \"unavailable\"")]
    State(String),
    #[error("negative failure count {0} in a stored peer schedule")]
    Failures(i64),
}

/// When to next try a peer, and why. Plain values so the caller can store it in SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSchedule {
    /// What `/peers` shows.
    pub state: PeerState,
    /// Failures since the last success.
    pub failures: u32,
    /// When the current run of failures began (ms since the epoch); `None` when `ok`.
    pub first_failure: Option<i64>,
    /// Earliest time for the next attempt (ms since the epoch).
    pub next_attempt: i64,
}

impl Default for PeerSchedule {
    fn default() -> Self {
        PeerSchedule::new()
    }
}

impl PeerSchedule {
    /// A peer never failed: `ok`, due at once.
    pub fn new() -> PeerSchedule {
        PeerSchedule {
            state: PeerState::Ok,
            failures: 0,
            first_failure: None,
            next_attempt: 0,
        }
    }

    /// Reads a schedule back from its columns (`state`, `failures`, `first_failure`,
    /// `next_attempt`).
    pub fn from_columns(
        state: &str,
        failures: i64,
        first_failure: Option<i64>,
        next_attempt: i64,
    ) -> Result<PeerSchedule, ScheduleError> {
        if failures < 0 {
            return Err(ScheduleError::Failures(failures));
        }
        Ok(PeerSchedule {
            state: PeerState::parse(state).ok_or_else(|| ScheduleError::State(state.to_owned()))?,
            // More failures than a u32 holds count as the most.
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
            first_failure,
            next_attempt,
        })
    }

    pub fn state(&self) -> PeerState {
        self.state
    }

    /// Whether an attempt may be made at `now`.
    pub fn due(&self, now: i64) -> bool {
        now >= self.next_attempt
    }

    /// How long from `now` until the next attempt is due (zero when due).
    pub fn until_due(&self, now: i64) -> Duration {
        Duration::from_millis(u64::try_from(self.next_attempt.saturating_sub(now)).unwrap_or(0))
    }

    /// A delivery (or any signed exchange) succeeded: `ok`, due at once.
    pub fn on_success(&mut self, now: i64) {
        *self = PeerSchedule {
            next_attempt: now,
            ..PeerSchedule::new()
        };
    }

    /// An attempt failed at `now`: schedules the next one and returns its time.
    pub fn on_failure(&mut self, now: i64, timing: &ScheduleTiming, rng: &mut impl Rng) -> i64 {
        self.failures = self.failures.saturating_add(1);
        let first = *self.first_failure.get_or_insert(now);
        let failing_for = now.saturating_sub(first);
        let delay = if failing_for >= millis(timing.unavailable_after) {
            self.state = PeerState::Unavailable;
            millis(timing.probe_every)
        } else {
            self.state = PeerState::Backoff;
            backoff_delay(self.failures, timing, rng)
        };
        self.next_attempt = now.saturating_add(delay);
        self.next_attempt
    }
}

/// Full jitter above the base: uniform in `[base, min(cap, base * 2^failures)]` (ms).
fn backoff_delay(failures: u32, timing: &ScheduleTiming, rng: &mut impl Rng) -> i64 {
    let base = millis(timing.base).max(1);
    let cap = millis(timing.cap).max(base);
    let ceiling = 1i64
        .checked_shl(failures.min(62))
        .and_then(|factor| base.checked_mul(factor))
        .map_or(cap, |c| c.min(cap));
    rng.gen_range(base..=ceiling)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const SEC: i64 = 1000;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn a_new_peer_is_ok_and_due() {
        let s = PeerSchedule::new();
        assert_eq!(s.state().as_str(), "ok");
        assert!(s.due(0));
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter_up_to_the_cap() {
        let timing = ScheduleTiming::production();
        let (mut s, mut rng, mut now) = (PeerSchedule::new(), rng(), 1_000_000);
        let mut delays = Vec::new();
        for n in 1..=20u32 {
            let next = s.on_failure(now, &timing, &mut rng);
            let delay = next - now;
            let ceiling = (SEC << n.min(20)).min(600 * SEC);
            assert!((SEC..=ceiling).contains(&delay), "failure {n}: {delay} ms");
            assert_eq!(s.state(), PeerState::Backoff);
            assert!(!s.due(next - 1) && s.due(next));
            delays.push(delay);
            now = next;
        }
        assert_eq!(s.failures, 20);
        // Past the cap the delays spread over [base, cap] instead of all equal to it.
        let late = &delays[12..];
        assert!(late.iter().all(|d| *d <= 600 * SEC));
        assert!(late.iter().any(|d| *d != late[0]), "{late:?}");
    }

    #[test]
    fn jitter_spreads_peers_that_failed_together() {
        let timing = ScheduleTiming::production();
        let mut rng = rng();
        let nexts: std::collections::HashSet<i64> = (0..50)
            .map(|_| {
                let mut s = PeerSchedule::new();
                for _ in 0..5 {
                    s.on_failure(0, &timing, &mut rng);
                }
                s.next_attempt
            })
            .collect();
        assert!(nexts.len() > 25, "{} distinct times", nexts.len());
    }

    #[test]
    fn a_peer_failing_for_three_days_is_unavailable_and_probed_every_six_hours() {
        let timing = ScheduleTiming::production();
        let (mut s, mut rng) = (PeerSchedule::new(), rng());
        let start = 5 * SEC;
        let mut now = start;
        while now - start < 3 * 24 * 3600 * SEC {
            now = s.on_failure(now, &timing, &mut rng);
            if now - start < 3 * 24 * 3600 * SEC {
                assert_eq!(s.state(), PeerState::Backoff);
            }
        }
        s.on_failure(now, &timing, &mut rng);
        assert_eq!(s.state().as_str(), "unavailable");
        assert_eq!(s.next_attempt - now, 6 * 3600 * SEC);
        assert_eq!(s.first_failure, Some(start));
    }

    #[test]
    fn a_success_makes_any_peer_ok_and_due() {
        let timing = ScheduleTiming::dev();
        let (mut s, mut rng) = (PeerSchedule::new(), rng());
        s.on_failure(0, &timing, &mut rng);
        s.on_failure(10 * SEC, &timing, &mut rng);
        assert_eq!(s.state(), PeerState::Unavailable);
        s.on_success(11 * SEC);
        assert_eq!(
            s,
            PeerSchedule {
                next_attempt: 11 * SEC,
                ..PeerSchedule::new()
            }
        );
        assert!(s.due(11 * SEC));
    }

    #[test]
    fn dev_timing_is_scaled_down() {
        let timing = ScheduleTiming::for_mode(true);
        let (mut s, mut rng) = (PeerSchedule::new(), rng());
        for _ in 0..30 {
            let delay = s.on_failure(0, &timing, &mut rng);
            assert!((100..=2000).contains(&delay), "{delay}");
        }
        assert_eq!(
            ScheduleTiming::for_mode(false),
            ScheduleTiming::production()
        );
    }

    #[test]
    fn a_schedule_round_trips_through_its_columns_and_bad_columns_are_refused() {
        let (mut s, mut rng) = (PeerSchedule::new(), rng());
        s.on_failure(42, &ScheduleTiming::production(), &mut rng);
        let back = PeerSchedule::from_columns(
            s.state.as_str(),
            i64::from(s.failures),
            s.first_failure,
            s.next_attempt,
        )
        .unwrap();
        assert_eq!(back, s);
        let err = PeerSchedule::from_columns("dead", 0, None, 0).unwrap_err();
        assert!(err.to_string().contains("\"dead\""), "{err}");
        assert!(PeerSchedule::from_columns("ok", -1, None, 0).is_err());
        assert_eq!(
            PeerSchedule::from_columns("backoff", i64::MAX, None, 0)
                .unwrap()
                .failures,
            u32::MAX
        );
    }

    #[test]
    fn a_clock_that_moves_back_does_not_break_the_schedule() {
        let timing = ScheduleTiming::production();
        let (mut s, mut rng) = (PeerSchedule::new(), rng());
        s.on_failure(100 * SEC, &timing, &mut rng);
        let next = s.on_failure(0, &timing, &mut rng);
        assert_eq!(s.state(), PeerState::Backoff);
        assert!(next >= SEC);
        assert_eq!(s.until_due(next + 5), Duration::ZERO);
    }
}
