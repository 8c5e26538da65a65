//! [`ExportHealth`]: export failures are logged when they start and when
//! they stop, never once per export (CONTRACT 8).
//!
//! Every exporter (the SDK's span, log and metric exporters through
//! [`super::sdk::Reported`], and the request exporter) reports the outcome
//! of each export here. A failure is a *problem*: a collector (scheme, host
//! and port) failing in one way (no answer, an HTTP status, anything
//! else). The first signal to hit a problem logs one warning; other signals
//! hitting the same problem join it silently (at debug level), and when
//! the last of them succeeds again one line says it recovered, how long it
//! lasted and how many exports were lost. A first run with no collector
//! therefore logs one warning, not one per signal and per interval. A
//! signal failing in a new way (a 401 after the collector came back) is a
//! new problem with its own warning.
//!
//! The lines go to [`EXPORTER_LOG_TARGET`], which is never exported: it
//! would report a failing collector to that same collector. They name the
//! collector and the signal, never a URL's credentials or a header.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};

use super::target::Signal;

/// The `tracing` target of the exporters' own lines; never exported.
pub const EXPORTER_LOG_TARGET: &str = "chimney::otlp";

/// How an export failed, as far as grouping failures goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// No HTTP answer: the connection was refused or broke, the name did
    /// not resolve, or the deadline passed.
    NoAnswer,
    /// The collector answered with this non-2xx status.
    Status(u16),
    /// Anything else (a payload that could not be encoded or compressed).
    Other,
}

impl Failure {
    /// The failure `error` of an SDK exporter stands for; `None` for
    /// [`OTelSdkError::AlreadyShutdown`] (an export after shutdown is not
    /// the collector's fault).
    ///
    /// `opentelemetry-otlp` reports failures as text: "HTTP export failed
    /// with status code: 401", "HTTP export failed: network error" (a
    /// timeout included); tests pin both.
    pub fn of_sdk(error: &OTelSdkError) -> Option<Self> {
        match error {
            OTelSdkError::AlreadyShutdown => None,
            OTelSdkError::Timeout(_) => Some(Self::NoAnswer),
            OTelSdkError::InternalFailure(message) => Some(Self::of_message(message)),
        }
    }

    fn of_message(message: &str) -> Self {
        if let Some((_, code)) = message.rsplit_once("status code: ")
            && let Ok(status) = code.trim().parse()
        {
            return Self::Status(status);
        }
        if message.contains("network error") {
            Self::NoAnswer
        } else {
            Self::Other
        }
    }

    /// What the warning says about it.
    fn describe(self, detail: &str) -> String {
        match self {
            Self::NoAnswer => {
                "no answer from the collector (connection refused or broken, unknown host, or timed out)"
                    .to_owned()
            }
            Self::Status(status @ (401 | 403)) => format!(
                "the collector answered HTTP {status} (check OTEL_EXPORTER_OTLP_HEADERS or the signal's own _HEADERS)"
            ),
            Self::Status(404) => "the collector answered HTTP 404 (check the endpoint's path)".to_owned(),
            Self::Status(status) => format!("the collector answered HTTP {status}"),
            Self::Other => detail.to_owned(),
        }
    }
}

/// A collector failing in one way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Problem {
    collector: String,
    failure: Failure,
}

/// A problem while it lasts.
#[derive(Debug)]
struct Ongoing {
    since: Instant,
    signals: BTreeSet<Signal>,
    failed_exports: u64,
}

#[derive(Debug, Default)]
struct State {
    /// The problem each failing signal has.
    failing: HashMap<Signal, Problem>,
    ongoing: HashMap<Problem, Ongoing>,
}

/// Turns export outcomes into state-change log lines. Shared by every
/// exporter of the process.
#[derive(Debug, Default)]
pub struct ExportHealth {
    state: Mutex<State>,
}

impl ExportHealth {
    /// A reporter with nothing failing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the outcome of an SDK exporter's export of `signal` to
    /// `collector`.
    pub fn report(&self, signal: Signal, collector: &str, result: &OTelSdkResult) {
        match result {
            Ok(()) => self.succeeded(signal),
            Err(error) => {
                if let Some(failure) = Failure::of_sdk(error) {
                    self.failed(signal, collector, failure, &error.to_string());
                }
            }
        }
    }

    /// Records a successful export of `signal`.
    pub fn succeeded(&self, signal: Signal) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(problem) = state.failing.remove(&signal) {
            state.leave(signal, &problem, true);
        }
    }

    /// Records a failed export of `signal` to `collector`; `detail` is the
    /// error's text, shown only for [`Failure::Other`].
    pub fn failed(&self, signal: Signal, collector: &str, failure: Failure, detail: &str) {
        let problem = Problem {
            collector: collector.to_owned(),
            failure,
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.failing.get(&signal) == Some(&problem) {
            if let Some(ongoing) = state.ongoing.get_mut(&problem) {
                ongoing.failed_exports += 1;
            }
            return;
        }
        if let Some(previous) = state.failing.insert(signal, problem.clone()) {
            state.leave(signal, &previous, false);
        }
        match state.ongoing.get_mut(&problem) {
            Some(ongoing) => {
                ongoing.signals.insert(signal);
                ongoing.failed_exports += 1;
                tracing::debug!(
                    target: EXPORTER_LOG_TARGET,
                    signal = signal.name(),
                    collector,
                    "OTLP export of another signal failing the same way"
                );
            }
            None => {
                tracing::warn!(
                    target: EXPORTER_LOG_TARGET,
                    signal = signal.name(),
                    collector,
                    error = %failure.describe(detail),
                    "OTLP export failing: telemetry is dropped until the collector accepts it; \
                     logged once, and again when it recovers"
                );
                state.ongoing.insert(
                    problem,
                    Ongoing {
                        since: Instant::now(),
                        signals: BTreeSet::from([signal]),
                        failed_exports: 1,
                    },
                );
            }
        }
    }

    /// Whether any signal is failing now.
    pub fn is_failing(&self) -> bool {
        !self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failing
            .is_empty()
    }
}

