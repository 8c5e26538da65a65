//! `DragonflyFleetLock`: the [`FleetLock`] port over Dragonfly. The lock on
//! fetching a key is `SET chimney:{namespace}:lock:{key} {instance} NX PX
//! {hold}`; it is given back with a compare-and-delete script, so an
//! instance whose lock expired never deletes the next holder's, and the
//! outcome is published on `chimney:{namespace}:fetched` (see
//! `flight_notice.rs`) for the instances waiting.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::Pool;
use deadpool_redis::redis;

use super::command;
use super::flight_notice::PublishedFlight;
use super::keys::NamespacedKeys;
use crate::domain::{CacheKey, CacheNamespace};
use crate::ports::{CacheError, FleetLock, FlightNotice, FlightOutcome};

/// Deletes the lock only while it still holds this instance's token.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
";

/// The longest lock ever set; no fetch is worth holding others off longer.
const MAX_HOLD: Duration = Duration::from_secs(3600);

/// Fleet single flight through Dragonfly. Cloning is cheap: the pool is a
/// shared handle.
#[derive(Debug, Clone)]
pub struct DragonflyFleetLock {
    pool: Pool,
    command_timeout: Duration,
    keys: NamespacedKeys,
    channel: String,
    /// This instance's token: the lock's value, and the notices' origin.
    token: String,
    /// The database this instance caches in, named on every notice.
    database: i64,
}

impl DragonflyFleetLock {
    /// Locks for `namespace` over `pool` as instance `token` (unique among
    /// the instances sharing the server) caching in `database`, announcing
    /// on `channel` (see [`flight_channel`](super::flight_channel)), each
    /// command bounded by `command_timeout`.
    pub fn new(
        pool: Pool,
        command_timeout: Duration,
        namespace: &CacheNamespace,
        channel: impl Into<String>,
        token: impl Into<String>,
        database: i64,
    ) -> Self {
        Self {
            pool,
            command_timeout,
            keys: NamespacedKeys::new(namespace),
            channel: channel.into(),
            token: token.into(),
            database,
        }
    }

    /// Gives the lock back if it is still this instance's; true when it
    /// was deleted.
    async fn unlock(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let lock_key = self.keys.lock_key(key);
        let deleted: i64 = command::single(
            &self.pool,
            self.command_timeout,
            "EVAL",
            |mut conn| async move {
                // EVAL rather than EVALSHA: the script is tiny, and a
                // restarted server never lacks it.
                redis::cmd("EVAL")
                    .arg(RELEASE_SCRIPT)
                    .arg(1)
                    .arg(&lock_key)
                    .arg(&self.token)
                    .query_async(&mut conn)
                    .await
            },
        )
        .await?;
        Ok(deleted > 0)
    }

    async fn announce(&self, key: &CacheKey, outcome: FlightOutcome) -> Result<(), CacheError> {
        let payload = PublishedFlight {
            notice: FlightNotice {
                key: key.clone(),
                outcome,
            },
            origin: self.token.clone(),
            database: Some(self.database),
        }
        .encode();
        let channel = &self.channel;
        command::publish(&self.pool, self.command_timeout, channel, &payload).await?;
        Ok(())
    }
}

#[async_trait]
impl FleetLock for DragonflyFleetLock {
    async fn try_lock(&self, key: &CacheKey, hold: Duration) -> Result<bool, CacheError> {
        let lock_key = self.keys.lock_key(key);
        let hold_ms = hold.min(MAX_HOLD).as_millis().max(1) as u64;
        let set: Option<String> = command::single(
            &self.pool,
            self.command_timeout,
            "SET",
            |mut conn| async move {
                redis::cmd("SET")
                    .arg(&lock_key)
                    .arg(&self.token)
                    .arg("NX")
                    .arg("PX")
                    .arg(hold_ms)
                    .query_async(&mut conn)
                    .await
            },
        )
        .await?;
        Ok(set.is_some())
    }

    /// Announces first: a waiter that finds the lock free has the notice
    /// already, so it never fetches again what just failed.
    async fn release(&self, key: &CacheKey, outcome: FlightOutcome) -> Result<(), CacheError> {
        let announced = self.announce(key, outcome).await;
        let unlocked = self.unlock(key).await;
        announced?;
        unlocked.map(|_| ())
    }
}
