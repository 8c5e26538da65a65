//! The route table: every fixed path chimney serves, the templates of the
//! variable ones, and [`route_template`], which labels a request's metrics,
//! span and log line with one of them. The router in `http::routes()`
//! registers these same constants, and a test in `tests/api/openapi_spec.rs`
//! fails when an operation of the OpenAPI document is missing here, so the
//! labels cannot drift from what is served.

/// `GET /healthz`.
pub const HEALTHZ: &str = "/healthz";
/// `GET /readyz`.
pub const READYZ: &str = "/readyz";
/// `GET /api/version`.
pub const VERSION: &str = "/api/version";
/// `GET /api/metrics`.
pub const METRICS: &str = "/api/metrics";
/// `GET /api/openapi.json`.
pub const OPENAPI_DOCUMENT: &str = "/api/openapi.json";
/// The interactive viewer of the document, and everything below it.
pub const OPENAPI_VIEWER: &str = "/api/docs";
/// `POST /api/deploy/events`.
pub const DEPLOY_EVENTS: &str = "/api/deploy/events";
/// `GET /api/deploy/status`.
pub const DEPLOY_STATUS: &str = "/api/deploy/status";
/// `POST /api/cache/invalidate`.
pub const CACHE_INVALIDATE: &str = "/api/cache/invalidate";
/// `POST /api/cache/warm`.
pub const CACHE_WARM: &str = "/api/cache/warm";
/// `GET /api/cache/stats`.
pub const CACHE_STATS: &str = "/api/cache/stats";
/// `GET /api/pipeline/summary`.
pub const PIPELINE_SUMMARY: &str = "/api/pipeline/summary";
/// `GET /api/github/org/repos`.
pub const ORG_REPOS: &str = "/api/github/org/repos";
/// `POST /api/github/webhook`: GitHub's webhook deliveries.
pub const GITHUB_WEBHOOK: &str = "/api/github/webhook";
/// `GET /api/events`: the live events, as Server-Sent Events.
pub const EVENTS: &str = "/api/events";
/// The GitHub proxy's prefix: `/api/github/{path}`.
pub const PROXY_PREFIX: &str = "/api/github";
/// The index of problem types; each type's page is below it.
pub const PROBLEM_INDEX: &str = "/problems";
/// The template of one problem type's page.
pub const PROBLEM_PAGE_TEMPLATE: &str = "/problems/{slug}";
/// The dashboard's index page.
pub const DASHBOARD: &str = "/";

/// The template every proxied path is labelled with.
pub const PROXY_TEMPLATE: &str = "/api/github/{path}";
/// The label of any other path under `/api`.
pub const UNKNOWN_API_TEMPLATE: &str = "/api/{unknown}";
/// The label of any other path: a file of the dashboard.
pub const STATIC_FILE_TEMPLATE: &str = "/{file}";

/// The test-only route that panics (feature `test-panic-route`).
#[cfg(feature = "test-panic-route")]
pub const TEST_PANIC: &str = "/api/test/panic";

/// The token-guarded endpoints, whose CORS is limited to the configured
/// origins; every other read is public.
pub const ADMIN: &[&str] = &[DEPLOY_EVENTS, CACHE_INVALIDATE, CACHE_WARM];

/// Paths served as they are: each is its own label.
pub const FIXED: &[&str] = &[
    HEALTHZ,
    READYZ,
    VERSION,
    METRICS,
    OPENAPI_DOCUMENT,
    DEPLOY_EVENTS,
    DEPLOY_STATUS,
    CACHE_INVALIDATE,
    CACHE_WARM,
    CACHE_STATS,
    PIPELINE_SUMMARY,
    ORG_REPOS,
    GITHUB_WEBHOOK,
    EVENTS,
    PROBLEM_INDEX,
    DASHBOARD,
    #[cfg(feature = "test-panic-route")]
    TEST_PANIC,
];

/// The route template of a path: one of a fixed, small set, so it can
/// label metrics. Raw paths never leave this function.
pub fn route_template(path: &str) -> &'static str {
    if let Some(fixed) = FIXED.iter().find(|fixed| **fixed == path) {
        return fixed;
    }
    if is_at_or_below(path, PROXY_PREFIX) {
        PROXY_TEMPLATE
    } else if path.starts_with("/problems/") {
        PROBLEM_PAGE_TEMPLATE
    } else if is_at_or_below(path, OPENAPI_VIEWER) {
        OPENAPI_VIEWER
    } else if is_at_or_below(path, "/api") {
        UNKNOWN_API_TEMPLATE
    } else {
        STATIC_FILE_TEMPLATE
    }
}

/// `path` is `prefix` itself or a path below it (not merely a longer name).
fn is_at_or_below(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_paths_map_to_their_templates() {
        for (path, template) in [
            ("/healthz", "/healthz"),
            ("/api/github/pulls", "/api/github/{path}"),
            ("/api/github", "/api/github/{path}"),
            ("/api/github/o/r/issues/1", "/api/github/{path}"),
            ("/api/github/org/repos", "/api/github/org/repos"),
            ("/api/github/webhook", "/api/github/webhook"),
            ("/api/events", "/api/events"),
            ("/api/deploy/events", "/api/deploy/events"),
            ("/api/docs/index.js", "/api/docs"),
            ("/api/nothing/here", "/api/{unknown}"),
            ("/", "/"),
            ("/app.js", "/{file}"),
            ("/problems", "/problems"),
            ("/problems/not-found", "/problems/{slug}"),
            ("/../../etc/passwd", "/{file}"),
        ] {
            assert_eq!(route_template(path), template, "{path}");
        }
    }
}
