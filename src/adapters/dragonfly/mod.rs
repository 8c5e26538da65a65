//! The Dragonfly adapters: the shared cache tier ([`DragonflyCache`]), the
//! connection pool behind it ([`build_pool`]) and cross-instance
//! invalidation over pub/sub ([`DragonflyInvalidationBus`],
//! [`publish_invalidation`], [`run_invalidation_listener`]). Debian's
//! `redis-server` stands in for Dragonfly in tests, so only commands both
//! implement are used.
//!
//! # Layout
//!
//! * `pool`: building the deadpool-redis pool, lazily and with timeouts.
//! * `tls`: what a `rediss://` connection trusts (system roots plus
//!   `SSL_CERT_FILE`), for the pool and the listener alike.
//! * `cache`: `DragonflyCache`, the `CacheStore` implementation.
//! * `deploy_log`: `DragonflyDeployLog`, the deploy history both slots share.
//! * `wire`: the versioned binary format of a stored entry.
//! * `keys`: the per-deployment names (`chimney:{namespace}:…` entries, the
//!   invalidation channel, the deploy history key) and SCAN MATCH escaping.
//! * `notice`, `subscriber`, `bus`: the invalidation message, its pub/sub
//!   plumbing and the `InvalidationBus` port on top; `backoff`: the
//!   reconnect schedule.
//! * `flight`, `flight_notice`: fleet single flight, the `FleetLock` port
//!   (a short lock per key) and the notice announcing a finished fetch,
//!   heard by the same subscriber.
//! * `events`: live events over pub/sub and the webhook delivery ledger.
//! * `error`: the adapter's private error and its mapping to `CacheError`.

mod backoff;
mod bus;
mod cache;
mod command;
mod deploy_log;
mod error;
mod events;
mod flight;
mod flight_notice;
mod keys;
mod notice;
mod pool;
mod subscriber;
mod tls;
pub mod wire;

#[cfg(test)]
mod tests;

pub use bus::DragonflyInvalidationBus;
pub use cache::DragonflyCache;
pub use deploy_log::DragonflyDeployLog;
pub use events::{DragonflyDeliveryLedger, DragonflyEventRelay, run_event_listener};
pub use flight::DragonflyFleetLock;
pub use keys::{
    deploy_log_key, events_channel, flight_channel, invalidation_channel, webhook_delivery_prefix,
};
pub use notice::InvalidationNotice;
pub use pool::{build_pool, build_pool_with_trust, database_of};
pub use subscriber::{
    Subscription, publish_invalidation, run_invalidation_listener,
    run_invalidation_listener_with_trust, run_listener, run_listener_with_trust,
};
pub use tls::{CA_BUNDLE_VAR, TlsTrust};
