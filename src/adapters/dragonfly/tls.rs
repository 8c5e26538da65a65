//! What a `rediss://` connection trusts ([`TlsTrust`]), and the redis
//! client built with it, shared by the pool and the pub/sub listener.
//!
//! The contract: trust the system's roots *plus* the PEM bundle named by
//! `SSL_CERT_FILE`, so a private CA needs no new setting. Neither library
//! does "plus" on its own: rustls-native-certs reads `SSL_CERT_FILE`
//! *instead of* the system store, and redis replaces its default roots with
//! any it is given. So the union is gathered here and handed to redis.
//!
//! The handshake runs on rustls with the ring provider, the TLS stack
//! reqwest already uses. Certificates are always verified: the
//! `rediss://…#insecure` form is refused rather than silently accepted.
//!
//! The roots are gathered once per client; redis clones them into each new
//! connection. (Its `tls-rustls-webpki-roots` feature is on only so that it
//! does not also load the system store per connection and then discard it.)

use std::path::{Path, PathBuf};

use base64::Engine as _;
use deadpool_redis::redis::{Client, TlsCertificates};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use url::Url;

use super::error::{Error, redacted};

/// The variable naming an extra CA bundle, read as OpenSSL and curl read
/// it (a PEM file of any number of certificates).
pub const CA_BUNDLE_VAR: &str = "SSL_CERT_FILE";

/// The certificate authorities a `rediss://` connection accepts: the
/// system's roots, plus every certificate in an optional PEM bundle.
///
/// Creating one reads nothing; the files are read when a TLS client is
/// built (once per pool and once per listener, at start-up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsTrust {
    extra_bundle: Option<PathBuf>,
}

impl TlsTrust {
    /// The system's roots only.
    pub fn system() -> Self {
        Self::default()
    }

    /// The system's roots plus every certificate in the PEM file `bundle`.
    pub fn system_and(bundle: impl Into<PathBuf>) -> Self {
        Self {
            extra_bundle: Some(bundle.into()),
        }
    }

    /// What the environment asks for: the system's roots plus the bundle
    /// [`CA_BUNDLE_VAR`] names, when it is set and not empty.
    pub fn from_env() -> Self {
        match std::env::var_os(CA_BUNDLE_VAR) {
            Some(path) if !path.is_empty() => Self::system_and(path),
            _ => Self::system(),
        }
    }

    /// The extra bundle, if any.
    pub fn extra_bundle(&self) -> Option<&Path> {
        self.extra_bundle.as_deref()
    }

    /// Every trusted certificate, PEM-encoded: the form redis takes.
    fn roots_pem(&self) -> Result<Vec<u8>, TrustError> {
        let mut certs = system_roots();
        if let Some(path) = &self.extra_bundle {
            certs.extend(read_bundle(path)?);
        }
        if certs.is_empty() {
            return Err(TrustError::NoRoots);
        }
        certs.sort_unstable_by(|a, b| a.as_ref().cmp(b.as_ref()));
        certs.dedup();
        Ok(pem(&certs))
    }
}

/// Why the trusted certificates could not be gathered.
#[derive(Debug, thiserror::Error)]
pub(super) enum TrustError {
    #[error("cannot read the CA bundle {} ({CA_BUNDLE_VAR})", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: rustls_native_certs::Error,
    },
    #[error("the CA bundle {} ({CA_BUNDLE_VAR}) holds no PEM certificate", path.display())]
    Empty { path: PathBuf },
    #[error("the CA bundle {} ({CA_BUNDLE_VAR}) holds a certificate rustls cannot use as a root", path.display())]
    Unusable {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "no CA certificate to trust: the system has none (install ca-certificates) and {CA_BUNDLE_VAR} is not set"
    )]
    NoRoots,
}

/// A redis client for `url`. A `rediss://` client verifies the server
/// against `trust`, whose files are read now; other URLs ignore it.
///
/// # Errors
/// [`Error::Config`] when `url` is not a usable Redis URL, asks for an
/// unverified connection (`#insecure`), or the trusted certificates cannot
/// be read. The message never contains the URL's password.
pub(super) fn client(url: &Url, trust: &TlsTrust) -> Result<Client, Error> {
    let config_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Config {
        url: redacted(url),
        source,
    };
    if !is_tls(url) {
        return Client::open(url.as_str()).map_err(|err| config_error(Box::new(err)));
    }
    if url.fragment().is_some() {
        // redis reads `#insecure` as "skip certificate checks"; chimney
        // never does that, and says so instead of failing at connect time.
        return Err(config_error(
            "a rediss:// URL takes no #fragment: the certificate is always verified (trust a private CA with SSL_CERT_FILE)".into(),
        ));
    }
    // redis builds its rustls config on the process-wide provider; ring is
    // the one compiled in (a second install is a harmless no-op).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let roots = trust
        .roots_pem()
        .map_err(|err| config_error(Box::new(err)))?;
    Client::build_with_tls(
        url.as_str(),
        TlsCertificates {
            client_tls: None,
            root_cert: Some(roots),
        },
    )
    .map_err(|err| config_error(Box::new(err)))
}

