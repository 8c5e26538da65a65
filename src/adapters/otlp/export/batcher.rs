//! [`RequestExporter`]: the queue and thread that batch request records and
//! post them as spans and log records, and the sampler that decides, as
//! each request arrives, whether it has a span at all.
//!
//! Handing a record over is a `try_send` on a bounded queue: a request
//! never waits for the collector, and when the queue is full (a collector
//! slower than the traffic) records are dropped, not requests slowed. Nor
//! does it wake the worker: the worker sleeps until the batch delay has
//! passed or a batch's worth is waiting (a wake-up per record cost more
//! than encoding it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::Resource;

use super::common::ExportResource;
use super::request::{logs_payload, spans_payload};
use super::{Endpoint, PostError};
use crate::adapters::otlp::health::{EXPORTER_LOG_TARGET, ExportHealth};
use crate::adapters::otlp::sampling::Sampling;
use crate::adapters::otlp::target::{BuildError, HttpClients, Signal, SignalTarget};
use crate::ports::{RequestExport, RequestRecord};

/// How records are batched.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// The longest a record waits before its batch is sent.
    pub delay: Duration,
    /// Records per batch.
    pub max_batch: usize,
    /// Records queued before new ones are dropped.
    pub queue: usize,
}

/// What the worker is woken for; records travel on their own queue, so
/// handing one over never wakes the worker thread.
enum Control {
    /// A batch's worth of records is waiting.
    Full,
    Flush(mpsc::Sender<()>),
    Shutdown(mpsc::Sender<()>),
}

/// What the request exporter is started with.
#[derive(Debug)]
pub struct RequestExportConfig<'a> {
    /// Where and how the request spans go (the traces signal's target).
    pub traces: &'a SignalTarget,
    /// Where and how the request log records go (the logs signal's).
    pub logs: &'a SignalTarget,
    /// The resource the records are sent under.
    pub resource: &'a Resource,
    /// The instrumentation scope's name.
    pub scope: &'static str,
    /// How records are batched.
    pub batching: BatchOptions,
    /// Which requests' traces are sampled.
    pub sampling: Sampling,
    /// Where each post's outcome is reported.
    pub health: Arc<ExportHealth>,
}

