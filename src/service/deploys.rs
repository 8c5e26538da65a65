//! `DeployService`: records deploy events and answers the deploy status;
//! and `ResilientDeployLog`, which keeps the shared (Dragonfly) history
//! from ever losing an event when Dragonfly fails.
//!
//! # With and without Dragonfly
//!
//! Without Dragonfly the history is this process's memory ring. With it,
//! the history is the shared Dragonfly list, so both blue/green slots
//! report the same events and they survive restarts; the memory ring is
//! kept alongside as a mirror of what this instance received. When a
//! Dragonfly command fails:
//!
//! * an append is still accepted: the event is in the memory ring, a
//!   warning is logged, and the event is queued and pushed to Dragonfly
//!   (oldest first) before the next append or read that reaches it. Until
//!   then, and if this instance stops first, the other slot does not see
//!   it; once replayed it counts as arriving at replay time.
//! * a read answers from the memory ring (this instance's events only) and
//!   logs a warning.
//!
//! Warnings are logged when Dragonfly starts failing and an info line when
//! it answers again, not on every request.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;

use crate::domain::{
    DEPLOY_HISTORY_LIMIT, DeployEvent, DeployEventDraft, DeployEventError, DeployStatus,
};
use crate::ports::{DeployLog, DeployLogError, NoTelemetry, Telemetry};

