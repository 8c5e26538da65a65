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

/// Where the problem types are documented: each `type` URI is this base plus
/// the type's slug, and chimney serves that page itself (`GET
/// /problems/{slug}`), so every `type` a client sees resolves.
pub const PROBLEM_TYPE_BASE: &str = "https://chimney.beerpub.dev/problems/";

/// Every problem type chimney answers with: the slug of its `type` URI, its
/// title, and the page that explains it. A problem can only be built from
/// one of these, so none lacks its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// 400: the request is malformed.
    BadRequest,
    /// 401: a missing or wrong bearer token.
    Unauthorized,
    /// 403: a browser request from an origin not allowed on admin endpoints.
    CorsRefused,
    /// 403: `all: true` invalidation while it is not allowed.
    InvalidateAllDisabled,
    /// 404: nothing at this path.
    NotFound,
    /// 405: a method the endpoint does not take.
    MethodNotAllowed,
    /// 413: a body over the cap.
    PayloadTooLarge,
    /// 500: chimney failed; the cause is logged.
    Internal,
    /// 502: GitHub failed and nothing usable was cached.
    UpstreamFailure,
    /// 503: GitHub's rate limit is exhausted.
    UpstreamRateLimited,
    /// 503: the endpoint's token is not configured.
    EndpointDisabled,
    /// 403: the GitHub path matches no `proxy_paths` pattern.
    PathNotProxied,
    /// 414: the GitHub path is over 2,048 bytes.
    UriTooLong,
    /// 502: GitHub redirected outside the repository served.
    UpstreamRedirect,
    /// 503: little of GitHub's rate limit is left, and it is kept for
    /// resources already cached.
    RateLimitReserve,
    /// 503: the instance is shutting down and takes no new traffic.
    NotReady,
    /// 503: an invalidation could not reach Dragonfly.
    SharedTierUnavailable,
    /// 503: too many fetches already wait for GitHub, or this one waited
    /// too long, and nothing usable was cached.
    UpstreamBusy,
}

impl ProblemType {
    /// Every type, in the order the index page lists them.
    pub const ALL: [Self; 18] = [
        Self::BadRequest,
        Self::Unauthorized,
        Self::CorsRefused,
        Self::InvalidateAllDisabled,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::PayloadTooLarge,
        Self::Internal,
        Self::UpstreamFailure,
        Self::UpstreamRateLimited,
        Self::EndpointDisabled,
        Self::PathNotProxied,
        Self::UriTooLong,
        Self::UpstreamRedirect,
        Self::RateLimitReserve,
        Self::NotReady,
        Self::SharedTierUnavailable,
        Self::UpstreamBusy,
    ];

    /// The last segment of the type URI.
    pub fn slug(self) -> &'static str {
        match self {
            Self::BadRequest => "bad-request",
            Self::Unauthorized => "unauthorized",
            Self::CorsRefused => "cors-refused",
            Self::InvalidateAllDisabled => "invalidate-all-disabled",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::PayloadTooLarge => "payload-too-large",
            Self::Internal => "internal",
            Self::UpstreamFailure => "upstream-failure",
            Self::UpstreamRateLimited => "upstream-rate-limited",
            Self::EndpointDisabled => "endpoint-disabled",
            Self::PathNotProxied => "path-not-proxied",
            Self::UriTooLong => "uri-too-long",
            Self::UpstreamRedirect => "upstream-redirect",
            Self::RateLimitReserve => "rate-limit-reserve",
            Self::NotReady => "not-ready",
            Self::SharedTierUnavailable => "shared-tier-unavailable",
            Self::UpstreamBusy => "upstream-busy",
        }
    }

    /// The problem's `title`: the status's reason phrase.
    pub fn title(self) -> &'static str {
        match self {
            Self::BadRequest => "Bad Request",
            Self::Unauthorized => "Unauthorized",
            Self::CorsRefused | Self::InvalidateAllDisabled | Self::PathNotProxied => "Forbidden",
            Self::UriTooLong => "URI Too Long",
            Self::NotFound => "Not Found",
            Self::MethodNotAllowed => "Method Not Allowed",
            Self::PayloadTooLarge => "Payload Too Large",
            Self::Internal => "Internal Server Error",
            Self::UpstreamFailure | Self::UpstreamRedirect => "Bad Gateway",
            Self::UpstreamRateLimited
            | Self::EndpointDisabled
            | Self::RateLimitReserve
            | Self::NotReady
            | Self::SharedTierUnavailable
            | Self::UpstreamBusy => "Service Unavailable",
        }
    }

    /// What the problem means and what a client can do about it.
    pub fn explanation(self) -> &'static str {
        match self {
            Self::BadRequest => {
                "The request could not be used as it is: malformed JSON, a missing or mistyped field, a bad query parameter, or a GitHub path that is not allowed (a `..` segment, `//`, a scheme, control characters). `detail` says which. Fix the request; retrying it unchanged fails again."
            }
            Self::Unauthorized => {
                "The endpoint needs `Authorization: Bearer <token>` with this deployment's token, and the request carried none or a different one. The answer carries `WWW-Authenticate: Bearer`."
            }
            Self::CorsRefused => {
                "A browser sent this admin request from an origin that is not in `CHIMNEY_CORS_ORIGINS`. Call the endpoint from an allowed origin, or from a server."
            }
            Self::InvalidateAllDisabled => {
                "`all: true` invalidation empties the whole cache and is refused unless the deployment sets `INVALIDATE_ALL_ALLOWED=true`. Invalidate a path prefix instead."
            }
            Self::NotFound => "chimney serves nothing at this path.",
            Self::MethodNotAllowed => {
                "The endpoint does not take this method; the `Allow` header lists the ones it takes."
            }
            Self::PayloadTooLarge => {
                "The request body is over the endpoint's cap (64 KiB for the admin endpoints). Send a smaller body."
            }
            Self::Internal => {
                "chimney failed while handling the request. The cause is in its log and trace, under the response's `X-Trace-ID`; the body never carries it."
            }
            Self::UpstreamFailure => {
                "GitHub did not answer usably (a connection error, a timeout, a 5xx, or a body over 10 MiB) and chimney had no cached copy to serve instead. Retry later."
            }
            Self::UpstreamRateLimited => {
                "GitHub's rate limit for chimney's token is exhausted and chimney had no cached copy to serve instead. `Retry-After` says when GitHub will answer again."
            }
            Self::EndpointDisabled => {
                "The endpoint's token is not configured on this instance, so the endpoint is switched off. The operator enables it by setting the token named in `detail`."
            }
            Self::PathNotProxied => {
                "chimney forwards only the GitHub paths its `proxy_paths` patterns list (pull requests, issues, commits, releases, workflow runs and the like), so the server's token never reaches hooks, keys, secrets, traffic or other private endpoints. The operator can extend the list with `CHIMNEY_PROXY_PATHS`."
            }
            Self::UriTooLong => {
                "The GitHub path is longer than 2,048 bytes; no GitHub resource has such a path."
            }
            Self::UpstreamRedirect => {
                "GitHub answered with a redirect that leads outside the repository chimney serves (another repository, another host, a signed download URL). chimney does not pass such redirects on."
            }
            Self::SharedTierUnavailable => {
                "The invalidation cleared this instance's memory tier, but Dragonfly, the tier the instances share, could not be reached, so its entries (and the other instances that read them) may still serve what was invalidated. Retry the invalidation."
            }
            Self::UpstreamBusy => {
                "Too many requests were already waiting for GitHub (more than `upstream_queue`), or this one waited longer than `upstream_queue_timeout` for a free connection, and chimney had no cached copy to serve instead. Nothing was sent to GitHub. Retry after the `Retry-After` seconds."
            }
            Self::NotReady => {
                "This instance received a stop signal: it still answers the requests that reach it, but a load balancer polling `/readyz` should send new traffic to another instance."
            }
            Self::RateLimitReserve => {
                "Little of GitHub's rate limit is left and chimney keeps it for revalidating what it has cached, so a resource it has not cached yet is refused for now. `Retry-After` says when the limit resets."
            }
        }
    }

    /// The type URI.
    pub fn uri(self) -> String {
        format!("{PROBLEM_TYPE_BASE}{}", self.slug())
    }

    /// The type whose slug is `slug`.
    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.slug() == slug)
    }
}

