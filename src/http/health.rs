//! `GET /healthz` and `GET /api/version`.

use std::sync::Arc;

use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::service::health::HealthService;

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
    chimney_version: String,
    wgmesh_version: String,
}

impl HealthApi {
    /// The API over a health service, reporting the build's versions.
    pub fn new(health: Arc<HealthService>, chimney_version: &str, wgmesh_version: &str) -> Self {
        Self {
            health,
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