/// Why a deploy event was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordDeployError {
    /// The event breaks a validation rule; the message names the field.
    #[error(transparent)]
    Invalid(#[from] DeployEventError),
    /// No log could store it.
    #[error("the deploy event could not be stored")]
    Unavailable(#[source] DeployLogError),
}

/// Records events and derives the status. Cheap to share behind an `Arc`.
pub struct DeployService {
    log: Arc<dyn DeployLog>,
    telemetry: Arc<dyn Telemetry>,
}

impl DeployService {
    /// A service over `log` (usually a [`ResilientDeployLog`]).
    pub fn new(log: Arc<dyn DeployLog>) -> Self {
        Self {
            log,
            telemetry: Arc::new(NoTelemetry),
        }
    }

    /// Counts accepted events in `telemetry` (`chimney.deploy_events`).
    pub fn with_telemetry(mut self, telemetry: Arc<dyn Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Validates `draft` (defaulting `deployed_at` to now) and appends it.
    ///
    /// # Errors
    /// [`RecordDeployError::Invalid`] for a draft the domain refuses;
    /// [`RecordDeployError::Unavailable`] when the log fails.
    pub async fn record(&self, draft: DeployEventDraft) -> Result<DeployEvent, RecordDeployError> {
        let event = DeployEvent::parse(draft, SystemTime::now())?;
        self.log
            .append(event.clone())
            .await
            .map_err(RecordDeployError::Unavailable)?;
        self.telemetry.deploy_event(event.outcome());
        tracing::info!(
            deploy.sha = event.sha(),
            deploy.outcome = event.outcome().as_str(),
            deploy.slot = event.slot(),
            "deploy event recorded"
        );
        Ok(event)
    }

    /// The status now, or `None` when no event is retained.
    ///
    /// # Errors
    /// When the log cannot be read.
    pub async fn status(&self) -> Result<Option<DeployStatus>, DeployLogError> {
        let history = self.log.recent(DEPLOY_HISTORY_LIMIT).await?;
        Ok(DeployStatus::from_newest_first(&history, SystemTime::now()))
    }
}

/// A [`DeployLog`] over an optional shared log and a local one, behaving as
/// described in the module documentation: it fails only if the local log
/// does.
pub struct ResilientDeployLog {
    shared: Option<Arc<dyn DeployLog>>,
    local: Arc<dyn DeployLog>,
    /// Events the shared log refused, oldest first, waiting to be replayed.
    /// A `std::sync::Mutex`: only taken to move events in or out, never
    /// across an `.await`.
    unsynced: Mutex<VecDeque<DeployEvent>>,
    /// Whether the last shared-log command failed, so the warning is
    /// logged once per outage rather than once per request.
    degraded: AtomicBool,
}

impl ResilientDeployLog {
    /// The local log alone (no Dragonfly configured).
    pub fn local_only(local: Arc<dyn DeployLog>) -> Self {
        Self {
            shared: None,
            local,
            unsynced: Mutex::new(VecDeque::new()),
            degraded: AtomicBool::new(false),
        }
    }

    /// The shared log, with `local` as mirror and fallback.
    pub fn shared(shared: Arc<dyn DeployLog>, local: Arc<dyn DeployLog>) -> Self {
        Self {
            shared: Some(shared),
            ..Self::local_only(local)
        }
    }

    /// How many events are waiting to be replayed to the shared log.
    pub fn unsynced_len(&self) -> usize {
        self.queue().len()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<DeployEvent>> {
        // Every critical section leaves the queue whole, so a poisoned lock
        // is taken over rather than propagated.
        self.unsynced.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes queued events to `shared`, oldest first, stopping at the first
    /// failure with the rest put back in front of anything queued since.
    async fn replay(&self, shared: &dyn DeployLog) -> Result<(), DeployLogError> {
        let mut pending = std::mem::take(&mut *self.queue());
        while let Some(event) = pending.pop_front() {
            if let Err(error) = shared.append(event.clone()).await {
                pending.push_front(event);
                let mut queue = self.queue();
                let newer = std::mem::take(&mut *queue);
                pending.extend(newer);
                let excess = pending.len().saturating_sub(DEPLOY_HISTORY_LIMIT);
                pending.drain(..excess);
                *queue = pending;
                return Err(error);
            }
        }
        Ok(())
    }

    fn failed(&self, error: &DeployLogError, what: &str) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            let cause = std::error::Error::source(error).map(ToString::to_string);
            tracing::warn!(
                %error,
                cause,
                "shared deploy history unavailable ({what}); using this instance's memory ring until it answers"
            );
        }
    }

    fn recovered(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("shared deploy history available again");
        }
    }
}

#[async_trait]
impl DeployLog for ResilientDeployLog {
    async fn append(&self, event: DeployEvent) -> Result<(), DeployLogError> {
        self.local.append(event.clone()).await?;
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let result = match self.replay(shared.as_ref()).await {
            Ok(()) => shared.append(event.clone()).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => self.recovered(),
            Err(error) => {
                self.failed(&error, "append");
                let mut queue = self.queue();
                queue.push_back(event);
                let excess = queue.len().saturating_sub(DEPLOY_HISTORY_LIMIT);
                queue.drain(..excess);
            }
        }
        Ok(())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<DeployEvent>, DeployLogError> {
        let Some(shared) = &self.shared else {
            return self.local.recent(limit).await;
        };
        let result = match self.replay(shared.as_ref()).await {
            Ok(()) => shared.recent(limit).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(events) => {
                self.recovered();
                Ok(events)
            }
            Err(error) => {
                self.failed(&error, "read");
                self.local.recent(limit).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::adapters::memory::MemoryDeployLog;

    /// A shared log that can be switched off, standing in for Dragonfly.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryDeployLog,
        down: AtomicBool,
    }

    impl Flaky {
        fn check(&self) -> Result<(), DeployLogError> {
            if self.down.load(Ordering::SeqCst) {
                Err(DeployLogError::Unavailable {
                    store: "flaky",
                    source: "switched off".into(),
                })
            } else {
                Ok(())
            }
        }
    }

    #[async_trait]
    impl DeployLog for Flaky {
        async fn append(&self, event: DeployEvent) -> Result<(), DeployLogError> {
            self.check()?;
            self.inner.append(event).await
        }

        async fn recent(&self, limit: usize) -> Result<Vec<DeployEvent>, DeployLogError> {
            self.check()?;
            self.inner.recent(limit).await
        }
    }

    fn draft(sha: &str, outcome: &str) -> DeployEventDraft {
        DeployEventDraft {
            sha: sha.to_owned(),
            outcome: outcome.to_owned(),
            ..DeployEventDraft::default()
        }
    }

    fn event(sha: &str) -> DeployEvent {
        DeployEvent::parse(draft(sha, "success"), SystemTime::now()).expect("valid")
    }

    fn shas(events: &[DeployEvent]) -> Vec<&str> {
        events.iter().map(DeployEvent::sha).collect()
    }

    fn resilient() -> (Arc<Flaky>, Arc<MemoryDeployLog>, ResilientDeployLog) {
        let shared = Arc::new(Flaky::default());
        let local = Arc::new(MemoryDeployLog::new());
        let log = ResilientDeployLog::shared(shared.clone(), local.clone());
        (shared, local, log)
    }

    #[tokio::test]
    async fn without_a_shared_log_the_local_one_is_the_history() {
        let local = Arc::new(MemoryDeployLog::new());
        let log = ResilientDeployLog::local_only(local.clone());
        log.append(event("a")).await.expect("append");
        assert_eq!(shas(&log.recent(10).await.expect("recent")), ["a"]);
    }

    #[tokio::test]
    async fn reads_come_from_the_shared_log_when_it_answers() {
        let (shared, _, log) = resilient();
        // Another slot's event: only in the shared log.
        shared.append(event("other-slot")).await.expect("append");
        log.append(event("mine")).await.expect("append");
        assert_eq!(
            shas(&log.recent(10).await.expect("recent")),
            ["mine", "other-slot"]
        );
    }

    #[tokio::test]
    async fn an_append_during_an_outage_is_kept_locally_and_replayed_later() {
        let (shared, local, log) = resilient();
        log.append(event("before")).await.expect("append");
        shared.down.store(true, Ordering::SeqCst);

        log.append(event("during"))
            .await
            .expect("accepted while down");
        assert_eq!(log.unsynced_len(), 1);
        assert_eq!(
            shas(&log.recent(10).await.expect("falls back")),
            ["during", "before"]
        );
        assert_eq!(
            shas(&local.recent(10).await.expect("local")),
            ["during", "before"]
        );

        shared.down.store(false, Ordering::SeqCst);
        assert_eq!(
            shas(&log.recent(10).await.expect("recent")),
            ["during", "before"]
        );
        assert_eq!(log.unsynced_len(), 0);
        assert_eq!(
            shas(&shared.recent(10).await.expect("shared")),
            ["during", "before"]
        );
    }

    #[tokio::test]
    async fn replay_keeps_arrival_order() {
        let (shared, _, log) = resilient();
        shared.down.store(true, Ordering::SeqCst);
        for sha in ["one", "two", "three"] {
            log.append(event(sha)).await.expect("append");
        }
        shared.down.store(false, Ordering::SeqCst);
        log.append(event("four")).await.expect("append");
        assert_eq!(
            shas(&shared.recent(10).await.expect("shared")),
            ["four", "three", "two", "one"]
        );
    }

    #[tokio::test]
    async fn the_replay_queue_is_bounded_by_the_history_limit() {
        let (shared, _, log) = resilient();
        shared.down.store(true, Ordering::SeqCst);
        for i in 0..60 {
            log.append(event(&format!("sha{i}"))).await.expect("append");
        }
        assert_eq!(log.unsynced_len(), DEPLOY_HISTORY_LIMIT);
    }

    #[tokio::test]
    async fn the_service_validates_before_storing() {
        let local = Arc::new(MemoryDeployLog::new());
        let service = DeployService::new(local.clone());
        let err = service
            .record(draft("abc", "maybe"))
            .await
            .expect_err("bad outcome");
        assert!(matches!(err, RecordDeployError::Invalid(ref e) if e.field() == "outcome"));
        assert!(local.recent(10).await.expect("recent").is_empty());
        assert!(service.status().await.expect("status").is_none());
    }

    #[tokio::test]
    async fn the_service_reports_the_status_of_what_it_recorded() {
        let service = DeployService::new(Arc::new(MemoryDeployLog::new()));
        service.record(draft("a", "success")).await.expect("record");
        service.record(draft("b", "failure")).await.expect("record");
        let status = service.status().await.expect("status").expect("some");
        assert_eq!(status.last_deploy.event.sha(), "b");
        assert_eq!(status.total_deploys, 2);
        assert_eq!(status.success_rate_pct, 50.0);
    }
}
