//! What an answer from GitHub means for the cache: GitHub's status codes and
//! rate-limit headers classified once, here.
//!
//! Rate-limit semantics: <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>

use std::time::{Duration, SystemTime};

use super::headers::HeaderList;

/// Wait suggested to clients when GitHub gives no usable hint.
const DEFAULT_RETRY_AFTER_SECS: u64 = 60;

/// The longest wait chimney takes from GitHub's headers: GitHub's rate
/// limit windows are an hour at most, and a value that says otherwise (or
/// overflows the time arithmetic) must neither crash the fetch nor shut
/// the rate-limit gate for longer.
pub const MAX_RETRY_AFTER_SECS: u64 = 3600;

/// The meaning of an upstream answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamVerdict {
    /// 2xx: a new representation to store and serve.
    Fresh,
    /// 304: the cached representation is still current.
    NotModified,
    /// 404 or 410: the resource is missing; cached for the negative TTL.
    Missing,
    /// A redirect (3xx other than 304): passed on only within the served
    /// repository.
    Redirect,
    /// Any other 4xx: GitHub's answer for the client, never cached.
    PassThrough,
    /// 429, or 403 with no requests left: try again after this many seconds.
    RateLimited {
        /// Seconds until GitHub accepts requests again.
        retry_after_secs: u64,
    },
    /// 5xx or a status GitHub should never send: GitHub is failing.
    ServerError,
}

/// Classifies an upstream answer by status and headers at time `now`.
pub fn classify_upstream(status: u16, headers: &HeaderList, now: SystemTime) -> UpstreamVerdict {
    match status {
        304 => UpstreamVerdict::NotModified,
        200..=299 => UpstreamVerdict::Fresh,
        429 => UpstreamVerdict::RateLimited {
            retry_after_secs: retry_after_secs(headers, now),
        },
        403 if is_rate_limited_403(headers) => UpstreamVerdict::RateLimited {
            retry_after_secs: retry_after_secs(headers, now),
        },
        404 | 410 => UpstreamVerdict::Missing,
        300..=399 => UpstreamVerdict::Redirect,
        400..=499 => UpstreamVerdict::PassThrough,
        _ => UpstreamVerdict::ServerError,
    }
}

/// A 403 is a rate limit when the primary budget is spent, or when GitHub
/// asks for a pause (its secondary limits send `Retry-After`).
fn is_rate_limited_403(headers: &HeaderList) -> bool {
    headers
        .get("x-ratelimit-remaining")
        .is_some_and(|v| v.trim() == "0")
        || headers.get("retry-after").is_some()
}

/// Seconds a client should wait: GitHub's `Retry-After` (seconds or an HTTP
/// date), else the time until `X-RateLimit-Reset`, else a minute. Never 0,
/// never more than [`MAX_RETRY_AFTER_SECS`], whatever the headers say.
pub fn retry_after_secs(headers: &HeaderList, now: SystemTime) -> u64 {
    let from_retry_after = headers.get("retry-after").and_then(|v| {
        let v = v.trim();
        v.parse::<u64>().ok().or_else(|| {
            httpdate::parse_http_date(v)
                .ok()
                .map(|at| secs_until(at, now))
        })
    });
    let from_reset = || {
        headers
            .get("x-ratelimit-reset")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|epoch| reset_time(epoch).map_or(MAX_RETRY_AFTER_SECS, |at| secs_until(at, now)))
    };
    from_retry_after
        .or_else(from_reset)
        .unwrap_or(DEFAULT_RETRY_AFTER_SECS)
        .clamp(1, MAX_RETRY_AFTER_SECS)
}

/// `X-RateLimit-Reset` (Unix seconds) as a time; `None` when it does not
/// fit a `SystemTime` (adding it would panic).
pub fn reset_time(epoch_secs: u64) -> Option<SystemTime> {
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(epoch_secs))
}

