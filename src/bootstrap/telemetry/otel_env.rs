//! The standard OpenTelemetry exporter variables, resolved once at start-up
//! into what every exporter is built from: per signal, the URL, headers,
//! timeout and compression of its OTLP/HTTP requests; the sampler; and
//! the batch and export intervals.
//!
//! The settings (`config/`) own `OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SDK_DISABLED`;
//! everything else here is read from the raw environment the caller
//! passes, by the OpenTelemetry specification's rules:
//!
//! - A signal's own variable (`OTEL_EXPORTER_OTLP_TRACES_HEADERS`) wins
//!   over the generic one (`OTEL_EXPORTER_OTLP_HEADERS`), which wins over
//!   the default. A blank variable counts as unset.
//! - A signal's own endpoint is used as it is; the generic one is a base
//!   URL below which `/v1/traces`, `/v1/metrics` and `/v1/logs` are
//!   appended.
//! - Headers are `key=value` pairs separated by commas, values
//!   percent-decoded. Timeouts and intervals are milliseconds.
//!   Compression is `gzip` or `none`.
//!
//! An unusable value stops start-up with one line naming the variable, as
//! the rest of the configuration does; header values and URL credentials
//! never appear in it.

use std::collections::HashMap;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::adapters::otlp::sampling::{Root, Sampling};
use crate::adapters::otlp::sdk::Targets;
use crate::adapters::otlp::target::{Compression, Signal, SignalTarget};

/// Deadline of one export (retries included) unless
/// `OTEL_EXPORTER_OTLP[_{SIGNAL}]_TIMEOUT` says otherwise: a slow collector
/// costs an export thread this long at most, never a request (CONTRACT 8).
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long spans and log records wait in their batch, unless
/// `OTEL_BSP_SCHEDULE_DELAY` / `OTEL_BLRP_SCHEDULE_DELAY` say otherwise.
pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_secs(2);

/// How often metrics are pushed, unless `OTEL_METRIC_EXPORT_INTERVAL` says
/// otherwise (CONTRACT 8).
pub const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(15);

/// The only protocol chimney speaks.
const HTTP_PROTOBUF: &str = "http/protobuf";

/// Everything the exporters are built from.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelEnv {
    /// Where and how each signal is sent.
    pub targets: Targets,
    /// `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`.
    pub sampling: Sampling,
    /// `OTEL_BSP_SCHEDULE_DELAY`: the longest a span waits in its batch.
    pub span_delay: Duration,
    /// `OTEL_BLRP_SCHEDULE_DELAY`: the longest a log record waits.
    pub log_delay: Duration,
    /// `OTEL_METRIC_EXPORT_INTERVAL`.
    pub metric_interval: Duration,
}

/// A variable that cannot be used. Its display is one line naming the
/// variable; header values and URL credentials are never part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for {variable}: {problem}")]
pub struct OtelEnvError {
    /// The variable.
    pub variable: String,
    /// What is wrong, and what would be accepted.
    pub problem: String,
}

/// Every variable this module reads, for the README and the tests.
pub fn variables() -> Vec<String> {
    let mut names = Vec::new();
    for option in ["ENDPOINT", "HEADERS", "TIMEOUT", "COMPRESSION", "PROTOCOL"] {
        names.push(format!("OTEL_EXPORTER_OTLP_{option}"));
        for signal in Signal::ALL {
            names.push(signal_variable(signal, option));
        }
    }
    names.extend(
        [
            "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG",
            "OTEL_BSP_SCHEDULE_DELAY",
            "OTEL_BLRP_SCHEDULE_DELAY",
            "OTEL_METRIC_EXPORT_INTERVAL",
        ]
        .map(str::to_owned),
    );
    names
}

/// Resolves the variables of `env` (the process environment, or a test's),
/// with `base` the collector base URL the settings resolved from
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
///
/// # Errors
/// The first variable whose value cannot be used.
pub fn resolve(base: &Url, env: &HashMap<String, String>) -> Result<OtelEnv, OtelEnvError> {
    let env = Env(env);
    let target = |signal| env.target(base, signal);
    Ok(OtelEnv {
        targets: Targets {
            traces: target(Signal::Traces)?,
            metrics: target(Signal::Metrics)?,
            logs: target(Signal::Logs)?,
        },
        sampling: env.sampling()?,
        span_delay: env
            .millis("OTEL_BSP_SCHEDULE_DELAY")?
            .unwrap_or(DEFAULT_BATCH_DELAY),
        log_delay: env
            .millis("OTEL_BLRP_SCHEDULE_DELAY")?
            .unwrap_or(DEFAULT_BATCH_DELAY),
        metric_interval: env
            .millis("OTEL_METRIC_EXPORT_INTERVAL")?
            .unwrap_or(DEFAULT_METRIC_INTERVAL),
    })
}