/// A problem details object.
#[derive(Debug, Clone, PartialEq, Eq, Object, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// A URI reference naming the problem type:
    /// `https://chimney.beerpub.dev/problems/` followed by one of
    /// `bad-request`, `not-found`, `method-not-allowed`, `unauthorized`,
    /// `cors-refused`, `endpoint-disabled`, `invalidate-all-disabled`,
    /// `payload-too-large`, `path-not-proxied`, `uri-too-long`,
    /// `upstream-failure`, `upstream-redirect`, `upstream-rate-limited`,
    /// `rate-limit-reserve`, `upstream-busy`, `not-ready`, `shared-tier-unavailable` or
    /// `internal`.
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
    /// A problem of type `kind` (documented at its type URI).
    pub fn new(status: StatusCode, kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.uri(),
            title: kind.title().to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    /// `400 Bad Request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ProblemType::BadRequest, detail)
    }

    /// `404 Not Found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ProblemType::NotFound, detail)
    }

    /// `405 Method Not Allowed`.
    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ProblemType::MethodNotAllowed,
            detail,
        )
    }

    /// `502 Bad Gateway`: GitHub failed and nothing usable was cached.
    pub fn bad_gateway(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            ProblemType::UpstreamFailure,
            detail,
        )
    }

    /// `503 Service Unavailable`: GitHub's rate limit is exhausted.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::UpstreamRateLimited,
            format!("GitHub's rate limit is exhausted; retry in {retry_after_secs} s"),
        )
    }

    /// `503 Service Unavailable`: no outbound slot for the fetch and
    /// nothing usable cached.
    pub fn upstream_busy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::UpstreamBusy,
            "too many requests are waiting for GitHub; retry in 1 s",
        )
    }

    /// `403 Forbidden`: the proxy does not serve this GitHub path at all
    /// (it matches no `proxy_paths` pattern).
    pub fn path_not_proxied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ProblemType::PathNotProxied,
            "this GitHub path is not proxied; see proxy_paths",
        )
    }

    /// `414 URI Too Long`: the GitHub path exceeds the limit.
    pub fn uri_too_long(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::URI_TOO_LONG, ProblemType::UriTooLong, detail)
    }

    /// `502 Bad Gateway`: GitHub redirected outside the repository served.
    pub fn upstream_redirect(status: u16) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            ProblemType::UpstreamRedirect,
            format!("GitHub answered {status} with a redirect outside the repository served"),
        )
    }

    /// `503 Service Unavailable`: little of GitHub's rate limit is left and
    /// it is kept for resources already cached.
    pub fn rate_limit_reserve(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::RateLimitReserve,
            format!(
                "GitHub's rate limit is nearly spent and kept for cached resources; retry in {retry_after_secs} s"
            ),
        )
    }

    /// `500 Internal Server Error`, with no detail of the cause.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ProblemType::Internal,
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
            assert!(
                ProblemType::from_slug(slug).is_some(),
                "{slug} is not listed"
            );
        }
    }
}
