//! A GitHub response as chimney keeps it in either cache tier.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::freshness::Freshness;
use super::headers::HeaderList;

/// The largest body chimney accepts from GitHub or from a store; larger
/// ones are neither cached nor truncated (CONTRACT 3).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Most header lines an entry may carry: the kept headers, with room for
/// repeated `Link`s. An entry with more was not written by chimney.
pub const MAX_ENTRY_HEADERS: usize = 32;

/// Longest header value an entry may carry; GitHub's longest kept header
/// (a four-link `Link`) is well under 1 KiB.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;

/// Longest header name an entry may carry; every kept name is shorter.
pub const MAX_HEADER_NAME_BYTES: usize = 64;

/// How long a 404 or 410 is cached when not configured (CONTRACT 1).
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);

/// Response headers kept with a cached entry and sent to clients; everything
/// else GitHub sends (cookies, hop-by-hop headers, its own cache directives)
/// stays behind.
pub const KEPT_RESPONSE_HEADERS: [&str; 6] = [
    "content-type",
    "etag",
    "link",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "location",
];

/// True for the statuses cached as negative entries: a missing resource
/// asked for in a loop costs one upstream request per negative TTL.
pub fn is_negative_status(status: u16) -> bool {
    matches!(status, 404 | 410)
}

/// Whether a body of this `Content-Type` may be served from chimney's
/// origin: JSON, GitHub's own `application/vnd.github…` types, plain text
/// and opaque bytes. Anything a browser could render as a document
/// (HTML, SVG, any XML) is refused, whoever produced it.
pub fn is_servable_content_type(value: &str) -> bool {
    let media_type = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media_type.contains("xml") {
        return false;
    }
    media_type == "application/json"
        || media_type == "text/plain"
        || media_type == "application/octet-stream"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
        || media_type.starts_with("application/vnd.github.")
}

/// Why an entry (or an upstream answer about to become one) cannot be
/// served: it is not something chimney would have stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryFault {
    /// Neither 2xx nor a negative status.
    #[error("status {0} is never cached")]
    Status(u16),
    /// A 404/410 older than the negative TTL.
    #[error("negative entry older than the negative TTL")]
    ExpiredNegative,
    /// A header chimney does not keep (a cookie, say).
    #[error("header {0:?} is not one chimney keeps")]
    Header(String),
    /// More header lines than any real entry has.
    #[error("more than {MAX_ENTRY_HEADERS} header lines")]
    TooManyHeaders,
    /// A header value that is oversized or holds control characters.
    #[error("header {0:?} has an oversized or unsafe value")]
    HeaderValue(String),
    /// A body over [`MAX_BODY_BYTES`].
    #[error("body larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    /// A body a browser could render as a document.
    #[error("content type {0:?} is not served")]
    ContentType(String),
}

/// A cached upstream response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    /// GitHub's status code (always 2xx for a stored entry).
    pub status: u16,
    /// The kept headers, in GitHub's order, Link already rewritten.
    pub headers: HeaderList,
    /// The body exactly as GitHub sent it.
    pub body: Bytes,
    /// When GitHub last vouched for this body (fetch or 304 revalidation).
    /// Wall-clock time, because entries are shared between processes.
    pub fetched_at: SystemTime,
}

impl CachedResponse {
    /// Builds an entry from an upstream answer, keeping only the headers
    /// clients are meant to see.
    pub fn new(status: u16, mut headers: HeaderList, body: Bytes, fetched_at: SystemTime) -> Self {
        headers.retain_names(|name| KEPT_RESPONSE_HEADERS.contains(&name));
        Self {
            status,
            headers,
            body,
            fetched_at,
        }
    }

    /// The entity tag GitHub gave this body, if any.
    pub fn etag(&self) -> Option<&str> {
        self.headers.get("etag")
    }

    /// Whole seconds since the entry was fetched or revalidated; zero when
    /// the clock went backwards.
    pub fn age_secs(&self, now: SystemTime) -> u64 {
        self.age(now).as_secs()
    }

