//! `DragonflyInvalidationBus`: the [`InvalidationBus`] port over the
//! `chimney:invalidate` pub/sub channel. Publishing only; the listening
//! side is [`run_invalidation_listener`](super::run_invalidation_listener).

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::Pool;

use super::subscriber::publish_invalidation;
use crate::domain::InvalidationScope;
use crate::ports::{CacheError, InvalidationBus};

/// Announces invalidations to every instance sharing the Dragonfly.
/// Cloning is cheap: the pool is a shared handle.
#[derive(Debug, Clone)]
pub struct DragonflyInvalidationBus {
    pool: Pool,
    command_timeout: Duration,
    /// This instance's id, sent with every notice so the listener can tell
    /// its own announcements from other instances'.
    origin: String,
}

impl DragonflyInvalidationBus {
    /// A bus publishing through `pool` as instance `origin`, each publish
    /// bounded by `command_timeout`.
    pub fn new(pool: Pool, command_timeout: Duration, origin: impl Into<String>) -> Self {
        Self {
            pool,
            command_timeout,
            origin: origin.into(),
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
        publish_invalidation(&self.pool, self.command_timeout, &self.origin, scope).await?;
        Ok(())
    }
}