/// A handle on the exporter thread; clones share it.
#[derive(Debug, Clone)]
pub struct RequestExporter {
    sampling: Sampling,
    records: SyncSender<RequestRecord>,
    control: SyncSender<Control>,
    /// Records handed over since the worker last drained the queue.
    pending: Arc<AtomicUsize>,
    /// Records dropped on a full queue since the worker last said so.
    dropped: Arc<AtomicUsize>,
    max_batch: usize,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl RequestExporter {
    /// Starts the thread that posts batches of records to the traces and
    /// logs targets, with HTTP clients from `clients`.
    ///
    /// # Errors
    /// Fails when an HTTP client or the thread cannot be started.
    pub fn start(
        config: RequestExportConfig<'_>,
        clients: &mut HttpClients,
    ) -> Result<Self, BuildError> {
        let options = config.batching;
        let traces = Endpoint::new(Signal::Traces, config.traces, clients)?;
        let logs = Endpoint::new(Signal::Logs, config.logs, clients)?;
        let (records, queue) = mpsc::sync_channel(options.queue);
        let (control, wakeups) = mpsc::sync_channel(16);
        let pending = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            traces,
            logs,
            resource: ExportResource::from(config.resource),
            scope: InstrumentationScope::builder(config.scope).build(),
            options,
            pending: Arc::clone(&pending),
            dropped: Arc::clone(&dropped),
            health: config.health,
            dropping: None,
        };
        let thread = std::thread::Builder::new()
            .name("chimney-otlp-requests".to_owned())
            .spawn(move || worker.run(&queue, &wakeups))
            .map_err(BuildError::Thread)?;
        Ok(Self {
            sampling: config.sampling,
            records,
            control,
            pending,
            dropped,
            max_batch: options.max_batch.max(1),
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Sends what is queued and waits up to `timeout` for it to be posted.
    /// Returns whether it was.
    pub fn force_flush(&self, timeout: Duration) -> bool {
        self.request(Control::Flush, timeout)
    }

    /// Sends what is queued, stops the thread and waits up to `timeout`.
    /// Returns whether everything was posted in time.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let done = self.request(Control::Shutdown, timeout);
        if done {
            let thread = self.thread.lock().ok().and_then(|mut t| t.take());
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
        done
    }

    fn request(&self, control: fn(mpsc::Sender<()>) -> Control, timeout: Duration) -> bool {
        let started = Instant::now();
        let (reply, done) = mpsc::channel();
        let mut control = control(reply);
        // The control queue drains as the worker wakes; keep offering until
        // the deadline rather than blocking past it.
        loop {
            match self.control.try_send(control) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if started.elapsed() >= timeout {
                        return false;
                    }
                    control = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        done.recv_timeout(timeout.saturating_sub(started.elapsed()))
            .is_ok()
    }
}

impl RequestExport for RequestExporter {
    /// Queues `record`; drops it when the queue is full or the exporter
    /// has stopped.
    fn export(&self, record: RequestRecord) {
        match self.records.try_send(record) {
            Ok(()) => {
                if self.pending.fetch_add(1, Ordering::Relaxed) + 1 == self.max_batch {
                    let _ = self.control.try_send(Control::Full);
                }
            }
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The configured sampler's decision (`OTEL_TRACES_SAMPLER`), the one
    /// the SDK makes for every other span.
    fn sampled(&self, trace_id: &[u8; 16], parent_sampled: Option<bool>) -> bool {
        self.sampling.samples(trace_id, parent_sampled)
    }
}

struct Worker {
    traces: Endpoint,
    logs: Endpoint,
    resource: ExportResource,
    scope: InstrumentationScope,
    options: BatchOptions,
    pending: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    /// Told each post's outcome: failures are logged when they start and
    /// when they end, not once per batch.
    health: Arc<ExportHealth>,
    /// Records dropped on a full queue since it last had room, while it
    /// has none: logged when dropping starts and when it stops, like
    /// export failures.
    dropping: Option<u64>,
}

impl Worker {
    /// Sleeps until a batch is due, full, flushed or the exporter stops;
    /// then posts everything queued.
    fn run(mut self, queue: &Receiver<RequestRecord>, wakeups: &Receiver<Control>) {
        let mut batch: Vec<RequestRecord> = Vec::with_capacity(self.options.max_batch);
        let mut due = Instant::now() + self.options.delay;
        loop {
            let wait = due.saturating_duration_since(Instant::now());
            let woken = wakeups.recv_timeout(wait);
            self.drain(queue, &mut batch);
            due = Instant::now() + self.options.delay;
            match woken {
                Ok(Control::Full) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Control::Flush(reply)) => {
                    let _ = reply.send(());
                }
                Ok(Control::Shutdown(reply)) => {
                    let _ = reply.send(());
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Posts what is queued, a batch at a time: at most a queue's worth,
    /// so a steady stream cannot keep a flush waiting.
    fn drain(&mut self, queue: &Receiver<RequestRecord>, batch: &mut Vec<RequestRecord>) {
        self.pending.store(0, Ordering::Relaxed);
        let dropped = u64::try_from(self.dropped.swap(0, Ordering::Relaxed)).unwrap_or(u64::MAX);
        match (dropped, self.dropping) {
            (0, None) => {}
            (0, Some(total)) => {
                tracing::info!(
                    target: EXPORTER_LOG_TARGET,
                    dropped = total,
                    "request telemetry queue has room again"
                );
                self.dropping = None;
            }
            (n, None) => {
                tracing::warn!(
                    target: EXPORTER_LOG_TARGET,
                    "request telemetry queue full: records dropped until it has room \
                     (the collector is slower than the traffic); logged once, and again when it has"
                );
                self.dropping = Some(n);
            }
            (n, Some(total)) => self.dropping = Some(total + n),
        }
        for record in queue.try_iter().take(self.options.queue) {
            batch.push(record);
            if batch.len() >= self.options.max_batch {
                self.post(batch);
            }
        }
        self.post(batch);
    }

    /// Posts the batch's spans and log records, then empties it.
    fn post(&mut self, batch: &mut Vec<RequestRecord>) {
        if batch.is_empty() {
            return;
        }
        // An unsampled request has no span to send.
        let spans = batch
            .iter()
            .any(|r| r.sampled)
            .then(|| spans_payload(&self.resource, &self.scope, batch));
        let logs = logs_payload(&self.resource, &self.scope, batch);
        batch.clear();
        if let Some(spans) = spans {
            self.report(&self.traces, self.traces.post(spans));
        }
        self.report(&self.logs, self.logs.post(logs));
    }

    fn report(&self, endpoint: &Endpoint, outcome: Result<(), PostError>) {
        match outcome {
            Ok(()) => self.health.succeeded(endpoint.signal),
            Err(error) => self.health.failed(
                endpoint.signal,
                &endpoint.collector,
                error.failure,
                &error.detail,
            ),
        }
    }
}