    /// Time since the entry was fetched or revalidated.
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.fetched_at).unwrap_or_default()
    }

    /// The same entry, vouched for again at `now` (an upstream 304).
    /// Rate-limit headers from the 304 replace the stored ones.
    pub fn revalidated(&self, now: SystemTime, fresh_headers: &HeaderList) -> Self {
        let mut headers = self.headers.clone();
        for name in ["x-ratelimit-remaining", "x-ratelimit-reset"] {
            if let Some(value) = fresh_headers.get(name) {
                headers.map_values(name, |_| value.to_owned());
            }
        }
        Self {
            status: self.status,
            headers,
            body: self.body.clone(),
            fetched_at: now,
        }
    }

    /// A cached 404 or 410.
    pub fn is_negative(&self) -> bool {
        is_negative_status(self.status)
    }

    /// What the entry is good for at `now`: positive entries by `ttl` and
    /// the stale window, negative ones only while younger than
    /// `negative_ttl` (never as a stale fallback). A fetch time in the
    /// future is treated as stale: nothing can vouch for it.
    pub fn freshness(&self, now: SystemTime, ttl: Duration, negative_ttl: Duration) -> Freshness {
        let future = self.fetched_at > now;
        if self.is_negative() {
            if !future && self.age(now) < negative_ttl {
                Freshness::Fresh
            } else {
                Freshness::TooOld
            }
        } else if future {
            Freshness::Stale
        } else {
            Freshness::at(self.age(now), ttl)
        }
    }

    /// Checks the entry as if it had just come from GitHub: a 2xx, or a
    /// 404/410 within `negative_ttl`, and [`Self::check_served`]. Entries
    /// read from a shared store pass this before they are used.
    ///
    /// # Errors
    /// The first [`EntryFault`] found.
    pub fn check(&self, now: SystemTime, negative_ttl: Duration) -> Result<(), EntryFault> {
        match self.status {
            200..=299 => {}
            status if is_negative_status(status) => {
                if self.age(now) > negative_ttl {
                    return Err(EntryFault::ExpiredNegative);
                }
            }
            status => return Err(EntryFault::Status(status)),
        }
        check_served(&self.headers, self.body.len())
    }
}

