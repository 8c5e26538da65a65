//! The proxy's decision table (CONTRACT 3) as pure functions of the cached
//! entry, the client's request and the time.

use std::time::{Duration, SystemTime};

use super::entry::CachedResponse;
use super::etag::IfNoneMatch;
use super::freshness::Freshness;
use super::upstream::UpstreamVerdict;

/// What to do with a request before anything is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The client already holds the fresh representation: answer 304.
    NotModified,
    /// Serve the fresh entry from cache.
    ServeFresh,
    /// Serve the stale entry at once and revalidate it in the background
    /// (stale-while-revalidate): it is past its TTL by no more than the
    /// window.
    ServeStaleAndRevalidate {
        /// ETag to send as `If-None-Match`.
        etag: Option<String>,
    },
    /// Ask GitHub, conditionally when an ETag is known.
    Fetch {
        /// ETag to send as `If-None-Match`.
        etag: Option<String>,
        /// Whether the entry may be served if GitHub fails.
        stale_usable: bool,
    },
}

/// Decides how to answer a request given the cached entry (if any).
/// Negative entries (404/410) are fresh for `negative_ttl` and then good
/// for nothing: no stale fallback, no revalidation. A stale entry at most
/// `stale_while_revalidate` past its TTL is served while it is revalidated
/// (zero switches that off); one with a fetch time in the future is not,
/// since its age is unknown.
pub fn decide(
    entry: Option<&CachedResponse>,
    if_none_match: Option<&IfNoneMatch>,
    ttl: Duration,
    negative_ttl: Duration,
    stale_while_revalidate: Duration,
    now: SystemTime,
) -> Decision {
    let Some(entry) = entry else {
        return Decision::Fetch {
            etag: None,
            stale_usable: false,
        };
    };
    match entry.freshness(now, ttl, negative_ttl) {
        Freshness::Fresh => {
            let client_has_it = match (if_none_match, entry.etag()) {
                (Some(inm), Some(etag)) => inm.matches(etag),
                _ => false,
            };
            if client_has_it {
                Decision::NotModified
            } else {
                Decision::ServeFresh
            }
        }
        Freshness::Stale
            if !stale_while_revalidate.is_zero()
                && entry.fetched_at <= now
                && entry.age(now) <= ttl.saturating_add(stale_while_revalidate) =>
        {
            Decision::ServeStaleAndRevalidate {
                etag: entry.etag().map(str::to_owned),
            }
        }
        freshness => Decision::Fetch {
            etag: entry
                .etag()
                .filter(|_| !entry.is_negative())
                .map(str::to_owned),
            stale_usable: freshness == Freshness::Stale,
        },
    }
}

/// What to do once GitHub has answered, or failed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFetch {
    /// Store the new representation in both tiers and serve it.
    Store,
    /// GitHub says the resource is missing (404/410): store that for the
    /// negative TTL and pass it on.
    StoreNegative,
    /// GitHub redirects: pass it on only if it stays in the served
    /// repository, else refuse it.
    Redirect,
    /// GitHub confirmed the cached entry: refresh its fetch time, serve it.
    Refresh,
    /// Serve GitHub's answer as it is, caching nothing.
    PassThrough,
    /// GitHub failed; serve the stale entry.
    ServeStale,
    /// GitHub failed and nothing usable is cached: 502.
    BadGateway,
    /// GitHub is rate limiting and nothing usable is cached: 503.
    RateLimited {
        /// Seconds for the client's `Retry-After`.
        retry_after_secs: u64,
    },
}

