//! Live events across the fleet (CONTRACT 6, v2): `DragonflyEventRelay`
//! publishes them on the deployment's `chimney:{namespace}:events` channel,
//! [`run_event_listener`] hands those of the other instances to this one.
//! `DragonflyDeliveryLedger` keeps which webhook deliveries were handled,
//! `SET NX EX` on `chimney-webhook:v1:{namespace}:{delivery}`.
//!
//! A message is JSON, `{"v":1,"event":"deploy","data":"{…}","origin":"…","db":0}`:
//! the data stays the publisher's text, and `db` keeps deployments sharing
//! one server on different databases apart, as invalidation notices do.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::Pool;
use deadpool_redis::redis;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use url::Url;

use super::command;
use super::subscriber::run_channel_listener;
use super::tls::TlsTrust;
use crate::ports::{CacheError, DeliveryLedger, EventRelay, LiveEvent, LiveEventKind};

/// How long a handled delivery is remembered: GitHub redelivers by hand,
/// usually within hours.
const DELIVERY_MEMORY: Duration = Duration::from_secs(24 * 60 * 60);

/// The message version this build writes and reads.
const VERSION_1: u8 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct EventMessage {
    v: u8,
    event: String,
    data: String,
    #[serde(default)]
    origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    db: Option<i64>,
}

/// Publishes live events for the other instances sharing the Dragonfly.
#[derive(Debug, Clone)]
pub struct DragonflyEventRelay {
    pool: Pool,
    command_timeout: Duration,
    channel: String,
    origin: String,
    database: i64,
}

impl DragonflyEventRelay {
    /// A relay on `channel` (see [`events_channel`](super::events_channel))
    /// for instance `origin`, caching in `database`.
    pub fn new(
        pool: Pool,
        command_timeout: Duration,
        channel: impl Into<String>,
        origin: impl Into<String>,
        database: i64,
    ) -> Self {
        Self {
            pool,
            command_timeout,
            channel: channel.into(),
            origin: origin.into(),
            database,
        }
    }
}

#[async_trait]
impl EventRelay for DragonflyEventRelay {
    async fn publish(&self, event: &LiveEvent) -> Result<(), CacheError> {
        let message = EventMessage {
            v: VERSION_1,
            event: event.kind.as_str().to_owned(),
            data: event.data.clone(),
            origin: self.origin.clone(),
            db: Some(self.database),
        };
        let payload = serde_json::to_string(&message).unwrap_or_default();
        let channel = self.channel.as_str();
        command::publish(&self.pool, self.command_timeout, channel, &payload).await?;
        Ok(())
    }
}

/// Listens on `channel` at `url` (reconnecting as the invalidation listener
/// does) and calls `on_event` for every event another instance (any origin
/// but `own_origin`) published for the database `url` selects, until
/// `shutdown`.
pub async fn run_event_listener(
    url: Url,
    channel: String,
    own_origin: String,
    on_event: impl Fn(LiveEvent) + Send + Sync + 'static,
    shutdown: watch::Receiver<bool>,
) {
    let on_payload = move |payload: &[u8], database: i64| {
        let message: EventMessage = match serde_json::from_slice(payload) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "ignoring a malformed live event message");
                return;
            }
        };
        let for_us = message.db.is_none_or(|db| db == database);
        if message.v != VERSION_1 || !for_us || message.origin == own_origin {
            return;
        }
        match LiveEventKind::parse(&message.event) {
            Some(kind) => on_event(LiveEvent {
                kind,
                data: message.data,
            }),
            None => tracing::debug!(event = %message.event, "ignoring an unknown live event"),
        }
    };
    run_channel_listener(url, TlsTrust::from_env(), channel, on_payload, shutdown).await;
}

/// The webhook deliveries handled by any instance sharing the Dragonfly.
#[derive(Debug, Clone)]
pub struct DragonflyDeliveryLedger {
    pool: Pool,
    command_timeout: Duration,
    /// `chimney-webhook:v1:{namespace}:`.
    prefix: String,
}

impl DragonflyDeliveryLedger {
    /// A ledger for `namespace`'s deliveries.
    pub fn new(pool: Pool, command_timeout: Duration, prefix: impl Into<String>) -> Self {
        Self {
            pool,
            command_timeout,
            prefix: prefix.into(),
        }
    }
}

#[async_trait]
impl DeliveryLedger for DragonflyDeliveryLedger {
    async fn first_sighting(&self, delivery: &str) -> Result<bool, CacheError> {
        let key = format!("{}{delivery}", self.prefix);
        let set = command::single(
            &self.pool,
            self.command_timeout,
            "SET NX",
            |mut conn| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(DELIVERY_MEMORY.as_secs())
                    .query_async::<Option<String>>(&mut conn)
                    .await
            },
        )
        .await?;
        Ok(set.is_some())
    }

    async fn forget(&self, delivery: &str) -> Result<(), CacheError> {
        let key = format!("{}{delivery}", self.prefix);
        command::single(
            &self.pool,
            self.command_timeout,
            "DEL",
            |mut conn| async move {
                redis::cmd("DEL")
                    .arg(&key)
                    .query_async::<u64>(&mut conn)
                    .await
            },
        )
        .await?;
        Ok(())
    }
}
