//! The traits the application needs from the outside world. Each port has
//! its own error type; no adapter's types (redis, reqwest, quick_cache)
//! appear in a signature here.

mod cache_store;
mod deploy_log;
mod fleet_lock;
mod live_events;
mod request_export;
mod telemetry;
mod upstream_github;

pub use cache_store::{
    CacheError, CacheHit, CacheStore, CacheTier, InvalidationBus, KeyPage, LocalTier, TierUsage,
};
pub use deploy_log::{Appended, DeployLog, DeployLogError, Placement};
pub use fleet_lock::{FleetLock, FlightNotice, FlightOutcome, SoloFlight};
pub use live_events::{DeliveryLedger, EventRelay, LiveEvent, LiveEventKind};
pub use request_export::{MAX_LOGGED_TARGET_BYTES, RemoteParent, RequestExport, RequestRecord};
pub use telemetry::{
    CompletedRequest, MetricsScrape, NoTelemetry, Scrape, TeeTelemetry, Telemetry, TelemetryError,
    UpstreamOutcome,
};
pub use upstream_github::{UpstreamError, UpstreamGithub, UpstreamRequest, UpstreamResponse};
