//! [`AccessLogWriter`]: the queue and thread that format request log lines
//! and write them in batches, off the request path.
//!
//! A request only pushes its [`LogLine`] onto a bounded queue under a
//! short lock, and wakes the thread only when a batch's worth is waiting
//! (a wake-up per line would cost more than the line). The thread wakes at
//! the latest after the batch delay, takes the whole queue at once,
//! formats it into one buffer and writes that with one `write`. When the
//! queue is full (stdout slower than the traffic) lines are dropped and
//! counted rather than requests slowed; the thread says so in the log
//! when it starts and stops dropping. [`AccessLogGuard::shutdown`] writes
//! everything queued before it returns, so a clean stop loses no line.

use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::line::{LogLine, write_queue_notice};

/// How lines are batched.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// The longest a line waits before it is written.
    pub delay: Duration,
    /// Lines that wake the thread before the delay is up.
    pub batch: usize,
    /// Lines queued before new ones are dropped.
    pub queue: usize,
}

impl Default for WriterOptions {
    /// Lines reach stdout within 100 ms; at most 16,384 wait (about 2 MiB
    /// at a typical line), a fraction of a second of saturated traffic.
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(100),
            batch: 1024,
            queue: 16 * 1024,
        }
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    options: WriterOptions,
}

#[derive(Default)]
struct State {
    lines: Vec<LogLine>,
    /// Lines refused on a full queue since the thread last looked.
    dropped: u64,
    stopping: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one is still
        // consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where requests hand their lines over; clones share the queue.
#[derive(Clone)]
pub struct AccessLogWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AccessLogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogWriter")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

/// Owns the writer thread; [`AccessLogGuard::shutdown`] (or dropping it)
/// writes what is queued and stops the thread.
#[must_use = "dropping the guard stops the request log"]
pub struct AccessLogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Told when the thread is done. In a mutex only so that the guard
    /// (held by the telemetry guard) is `Sync`.
    finished: Mutex<mpsc::Receiver<()>>,
}

impl std::fmt::Debug for AccessLogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogGuard").finish_non_exhaustive()
    }
}

