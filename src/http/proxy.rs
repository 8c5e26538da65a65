//! `GET|HEAD /api/github/{path}`: turns HTTP into a `ProxyRequest` and a
//! `ProxyReply` back into HTTP. The caching decisions, the path policy and
//! the rate-limit gate live in the domain and `ProxyService`, not here.
//!
//! Every answer, GitHub's or chimney's own, carries
//! `X-Content-Type-Options: nosniff`: a body is only ever what its
//! `Content-Type` says, never a document a browser guessed.

use std::time::SystemTime;

use poem::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, ETAG, IF_NONE_MATCH, RETRY_AFTER};
use poem::http::{HeaderName, HeaderValue, Method, StatusCode};
use poem::{Body, Endpoint, Request, Response};

use super::observe::CacheOutcome;
use super::problem::Problem;
use super::routes::PROXY_PREFIX;
use crate::domain::{GithubPath, HeaderList, IfNoneMatch, NormalisedQuery, PathError, RepoName};
use crate::service::org::OrgDirectory;
use crate::service::proxy::{ProxyReply, ProxyRequest, ProxyService, ProxyTarget, Refusal, XCache};

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
static X_CACHE_AGE: HeaderName = HeaderName::from_static("x-cache-age");
static X_CONTENT_TYPE_OPTIONS: HeaderName = HeaderName::from_static("x-content-type-options");

/// The proxy endpoint.
pub struct ProxyEndpoint {
    service: ProxyService,
    target: ProxyTarget,
    /// In org mode, the discovered repositories a `/{owner}/{repo}/...`
    /// path may name; `None` in single-repo mode.
    org: Option<OrgDirectory>,
}

impl ProxyEndpoint {
    /// Serves `repo` under [`PROXY_PREFIX`].
    pub fn new(service: ProxyService, repo: RepoName) -> Self {
        Self {
            service,
            target: ProxyTarget {
                repo,
                local_prefix: PROXY_PREFIX.to_owned(),
                is_default: true,
            },
            org: None,
        }
    }

    /// Also serves the repositories in `directory` (org mode) at
    /// `/api/github/{owner}/{repo}/...`. A path whose first two segments do
    /// not name a discovered repository stays a path of the configured one.
    pub fn with_org(mut self, directory: OrgDirectory) -> Self {
        self.org = Some(directory);
        self
    }

    /// The repository `path` is for, and the path below it.
    fn route(&self, path: GithubPath) -> (ProxyTarget, GithubPath) {
        let Some(directory) = &self.org else {
            return (self.target.clone(), path);
        };
        let Some((named, rest)) = path.split_repo_prefix() else {
            return (self.target.clone(), path);
        };
        match directory.resolve(&named) {
            Some(repo) => (
                ProxyTarget {
                    local_prefix: format!("{PROXY_PREFIX}/{repo}"),
                    repo,
                    is_default: false,
                },
                rest,
            ),
            None => (self.target.clone(), path),
        }
    }

    fn parse(&self, req: &Request) -> Result<ProxyRequest, Problem> {
        // The raw path, still percent-encoded, so encoded traversal is seen.
        let raw = req.original_uri().path();
        let below = raw.strip_prefix(PROXY_PREFIX).unwrap_or(raw);
        let path = GithubPath::parse(below).map_err(|e| match e {
            PathError::TooLong => Problem::uri_too_long(e.to_string()),
            e => Problem::bad_request(e.to_string()),
        })?;
        let query = NormalisedQuery::parse(req.original_uri().query().unwrap_or(""));
        let if_none_match = IfNoneMatch::parse(
            req.headers()
                .get_all(IF_NONE_MATCH)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let (target, path) = self.route(path);
        Ok(ProxyRequest {
            target,
            path,
            query,
            if_none_match,
        })
    }
}

impl Endpoint for ProxyEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut response = Problem::method_not_allowed(format!(
                "{} is not allowed here; the GitHub proxy is read-only",
                req.method()
            ))
            .into_response();
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Ok(with_common_headers(response));
        }
        let request = match self.parse(&req) {
            Ok(request) => request,
            Err(problem) => return Ok(with_common_headers(problem.into_response())),
        };
        let reply = self.service.handle(&request).await;
        let outcome = cache_outcome(&request, &reply);
        let mut response = with_common_headers(render(reply, SystemTime::now()));
        response.extensions_mut().insert(outcome);
        Ok(response)
    }
}

