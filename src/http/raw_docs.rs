//! The OpenAPI description of the two endpoints that are not poem-openapi
//! operations: the GitHub proxy (it reads the raw, still percent-encoded
//! path, which an operation's decoded path parameter would hide) and the
//! Prometheus scrape (not JSON). `RawEndpointDocs` adds them to the
//! generated document; the route table serves them (see `http::routes()`),
//! so its `add_routes` adds nothing.

use std::collections::HashMap;

use poem::endpoint::BoxEndpoint;
use poem::http::Method;
use poem_openapi::payload::{Binary, Json, PlainText};
use poem_openapi::registry::{
    MetaApi, MetaOperation, MetaOperationParam, MetaParamIn, MetaPath, Registry,
};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, OpenApi, Tags as _};

use super::problem::Problem;
use super::routes::{METRICS, PROXY_TEMPLATE};

/// Answers of `GET|HEAD /api/github/{path}`. Every answer also carries
/// `Access-Control-Allow-Origin: *`, `X-Content-Type-Options: nosniff` and
/// `X-Trace-ID`.
#[derive(ApiResponse)]
pub enum ProxyAnswer {
    /// GitHub's representation, from the cache or fetched now. The body is
    /// GitHub's JSON as GitHub sent it.
    #[oai(status = 200)]
    Ok(
        Json<serde_json::Value>,
        /// GitHub's entity tag; send it back in `If-None-Match`.
        #[oai(header = "ETag")]
        Option<String>,
        /// How the answer was produced: `HIT` (fresh from either cache
        /// tier), `MISS` (fetched with no usable entry), `REVALIDATED`
        /// (GitHub answered 304), `STALE` (served after GitHub failed),
        /// `COALESCED` (shared a concurrent request's fetch).
        #[oai(header = "X-Cache")]
        String,
        /// Whole seconds since the representation was fetched from GitHub.
        #[oai(header = "X-Cache-Age")]
        u64,
        /// GitHub's pagination links, pointing back at `/api/github/…` for
        /// the repository served.
        #[oai(header = "Link")]
        Option<String>,
        /// GitHub's remaining rate limit when the entry was fetched.
        #[oai(header = "X-RateLimit-Remaining")]
        Option<String>,
        /// When GitHub's rate limit resets (Unix seconds).
        #[oai(header = "X-RateLimit-Reset")]
        Option<String>,
        /// The trace of this request.
        #[oai(header = "X-Trace-ID")]
        String,
    ),
    /// The client's `If-None-Match` matches the fresh entry's ETag.
    #[oai(status = 304)]
    NotModified(
        #[oai(header = "ETag")] Option<String>,
        #[oai(header = "X-Cache")] String,
    ),
    /// GitHub's redirect for the repository served (its `Location` is
    /// rewritten to `/api/github/…`), passed through, never cached.
    #[oai(status_range = "3XX")]
    Redirect(poem::http::StatusCode, Binary<Vec<u8>>),
    /// The path is not a GitHub API path chimney forwards: a `..` segment
    /// (encoded or not), `//`, a scheme, control characters.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadPath(Json<Problem>),
    /// The path matches none of the `proxy_paths` patterns (problem
    /// `path-not-proxied`); GitHub is not asked.
    #[oai(status = 403, content_type = "application/problem+json")]
    PathNotProxied(Json<Problem>),
    /// The GitHub path is over 2,048 bytes (problem `uri-too-long`).
    #[oai(status = 414, content_type = "application/problem+json")]
    UriTooLong(Json<Problem>),
    /// GitHub's own 4xx answer (404, 410, 422, …), passed through with its
    /// JSON body: 404 and 410 are cached for `negative_ttl`, any other is
    /// never cached.
    #[oai(status_range = "4XX")]
    ClientError(poem::http::StatusCode, Json<serde_json::Value>),
    /// Any method but GET and HEAD; `Allow: GET, HEAD`.
    #[oai(status = 405, content_type = "application/problem+json")]
    MethodNotAllowed(Json<Problem>, #[oai(header = "Allow")] String),
    /// GitHub failed (connection error, timeout, 5xx, a body over 10 MiB;
    /// problem `upstream-failure`) and no stale entry was available, or it
    /// redirected outside the repository served (`upstream-redirect`).
    #[oai(status = 502, content_type = "application/problem+json")]
    UpstreamFailure(Json<Problem>),
    /// GitHub's rate limit is exhausted, or chimney holds back after a
    /// rate-limited answer until the reset (`upstream-rate-limited`), and no
    /// stale entry was available; or the limit is below the reserve and the
    /// key has no cached entry (`rate-limit-reserve`).
    #[oai(status = 503, content_type = "application/problem+json")]
    RateLimited(
        Json<Problem>,
        /// Seconds until GitHub answers again.
        #[oai(header = "Retry-After")]
        u64,
    ),
}

/// Answers of `GET /api/metrics`.
#[derive(ApiResponse)]
pub enum MetricsAnswer {
    /// Every `chimney_*` metric of this process.
    #[oai(status = 200, content_type = "text/plain; version=0.0.4")]
    Ok(PlainText<String>),
    /// The metrics could not be rendered; the cause is logged.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}

/// The document's entries for the proxy and the metrics scrape.
pub struct RawEndpointDocs;

impl OpenApi for RawEndpointDocs {
    fn meta() -> Vec<MetaApi> {
        let proxy = |method: Method, summary: &'static str| MetaOperation {
            method,
            tags: vec!["GitHub"],
            summary: Some(summary),
            description: Some(
                "Answers `GET {github_api_url}/repos/{repo}/{path}` from the two-tier cache, asking GitHub only when the entry is missing or stale (conditionally, with its ETag). Only the query keys `state, per_page, page, sort, direction, since, until, status, sha, ref, path, labels, branch, event` are forwarded. The client's `Authorization` is never forwarded.",
            ),
            external_docs: None,
            params: vec![path_param(), if_none_match()],
            request: None,
            responses: ProxyAnswer::meta(),
            deprecated: false,
            security: Vec::new(),
            operation_id: None,
            code_samples: Vec::new(),
        };
        let metrics = MetaOperation {
            method: Method::GET,
            tags: vec!["Service"],
            summary: Some("Prometheus metrics"),
            description: Some(
                "This process's metrics in the Prometheus text format 0.0.4: the `chimney_*` counters, gauges and the request latency histogram.",
            ),
            external_docs: None,
            params: Vec::new(),
            request: None,
            responses: MetricsAnswer::meta(),
            deprecated: false,
            security: Vec::new(),
            operation_id: None,
            code_samples: Vec::new(),
        };
        vec![MetaApi {
            paths: vec![
                MetaPath {
                    path: PROXY_TEMPLATE.to_owned(),
                    operations: vec![
                        proxy(Method::GET, "GitHub API proxy"),
                        proxy(Method::HEAD, "GitHub API proxy, headers only"),
                    ],
                },
                MetaPath {
                    path: METRICS.to_owned(),
                    operations: vec![metrics],
                },
            ],
        }]
    }

    fn register(registry: &mut Registry) {
        super::Tag::Github.register(registry);
        super::Tag::Service.register(registry);
        ProxyAnswer::register(registry);
        MetricsAnswer::register(registry);
    }

    fn add_routes(self, _: &mut HashMap<String, HashMap<Method, BoxEndpoint<'static>>>) {}
}

fn path_param() -> MetaOperationParam {
    MetaOperationParam {
            name: "path".to_owned(),
            schema: String::schema_ref(),
            in_type: MetaParamIn::Path,
            description: Some(
                "The GitHub API path below `/repos/{owner}/{repo}`, e.g. `pulls` or `actions/runs`; in org mode `{owner}/{repo}/…` of a discovered repository."
                    .to_owned(),
            ),
            required: true,
            deprecated: false,
            explode: true,
            style: None,
        }
}

fn if_none_match() -> MetaOperationParam {
    MetaOperationParam {
        name: "If-None-Match".to_owned(),
        schema: String::schema_ref(),
        in_type: MetaParamIn::Header,
        description: Some(
            "ETags the client holds; a match with a fresh entry answers 304.".to_owned(),
        ),
        required: false,
        deprecated: false,
        explode: true,
        style: None,
    }
}