/// `OTEL_EXPORTER_OTLP_{SIGNAL}_{option}`.
fn signal_variable(signal: Signal, option: &str) -> String {
    format!(
        "OTEL_EXPORTER_OTLP_{}_{option}",
        signal.name().to_ascii_uppercase()
    )
}

fn error(variable: &str, problem: impl Into<String>) -> OtelEnvError {
    OtelEnvError {
        variable: variable.to_owned(),
        problem: problem.into(),
    }
}

struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    /// A variable's trimmed value; blank counts as unset.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// The signal's own variable for `option` if set, else the generic one:
    /// (the variable that was used, its value).
    fn option(&self, signal: Signal, option: &str) -> Option<(String, &str)> {
        let own = signal_variable(signal, option);
        if let Some(value) = self.get(&own) {
            return Some((own, value));
        }
        let generic = format!("OTEL_EXPORTER_OTLP_{option}");
        self.get(&generic).map(|value| (generic, value))
    }

    fn target(&self, base: &Url, signal: Signal) -> Result<SignalTarget, OtelEnvError> {
        if let Some((variable, protocol)) = self.option(signal, "PROTOCOL")
            && protocol != HTTP_PROTOBUF
        {
            return Err(error(
                &variable,
                format!(
                    "{protocol:?} (chimney exports OTLP over HTTP with protobuf only: \
                     expected {HTTP_PROTOBUF})"
                ),
            ));
        }
        let own = signal_variable(signal, "ENDPOINT");
        let url = match self.get(&own) {
            Some(text) => endpoint(&own, text)?,
            None => below(base, signal),
        };
        let headers = match self.option(signal, "HEADERS") {
            Some((variable, text)) => headers(&variable, text)?,
            None => HeaderMap::new(),
        };
        let timeout = match self.option(signal, "TIMEOUT") {
            Some((variable, text)) => millis(&variable, text)?,
            None => DEFAULT_EXPORT_TIMEOUT,
        };
        let compression = match self.option(signal, "COMPRESSION") {
            Some((variable, text)) => compression(&variable, text)?,
            None => Compression::None,
        };
        Ok(SignalTarget {
            url,
            headers,
            timeout,
            compression,
        })
    }

    fn millis(&self, variable: &str) -> Result<Option<Duration>, OtelEnvError> {
        self.get(variable)
            .map(|text| millis(variable, text))
            .transpose()
    }

    fn sampling(&self) -> Result<Sampling, OtelEnvError> {
        const SAMPLER: &str = "OTEL_TRACES_SAMPLER";
        const ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
        let Some(name) = self.get(SAMPLER) else {
            return Ok(Sampling::default());
        };
        let ratio = || -> Result<f64, OtelEnvError> {
            let Some(text) = self.get(ARG) else {
                return Ok(1.0);
            };
            match text.parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
                _ => Err(error(
                    ARG,
                    format!("{text:?} (expected a sampling ratio from 0 to 1)"),
                )),
            }
        };
        let (root, parent_based) = match name.to_ascii_lowercase().as_str() {
            "always_on" => (Root::AlwaysOn, false),
            "always_off" => (Root::AlwaysOff, false),
            "traceidratio" => (Root::TraceIdRatio(ratio()?), false),
            "parentbased_always_on" => (Root::AlwaysOn, true),
            "parentbased_always_off" => (Root::AlwaysOff, true),
            "parentbased_traceidratio" => (Root::TraceIdRatio(ratio()?), true),
            _ => {
                return Err(error(
                    SAMPLER,
                    format!(
                        "{name:?} (expected always_on, always_off, traceidratio, \
                         parentbased_always_on, parentbased_always_off or \
                         parentbased_traceidratio)"
                    ),
                ));
            }
        };
        Ok(Sampling { root, parent_based })
    }
}

/// A signal's own endpoint: an http(s) URL, used as it is (a URL with no
/// path posts to `/`).
fn endpoint(variable: &str, text: &str) -> Result<Url, OtelEnvError> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(url),
        // The value may carry credentials: not repeated.
        _ => Err(error(variable, "expected an http:// or https:// URL")),
    }
}

