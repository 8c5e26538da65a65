//! `POST /api/cache/invalidate`, `POST /api/cache/warm` (CONTRACT 6) and
//! `GET /api/cache/stats` (CONTRACT 7): wire types and their mapping. What
//! an invalidation may touch is decided by `service::cache_admin` and the
//! domain's `InvalidationScope`.

use std::sync::Arc;

use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::admin_response::admin_response;
use super::auth::InvalidateToken;
use super::body::{FromJsonFields, JsonBody, JsonFields, RequestFault};
use super::problem::{Problem, ProblemType};
use crate::service::cache_admin::{
    CacheAdminService, CacheStatsReport, InvalidateCommand, InvalidateError, MAX_STATS_PAGE,
};

/// Longest accepted `path` prefix.
const MAX_PATH_CHARS: usize = 2048;
/// Longest accepted `reason`.
const MAX_REASON_CHARS: usize = 1024;
/// Keys per stats page when `limit` is not given.
const DEFAULT_STATS_PAGE: usize = 100;

/// What to evict.
#[derive(Debug, Clone, Object)]
#[oai(rename = "InvalidateRequest")]
pub struct InvalidateBody {
    /// Cache-key prefix to evict, e.g. `/pulls` (covers every query of
    /// `/pulls` and `/pulls/…`). Matched literally: `*`, `?` and `[` are
    /// ordinary characters. `/__pipeline_summary__` names the pipeline
    /// summary, which no other prefix evicts. Required unless `all` is true.
    pub path: Option<String>,
    /// Alias of `path`; give one or the other.
    pub prefix: Option<String>,
    /// Why, for the log; echoed back.
    pub reason: Option<String>,
    /// Evict everything, the pipeline summary included. Refused (403)
    /// unless the instance runs with `INVALIDATE_ALL_ALLOWED=true`.
    #[oai(default)]
    pub all: bool,
}

impl FromJsonFields for InvalidateBody {
    fn from_fields(fields: &JsonFields) -> Result<Self, String> {
        const TEXT: &str = "a string";
        let path: Option<String> = fields.optional_with_alias("path", "prefix", TEXT)?;
        let reason: Option<String> = fields.optional("reason", TEXT)?;
        let all = fields.optional("all", "a boolean")?.unwrap_or(false);
        if path
            .as_ref()
            .is_some_and(|p| p.chars().count() > MAX_PATH_CHARS)
        {
            return Err(format!("path must be at most {MAX_PATH_CHARS} characters"));
        }
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
        {
            return Err(format!(
                "reason must be at most {MAX_REASON_CHARS} characters"
            ));
        }
        Ok(Self {
            path,
            prefix: None,
            reason,
            all,
        })
    }
}

/// What an invalidation removed.
#[derive(Debug, Clone, Object)]
#[oai(rename = "InvalidateResult")]
pub struct InvalidationResult {
    /// Distinct cache keys removed from either tier.
    pub evicted: u64,
    /// Keys removed from this instance's memory tier.
    pub memory: u64,
    /// Keys removed from Dragonfly (0 without Dragonfly).
    pub dragonfly: u64,
    /// The prefix as given (null for `all` without a path).
    #[oai(nullable)]
    pub path: Option<String>,
    /// The reason as given.
    #[oai(nullable)]
    pub reason: Option<String>,
}

admin_response! {
    /// Answers of `POST /api/cache/invalidate`.
    pub enum InvalidateResponse handled by "invalidate_fault" as invalidate_fault {
        /// The entries were evicted (other instances drop them from memory too).
        #[oai(status = 200)]
        Ok(Json<InvalidationResult>),
    }
    bad_request:
        /// Malformed JSON, a wrong type, or neither `path` nor `all`; `detail`
        /// names the field.
    unauthorized:
        /// The bearer token is missing or is not `INVALIDATE_TOKEN`.
    forbidden:
        /// `all: true` without `INVALIDATE_ALL_ALLOWED=true`, or a browser
        /// request from an origin not in `CHIMNEY_CORS_ORIGINS`.
    too_large:
        /// The body is over 64 KiB.
    extra: {
    }
    disabled:
        /// `INVALIDATE_TOKEN` is not set on this instance: cache control is
        /// disabled (`endpoint-disabled`). Or Dragonfly is configured but
        /// unreachable (`shared-tier-unavailable`): this instance's memory
        /// tier was cleared, the shared tier was not; retry.
}

