//! One upstream fetch for one cache key, run by the coalescer's leader:
//! ask GitHub (within the outbound cap), classify the answer, check it as
//! any stored entry is checked, update the cache, and say what every waiter
//! should be served.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use tracing::Instrument as _;
use tracing::field::Empty;

use super::coalesce::Waiters;
use super::slots::NoSlot;
use super::{ProxyService, ProxyTarget, Refusal};
use crate::domain::UpstreamVerdict;
use crate::domain::{
    AfterFetch, CacheKey, CachedResponse, GithubPath, HeaderList, KEPT_RESPONSE_HEADERS,
    LinkTarget, NormalisedQuery, after_fetch, check_served, classify_upstream, local_location,
    retention, rewrite_link_header,
};
use crate::ports::{UpstreamError, UpstreamOutcome, UpstreamRequest, UpstreamResponse};

/// What a fetch produced, shared by every waiter.
#[derive(Debug)]
pub(super) enum FetchResult {
    /// A new representation (2xx, or a 404/410 for the negative cache),
    /// now cached.
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
    /// No outbound slot, with nothing to fall back on; nothing was sent.
    Busy,
    /// GitHub's answer may not reach clients at all.
    Refused(Refusal),
    /// Another instance fetched the key; its entry, read from the shared
    /// tier (fleet single flight).
    Coalesced(Arc<CachedResponse>),
}

impl FetchResult {
    /// What waiters get if the fetch task itself panicked.
    pub(super) fn internal_failure() -> Self {
        Self::BadGateway("the upstream fetch failed unexpectedly".to_owned())
    }
}

/// Everything one fetch needs, owned so it can run in its own task.
pub(super) struct FetchJob {
    pub(super) service: ProxyService,
    pub(super) target: ProxyTarget,
    pub(super) path: GithubPath,
    pub(super) query: NormalisedQuery,
    pub(super) key: CacheKey,
    pub(super) ttl: Duration,
    pub(super) etag: Option<String>,
    pub(super) previous: Option<Arc<CachedResponse>>,
    pub(super) stale_usable: bool,
    /// The cache's invalidation mark, taken before the cache was read: the
    /// result is not stored when the key was invalidated since.
    pub(super) mark: u64,
}