impl State {
    /// `signal` no longer has `problem`: it `recovered`, or now fails
    /// another way. The problem ends with its last signal.
    fn leave(&mut self, signal: Signal, problem: &Problem, recovered: bool) {
        let over = self.failing.values().all(|p| p != problem);
        if !over {
            return;
        }
        let Some(ongoing) = self.ongoing.remove(problem) else {
            return;
        };
        let signals = ongoing
            .signals
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(",");
        let failed_for_s = ongoing.since.elapsed().as_secs();
        if recovered {
            tracing::info!(
                target: EXPORTER_LOG_TARGET,
                collector = %problem.collector,
                signals,
                failed_exports = ongoing.failed_exports,
                failed_for_s,
                "OTLP export recovered"
            );
        } else {
            tracing::info!(
                target: EXPORTER_LOG_TARGET,
                collector = %problem.collector,
                signals,
                failed_exports = ongoing.failed_exports,
                failed_for_s,
                now_failing = signal.name(),
                "OTLP export no longer failing that way; see the next warning"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::Subscriber;
    use tracing::field::{Field, Visit};
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::{Context, SubscriberExt as _};

    use super::*;

    /// (level, message) of every line logged.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<(tracing::Level, String)>>>);

    impl<S: Subscriber> Layer<S> for Lines {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            struct Message(String);
            impl Visit for Message {
                fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                    if field.name() == "message" {
                        self.0 = format!("{value:?}");
                    }
                }
            }
            if *event.metadata().level() > tracing::Level::INFO {
                return;
            }
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0
                .lock()
                .expect("lines")
                .push((*event.metadata().level(), message.0));
        }
    }

    fn logged(run: impl FnOnce(&ExportHealth)) -> Vec<(tracing::Level, String)> {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry().with(lines.clone());
        let health = ExportHealth::new();
        tracing::subscriber::with_default(subscriber, || run(&health));
        lines.0.lock().expect("lines").clone()
    }

    fn levels(lines: &[(tracing::Level, String)]) -> Vec<tracing::Level> {
        lines.iter().map(|(level, _)| *level).collect()
    }

    const COLLECTOR: &str = "http://localhost:4318";

    #[test]
    fn an_absent_collector_is_one_warning_for_every_signal_and_interval_and_one_recovery() {
        let lines = logged(|h| {
            for _ in 0..20 {
                for signal in Signal::ALL {
                    h.failed(signal, COLLECTOR, Failure::NoAnswer, "network error");
                }
            }
            assert!(h.is_failing());
            h.succeeded(Signal::Metrics);
            h.succeeded(Signal::Traces);
            h.succeeded(Signal::Logs);
            h.succeeded(Signal::Logs);
            assert!(!h.is_failing());
        });
        assert_eq!(
            levels(&lines),
            [tracing::Level::WARN, tracing::Level::INFO],
            "{lines:?}"
        );
        assert!(lines[1].1.contains("recovered"), "{lines:?}");
    }

    #[test]
    fn successes_alone_log_nothing() {
        let lines = logged(|h| {
            for signal in Signal::ALL {
                h.succeeded(signal);
            }
        });
        assert!(lines.is_empty(), "{lines:?}");
    }

    #[test]
    fn a_new_way_of_failing_is_warned_about_and_a_second_collector_too() {
        let lines = logged(|h| {
            h.failed(Signal::Traces, COLLECTOR, Failure::NoAnswer, "");
            h.failed(Signal::Traces, COLLECTOR, Failure::Status(401), "");
            h.failed(Signal::Logs, "http://logs:4318", Failure::NoAnswer, "");
            h.failed(Signal::Logs, "http://logs:4318", Failure::NoAnswer, "");
            h.succeeded(Signal::Traces);
            h.succeeded(Signal::Logs);
        });
        assert_eq!(
            levels(&lines),
            [
                tracing::Level::WARN,
                tracing::Level::INFO, // no longer "no answer"
                tracing::Level::WARN, // 401
                tracing::Level::WARN, // the logs collector
                tracing::Level::INFO, // traces recovered
                tracing::Level::INFO, // logs recovered
            ],
            "{lines:?}"
        );
    }

    #[test]
    fn sdk_errors_are_classified_by_what_opentelemetry_otlp_says() {
        let failure =
            |message: &str| Failure::of_sdk(&OTelSdkError::InternalFailure(message.to_owned()));
        assert_eq!(
            failure("HTTP export failed with status code: 401"),
            Some(Failure::Status(401))
        );
        assert_eq!(
            failure("HTTP export failed: network error"),
            Some(Failure::NoAnswer)
        );
        assert_eq!(failure("gzip failed"), Some(Failure::Other));
        assert_eq!(Failure::of_sdk(&OTelSdkError::AlreadyShutdown), None);
    }
}
