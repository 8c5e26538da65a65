//! The chimney binary: load settings, start telemetry, serve until SIGTERM
//! or SIGINT, then flush telemetry (bounded) and exit.

use std::process::ExitCode;

use chimney::bootstrap::config::Settings;
use chimney::bootstrap::startup::Application;
use chimney::bootstrap::telemetry;

/// mimalloc instead of glibc malloc: the request path and the telemetry
/// pipeline allocate many small, short-lived objects across threads, which
/// glibc serves markedly slower (measured in bench/telemetry.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("chimney: {error}");
            return ExitCode::from(2);
        }
    };
    let guard = match telemetry::init(&settings.otel) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("chimney: cannot start telemetry: {error}");
            return ExitCode::from(2);
        }
    };
    log_configuration(&settings);
    let code = match run(settings, &guard).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "chimney stopped with an error"
            );
            ExitCode::FAILURE
        }
    };
    // Flushing blocks (at most telemetry::SHUTDOWN_DEADLINE): off the runtime.
    let _ = tokio::task::spawn_blocking(move || guard.shutdown()).await;
    code
}

/// The start-up line of CONTRACT 1: the mode, the repo or org and where
/// each non-default setting came from (names only, never values), plus a
/// warning when GitHub will be called without a token.
fn log_configuration(settings: &Settings) {
    let report = settings.startup_report();
    tracing::info!(
        mode = report.mode.name(),
        repo = report.mode.repo().map(tracing::field::display),
        org = report.mode.org(),
        settings = %report.provenance,
        "chimney configured"
    );
    if report.github_token_unset {
        tracing::warn!(
            "GITHUB_TOKEN is unset: GitHub is called unauthenticated, 60 requests an hour instead of 5,000"
        );
    }
}

async fn run(settings: Settings, telemetry: &telemetry::TelemetryGuard) -> anyhow::Result<()> {
    let app = Application::build(settings, telemetry.request_exporter()).await?;
    return_startup_memory();
    app.run_until_stopped(shutdown_signal()).await
}

/// Gives the pages that building the application used and freed (the
/// OpenAPI document's construction, configuration parsing, TLS roots)
/// back to the OS. mimalloc otherwise keeps freed pages until later
/// allocator activity purges them, which an idle server never has: about
/// 3 MiB of the resting footprint (BENCHMARKS.md, Footprint).
fn return_startup_memory() {
    // SAFETY: mi_collect only frees memory no live allocation uses; it is
    // safe to call at any time from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Completes on SIGTERM (how containers are stopped) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("stop signal received; draining requests");
}