fn secs_until(at: SystemTime, now: SystemTime) -> u64 {
    at.duration_since(now)
        .map_or(0, |d| d.as_secs_f64().ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderList {
        pairs.iter().copied().collect()
    }

    const NOW: Duration = Duration::from_secs(1_700_000_000);

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + NOW
    }

    #[test]
    fn statuses_are_classified() {
        let none = HeaderList::new();
        assert_eq!(classify_upstream(200, &none, now()), UpstreamVerdict::Fresh);
        assert_eq!(classify_upstream(204, &none, now()), UpstreamVerdict::Fresh);
        assert_eq!(
            classify_upstream(304, &none, now()),
            UpstreamVerdict::NotModified
        );
        assert_eq!(
            classify_upstream(301, &none, now()),
            UpstreamVerdict::Redirect
        );
        assert_eq!(
            classify_upstream(302, &none, now()),
            UpstreamVerdict::Redirect
        );
        assert_eq!(
            classify_upstream(404, &none, now()),
            UpstreamVerdict::Missing
        );
        assert_eq!(
            classify_upstream(410, &none, now()),
            UpstreamVerdict::Missing
        );
        assert_eq!(
            classify_upstream(422, &none, now()),
            UpstreamVerdict::PassThrough
        );
        assert_eq!(
            classify_upstream(403, &none, now()),
            UpstreamVerdict::PassThrough
        );
        assert_eq!(
            classify_upstream(500, &none, now()),
            UpstreamVerdict::ServerError
        );
        assert_eq!(
            classify_upstream(503, &none, now()),
            UpstreamVerdict::ServerError
        );
        assert_eq!(
            classify_upstream(101, &none, now()),
            UpstreamVerdict::ServerError
        );
    }

    #[test]
    fn a_403_with_no_requests_left_is_a_rate_limit() {
        let reset = (NOW.as_secs() + 120).to_string();
        let headers = h(&[
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", &reset),
        ]);
        assert_eq!(
            classify_upstream(403, &headers, now()),
            UpstreamVerdict::RateLimited {
                retry_after_secs: 120
            }
        );
    }

    #[test]
    fn a_403_with_requests_left_is_passed_through() {
        let headers = h(&[("X-RateLimit-Remaining", "4999")]);
        assert_eq!(
            classify_upstream(403, &headers, now()),
            UpstreamVerdict::PassThrough
        );
    }

    #[test]
    fn retry_after_prefers_githubs_header() {
        let headers = h(&[("Retry-After", "30"), ("X-RateLimit-Reset", "0")]);
        assert_eq!(
            classify_upstream(429, &headers, now()),
            UpstreamVerdict::RateLimited {
                retry_after_secs: 30
            }
        );
        let date = httpdate::fmt_http_date(now() + Duration::from_secs(45));
        assert_eq!(retry_after_secs(&h(&[("retry-after", &date)]), now()), 45);
    }

    #[test]
    fn a_403_with_retry_after_is_a_secondary_rate_limit() {
        let headers = h(&[("Retry-After", "7"), ("X-RateLimit-Remaining", "4000")]);
        assert_eq!(
            classify_upstream(403, &headers, now()),
            UpstreamVerdict::RateLimited {
                retry_after_secs: 7
            }
        );
    }

    #[test]
    fn a_reset_that_overflows_the_clock_is_capped_not_a_panic() {
        for reset in [u64::MAX.to_string(), (u64::MAX / 2).to_string()] {
            let headers = h(&[
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", &reset),
            ]);
            assert_eq!(
                classify_upstream(403, &headers, now()),
                UpstreamVerdict::RateLimited {
                    retry_after_secs: MAX_RETRY_AFTER_SECS
                }
            );
        }
        let far = h(&[("Retry-After", "99999999")]);
        assert_eq!(retry_after_secs(&far, now()), MAX_RETRY_AFTER_SECS);
    }

    #[test]
    fn retry_after_has_a_sane_floor_and_default() {
        assert_eq!(retry_after_secs(&HeaderList::new(), now()), 60);
        let past = h(&[("x-ratelimit-reset", "1")]);
        assert_eq!(retry_after_secs(&past, now()), 1);
    }
}
