//! Per-key request coalescing: concurrent requests for one cache key share
//! a single upstream fetch and all receive its result the moment it lands.
//!
//! The fetch runs in its own task, so a client that disconnects never
//! cancels the fetch that other waiters (and the cache) depend on.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

type SharedResult<V> = Shared<BoxFuture<'static, Arc<V>>>;

/// In-flight fetches by key. Cloning shares the map.
pub(crate) struct Coalescer<K, V> {
    // A std mutex: it is held only to look up or insert a handle, never
    // across an await.
    inflight: Arc<Mutex<HashMap<K, SharedResult<V>>>>,
}

impl<K, V> Clone for Coalescer<K, V> {
    fn clone(&self) -> Self {
        Self {
            inflight: Arc::clone(&self.inflight),
        }
    }
}

/// Whether this caller started the fetch or joined one already running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Leader,
    Follower,
}

/// Removes the key when the fetch task ends, even if it panics, so a key
/// can never be left pointing at a dead fetch.
struct Deregister<K: Eq + Hash, V> {
    key: Option<K>,
    inflight: Arc<Mutex<HashMap<K, SharedResult<V>>>>,
}

impl<K: Eq + Hash, V> Drop for Deregister<K, V> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.inflight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        }
    }
}

impl<K, V> Coalescer<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    pub(crate) fn new() -> Self {
        Self {
            inflight: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Joins the fetch running for `key`, or calls `start` and runs the
    /// fetch it returns in a new task. `start` runs only for the leader, in
    /// the caller's task, so whatever it captures from the caller's context
    /// (its trace, for one) belongs to the request that really fetches.
    /// `on_panic` builds the result waiters get if the task panics.
    pub(crate) async fn run<F>(
        &self,
        key: &K,
        start: impl FnOnce() -> F,
        on_panic: impl FnOnce() -> V + Send + 'static,
    ) -> (Arc<V>, Role)
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (shared, role) = {
            let mut map = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(running) = map.get(key) {
                (running.clone(), Role::Follower)
            } else {
                let guard = Deregister {
                    key: Some(key.clone()),
                    inflight: Arc::clone(&self.inflight),
                };
                let fetch = start();
                let task = tokio::spawn(async move {
                    let _guard = guard;
                    Arc::new(fetch.await)
                });
                let shared = async move { task.await.unwrap_or_else(|_| Arc::new(on_panic())) }
                    .boxed()
                    .shared();
                map.insert(key.clone(), shared.clone());
                (shared, Role::Leader)
            }
        };
        (shared.await, role)
    }

    /// Number of fetches in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let coalescer: Coalescer<&'static str, usize> = Coalescer::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let gate = gate.shared();
        let mut waiters = Vec::new();
        for _ in 0..20 {
            let coalescer = coalescer.clone();
            let calls = Arc::clone(&calls);
            let gate = gate.clone();
            waiters.push(tokio::spawn(async move {
                coalescer
                    .run(
                        &"k",
                        || async move {
                            let _ = gate.await;
                            calls.fetch_add(1, Ordering::SeqCst) + 41
                        },
                        || 0,
                    )
                    .await
            }));
        }
        // Let every waiter register before the fetch may finish.
        tokio::task::yield_now().await;
        while coalescer.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        let mut leaders = 0;
        for w in waiters {
            let (value, role) = tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(*value, 41);
            leaders += usize::from(role == Role::Leader);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert_eq!(coalescer.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_finished_fetch_is_not_reused() {
        let coalescer: Coalescer<&'static str, u32> = Coalescer::new();
        let (a, role_a) = coalescer.run(&"k", || async { 1 }, || 0).await;
        let (b, role_b) = coalescer.run(&"k", || async { 2 }, || 0).await;
        assert_eq!((*a, role_a, *b, role_b), (1, Role::Leader, 2, Role::Leader));
    }

    #[tokio::test]
    async fn a_panicking_fetch_releases_its_key() {
        let coalescer: Coalescer<&'static str, u32> = Coalescer::new();
        let (v, _) = coalescer.run(&"k", || async { panic!("boom") }, || 7).await;
        assert_eq!(*v, 7);
        assert_eq!(coalescer.in_flight(), 0);
        let (v, _) = coalescer.run(&"k", || async { 3 }, || 7).await;
        assert_eq!(*v, 3);
    }

    #[tokio::test]
    async fn a_dropped_caller_does_not_cancel_the_fetch() {
        let coalescer: Coalescer<&'static str, u32> = Coalescer::new();
        let done = Arc::new(AtomicUsize::new(0));
        let flag = Arc::clone(&done);
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let leader = {
            let coalescer = coalescer.clone();
            tokio::spawn(async move {
                coalescer
                    .run(
                        &"k",
                        || async move {
                            let _ = gate.await;
                            flag.fetch_add(1, Ordering::SeqCst);
                            5
                        },
                        || 0,
                    )
                    .await
            })
        };
        while coalescer.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        leader.abort();
        release.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while coalescer.in_flight() != 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