/// Whether redis connects to `url` over TLS (it also knows `valkeys://`).
fn is_tls(url: &Url) -> bool {
    matches!(url.scheme(), "rediss" | "valkeys")
}

/// The system's roots, whatever `SSL_CERT_FILE` says. Here (Linux, the
/// BSDs) that is the distribution's certificate directories, read directly:
/// what rustls-native-certs reads when the variable is unset, and which it
/// would skip when it is set.
#[cfg(all(unix, not(target_os = "macos")))]
fn system_roots() -> Vec<CertificateDer<'static>> {
    let mut certs = Vec::new();
    for dir in openssl_probe::candidate_cert_dirs() {
        let loaded = rustls_native_certs::load_certs_from_paths(None, Some(dir));
        report_skipped(&loaded.errors);
        certs.extend(loaded.certs);
    }
    usable_roots(certs)
}

/// The platform's store. Here rustls-native-certs lets `SSL_CERT_FILE`
/// replace it, so with the variable set only the bundle is trusted.
#[cfg(not(all(unix, not(target_os = "macos"))))]
fn system_roots() -> Vec<CertificateDer<'static>> {
    let loaded = rustls_native_certs::load_native_certs();
    report_skipped(&loaded.errors);
    usable_roots(loaded.certs)
}

/// Drops the certificates rustls cannot take as roots: redis refuses the
/// whole set over a single one, and system stores hold the odd legacy
/// certificate (other rustls users skip them the same way).
fn usable_roots(certs: Vec<CertificateDer<'static>>) -> Vec<CertificateDer<'static>> {
    let total = certs.len();
    let usable: Vec<_> = certs
        .into_iter()
        .filter(|cert| RootCertStore::empty().add(cert.clone()).is_ok())
        .collect();
    if usable.len() < total {
        tracing::debug!(
            skipped = total - usable.len(),
            "system CA certificates rustls cannot use were skipped"
        );
    }
    usable
}

fn report_skipped(errors: &[rustls_native_certs::Error]) {
    for error in errors {
        tracing::warn!(%error, "part of the system's CA certificates could not be read");
    }
}

/// The certificates of the PEM file at `path`, all of them usable as roots.
fn read_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let loaded = rustls_native_certs::load_certs_from_paths(Some(path), None);
    if let Some(source) = loaded.errors.into_iter().next() {
        return Err(TrustError::Unreadable {
            path: path.to_owned(),
            source,
        });
    }
    if loaded.certs.is_empty() {
        return Err(TrustError::Empty {
            path: path.to_owned(),
        });
    }
    for cert in &loaded.certs {
        RootCertStore::empty()
            .add(cert.clone())
            .map_err(|source| TrustError::Unusable {
                path: path.to_owned(),
                source,
            })?;
    }
    Ok(loaded.certs)
}

/// `certs` as one PEM bundle.
fn pem(certs: &[CertificateDer<'_>]) -> Vec<u8> {
    let mut out = String::new();
    for cert in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let body = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        // 64 columns, as RFC 7468 writers do; base64 is ASCII, so the
        // byte chunks are whole characters.
        for line in body.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use rustls::pki_types::pem::PemObject as _;

    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("valid URL")
    }

    fn config_message(err: Error) -> String {
        let Error::Config { url, source } = err else {
            panic!("expected a configuration error, got {err:?}");
        };
        format!("{url}: {source}")
    }

    #[test]
    fn pem_round_trips_through_the_parser_redis_uses() {
        let certs = vec![
            CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
            CertificateDer::from((0..=255u8).collect::<Vec<_>>()),
        ];
        let text = pem(&certs);
        let parsed = CertificateDer::pem_slice_iter(&text)
            .collect::<Result<Vec<_>, _>>()
            .expect("valid PEM");
        assert_eq!(parsed, certs);
        let longest = String::from_utf8(text)
            .expect("ASCII")
            .lines()
            .map(str::len)
            .max();
        assert_eq!(longest, Some(64));
    }

    #[test]
    fn a_plain_url_needs_no_certificates() {
        // Even a bundle that does not exist is never read for redis://.
        let trust = TlsTrust::system_and("/nonexistent/ca.pem");
        client(&url("redis://127.0.0.1:6379/3"), &trust).expect("client builds");
    }

    #[test]
    fn a_missing_bundle_is_named_and_the_password_is_not() {
        let trust = TlsTrust::system_and("/nonexistent/ca.pem");
        let err = client(&url("rediss://:hunter2@cache:6380"), &trust).expect_err("refused");
        let message = config_message(err);
        assert!(message.contains("/nonexistent/ca.pem"), "{message}");
        assert!(message.contains("SSL_CERT_FILE"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(b"not a certificate\n").expect("write");
        let trust = TlsTrust::system_and(file.path());
        let err = client(&url("rediss://cache:6380"), &trust).expect_err("refused");
        assert!(
            config_message(err).contains("holds no PEM certificate"),
            "empty bundle accepted"
        );
    }

    #[test]
    fn insecure_urls_are_refused() {
        let err = client(
            &url("rediss://:hunter2@cache:6380/#insecure"),
            &TlsTrust::system(),
        )
        .expect_err("refused");
        let message = config_message(err);
        assert!(message.contains("always verified"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}