/// The warm-up that was started.
#[derive(Debug, Clone, Object)]
#[oai(rename = "WarmAccepted")]
pub struct WarmAccepted {
    /// The proxy URLs being fetched in the background.
    pub paths: Vec<String>,
}

admin_response! {
    /// Answers of `POST /api/cache/warm`.
    pub enum WarmResponse handled by "warm_fault" as warm_fault {
        /// The warm-up started; it runs in the background.
        #[oai(status = 202)]
        Accepted(Json<WarmAccepted>),
    }
    bad_request:
        /// The request could not be read.
    unauthorized:
        /// The bearer token is missing or is not `INVALIDATE_TOKEN`.
    forbidden:
        /// A browser request from an origin not in `CHIMNEY_CORS_ORIGINS`.
    too_large:
        /// The body (ignored) is over 64 KiB.
    extra: {
    }
    disabled:
        /// `INVALIDATE_TOKEN` is not set on this instance: cache control is
        /// disabled.
}

/// Counters of this instance's cache.
#[derive(Debug, Clone, Object)]
#[oai(rename = "CacheStats")]
pub struct CacheStats {
    /// Requests answered fresh from either tier.
    pub hits: u64,
    /// Hits served by the memory tier.
    pub memory_hits: u64,
    /// Hits served by the Dragonfly tier.
    pub dragonfly_hits: u64,
    /// Requests that went to GitHub.
    pub misses: u64,
    /// Requests that shared a concurrent request's fetch.
    pub coalesced: u64,
    /// This instance's memory tier.
    pub memory: MemoryTierStats,
    /// The shared Dragonfly tier.
    pub dragonfly: DragonflyTierStats,
    /// Entries in this instance's memory tier (the same as
    /// `memory.entries`, under the name the original chimney used).
    pub mem_entries: u64,
    /// How many cache keys Dragonfly holds, counted in the background
    /// every 10 s; null when Dragonfly is not in use (the original
    /// chimney's field).
    #[oai(nullable)]
    pub dragonfly_keys: Option<u64>,
}

/// The memory tier's size.
#[derive(Debug, Clone, Object)]
pub struct MemoryTierStats {
    /// Entries held.
    pub entries: u64,
    /// Approximate bytes held (bodies, headers and keys).
    pub bytes: u64,
}

/// The Dragonfly tier: its state and one page of its cache keys.
#[derive(Debug, Clone, Object)]
pub struct DragonflyTierStats {
    /// `connected`, `connecting`, `unavailable`, `error`, or `disabled`
    /// (in-memory only).
    pub state: String,
    /// One page of the keys under the cache prefix, with their TTLs; null
    /// when Dragonfly is not in use. Keys may repeat across pages.
    #[oai(nullable)]
    pub keys: Option<Vec<CacheKeyTtl>>,
    /// Pass as `cursor` to get the next page; null when the listing is
    /// complete or Dragonfly is not in use.
    #[oai(nullable)]
    pub next_cursor: Option<u64>,
}

/// A cache key held in Dragonfly.
#[derive(Debug, Clone, Object)]
pub struct CacheKeyTtl {
    /// The cache key (path and normalised query).
    pub key: String,
    /// Milliseconds until Dragonfly drops it (TTL plus the stale window);
    /// null when it has no expiry.
    #[oai(nullable)]
    pub ttl_ms: Option<i64>,
}

impl From<CacheStatsReport> for CacheStats {
    fn from(report: CacheStatsReport) -> Self {
        let (keys, next_cursor) = match report.dragonfly_keys {
            Some(page) => (
                Some(
                    page.keys
                        .into_iter()
                        .map(|(key, ttl_ms)| CacheKeyTtl {
                            key: key.as_str().to_owned(),
                            ttl_ms,
                        })
                        .collect(),
                ),
                Some(page.next_cursor).filter(|c| *c != 0),
            ),
            None => (None, None),
        };
        Self {
            hits: report.hits,
            memory_hits: report.memory_hits,
            dragonfly_hits: report.dragonfly_hits,
            misses: report.misses,
            coalesced: report.coalesced,
            mem_entries: report.memory_entries,
            dragonfly_keys: report.dragonfly_key_count,
            memory: MemoryTierStats {
                entries: report.memory_entries,
                bytes: report.memory_bytes,
            },
            dragonfly: DragonflyTierStats {
                state: report.dragonfly.as_str().to_owned(),
                keys,
                next_cursor,
            },
        }
    }
}