impl AccessLogWriter {
    /// Starts the thread writing to `out`.
    ///
    /// # Errors
    /// Fails when the thread cannot be started.
    pub fn start(
        out: Box<dyn Write + Send>,
        options: WriterOptions,
    ) -> std::io::Result<(Self, AccessLogGuard)> {
        let options = WriterOptions {
            batch: options.batch.max(1),
            queue: options.queue.max(1),
            ..options
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            options,
        });
        let (done, finished) = mpsc::channel();
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("chimney-access-log".to_owned())
            .spawn(move || {
                run(&worker, out);
                let _ = done.send(());
            })?;
        Ok((
            Self {
                shared: Arc::clone(&shared),
            },
            AccessLogGuard {
                shared,
                thread: Some(thread),
                finished: Mutex::new(finished),
            },
        ))
    }

    /// Queues `line`; drops it (and counts it) when the queue is full.
    pub fn push(&self, line: LogLine) {
        let options = &self.shared.options;
        let mut state = self.shared.lock();
        if state.stopping {
            return;
        }
        if state.lines.len() >= options.queue {
            state.dropped += 1;
            return;
        }
        state.lines.push(line);
        let wake = state.lines.len() == options.batch;
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

impl AccessLogGuard {
    /// Writes every line queued so far, stops the thread and waits for it
    /// up to `timeout` (a stdout nobody reads can block it). Returns
    /// whether it finished in time.
    pub fn shutdown(mut self, timeout: Duration) -> bool {
        self.stop(timeout)
    }

    fn stop(&mut self, timeout: Duration) -> bool {
        let Some(thread) = self.thread.take() else {
            return true;
        };
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        let finished = self
            .finished
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .recv_timeout(timeout)
            .is_ok();
        if finished {
            let _ = thread.join();
        }
        finished
    }
}

impl Drop for AccessLogGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Above this, the write buffer is written out mid-batch and then given
/// back, so one burst does not keep megabytes for the process's life.
const BUFFER_BYTES: usize = 256 * 1024;

fn run(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let options = shared.options;
    let mut taken: Vec<LogLine> = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    // Lines dropped while the queue is full, until it has room again.
    let mut dropping: Option<u64> = None;
    loop {
        let (stopping, dropped) = {
            let state = shared.lock();
            let (mut state, _) = shared
                .wake
                .wait_timeout_while(state, options.delay, |s| {
                    !s.stopping && s.lines.len() < options.batch
                })
                .unwrap_or_else(PoisonError::into_inner);
            // Swap, not copy: the requests get the emptied vector back.
            std::mem::swap(&mut state.lines, &mut taken);
            (state.stopping, std::mem::take(&mut state.dropped))
        };
        match (dropped, dropping) {
            (0, None) => {}
            (0, Some(total)) => {
                write_queue_notice(&mut buffer, SystemTime::now(), total, false);
                dropping = None;
            }
            (n, None) => {
                write_queue_notice(&mut buffer, SystemTime::now(), n, true);
                dropping = Some(n);
            }
            (n, Some(total)) => dropping = Some(total + n),
        }
        for line in taken.drain(..) {
            line.write_json(&mut buffer);
            if buffer.len() >= BUFFER_BYTES {
                write_out(&mut out, &mut buffer);
            }
        }
        write_out(&mut out, &mut buffer);
        let _ = out.flush();
        if buffer.capacity() > BUFFER_BYTES {
            buffer = Vec::new();
        }
        if taken.capacity() > options.batch {
            taken.shrink_to(options.batch);
        }
        if stopping {
            // Everything queued before the stop has been written; lines
            // pushed after it are not waited for.
            return;
        }
    }
}

/// Writes and empties `buffer`. A failed write (stdout closed) loses the
/// lines: there is nowhere left to report it.
fn write_out(out: &mut Box<dyn Write + Send>, buffer: &mut Vec<u8>) {
    if !buffer.is_empty() {
        let _ = out.write_all(buffer);
        buffer.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    /// A sink the test reads back; `blocked` holds every write until
    /// cleared.
    #[derive(Clone, Default)]
    struct Captured {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
        blocked: Arc<AtomicBool>,
        /// Writes begun (a blocked one included).
        entered: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let started = Instant::now();
            while self.blocked.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            *self.writes.lock().unwrap() += 1;
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            self.bytes
                .lock()
                .unwrap()
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).expect("every line is JSON"))
                .collect()
        }
    }

    fn line(n: usize) -> LogLine {
        LogLine {
            at: SystemTime::now(),
            method: Cow::Borrowed("GET"),
            route: "/api/github/{path}",
            path: format!("/api/github/pulls?page={n}"),
            status: 200,
            latency: Duration::from_micros(100),
            cache_hit: true,
            cache_tier: "memory",
            bytes: 10,
            trace_id: [1; 16],
            span_id: [2; 8],
        }
    }

    fn page(line: &serde_json::Value) -> usize {
        line["path"]
            .as_str()
            .and_then(|p| p.rsplit('=').next())
            .and_then(|n| n.parse().ok())
            .expect("a numbered path")
    }

    #[test]
    fn shutdown_writes_every_queued_line_in_order_and_in_batches() {
        let sink = Captured::default();
        let options = WriterOptions {
            // Long enough that only shutdown and full batches write.
            delay: Duration::from_secs(30),
            batch: 1000,
            queue: 100_000,
        };
        let (writer, guard) = AccessLogWriter::start(Box::new(sink.clone()), options).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for n in 0..5_000 {
                        writer.push(line(t * 5_000 + n));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(guard.shutdown(Duration::from_secs(10)), "stopped in time");
        let lines = sink.lines();
        assert_eq!(lines.len(), 20_000, "no line lost");
        let mut pages: Vec<usize> = lines.iter().map(page).collect();
        // Each thread's lines stay in its order.
        for t in 0..4 {
            let own: Vec<usize> = pages.iter().copied().filter(|p| p / 5_000 == t).collect();
            assert!(own.windows(2).all(|w| w[0] < w[1]), "thread {t} in order");
        }
        pages.sort_unstable();
        pages.dedup();
        assert_eq!(pages.len(), 20_000);
        let writes = *sink.writes.lock().unwrap();
        assert!(writes <= 200, "{writes} writes for 20,000 lines");
    }

    #[test]
    fn lines_reach_the_output_within_the_delay() {
        let sink = Captured::default();
        let options = WriterOptions {
            delay: Duration::from_millis(20),
            ..WriterOptions::default()
        };
        let (writer, _guard) = AccessLogWriter::start(Box::new(sink.clone()), options).unwrap();
        writer.push(line(1));
        let started = Instant::now();
        while sink.lines().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(5), "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(page(&sink.lines()[0]), 1);
    }

    #[test]
    fn a_full_queue_drops_lines_and_says_so_once() {
        let sink = Captured::default();
        sink.blocked.store(true, Ordering::SeqCst);
        let options = WriterOptions {
            delay: Duration::from_millis(5),
            batch: 10,
            queue: 10,
        };
        let (writer, guard) = AccessLogWriter::start(Box::new(sink.clone()), options).unwrap();
        // The first line is taken and stuck in the blocked write; then the
        // queue fills.
        writer.push(line(0));
        let started = Instant::now();
        while sink.entered.load(Ordering::SeqCst) == 0 {
            assert!(started.elapsed() < Duration::from_secs(5), "never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        for n in 1..=30 {
            writer.push(line(n));
        }
        sink.blocked.store(false, Ordering::SeqCst);
        // Once the queue is written, a line pushed is kept again.
        let started = Instant::now();
        while sink
            .lines()
            .iter()
            .filter(|l| l["message"] == "request")
            .count()
            < 11
        {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "queue never written"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        writer.push(line(99));
        assert!(guard.shutdown(Duration::from_secs(10)));
        let lines = sink.lines();
        let requests: Vec<usize> = lines
            .iter()
            .filter(|l| l["message"] == "request")
            .map(page)
            .collect();
        assert_eq!(requests, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 99]);
        let notices: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["message"] != "request").collect();
        assert_eq!(notices.len(), 2, "{notices:?}");
        assert_eq!(notices[0]["level"], "WARN");
        assert_eq!(notices[0]["dropped"], 20);
        assert_eq!(notices[1]["level"], "INFO");
        assert_eq!(notices[1]["dropped"], 20);
    }

    #[test]
    fn a_line_pushed_after_shutdown_is_dropped_quietly() {
        let sink = Captured::default();
        let (writer, guard) =
            AccessLogWriter::start(Box::new(sink.clone()), WriterOptions::default()).unwrap();
        writer.push(line(1));
        assert!(guard.shutdown(Duration::from_secs(5)));
        writer.push(line(2));
        assert_eq!(sink.lines().len(), 1);
    }
}