impl FetchJob {
    /// Opens the `chimney.github_fetch` span and returns the fetch, to run
    /// in a task of its own. Call it in the leader's request task: the span
    /// is a contextual root there, so the OpenTelemetry layer parents it on
    /// the request's server span, which is the current trace context.
    ///
    /// Boxed, because a fetch may look up the repository's id through the
    /// service, which may start another fetch.
    /// `waiters` tells the fetch when nobody wants it any more: one still
    /// waiting for a slot then gives up without asking GitHub.
    pub(super) fn start(self, waiters: Waiters) -> BoxFuture<'static, FetchResult> {
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
        let fetch_span = span.clone();
        super::fleet::fly(self, move |job| job.fetch(path, fetch_span, waiters))
            .instrument(span)
            .boxed()
    }

    async fn fetch(self, path: String, span: tracing::Span, waiters: Waiters) -> FetchResult {
        let inner = &self.service.inner;
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
            let _permit = match inner.outbound.acquire(waiters.all_gone()).await {
                Ok(permit) => permit,
                Err(reason) => return self.no_slot(reason, &span),
            };
            // The gate may have closed while this fetch waited for a slot.
            match inner.policy.gate.closed(SystemTime::now()) {
                Some(retry_after_secs) => Err(UpstreamError::RateLimited { retry_after_secs }),
                None => inner.upstream.get(request).await,
            }
        };
        let now = SystemTime::now();
        if let Ok(response) = &outcome {
            inner
                .policy
                .gate
                .observe(response.status, &response.headers, now);
        }
        self.report(&outcome, &span, now);
        match &outcome {
            // The gate already keeps every key from asking again.
            Err(UpstreamError::RateLimited { .. }) => {}
            Err(_) => inner.backoff.failed(&self.key, Instant::now()),
            Ok(response) if response.status >= 500 => {
                inner.backoff.failed(&self.key, Instant::now());
            }
            Ok(_) => inner.backoff.answered(&self.key),
        }
        match outcome {
            Ok(response) => self.resolve(response, now).await,
            Err(UpstreamError::RateLimited { retry_after_secs }) => self.fail_with_detail(
                self.after(Some(UpstreamVerdict::RateLimited { retry_after_secs })),
                String::new(),
            ),
            Err(error) => {
                tracing::warn!(key = %self.key, error = %error, "GitHub fetch failed");
                self.fail_with_detail(self.after(None), error.to_string())
            }
        }
    }

    /// Nothing was sent: the stale entry stands in, else the waiters (if
    /// any are left) hear that GitHub is busy.
    fn no_slot(&self, reason: NoSlot, span: &tracing::Span) -> FetchResult {
        if reason == NoSlot::Abandoned {
            tracing::debug!(key = %self.key, "fetch dropped before it was sent: {reason}");
        } else {
            tracing::warn!(key = %self.key, "fetch not sent: {reason}");
        }
        span.record("otel.status_description", reason.to_string());
        match &self.previous {
            Some(previous) if self.stale_usable => FetchResult::Stale(Arc::clone(previous)),
            _ => FetchResult::Busy,
        }
    }

    fn after(&self, verdict: Option<UpstreamVerdict>) -> AfterFetch {
        after_fetch(
            verdict,
            self.previous.is_some(),
            self.stale_usable,
            !self.service.inner.policy.negative_ttl.is_zero(),
        )
    }

    async fn resolve(self, response: UpstreamResponse, now: SystemTime) -> FetchResult {
        self.observe_rate_limit(&response.headers);
        let verdict = classify_upstream(response.status, &response.headers, now);
        let action = self.after(Some(verdict));
        match (action, &self.previous) {
            (AfterFetch::Store | AfterFetch::StoreNegative, _) => {
                if self.path.is_root() && (200..300).contains(&response.status) {
                    self.service
                        .learn_repo_id(&self.target.repo, &response.body);
                }
                let headers = self.rewrite_links(response.headers).await;
                let entry = CachedResponse::new(response.status, headers, response.body, now);
                let negative_ttl = self.service.inner.policy.negative_ttl;
                if let Err(fault) = entry.check(now, negative_ttl) {
                    return self.unservable(response.status, &fault);
                }
                let entry = Arc::new(entry);
                let retain = if entry.is_negative() {
                    negative_ttl
                } else {
                    retention(self.ttl)
                };
                self.store(Arc::clone(&entry), retain).await;
                FetchResult::Stored(entry)
            }
            (AfterFetch::Refresh, Some(previous)) => {
                let entry = Arc::new(previous.revalidated(now, &response.headers));
                self.store(Arc::clone(&entry), retention(self.ttl)).await;
                FetchResult::Revalidated(entry)
            }
            (AfterFetch::Redirect, _) => self.redirect(response).await,
            (AfterFetch::PassThrough | AfterFetch::Refresh, _) => {
                let mut headers = self.rewrite_links(response.headers).await;
                headers.retain_names(|name| KEPT_RESPONSE_HEADERS.contains(&name));
                if let Err(fault) = check_served(&headers, response.body.len()) {
                    return self.unservable(response.status, &fault);
                }
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

    /// A redirect is passed on, never followed or cached, and only when its
    /// `Location` stays in the served repository on the API origin
    /// (rewritten to a local URL, as `Link` is); anything else (a signed
    /// download URL, another repository) is refused.
    async fn redirect(&self, response: UpstreamResponse) -> FetchResult {
        let status = response.status;
        let location = response.headers.get("location").map(str::to_owned);
        let repo_id = match &location {
            Some(value) => self.repo_id_for(value).await,
            None => None,
        };
        let local = location
            .as_deref()
            .and_then(|value| local_location(value, &self.link_target(repo_id)));
        let Some(local) = local else {
            tracing::warn!(key = %self.key, status, "refusing a redirect out of the repository served");
            return FetchResult::Refused(Refusal::UpstreamRedirect { status });
        };
        let mut headers = response.headers;
        headers.map_values("location", |_| local.clone());
        let mut headers = self.rewrite_links(headers).await;
        headers.retain_names(|name| KEPT_RESPONSE_HEADERS.contains(&name));
        if let Err(fault) = check_served(&headers, response.body.len()) {
            return self.unservable(status, &fault);
        }
        FetchResult::PassThrough {
            status,
            headers,
            body: response.body,
        }
    }

    /// GitHub's answer breaks the rules every stored entry must pass (a
    /// document content type, say): it is a failure of GitHub's, handled
    /// like a 5xx, and nothing of it is kept.
    fn unservable(&self, status: u16, fault: &crate::domain::EntryFault) -> FetchResult {
        tracing::warn!(key = %self.key, status, %fault, "GitHub's answer cannot be served");
        self.fail_with_detail(
            self.after(None),
            format!("GitHub's answer cannot be served: {fault}"),
        )
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

    async fn store(&self, entry: Arc<CachedResponse>, retain: Duration) {
        let cache = &self.service.inner.cache;
        match cache
            .put_unless_invalidated(&self.key, entry, retain, self.mark)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                key = %self.key,
                "not cached: the key was invalidated while the fetch was in flight"
            ),
            Err(error) => tracing::warn!(key = %self.key, error = %error, "cache write failed"),
        }
    }

    /// The served repository's id when `value` names a `/repositories/…`
    /// URL: only then is it worth knowing (and perhaps fetching `/` for).
    /// `/` itself never asks, so the lookup cannot wait on itself.
    async fn repo_id_for(&self, value: &str) -> Option<u64> {
        if !value.contains("/repositories/") {
            return None;
        }
        if self.path.is_root() {
            return self.service.known_repo_id(&self.target.repo);
        }
        self.service.repo_id(&self.target).await
    }

    fn link_target(&self, repo_id: Option<u64>) -> LinkTarget<'_> {
        LinkTarget {
            api_base: &self.service.inner.api_base,
            repo: &self.target.repo,
            repo_id,
            local_prefix: &self.target.local_prefix,
        }
    }

    async fn rewrite_links(&self, mut headers: HeaderList) -> HeaderList {
        let mut repo_id = None;
        for value in headers.get_all("link") {
            if repo_id.is_none() {
                repo_id = self.repo_id_for(value).await;
            }
        }
        let target = self.link_target(repo_id);
        headers.map_values("link", |value| rewrite_link_header(value, &target));
        headers
    }

    fn observe_rate_limit(&self, headers: &HeaderList) {
        let number = |name| headers.get(name).and_then(|v| v.trim().parse::<i64>().ok());
        let (remaining, reset) = (number("x-ratelimit-remaining"), number("x-ratelimit-reset"));
        if remaining.is_some() || reset.is_some() {
            self.service.telemetry.rate_limit(remaining, reset);
        }
    }

    /// Counts the outcome and completes the fetch span: status code,
    /// whether GitHub answered 304, and an error status on failure. A
    /// request the gate held back was never sent and is not counted.
    fn report(
        &self,
        outcome: &Result<UpstreamResponse, UpstreamError>,
        span: &tracing::Span,
        now: SystemTime,
    ) {
        if let Some(counted) = upstream_outcome(outcome, now) {
            self.service.telemetry.upstream_request(counted);
        }
        if let Ok(response) = outcome {
            span.record("github.api.status_code", i64::from(response.status));
            span.record("github.not_modified", response.status == 304);
        }
        match outcome {
            // The OpenTelemetry layer turns this field into the span's error
            // status.
            Err(error) => {
                span.record("otel.status_description", error.to_string());
            }
            Ok(response)
                if matches!(
                    upstream_outcome(outcome, now),
                    Some(UpstreamOutcome::Error | UpstreamOutcome::RateLimited)
                ) =>
            {
                span.record(
                    "otel.status_description",
                    format!("GitHub answered {}", response.status),
                );
            }
            Ok(_) => {}
        }
    }
}

/// The `chimney.upstream.requests` outcome of one GitHub request; `None`
/// for a request that was never sent.
fn upstream_outcome(
    outcome: &Result<UpstreamResponse, UpstreamError>,
    now: SystemTime,
) -> Option<UpstreamOutcome> {
    Some(match outcome {
        Ok(response) => match classify_upstream(response.status, &response.headers, now) {
            UpstreamVerdict::Fresh => UpstreamOutcome::Ok,
            UpstreamVerdict::NotModified => UpstreamOutcome::NotModified,
            UpstreamVerdict::PassThrough | UpstreamVerdict::Missing | UpstreamVerdict::Redirect => {
                UpstreamOutcome::Passthrough
            }
            UpstreamVerdict::RateLimited { .. } => UpstreamOutcome::RateLimited,
            UpstreamVerdict::ServerError => UpstreamOutcome::Error,
        },
        Err(UpstreamError::Timeout) => UpstreamOutcome::Timeout,
        Err(UpstreamError::BodyTooLarge { .. }) => UpstreamOutcome::TooLarge,
        Err(UpstreamError::Unreachable(_)) => UpstreamOutcome::Error,
        Err(UpstreamError::RateLimited { .. }) => return None,
    })
}
