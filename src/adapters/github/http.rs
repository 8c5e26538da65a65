//! `GithubHttp`: `UpstreamGithub` over reqwest with rustls.
//!
//! It owns the transport concerns: the deadline, the body cap, the server's
//! token and the headers that make one cache key hold one representation.
//! What a status code means is decided in the domain, not here.

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
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

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("failed to build the GitHub HTTP client")]
pub struct BuildError(#[source] reqwest::Error);

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
            let value = format!("Bearer {}", token.expose_secret());
            if let Ok(mut value) = HeaderValue::from_str(&value) {
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("chimney/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()
            .map_err(BuildError)?;
        Ok(Self {
            client,
            base: config.base_url.as_str().trim_end_matches('/').to_owned(),
            max_body_bytes: config.max_body_bytes,
        })
    }

    async fn read_capped(&self, mut response: reqwest::Response) -> Result<Bytes, UpstreamError> {
        let limit = self.max_body_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(UpstreamError::BodyTooLarge { limit });
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(map_transport_error)? {
            if body.len() + chunk.len() > limit {
                return Err(UpstreamError::BodyTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
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
