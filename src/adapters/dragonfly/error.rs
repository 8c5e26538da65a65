//! The Dragonfly adapter's own error type and its mapping onto the port's
//! [`CacheError`]. Nothing outside this module sees a redis or deadpool
//! type: every failure leaves the adapter as `CacheError::Unavailable`.

use std::time::Duration;

use deadpool_redis::redis::RedisError;
use deadpool_redis::{PoolError, TimeoutType};

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
    /// Connecting failed in the TLS handshake: the server's certificate is
    /// not trusted or does not name the host, or the server does not speak
    /// TLS. The reason is in the message because the usual reader (the
    /// "Dragonfly unavailable" warning) shows one level of cause only.
    #[error("Dragonfly TLS handshake failed for {operation}: {reason}")]
    Tls {
        operation: &'static str,
        reason: String,
    },
    /// The server answered with an error or the connection broke.
    #[error("Dragonfly {operation} failed")]
    Command {
        operation: &'static str,
        #[source]
        source: RedisError,
    },
    /// Every pooled connection stayed checked out for the whole wait: this
    /// process is busy, Dragonfly may be fine.
    #[error("every Dragonfly connection was busy for {operation}")]
    Congested { operation: &'static str },
    /// The whole operation, connection checkout included, overran its
    /// deadline.
    #[error("Dragonfly {operation} timed out after {after:?}")]
    Timeout {
        operation: &'static str,
        after: Duration,
    },
}

impl Error {
    /// The error for a failed connection checkout: [`Error::Tls`] when the
    /// TLS handshake is what failed, [`Error::Pool`] otherwise.
    /// A wait for a free slot that timed out is [`Error::Congested`].
    pub(super) fn checkout(operation: &'static str, source: PoolError) -> Self {
        if matches!(source, PoolError::Timeout(TimeoutType::Wait)) {
            return Self::Congested { operation };
        }
        match tls_failure(&source) {
            Some(reason) => Self::Tls { operation, reason },
            None => Self::Pool { operation, source },
        }
    }
}

/// The rustls error somewhere in `err`'s chain, as text. `source()` alone
/// does not reach it: tokio-rustls wraps it in an `io::Error`, whose
/// `source()` skips the wrapped error, and redis keeps that in an `Arc`.
fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let mut next = Some(err);
    while let Some(err) = next {
        let inner: &(dyn std::error::Error + 'static) = match err.downcast_ref::<Shared>() {
            Some(shared) => shared.as_ref(),
            None => err,
        };
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && let Some(tls) = wrapped.downcast_ref::<rustls::Error>()
        {
            return Some(tls.to_string());
        }
        next = inner.source();
    }
    None
}

impl From<Error> for CacheError {
    fn from(err: Error) -> Self {
        if let Error::Congested { .. } = err {
            return Self::Congested { store: STORE };
        }
        Self::Unavailable {
            store: STORE,
            source: Box::new(err),
        }
    }
}

/// The URL as it may appear in logs and errors: everything from the
/// scheme to the last `@` is masked, so neither a parsed password nor one
/// the parser mistook for a path or query (an unencoded `/`, `?` or `#` in
/// it) is ever shown.
pub(super) fn redacted(url: &url::Url) -> String {
    let text = url.as_str();
    let start = text.find("://").map_or(0, |i| i + 3);
    match text[start..].rfind('@') {
        Some(at) => format!("{}***@{}", &text[..start], &text[start + at + 1..]),
        None => text.to_owned(),
    }
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
        let CacheError::Unavailable { store, source } = err else {
            panic!("a timeout is an outage: {err:?}");
        };
        assert_eq!(store, "dragonfly");
        assert_eq!(source.to_string(), "Dragonfly GET timed out after 200ms");
    }

    #[test]
    fn a_pool_wait_timeout_is_congestion_not_an_outage() {
        let err = Error::checkout("GET", PoolError::Timeout(TimeoutType::Wait));
        assert!(matches!(err, Error::Congested { .. }), "{err:?}");
        let err: CacheError = err.into();
        assert!(
            matches!(err, CacheError::Congested { store: "dragonfly" }),
            "{err:?}"
        );
        // Failing to connect in time is an outage.
        let err = Error::checkout("GET", PoolError::Timeout(TimeoutType::Create));
        assert!(matches!(err, Error::Pool { .. }), "{err:?}");
    }

    #[test]
    fn a_handshake_failure_is_told_apart_from_other_connection_failures() {
        let handshake = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let err = Error::checkout("GET", PoolError::Backend(handshake));
        assert!(matches!(err, Error::Tls { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "Dragonfly TLS handshake failed for GET: invalid peer certificate: UnknownIssuer"
        );

        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let err = Error::checkout("GET", PoolError::Backend(refused));
        assert!(matches!(err, Error::Pool { .. }), "{err:?}");
    }

    #[test]
    fn passwords_are_masked() {
        let url = url::Url::parse("redis://user:hunter2@cache:6379/0").expect("valid URL");
        let shown = redacted(&url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(shown, "redis://***@cache:6379/0");
    }

    #[test]
    fn passwords_with_reserved_characters_are_masked_too() {
        // Unencoded, these end the authority early, so the URL parser sees
        // a host of "" and a path or query holding the secret.
        for text in [
            "redis://:123/hunter2@cache:6379",
            "redis://cache:6379/0?x=hunter2@cache",
            "redis://:hun%2Fter2@cache:6379",
        ] {
            let Ok(url) = url::Url::parse(text) else {
                continue;
            };
            let shown = redacted(&url);
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("hun%2Fter2"), "{shown}");
        }
        let plain = url::Url::parse("redis://cache:6379/2").expect("valid URL");
        assert_eq!(redacted(&plain), "redis://cache:6379/2");
    }
}
