//! The HTTP surface: the proxy endpoint, the poem-openapi operations, the
//! generated document and its viewer, and the static dashboard.

pub mod access_log;
mod admin;
mod admin_response;
mod auth;
mod body;
mod cache;
mod deploy;
mod events;
mod health;
mod metrics;
pub mod observe;
mod org;
pub mod problem;
mod problem_pages;
mod proxy;
mod public_cors;
mod raw_docs;
pub mod routes;
mod summary;
mod webhook;

use std::path::Path;
use std::sync::Arc;

use poem::endpoint::StaticFilesEndpoint;
use poem::error::NotFoundError;
use poem::{Endpoint, EndpointExt, IntoEndpoint, Route};
use poem_openapi::{OpenApi, OpenApiService, Tags};

pub use access_log::ACCESS_LOG_TARGET;
pub use admin::AdminAccess;
pub use auth::{AdminScope, AdminTokens, tokens_match};
pub use body::MAX_ADMIN_BODY_BYTES;
pub use cache::CacheApi;
pub use deploy::DeployApi;
pub use events::{EventsEndpoint, SSE_HEARTBEAT};
pub use health::{Health, HealthApi, Version};
pub use metrics::MetricsEndpoint;
pub use observe::{CacheOutcome, Observe, X_TRACE_ID};
pub use org::{OrgApi, OrgRepoSummary, OrgRepos};
pub use proxy::ProxyEndpoint;
pub use routes::{PROXY_PREFIX, route_template};
pub use summary::{SummaryApi, SummaryResponse};
pub use webhook::{MAX_WEBHOOK_BODY_BYTES, WebhookEndpoint};

use crate::ports::{MetricsScrape, RequestExport, Telemetry};
use problem::Problem;

/// Groups of operations in the OpenAPI document.
#[derive(Tags)]
pub enum Tag {
    /// The service itself: health and versions.
    Service,
    /// Aggregated views for the dashboard: the pipeline summary and the
    /// repositories served.
    Dashboard,
    /// Deploy events pushed by CI and the deploy status.
    Deploys,
    /// Runtime cache control and statistics.
    Cache,
    /// The caching proxy in front of the GitHub REST API.
    #[oai(rename = "GitHub")]
    Github,
}

/// Everything the routes need.
pub struct ApiParts {
    /// The GitHub proxy.
    pub proxy: ProxyEndpoint,
    /// Where request metrics and caught panics are reported.
    pub telemetry: Arc<dyn Telemetry>,
    /// Where each request's span and log record are exported; `None` while
    /// export is off.
    pub request_export: Option<Arc<dyn RequestExport>>,
    /// What `GET /api/metrics` renders.
    pub metrics: Arc<dyn MetricsScrape>,
    /// Health and version operations.
    pub health: HealthApi,
    /// The pipeline summary operation.
    pub summary: SummaryApi,
    /// The org listing operation.
    pub org: OrgApi,
    /// Deploy event ingestion and status.
    pub deploys: DeployApi,
    /// Cache invalidation, warming and statistics.
    pub cache: CacheApi,
    /// Tokens and CORS origins of the admin endpoints.
    pub admin: AdminAccess,
    /// GitHub's webhook deliveries.
    pub webhook: WebhookEndpoint,
    /// The live event stream.
    pub events: EventsEndpoint,
}

/// The version of the API document, fixed so the committed
/// `openapi/openapi.json` does not depend on how chimney was built; bump it
/// when the contract changes.
pub const API_DOCUMENT_VERSION: &str = "1.0.0";

/// The OpenAPI service describing every JSON endpoint.
pub fn openapi_service<T: OpenApi>(apis: T) -> OpenApiService<T, ()> {
    OpenApiService::new(apis, "chimney", API_DOCUMENT_VERSION).description(
        "Caching proxy in front of the GitHub REST API, and the origin of the project dashboard.",
    )
}

/// Builds the whole route tree.
pub fn routes(parts: ApiParts, docs: &Path) -> impl Endpoint + 'static {
    let api = openapi_service((
        raw_docs::RawEndpointDocs,
        parts.health,
        parts.summary,
        parts.org,
        parts.deploys,
        parts.cache,
    ));
    let spec = api.spec_endpoint();
    let ui = api.swagger_ui();
    let api = Arc::new(api.into_endpoint());
    let proxy = Arc::new(parts.proxy);
    let admin = admin::AdminGuard::new(parts.admin);
    with_test_routes(Route::new())
        .at(routes::METRICS, MetricsEndpoint::new(parts.metrics))
        .at(PROXY_PREFIX, Arc::clone(&proxy))
        .at(routes::ORG_REPOS, Arc::clone(&api))
        .at(routes::GITHUB_WEBHOOK, parts.webhook)
        .at(routes::EVENTS, parts.events)
        .at(format!("{PROXY_PREFIX}/*path"), proxy)
        .at(routes::OPENAPI_DOCUMENT, spec)
        .nest(routes::OPENAPI_VIEWER, ui)
        .at(routes::HEALTHZ, Arc::clone(&api))
        .at(routes::READYZ, Arc::clone(&api))
        .at(
            routes::DEPLOY_EVENTS,
            admin.admin(AdminScope::Deploy, Arc::clone(&api)),
        )
        .at(
            routes::CACHE_INVALIDATE,
            admin.admin(AdminScope::Invalidate, Arc::clone(&api)),
        )
        .at(
            routes::CACHE_WARM,
            admin.admin(AdminScope::Invalidate, Arc::clone(&api)),
        )
        .at(routes::DEPLOY_STATUS, admin.public_read(Arc::clone(&api)))
        .at(routes::CACHE_STATS, admin.public_read(Arc::clone(&api)))
        .at(routes::PROBLEM_INDEX, problem_pages::problem_index)
        .at(
            format!("{}/:slug", routes::PROBLEM_INDEX),
            problem_pages::problem_page,
        )
        .nest_no_strip("/api", api)
        .nest(
            routes::DASHBOARD,
            StaticFilesEndpoint::new(docs).index_file("index.html"),
        )
        .catch_error(|_: NotFoundError| async {
            Problem::not_found("no resource at this path").into_response()
        })
        .with(public_cors::PublicCors)
        .with(Observe::new(parts.telemetry, parts.request_export))
        .map_to_response()
}

#[cfg(feature = "test-panic-route")]
fn with_test_routes(route: Route) -> Route {
    route.at(
        routes::TEST_PANIC,
        poem::endpoint::make_sync(|_| -> &'static str {
            panic!("test-panic-route: a handler panicked on purpose")
        }),
    )
}

#[cfg(not(feature = "test-panic-route"))]
fn with_test_routes(route: Route) -> Route {
    route
}
