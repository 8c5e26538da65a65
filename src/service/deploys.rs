//! `DeployService`: records deploy events and answers the deploy status;
//! and `ResilientDeployLog`, which keeps the shared (Dragonfly) history
//! from ever losing an event, or holding one twice, when Dragonfly fails.
//!
//! # With and without Dragonfly
//!
//! Without Dragonfly the history is this process's memory ring. With it,
//! the history is the shared Dragonfly list, so both blue/green slots
//! report the same events and they survive restarts; the memory ring is
//! kept alongside as a mirror of what this instance received.
//!
//! Every event is stored once: a repeat (same [`DeployKey`], see the
//! domain) is answered like the first post and stored nowhere again. The
//! logs recognise repeats themselves, Dragonfly atomically for every
//! instance sharing it, so a push whose answer was lost (a command that
//! timed out on a slow Dragonfly but ran) can be pushed again harmlessly.
//!
//! An accepted event goes into the memory ring and a queue of events not
//! yet in Dragonfly, in arrival order, then the queue is pushed to
//! Dragonfly as one batch; one batch at a time, so the shared list gets
//! this instance's events in the order they arrived. When the push fails
//! (Dragonfly unreachable or slow):
//!
//! * the append is still accepted, answered as held `local`; a warning is
//!   logged, and the queue is pushed later, oldest first, by the replay
//!   task (retrying with capped backoff) or by the next append or read,
//!   whichever comes first. Until then, and if this instance stops first,
//!   the other slot does not see those events; once pushed they count as
//!   arriving at push time.
//! * a read that reaches Dragonfly shows the queued events on top of the
//!   shared history (where they will be once pushed); a read that does not
//!   answers from the memory ring (this instance's events only).
//!
//! Warnings are logged when Dragonfly starts failing and an info line when
//! it answers again, not on every request.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::domain::{
    DEPLOY_HISTORY_LIMIT, DeployEvent, DeployEventDraft, DeployEventError, DeployKey, DeployStatus,
};
use crate::ports::{Appended, DeployLog, DeployLogError, NoTelemetry, Placement, Telemetry};

/// The replay task's first wait after an event is left queued, and its
/// longest between attempts while Dragonfly keeps failing.
const REPLAY_FIRST_WAIT: Duration = Duration::from_millis(500);
const REPLAY_MAX_WAIT: Duration = Duration::from_secs(5);

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

/// An accepted event and what storing it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The event as validated (a repeat: as posted this time).
    pub event: DeployEvent,
    /// Where it is held, and whether it was a repeat.
    pub appended: Appended,
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

    /// Validates `draft` (defaulting `deployed_at` to now) and appends it;
    /// a repeat of an event already recorded is accepted and not stored
    /// again (nor counted).
    ///
    /// # Errors
    /// [`RecordDeployError::Invalid`] for a draft the domain refuses;
    /// [`RecordDeployError::Unavailable`] when the log fails.
    pub async fn record(&self, draft: DeployEventDraft) -> Result<Recorded, RecordDeployError> {
        let event = DeployEvent::parse(draft, SystemTime::now())?;
        let appended = self
            .log
            .append(event.clone())
            .await
            .map_err(RecordDeployError::Unavailable)?;
        let stored = match appended.placement {
            Placement::Shared => "shared",
            Placement::Local => "local",
        };
        if appended.duplicate {
            tracing::info!(
                deploy.sha = event.sha(),
                deploy.id = event.id(),
                deploy.stored = stored,
                "deploy event already recorded; not stored again"
            );
        } else {
            self.telemetry.deploy_event(event.outcome());
            tracing::info!(
                deploy.sha = event.sha(),
                deploy.outcome = event.outcome().as_str(),
                deploy.slot = event.slot(),
                deploy.id = event.id(),
                deploy.stored = stored,
                "deploy event recorded"
            );
        }
        Ok(Recorded { event, appended })
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
    /// Held while an event goes into the local log and the queue, so both
    /// see the same arrival order.
    intake: tokio::sync::Mutex<()>,
    /// Held while a batch is pushed to the shared log: one at a time, so
    /// batches land in the order their events arrived.
    writer: tokio::sync::Mutex<()>,
    /// A `std::sync::Mutex`: only taken to move events in or out, never
    /// across an `.await`.
    queue: Mutex<Queue>,
    /// Counts push attempts, so an append that waited for another's failed
    /// attempt does not hammer a failing Dragonfly with its own.
    attempts: AtomicU64,
    /// Wakes the replay task when an event is left queued.
    wake: Notify,
    /// Whether the last shared-log command failed, so the warning is
    /// logged once per outage rather than once per request.
    degraded: AtomicBool,
}

