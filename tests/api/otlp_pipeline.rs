//! The one telemetry pipeline of this test binary, exporting to an OTLP
//! sink (`chimney_testkit::otlp`) that keeps what it receives.
//!
//! The pipeline is process-global (a global `tracing` subscriber and global
//! providers), so it is installed once, before any app is built, from the
//! suite's `TRACING` initialiser; every app of the run exports to the same
//! collector, and tests tell their own records apart by trace id.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chimney::bootstrap::config::OtelSettings;
use chimney::bootstrap::telemetry::{self, LogOutput, TelemetryGuard, TelemetryOptions};
use chimney::ports::RequestExport;
use chimney_testkit::otlp::{Mode, OtlpSink};

/// The `service.name` the suite's pipeline reports.
pub const TEST_SERVICE_NAME: &str = "chimney-test";

/// How long a test waits for its telemetry to reach the collector.
pub const ARRIVAL_DEADLINE: Duration = Duration::from_secs(20);

/// The suite's telemetry pipeline and the collector it exports to.
pub struct Pipeline {
    /// Where everything is exported.
    pub collector: OtlpSink,
    /// `None` when another global subscriber was installed first (the
    /// pipeline then exports nothing and the telemetry tests say so).
    guard: Option<TelemetryGuard>,
}

static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

/// Installs the pipeline once (JSON logs quiet unless `TEST_LOG` is set,
/// short export batches) and returns it.
pub fn pipeline() -> &'static Pipeline {
    PIPELINE.get_or_init(|| {
        let collector = OtlpSink::start(Mode::Keep);
        let settings = OtelSettings {
            endpoint: url::Url::parse(&collector.base_url).expect("collector URL"),
            service_name: TEST_SERVICE_NAME.to_owned(),
            resource_attributes: vec![("deployment.slot".to_owned(), "test".to_owned())],
            disabled: false,
        };
        let options = TelemetryOptions {
            log_output: if std::env::var_os("TEST_LOG").is_some() {
                LogOutput::TestWriter
            } else {
                LogOutput::Sink
            },
            // Short batches, set the standard way.
            environment: [
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
                ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..TelemetryOptions::default()
        };
        let guard = telemetry::init_with(&settings, &options).ok();
        Pipeline { collector, guard }
    })
}

/// Where an app spawned now exports its request records: the suite's
/// pipeline once it is installed, else nowhere.
pub fn installed_request_exporter() -> Option<Arc<dyn RequestExport>> {
    PIPELINE
        .get()
        .and_then(|pipeline| pipeline.guard.as_ref())
        .and_then(TelemetryGuard::request_exporter)
}

impl Pipeline {
    /// Whether spans, metrics and logs are being exported to the collector.
    pub fn is_exporting(&self) -> bool {
        self.guard
            .as_ref()
            .is_some_and(TelemetryGuard::is_exporting)
    }

    /// Pushes everything recorded so far to the collector (metrics
    /// included, instead of waiting for the 15 s interval).
    pub async fn flush(&'static self) {
        if let Some(guard) = &self.guard {
            let _ = tokio::task::spawn_blocking(move || guard.force_flush()).await;
        }
    }

    /// Flushes and polls `probe` until it yields, or [`ARRIVAL_DEADLINE`]
    /// passes.
    pub async fn eventually<T>(&'static self, probe: impl Fn(&OtlpSink) -> Option<T>) -> Option<T> {
        let started = Instant::now();
        loop {
            self.flush().await;
            if let Some(found) = probe(&self.collector) {
                return Some(found);
            }
            if started.elapsed() > ARRIVAL_DEADLINE {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
