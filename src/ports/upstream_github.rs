//! `UpstreamGithub`: how chimney asks GitHub for a resource.

use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::HeaderList;

/// One GET to the GitHub API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// Path and query below the API base URL, e.g. `/repos/o/r/pulls?state=open`.
    pub path_and_query: String,
    /// An ETag to revalidate, sent as `If-None-Match`.
    pub if_none_match: Option<String>,
}

/// GitHub's answer, whatever its status.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers, hop-by-hop headers already removed.
    pub headers: HeaderList,
    /// The complete body.
    pub body: Bytes,
}

/// Why no usable answer arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// GitHub did not answer within the deadline.
    #[error("GitHub did not answer in time")]
    Timeout,
    /// The connection failed or broke off.
    #[error("GitHub could not be reached")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The body exceeded the size limit; nothing of it is kept.
    #[error("GitHub's response exceeded the {limit}-byte limit")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Not sent: GitHub's rate limit for the token is exhausted and has
    /// not reset yet (the rate-limit gate held the request back).
    #[error("not sent: GitHub's rate limit is exhausted for {retry_after_secs} s more")]
    RateLimited {
        /// Seconds until GitHub accepts requests again.
        retry_after_secs: u64,
    },
}

/// The GitHub REST API.
#[async_trait]
pub trait UpstreamGithub: Send + Sync + 'static {
    /// Performs one GET and returns GitHub's answer, whatever its status.
    /// Sends the server's token, never a client's.
    ///
    /// # Errors
    /// MUST return [`UpstreamError::Timeout`] when no complete answer arrives
    /// in time, [`UpstreamError::BodyTooLarge`] when the body exceeds the
    /// limit, and [`UpstreamError::Unreachable`] for transport failures.
    /// [`UpstreamError::RateLimited`] is for a wrapper that holds requests
    /// back without sending them.
    async fn get(&self, request: UpstreamRequest) -> Result<UpstreamResponse, UpstreamError>;
}
