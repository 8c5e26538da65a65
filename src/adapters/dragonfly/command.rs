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

/// A pooled connection for `operation` (no deadline of its own).
pub(super) async fn checkout(pool: &Pool, operation: &'static str) -> Result<Connection, Error> {
    pool.get()
        .await
        .map_err(|source| Error::checkout(operation, source))
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
    within(timeout, operation, async {
        let conn = checkout(pool, operation).await?;
        command(conn)
            .await
            .map_err(|source| Error::Command { operation, source })
    })
    .await
}
