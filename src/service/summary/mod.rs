//! `SummaryService`: builds `GET /api/pipeline/summary` from four GitHub
//! lists fetched through the proxy (so they share its cache, coalescing and
//! outbound cap), and keeps the result in the same tiered cache under
//! `__pipeline_summary__`, where invalidation by name reaches it.
//!
//! GitHub's JSON is parsed into the structs of `github.rs`, and the
//! arithmetic is `domain::Summary`'s. The document built here is what the
//! cache stores; `http::summary` maps it to the documented response.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

use crate::domain::{
    CacheKey, CachedResponse, GithubPath, HeaderList, MergedPull, NormalisedQuery,
    PIPELINE_SUMMARY_KEY, RECENT_RUNS, RepoName, Summary, SummaryInputs, SummaryPart, is_fresh,
};
use crate::ports::{CacheStore, LiveEventKind};
use crate::service::events::LiveEvents;
use crate::service::proxy::coalesce::{Coalescer, Role};
use crate::service::proxy::{ProxyReply, ProxyRequest, ProxyService, ProxyTarget, XCache};

mod github;

pub use github::WorkflowRun;
use github::{IssueJson, PullJson, RunsJson};

/// The pipeline summary as stored in the cache; `http::summary` serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineSummary {
    /// The wgmesh version chimney was built for.
    pub wgmesh_version: String,
    /// Open issues, pull requests not counted (first 100 listed); `null`
    /// when missing.
    pub open_issues: Option<u64>,
    /// Open pull requests (first 100 listed); `null` when missing.
    pub open_prs: Option<u64>,
    /// The most recently updated merged pull request among the last 10
    /// closed; `null` when none was merged or the part is missing.
    pub last_merged_pr: Option<LastMergedPr>,
    /// The build workflow's last 10 completed runs, newest first; `null`
    /// when missing.
    pub recent_workflow_runs: Option<Vec<WorkflowRun>>,
    /// Share of those runs that succeeded, percent with one decimal; `null`
    /// when there are no runs or they are missing.
    pub goose_success_rate_pct: Option<f64>,
    /// When this summary was built (RFC 3339, UTC).
    pub fetched_at: String,
    /// The parts GitHub could not supply this time (`open_issues`,
    /// `open_prs`, `last_merged_pr`, `recent_workflow_runs`); empty when the
    /// summary is complete.
    pub missing: Vec<String>,
}

/// A merged pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastMergedPr {
    /// The PR number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// Its page on github.com.
    pub html_url: String,
    /// The author's login.
    pub user: Option<String>,
    /// When it was merged (RFC 3339).
    pub merged_at: String,
    /// The merge commit; absent from summaries stored before it was kept.
    #[serde(default)]
    pub sha: Option<String>,
}

/// A summary and how this request got it.
#[derive(Debug, Clone)]
pub struct SummaryReply {
    /// The summary.
    pub summary: Arc<PipelineSummary>,
    /// `HIT` from the cache, `MISS` built for this request, `COALESCED`
    /// built for a concurrent request.
    pub x_cache: XCache,
    /// Whole seconds since it was built.
    pub age_secs: u64,
}

/// Builds and caches the pipeline summary. Cloning is cheap.
#[derive(Clone)]
pub struct SummaryService {
    inner: Arc<Inner>,
}

struct Inner {
    proxy: ProxyService,
    cache: Arc<dyn CacheStore>,
    target: ProxyTarget,
    workflow: String,
    wgmesh_version: String,
    builds: Coalescer<CacheKey, Built>,
    /// Where a changed summary is announced (`summary` live event).
    events: LiveEvents,
    /// The last summary announced, without its build time, to tell a
    /// changed summary from a rebuilt one.
    announced: std::sync::Mutex<Option<PipelineSummary>>,
}

/// A finished build, shared by every request that waited for it.
#[derive(Debug)]
struct Built {
    summary: Arc<PipelineSummary>,
    built_at: SystemTime,
    /// Read back from the cache rather than built.
    reused: bool,
}

impl Built {
    /// What waiters get if a build task panicked: everything missing, not
    /// cached.
    fn panicked(wgmesh_version: &str) -> Self {
        let now = SystemTime::now();
        let summary = Summary::from_inputs(SummaryInputs::default());
        Self {
            summary: Arc::new(document(&summary, now, wgmesh_version)),
            built_at: now,
            reused: false,
        }
    }
}

