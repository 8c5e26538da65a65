//! A GitHub response as chimney keeps it in either cache tier.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::headers::HeaderList;

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

    /// Approximate memory taken, used to weigh entries in the memory tier.
    pub fn weight(&self) -> usize {
        self.body.len() + self.headers.byte_len() + 64
    }
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
