//! `DeployLog`: where deploy events are kept, newest first by arrival.
//! How many are kept is the domain's rule
//! ([`DEPLOY_HISTORY_LIMIT`](crate::domain::DEPLOY_HISTORY_LIMIT)); how
//! they are stored is the adapter's.

use async_trait::async_trait;

use crate::domain::DeployEvent;

/// Why a deploy log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployLogError {
    /// The backing service cannot be reached, did not answer in time, or
    /// refused the command.
    #[error("deploy log {store} unavailable")]
    Unavailable {
        /// Which store failed.
        store: &'static str,
        /// The underlying cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// An append-only history of deploy events, ordered by arrival.
#[async_trait]
pub trait DeployLog: Send + Sync + 'static {
    /// Records `event` as the newest. The log MUST keep the newest
    /// [`DEPLOY_HISTORY_LIMIT`](crate::domain::DEPLOY_HISTORY_LIMIT) events and
    /// MAY drop older ones.
    ///
    /// # Errors
    /// MUST return [`DeployLogError::Unavailable`] when the backing service
    /// fails; the event is then not recorded by this log.
    async fn append(&self, event: DeployEvent) -> Result<(), DeployLogError>;

    /// Up to `limit` events, newest first by arrival (not by
    /// `deployed_at`). Events that cannot be read back (written by an
    /// incompatible version) are skipped, never an error.
    ///
    /// # Errors
    /// MUST return [`DeployLogError::Unavailable`] when the backing service
    /// fails.
    async fn recent(&self, limit: usize) -> Result<Vec<DeployEvent>, DeployLogError>;
}
