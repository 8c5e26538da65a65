//! Cross-instance invalidation over a deployment's
//! `chimney:{namespace}:invalidate` pub/sub channel (see `keys.rs`):
//! publishing a notice, and the long-running listener that keeps a
//! subscription alive across Dragonfly outages and restarts. The message
//! format lives in `notice.rs`. Deployments for other repositories listen
//! on other channels and never hear each other.
//!
//! The same listener, on the same connection, also hears the
//! `chimney:{namespace}:fetched` notices of fleet single flight
//! (`flight_notice.rs`): one subscriber connection per instance, whatever
//! it listens to.
//!
//! Pub/sub is fire-and-forget: a notice published while a listener is
//! reconnecting is lost to it. The memory tier's freshness TTL bounds how
//! long such an instance can serve the invalidated data.
//!
//! The channel is server-wide while cache entries live in one database, so
//! each notice names its publisher's database and a listener delivers only
//! notices for the database in its own URL.

use std::time::Duration;

use deadpool_redis::Pool;
use deadpool_redis::redis::{self, Client, Msg, RedisError};
use futures::StreamExt;
use tokio::sync::watch;
use url::Url;

use super::backoff::Backoff;
use super::command;
use super::flight_notice::PublishedFlight;
use super::notice::InvalidationNotice;
use super::tls::{self, TlsTrust};
use crate::ports::{CacheError, FlightNotice};

/// First reconnect delay; doubles after each failed attempt.
const RECONNECT_INITIAL: Duration = Duration::from_millis(100);

/// Longest reconnect delay, so a recovered server is noticed within
/// seconds however long it was down.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Deadline for connecting and subscribing. The listener runs in the
/// background, so it can afford more than a request's command timeout.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often an idle subscription is pinged. A subscriber only reads, so
/// without this a connection silently cut by a network failure (no FIN,
/// no RST) would look alive forever.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);

/// Deadline for a keep-alive ping's answer.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Announces `notice` to every instance listening on `channel`, including
/// this one (the notice carries its
/// `origin` so listeners can skip their own, and its `database` so
/// listeners caching in another database ignore it). Returns how many
/// subscribers the server delivered it to.
///
/// # Errors
/// Returns [`CacheError::Unavailable`] when no connection can be had or
/// `PUBLISH` fails or overruns `command_timeout`.
pub async fn publish_invalidation(
    pool: &Pool,
    command_timeout: Duration,
    channel: &str,
    notice: &InvalidationNotice,
) -> Result<u64, CacheError> {
    let payload = notice.encode();
    let receivers = command::publish(pool, command_timeout, channel, &payload).await?;
    Ok(receivers)
}

/// Handles one message's payload for a listener caching in a database.
type Deliver = Box<dyn Fn(&[u8], i64) + Send + Sync>;

/// A channel the listener subscribes to and what it does with a message
/// that applies to its database.
pub struct Subscription {
    channel: String,
    deliver: Deliver,
}

impl Subscription {
    /// Invalidation notices on `channel` (see [`InvalidationNotice`]).
    pub fn invalidations(
        channel: impl Into<String>,
        on_message: impl Fn(InvalidationNotice) + Send + Sync + 'static,
    ) -> Self {
        Self {
            channel: channel.into(),
            deliver: Box::new(
                move |payload, database| match InvalidationNotice::decode(payload) {
                    Ok(notice) if notice.applies_to(database) => on_message(notice),
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "ignoring invalid invalidation message")
                    }
                },
            ),
        }
    }

    /// Finished-fetch notices of fleet single flight on `channel` (see
    /// [`flight_channel`](super::flight_channel)).
    pub fn flights(
        channel: impl Into<String>,
        on_notice: impl Fn(FlightNotice) + Send + Sync + 'static,
    ) -> Self {
        Self {
            channel: channel.into(),
            deliver: Box::new(
                move |payload, database| match PublishedFlight::decode(payload) {
                    Ok(published) if published.applies_to(database) => on_notice(published.notice),
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "ignoring invalid fetch notice"),
                },
            ),
        }
    }
}

/// Listens on `channel` at `url`, handing every message's payload (with
/// the database `url` selects) to `on_payload`: a listener of its own for
/// a channel whose messages decode elsewhere (the live events).
pub(super) async fn run_channel_listener(
    url: Url,
    trust: TlsTrust,
    channel: String,
    on_payload: impl Fn(&[u8], i64) + Send + Sync + 'static,
    shutdown: watch::Receiver<bool>,
) {
    let subscription = Subscription {
        channel,
        deliver: Box::new(on_payload),
    };
    run_listener_with_trust(url, trust, vec![subscription], shutdown).await;
}

/// Listens on `channel` at `url` and calls `on_message` for
/// every notice that applies to the database `url` selects (see
/// [`InvalidationNotice::applies_to`]), until `shutdown` becomes `true` or
/// its sender is dropped; [`run_listener`] with one subscription.
pub async fn run_invalidation_listener(
    url: Url,
    channel: String,
    on_message: impl Fn(InvalidationNotice) + Send + Sync + 'static,
    shutdown: watch::Receiver<bool>,
) {
    run_listener(
        url,
        vec![Subscription::invalidations(channel, on_message)],
        shutdown,
    )
    .await;
}

/// [`run_invalidation_listener`] with the certificates a `rediss://`
/// subscription trusts given explicitly (read once, before subscribing).
pub async fn run_invalidation_listener_with_trust(
    url: Url,
    trust: TlsTrust,
    channel: String,
    on_message: impl Fn(InvalidationNotice) + Send + Sync + 'static,
    shutdown: watch::Receiver<bool>,
) {
    run_listener_with_trust(
        url,
        trust,
        vec![Subscription::invalidations(channel, on_message)],
        shutdown,
    )
    .await;
}

