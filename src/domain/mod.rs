//! The vocabulary and the rules of chimney, free of I/O.
//!
//! Nothing in here performs I/O, spawns tasks, reads the clock or knows about
//! an HTTP framework, Redis or a telemetry crate: time is passed in as an
//! argument, and the services in `service` decide when to call what. That keeps
//! every policy here testable with plain unit tests.

mod decision;
mod deploy;
mod entry;
mod etag;
mod freshness;
mod headers;
mod invalidation;
mod link;
mod namespace;
mod org;
mod path_policy;
mod ratelimit;
mod request;
mod summary;
mod upstream;
mod webhook;

pub use decision::{AfterFetch, Decision, after_fetch, decide};
pub use deploy::{
    AgedDeploy, DEPLOY_DEDUP_WINDOW, DEPLOY_HISTORY_LIMIT, DeployEvent, DeployEventDraft,
    DeployEventError, DeployKey, DeployOutcome, DeployStatus, RECENT_DEPLOYS_SHOWN, parse_rfc3339,
};
pub use entry::{
    CachedResponse, DEFAULT_NEGATIVE_TTL, EntryFault, KEPT_RESPONSE_HEADERS, MAX_BODY_BYTES,
    MAX_ENTRY_HEADERS, MAX_HEADER_NAME_BYTES, MAX_HEADER_VALUE_BYTES, check_served,
    is_negative_status, is_servable_content_type,
};
pub use etag::IfNoneMatch;
pub use freshness::{
    DEFAULT_STALE_WHILE_REVALIDATE, Freshness, STALE_IF_ERROR_WINDOW, TtlPolicy, TtlRule, retention,
};
pub use headers::{HeaderList, is_hop_by_hop};
pub use invalidation::{InvalidationScope, PIPELINE_SUMMARY_KEY};
pub use link::{LinkTarget, local_location, rewrite_link_header};
pub use namespace::CacheNamespace;
pub use org::{
    MAX_DISCOVERY_PAGES, OrgRepo, RepoExclusions, below_api_base, next_page_url,
    org_repos_first_page, served_repos,
};
pub use path_policy::{DEFAULT_PROXY_PATHS, PathPattern, PathPolicy, PatternError};
pub use ratelimit::{DEFAULT_RATE_LIMIT_RESERVE_PCT, RateLimitGate};
pub use request::{
    CacheKey, GithubPath, MAX_PATH_BYTES, NormalisedQuery, PathError, RepoName, RepoNameError,
};
pub use summary::{
    ClosedPull, IssueItem, MergedPull, PARTIAL_SUMMARY_TTL, RECENT_RUNS, RunOutcome, SUMMARY_TTL,
    Summary, SummaryInputs, SummaryPart, count_open_issues, is_fresh, last_merged,
    success_rate_pct, ttl_for,
};
pub use upstream::{
    MAX_RETRY_AFTER_SECS, UpstreamVerdict, classify_upstream, reset_time, retry_after_secs,
};
pub use webhook::{MAX_DELIVERY_ID_CHARS, WebhookTarget, is_valid_delivery_id, webhook_targets};
