//! `DragonflyInvalidationBus`: the [`InvalidationBus`] port over the
//! deployment's `chimney:{namespace}:invalidate` pub/sub channel. Publishing only; the listening
//! side is [`run_invalidation_listener`](super::run_invalidation_listener).

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::Pool;

use super::notice::InvalidationNotice;
use super::subscriber::publish_invalidation;
use crate::domain::InvalidationScope;
use crate::ports::{CacheError, InvalidationBus};

/// Announces invalidations to every instance sharing the Dragonfly.
/// Cloning is cheap: the pool is a shared handle.
#[derive(Debug, Clone)]
pub struct DragonflyInvalidationBus {
    pool: Pool,
    command_timeout: Duration,
    /// The deployment's channel (see [`invalidation_channel`](super::invalidation_channel)).
    channel: String,
    /// This instance's id, sent with every notice so the listener can tell
    /// its own announcements from other instances'.
    origin: String,
    /// The database this instance caches in, sent with every notice so
    /// instances caching in another database ignore it.
    database: i64,
}

impl DragonflyInvalidationBus {
    /// A bus publishing on `channel` through `pool` as instance `origin`
    /// caching in `database` (the one the pool's URL selects, see
    /// [`database_of`](super::database_of)), each publish bounded by
    /// `command_timeout`.
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

    /// The instance id this bus puts on its notices.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

#[async_trait]
impl InvalidationBus for DragonflyInvalidationBus {
    async fn publish(&self, scope: &InvalidationScope) -> Result<(), CacheError> {
        let notice = InvalidationNotice {
            scope: scope.clone(),
            origin: self.origin.clone(),
            database: Some(self.database),
        };
        publish_invalidation(&self.pool, self.command_timeout, &self.channel, &notice).await?;
        Ok(())
    }
}
