//! The live events `GET /api/events` streams (CONTRACT 6, v2), the
//! `EventRelay` that carries them to the other instances, and the
//! `DeliveryLedger` of webhook deliveries the fleet has already handled.

use super::CacheError;
use async_trait::async_trait;

/// The kinds of live event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveEventKind {
    /// A deploy event was stored; data is the event.
    Deploy,
    /// Cache keys were invalidated; data is `{prefixes, evicted, source}`.
    Invalidate,
    /// The pipeline summary changed; data is the new summary as stored.
    Summary,
}

impl LiveEventKind {
    /// The SSE `event:` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Invalidate => "invalidate",
            Self::Summary => "summary",
        }
    }

    /// The kind named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "deploy" => Some(Self::Deploy),
            "invalidate" => Some(Self::Invalidate),
            "summary" => Some(Self::Summary),
            _ => None,
        }
    }
}

/// One live event: its kind and its data, JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    /// What happened.
    pub kind: LiveEventKind,
    /// The event's data, a JSON document.
    pub data: String,
}

/// Carries live events to the other instances sharing the deployment
/// (local subscribers are served by `service::events`).
#[async_trait]
pub trait EventRelay: Send + Sync + 'static {
    /// Announces `event` to the other instances.
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the message could not be
    /// handed over.
    async fn publish(&self, event: &LiveEvent) -> Result<(), CacheError>;
}

/// Which webhook deliveries have been handled, shared by the fleet.
#[async_trait]
pub trait DeliveryLedger: Send + Sync + 'static {
    /// Records `delivery` and returns `true` when it was not recorded yet
    /// (this caller handles it), `false` for a repeat.
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the backing store fails.
    async fn first_sighting(&self, delivery: &str) -> Result<bool, CacheError>;

    /// Forgets `delivery`, so a redelivery is handled (used when handling
    /// it failed).
    ///
    /// # Errors
    /// MUST return [`CacheError::Unavailable`] when the backing store fails.
    async fn forget(&self, delivery: &str) -> Result<(), CacheError>;
}
