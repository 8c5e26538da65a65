//! Where and how each signal is sent: the URL, headers, timeout and
//! compression of its OTLP/HTTP requests ([`SignalTarget`], resolved from
//! the standard `OTEL_EXPORTER_OTLP_*` variables at start-up), and the
//! blocking HTTP client every exporter posts through ([`OtlpHttpClient`]),
//! `opentelemetry-otlp`'s and the request exporter alike.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use reqwest::header::HeaderMap;
use url::Url;

/// One of the three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metric points.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// Every signal, in the order they are reported.
    pub const ALL: [Self; 3] = [Self::Traces, Self::Metrics, Self::Logs];

    /// `traces`, `metrics` or `logs`: the OTLP name, as in
    /// `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_*` and `/v1/{signal}`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
        }
    }

    /// The path appended to a base endpoint: `/v1/traces`, ….
    pub fn path(self) -> &'static str {
        match self {
            Self::Traces => "/v1/traces",
            Self::Metrics => "/v1/metrics",
            Self::Logs => "/v1/logs",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How request bodies are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Sent as they are.
    #[default]
    None,
    /// `Content-Encoding: gzip`.
    Gzip,
}

/// Where and how one signal is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct SignalTarget {
    /// The URL every request of the signal is posted to (already
    /// complete: `/v1/{signal}` is appended during resolution when it
    /// comes from the base endpoint).
    pub url: Url,
    /// Headers added to every request (a collector's credentials). Their
    /// values are marked sensitive and never printed.
    pub headers: HeaderMap,
    /// Deadline of one export, retries included.
    pub timeout: Duration,
    /// Body compression.
    pub compression: Compression,
}

impl SignalTarget {
    /// `url` with no extra headers, the given timeout and no compression.
    pub fn plain(url: Url, timeout: Duration) -> Self {
        Self {
            url,
            headers: HeaderMap::new(),
            timeout,
            compression: Compression::None,
        }
    }

    /// The collector as log messages name it: scheme, host and port, never
    /// credentials, path or query.
    pub fn collector(&self) -> String {
        let url = &self.url;
        match (url.host_str(), url.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
            (Some(host), None) => format!("{}://{host}", url.scheme()),
            _ => url.scheme().to_owned(),
        }
    }
}

impl fmt::Debug for SignalTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header names only: their values are credentials.
        f.debug_struct("SignalTarget")
            .field("url", &self.url.as_str())
            .field(
                "headers",
                &self.headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .finish()
    }
}

/// Why an exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The HTTP client could not be built.
    #[error("cannot build the OTLP HTTP client: {0}")]
    Client(String),
    /// `opentelemetry-otlp` refused the configuration.
    #[error("cannot build the OTLP {signal} exporter")]
    Exporter {
        /// The signal.
        signal: Signal,
        /// Its complaint.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The request exporter's thread could not be started.
    #[error("cannot start the OTLP request exporter thread")]
    Thread(#[source] std::io::Error),
}

/// The blocking HTTP clients of the exporters, one per distinct timeout
/// (reqwest's blocking client keeps a thread of its own: usually all three
/// signals share one).
#[derive(Debug, Default)]
pub struct HttpClients {
    by_timeout: HashMap<Duration, reqwest::blocking::Client>,
}

impl HttpClients {
    /// The client for `target`, with the target's headers.
    ///
    /// # Errors
    /// Fails when the HTTP client cannot be built.
    pub fn for_target(&mut self, target: &SignalTarget) -> Result<OtlpHttpClient, BuildError> {
        let client = match self.by_timeout.get(&target.timeout) {
            Some(client) => client.clone(),
            None => {
                let client = blocking_client(target.timeout)?;
                self.by_timeout.insert(target.timeout, client.clone());
                client
            }
        };
        Ok(OtlpHttpClient {
            client,
            headers: Arc::new(target.headers.clone()),
        })
    }
}

/// A blocking client bounded by `timeout`. Built on a thread of its own: a
/// blocking reqwest client cannot be created inside the async runtime that
/// start-up runs on.
fn blocking_client(timeout: Duration) -> Result<reqwest::blocking::Client, BuildError> {
    // reqwest is built without a default crypto provider (as for GitHub);
    // an https collector needs ring installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::thread::Builder::new()
        .name("chimney-otlp-client".to_owned())
        .spawn(move || {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .user_agent(concat!("chimney/", env!("CARGO_PKG_VERSION")))
                .build()
        })
        .map_err(|error| BuildError::Client(error.to_string()))?
        .join()
        .map_err(|_| BuildError::Client("the client thread panicked".to_owned()))?
        .map_err(|error| BuildError::Client(error.without_url().to_string()))
}

/// A signal's HTTP client: reqwest's blocking client plus the signal's
/// configured headers, set on every request (over any of the same name).
///
/// `opentelemetry-otlp` is given this client rather than the headers:
/// its `with_headers` percent-decodes values a second time, and the
/// headers here are already decoded.
#[derive(Clone)]
pub struct OtlpHttpClient {
    client: reqwest::blocking::Client,
    headers: Arc<HeaderMap>,
}

impl fmt::Debug for OtlpHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpHttpClient")
            .field(
                "headers",
                &self.headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl OtlpHttpClient {
    /// The underlying client.
    pub(crate) fn reqwest(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    /// The configured headers.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        for (name, value) in self.headers.iter() {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        HttpClient::send_bytes(&self.client, request).await
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderName, HeaderValue};

    use super::*;

    #[test]
    fn the_collector_is_named_without_credentials_path_or_query() {
        let target = SignalTarget::plain(
            Url::parse("https://user:pass@collector.example/otlp/v1/traces?token=x").expect("url"),
            Duration::from_secs(1),
        );
        assert_eq!(target.collector(), "https://collector.example:443");
    }

    #[test]
    fn debug_output_names_headers_but_never_shows_their_values() {
        let mut target = SignalTarget::plain(
            Url::parse("http://127.0.0.1:4318/v1/logs").expect("url"),
            Duration::from_secs(1),
        );
        let mut secret = HeaderValue::from_static("Bearer s3cr3t");
        secret.set_sensitive(true);
        target
            .headers
            .insert(HeaderName::from_static("authorization"), secret);
        let text = format!("{target:?}");
        assert!(text.contains("authorization"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
