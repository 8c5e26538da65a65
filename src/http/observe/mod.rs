//! `Observe`: the middleware around the whole route tree that gives every
//! request its server span (continuing an incoming W3C `traceparent`), its
//! `X-Trace-ID`, its request metrics and its one JSON log line, and turns a
//! panic in a handler into a logged, counted, traced 500.
//!
//! What a handler knows and the middleware cannot see (the cache outcome)
//! travels back as a [`CacheOutcome`] response extension.
//!
//! The server span is not a `tracing` span, nor an SDK span: the middleware
//! makes the request's ids, fills one `RequestRecord` when the response is
//! ready, and hands it to the request exporter, which writes both the span
//! and the log record from it (on the hit path, the `tracing` and SDK
//! machinery cost several times the export itself: bench/telemetry.sh).
//! With export on, the span's context is current while the handler runs,
//! so the `tracing` spans and events inside it still attach to it; and the
//! exporter's sampler (`OTEL_TRACES_SAMPLER`) decides, as the request
//! arrives, whether the trace is sampled: an unsampled request exports its
//! log record but neither its span nor its children.

mod panic;
mod trace_context;

use std::borrow::Cow;
use std::future::Future as _;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use opentelemetry::Context;
use opentelemetry::trace::FutureExt as _;
use poem::http::{HeaderName, HeaderValue};
use poem::middleware::{CatchPanic, CatchPanicEndpoint};
use poem::{Body, Endpoint, Middleware, Request, Response};

use super::access_log;
use super::routes::route_template;
use crate::ports::{
    CacheTier, CompletedRequest, MAX_LOGGED_TARGET_BYTES, RemoteParent, RequestExport,
    RequestRecord, Telemetry,
};
pub use panic::MAX_PANIC_STACK_BYTES;
use panic::{CaughtPanic, InHandler, PanicHandler, install_panic_hook, panic_response};
use trace_context::{TraceIds, remote_parent};

/// The response header carrying the request's trace id.
pub static X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");

/// What the proxy tells the middleware about how it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOutcome {
    /// Served from a fresh cache entry without asking GitHub.
    pub hit: bool,
    /// The tier that served a hit.
    pub tier: Option<CacheTier>,
    /// The GitHub API path behind the request, e.g. `/repos/o/r/pulls`.
    pub github_path: String,
}

impl CacheOutcome {
    /// `dragonfly`, `memory` or `none`.
    pub fn tier_name(&self) -> &'static str {
        self.tier.map_or("none", CacheTier::as_str)
    }
}

/// The middleware. Apply it outermost, so it sees every response,
/// including 404s, 405s and caught panics.
pub struct Observe {
    telemetry: Arc<dyn Telemetry>,
    /// `None` while export is off: ids are still made, nothing is sent.
    exporter: Option<Arc<dyn RequestExport>>,
}

impl Observe {
    /// Reports completed requests and panics to `telemetry`, and exports
    /// each request's span and log record to `exporter` when there is one.
    pub fn new(telemetry: Arc<dyn Telemetry>, exporter: Option<Arc<dyn RequestExport>>) -> Self {
        install_panic_hook();
        Self {
            telemetry,
            exporter,
        }
    }
}

impl<E: Endpoint> Middleware<E> for Observe {
    type Output = ObserveEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        let catch = CatchPanic::new().with_handler(panic_response as PanicHandler);
        ObserveEndpoint {
            inner: catch.transform(ep),
            telemetry: Arc::clone(&self.telemetry),
            exporter: self.exporter.clone(),
        }
    }
}

/// The endpoint [`Observe`] produces.
pub struct ObserveEndpoint<E> {
    inner: CatchPanicEndpoint<E, PanicHandler>,
    telemetry: Arc<dyn Telemetry>,
    exporter: Option<Arc<dyn RequestExport>>,
}

