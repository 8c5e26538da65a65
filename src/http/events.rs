//! `GET /api/events` (CONTRACT 6, v2): the live events of
//! `service::events` as Server-Sent Events, `deploy`, `invalidate` and
//! `summary`, with a comment line every heartbeat (15 s) so proxies keep
//! the stream open. A client too slow to keep up with the bounded buffer
//! is disconnected (it reconnects and reloads), never buffered for.
//! Described in the OpenAPI document by `http::raw_docs`.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use poem::http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Body, Endpoint, Request, Response};
use poem_openapi::types::ToJSON;

use super::problem::Problem;
use super::summary::PipelineSummary;
use crate::ports::{LiveEvent, LiveEventKind};
use crate::service::events::{Delivery, LiveEvents};
use crate::service::summary;

/// The heartbeat interval of the contract.
pub const SSE_HEARTBEAT: Duration = Duration::from_secs(15);

/// What a client is told when it first connects: reconnect after 3 s if
/// the stream drops.
const PREAMBLE: &str = "retry: 3000\n: connected\n\n";

/// The stream endpoint.
pub struct EventsEndpoint {
    events: LiveEvents,
    heartbeat: Duration,
}

impl EventsEndpoint {
    /// Streams `events`, with a comment line every `heartbeat`.
    pub fn new(events: LiveEvents, heartbeat: Duration) -> Self {
        Self { events, heartbeat }
    }
}

impl Endpoint for EventsEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut response =
                Problem::method_not_allowed("the event stream is read with GET").into_response();
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Ok(response);
        }
        let builder = Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache")
            .header("X-Accel-Buffering", "no");
        if req.method() == Method::HEAD {
            return Ok(builder.finish());
        }
        let body = event_stream(self.events.subscribe(), self.heartbeat);
        Ok(builder.body(Body::from_bytes_stream(body)))
    }
}

/// The bytes of the stream: the preamble, then every event, and a
/// heartbeat comment whenever `heartbeat` passes without one. A subscriber
/// that misses events ends in an error, which drops the connection (a
/// cleanly ended body would leave an idle keep-alive connection behind);
/// the client reconnects and reloads.
fn event_stream(
    deliveries: BoxStream<'static, Delivery>,
    heartbeat: Duration,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let frames = stream::unfold(Some((deliveries, interval)), |state| async move {
        let (mut deliveries, mut interval) = state?;
        let bytes = tokio::select! {
            delivery = deliveries.next() => match delivery? {
                Delivery::Event(event) => {
                    interval.reset();
                    frame(&event)
                }
                Delivery::Missed(missed) => {
                    tracing::info!(missed, "an event stream client fell behind; disconnecting it");
                    let error = std::io::Error::other("the client fell behind");
                    return Some((Err(error), None));
                }
            },
            _ = interval.tick() => Bytes::from_static(b": heartbeat\n\n"),
        };
        Some((Ok(bytes), Some((deliveries, interval))))
    });
    stream::once(async { Ok(Bytes::from_static(PREAMBLE.as_bytes())) })
        .chain(frames)
        .boxed()
}

/// One SSE frame: `event:` and one `data:` line per line of data.
fn frame(event: &LiveEvent) -> Bytes {
    let data = match event.kind {
        LiveEventKind::Summary => served_summary(&event.data),
        _ => event.data.clone(),
    };
    let mut frame = format!("event: {}\n", event.kind.as_str());
    for line in data.lines() {
        frame.push_str("data: ");
        frame.push_str(line);
        frame.push('\n');
    }
    frame.push('\n');
    Bytes::from(frame)
}

/// A stored summary as `GET /api/pipeline/summary` serves it.
fn served_summary(stored: &str) -> String {
    match serde_json::from_str::<summary::PipelineSummary>(stored) {
        Ok(stored) => PipelineSummary::from(&stored).to_json_string(),
        Err(_) => stored.to_owned(),
    }
}
