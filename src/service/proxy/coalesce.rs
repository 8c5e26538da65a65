//! Per-key request coalescing: concurrent requests for one cache key share
//! a single upstream fetch and all receive its result the moment it lands.
//!
//! The fetch runs in its own task, so a client that disconnects never
//! cancels the fetch that other waiters (and the cache) depend on. The
//! fetch can still tell when nobody waits for it any more ([`Waiters`]), so
//! one that has not been sent yet need not be sent at all.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::Notify;

type SharedResult<V> = Shared<BoxFuture<'static, Arc<V>>>;
type Inflight<K, V> = Arc<Mutex<HashMap<K, Flight<V>>>>;

/// One fetch in flight and the callers waiting for it.
struct Flight<V> {
    result: SharedResult<V>,
    interest: Arc<Interest>,
}

/// How many callers wait for one fetch. Only incremented under the map's
/// lock, so a fetch that finds it at zero under that lock and removes its
/// key can be sure nobody will join it.
#[derive(Default)]
struct Interest {
    waiters: AtomicUsize,
    changed: Notify,
}

/// One caller's interest in a fetch, given up when the caller finishes or
/// is dropped (its client disconnected).
struct Interested(Arc<Interest>);

impl Drop for Interested {
    fn drop(&mut self) {
        if self.0.waiters.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

/// Handed to a fetch so it can notice that every caller has gone.
pub(crate) struct Waiters {
    interest: Arc<Interest>,
    /// Removes the fetch's key if nobody waits; true when it did.
    release: Box<dyn Fn() -> bool + Send + Sync>,
}

impl Waiters {
    /// Resolves once every caller waiting for the fetch has gone, after
    /// releasing its key (so a later caller starts a fetch of its own
    /// rather than joining one that gave up). Never resolves while anyone
    /// waits.
    pub(crate) async fn all_gone(&self) {
        loop {
            let changed = self.interest.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.interest.waiters.load(Ordering::SeqCst) == 0 && (self.release)() {
                return;
            }
            changed.await;
        }
    }
}

/// In-flight fetches by key. Cloning shares the map.
pub(crate) struct Coalescer<K, V> {
    // A std mutex: it is held only to look up or insert a handle, never
    // across an await.
    inflight: Inflight<K, V>,
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

/// Removes `key` from the locked map if it still belongs to the fetch
/// whose waiters are `interest` (a fetch that gave up may have been
/// replaced by a newer one).
fn remove_own<K: Eq + Hash, V>(map: &mut HashMap<K, Flight<V>>, key: &K, interest: &Arc<Interest>) {
    if map
        .get(key)
        .is_some_and(|flight| Arc::ptr_eq(&flight.interest, interest))
    {
        map.remove(key);
    }
}

/// Removes the key when the fetch task ends, even if it panics, so a key
/// can never be left pointing at a dead fetch.
struct Deregister<K: Eq + Hash, V> {
    key: K,
    interest: Arc<Interest>,
    inflight: Inflight<K, V>,
}

impl<K: Eq + Hash, V> Drop for Deregister<K, V> {
    fn drop(&mut self) {
        let mut map = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        remove_own(&mut map, &self.key, &self.interest);
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
        start: impl FnOnce(Waiters) -> F,
        on_panic: impl FnOnce() -> V + Send + 'static,
    ) -> (Arc<V>, Role)
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (shared, role, _interested) = {
            let mut map = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(running) = map.get(key) {
                running.interest.waiters.fetch_add(1, Ordering::SeqCst);
                let interested = Interested(Arc::clone(&running.interest));
                (running.result.clone(), Role::Follower, interested)
            } else {
                let interest = Arc::new(Interest::default());
                interest.waiters.fetch_add(1, Ordering::SeqCst);
                let guard = Deregister {
                    key: key.clone(),
                    interest: Arc::clone(&interest),
                    inflight: Arc::clone(&self.inflight),
                };
                let waiters = Waiters {
                    interest: Arc::clone(&interest),
                    release: Box::new({
                        let inflight = Arc::clone(&self.inflight);
                        let interest = Arc::clone(&interest);
                        let key = key.clone();
                        move || {
                            let mut map = inflight.lock().unwrap_or_else(PoisonError::into_inner);
                            if interest.waiters.load(Ordering::SeqCst) != 0 {
                                return false;
                            }
                            remove_own(&mut map, &key, &interest);
                            true
                        }
                    }),
                };
                let fetch = start(waiters);
                let task = tokio::spawn(async move {
                    let _guard = guard;
                    Arc::new(fetch.await)
                });
                let shared = async move { task.await.unwrap_or_else(|_| Arc::new(on_panic())) }
                    .boxed()
                    .shared();
                map.insert(
                    key.clone(),
                    Flight {
                        result: shared.clone(),
                        interest: Arc::clone(&interest),
                    },
                );
                (shared, Role::Leader, Interested(interest))
            }
        };
        (shared.await, role)
    }

    /// Whether a fetch for `key` is in flight.
    pub(crate) fn is_running(&self, key: &K) -> bool {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
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
                        |_| async move {
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
        let (a, role_a) = coalescer.run(&"k", |_| async { 1 }, || 0).await;
        let (b, role_b) = coalescer.run(&"k", |_| async { 2 }, || 0).await;
        assert_eq!((*a, role_a, *b, role_b), (1, Role::Leader, 2, Role::Leader));
    }

    #[tokio::test]
    async fn a_panicking_fetch_releases_its_key() {
        let coalescer: Coalescer<&'static str, u32> = Coalescer::new();
        let (v, _) = coalescer
            .run(&"k", |_| async { panic!("boom") }, || 7)
            .await;
        assert_eq!(*v, 7);
        assert_eq!(coalescer.in_flight(), 0);
        let (v, _) = coalescer.run(&"k", |_| async { 3 }, || 7).await;
        assert_eq!(*v, 3);
    }

    /// A fetch that waits until all its callers have gone, and says so.
    fn waits_for_everyone_to_leave(
        gone: Arc<AtomicUsize>,
    ) -> impl FnOnce(Waiters) -> BoxFuture<'static, u32> {
        move |waiters| {
            async move {
                waiters.all_gone().await;
                gone.fetch_add(1, Ordering::SeqCst);
                0
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn a_fetch_sees_when_every_caller_has_gone() {
        let coalescer: Coalescer<&'static str, u32> = Coalescer::new();
        let gone = Arc::new(AtomicUsize::new(0));
        let spawn_caller = |start: Option<_>| {
            let coalescer = coalescer.clone();
            tokio::spawn(async move {
                match start {
                    Some(start) => coalescer.run(&"k", start, || 0).await,
                    None => coalescer.run(&"k", |_| async { 9 }.boxed(), || 0).await,
                }
            })
        };
        let leader = spawn_caller(Some(waits_for_everyone_to_leave(Arc::clone(&gone))));
        while coalescer.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let follower = spawn_caller(None);
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The follower still waits, so the fetch goes on.
        assert_eq!(gone.load(Ordering::SeqCst), 0);
        assert_eq!(coalescer.in_flight(), 1);
        follower.abort();
        tokio::time::timeout(Duration::from_secs(5), async {
            while gone.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert_eq!(coalescer.in_flight(), 0);
        // A later caller starts afresh instead of joining the abandoned fetch.
        let (v, role) = coalescer.run(&"k", |_| async { 4 }.boxed(), || 0).await;
        assert_eq!((*v, role), (4, Role::Leader));
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
                        |_| async move {
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
