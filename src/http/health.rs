//! `GET /healthz` and `GET /api/version`.

use std::sync::Arc;

use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use poem_openapi::ApiResponse;

use super::problem::{Problem, ProblemType};
use crate::service::health::{HealthService, Readiness};

/// Liveness and cache state.
#[derive(Debug, Object)]
pub struct Health {
    /// Always `ok` while the process serves.
    pub status: String,
    /// The repository proxied by `/api/github/...`.
    pub repo: String,
    /// Dragonfly tier state: `connected`, `connecting`, `unavailable`,
    /// `error`, or `disabled` (in-memory only).
    pub dragonfly: String,
    /// Keys under the cache prefix in Dragonfly, when connected (counted in
    /// the background every 10 s, so answering never scans Dragonfly).
    #[oai(skip_serializing_if_is_none)]
    pub dragonfly_keys: Option<u64>,
    /// Dragonfly's `used_memory_human` (the whole server), when connected.
    #[oai(skip_serializing_if_is_none)]
    pub dragonfly_memory: Option<String>,
    /// The last error connecting to or talking to Dragonfly (no
    /// credentials), kept after it recovers; absent when there was none.
    #[oai(skip_serializing_if_is_none)]
    pub dragonfly_error: Option<String>,
    /// Entries in this process's memory tier.
    pub mem_cache_entries: u64,
    /// Requests answered from a fresh cache entry.
    pub cache_hits: u64,
    /// Requests that had to ask GitHub.
    pub cache_misses: u64,
}

/// The instance takes traffic.
#[derive(Debug, Object)]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
}

/// Answers of `GET /readyz`.
#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// The instance takes traffic.
    #[oai(status = 200)]
    Ready(Json<Ready>),
    /// A stop signal arrived: requests are still served during the
    /// shutdown grace, but new traffic belongs on another instance.
    #[oai(status = 503, content_type = "application/problem+json")]
    NotReady(Json<Problem>),
}

/// Build versions.
#[derive(Debug, Object)]
pub struct Version {
    /// chimney's own version.
    pub chimney_version: String,
    /// The wgmesh version the dashboard describes.
    pub wgmesh_version: String,
}

/// Health and version operations.
pub struct HealthApi {
    health: Arc<HealthService>,
    readiness: Readiness,
    chimney_version: String,
    wgmesh_version: String,
}

impl HealthApi {
    /// The API over a health service and the instance's readiness,
    /// reporting the build's versions.
    pub fn new(
        health: Arc<HealthService>,
        readiness: Readiness,
        chimney_version: &str,
        wgmesh_version: &str,
    ) -> Self {
        Self {
            health,
            readiness,
            chimney_version: chimney_version.to_owned(),
            wgmesh_version: wgmesh_version.to_owned(),
        }
    }
}

/// Operations about the service itself.
#[OpenApi(tag = "super::Tag::Service")]
impl HealthApi {
    /// Service health
    ///
    /// Answers 200 whenever the process serves, with the state of both
    /// cache tiers and the hit and miss counts.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> Json<Health> {
        let report = self.health.report();
        Json(Health {
            status: "ok".to_owned(),
            repo: report.repo,
            dragonfly: report.dragonfly.as_str().to_owned(),
            dragonfly_keys: report.dragonfly_keys,
            dragonfly_memory: report.dragonfly_memory,
            dragonfly_error: report.dragonfly_error,
            mem_cache_entries: report.mem_cache_entries,
            cache_hits: report.cache_hits,
            cache_misses: report.cache_misses,
        })
    }

    /// Readiness
    ///
    /// 200 while the instance takes traffic; 503 from the moment it
    /// receives a stop signal, while it still serves during the shutdown
    /// grace (`CHIMNEY_SHUTDOWN_GRACE`), so a load balancer polling this
    /// moves traffic away before the listener closes.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(&self) -> ReadyResponse {
        if self.readiness.is_ready() {
            ReadyResponse::Ready(Json(Ready {
                status: "ready".to_owned(),
            }))
        } else {
            ReadyResponse::NotReady(Json(Problem::new(
                poem::http::StatusCode::SERVICE_UNAVAILABLE,
                ProblemType::NotReady,
                "shutting down: send new requests to another instance",
            )))
        }
    }

    /// Build versions
    ///
    /// The versions injected when chimney was built.
    #[oai(path = "/api/version", method = "get")]
    async fn version(&self) -> Json<Version> {
        Json(Version {
            chimney_version: self.chimney_version.clone(),
            wgmesh_version: self.wgmesh_version.clone(),
        })
    }
}