/// Answers of `GET /api/cache/stats`.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "stats_fault")]
pub enum CacheStatsResponse {
    /// The statistics.
    #[oai(status = 200)]
    Ok(Json<CacheStats>),
    /// `cursor` or `limit` is not a whole number.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
}

fn stats_fault(err: poem::Error) -> CacheStatsResponse {
    CacheStatsResponse::BadRequest(Json(RequestFault::classify(&err).problem()))
}

/// Cache control and statistics operations.
pub struct CacheApi {
    service: Arc<CacheAdminService>,
}

impl CacheApi {
    /// The API over a cache admin service.
    pub fn new(service: Arc<CacheAdminService>) -> Self {
        Self { service }
    }
}

/// Runtime control of the two cache tiers.
#[OpenApi(tag = "super::Tag::Cache")]
impl CacheApi {
    /// Invalidate cached entries
    ///
    /// Evicts every cache key starting with `path` from both tiers, and
    /// tells the other instances sharing Dragonfly to drop them from their
    /// memory. Requires `Authorization: Bearer $INVALIDATE_TOKEN`.
    #[oai(path = "/api/cache/invalidate", method = "post")]
    async fn invalidate(
        &self,
        #[allow(unused_variables)] auth: InvalidateToken,
        body: JsonBody<InvalidateBody>,
    ) -> InvalidateResponse {
        let body = body.0;
        let command = InvalidateCommand {
            path: body.path.clone(),
            all: body.all,
            reason: body.reason.clone(),
        };
        match self.service.invalidate(&command).await {
            Ok(report) => InvalidateResponse::Ok(Json(InvalidationResult {
                evicted: report.evicted,
                memory: report.memory,
                dragonfly: report.dragonfly,
                path: body.path,
                reason: body.reason,
            })),
            Err(error @ InvalidateError::AllNotAllowed) => {
                InvalidateResponse::Forbidden(Json(Problem::new(
                    poem::http::StatusCode::FORBIDDEN,
                    ProblemType::InvalidateAllDisabled,
                    error.to_string(),
                )))
            }
            Err(error @ InvalidateError::NothingNamed) => {
                InvalidateResponse::BadRequest(Json(Problem::bad_request(error.to_string())))
            }
            Err(error @ InvalidateError::SharedTierUnavailable { .. }) => {
                InvalidateResponse::Disabled(Json(Problem::new(
                    poem::http::StatusCode::SERVICE_UNAVAILABLE,
                    ProblemType::SharedTierUnavailable,
                    error.to_string(),
                )))
            }
        }
    }

    /// Warm the cache
    ///
    /// Answers 202 at once, then fetches the hot paths (open pulls, open
    /// issues, recent workflow runs) through the proxy in the background so
    /// they are cached; entries that are still fresh are left alone.
    /// Requires `Authorization: Bearer $INVALIDATE_TOKEN`.
    #[oai(path = "/api/cache/warm", method = "post")]
    async fn warm(&self, #[allow(unused_variables)] auth: InvalidateToken) -> WarmResponse {
        WarmResponse::Accepted(Json(WarmAccepted {
            paths: self.service.warm(),
        }))
    }

    /// Cache statistics
    ///
    /// Hit and miss counts, the memory tier's size, and a page of the cache
    /// keys in Dragonfly with their TTLs (walk the pages with `cursor`).
    #[oai(path = "/api/cache/stats", method = "get")]
    async fn stats(
        &self,
        /// Where to continue the Dragonfly key listing: 0 (the default) to
        /// start, else a previous page's `next_cursor`.
        #[oai(default)]
        cursor: Query<u64>,
        /// About how many keys per page (1 to 500; default 100).
        limit: Query<Option<u64>>,
    ) -> CacheStatsResponse {
        let limit = limit.0.map_or(DEFAULT_STATS_PAGE, |l| {
            l.min(MAX_STATS_PAGE as u64) as usize
        });
        CacheStatsResponse::Ok(Json(self.service.stats(cursor.0, limit).await.into()))
    }
}
