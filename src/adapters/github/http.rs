//! `GithubHttp`: `UpstreamGithub` over reqwest with rustls.
//!
//! It owns the transport concerns: the deadline, the body cap, the server's
//! token and the headers that make one cache key hold one representation.
//! What a status code means is decided in the domain, not here.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, IF_NONE_MATCH};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::domain::{HeaderList, is_hop_by_hop};
use crate::ports::{UpstreamError, UpstreamGithub, UpstreamRequest, UpstreamResponse};

/// The media type GitHub recommends; fixing it means one cache key always
/// holds one representation.
const GITHUB_ACCEPT: &str = "application/vnd.github+json";
/// The REST API version chimney is written against.
const GITHUB_API_VERSION: &str = "2022-11-28";

/// The first allocation for a body of unknown or untrusted length. A
/// `Content-Length` only ever shrinks it: GitHub (or anything posing as
/// it) announcing gigabytes must not make chimney reserve them.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// How to reach GitHub.
#[derive(Debug, Clone)]
pub struct GithubHttpConfig {
    /// API base URL, e.g. `https://api.github.com`.
    pub base_url: Url,
    /// Token sent as `Authorization: Bearer`; `None` means unauthenticated.
    pub token: Option<SecretString>,
    /// Deadline for one request, body included.
    pub timeout: Duration,
    /// Largest body accepted; a larger one is an error, never truncated.
    pub max_body_bytes: usize,
}

/// GitHub over HTTPS. Cloning shares the connection pool.
#[derive(Clone)]
pub struct GithubHttp {
    client: reqwest::Client,
    base: String,
    max_body_bytes: usize,
}

/// Why the HTTP client could not be built. Neither variant ever shows the
/// token.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The TLS stack or the client could not be set up.
    #[error("failed to build the GitHub HTTP client")]
    Client(#[source] reqwest::Error),
    /// The token cannot be sent in an `Authorization` header (a control
    /// character, a space, non-ASCII text): refusing beats silently going
    /// unauthenticated.
    #[error("GITHUB_TOKEN is not a valid HTTP header value (its value is not shown)")]
    InvalidToken,
}

impl GithubHttp {
    /// Builds the client. Fails only if the TLS stack cannot be set up or
    /// the token is not a valid header value.
    pub fn new(config: GithubHttpConfig) -> Result<Self, BuildError> {
        // reqwest is built without a bundled crypto provider; ring is
        // installed process-wide once (a second install is a harmless no-op).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(GITHUB_ACCEPT));
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static(GITHUB_API_VERSION),
        );
        if let Some(token) = &config.token {
            let token = token.expose_secret();
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(BuildError::InvalidToken);
            }
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| BuildError::InvalidToken)?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("chimney/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()
            .map_err(BuildError::Client)?;
        Ok(Self {
            client,
            base: config.base_url.as_str().trim_end_matches('/').to_owned(),
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// Reads the body chunk by chunk, refusing it the moment it is known
    /// to exceed the limit (from `Content-Length`, before reading, or from
    /// the bytes so far). The buffer grows geometrically but never past the
    /// limit, so no body, whatever it announces, costs more than the limit.
    async fn read_capped(&self, mut response: reqwest::Response) -> Result<Bytes, UpstreamError> {
        let limit = self.max_body_bytes;
        let announced = response.content_length();
        if announced.is_some_and(|len| len > limit as u64) {
            return Err(UpstreamError::BodyTooLarge { limit });
        }
        let initial = announced.map_or(INITIAL_BODY_CAPACITY, |len| {
            usize::try_from(len)
                .unwrap_or(limit)
                .min(INITIAL_BODY_CAPACITY)
        });
        let mut body: Vec<u8> = Vec::with_capacity(initial.min(limit));
        while let Some(chunk) = response.chunk().await.map_err(map_transport_error)? {
            let needed = body.len() + chunk.len();
            if needed > limit {
                return Err(UpstreamError::BodyTooLarge { limit });
            }
            if needed > body.capacity() {
                body.reserve_exact(grown_capacity(body.capacity(), needed, limit) - body.len());
            }
            body.extend_from_slice(&chunk);
        }
        // The body may be cached for a day and is weighed by its length: a
        // chunked answer must not keep the spare capacity it was read into.
        body.shrink_to_fit();
        Ok(Bytes::from(body))
    }
}

#[async_trait]
impl UpstreamGithub for GithubHttp {
    async fn get(&self, request: UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
        let url = format!("{}{}", self.base, request.path_and_query);
        let mut builder = self.client.get(url);
        if let Some(etag) = &request.if_none_match {
            builder = builder.header(IF_NONE_MATCH, etag.as_str());
        }
        let response = builder.send().await.map_err(map_transport_error)?;
        let status = response.status().as_u16();
        let headers = end_to_end_headers(response.headers());
        let body = self.read_capped(response).await?;
        Ok(UpstreamResponse {
            status,
            headers,
            body,
        })
    }
}

/// The next buffer size for a body that needs `needed` bytes: at least
/// double the current one (amortised O(n) copying), never more than `limit`.
fn grown_capacity(current: usize, needed: usize, limit: usize) -> usize {
    needed.max(current.saturating_mul(2)).min(limit)
}

/// Copies the headers a proxy may pass on: hop-by-hop headers, and any
/// header the `Connection` header names, are dropped.
fn end_to_end_headers(map: &HeaderMap) -> HeaderList {
    let connection_listed: Vec<String> = map
        .get_all(reqwest::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    map.iter()
        .filter(|(name, _)| {
            !is_hop_by_hop(name.as_str()) && !connection_listed.iter().any(|c| c == name.as_str())
        })
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?.to_owned())))
        .collect()
}