/// Resolves an upstream outcome. `verdict` is `None` when no usable answer
/// arrived at all (connection error, timeout, oversized body);
/// `negative_caching` is false when the negative TTL is zero.
pub fn after_fetch(
    verdict: Option<UpstreamVerdict>,
    had_entry: bool,
    stale_usable: bool,
    negative_caching: bool,
) -> AfterFetch {
    let failed = |rate_limit: Option<u64>| match (stale_usable, rate_limit) {
        (true, _) => AfterFetch::ServeStale,
        (false, Some(retry_after_secs)) => AfterFetch::RateLimited { retry_after_secs },
        (false, None) => AfterFetch::BadGateway,
    };
    match verdict {
        Some(UpstreamVerdict::Fresh) => AfterFetch::Store,
        Some(UpstreamVerdict::Missing) if negative_caching => AfterFetch::StoreNegative,
        Some(UpstreamVerdict::Redirect) => AfterFetch::Redirect,
        // A 304 is only meaningful against the entry whose ETag was sent.
        Some(UpstreamVerdict::NotModified) if had_entry => AfterFetch::Refresh,
        Some(
            UpstreamVerdict::NotModified | UpstreamVerdict::PassThrough | UpstreamVerdict::Missing,
        ) => AfterFetch::PassThrough,
        Some(UpstreamVerdict::RateLimited { retry_after_secs }) => failed(Some(retry_after_secs)),
        Some(UpstreamVerdict::ServerError) | None => failed(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::HeaderList;
    use bytes::Bytes;

    const TTL: Duration = Duration::from_secs(30);
    const NEG: Duration = Duration::from_secs(30);

    fn decide(
        entry: Option<&CachedResponse>,
        inm: Option<&IfNoneMatch>,
        ttl: Duration,
        now: SystemTime,
    ) -> Decision {
        super::decide(entry, inm, ttl, NEG, Duration::ZERO, now)
    }

    const SWR: Duration = Duration::from_secs(60);

    fn decide_swr(entry: &CachedResponse, now: SystemTime) -> Decision {
        super::decide(Some(entry), None, TTL, NEG, SWR, now)
    }

    #[test]
    fn a_stale_entry_within_the_window_is_served_while_revalidated() {
        let e = entry_at(0, Some("\"a\""));
        let updating = Decision::ServeStaleAndRevalidate {
            etag: Some("\"a\"".into()),
        };
        assert_eq!(decide_swr(&e, at(30)), updating);
        assert_eq!(decide_swr(&e, at(90)), updating);
        assert_eq!(decide_swr(&e, at(10)), Decision::ServeFresh);
    }

    #[test]
    fn a_stale_entry_past_the_window_makes_the_client_wait() {
        let e = entry_at(0, Some("\"a\""));
        assert_eq!(
            decide_swr(&e, at(91)),
            Decision::Fetch {
                etag: Some("\"a\"".into()),
                stale_usable: true
            }
        );
    }

    #[test]
    fn a_zero_window_never_serves_stale_at_once() {
        let e = entry_at(0, None);
        assert_eq!(
            decide(Some(&e), None, TTL, at(31)),
            Decision::Fetch {
                etag: None,
                stale_usable: true
            }
        );
    }

    #[test]
    fn negative_and_future_entries_are_not_served_while_revalidated() {
        let missing = CachedResponse::new(404, HeaderList::default(), Bytes::new(), at(0));
        assert_eq!(
            decide_swr(&missing, at(31)),
            Decision::Fetch {
                etag: None,
                stale_usable: false
            }
        );
        let future = entry_at(100, Some("\"a\""));
        assert!(matches!(
            decide_swr(&future, at(50)),
            Decision::Fetch { .. }
        ));
    }

    fn after_fetch(v: Option<UpstreamVerdict>, had: bool, stale: bool) -> AfterFetch {
        super::after_fetch(v, had, stale, true)
    }

    fn entry_at(fetched_secs: u64, etag: Option<&str>) -> CachedResponse {
        let headers: HeaderList = etag.map(|e| ("etag", e)).into_iter().collect();
        CachedResponse::new(200, headers, Bytes::from_static(b"[]"), at(fetched_secs))
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn inm(v: &str) -> IfNoneMatch {
        IfNoneMatch::parse([v]).unwrap()
    }

    #[test]
    fn a_missing_entry_is_fetched_unconditionally() {
        assert_eq!(
            decide(None, None, TTL, at(0)),
            Decision::Fetch {
                etag: None,
                stale_usable: false
            }
        );
    }

    #[test]
    fn a_fresh_entry_is_served() {
        assert_eq!(
            decide(Some(&entry_at(0, Some("\"a\""))), None, TTL, at(10)),
            Decision::ServeFresh
        );
    }

    #[test]
    fn a_client_etag_matching_a_fresh_entry_gets_304() {
        let e = entry_at(0, Some("\"a\""));
        assert_eq!(
            decide(Some(&e), Some(&inm("W/\"a\"")), TTL, at(10)),
            Decision::NotModified
        );
        assert_eq!(
            decide(Some(&e), Some(&inm("*")), TTL, at(10)),
            Decision::NotModified
        );
        assert_eq!(
            decide(Some(&e), Some(&inm("\"b\"")), TTL, at(10)),
            Decision::ServeFresh
        );
    }

    #[test]
    fn a_client_etag_against_a_stale_entry_still_revalidates() {
        let e = entry_at(0, Some("\"a\""));
        assert_eq!(
            decide(Some(&e), Some(&inm("\"a\"")), TTL, at(31)),
            Decision::Fetch {
                etag: Some("\"a\"".into()),
                stale_usable: true
            }
        );
    }

    #[test]
    fn an_entry_past_the_stale_window_is_revalidated_but_not_a_fallback() {
        let e = entry_at(0, Some("\"a\""));
        assert_eq!(
            decide(Some(&e), None, TTL, at(2 * 24 * 3600)),
            Decision::Fetch {
                etag: Some("\"a\"".into()),
                stale_usable: false
            }
        );
    }

    #[test]
    fn a_stale_entry_without_etag_is_fetched_unconditionally() {
        assert_eq!(
            decide(Some(&entry_at(0, None)), None, TTL, at(60)),
            Decision::Fetch {
                etag: None,
                stale_usable: true
            }
        );
    }

    #[test]
    fn a_negative_entry_is_fresh_for_the_negative_ttl_then_fetched_unconditionally() {
        let headers: HeaderList = [("etag", "\"n\"")].into_iter().collect();
        let missing = CachedResponse::new(404, headers, Bytes::from_static(b"{}"), at(0));
        assert_eq!(
            decide(Some(&missing), None, Duration::ZERO, at(29)),
            Decision::ServeFresh
        );
        assert_eq!(
            decide(Some(&missing), None, Duration::from_secs(3600), at(30)),
            Decision::Fetch {
                etag: None,
                stale_usable: false
            }
        );
    }

    #[test]
    fn an_entry_from_the_future_is_revalidated_as_stale() {
        let e = entry_at(100, Some("\"a\""));
        assert_eq!(
            decide(Some(&e), None, TTL, at(50)),
            Decision::Fetch {
                etag: Some("\"a\"".into()),
                stale_usable: true
            }
        );
    }

    #[test]
    fn missing_and_redirects_resolve_as_v2_says() {
        use UpstreamVerdict as V;
        assert_eq!(
            after_fetch(Some(V::Missing), false, false),
            AfterFetch::StoreNegative
        );
        assert_eq!(
            super::after_fetch(Some(V::Missing), true, true, false),
            AfterFetch::PassThrough
        );
        assert_eq!(
            after_fetch(Some(V::Redirect), true, true),
            AfterFetch::Redirect
        );
    }

    #[test]
    fn upstream_outcomes_resolve_as_the_contract_says() {
        use UpstreamVerdict as V;
        assert_eq!(after_fetch(Some(V::Fresh), true, true), AfterFetch::Store);
        assert_eq!(
            after_fetch(Some(V::NotModified), true, true),
            AfterFetch::Refresh
        );
        assert_eq!(
            after_fetch(Some(V::NotModified), false, false),
            AfterFetch::PassThrough
        );
        assert_eq!(
            after_fetch(Some(V::PassThrough), true, true),
            AfterFetch::PassThrough
        );
        assert_eq!(
            after_fetch(Some(V::ServerError), true, true),
            AfterFetch::ServeStale
        );
        assert_eq!(after_fetch(None, true, true), AfterFetch::ServeStale);
        assert_eq!(after_fetch(None, true, false), AfterFetch::BadGateway);
        assert_eq!(
            after_fetch(Some(V::ServerError), false, false),
            AfterFetch::BadGateway
        );
        let limited = V::RateLimited {
            retry_after_secs: 9,
        };
        assert_eq!(
            after_fetch(Some(limited), true, true),
            AfterFetch::ServeStale
        );
        assert_eq!(
            after_fetch(Some(limited), false, false),
            AfterFetch::RateLimited {
                retry_after_secs: 9
            }
        );
    }
}
