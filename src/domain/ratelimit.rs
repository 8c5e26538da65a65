//! The rate-limit gate (CONTRACT 3, v2): what GitHub's rate-limit answers
//! mean for the requests chimney has not sent yet.
//!
//! * Closed: GitHub answered rate-limited (remaining 0, a 429, or a 403
//!   with `Retry-After`). Nothing is sent with the token until the reset or
//!   the `Retry-After` has passed; asking anyway only prolongs a secondary
//!   limit and gains nothing.
//! * Reserve: fewer than `reserve_pct` percent of the budget is left. The
//!   rest is kept for revalidating keys already cached (the dashboard's),
//!   so strangers asking for new keys cannot starve it.
//!
//! Rate-limit headers: <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>

use std::time::{Duration, SystemTime};

use super::headers::HeaderList;
use super::upstream::{
    MAX_RETRY_AFTER_SECS, UpstreamVerdict, classify_upstream, reset_time, retry_after_secs,
};

/// The share of the budget, in percent, kept for cached keys when not
/// configured (CONTRACT 1).
pub const DEFAULT_RATE_LIMIT_RESERVE_PCT: u8 = 5;

/// The budget GitHub last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Budget {
    remaining: u64,
    limit: u64,
    reset: SystemTime,
}

/// The gate's state; pure, so the caller owns the clock and the lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitGate {
    closed_until: Option<SystemTime>,
    budget: Option<Budget>,
}

impl RateLimitGate {
    /// A gate that has seen nothing: open, no reserve.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in one answer from GitHub (any status, 304 included).
    pub fn observe(&mut self, status: u16, headers: &HeaderList, now: SystemTime) {
        let number = |name: &str| headers.get(name).and_then(|v| v.trim().parse::<u64>().ok());
        let remaining = number("x-ratelimit-remaining");
        let exhausted = matches!(
            classify_upstream(status, headers, now),
            UpstreamVerdict::RateLimited { .. }
        ) || remaining == Some(0);
        if exhausted {
            let until = now + Duration::from_secs(retry_after_secs(headers, now));
            self.closed_until = Some(self.closed_until.map_or(until, |held| held.max(until)));
        }
        if let (Some(remaining), Some(limit), Some(reset)) = (
            remaining,
            number("x-ratelimit-limit"),
            number("x-ratelimit-reset"),
        ) {
            let latest_possible = now + Duration::from_secs(MAX_RETRY_AFTER_SECS);
            let reset = reset_time(reset).map_or(latest_possible, |at| at.min(latest_possible));
            self.budget = Some(Budget {
                remaining,
                limit,
                reset,
            });
        }
    }

    /// `Some(seconds to wait)` while nothing may be sent.
    pub fn closed(&self, now: SystemTime) -> Option<u64> {
        let until = self.closed_until?;
        let left = until.duration_since(now).ok()?;
        (!left.is_zero()).then(|| whole_secs(left))
    }

    /// `Some(seconds until the reset)` while fewer than `reserve_pct`
    /// percent of the budget is left and the window has not reset; a
    /// `reserve_pct` of 0 never holds anything back.
    pub fn in_reserve(&self, now: SystemTime, reserve_pct: u8) -> Option<u64> {
        let budget = self.budget?;
        let below =
            u128::from(budget.remaining) * 100 < u128::from(budget.limit) * u128::from(reserve_pct);
        if !below {
            return None;
        }
        let left = budget.reset.duration_since(now).ok()?;
        (!left.is_zero()).then(|| whole_secs(left))
    }
}

fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    fn h(pairs: &[(&str, String)]) -> HeaderList {
        pairs.iter().map(|(n, v)| (*n, v.clone())).collect()
    }

    fn budget(remaining: u64, reset_in: u64) -> HeaderList {
        h(&[
            ("x-ratelimit-limit", "5000".into()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", (T0 + reset_in).to_string()),
        ])
    }

    #[test]
    fn a_fresh_gate_is_open_with_no_reserve() {
        let gate = RateLimitGate::new();
        assert_eq!(gate.closed(at(0)), None);
        assert_eq!(gate.in_reserve(at(0), 5), None);
    }

    #[test]
    fn remaining_zero_closes_until_the_reset_whatever_the_status() {
        for status in [200, 304, 403] {
            let mut gate = RateLimitGate::new();
            gate.observe(status, &budget(0, 120), at(0));
            assert_eq!(gate.closed(at(0)), Some(120), "{status}");
            assert_eq!(gate.closed(at(119)), Some(1));
            assert_eq!(gate.closed(at(120)), None);
        }
    }

    #[test]
    fn a_429_or_a_403_with_retry_after_closes_for_the_retry_after() {
        let secondary = h(&[
            ("retry-after", "30".into()),
            ("x-ratelimit-remaining", "4000".into()),
        ]);
        for status in [429, 403] {
            let mut gate = RateLimitGate::new();
            gate.observe(status, &secondary, at(0));
            assert_eq!(gate.closed(at(10)), Some(20), "{status}");
            assert_eq!(gate.closed(at(30)), None);
        }
    }

    #[test]
    fn a_later_answer_never_shortens_a_closure() {
        let mut gate = RateLimitGate::new();
        gate.observe(429, &h(&[("retry-after", "60".into())]), at(0));
        gate.observe(429, &h(&[("retry-after", "5".into())]), at(1));
        assert_eq!(gate.closed(at(10)), Some(50));
    }

    #[test]
    fn ordinary_answers_leave_the_gate_open() {
        let mut gate = RateLimitGate::new();
        gate.observe(200, &budget(4999, 3600), at(0));
        gate.observe(404, &budget(4998, 3600), at(0));
        gate.observe(403, &budget(4997, 3600), at(0));
        assert_eq!(gate.closed(at(0)), None);
    }

    #[test]
    fn the_reserve_holds_below_its_share_until_the_reset() {
        let mut gate = RateLimitGate::new();
        gate.observe(200, &budget(250, 600), at(0));
        assert_eq!(
            gate.in_reserve(at(0), 5),
            None,
            "exactly 5% left is not below"
        );
        gate.observe(200, &budget(249, 600), at(0));
        assert_eq!(gate.in_reserve(at(100), 5), Some(500));
        assert_eq!(gate.in_reserve(at(100), 0), None, "0% switches it off");
        assert_eq!(gate.in_reserve(at(600), 5), None, "the window reset");
        gate.observe(304, &budget(4999, 3600), at(1));
        assert_eq!(gate.in_reserve(at(1), 5), None);
    }

    #[test]
    fn absurd_headers_are_bounded_not_a_panic() {
        let mut gate = RateLimitGate::new();
        let huge = h(&[
            ("x-ratelimit-limit", u64::MAX.to_string()),
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-reset", u64::MAX.to_string()),
        ]);
        gate.observe(403, &huge, at(0));
        assert_eq!(gate.closed(at(0)), Some(MAX_RETRY_AFTER_SECS));
        assert_eq!(gate.in_reserve(at(0), 100), Some(MAX_RETRY_AFTER_SECS));
    }
}