/// What the request middleware records about this answer.
fn cache_outcome(request: &ProxyRequest, reply: &ProxyReply) -> CacheOutcome {
    let tier = match reply {
        ProxyReply::Cached {
            x_cache: XCache::Hit,
            tier,
            ..
        }
        | ProxyReply::PassThrough {
            x_cache: XCache::Hit,
            tier,
            ..
        }
        // Served from the cache without waiting, though a background fetch
        // renews it.
        | ProxyReply::Cached {
            x_cache: XCache::Updating,
            tier,
            ..
        }
        | ProxyReply::PassThrough {
            x_cache: XCache::Updating,
            tier,
            ..
        } => *tier,
        _ => None,
    };
    CacheOutcome {
        hit: tier.is_some(),
        tier,
        github_path: request.path.upstream_path(&request.target.repo),
    }
}

/// What every proxy answer carries: CORS for any origin, and `nosniff`.
fn with_common_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        X_CONTENT_TYPE_OPTIONS.clone(),
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Renders a reply. HEAD responses are rendered the same way: hyper sends
/// the headers (with the GET body's length) and drops the body.
fn render(reply: ProxyReply, now: SystemTime) -> Response {
    match reply {
        ProxyReply::Cached {
            entry,
            x_cache,
            not_modified,
            ..
        } => {
            let age = entry.age_secs(now);
            let mut response = if not_modified {
                let mut r = Response::builder()
                    .status(StatusCode::NOT_MODIFIED)
                    .finish();
                if let Some(etag) = entry.etag().and_then(|e| HeaderValue::from_str(e).ok()) {
                    r.headers_mut().insert(ETAG, etag);
                }
                r
            } else {
                let mut r = Response::builder()
                    .status(StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK))
                    .body(Body::from_bytes(entry.body.clone()));
                append_headers(&mut r, &entry.headers);
                r
            };
            set_cache_headers(&mut response, x_cache, age);
            response
        }
        ProxyReply::PassThrough {
            status,
            headers,
            body,
            x_cache,
            age_secs,
            ..
        } => {
            let mut response = Response::builder()
                .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY))
                .body(Body::from_bytes(body));
            append_headers(&mut response, &headers);
            set_cache_headers(&mut response, x_cache, age_secs);
            response
        }
        ProxyReply::BadGateway { detail } => {
            let mut response = Problem::bad_gateway(detail).into_response();
            set_cache_headers(&mut response, XCache::Miss, 0);
            response
        }
        ProxyReply::RateLimited { retry_after_secs } => {
            let mut response = Problem::rate_limited(retry_after_secs).into_response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            set_cache_headers(&mut response, XCache::Miss, 0);
            response
        }
        ProxyReply::UpstreamBusy => {
            let mut response = Problem::upstream_busy().into_response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            set_cache_headers(&mut response, XCache::Miss, 0);
            response
        }
        ProxyReply::Refused(Refusal::PathNotProxied) => Problem::path_not_proxied().into_response(),
        ProxyReply::Refused(Refusal::RateLimitReserve { retry_after_secs }) => {
            let mut response = Problem::rate_limit_reserve(retry_after_secs).into_response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            set_cache_headers(&mut response, XCache::Miss, 0);
            response
        }
        ProxyReply::Refused(Refusal::UpstreamRedirect { status }) => {
            let mut response = Problem::upstream_redirect(status).into_response();
            set_cache_headers(&mut response, XCache::Miss, 0);
            response
        }
    }
}

fn append_headers(response: &mut Response, headers: &HeaderList) {
    let map = response.headers_mut();
    for (name, value) in headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
}

fn set_cache_headers(response: &mut Response, x_cache: XCache, age_secs: u64) {
    let map = response.headers_mut();
    map.insert(X_CACHE.clone(), HeaderValue::from_static(x_cache.as_str()));
    map.insert(X_CACHE_AGE.clone(), HeaderValue::from(age_secs));
}
