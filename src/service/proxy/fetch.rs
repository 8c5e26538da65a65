//! One upstream fetch for one cache key, run by the coalescer's leader:
//! ask GitHub (within the outbound cap), classify the answer, update the
//! cache, and say what every waiter should be served.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tracing::Instrument as _;
use tracing::field::Empty;

use super::ProxyTarget;
use crate::domain::UpstreamVerdict;
use crate::domain::{
    AfterFetch, CacheKey, CachedResponse, GithubPath, HeaderList, KEPT_RESPONSE_HEADERS,
    LinkTarget, NormalisedQuery, after_fetch, classify_upstream, retention, rewrite_link_header,
};
use crate::ports::{
    CacheStore, Telemetry, UpstreamError, UpstreamGithub, UpstreamOutcome, UpstreamRequest,
    UpstreamResponse,
};

/// What a fetch produced, shared by every waiter.
#[derive(Debug)]
pub(super) enum FetchResult {
    /// A new representation, now cached.
    Stored(Arc<CachedResponse>),
    /// The cached entry, confirmed by GitHub and refreshed.
    Revalidated(Arc<CachedResponse>),
    /// GitHub's non-cacheable answer.
    PassThrough {
        status: u16,
        headers: HeaderList,
        body: Bytes,
    },
    /// GitHub failed; the stale entry stands in.
    Stale(Arc<CachedResponse>),
    /// GitHub failed with nothing to fall back on.
    BadGateway(String),
    /// GitHub is rate limiting with nothing to fall back on.
    RateLimited(u64),
}

impl FetchResult {
    /// What waiters get if the fetch task itself panicked.
    pub(super) fn internal_failure() -> Self {
        Self::BadGateway("the upstream fetch failed unexpectedly".to_owned())
    }
}

/// Everything one fetch needs, owned so it can run in its own task.
pub(super) struct FetchJob {
    pub(super) cache: Arc<dyn CacheStore>,
    pub(super) upstream: Arc<dyn UpstreamGithub>,
    pub(super) outbound: Arc<Semaphore>,
    pub(super) telemetry: Arc<dyn Telemetry>,
    pub(super) api_base: String,
    pub(super) target: ProxyTarget,
    pub(super) path: GithubPath,
    pub(super) query: NormalisedQuery,
    pub(super) key: CacheKey,
    pub(super) ttl: Duration,
    pub(super) etag: Option<String>,
    pub(super) previous: Option<Arc<CachedResponse>>,
    pub(super) stale_usable: bool,
}

