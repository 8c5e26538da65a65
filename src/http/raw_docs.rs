//! The OpenAPI description of the endpoints that are not poem-openapi
//! operations: the GitHub proxy (it reads the raw, still percent-encoded
//! path, which an operation's decoded path parameter would hide), the
//! Prometheus scrape and the event stream (not JSON), and the webhook
//! receiver (it verifies the raw body before anything parses it). `RawEndpointDocs` adds them to the
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
use super::routes::{EVENTS, GITHUB_WEBHOOK, METRICS, PROXY_TEMPLATE};

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
        /// (GitHub answered 304), `STALE` (served after GitHub failed or
        /// while it rate limits or is busy), `COALESCED` (shared a
        /// concurrent request's fetch), `UPDATING` (a stale entry, at most
        /// `stale_while_revalidate` past its TTL, served at once while one
        /// background fetch revalidates it).
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
    /// key has no cached entry (`rate-limit-reserve`); or more than
    /// `upstream_queue` fetches already wait for a GitHub connection, or
    /// this one waited `upstream_queue_timeout`, with no stale entry
    /// available (`upstream-busy`, `Retry-After: 1`; nothing was sent).
    #[oai(status = 503, content_type = "application/problem+json")]
    RateLimited(
        Json<Problem>,
        /// Seconds until a retry may succeed.
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

/// Answers of `GET /api/events`.
#[derive(ApiResponse)]
pub enum EventsAnswer {
    /// The event stream, open until the client leaves (or falls more than
    /// 64 events behind: it is then disconnected, and reconnects). Frames:
    /// `event: deploy` (a deploy event was stored; data is the event as
    /// `/api/deploy/status` lists it, without `age_s`), `event: invalidate`
    /// (data `{"prefixes": […], "evicted": n, "source": "api"|"webhook"}`),
    /// `event: summary` (the pipeline summary changed; data is the new
    /// summary as `/api/pipeline/summary` serves it); a comment line
    /// (`: heartbeat`) every 15 s. Events from every instance sharing the
    /// Dragonfly are relayed.
    #[oai(status = 200, content_type = "text/event-stream")]
    Ok(Json<StreamedEvent>),
    /// Any method but GET and HEAD.
    #[oai(status = 405, content_type = "application/problem+json")]
    MethodNotAllowed(Json<Problem>, #[oai(header = "Allow")] String),
}

/// One event of the `GET /api/events` stream, as an `EventSource` sees it
/// (documentation only: the stream is written by `http/events.rs`).
#[derive(poem_openapi::Object)]
#[oai(rename = "StreamedEvent")]
pub struct StreamedEvent {
    /// `deploy`, `invalidate` or `summary`.
    pub event: StreamedEventKind,
    /// The event's JSON document, on one line.
    pub data: String,
}

/// The kinds of event the stream carries.
#[derive(poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum StreamedEventKind {
    /// A deploy event was stored.
    Deploy,
    /// Cache entries were invalidated.
    Invalidate,
    /// The pipeline summary changed.
    Summary,
}

/// What a webhook delivery did.
#[derive(poem_openapi::Object)]
#[oai(rename = "WebhookResult")]
pub struct WebhookResult {
    /// The `X-GitHub-Event` handled.
    pub event: String,
    /// The cache-key prefixes invalidated (`/` alone is the repository's
    /// own key, `__pipeline_summary__` the summary); empty for an event
    /// chimney does not act on or a repository it does not serve.
    pub prefixes: Vec<String>,
    /// Distinct cache keys removed from either tier.
    pub evicted: u64,
}

/// The answer to `ping` or to a delivery already handled.
#[derive(poem_openapi::Object)]
#[oai(rename = "WebhookAcknowledged")]
pub struct WebhookAcknowledged {
    /// The `X-GitHub-Event`.
    pub event: String,
    /// True when this delivery was already handled (by any instance).
    pub duplicate: Option<bool>,
}

/// Answers of `POST /api/github/webhook`.
#[derive(ApiResponse)]
pub enum WebhookAnswer {
    /// `ping`, or a delivery (`X-GitHub-Delivery`) already handled by an
    /// instance sharing the Dragonfly: nothing done.
    #[oai(status = 200)]
    Acknowledged(Json<WebhookAcknowledged>),
    /// Handled: the event's keys were invalidated on every instance and
    /// the ones clients asked for in the last 10 minutes are being fetched
    /// again. Also for an unknown event or a repository not served, with
    /// nothing evicted.
    #[oai(status = 202)]
    Accepted(Json<WebhookResult>),
    /// `X-GitHub-Event` is missing or malformed, `X-GitHub-Delivery` is not
    /// an id, the body is not JSON (the webhook must use content type
    /// `application/json`), or it did not arrive within 10 s.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// `X-Hub-Signature-256` is missing, malformed, or not the HMAC-SHA256
    /// of the body under `GITHUB_WEBHOOK_SECRET`.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// Any method but POST.
    #[oai(status = 405, content_type = "application/problem+json")]
    MethodNotAllowed(Json<Problem>, #[oai(header = "Allow")] String),
    /// The body is over 5 MiB.
    #[oai(status = 413, content_type = "application/problem+json")]
    TooLarge(Json<Problem>),
    /// `GITHUB_WEBHOOK_SECRET` is unset or blank (`endpoint-disabled`), or
    /// Dragonfly is configured but unreachable (`shared-tier-unavailable`;
    /// redeliver).
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
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
        let events = MetaOperation {
            method: Method::GET,
            tags: vec!["Dashboard"],
            summary: Some("Live events (Server-Sent Events)"),
            description: Some(
                "Deploys, invalidations and pipeline-summary changes as they happen, on every instance sharing the Dragonfly, so the dashboard need not poll. No authentication; `Access-Control-Allow-Origin: *`.",
            ),
            external_docs: None,
            params: Vec::new(),
            request: None,
            responses: EventsAnswer::meta(),
            deprecated: false,
            security: Vec::new(),
            operation_id: None,
            code_samples: Vec::new(),
        };
        let webhook = MetaOperation {
            method: Method::POST,
            tags: vec!["Cache"],
            summary: Some("GitHub webhook receiver"),
            description: Some(
                "Configure a GitHub webhook with content type `application/json` and the secret `GITHUB_WEBHOOK_SECRET`. The raw body is checked against `X-Hub-Signature-256` before it is used. A delivery for the repository served (in org mode, any discovered repository of the org; `repository.full_name`, case-insensitive) invalidates, on every instance, the prefixes of its `X-GitHub-Event`: `push` → `/commits`, `/branches`, `/compare`, `/readme` and the key `/`; `pull_request`, `pull_request_review` → `/pulls`, `/issues`, the summary; `issues`, `issue_comment` → `/issues`, the summary; `workflow_run`, `workflow_job`, `check_run`, `check_suite` → `/actions`, `/commits`, the summary; `release` → `/releases`, `/tags`; `create`, `delete` → `/branches`, `/tags`; `repository`, `label`, `milestone` → the key `/`, `/labels`, `/milestones`.",
            ),
            external_docs: None,
            params: vec![
                header_param(
                    "X-Hub-Signature-256",
                    "`sha256=` and the hex HMAC-SHA256 of the raw body under `GITHUB_WEBHOOK_SECRET`.",
                    true,
                ),
                header_param("X-GitHub-Event", "The event name, e.g. `push`.", true),
                header_param(
                    "X-GitHub-Delivery",
                    "The delivery's id; a delivery already handled by any instance is acknowledged and ignored.",
                    false,
                ),
            ],
            request: None,
            responses: WebhookAnswer::meta(),
            deprecated: false,
            security: Vec::new(),
            operation_id: None,
            code_samples: Vec::new(),
        };
        vec![MetaApi {
            paths: vec![
                MetaPath {
                    path: GITHUB_WEBHOOK.to_owned(),
                    operations: vec![webhook],
                },
                MetaPath {
                    path: EVENTS.to_owned(),
                    operations: vec![events],
                },
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
        super::Tag::Dashboard.register(registry);
        super::Tag::Cache.register(registry);
        ProxyAnswer::register(registry);
        MetricsAnswer::register(registry);
        EventsAnswer::register(registry);
        WebhookAnswer::register(registry);
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

fn header_param(name: &str, description: &str, required: bool) -> MetaOperationParam {
    MetaOperationParam {
        name: name.to_owned(),
        schema: String::schema_ref(),
        in_type: MetaParamIn::Header,
        description: Some(description.to_owned()),
        required,
        deprecated: false,
        explode: true,
        style: None,
    }
}
