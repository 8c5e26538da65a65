//! Running Redis commands within a deadline: the one place where a pool
//! checkout, a failed command or an overrun becomes the adapter's `Error`.

use std::future::Future;
use std::time::Duration;

use deadpool_redis::redis::RedisError;
use deadpool_redis::{Connection, Pool};

use super::error::Error;

/// Runs `work` under `timeout`, reporting an overrun as `operation`'s.
pub(super) async fn within<T>(
    timeout: Duration,
    operation: &'static str,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(Error::Timeout {
            operation,
            after: timeout,
        }))
}

/// A pooled connection for `operation` within `timeout`. Running out of
/// time while every connection is checked out is [`Error::Congested`]: this
/// process is busy, which says nothing about Dragonfly (the operations
/// holding the connections report an outage themselves if there is one).
pub(super) async fn checkout(
    pool: &Pool,
    timeout: Duration,
    operation: &'static str,
) -> Result<Connection, Error> {
    match tokio::time::timeout(timeout, pool.get()).await {
        Ok(got) => got.map_err(|source| Error::checkout(operation, source)),
        Err(_) if exhausted(pool) => Err(Error::Congested { operation }),
        Err(_) => Err(Error::Timeout {
            operation,
            after: timeout,
        }),
    }
}

/// Every connection the pool may have is open and checked out.
fn exhausted(pool: &Pool) -> bool {
    let status = pool.status();
    status.available == 0 && status.size >= status.max_size
}

/// `PUBLISH payload` on `channel`, within `timeout`; how many subscribers
/// the server delivered it to.
pub(super) async fn publish(
    pool: &Pool,
    timeout: Duration,
    channel: &str,
    payload: &str,
) -> Result<u64, Error> {
    single(pool, timeout, "PUBLISH", |mut conn| async move {
        deadpool_redis::redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<u64>(&mut conn)
            .await
    })
    .await
}

/// Runs a single-command operation with one deadline covering both the
/// connection checkout and the command.
pub(super) async fn single<T, F, Fut>(
    pool: &Pool,
    timeout: Duration,
    operation: &'static str,
    command: F,
) -> Result<T, Error>
where
    F: FnOnce(Connection) -> Fut,
    Fut: Future<Output = Result<T, RedisError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let conn = checkout(pool, timeout, operation).await?;
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    within(left, operation, async {
        command(conn)
            .await
            .map_err(|source| Error::Command { operation, source })
    })
    .await
    .map_err(|err| match err {
        // The deadline is the whole operation's.
        Error::Timeout { operation, .. } => Error::Timeout {
            operation,
            after: timeout,
        },
        other => other,
    })
}
