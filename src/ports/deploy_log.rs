//! `DeployLog`: where deploy events are kept, newest first by arrival,
//! each once. How many are kept is the domain's rule
//! ([`DEPLOY_HISTORY_LIMIT`](crate::domain::DEPLOY_HISTORY_LIMIT)), and so
//! is what makes two events the same ([`DeployKey`](crate::domain::DeployKey));
//! how they are stored is the adapter's.

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

/// Where an appended event is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In the history every instance shares (Dragonfly).
    Shared,
    /// In this process only: no shared history is configured, or it could
    /// not be reached and the event waits to be pushed there.
    Local,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Where the event is held now.
    pub placement: Placement,
    /// Whether the log already had the event (same
    /// [`DeployKey`](crate::domain::DeployKey)) and so stored nothing.
    pub duplicate: bool,
}

/// An append-only history of deploy events, ordered by arrival, in which
/// an event is stored at most once.
#[async_trait]
pub trait DeployLog: Send + Sync + 'static {
    /// Records `event` as the newest, unless an event with the same
    /// [`DeployKey`](crate::domain::DeployKey) is among the last
    /// [`DEPLOY_DEDUP_WINDOW`](crate::domain::DEPLOY_DEDUP_WINDOW) stored:
    /// then it stores nothing and says so. The log MUST keep the newest
    /// [`DEPLOY_HISTORY_LIMIT`](crate::domain::DEPLOY_HISTORY_LIMIT) events
    /// and MAY drop older ones.
    ///
    /// # Errors
    /// MUST return [`DeployLogError::Unavailable`] when the backing service
    /// fails; the event may then have been recorded or not, so a caller
    /// retries with the same event (a repeat is never stored twice).
    async fn append(&self, event: DeployEvent) -> Result<Appended, DeployLogError>;

    /// Appends `events` in order, as [`DeployLog::append`] would one by
    /// one; a backend that can MUST do it as one operation (one round trip
    /// to a remote store). The answer has one entry per event.
    ///
    /// # Errors
    /// As [`DeployLog::append`]; some of the events may have been recorded.
    async fn append_all(&self, events: Vec<DeployEvent>) -> Result<Vec<Appended>, DeployLogError> {
        let mut appended = Vec::with_capacity(events.len());
        for event in events {
            appended.push(self.append(event).await?);
        }
        Ok(appended)
    }

    /// Up to `limit` events, newest first by arrival (not by
    /// `deployed_at`). Events that cannot be read back (written by an
    /// incompatible version) are skipped, never an error.
    ///
    /// # Errors
    /// MUST return [`DeployLogError::Unavailable`] when the backing service
    /// fails.
    async fn recent(&self, limit: usize) -> Result<Vec<DeployEvent>, DeployLogError>;
}