/// Events not yet confirmed in the shared log.
#[derive(Debug, Default)]
struct Queue {
    /// Oldest first, each with its arrival number.
    events: VecDeque<(u64, DeployEvent)>,
    /// The arrival number of the next event.
    next: u64,
}

/// What a push of the queue did: the arrival numbers pushed, each with
/// what the shared log made of it.
type Pushed = Vec<(u64, Appended)>;

impl ResilientDeployLog {
    /// The local log alone (no Dragonfly configured).
    pub fn local_only(local: Arc<dyn DeployLog>) -> Self {
        Self {
            shared: None,
            local,
            intake: tokio::sync::Mutex::new(()),
            writer: tokio::sync::Mutex::new(()),
            queue: Mutex::new(Queue::default()),
            attempts: AtomicU64::new(0),
            wake: Notify::new(),
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

    /// How many events are waiting to be pushed to the shared log.
    pub fn unsynced_len(&self) -> usize {
        self.queue().events.len()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Every critical section leaves the queue whole, so a poisoned lock
        // is taken over rather than propagated.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pushes the queued events until the queue stays empty, for as long
    /// as the application runs: after an event is left queued, it waits
    /// [`REPLAY_FIRST_WAIT`], then retries with doubling waits up to
    /// [`REPLAY_MAX_WAIT`] until a push succeeds. Returns at once without a
    /// shared log. The one task that pushes in the background; appends
    /// and reads push too, one batch at a time with it.
    pub async fn run_replay(self: Arc<Self>) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let mut wait = REPLAY_FIRST_WAIT;
        loop {
            if self.queue().events.is_empty() {
                wait = REPLAY_FIRST_WAIT;
                self.wake.notified().await;
                continue;
            }
            tokio::time::sleep(wait).await;
            match self.push(shared.as_ref(), None).await {
                Ok(_) => wait = REPLAY_FIRST_WAIT,
                Err(_) => wait = (wait * 2).min(REPLAY_MAX_WAIT),
            }
        }
    }

    /// Pushes the queue, oldest first, as one batch, and drops what was
    /// pushed from it. With `seen_attempts` (the attempt count before the
    /// caller started waiting), gives up without a command when another
    /// attempt failed meanwhile: the caller's events stay queued for the
    /// replay task instead of adding another timeout to the request.
    async fn push(
        &self,
        shared: &dyn DeployLog,
        seen_attempts: Option<u64>,
    ) -> Result<Pushed, DeployLogError> {
        let _writer = self.writer.lock().await;
        if seen_attempts.is_some_and(|seen| seen != self.attempts.load(Ordering::SeqCst))
            && self.degraded.load(Ordering::SeqCst)
        {
            return Ok(Vec::new());
        }
        let batch: Vec<(u64, DeployEvent)> = self.queue().events.iter().cloned().collect();
        let Some(&(last, _)) = batch.last() else {
            return Ok(Vec::new());
        };
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let events = batch.iter().map(|(_, event)| event.clone()).collect();
        match shared.append_all(events).await {
            Ok(appended) => {
                self.queue().events.retain(|(number, _)| *number > last);
                self.recovered();
                Ok(batch
                    .iter()
                    .map(|(number, _)| *number)
                    .zip(appended)
                    .collect())
            }
            Err(error) => {
                self.failed(&error, "append");
                Err(error)
            }
        }
    }

    /// Queues `event` behind the others (unless it is queued already) and
    /// returns its arrival number, with what the local log made of it.
    async fn take_in(&self, event: DeployEvent) -> Result<(u64, Appended), DeployLogError> {
        let _intake = self.intake.lock().await;
        let local = self.local.append(event.clone()).await?;
        let key = event.key();
        let mut queue = self.queue();
        if let Some(&(number, _)) = queue.events.iter().find(|(_, e)| e.key() == key) {
            return Ok((number, local));
        }
        // Even a repeat the local log knows goes through the shared log,
        // which recognises it too: only the shared log can say whether the
        // first copy reached it.
        let number = queue.next;
        queue.next += 1;
        queue.events.push_back((number, event));
        let excess = queue.events.len().saturating_sub(DEPLOY_HISTORY_LIMIT);
        if excess > 0 {
            queue.events.drain(..excess);
            tracing::warn!(
                dropped = excess,
                "deploy events waited too long for the shared history; the oldest stay in this instance's memory only"
            );
        }
        Ok((number, local))
    }

    /// The shared history with the queued events on top (where they will
    /// be once pushed), each event once.
    fn with_queued(&self, shared: Vec<DeployEvent>, limit: usize) -> Vec<DeployEvent> {
        let in_shared: HashSet<DeployKey> = shared.iter().map(DeployEvent::key).collect();
        let queued: Vec<DeployEvent> = self
            .queue()
            .events
            .iter()
            .rev()
            .map(|(_, event)| event.clone())
            .filter(|event| !in_shared.contains(&event.key()))
            .collect();
        let mut shown = HashSet::new();
        queued
            .into_iter()
            .chain(shared)
            .filter(|event| shown.insert(event.key()))
            .take(limit)
            .collect()
    }

    fn failed(&self, error: &DeployLogError, what: &str) {
        if !self.degraded.swap(true, Ordering::SeqCst) {
            let cause = std::error::Error::source(error).map(ToString::to_string);
            tracing::warn!(
                %error,
                cause,
                "shared deploy history unavailable ({what}); keeping events in this instance's memory until it answers"
            );
        }
    }

    fn recovered(&self) {
        if self.degraded.swap(false, Ordering::SeqCst) {
            tracing::info!("shared deploy history available again");
        }
    }
}

#[async_trait]
impl DeployLog for ResilientDeployLog {
    async fn append(&self, event: DeployEvent) -> Result<Appended, DeployLogError> {
        let Some(shared) = &self.shared else {
            return self.local.append(event).await;
        };
        let seen_attempts = self.attempts.load(Ordering::SeqCst);
        let (number, local) = self.take_in(event).await?;
        let pushed = self
            .push(shared.as_ref(), Some(seen_attempts))
            .await
            .unwrap_or_default();
        let still_queued = self.queue().events.iter().any(|(n, _)| *n == number);
        if still_queued {
            self.wake.notify_one();
            return Ok(Appended {
                placement: Placement::Local,
                duplicate: local.duplicate,
            });
        }
        let shared_duplicate = pushed
            .iter()
            .find(|(n, _)| *n == number)
            .is_some_and(|(_, appended)| appended.duplicate);
        Ok(Appended {
            placement: Placement::Shared,
            duplicate: local.duplicate || shared_duplicate,
        })
    }

    async fn recent(&self, limit: usize) -> Result<Vec<DeployEvent>, DeployLogError> {
        let Some(shared) = &self.shared else {
            return self.local.recent(limit).await;
        };
        if self.unsynced_len() > 0 {
            let seen_attempts = self.attempts.load(Ordering::SeqCst);
            // A failure leaves the events queued; the read goes on.
            let _ = self.push(shared.as_ref(), Some(seen_attempts)).await;
        }
        match shared.recent(limit).await {
            Ok(events) => {
                self.recovered();
                Ok(self.with_queued(events, limit))
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

    /// A shared log that can be switched off, or made slow: a slow one
    /// stores what it is sent but answers with an error, as a Dragonfly
    /// command does that runs after the caller's timeout.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryDeployLog,
        down: AtomicBool,
        slow: AtomicBool,
    }

    fn unavailable() -> DeployLogError {
        DeployLogError::Unavailable {
            store: "flaky",
            source: "switched off".into(),
        }
    }

    impl Flaky {
        fn check(&self) -> Result<(), DeployLogError> {
            if self.down.load(Ordering::SeqCst) {
                Err(unavailable())
            } else {
                Ok(())
            }
        }
    }

    #[async_trait]
    impl DeployLog for Flaky {
        async fn append(&self, event: DeployEvent) -> Result<Appended, DeployLogError> {
            self.check()?;
            let appended = self.inner.append(event).await?;
            if self.slow.load(Ordering::SeqCst) {
                return Err(unavailable());
            }
            Ok(Appended {
                placement: Placement::Shared,
                ..appended
            })
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

    fn with_id(sha: &str, id: &str) -> DeployEvent {
        let mut d = draft(sha, "success");
        d.id = Some(id.to_owned());
        DeployEvent::parse(d, SystemTime::now()).expect("valid")
    }

    #[tokio::test]
    async fn the_answer_says_where_the_event_is_held() {
        let (shared, _, log) = resilient();
        assert_eq!(
            log.append(event("a")).await.expect("append"),
            Appended {
                placement: Placement::Shared,
                duplicate: false
            }
        );
        shared.down.store(true, Ordering::SeqCst);
        assert_eq!(
            log.append(event("b")).await.expect("append"),
            Appended {
                placement: Placement::Local,
                duplicate: false
            }
        );
        let local = ResilientDeployLog::local_only(Arc::new(MemoryDeployLog::new()));
        assert_eq!(
            local.append(event("c")).await.expect("append").placement,
            Placement::Local
        );
    }

    #[tokio::test]
    async fn a_repeat_is_stored_once_and_said_to_be_one() {
        let (shared, local, log) = resilient();
        let first = log.append(with_id("abc", "run-1")).await.expect("append");
        let again = log.append(with_id("abc", "run-1")).await.expect("append");
        assert!(!first.duplicate);
        assert!(again.duplicate);
        assert_eq!(again.placement, Placement::Shared);
        assert_eq!(shas(&shared.recent(10).await.expect("shared")), ["abc"]);
        assert_eq!(shas(&local.recent(10).await.expect("local")), ["abc"]);
        assert_eq!(shas(&log.recent(10).await.expect("recent")), ["abc"]);
    }

    #[tokio::test]
    async fn a_repeat_during_an_outage_is_queued_once() {
        let (shared, _, log) = resilient();
        shared.down.store(true, Ordering::SeqCst);
        log.append(with_id("abc", "run-1")).await.expect("append");
        let again = log.append(with_id("abc", "run-1")).await.expect("append");
        assert!(again.duplicate);
        assert_eq!(again.placement, Placement::Local);
        assert_eq!(log.unsynced_len(), 1);
        shared.down.store(false, Ordering::SeqCst);
        assert_eq!(shas(&log.recent(10).await.expect("recent")), ["abc"]);
        assert_eq!(shas(&shared.recent(10).await.expect("shared")), ["abc"]);
    }

    #[tokio::test]
    async fn a_push_that_ran_although_it_failed_is_never_pushed_twice() {
        let (shared, _, log) = resilient();
        // Stored in the shared log, but the answer is an error: queued.
        shared.slow.store(true, Ordering::SeqCst);
        for sha in ["one", "two"] {
            let appended = log.append(event(sha)).await.expect("append");
            assert_eq!(appended.placement, Placement::Local);
        }
        // Every retry while slow runs again and fails again.
        for _ in 0..3 {
            log.recent(10).await.expect("recent");
        }
        shared.slow.store(false, Ordering::SeqCst);
        log.append(event("three")).await.expect("append");
        assert_eq!(log.unsynced_len(), 0);
        assert_eq!(
            shas(&shared.recent(10).await.expect("shared")),
            ["three", "two", "one"]
        );
        assert_eq!(
            shas(&log.recent(10).await.expect("recent")),
            ["three", "two", "one"]
        );
    }

    #[tokio::test]
    async fn while_pushes_fail_a_read_shows_queued_events_on_top_once() {
        let (shared, _, log) = resilient();
        shared.append(event("other-slot")).await.expect("append");
        shared.slow.store(true, Ordering::SeqCst);
        log.append(event("mine")).await.expect("append");
        // The shared log has "mine" already (the slow push ran) and the
        // queue has it too: shown once, where the shared log has it.
        assert_eq!(
            shas(&log.recent(10).await.expect("recent")),
            ["mine", "other-slot"]
        );
        assert_eq!(log.unsynced_len(), 1);
    }

    #[tokio::test]
    async fn concurrent_appends_reach_the_shared_log_in_arrival_order() {
        let (shared, local, log) = resilient();
        let log = Arc::new(log);
        shared.down.store(true, Ordering::SeqCst);
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let log = Arc::clone(&log);
                tokio::spawn(async move { log.append(event(&format!("sha{i:02}"))).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("joined").expect("append");
        }
        shared.down.store(false, Ordering::SeqCst);
        log.recent(1).await.expect("recent");
        let arrival = shas(&local.recent(50).await.expect("local"))
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        let pushed = shas(&shared.recent(50).await.expect("shared"))
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        assert_eq!(pushed, arrival);
        assert_eq!(pushed.len(), 20);
    }

    #[tokio::test]
    async fn the_replay_task_pushes_queued_events_without_further_requests() {
        let (shared, _, log) = resilient();
        let log = Arc::new(log);
        shared.down.store(true, Ordering::SeqCst);
        log.append(event("one")).await.expect("append");
        log.append(event("two")).await.expect("append");
        let replay = tokio::spawn(Arc::clone(&log).run_replay());
        shared.down.store(false, Ordering::SeqCst);

        let until = std::time::Instant::now() + Duration::from_secs(5);
        while log.unsynced_len() > 0 && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        replay.abort();
        assert_eq!(log.unsynced_len(), 0);
        assert_eq!(
            shas(&shared.recent(10).await.expect("shared")),
            ["two", "one"]
        );
    }

    #[tokio::test]
    async fn the_service_does_not_count_a_repeat() {
        let service = DeployService::new(Arc::new(MemoryDeployLog::new()));
        let mut d = draft("a", "success");
        d.id = Some("x".to_owned());
        let first = service.record(d.clone()).await.expect("record");
        let again = service.record(d).await.expect("record");
        assert!(!first.appended.duplicate);
        assert!(again.appended.duplicate);
        let status = service.status().await.expect("status").expect("some");
        assert_eq!(status.total_deploys, 1);
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
