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
//! so the `tracing` spans and events inside it still attach to it.

use std::any::Any;
use std::backtrace::Backtrace;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::future::Future as _;
use std::sync::{Arc, Once};
use std::time::{Instant, SystemTime};

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{
    FutureExt as _, SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator};
use poem::http::{HeaderMap, HeaderName, HeaderValue};
use poem::middleware::{CatchPanic, CatchPanicEndpoint};
use poem::{Body, Endpoint, Middleware, Request, Response};

use super::access_log;
use super::problem::Problem;
use crate::ports::{
    CacheTier, CompletedRequest, RemoteParent, RequestExport, RequestRecord, Telemetry,
};

/// The response header carrying the request's trace id.
pub static X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");

/// Longest stack kept in a panic's log record (CONTRACT 8).
pub const MAX_PANIC_STACK_BYTES: usize = 4 * 1024;

/// The route template of a path: a fixed, small set, so it can label
/// metrics. Raw paths never leave this function.
pub fn route_template(path: &str) -> &'static str {
    match path {
        "/healthz" => "/healthz",
        "/api/version" => "/api/version",
        "/api/metrics" => "/api/metrics",
        "/api/openapi.json" => "/api/openapi.json",
        "/api/deploy/events" => "/api/deploy/events",
        "/api/deploy/status" => "/api/deploy/status",
        "/api/cache/invalidate" => "/api/cache/invalidate",
        "/api/cache/warm" => "/api/cache/warm",
        "/api/cache/stats" => "/api/cache/stats",
        "/api/pipeline/summary" => "/api/pipeline/summary",
        "/api/github/org/repos" => "/api/github/org/repos",
        #[cfg(feature = "test-panic-route")]
        super::TEST_PANIC_PATH => super::TEST_PANIC_PATH,
        "/" => "/",
        p if p == "/api/github" || p.starts_with("/api/github/") => "/api/github/{path}",
        p if p == "/api/docs" || p.starts_with("/api/docs/") => "/api/docs",
        p if p == "/api" || p.starts_with("/api/") => "/api/{unknown}",
        _ => "/{file}",
    }
}

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

/// A panic caught in a handler, attached to the 500 it became.
#[derive(Debug, Clone)]
struct CaughtPanic {
    message: String,
    stack: String,
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

type PanicHandler = fn(Box<dyn Any + Send + 'static>) -> Response;

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
        let remote = remote_parent(req.headers());
        let ids = TraceIds::new(remote.as_ref());

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

/// The parent span an incoming `traceparent` names, if valid.
fn remote_parent(headers: &HeaderMap) -> Option<SpanContext> {
    if !headers.contains_key("traceparent") {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    let parent = cx.span().span_context().clone();
    parent.is_valid().then_some(parent)
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// The ids of the request's server span: the incoming trace id or a fresh
/// one, and always a fresh span id, so `X-Trace-ID`, the log line and the
/// exported span and record agree whether export is on or off.
struct TraceIds {
    trace_id: TraceId,
    span_id: SpanId,
    /// The caller's sampling decision; a trace started here is sampled.
    sampled: bool,
}

impl TraceIds {
    fn new(remote: Option<&SpanContext>) -> Self {
        let ids = RandomIdGenerator::default();
        Self {
            trace_id: remote.map_or_else(|| ids.new_trace_id(), SpanContext::trace_id),
            span_id: ids.new_span_id(),
            sampled: remote.is_none_or(SpanContext::is_sampled),
        }
    }

    /// The context children of the server span are made in.
    fn context(&self, remote: Option<&SpanContext>) -> Context {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let state = remote.map(|r| r.trace_state().clone()).unwrap_or_default();
        Context::new().with_remote_span_context(SpanContext::new(
            self.trace_id,
            self.span_id,
            flags,
            false,
            state,
        ))
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

/// The 500 a caught panic becomes: a generic problem response, with what
/// was caught attached for the middleware to log.
fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    let stack = LAST_PANIC_STACK
        .with(|s| s.borrow_mut().take())
        .unwrap_or_default();
    let mut response = Problem::internal().into_response();
    response
        .extensions_mut()
        .insert(CaughtPanic { message, stack });
    response
}

thread_local! {
    /// Set while a request's handler is being polled on this thread.
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
    /// The stack of the last handler panic on this thread, for the catcher.
    static LAST_PANIC_STACK: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Marks this thread as polling a handler until dropped; restores the
/// previous mark, so nested handlers (none today) would also be right.
struct InHandler(bool);

impl InHandler {
    fn enter() -> Self {
        Self(IN_HANDLER.with(|f| f.replace(true)))
    }
}

impl Drop for InHandler {
    fn drop(&mut self) {
        IN_HANDLER.with(|f| f.set(self.0));
    }
}

/// Installs, once per process, a panic hook that keeps the stack of a
/// handler panic for the catcher (the stack is gone by the time
/// `catch_unwind` returns). Panics elsewhere go to the previous hook.
fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_HANDLER.with(Cell::get) {
                let stack = format!("{info}\n{}", Backtrace::force_capture());
                let stack = truncate_utf8(stack, MAX_PANIC_STACK_BYTES);
                LAST_PANIC_STACK.with(|s| *s.borrow_mut() = Some(stack));
            } else {
                previous(info);
            }
        }));
    });
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn truncate_utf8(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
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
            ("/api/deploy/events", "/api/deploy/events"),
            ("/api/docs/index.js", "/api/docs"),
            ("/api/nothing/here", "/api/{unknown}"),
            ("/", "/"),
            ("/app.js", "/{file}"),
            ("/../../etc/passwd", "/{file}"),
        ] {
            assert_eq!(route_template(path), template, "{path}");
        }
    }

    #[test]
    fn stacks_are_cut_on_a_character_boundary() {
        let text = "é".repeat(3000);
        let cut = truncate_utf8(text, MAX_PANIC_STACK_BYTES);
        assert!(cut.len() <= MAX_PANIC_STACK_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_traceparent_names_the_remote_parent() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let parent = remote_parent(&headers).expect("valid traceparent");
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        headers.insert("traceparent", HeaderValue::from_static("00-garbage"));
        assert!(remote_parent(&headers).is_none());
    }

    #[test]
    fn a_continued_trace_keeps_its_id_and_sampling_with_a_fresh_span_id() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        );
        let remote = remote_parent(&headers).expect("valid traceparent");
        let ids = TraceIds::new(Some(&remote));
        assert_eq!(ids.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(ids.span_id, remote.span_id());
        assert_ne!(ids.span_id, SpanId::INVALID);
        assert!(!ids.sampled, "the caller's flags say not sampled");

        let cx = ids.context(Some(&remote));
        let current = cx.span().span_context().clone();
        assert_eq!(
            current.span_id(),
            ids.span_id,
            "children parent on our span"
        );
        assert!(!current.is_remote());

        let fresh = TraceIds::new(None);
        assert_ne!(fresh.trace_id, TraceId::INVALID);
        assert!(fresh.sampled);
    }
}