impl SummaryService {
    /// A summary of `repo`, fetched through `proxy` (whose repo target it
    /// shares, so cache keys match `/api/github/...`), stored in `cache`,
    /// with runs of the workflow file `workflow`; it reports
    /// `wgmesh_version` as the version the dashboard describes.
    pub fn new(
        proxy: ProxyService,
        cache: Arc<dyn CacheStore>,
        target: ProxyTarget,
        workflow: &str,
        wgmesh_version: &str,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                proxy,
                cache,
                target,
                workflow: workflow.to_owned(),
                wgmesh_version: wgmesh_version.to_owned(),
                builds: Coalescer::new(),
                events: LiveEvents::local_only(),
                announced: std::sync::Mutex::new(None),
            }),
        }
    }

    /// [`Self::new`], announcing every changed summary on `events`.
    pub fn with_events(
        proxy: ProxyService,
        cache: Arc<dyn CacheStore>,
        target: ProxyTarget,
        workflow: &str,
        wgmesh_version: &str,
        events: LiveEvents,
    ) -> Self {
        let mut service = Self::new(proxy, cache, target, workflow, wgmesh_version);
        if let Some(inner) = Arc::get_mut(&mut service.inner) {
            inner.events = events;
        }
        service
    }

    /// The repository summarised.
    pub fn repo(&self) -> &RepoName {
        &self.inner.target.repo
    }

    /// The cached summary while it is fresh, else one built now (or by the
    /// build already running).
    pub async fn summary(&self) -> SummaryReply {
        if let Some(cached) = self.inner.cached().await {
            return cached.reply(XCache::Hit);
        }
        let key = CacheKey::named(PIPELINE_SUMMARY_KEY);
        let inner = Arc::clone(&self.inner);
        let build = async move {
            // A build that finished between the read above and joining the
            // coalescer has already stored a fresh summary: reuse it rather
            // than building twice.
            match inner.cached().await {
                Some(cached) => cached,
                None => inner.build().await,
            }
        };
        let version = self.inner.wgmesh_version.clone();
        let (built, role) = self
            .inner
            .builds
            .run(&key, |_| build, move || Built::panicked(&version))
            .await;
        let x_cache = match (built.reused, role) {
            (true, _) => XCache::Hit,
            (false, Role::Leader) => XCache::Miss,
            (false, Role::Follower) => XCache::Coalesced,
        };
        built.reply(x_cache)
    }
}

impl Built {
    fn reply(&self, x_cache: XCache) -> SummaryReply {
        SummaryReply {
            summary: Arc::clone(&self.summary),
            x_cache,
            age_secs: age_secs(self.built_at, SystemTime::now()),
        }
    }
}

impl Inner {
    /// The stored summary, while it is fresh.
    async fn cached(&self) -> Option<Built> {
        let key = CacheKey::named(PIPELINE_SUMMARY_KEY);
        let hit = match self.cache.get(&key).await {
            Ok(hit) => hit?,
            Err(error) => {
                tracing::warn!(%error, "cache read of the pipeline summary failed; rebuilding");
                return None;
            }
        };
        let summary: PipelineSummary = match serde_json::from_slice(&hit.entry.body) {
            Ok(summary) => summary,
            Err(error) => {
                tracing::warn!(%error, "cached pipeline summary is unreadable; rebuilding");
                return None;
            }
        };
        let fresh = is_fresh(
            hit.entry.age(SystemTime::now()),
            !summary.missing.is_empty(),
        );
        fresh.then(|| Built {
            summary: Arc::new(summary),
            built_at: hit.entry.fetched_at,
            reused: true,
        })
    }
}

impl Inner {
    async fn build(&self) -> Built {
        let runs_path = format!("/actions/workflows/{}/runs", self.workflow);
        let (issues, open_pulls, closed_pulls, runs) = tokio::join!(
            self.fetch::<Vec<IssueJson>>("/issues", "state=open&per_page=100"),
            self.fetch::<Vec<IgnoredAny>>("/pulls", "state=open&per_page=100"),
            self.fetch::<Vec<PullJson>>(
                "/pulls",
                "state=closed&per_page=10&sort=updated&direction=desc"
            ),
            self.fetch::<RunsJson>(&runs_path, "per_page=10&status=completed"),
        );
        let summary = Summary::from_inputs(SummaryInputs {
            open_issues: issues.map(|items| items.into_iter().map(IssueJson::into_item).collect()),
            open_prs: open_pulls.map(|pulls| pulls.len() as u64),
            closed_pulls: closed_pulls
                .map(|pulls| pulls.into_iter().map(PullJson::into_closed).collect()),
            workflow_runs: runs
                .map(|runs| runs.workflow_runs.into_iter().take(RECENT_RUNS).collect()),
        });
        let built_at = SystemTime::now();
        let document = document(&summary, built_at, &self.wgmesh_version);
        if summary.is_partial() {
            let missing: Vec<&str> = summary.missing.iter().map(|p| p.as_str()).collect();
            tracing::warn!(?missing, "pipeline summary is partial");
        }
        self.store(&document, built_at, summary.ttl()).await;
        self.announce_if_changed(&document);
        Built {
            summary: Arc::new(document),
            built_at,
            reused: false,
        }
    }