/// Listens on every subscription's channel at `url` and hands each
/// message that applies to the database `url` selects to its
/// subscription, until `shutdown` becomes `true` or its sender is dropped.
///
/// The subscription uses a dedicated connection (a subscribed connection
/// can do nothing else). When it drops, or fails a keep-alive ping, the
/// listener reconnects and resubscribes with capped exponential backoff
/// (100 ms doubling to 5 s) for as long as it runs, so it survives
/// Dragonfly restarts. Messages that are not valid notices are logged and
/// skipped. The callbacks run on the listener's task: keep them quick and
/// non-blocking (evicting from the memory tier, waking a waiter, are).
///
/// A `rediss://` subscription trusts the system's roots plus the bundle
/// `SSL_CERT_FILE` names, as the pool does ([`TlsTrust::from_env`]).
///
/// Returns at once, after logging an error, only when `url` cannot describe
/// a Redis server at all or its trusted certificates cannot be read;
/// retrying would never help then.
pub async fn run_listener(
    url: Url,
    subscriptions: Vec<Subscription>,
    shutdown: watch::Receiver<bool>,
) {
    run_listener_with_trust(url, TlsTrust::from_env(), subscriptions, shutdown).await;
}

/// [`run_listener`] with the certificates a `rediss://` subscription
/// trusts given explicitly (read once, before subscribing).
pub async fn run_listener_with_trust(
    url: Url,
    trust: TlsTrust,
    subscriptions: Vec<Subscription>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Reading the trusted roots is file I/O and certificate parsing: off
    // the runtime's workers, so it never delays a request or the probe.
    let Ok(built) = tokio::task::spawn_blocking(move || tls::client(&url, &trust)).await else {
        tracing::error!("pub/sub listener could not build its client");
        return;
    };
    let client = match built {
        Ok(client) => client,
        Err(err) => {
            // The error names the URL, password masked, and the cause.
            let cause = std::error::Error::source(&err).map(ToString::to_string);
            tracing::error!(error = %err, cause, "pub/sub listener cannot use this URL");
            return;
        }
    };
    let database = client.get_connection_info().redis_settings().db();
    let channels: Vec<&str> = subscriptions.iter().map(|s| s.channel.as_str()).collect();
    let mut backoff = Backoff::new(RECONNECT_INITIAL, RECONNECT_MAX);
    loop {
        let attempt = tokio::select! {
            biased;
            () = shutdown_requested(&mut shutdown) => return,
            attempt = subscribe(&client, &channels) => attempt,
        };
        match attempt {
            Ok(pubsub) => {
                backoff.reset();
                tracing::info!(?channels, "pub/sub listener subscribed");
                match listen(pubsub, &subscriptions, database, &mut shutdown).await {
                    Ended::Shutdown => return,
                    Ended::Dropped(reason) => {
                        tracing::warn!(%reason, ?channels, "pub/sub subscription lost; reconnecting");
                    }
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "invalidation listener could not subscribe");
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            biased;
            () = shutdown_requested(&mut shutdown) => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Why a subscription stopped.
enum Ended {
    Shutdown,
    Dropped(&'static str),
}

/// Opens a dedicated pub/sub connection and subscribes, within
/// [`SUBSCRIBE_TIMEOUT`].
async fn subscribe(
    client: &Client,
    channels: &[&str],
) -> Result<redis::aio::PubSub, SubscribeError> {
    let work = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channels).await?;
        Ok::<_, RedisError>(pubsub)
    };
    match tokio::time::timeout(SUBSCRIBE_TIMEOUT, work).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(err)) => Err(SubscribeError::Redis(err)),
        Err(_) => Err(SubscribeError::Timeout),
    }
}

#[derive(Debug, thiserror::Error)]
enum SubscribeError {
    #[error(transparent)]
    Redis(RedisError),
    #[error("subscribing timed out after {SUBSCRIBE_TIMEOUT:?}")]
    Timeout,
}

/// Delivers notices from one subscription until it drops or shutdown.
async fn listen(
    pubsub: redis::aio::PubSub,
    subscriptions: &[Subscription],
    database: i64,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let (mut sink, mut stream) = pubsub.split();
    let mut keepalive = tokio::time::interval_at(
        tokio::time::Instant::now() + KEEPALIVE_EVERY,
        KEEPALIVE_EVERY,
    );
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown_requested(shutdown) => return Ended::Shutdown,
            msg = stream.next() => match msg {
                Some(msg) => deliver(&msg, subscriptions, database),
                None => return Ended::Dropped("connection closed"),
            },
            _ = keepalive.tick() => {
                let ping = tokio::time::timeout(KEEPALIVE_TIMEOUT, sink.ping::<redis::Value>());
                match ping.await {
                    Ok(Ok(_)) => {}
                    // The server answered, if only with an error (a server
                    // that refuses PING while subscribed): still alive.
                    Ok(Err(err)) if err.code().is_some() => {}
                    Ok(Err(_)) => return Ended::Dropped("keep-alive ping failed"),
                    Err(_) => return Ended::Dropped("keep-alive ping timed out"),
                }
            }
        }
    }
}

fn deliver(msg: &Msg, subscriptions: &[Subscription], database: i64) {
    let channel = msg.get_channel_name();
    if let Some(subscription) = subscriptions.iter().find(|s| s.channel == channel) {
        (subscription.deliver)(msg.get_payload_bytes(), database);
    }
}

/// Resolves once shutdown is requested: the flag is `true`, or its sender
/// is gone (nobody could ever request it any more).
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
