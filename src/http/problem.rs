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

/// Where problem types are documented; a type is this plus its slug.
pub const PROBLEM_TYPE_BASE: &str = "https://chimney.beerpub.dev/problems/";

/// Every problem type chimney answers with, by slug. The `type` field's
/// description in the OpenAPI document lists them (a test holds the two
/// together); add a new slug to both.
pub const PROBLEM_TYPES: &[&str] = &[
    "bad-request",
    "not-found",
    "method-not-allowed",
    "unauthorized",
    "cors-refused",
    "endpoint-disabled",
    "invalidate-all-disabled",
    "payload-too-large",
    "path-not-proxied",
    "uri-too-long",
    "upstream-failure",
    "upstream-redirect",
    "upstream-rate-limited",
    "rate-limit-reserve",
    "internal",
];

/// A problem details object.
#[derive(Debug, Clone, PartialEq, Eq, Object, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// A URI reference naming the problem type:
    /// `https://chimney.beerpub.dev/problems/` followed by one of
    /// `bad-request`, `not-found`, `method-not-allowed`, `unauthorized`,
    /// `cors-refused`, `endpoint-disabled`, `invalidate-all-disabled`,
    /// `payload-too-large`, `path-not-proxied`, `uri-too-long`,
    /// `upstream-failure`, `upstream-redirect`, `upstream-rate-limited`,
    /// `rate-limit-reserve` or `internal`.
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
            kind: format!("{PROBLEM_TYPE_BASE}{slug}"),
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

    /// `403 Forbidden`: the proxy does not serve this GitHub path at all
    /// (it matches no `proxy_paths` pattern).
    pub fn path_not_proxied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "path-not-proxied",
            "Forbidden",
            "this GitHub path is not proxied; see proxy_paths",
        )
    }

    /// `414 URI Too Long`: the GitHub path exceeds the limit.
    pub fn uri_too_long(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            "URI Too Long",
            detail,
        )
    }

    /// `502 Bad Gateway`: GitHub redirected outside the repository served.
    pub fn upstream_redirect(status: u16) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream-redirect",
            "Bad Gateway",
            format!("GitHub answered {status} with a redirect outside the repository served"),
        )
    }

    /// `503 Service Unavailable`: little of GitHub's rate limit is left and
    /// it is kept for resources already cached.
    pub fn rate_limit_reserve(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "rate-limit-reserve",
            "Service Unavailable",
            format!(
                "GitHub's rate limit is nearly spent and kept for cached resources; retry in {retry_after_secs} s"
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_problem_has_a_listed_type() {
        for problem in [
            Problem::bad_request("x"),
            Problem::not_found("x"),
            Problem::method_not_allowed("x"),
            Problem::bad_gateway("x"),
            Problem::rate_limited(1),
            Problem::internal(),
            Problem::path_not_proxied(),
            Problem::uri_too_long("x"),
            Problem::upstream_redirect(302),
            Problem::rate_limit_reserve(1),
        ] {
            let slug = problem
                .kind
                .strip_prefix(PROBLEM_TYPE_BASE)
                .expect("documented base");
            assert!(PROBLEM_TYPES.contains(&slug), "{slug} is not listed");
        }
    }
}