    /// Publishes `document` as a `summary` live event unless it says what
    /// the last one announced said (the build time aside).
    fn announce_if_changed(&self, document: &PipelineSummary) {
        let comparable = PipelineSummary {
            fetched_at: String::new(),
            ..document.clone()
        };
        {
            let mut announced = self
                .announced
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if announced.as_ref() == Some(&comparable) {
                return;
            }
            *announced = Some(comparable);
        }
        match serde_json::to_string(document) {
            Ok(data) => self.events.publish(LiveEventKind::Summary, data),
            Err(error) => {
                tracing::warn!(%error, "pipeline summary did not serialise; not announced")
            }
        }
    }

    /// One list through the proxy; `None` (the part is missing) when the
    /// proxy has no body to offer or it does not parse.
    async fn fetch<T: DeserializeOwned>(&self, path: &str, query: &str) -> Option<T> {
        let path = match GithubPath::parse(path) {
            Ok(path) => path,
            Err(error) => {
                tracing::warn!(%error, path, "summary path refused");
                return None;
            }
        };
        let request = ProxyRequest {
            target: self.target.clone(),
            path,
            query: NormalisedQuery::parse(query),
            if_none_match: None,
        };
        match self.proxy.handle(&request).await {
            ProxyReply::Cached { entry, .. } => match serde_json::from_slice(&entry.body) {
                Ok(value) => Some(value),
                Err(error) => {
                    tracing::warn!(%error, key = %request.cache_key(), "GitHub's list did not parse");
                    None
                }
            },
            ProxyReply::PassThrough { status, .. } => {
                tracing::warn!(status, key = %request.cache_key(), "GitHub refused a summary list");
                None
            }
            ProxyReply::BadGateway { detail } => {
                tracing::warn!(%detail, key = %request.cache_key(), "GitHub failed a summary list");
                None
            }
            ProxyReply::RateLimited { retry_after_secs } => {
                tracing::warn!(retry_after_secs, key = %request.cache_key(), "GitHub rate-limited a summary list");
                None
            }
            ProxyReply::UpstreamBusy => {
                tracing::warn!(key = %request.cache_key(), "GitHub was too busy for a summary list");
                None
            }
            ProxyReply::Refused(refusal) => {
                tracing::warn!(%refusal, key = %request.cache_key(), "the proxy refused a summary list");
                None
            }
        }
    }

    /// Caches the summary for its TTL. A failure is logged: the next
    /// request simply builds again.
    async fn store(
        &self,
        document: &PipelineSummary,
        built_at: SystemTime,
        ttl: std::time::Duration,
    ) {
        let body = match serde_json::to_vec(document) {
            Ok(body) => Bytes::from(body),
            Err(error) => {
                tracing::warn!(%error, "pipeline summary did not serialise; not cached");
                return;
            }
        };
        let mut headers = HeaderList::new();
        headers.append("content-type", "application/json; charset=utf-8");
        let entry = Arc::new(CachedResponse::new(200, headers, body, built_at));
        let key = CacheKey::named(PIPELINE_SUMMARY_KEY);
        if let Err(error) = self.cache.put(&key, entry, ttl).await {
            tracing::warn!(%error, "pipeline summary could not be cached");
        }
    }
}

fn document(
    summary: &Summary<WorkflowRun>,
    built_at: SystemTime,
    wgmesh_version: &str,
) -> PipelineSummary {
    PipelineSummary {
        wgmesh_version: wgmesh_version.to_owned(),
        open_issues: summary.open_issues,
        open_prs: summary.open_prs,
        last_merged_pr: summary.last_merged_pr.clone().map(LastMergedPr::from),
        recent_workflow_runs: summary.recent_workflow_runs.clone(),
        goose_success_rate_pct: summary.success_rate_pct,
        fetched_at: humantime::format_rfc3339_seconds(built_at).to_string(),
        missing: summary
            .missing
            .iter()
            .map(|part| SummaryPart::as_str(*part).to_owned())
            .collect(),
    }
}

fn age_secs(at: SystemTime, now: SystemTime) -> u64 {
    now.duration_since(at).unwrap_or_default().as_secs()
}

impl From<MergedPull> for LastMergedPr {
    fn from(pull: MergedPull) -> Self {
        Self {
            number: pull.number,
            title: pull.title,
            html_url: pull.html_url,
            user: pull.author,
            merged_at: pull.merged_at,
            sha: pull.sha,
        }
    }
}