/// `base` with `/v1/{signal}` appended to its path.
fn below(base: &Url, signal: Signal) -> Url {
    let mut url = base.clone();
    let path = format!("{}{}", base.path().trim_end_matches('/'), signal.path());
    url.set_path(&path);
    url
}

/// `key=value,key=value`, values percent-decoded; the values are marked
/// sensitive and never repeated in an error.
fn headers(variable: &str, text: &str) -> Result<HeaderMap, OtelEnvError> {
    let mut headers = HeaderMap::new();
    for (n, item) in text.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let position = n + 1;
        let Some((key, value)) = item.split_once('=') else {
            return Err(error(
                variable,
                format!(
                    "entry {position} is not key=value (expected comma-separated key=value pairs)"
                ),
            ));
        };
        let key = key.trim();
        let name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
            error(
                variable,
                format!("entry {position}: {key:?} is not a valid HTTP header name"),
            )
        })?;
        let decoded = percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| {
                error(
                    variable,
                    format!("the value of {name} is not percent-encoded UTF-8 text"),
                )
            })?;
        let mut value = HeaderValue::from_str(decoded.trim()).map_err(|_| {
            error(
                variable,
                format!("the value of {name} is not a valid HTTP header value"),
            )
        })?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

/// Milliseconds, above zero.
fn millis(variable: &str, text: &str) -> Result<Duration, OtelEnvError> {
    match text.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(error(
            variable,
            format!("{text:?} (expected a whole number of milliseconds above 0)"),
        )),
    }
}