/// The status-independent rules every answer chimney serves must pass:
/// only kept headers, bounded in number and size and free of control
/// characters, a body within [`MAX_BODY_BYTES`], and a servable
/// `Content-Type` (see [`is_servable_content_type`]).
///
/// # Errors
/// The first [`EntryFault`] found.
pub fn check_served(headers: &HeaderList, body_len: usize) -> Result<(), EntryFault> {
    if headers.len() > MAX_ENTRY_HEADERS {
        return Err(EntryFault::TooManyHeaders);
    }
    for (name, value) in headers.iter() {
        if name.len() > MAX_HEADER_NAME_BYTES || !KEPT_RESPONSE_HEADERS.contains(&name) {
            return Err(EntryFault::Header(
                name.chars().take(MAX_HEADER_NAME_BYTES).collect(),
            ));
        }
        if value.len() > MAX_HEADER_VALUE_BYTES
            || value.chars().any(|c| c.is_control() && c != '\t')
        {
            return Err(EntryFault::HeaderValue(name.to_owned()));
        }
        if name == "content-type" && !is_servable_content_type(value) {
            return Err(EntryFault::ContentType(value.to_owned()));
        }
    }
    if body_len > MAX_BODY_BYTES {
        return Err(EntryFault::BodyTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> HeaderList {
        [
            ("Content-Type", "application/json"),
            ("ETag", "\"e1\""),
            ("Set-Cookie", "x=y"),
            ("Connection", "close"),
            ("X-RateLimit-Remaining", "10"),
            ("Vary", "Accept"),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn only_kept_headers_survive() {
        let entry = CachedResponse::new(
            200,
            headers(),
            Bytes::from_static(b"{}"),
            SystemTime::UNIX_EPOCH,
        );
        let names: Vec<&str> = entry.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["content-type", "etag", "x-ratelimit-remaining"]);
        assert_eq!(entry.etag(), Some("\"e1\""));
    }

    #[test]
    fn revalidation_moves_fetch_time_and_refreshes_rate_limit() {
        let t0 = SystemTime::UNIX_EPOCH;
        let entry = CachedResponse::new(200, headers(), Bytes::from_static(b"{}"), t0);
        let later = t0 + Duration::from_secs(90);
        let fresh: HeaderList = [("x-ratelimit-remaining", "9")].into_iter().collect();
        let again = entry.revalidated(later, &fresh);
        assert_eq!(again.fetched_at, later);
        assert_eq!(again.headers.get("x-ratelimit-remaining"), Some("9"));
        assert_eq!(again.body, entry.body);
        assert_eq!(again.age_secs(later + Duration::from_millis(1500)), 1);
    }

    #[test]
    fn age_is_zero_when_the_clock_goes_backwards() {
        let entry = CachedResponse::new(
            200,
            HeaderList::new(),
            Bytes::new(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(10),
        );
        assert_eq!(entry.age_secs(SystemTime::UNIX_EPOCH), 0);
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;

    const NEGATIVE_TTL: Duration = Duration::from_secs(30);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn entry(status: u16, headers: &[(&str, &str)], body: &'static [u8]) -> CachedResponse {
        CachedResponse {
            status,
            headers: headers.iter().copied().collect(),
            body: Bytes::from_static(body),
            fetched_at: at(0),
        }
    }

    #[test]
    fn a_json_entry_as_github_sends_it_passes() {
        let ok = entry(
            200,
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("etag", "W/\"e\""),
                ("link", "</api/github/pulls?page=2>; rel=\"next\""),
                ("link", "</api/github/pulls?page=9>; rel=\"last\""),
            ],
            b"[]",
        );
        assert_eq!(ok.check(at(5), NEGATIVE_TTL), Ok(()));
        let raw = entry(
            200,
            &[("content-type", "application/vnd.github.v3.raw")],
            b"x",
        );
        assert_eq!(raw.check(at(5), NEGATIVE_TTL), Ok(()));
    }

    #[test]
    fn statuses_other_than_2xx_and_fresh_negatives_fail() {
        for status in [301, 302, 403, 500, 0, 999] {
            assert_eq!(
                entry(status, &[], b"").check(at(0), NEGATIVE_TTL),
                Err(EntryFault::Status(status))
            );
        }
        assert_eq!(entry(404, &[], b"").check(at(30), NEGATIVE_TTL), Ok(()));
        assert_eq!(entry(410, &[], b"").check(at(10), NEGATIVE_TTL), Ok(()));
        assert_eq!(
            entry(404, &[], b"").check(at(31), NEGATIVE_TTL),
            Err(EntryFault::ExpiredNegative)
        );
    }

    #[test]
    fn headers_chimney_never_keeps_fail() {
        let cookie = entry(200, &[("set-cookie", "session=x")], b"{}");
        assert_eq!(
            cookie.check(at(0), NEGATIVE_TTL),
            Err(EntryFault::Header("set-cookie".into()))
        );
    }

    #[test]
    fn unbounded_or_unsafe_headers_fail() {
        let many: Vec<(&str, &str)> = vec![("link", "<a>"); MAX_ENTRY_HEADERS + 1];
        assert_eq!(
            entry(200, &many, b"").check(at(0), NEGATIVE_TTL),
            Err(EntryFault::TooManyHeaders)
        );
        let long = "a".repeat(MAX_HEADER_VALUE_BYTES + 1);
        assert_eq!(
            entry(200, &[("etag", &long)], b"").check(at(0), NEGATIVE_TTL),
            Err(EntryFault::HeaderValue("etag".into()))
        );
        assert_eq!(
            entry(200, &[("etag", "a\r\nset-cookie: x")], b"").check(at(0), NEGATIVE_TTL),
            Err(EntryFault::HeaderValue("etag".into()))
        );
    }

    #[test]
    fn document_content_types_fail() {
        for bad in [
            "text/html",
            "text/html; charset=utf-8",
            "image/svg+xml",
            "application/xhtml+xml",
            "application/vnd.github.evil+xml",
            "text/javascript",
            "application/javascript",
        ] {
            assert_eq!(
                entry(200, &[("content-type", bad)], b"<script>").check(at(0), NEGATIVE_TTL),
                Err(EntryFault::ContentType(bad.into())),
                "{bad}"
            );
        }
        for good in [
            "application/json",
            "APPLICATION/JSON; charset=utf-8",
            "application/vnd.github+json",
            "application/vnd.github.v3.diff",
            "application/problem+json",
            "text/plain; charset=utf-8",
            "application/octet-stream",
        ] {
            assert!(is_servable_content_type(good), "{good}");
        }
    }

    #[test]
    fn a_body_over_the_limit_fails() {
        assert_eq!(
            check_served(&HeaderList::new(), MAX_BODY_BYTES + 1),
            Err(EntryFault::BodyTooLarge)
        );
        assert_eq!(check_served(&HeaderList::new(), MAX_BODY_BYTES), Ok(()));
    }

    #[test]
    fn a_fetch_time_in_the_future_is_stale_not_fresh() {
        let ttl = Duration::from_secs(60);
        let e = entry(200, &[], b"{}");
        assert_eq!(e.freshness(at(10), ttl, NEGATIVE_TTL), Freshness::Fresh);
        let before = SystemTime::UNIX_EPOCH + Duration::from_secs(999_000);
        assert_eq!(e.freshness(before, ttl, NEGATIVE_TTL), Freshness::Stale);
    }

    #[test]
    fn negative_entries_are_fresh_for_the_negative_ttl_then_useless() {
        let ttl = Duration::from_secs(600);
        let e = entry(404, &[], b"{}");
        assert_eq!(e.freshness(at(29), ttl, NEGATIVE_TTL), Freshness::Fresh);
        assert_eq!(e.freshness(at(30), ttl, NEGATIVE_TTL), Freshness::TooOld);
        let before = SystemTime::UNIX_EPOCH;
        assert_eq!(e.freshness(before, ttl, NEGATIVE_TTL), Freshness::TooOld);
    }
}
