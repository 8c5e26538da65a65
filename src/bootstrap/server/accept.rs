//! The accept loop: takes a connection only when a connection slot is
//! free, and waits (100 ms, doubling to 1 s) when accepting fails for want
//! of a resource, instead of retrying at once.
//!
//! Why both: `accept(2)` fails with `EMFILE`/`ENFILE` when the process or
//! the system is out of file descriptors, and the connection that could
//! not be taken stays in the kernel's queue, so an immediate retry fails
//! again at once, forever, at 100% of a core (poem's own server loop did
//! exactly that). Only closing connections frees descriptors, so the loop
//! waits for that. And the cap on open connections keeps chimney from
//! reaching that point at all: at `max_connections` the loop stops calling
//! `accept`, and new connections wait in the kernel's backlog until one
//! closes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The first wait after a failed accept.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between attempts while accepting keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Where connections come from: the listener, or a test's stand-in.
pub(super) trait Incoming: Send + 'static {
    /// One accepted connection.
    type Conn: Send + 'static;

    /// The next connection and its peer.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send;
}

impl Incoming for TcpListener {
    type Conn = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        TcpListener::accept(self).await
    }
}

/// Errors that concern one connection only (the peer reset it before it
/// was taken, a signal interrupted the call): the next accept may well
/// succeed, so it is tried at once.
fn concerns_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Doubling waits, from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`].
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: FIRST_BACKOFF,
        }
    }

    fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }

    fn take(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
    }

    /// Whether the loop is in a failure episode (for logging once).
    fn failing(&self) -> bool {
        self.next != FIRST_BACKOFF
    }
}

/// Accepts until `stop` completes: waits for a free slot of `slots`, then
/// for a connection, and hands both to `serve`; the slot is freed when the
/// permit is dropped, i.e. when the connection's task ends.
pub(super) async fn accept_loop<I: Incoming>(
    mut incoming: I,
    slots: Arc<Semaphore>,
    mut serve: impl FnMut(I::Conn, SocketAddr, OwnedSemaphorePermit),
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut backoff = Backoff::new();
    loop {
        let permit = tokio::select! {
            () = &mut stop => return,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                // Nothing closes the semaphore; if something did, there is
                // nothing left to accept for.
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            () = &mut stop => return,
            accepted = incoming.accept() => accepted,
        };
        match accepted {
            Ok((conn, peer)) => {
                if backoff.failing() {
                    tracing::info!("accepting connections again");
                }
                backoff.reset();
                serve(conn, peer, permit);
            }
            Err(error) if concerns_one_connection(&error) => {
                tracing::debug!(%error, "a connection was lost before it was accepted");
            }
            Err(error) => {
                if !backoff.failing() {
                    tracing::warn!(
                        %error,
                        "cannot accept connections (out of file descriptors?); retrying with backoff until some close"
                    );
                }
                let wait = backoff.take();
                drop(permit);
                tokio::select! {
                    () = &mut stop => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// An `Incoming` that answers from a script, then with `after` every
    /// time, or (`None`) never again.
    struct Scripted {
        script: Arc<Mutex<Vec<io::Result<()>>>>,
        calls: Arc<AtomicUsize>,
        after: Option<fn() -> io::Result<()>>,
    }

    impl Scripted {
        fn new(script: Vec<io::Result<()>>, after: Option<fn() -> io::Result<()>>) -> Self {
            let mut script = script;
            script.reverse();
            Self {
                script: Arc::new(Mutex::new(script)),
                calls: Arc::new(AtomicUsize::new(0)),
                after,
            }
        }
    }

    fn out_of_descriptors() -> io::Result<()> {
        Err(io::Error::from_raw_os_error(24)) // EMFILE
    }

    fn aborted() -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::ConnectionAborted))
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    impl Incoming for Scripted {
        type Conn = ();

        async fn accept(&mut self) -> io::Result<((), SocketAddr)> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            // A stand-in for the real accept's await point.
            tokio::task::yield_now().await;
            let next = self.script.lock().expect("lock").pop();
            let answer = match (next, self.after) {
                (Some(answer), _) => answer,
                (None, Some(after)) => after(),
                (None, None) => std::future::pending().await,
            };
            answer.map(|()| ((), peer()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn running_out_of_descriptors_backs_off_instead_of_spinning() {
        let incoming = Scripted::new(Vec::new(), Some(out_of_descriptors));
        let calls = Arc::clone(&incoming.calls);
        let slots = Arc::new(Semaphore::new(8));

        accept_loop(
            incoming,
            slots,
            |(), _, _| {},
            tokio::time::sleep(Duration::from_secs(10)),
        )
        .await;

        // 100 + 200 + 400 + 800 ms, then one attempt a second: 13 or 14
        // attempts in 10 s. A loop retrying at once makes millions.
        let calls = calls.load(Ordering::SeqCst);
        assert!((10..=15).contains(&calls), "{calls} accept calls in 10 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_ends_the_backoff() {
        let mut script: Vec<io::Result<()>> = (0..6).map(|_| out_of_descriptors()).collect();
        script.push(Ok(()));
        script.extend((0..2).map(|_| out_of_descriptors()));
        script.push(Ok(()));
        let incoming = Scripted::new(script, None);
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let times = Arc::clone(&accepted);

        accept_loop(
            incoming,
            Arc::new(Semaphore::new(8)),
            move |(), _, _permit| {
                times
                    .lock()
                    .expect("lock")
                    .push(tokio::time::Instant::now());
            },
            tokio::time::sleep(Duration::from_secs(10)),
        )
        .await;

        let times = accepted.lock().expect("lock").clone();
        assert_eq!(times.len(), 2);
        // The two failures after the first success wait 100 + 200 ms, not
        // the 1 s the first episode had reached.
        let gap = times[1] - times[0];
        assert_eq!(gap, Duration::from_millis(300), "{gap:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_of_one_connection_is_retried_at_once() {
        let mut script: Vec<io::Result<()>> = (0..50).map(|_| aborted()).collect();
        script.push(Ok(()));
        let incoming = Scripted::new(script, None);
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);

        // Paused time only moves when every task waits: the 51st accept
        // happens before the first millisecond unless the loop slept.
        accept_loop(
            incoming,
            Arc::new(Semaphore::new(1)),
            move |(), _, _permit| {
                counted.fetch_add(1, Ordering::SeqCst);
            },
            tokio::time::sleep(Duration::from_millis(1)),
        )
        .await;

        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_connection_is_accepted_while_every_slot_is_taken() {
        let incoming = Scripted::new(Vec::new(), Some(|| Ok(())));
        let calls = Arc::clone(&incoming.calls);
        let held = Arc::new(Mutex::new(Vec::new()));
        let holder = Arc::clone(&held);
        let slots = Arc::new(Semaphore::new(2));

        let running = tokio::spawn(accept_loop(
            incoming,
            Arc::clone(&slots),
            move |(), _, permit| holder.lock().expect("lock").push(permit),
            std::future::pending(),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "two slots, two accepts");

        // One connection closes: exactly one more is accepted.
        drop(held.lock().expect("lock").pop());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        running.abort();
    }
}
