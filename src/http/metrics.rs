//! `GET /api/metrics`: the recorded metrics in the Prometheus text format
//! 0.0.4, rendered by the `MetricsScrape` port. Described in the OpenAPI
//! document by `http::raw_docs`.

use std::sync::Arc;

use poem::http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use poem::http::{HeaderValue, StatusCode};
use poem::{Endpoint, Request, Response};

use super::problem::Problem;
use crate::ports::MetricsScrape;

/// The scrape endpoint.
pub struct MetricsEndpoint {
    metrics: Arc<dyn MetricsScrape>,
}

impl MetricsEndpoint {
    /// Serves what `metrics` renders.
    pub fn new(metrics: Arc<dyn MetricsScrape>) -> Self {
        Self { metrics }
    }
}

impl Endpoint for MetricsEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        if req.method() != poem::http::Method::GET && req.method() != poem::http::Method::HEAD {
            let mut response =
                Problem::method_not_allowed("the metrics are read with GET").into_response();
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Ok(response);
        }
        Ok(match self.metrics.scrape() {
            Ok(scrape) => Response::builder()
                .status(StatusCode::OK)
                .header(CONTENT_TYPE, scrape.content_type)
                .header(CACHE_CONTROL, "no-store")
                .body(scrape.body),
            Err(error) => {
                tracing::error!(error = %error, "metrics could not be rendered");
                Problem::internal().into_response()
            }
        })
    }
}
