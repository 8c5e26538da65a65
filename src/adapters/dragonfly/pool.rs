//! Building the deadpool-redis connection pool. Building never connects:
//! start-up must not wait for Dragonfly, so the first connection is made by
//! the first command that needs one.

use std::time::Duration;

use deadpool_redis::redis::{AsyncConnectionConfig, IntoConnectionInfo};
use deadpool_redis::{Manager, Pool, Runtime};

use super::error::{Error, redacted};
use super::tls::{self, TlsTrust};
use crate::ports::CacheError;

/// Connections kept open at most. Each checked-out connection carries one
/// operation at a time, so this bounds concurrent Dragonfly operations; it
/// matches the default upstream concurrency, and a request that finds the
/// pool exhausted waits at most the command timeout before giving up.
const MAX_CONNECTIONS: usize = 32;

/// Builds a pool for the Dragonfly (or Redis) server at `url`. A
/// `rediss://` URL connects over TLS, trusting the system's roots plus the
/// bundle `SSL_CERT_FILE` names ([`TlsTrust::from_env`]); see
/// [`build_pool_with_trust`].
///
/// # Errors
/// As [`build_pool_with_trust`].
pub fn build_pool(url: &url::Url, timeout: Duration) -> Result<Pool, CacheError> {
    build_pool_with_trust(url, timeout, &TlsTrust::from_env())
}

/// Builds a pool for the server at `url`; a `rediss://` connection
/// verifies the server against `trust` (read here, once), other URLs
/// ignore it.
///
/// No connection is opened here. Every stage of getting a connection later
/// is bounded by `timeout`: the TCP connect and TLS handshake, the wait for
/// a free slot, and the liveness ping deadpool sends when reusing an idle
/// connection. A dead server therefore costs at most about `timeout` per
/// call, and callers add their own overall deadline on top
/// ([`DragonflyCache`](super::DragonflyCache) does).
///
/// # Errors
/// Returns [`CacheError::Unavailable`] when `url` is not a usable Redis URL
/// (wrong scheme, `#insecure`, bad database number) or the trusted
/// certificates cannot be read. The message never contains the URL's
/// password.
pub fn build_pool_with_trust(
    url: &url::Url,
    timeout: Duration,
    trust: &TlsTrust,
) -> Result<Pool, CacheError> {
    let connection = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    // The client carries the TLS roots inside its connection info, which
    // the manager keeps when it makes its own client from it.
    let info = tls::client(url, trust)?.get_connection_info().clone();
    let manager = Manager::new_with_config(info, connection).map_err(|source| Error::Config {
        url: redacted(url),
        source: Box::new(source),
    })?;
    let pool = Pool::builder(manager)
        .max_size(MAX_CONNECTIONS)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .map_err(|source| Error::Config {
            url: redacted(url),
            source: Box::new(source),
        })?;
    Ok(pool)
}

/// The database number `url` selects (`redis://host:port/3` → 3; 0 when
/// the URL names none), read the way the Redis client reads it.
///
/// # Errors
/// Returns [`CacheError::Unavailable`] when `url` is not a usable Redis URL,
/// as [`build_pool`] would. The message never contains the URL's password.
pub fn database_of(url: &url::Url) -> Result<i64, CacheError> {
    let info = url
        .as_str()
        .into_connection_info()
        .map_err(|source| Error::Config {
            url: redacted(url),
            source: Box::new(source),
        })?;
    Ok(info.redis_settings().db())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn building_a_pool_never_connects() {
        // Nothing listens on port 1; building must still succeed at once.
        let url = url::Url::parse("redis://127.0.0.1:1").expect("valid URL");
        let pool = build_pool(&url, Duration::from_millis(200)).expect("pool builds");
        assert_eq!(pool.status().size, 0);
    }

    #[test]
    fn the_database_is_read_from_the_url() {
        let db = |text: &str| database_of(&url::Url::parse(text).expect("valid URL"));
        assert_eq!(db("redis://127.0.0.1:6379").expect("db"), 0);
        assert_eq!(db("redis://127.0.0.1:6379/").expect("db"), 0);
        assert_eq!(db("redis://:secret@127.0.0.1:6379/42").expect("db"), 42);
        assert!(db("redis://127.0.0.1:6379/not-a-number").is_err());
        assert_eq!(db("rediss://:secret@cache:6380/7").expect("db"), 7);
    }

    #[tokio::test]
    async fn a_url_that_is_not_redis_is_a_configuration_error() {
        let url = url::Url::parse("http://user:hunter2@127.0.0.1:6379").expect("valid URL");
        let err = build_pool(&url, Duration::from_millis(200)).expect_err("http is refused");
        let CacheError::Unavailable { store, source } = err else {
            panic!("expected unavailable: {err:?}");
        };
        assert_eq!(store, "dragonfly");
        assert!(!source.to_string().contains("hunter2"));
    }
}
