//! The HTTP server: accepts connections on the bound listener and serves
//! poem's routes on each with hyper, within the connection limits of
//! CONTRACT 2 (see `accept.rs` and `connection.rs`), and stops gracefully.
//!
//! poem's own `Server` is not used because it cannot bound the wait for
//! request headers (its idle timeout restarts on every byte, so a client
//! trickling a request line keeps a connection for ever), sets no HTTP/2
//! stream limit by default, has no connection limit, and retries a failed
//! accept at once (a busy loop when file descriptors run out).
//!
//! Stopping: the listener is closed, every connection is asked to finish
//! (HTTP/1 closes after its response in flight, HTTP/2 sends GOAWAY), and
//! whatever is still open after the drain deadline is dropped.

mod accept;
mod connection;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use poem::endpoint::BoxEndpoint;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use connection::ConnectionRules;

/// Where the server is in its life; every connection watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Taking requests.
    Serving,
    /// Stopping: finish what is in flight, take nothing new.
    Draining,
    /// Stopped: drop whatever is still open.
    Stopped,
}

/// The connection limits of CONTRACT 2.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Most connections open at once (`max_connections`).
    pub max_connections: usize,
    /// The rules each connection is served by.
    pub connection: ConnectionRules,
}

/// How long stopped connections get to go away once dropped, so their
/// tasks have released their sockets when `serve` returns.
const DROP_WAIT: Duration = Duration::from_secs(1);

/// Serves `routes` on `listener` until `shutdown` completes, then stops
/// accepting and gives requests in flight up to `drain` to finish.
pub async fn serve(
    listener: TcpListener,
    routes: BoxEndpoint<'static>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let routes = Arc::new(routes);
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let (phase, watching) = watch::channel(Phase::Serving);
    let rules = limits.connection;

    accept::accept_loop(
        listener,
        Arc::clone(&slots),
        |stream, peer, permit| {
            let routes = Arc::clone(&routes);
            let watching = watching.clone();
            tokio::spawn(async move {
                connection::serve(stream, peer, local, routes, rules, watching).await;
                drop(permit);
            });
        },
        shutdown,
    )
    .await;

    // The listener is closed: new connections are refused from here on.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    phase.send_replace(Phase::Draining);
    let open = max - slots.available_permits();
    if open > 0 {
        tracing::info!(
            connections = open,
            "waiting for requests in flight to finish"
        );
    }
    let drained = tokio::time::timeout(drain, slots.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!(
            after = ?drain,
            "connections still open after the drain deadline are closed"
        );
    }
    phase.send_replace(Phase::Stopped);
    let _ = tokio::time::timeout(DROP_WAIT, slots.acquire_many(all)).await;
    tracing::info!("server stopped");
    Ok(())
}
