//! The vocabulary and the rules of chimney, free of I/O.
//!
//! Nothing in here performs I/O, spawns tasks, reads the clock or knows about
//! an HTTP framework, Redis or a telemetry crate: time is passed in as an
//! argument, and the services in `app` decide when to call what. That keeps
//! every policy here testable with plain unit tests.

mod decision;
mod deploy;
mod entry;
mod etag;
mod freshness;
mod headers;
mod invalidation;
mod link;
mod org;
mod request;
mod summary;
mod upstream;

pub use decision::{AfterFetch, Decision, after_fetch, decide};
pub use deploy::{
    AgedDeploy, DEPLOY_DEDUP_WINDOW, DEPLOY_HISTORY_LIMIT, DeployEvent, DeployEventDraft,
    DeployEventError, DeployKey, DeployOutcome, DeployStatus, RECENT_DEPLOYS_SHOWN, parse_rfc3339,
};
pub use entry::{CachedResponse, KEPT_RESPONSE_HEADERS};
pub use etag::IfNoneMatch;
pub use freshness::{Freshness, STALE_IF_ERROR_WINDOW, TtlPolicy, TtlRule, retention};
pub use headers::{HeaderList, is_hop_by_hop};
pub use invalidation::{InvalidationScope, PIPELINE_SUMMARY_KEY};
pub use link::{LinkTarget, rewrite_link_header};
pub use org::{
    MAX_DISCOVERY_PAGES, OrgRepo, RepoExclusions, below_api_base, next_page_url,
    org_repos_first_page, served_repos,
};
pub use request::{CacheKey, GithubPath, NormalisedQuery, PathError, RepoName, RepoNameError};
pub use summary::{
    ClosedPull, IssueItem, MergedPull, PARTIAL_SUMMARY_TTL, RECENT_RUNS, RunOutcome, SUMMARY_TTL,
    Summary, SummaryInputs, SummaryPart, count_open_issues, is_fresh, last_merged,
    success_rate_pct, ttl_for,
};
pub use upstream::{UpstreamVerdict, classify_upstream, retry_after_secs};