fn compression(variable: &str, text: &str) -> Result<Compression, OtelEnvError> {
    match text.to_ascii_lowercase().as_str() {
        "gzip" => Ok(Compression::Gzip),
        "none" => Ok(Compression::None),
        _ => Err(error(variable, format!("{text:?} (expected gzip or none)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://collector:4318").expect("url")
    }

    fn resolved(vars: &[(&str, &str)]) -> Result<OtelEnv, OtelEnvError> {
        let env = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        resolve(&base(), &env)
    }

    fn ok(vars: &[(&str, &str)]) -> OtelEnv {
        resolved(vars).unwrap_or_else(|e| panic!("{vars:?}: {e}"))
    }

    fn header<'a>(target: &'a SignalTarget, name: &str) -> Option<&'a str> {
        target.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn without_variables_every_signal_goes_below_the_base_with_the_defaults() {
        let env = ok(&[]);
        for signal in Signal::ALL {
            let target = env.targets.of(signal);
            assert_eq!(
                target.url.as_str(),
                format!("http://collector:4318/v1/{signal}")
            );
            assert!(target.headers.is_empty());
            assert_eq!(target.timeout, DEFAULT_EXPORT_TIMEOUT);
            assert_eq!(target.compression, Compression::None);
        }
        assert_eq!(env.sampling, Sampling::default());
        assert_eq!(env.span_delay, DEFAULT_BATCH_DELAY);
        assert_eq!(env.log_delay, DEFAULT_BATCH_DELAY);
        assert_eq!(env.metric_interval, DEFAULT_METRIC_INTERVAL);
    }

    #[test]
    fn a_base_with_a_path_keeps_it_and_a_signal_endpoint_is_used_as_is() {
        let env = resolve(
            &Url::parse("https://otlp.example/prefix/").expect("url"),
            &HashMap::from([
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".to_owned(),
                    "http://traces:9999/custom/path".to_owned(),
                ),
                (
                    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT".to_owned(),
                    "http://logs:4318".to_owned(),
                ),
            ]),
        )
        .expect("resolves");
        assert_eq!(
            env.targets.traces.url.as_str(),
            "http://traces:9999/custom/path"
        );
        assert_eq!(env.targets.logs.url.as_str(), "http://logs:4318/");
        assert_eq!(
            env.targets.metrics.url.as_str(),
            "https://otlp.example/prefix/v1/metrics"
        );
    }

    #[test]
    fn a_signal_s_own_variable_wins_over_the_generic_one() {
        let env = ok(&[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Basic%20Z2VuZXJpYw==, x-scope-orgid = tenant-1 ,",
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
                "authorization=Bearer%20logs",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1500"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "10000"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", " "),
        ]);
        let t = &env.targets;
        assert_eq!(
            header(&t.traces, "authorization"),
            Some("Basic Z2VuZXJpYw==")
        );
        assert_eq!(header(&t.traces, "x-scope-orgid"), Some("tenant-1"));
        assert_eq!(
            header(&t.metrics, "authorization"),
            Some("Basic Z2VuZXJpYw==")
        );
        // The signal's own list replaces the generic one.
        assert_eq!(header(&t.logs, "authorization"), Some("Bearer logs"));
        assert_eq!(header(&t.logs, "x-scope-orgid"), None);
        assert!(t.logs.headers.values().all(HeaderValue::is_sensitive));

        assert_eq!(t.traces.timeout, Duration::from_millis(1500));
        assert_eq!(t.metrics.timeout, Duration::from_secs(10));
        assert_eq!(t.logs.timeout, Duration::from_millis(1500));

        assert_eq!(t.traces.compression, Compression::None);
        assert_eq!(t.metrics.compression, Compression::Gzip, "blank is unset");
        assert_eq!(t.logs.compression, Compression::Gzip);
    }

    #[test]
    fn every_sampler_of_the_specification_is_understood() {
        let sampling = |name: &str, arg: Option<&str>| {
            let mut vars = vec![("OTEL_TRACES_SAMPLER", name)];
            if let Some(arg) = arg {
                vars.push(("OTEL_TRACES_SAMPLER_ARG", arg));
            }
            ok(&vars).sampling
        };
        let s = |root, parent_based| Sampling { root, parent_based };
        assert_eq!(sampling("always_on", None), s(Root::AlwaysOn, false));
        assert_eq!(
            sampling("always_off", Some("0.3")),
            s(Root::AlwaysOff, false)
        );
        assert_eq!(
            sampling("traceidratio", Some("0.25")),
            s(Root::TraceIdRatio(0.25), false)
        );
        assert_eq!(
            sampling("traceidratio", None),
            s(Root::TraceIdRatio(1.0), false)
        );
        assert_eq!(
            sampling("parentbased_always_on", None),
            s(Root::AlwaysOn, true)
        );
        assert_eq!(
            sampling("parentbased_always_off", None),
            s(Root::AlwaysOff, true)
        );
        assert_eq!(
            sampling("ParentBased_TraceIdRatio", Some("0")),
            s(Root::TraceIdRatio(0.0), true)
        );
    }

    #[test]
    fn intervals_come_from_the_sdk_variables() {
        let env = ok(&[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "200"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ]);
        assert_eq!(env.span_delay, Duration::from_millis(100));
        assert_eq!(env.log_delay, Duration::from_millis(200));
        assert_eq!(env.metric_interval, Duration::from_millis(500));
    }

    #[test]
    fn unusable_values_name_their_variable_and_never_show_a_secret() {
        for (variable, value) in [
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3s"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "0"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "ftp://user:s3cr3t@collector/",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "bad header=s3cr3t"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "authorization=s3cr3t%00x",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=%ff%fes3cr3t"),
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ("OTEL_BSP_SCHEDULE_DELAY", "-1"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
        ] {
            let mut vars = vec![(variable, value)];
            if variable == "OTEL_TRACES_SAMPLER_ARG" {
                vars.push(("OTEL_TRACES_SAMPLER", "traceidratio"));
            }
            let error = resolved(&vars).expect_err(value);
            assert_eq!(error.variable, variable, "{error}");
            let line = error.to_string();
            assert!(
                line.starts_with(&format!("invalid value for {variable}: ")),
                "{line}"
            );
            assert!(!line.contains("s3cr3t"), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn the_one_supported_protocol_may_be_named() {
        let env = ok(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf"),
        ]);
        assert_eq!(env.targets.traces.url.path(), "/v1/traces");
    }

    #[test]
    fn the_readme_s_settings_table_names_every_variable() {
        let readme = include_str!("../../../README.md");
        let table = readme
            .split_once("### Settings")
            .and_then(|(_, rest)| rest.split_once("### Pointing"))
            .map(|(table, _)| table)
            .expect("README's Observability settings");
        for name in variables() {
            assert!(
                table.contains(&format!("`{name}`")),
                "README's Observability settings table does not name {name}"
            );
        }
    }

    #[test]
    fn every_variable_read_is_listed() {
        let names = variables();
        for expected in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_TRACES_SAMPLER_ARG",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected}");
        }
        assert_eq!(names.len(), 5 * 4 + 5);
    }
}