impl<E: Endpoint> Endpoint for ObserveEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let started = Instant::now();
        let start = SystemTime::now();
        let route = route_template(req.uri().path());
        let method = method_name(req.method());
        let url_path = req.uri().path().to_owned();
        let target = logged_target(req.original_uri());
        let remote = remote_parent(req.headers());
        let ids = TraceIds::new(remote.as_ref(), self.exporter.as_deref());

        let inner = self.inner.call(req);
        let mut inner = std::pin::pin!(inner);
        let handler = std::future::poll_fn(|cx| {
            let _flag = InHandler::enter();
            inner.as_mut().poll(cx)
        });
        // With export on, the request's span context is current while the
        // handler runs, so the spans and log records it makes (the GitHub
        // fetch, an invalidation) are the server span's children.
        let cx = self
            .exporter
            .is_some()
            .then(|| ids.context(remote.as_ref()));
        let result = match &cx {
            Some(cx) => handler.with_context(cx.clone()).await,
            None => handler.await,
        };
        let mut response = match result {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        let latency = started.elapsed();
        let status = response.status();
        let bytes = body_len(&mut response);
        if let Ok(value) = HeaderValue::from_str(&ids.trace_id.to_string()) {
            response.headers_mut().insert(X_TRACE_ID.clone(), value);
        }

        let outcome = response.extensions().get::<CacheOutcome>();
        let error = self.span_error(&response, &method, route, cx);
        self.telemetry.request_completed(&CompletedRequest {
            route,
            status: status.as_u16(),
            latency,
        });
        let record = RequestRecord {
            trace_id: ids.trace_id.to_bytes(),
            span_id: ids.span_id.to_bytes(),
            parent: remote.as_ref().map(|parent| RemoteParent {
                span_id: parent.span_id().to_bytes(),
                trace_state: Some(parent.trace_state().header()).filter(|s| !s.is_empty()),
            }),
            sampled: ids.sampled,
            method,
            route,
            url_path,
            target,
            status: status.as_u16(),
            start,
            latency,
            cache_hit: outcome.is_some_and(|o| o.hit),
            cache_tier: outcome.map_or("none", CacheOutcome::tier_name),
            github_path: outcome.map(|o| o.github_path.clone()),
            bytes,
            error,
        };
        access_log::write(&record);
        if let Some(exporter) = &self.exporter {
            exporter.export(record);
        }
        Ok(response)
    }
}

impl<E> ObserveEndpoint<E> {
    /// Why the request's span is an error, if it is: a caught panic (logged
    /// at ERROR in the request's trace, and counted) or a 5xx.
    fn span_error(
        &self,
        response: &Response,
        method: &str,
        route: &'static str,
        cx: Option<Context>,
    ) -> Option<Cow<'static, str>> {
        if let Some(panic) = response.extensions().get::<CaughtPanic>() {
            let _current = cx.map(Context::attach);
            tracing::error!(
                target: "chimney::http",
                method,
                route,
                panic = %panic.message,
                stack = %panic.stack,
                "handler panicked; answered 500"
            );
            self.telemetry.panic_caught();
            return Some(Cow::Borrowed("panic"));
        }
        let status = response.status();
        status
            .is_server_error()
            .then(|| Cow::Borrowed(status.canonical_reason().unwrap_or("server error")))
    }
}

/// The method's name, without allocating for the standard ones.
fn method_name(method: &poem::http::Method) -> Cow<'static, str> {
    use poem::http::Method;
    Cow::Borrowed(match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => return Cow::Owned(method.as_str().to_owned()),
    })
}

/// The exact body size when known up front (all of chimney's own bodies),
/// else 0 (a stream).
fn body_len(response: &mut Response) -> u64 {
    let body: BoxBody = response.take_body().into();
    let size = http_body::Body::size_hint(&body).exact().unwrap_or(0);
    response.set_body(Body::from(body));
    size
}

type BoxBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;

/// The path and query as received, cut on a character boundary at
/// [`MAX_LOGGED_TARGET_BYTES`] so a hostile URL cannot bloat the log.
fn logged_target(uri: &poem::http::Uri) -> String {
    let full = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut end = full.len().min(MAX_LOGGED_TARGET_BYTES);
    while !full.is_char_boundary(end) {
        end -= 1;
    }
    full[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logged_target_keeps_the_query_and_stops_at_two_kib() {
        let uri: poem::http::Uri = "/api/github/pulls?state=open&page=2".parse().unwrap();
        assert_eq!(logged_target(&uri), "/api/github/pulls?state=open&page=2");
        let long: poem::http::Uri = format!("/api/github/{}", "a".repeat(5000)).parse().unwrap();
        assert_eq!(logged_target(&long).len(), MAX_LOGGED_TARGET_BYTES);
    }
}
