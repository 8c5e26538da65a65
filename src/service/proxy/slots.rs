//! The outbound cap with a bounded queue in front of it (CONTRACT 3, v2
//! "Bounded waiting"): at most `upstream_concurrency` requests to GitHub at
//! once, at most `upstream_queue` fetches waiting for one of those slots,
//! none of them longer than `upstream_queue_timeout`. A request that cannot
//! have a slot is answered from the stale entry or refused at once, rather
//! than piling up behind a slow GitHub.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

/// Why a fetch got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoSlot {
    /// Every slot was taken and the queue was full.
    QueueFull,
    /// The fetch waited the whole queue timeout.
    TimedOut,
    /// Everyone who wanted the fetch left while it waited.
    Abandoned,
}

impl fmt::Display for NoSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::QueueFull => "the upstream queue is full",
            Self::TimedOut => "no upstream slot came free in time",
            Self::Abandoned => "every client waiting for the fetch left",
        })
    }
}

/// The slots and the queue.
pub(super) struct UpstreamSlots {
    slots: Semaphore,
    queue: usize,
    timeout: Duration,
    waiting: AtomicUsize,
}

/// A place in the queue, given back however the wait ends.
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl UpstreamSlots {
    /// `concurrency` slots (at least one), `queue` places, `timeout` for
    /// each wait.
    pub(super) fn new(concurrency: usize, queue: usize, timeout: Duration) -> Self {
        Self {
            slots: Semaphore::new(concurrency.max(1)),
            queue,
            timeout,
            waiting: AtomicUsize::new(0),
        }
    }

    /// A slot, at once if one is free, else after queueing; gives up when
    /// `abandoned` resolves first.
    pub(super) async fn acquire(
        &self,
        abandoned: impl Future<Output = ()>,
    ) -> Result<SemaphorePermit<'_>, NoSlot> {
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(permit);
        }
        self.waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.queue).then_some(n + 1)
            })
            .map_err(|_| NoSlot::QueueFull)?;
        let _place = Place(&self.waiting);
        tokio::select! {
            // A slot that is free wins over a departure noticed at the same
            // moment: the fetch is then worth sending for the cache.
            biased;
            permit = tokio::time::timeout(self.timeout, self.slots.acquire()) => match permit {
                Ok(Ok(permit)) => Ok(permit),
                // The semaphore is never closed; treat it as no slot.
                Ok(Err(_)) | Err(_) => Err(NoSlot::TimedOut),
            },
            () = abandoned => Err(NoSlot::Abandoned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_free_slot_is_taken_at_once_even_with_no_queue() {
        let slots = UpstreamSlots::new(1, 0, LONG);
        assert!(slots.acquire(std::future::pending()).await.is_ok());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let slots = UpstreamSlots::new(1, 1, LONG);
        let _held = slots.acquire(std::future::pending()).await.unwrap();
        let queued = slots.acquire(std::future::pending());
        tokio::pin!(queued);
        // The first waiter takes the only place.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut queued)
                .await
                .is_err()
        );
        assert_eq!(
            slots.acquire(std::future::pending()).await.err(),
            Some(NoSlot::QueueFull)
        );
    }

    #[tokio::test]
    async fn a_wait_ends_at_the_timeout() {
        let slots = UpstreamSlots::new(1, 4, Duration::from_millis(30));
        let _held = slots.acquire(std::future::pending()).await.unwrap();
        assert_eq!(
            slots.acquire(std::future::pending()).await.err(),
            Some(NoSlot::TimedOut)
        );
        // Its place was given back.
        assert_eq!(slots.waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_wait_ends_when_nobody_wants_the_fetch() {
        let slots = UpstreamSlots::new(1, 4, LONG);
        let _held = slots.acquire(std::future::pending()).await.unwrap();
        assert_eq!(
            slots.acquire(std::future::ready(())).await.err(),
            Some(NoSlot::Abandoned)
        );
    }
}
