//! One connection, HTTP/1.1 or HTTP/2 (h2c), served by hyper over poem's
//! routes, with the rules of CONTRACT 2 that poem's server cannot apply:
//!
//! * **The wait for request headers is bounded.** A connection that has
//!   not sent complete request headers within the header timeout of
//!   opening, or of its previous response, is closed; so an idle
//!   keep-alive connection closes after it, and a client trickling a
//!   request line byte by byte (slowloris) cannot hold a connection. The
//!   clock runs only while no request is in flight: a response that takes
//!   long (a slow GitHub, a future server-sent-events stream) is never cut.
//!   hyper's own HTTP/1 header timeout enforces it while a request head is
//!   being read; a watchdog here covers the rest (a connection that sends
//!   nothing, before hyper knows which protocol it speaks, and HTTP/2).
//! * **HTTP/2 streams are capped** per connection (`max_concurrent_streams`
//!   in the server's SETTINGS; the client's extra streams are refused).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use poem::endpoint::BoxEndpoint;
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, Request};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Phase;

/// How long a connection told to close (no request in flight, or the
/// server stopping after its drain) gets to say so politely (an HTTP/2
/// GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Largest HTTP/2 header block accepted, as poem's server had it.
const HTTP2_MAX_HEADER_LIST: u32 = 16 * 1024;
/// Reset streams an HTTP/2 client may leave pending (hyper's default;
/// bounds the "rapid reset" attack).
const HTTP2_MAX_PENDING_RESETS: usize = 20;

/// The per-connection rules.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionRules {
    /// The longest wait for complete request headers.
    pub header_timeout: Duration,
    /// The most concurrent HTTP/2 streams.
    pub http2_max_streams: u32,
}

/// Requests in flight on one connection, and since when none has been.
#[derive(Debug, Clone, Copy)]
struct Activity {
    in_flight: usize,
    idle_since: Instant,
}

/// Counts a request in flight from the moment its headers are complete
/// (hyper calls the service) until its response body has been sent or
/// dropped.
struct InFlight(Arc<watch::Sender<Activity>>);

impl InFlight {
    fn start(activity: &Arc<watch::Sender<Activity>>) -> Self {
        activity.send_modify(|a| a.in_flight += 1);
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|a| {
            a.in_flight -= 1;
            if a.in_flight == 0 {
                a.idle_since = Instant::now();
            }
        });
    }
}

/// A response body that keeps its request counted as in flight until
/// hyper is done with it.
struct Counted<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Completes when the connection has had no request in flight for
/// `timeout`: since it opened, or since its last response ended.
async fn idle_for(mut activity: watch::Receiver<Activity>, timeout: Duration) {
    loop {
        let now = *activity.borrow_and_update();
        if now.in_flight > 0 {
            if activity.changed().await.is_err() {
                return std::future::pending().await;
            }
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep_until(now.idle_since + timeout) => return,
            changed = activity.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// Serves `stream` until the client closes it, it breaks a rule above, or
/// the server stops (`phase`: draining lets requests in flight finish,
/// stopped drops the connection).
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    routes: Arc<BoxEndpoint<'static>>,
    rules: ConnectionRules,
    mut phase: watch::Receiver<Phase>,
) {
    // Small JSON answers should not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(watch::Sender::new(Activity {
        in_flight: 0,
        idle_since: Instant::now(),
    }));
    let watched = activity.subscribe();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(&activity);
        let routes = Arc::clone(&routes);
        async move {
            let req = Request::from((
                req,
                LocalAddr(local.into()),
                RemoteAddr(peer.into()),
                Scheme::HTTP,
            ));
            let response: hyper::Response<_> = routes.get_response(req).await.into();
            Ok::<_, Infallible>(response.map(|inner| Counted {
                inner,
                _in_flight: in_flight,
            }))
        }
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(rules.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(rules.http2_max_streams)
        .max_pending_accept_reset_streams(HTTP2_MAX_PENDING_RESETS)
        .max_header_list_size(HTTP2_MAX_HEADER_LIST);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);

    let idle = tokio::select! {
        _ = &mut conn => return,
        () = idle_for(watched.clone(), rules.header_timeout) => true,
        _ = phase.wait_for(|p| *p != Phase::Serving) => false,
    };
    if idle {
        tracing::debug!(%peer, "closing a connection that sent no complete request in time");
    }
    // HTTP/1: close now if idle, else after the response in flight;
    // HTTP/2: GOAWAY, then close once the open streams are done.
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = &mut conn => {}
        () = async {
            if idle {
                // Nothing was in flight; a request that slipped in as the
                // clock ran out still gets its answer.
                tokio::time::sleep(CLOSE_GRACE).await;
                let mut watched = watched;
                tokio::select! {
                    _ = watched.wait_for(|a| a.in_flight == 0) => {}
                    _ = phase.wait_for(|p| *p == Phase::Stopped) => {}
                }
            } else {
                let _ = phase.wait_for(|p| *p == Phase::Stopped).await;
            }
        } => {}
    }
}
