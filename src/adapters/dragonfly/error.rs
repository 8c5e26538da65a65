//! The Dragonfly adapter's own error type and its mapping onto the port's
//! [`CacheError`]. Nothing outside this module sees a redis or deadpool
//! type: every failure leaves the adapter as `CacheError::Unavailable`.

use std::time::Duration;

use deadpool_redis::PoolError;
use deadpool_redis::redis::RedisError;

use crate::ports::CacheError;

/// The store name carried by every [`CacheError`] from this adapter.
pub(super) const STORE: &str = "dragonfly";

/// What went wrong talking to Dragonfly. Kept private to the adapter so
/// callers depend on the port's error, not on the redis crate
/// (object_store `memory.rs` style).
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    /// The URL could not be turned into a client or a pool.
    #[error("invalid Dragonfly configuration for {url}")]
    Config {
        /// The URL with any password removed.
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Getting a pooled connection failed (refused, pool closed, or the
    /// pool's own create/wait timeout fired).
    #[error("no Dragonfly connection for {operation}")]
    Pool {
        operation: &'static str,
        #[source]
        source: PoolError,
    },
    /// The server answered with an error or the connection broke.
    #[error("Dragonfly {operation} failed")]
    Command {
        operation: &'static str,
        #[source]
        source: RedisError,
    },
    /// The whole operation, connection checkout included, overran its
    /// deadline.
    #[error("Dragonfly {operation} timed out after {after:?}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
}

impl From<Error> for CacheError {
    fn from(err: Error) -> Self {
        Self::Unavailable {
            store: STORE,
            source: Box::new(err),
        }
    }
}

/// The URL as it may appear in logs and errors: the password, if any, is
/// masked so a configuration error never leaks the secret.
pub(super) fn redacted(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Only fails for URLs that cannot have credentials, which a URL
        // with a password evidently can.
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_adapter_error_is_unavailable_dragonfly() {
        let err: CacheError = Error::Timeout {
            operation: "GET",
            after: Duration::from_millis(200),
        }
        .into();
        let CacheError::Unavailable { store, source } = err;
        assert_eq!(store, "dragonfly");
        assert_eq!(source.to_string(), "Dragonfly GET timed out after 200ms");
    }

    #[test]
    fn passwords_are_masked() {
        let url = url::Url::parse("redis://user:hunter2@cache:6379/0").expect("valid URL");
        let shown = redacted(&url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("cache:6379"), "{shown}");
    }
}
