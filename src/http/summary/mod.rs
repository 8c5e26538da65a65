//! `GET /api/pipeline/summary`: the pipeline summary the dashboard shows.
//! Building and caching it is `service::summary`'s job; this file only maps it
//! to HTTP.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use crate::service::summary::SummaryService;

mod dto;

pub use dto::PipelineSummary;

/// Answers of the summary operation.
#[derive(ApiResponse)]
pub enum SummaryResponse {
    /// The summary. It is never an error: when GitHub fails some part,
    /// that part is `null` and named in `missing`.
    #[oai(status = 200)]
    Ok(
        Json<PipelineSummary>,
        /// `HIT` from the cache, `MISS` built for this request, `COALESCED`
        /// built for a concurrent request.
        #[oai(header = "X-Cache")]
        String,
        /// Whole seconds since the summary was built.
        #[oai(header = "X-Cache-Age")]
        u64,
    ),
}

/// The pipeline summary operation.
pub struct SummaryApi {
    service: SummaryService,
}

impl SummaryApi {
    /// The API over a summary service.
    pub fn new(service: SummaryService) -> Self {
        Self { service }
    }
}

/// Aggregated views for the dashboard.
#[OpenApi(tag = "super::Tag::Dashboard")]
impl SummaryApi {
    /// Pipeline summary
    ///
    /// Open issues and pull requests, the last merged pull request and the
    /// build workflow's last 10 completed runs with their success rate.
    /// Cached for 60 s (10 s when partial) under `__pipeline_summary__`;
    /// the lists behind it are read through the GitHub proxy's cache.
    #[oai(path = "/api/pipeline/summary", method = "get")]
    async fn pipeline_summary(&self) -> SummaryResponse {
        let reply = self.service.summary().await;
        SummaryResponse::Ok(
            Json(PipelineSummary::from(reply.summary.as_ref())),
            reply.x_cache.as_str().to_owned(),
            reply.age_secs,
        )
    }
}