fn map_transport_error(error: reqwest::Error) -> UpstreamError {
    if error.is_timeout() {
        UpstreamError::Timeout
    } else {
        UpstreamError::Unreachable(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: &str) -> GithubHttpConfig {
        GithubHttpConfig {
            base_url: Url::parse("https://api.github.com").unwrap(),
            token: Some(SecretString::from(token.to_owned())),
            timeout: Duration::from_secs(1),
            max_body_bytes: 1024,
        }
    }

    #[test]
    fn a_token_that_is_not_a_header_value_is_refused_without_echo() {
        for bad in ["ghp_abc\u{1}def", "ghp abc", "ghp_ä", "tok\r\nX-Evil: 1"] {
            let Err(error) = GithubHttp::new(config(bad)) else {
                panic!("{bad:?} was accepted");
            };
            assert!(matches!(error, BuildError::InvalidToken));
            assert!(!error.to_string().contains("ghp"), "{error}");
        }
        assert!(GithubHttp::new(config("ghp_0123456789abcdef")).is_ok());
    }

    #[test]
    fn the_body_buffer_never_grows_past_the_limit() {
        let limit = 10 * 1024 * 1024;
        let mut capacity = INITIAL_BODY_CAPACITY;
        let mut len = 0;
        while len < limit {
            let needed = (len + 16 * 1024).min(limit);
            if needed > capacity {
                capacity = grown_capacity(capacity, needed, limit);
            }
            assert!(capacity >= needed && capacity <= limit, "{capacity}");
            len = needed;
        }
        assert_eq!(grown_capacity(limit - 1, limit, limit), limit);
        assert_eq!(grown_capacity(usize::MAX / 2 + 1, 10, limit), limit);
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_dropped() {
        let mut map = HeaderMap::new();
        map.insert("connection", HeaderValue::from_static("close, x-private"));
        map.insert("x-private", HeaderValue::from_static("1"));
        map.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        map.insert("etag", HeaderValue::from_static("\"a\""));
        map.append("vary", HeaderValue::from_static("Accept"));
        map.append("vary", HeaderValue::from_static("Accept-Encoding"));
        let list = end_to_end_headers(&map);
        let names: Vec<&str> = list.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["etag", "vary", "vary"]);
    }
}
