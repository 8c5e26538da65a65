//! `MemoryDeployLog`: the per-process deploy history, a ring of the newest
//! events, each stored once. Used alone without Dragonfly, and as the
//! fallback when Dragonfly fails.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::domain::{DEPLOY_DEDUP_WINDOW, DEPLOY_HISTORY_LIMIT, DeployEvent, DeployKey};
use crate::ports::{Appended, DeployLog, DeployLogError, Placement};

/// A ring of the newest events, newest at the front. Cloning is cheap and
/// shares the ring.
#[derive(Debug, Clone)]
pub struct MemoryDeployLog {
    /// A `std::sync::Mutex`, not a Tokio one: nothing awaits while it is
    /// held, and each critical section is a push or a copy of ≤ 50 events.
    inner: Arc<Mutex<Ring>>,
    capacity: usize,
}

/// The events and the keys of the last [`DEPLOY_DEDUP_WINDOW`] stored,
/// oldest first in `order`, for finding a repeat in constant time.
#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<DeployEvent>,
    order: VecDeque<DeployKey>,
    seen: HashSet<DeployKey>,
}

impl Default for MemoryDeployLog {
    fn default() -> Self {
        Self::with_capacity(DEPLOY_HISTORY_LIMIT)
    }
}

impl MemoryDeployLog {
    /// A log keeping the newest [`DEPLOY_HISTORY_LIMIT`] events.
    pub fn new() -> Self {
        Self::default()
    }

    /// A log keeping the newest `capacity` events (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner: Arc::new(Mutex::new(Ring {
                events: VecDeque::with_capacity(capacity),
                ..Ring::default()
            })),
            capacity,
        }
    }
}

#[async_trait]
impl DeployLog for MemoryDeployLog {
    async fn append(&self, event: DeployEvent) -> Result<Appended, DeployLogError> {
        // A panic while holding the lock cannot leave the ring half-updated
        // in a way that matters (a repeat is found, or the key and event
        // both go in before anything can fail), so a poisoned lock is
        // simply taken over.
        let mut ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = event.key();
        let duplicate = ring.seen.contains(&key);
        if !duplicate {
            ring.seen.insert(key.clone());
            ring.order.push_back(key);
            if ring.order.len() > DEPLOY_DEDUP_WINDOW
                && let Some(forgotten) = ring.order.pop_front()
            {
                ring.seen.remove(&forgotten);
            }
            ring.events.push_front(event);
            ring.events.truncate(self.capacity);
        }
        Ok(Appended {
            placement: Placement::Local,
            duplicate,
        })
    }

    async fn recent(&self, limit: usize) -> Result<Vec<DeployEvent>, DeployLogError> {
        let ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(ring.events.iter().take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::domain::DeployEventDraft;

    fn event(sha: &str) -> DeployEvent {
        DeployEvent::parse(
            DeployEventDraft {
                sha: sha.to_owned(),
                outcome: "success".to_owned(),
                ..DeployEventDraft::default()
            },
            SystemTime::now(),
        )
        .expect("valid event")
    }

    fn shas(events: &[DeployEvent]) -> Vec<&str> {
        events.iter().map(DeployEvent::sha).collect()
    }

    #[tokio::test]
    async fn an_empty_log_has_no_events() {
        let log = MemoryDeployLog::new();
        assert!(log.recent(10).await.expect("recent").is_empty());
    }

    #[tokio::test]
    async fn events_come_back_newest_first_by_arrival() {
        let log = MemoryDeployLog::new();
        // Arrival order differs from deployed_at order on purpose.
        let mut late = DeployEventDraft {
            sha: "second".to_owned(),
            outcome: "failure".to_owned(),
            ..DeployEventDraft::default()
        };
        late.deployed_at = Some("2000-01-01T00:00:00Z".to_owned());
        log.append(event("first")).await.expect("append");
        log.append(DeployEvent::parse(late, UNIX_EPOCH + Duration::from_secs(1)).expect("valid"))
            .await
            .expect("append");
        assert_eq!(
            shas(&log.recent(10).await.expect("recent")),
            ["second", "first"]
        );
        assert_eq!(shas(&log.recent(1).await.expect("recent")), ["second"]);
    }

    #[tokio::test]
    async fn the_ring_keeps_the_newest_fifty() {
        let log = MemoryDeployLog::new();
        for i in 0..60 {
            log.append(event(&format!("sha{i}"))).await.expect("append");
        }
        let all = log.recent(100).await.expect("recent");
        assert_eq!(all.len(), DEPLOY_HISTORY_LIMIT);
        assert_eq!(all[0].sha(), "sha59");
        assert_eq!(all[49].sha(), "sha10");
    }

    #[tokio::test]
    async fn a_repeat_is_stored_once_even_after_it_left_the_ring() {
        let log = MemoryDeployLog::with_capacity(2);
        let first = event("a");
        let appended = log.append(first.clone()).await.expect("append");
        assert!(!appended.duplicate);
        assert_eq!(appended.placement, Placement::Local);
        assert!(log.append(first.clone()).await.expect("append").duplicate);
        log.append(event("b")).await.expect("append");
        log.append(event("c")).await.expect("append");
        assert!(log.append(first).await.expect("append").duplicate);
        assert_eq!(shas(&log.recent(10).await.expect("recent")), ["c", "b"]);
    }

    #[tokio::test]
    async fn keys_older_than_the_window_are_forgotten() {
        let log = MemoryDeployLog::with_capacity(1);
        let first = event("first");
        log.append(first.clone()).await.expect("append");
        for i in 0..DEPLOY_DEDUP_WINDOW {
            log.append(event(&format!("sha{i}"))).await.expect("append");
        }
        assert!(!log.append(first).await.expect("append").duplicate);
        let ring = log.inner.lock().expect("lock");
        assert_eq!(ring.order.len(), DEPLOY_DEDUP_WINDOW);
        assert_eq!(ring.seen.len(), DEPLOY_DEDUP_WINDOW);
    }

    #[tokio::test]
    async fn clones_share_the_ring() {
        let log = MemoryDeployLog::with_capacity(2);
        let other = log.clone();
        log.append(event("a")).await.expect("append");
        other.append(event("b")).await.expect("append");
        other.append(event("c")).await.expect("append");
        assert_eq!(shas(&log.recent(10).await.expect("recent")), ["c", "b"]);
    }
}
