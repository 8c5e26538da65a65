//! RFC 9457 problem details, the body of every error chimney returns.
//!
//! Bodies are built from fixed texts and the caller's own input; causes
//! that might carry internal detail go to the log, never to the client.

use poem::http::StatusCode;
use poem::http::header::CONTENT_TYPE;
use poem::{Body, Response};
use poem_openapi::Object;

/// The media type of problem responses.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem details object.
#[derive(Debug, Clone, PartialEq, Eq, Object, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// A URI reference naming the problem type.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this case.
    pub detail: String,
}

impl Problem {
    /// A problem of type `slug` (documented under `/problems/{slug}`).
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("https://chimney.beerpub.dev/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    /// `400 Bad Request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad Request",
            detail,
        )
    }

    /// `404 Not Found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not Found", detail)
    }

    /// `405 Method Not Allowed`.
    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method Not Allowed",
            detail,
        )
    }

    /// `502 Bad Gateway`: GitHub failed and nothing usable was cached.
    pub fn bad_gateway(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream-failure",
            "Bad Gateway",
            detail,
        )
    }

    /// `503 Service Unavailable`: GitHub's rate limit is exhausted.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream-rate-limited",
            "Service Unavailable",
            format!("GitHub's rate limit is exhausted; retry in {retry_after_secs} s"),
        )
    }

    /// `500 Internal Server Error`, with no detail of the cause.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal Server Error",
            "the server failed to handle the request; the cause is logged",
        )
    }

    /// The status as a `StatusCode`.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The problem as an HTTP response.
    pub fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        Response::builder()
            .status(status)
            .header(CONTENT_TYPE, PROBLEM_JSON)
            .body(Body::from_vec(body))
    }
}