impl FetchJob {
    /// Opens the `chimney.github_fetch` span and returns the fetch, to run
    /// in a task of its own. Call it in the leader's request task: the span
    /// is a contextual root there, so the OpenTelemetry layer parents it on
    /// the request's server span, which is the current trace context.
    pub(super) fn start(self) -> impl Future<Output = FetchResult> + Send + 'static {
        let path = self.path.upstream_path(&self.target.repo);
        let span = tracing::info_span!(
            target: "chimney::github",
            "chimney.github_fetch",
            otel.kind = "client",
            otel.status_description = Empty,
            github.api.path = path.as_str(),
            github.api.status_code = Empty,
            github.conditional = self.etag.is_some(),
            github.not_modified = Empty,
        );
        self.fetch(path, span.clone()).instrument(span)
    }

    async fn fetch(self, path: String, span: tracing::Span) -> FetchResult {
        let mut path_and_query = path;
        if !self.query.is_empty() {
            path_and_query.push('?');
            path_and_query.push_str(self.query.as_str());
        }
        let request = UpstreamRequest {
            path_and_query,
            if_none_match: self.etag.clone(),
        };
        let outcome = {
            // The semaphore is never closed, so acquire cannot fail; if it
            // somehow did, going ahead unthrottled beats failing the request.
            let _permit = self.outbound.acquire().await.ok();
            self.upstream.get(request).await
        };
        let now = SystemTime::now();
        self.report(&outcome, &span, now);
        match outcome {
            Ok(response) => self.resolve(response, now).await,
            Err(error) => {
                tracing::warn!(key = %self.key, error = %error, "GitHub fetch failed");
                self.fail(
                    after_fetch(None, self.previous.is_some(), self.stale_usable),
                    &error,
                )
            }
        }
    }

    async fn resolve(self, response: UpstreamResponse, now: SystemTime) -> FetchResult {
        self.observe_rate_limit(&response.headers);
        let verdict = classify_upstream(response.status, &response.headers, now);
        let action = after_fetch(Some(verdict), self.previous.is_some(), self.stale_usable);
        match (action, &self.previous) {
            (AfterFetch::Store, _) => {
                let headers = self.rewrite_links(response.headers);
                let entry = Arc::new(CachedResponse::new(
                    response.status,
                    headers,
                    response.body,
                    now,
                ));
                self.store(Arc::clone(&entry)).await;
                FetchResult::Stored(entry)
            }
            (AfterFetch::Refresh, Some(previous)) => {
                let entry = Arc::new(previous.revalidated(now, &response.headers));
                self.store(Arc::clone(&entry)).await;
                FetchResult::Revalidated(entry)
            }
            (AfterFetch::PassThrough | AfterFetch::Refresh, _) => {
                let mut headers = self.rewrite_links(response.headers);
                headers.retain_names(|name| KEPT_RESPONSE_HEADERS.contains(&name));
                FetchResult::PassThrough {
                    status: response.status,
                    headers,
                    body: response.body,
                }
            }
            (failure, _) => {
                tracing::warn!(key = %self.key, status = response.status, "GitHub answered with an error");
                let detail = format!("GitHub answered {}", response.status);
                self.fail_with_detail(failure, detail)
            }
        }
    }

    fn fail(&self, action: AfterFetch, error: &UpstreamError) -> FetchResult {
        self.fail_with_detail(action, error.to_string())
    }

    fn fail_with_detail(&self, action: AfterFetch, detail: String) -> FetchResult {
        match (action, &self.previous) {
            (AfterFetch::ServeStale, Some(previous)) => FetchResult::Stale(Arc::clone(previous)),
            (AfterFetch::RateLimited { retry_after_secs }, _) => {
                FetchResult::RateLimited(retry_after_secs)
            }
            _ => FetchResult::BadGateway(detail),
        }
    }

    async fn store(&self, entry: Arc<CachedResponse>) {
        if let Err(error) = self.cache.put(&self.key, entry, retention(self.ttl)).await {
            tracing::warn!(key = %self.key, error = %error, "cache write failed");
        }
    }

    fn rewrite_links(&self, mut headers: HeaderList) -> HeaderList {
        let target = LinkTarget {
            api_base: &self.api_base,
            repo: &self.target.repo,
            repo_id: None,
            request_path: self.path.as_str(),
            local_prefix: &self.target.local_prefix,
        };
        headers.map_values("link", |value| rewrite_link_header(value, &target));
        headers
    }

    fn observe_rate_limit(&self, headers: &HeaderList) {
        let number = |name| headers.get(name).and_then(|v| v.trim().parse::<i64>().ok());
        let (remaining, reset) = (number("x-ratelimit-remaining"), number("x-ratelimit-reset"));
        if remaining.is_some() || reset.is_some() {
            self.telemetry.rate_limit(remaining, reset);
        }
    }

    /// Counts the outcome and completes the fetch span: status code,
    /// whether GitHub answered 304, and an error status on failure.
    fn report(
        &self,
        outcome: &Result<UpstreamResponse, UpstreamError>,
        span: &tracing::Span,
        now: SystemTime,
    ) {
        let counted = upstream_outcome(outcome, now);
        self.telemetry.upstream_request(counted);
        if let Ok(response) = outcome {
            span.record("github.api.status_code", i64::from(response.status));
            span.record("github.not_modified", response.status == 304);
        }
        match (counted, outcome) {
            // The OpenTelemetry layer turns this field into the span's error
            // status.
            (_, Err(error)) => {
                span.record("otel.status_description", error.to_string());
            }
            (UpstreamOutcome::Error | UpstreamOutcome::RateLimited, Ok(response)) => {
                span.record(
                    "otel.status_description",
                    format!("GitHub answered {}", response.status),
                );
            }
            _ => {}
        }
    }
}

/// The `chimney.upstream.requests` outcome of one GitHub request.
fn upstream_outcome(
    outcome: &Result<UpstreamResponse, UpstreamError>,
    now: SystemTime,
) -> UpstreamOutcome {
    match outcome {
        Ok(response) => match classify_upstream(response.status, &response.headers, now) {
            UpstreamVerdict::Fresh => UpstreamOutcome::Ok,
            UpstreamVerdict::NotModified => UpstreamOutcome::NotModified,
            UpstreamVerdict::PassThrough => UpstreamOutcome::Passthrough,
            UpstreamVerdict::RateLimited { .. } => UpstreamOutcome::RateLimited,
            UpstreamVerdict::ServerError => UpstreamOutcome::Error,
        },
        Err(UpstreamError::Timeout) => UpstreamOutcome::Timeout,
        Err(UpstreamError::BodyTooLarge { .. }) => UpstreamOutcome::TooLarge,
        Err(UpstreamError::Unreachable(_)) => UpstreamOutcome::Error,
    }
}
