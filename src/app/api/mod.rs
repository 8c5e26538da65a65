//! The HTTP surface: the proxy endpoint, the poem-openapi operations, the
//! generated document and its viewer, and the static dashboard.

mod health;
mod org;
pub mod problem;
mod proxy;
mod summary;

use std::path::Path;
use std::sync::Arc;

use poem::endpoint::StaticFilesEndpoint;
use poem::error::NotFoundError;
use poem::{Endpoint, EndpointExt, IntoEndpoint, Route};
use poem_openapi::{OpenApi, OpenApiService, Tags};

pub use health::{Health, HealthApi, Version};
pub use org::{OrgApi, OrgRepoSummary, OrgRepos};
pub use proxy::{PROXY_PREFIX, ProxyEndpoint};
pub use summary::{SummaryApi, SummaryResponse};

use crate::app::version::CHIMNEY_VERSION;
use problem::Problem;

/// Groups of operations in the OpenAPI document.
#[derive(Tags)]
pub enum Tag {
    /// The service itself: health and versions.
    Service,
    /// Aggregated views for the dashboard: the pipeline summary and the
    /// repositories served.
    Dashboard,
}

/// Everything the routes need.
pub struct ApiParts {
    /// The GitHub proxy.
    pub proxy: ProxyEndpoint,
    /// Health and version operations.
    pub health: HealthApi,
    /// The pipeline summary operation.
    pub summary: SummaryApi,
    /// The org listing operation.
    pub org: OrgApi,
}

/// The OpenAPI service describing every JSON endpoint.
pub fn openapi_service<T: OpenApi>(apis: T) -> OpenApiService<T, ()> {
    OpenApiService::new(apis, "chimney", CHIMNEY_VERSION).description(
        "Caching proxy in front of the GitHub REST API, and the origin of the project dashboard.",
    )
}

/// Builds the whole route tree.
pub fn routes(parts: ApiParts, docs: &Path) -> impl Endpoint + 'static {
    let api = openapi_service((parts.health, parts.summary, parts.org));
    let spec = api.spec_endpoint();
    let ui = api.swagger_ui();
    let api = Arc::new(api.into_endpoint());
    let proxy = Arc::new(parts.proxy);
    Route::new()
        .at(PROXY_PREFIX, Arc::clone(&proxy))
        .at(format!("{PROXY_PREFIX}/org/repos"), Arc::clone(&api))
        .at(format!("{PROXY_PREFIX}/*path"), proxy)
        .at("/api/openapi.json", spec)
        .nest("/api/docs", ui)
        .at("/healthz", Arc::clone(&api))
        .nest_no_strip("/api", api)
        .nest("/", StaticFilesEndpoint::new(docs).index_file("index.html"))
        .catch_error(|_: NotFoundError| async {
            Problem::not_found("no resource at this path").into_response()
        })
        .map_to_response()
}
