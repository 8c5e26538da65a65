//! Turning configuration text into typed values, one setting at a time.
//!
//! Each parser takes the text as given (from any layer) and returns the
//! typed value or what it expected, in words fit for the one-line start-up
//! error; the loader adds the key, the origin and the value.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use percent_encoding::percent_decode_str;
use url::Url;

use crate::domain::{PatternError, RepoName, TtlPolicy, TtlRule};

use super::sources::RawTtlRule;

/// What a parser expected, for the error message.
pub(super) type Expected = &'static str;

/// Why a setting's value was refused. When only part of the value is at
/// fault (one item of a list, one rule's duration), that part is named, so
/// the message points at it rather than at the whole value.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) expected: Expected,
    /// The offending part of the value, when not the whole of it.
    pub(super) part: Option<String>,
    /// Where in the setting the part sits, appended to its key: `[1].duration`.
    pub(super) at: Option<String>,
}

impl Refusal {
    /// One part of the value is at fault.
    pub(super) fn part(part: &str, expected: Expected) -> Self {
        Self {
            expected,
            part: Some(part.to_owned()),
            at: None,
        }
    }
}

impl From<Expected> for Refusal {
    fn from(expected: Expected) -> Self {
        Self {
            expected,
            part: None,
            at: None,
        }
    }
}

/// `IP:PORT`; also Go's `:PORT` (all interfaces), which the original
/// chimney's deployments may still set.
pub(super) fn addr(text: &str) -> Result<SocketAddr, Expected> {
    const EXPECTED: Expected = "expected IP:PORT, e.g. 0.0.0.0:8080";
    let text = text.trim();
    if let Some(port) = text.strip_prefix(':') {
        let port = port.parse::<u16>().map_err(|_| EXPECTED)?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    text.parse().map_err(|_| EXPECTED)
}

/// A directory path; only emptiness is checked, since the directory may
/// legitimately appear after start-up (a volume mount).
pub(super) fn docs(text: &str) -> Result<std::path::PathBuf, Expected> {
    let text = text.trim();
    if text.is_empty() {
        return Err("expected a directory path");
    }
    Ok(text.into())
}

/// `owner/name`, by the domain's rules.
pub(super) fn repo(text: &str) -> Result<RepoName, Expected> {
    RepoName::parse(text.trim()).map_err(
        |_| "expected owner/name with exactly one '/' and only letters, digits, '-', '_' or '.'",
    )
}

/// A GitHub organisation login; empty means no org mode. The login ends
/// up in an upstream URL path, so only login characters are accepted.
pub(super) fn org(text: &str) -> Result<Option<String>, Expected> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(Some(text.to_owned()))
    } else {
        Err("expected a GitHub organisation login (letters, digits, '-' or '_')")
    }
}

/// A `redis://` or `rediss://` URL; empty means in-memory only.
///
/// An `@` the parser did not take as the end of the credentials means a
/// password holding an unencoded `/`, `?`, `#` or `@`: the URL would
/// connect somewhere else and carry the secret in its path, so it is
/// refused (and [`shown`] masks it in the message).
pub(super) fn redis(text: &str) -> Result<Option<Url>, Expected> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match Url::parse(text) {
        Ok(url) if text.contains('@') && url.username().is_empty() && url.password().is_none() => {
            Err(
                "expected a redis:// or rediss:// URL; percent-encode '/', '?', '#' and '@' in the password",
            )
        }
        Ok(url) if matches!(url.scheme(), "redis" | "rediss") && url.has_host() => Ok(Some(url)),
        _ => Err("expected a redis:// or rediss:// URL, or an empty value for in-memory only"),
    }
}

/// Whether a URL's host is this machine: `localhost`, `127.0.0.0/8` or
/// `::1`.
pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name.to_ascii_lowercase().ends_with(".localhost")
        }
        None => false,
    }
}

/// A percentage, 0 to 100.
pub(super) fn percent(text: &str) -> Result<u8, Expected> {
    match text.trim().parse::<u8>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err("expected a whole percentage from 0 to 100"),
    }
}

/// What a `proxy_paths` item should have looked like.
pub(super) fn pattern_expected(error: &PatternError) -> Expected {
    match error {
        PatternError::NotAbsolute => "expected a path pattern starting with '/', e.g. /pulls/*",
        PatternError::MisplacedRest => "expected '**' only as the last segment, e.g. /contents/**",
        PatternError::PartialWildcard => "expected '*' as a whole segment, e.g. /pulls/*/files",
        PatternError::BadSegment => "expected no empty, '.' or '..' segments",
    }
}

/// Whether a token can go in an HTTP header as it is: visible ASCII only
/// (no spaces, control characters or non-ASCII text).
pub(super) fn header_safe(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

/// An absolute `http://` or `https://` URL with a host.
pub(super) fn http_url(text: &str) -> Result<Url, Expected> {
    match Url::parse(text.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(url),
        _ => Err("expected an http:// or https:// URL"),
    }
}

/// A byte count above zero: a zero-byte memory tier would evict every
/// entry on insert.
pub(super) fn capacity_bytes(text: &str) -> Result<u64, Expected> {
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a whole number of bytes above zero"),
    }
}

/// A permit count above zero (zero would block every upstream request) and
/// within what a tokio semaphore can hold (more would panic at start-up).
pub(super) fn concurrency(text: &str) -> Result<usize, Expected> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 && n <= tokio::sync::Semaphore::MAX_PERMITS => Ok(n),
        _ => Err("expected a whole number above zero"),
    }
}

/// A queue length: zero (nothing waits) or more.
pub(super) fn queue_length(text: &str) -> Result<usize, Expected> {
    match text.trim().parse::<usize>() {
        Ok(n) if n <= tokio::sync::Semaphore::MAX_PERMITS => Ok(n),
        _ => Err("expected a whole number, zero or more"),
    }
}

/// `*` or a browser origin. An origin with a path or a trailing slash
/// never equals a browser's `Origin` header, so it is refused rather than
/// silently never matching.
pub(super) fn cors_origin(text: &str) -> Result<String, Expected> {
    if text == "*" {
        return Ok(text.to_owned());
    }
    match Url::parse(text) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.origin().ascii_serialization() == text =>
        {
            Ok(text.to_owned())
        }
        _ => {
            Err("expected * or an origin like https://table.beerpub.dev (no path, no trailing '/')")
        }
    }
}

/// A workflow file name or id; it becomes one segment of an upstream path.
pub(super) fn workflow(text: &str) -> Result<String, Expected> {
    let text = text.trim();
    if text.is_empty()
        || text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '%'))
    {
        return Err("expected a workflow file name such as goose-build.yml");
    }
    Ok(text.to_owned())
}

/// A humantime duration such as `30s` or `5m`.
pub(super) fn duration(text: &str) -> Result<Duration, Expected> {
    humantime::parse_duration(text.trim())
        .map_err(|_| "expected a duration such as \"30s\" or \"5m\"")
}

/// `true`/`false` or `1`/`0`, any case. Anything else is refused rather
/// than read as false: a typo in a switch should not go unnoticed.
pub(super) fn boolean(text: &str) -> Result<bool, Expected> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("expected true or false"),
    }
}

/// The `[[ttl]]` rules of the file, in order; an empty list keeps the
/// default policy.
pub(super) fn ttl_rules(rules: Vec<RawTtlRule>) -> Result<Option<TtlPolicy>, Refusal> {
    if rules.is_empty() {
        return Ok(None);
    }
    let rules = rules
        .into_iter()
        .enumerate()
        .map(|(i, rule)| {
            let ttl = duration(&rule.duration).map_err(|expected| Refusal {
                expected,
                part: Some(rule.duration.clone()),
                at: Some(format!("[{i}].duration")),
            })?;
            Ok(TtlRule {
                path: rule.path,
                query: rule.query.filter(|q| !q.is_empty()),
                ttl,
            })
        })
        .collect::<Result<_, Refusal>>()?;
    Ok(Some(TtlPolicy::new(rules)))
}

/// `k=v,k2=v2` as the OpenTelemetry spec defines it (W3C baggage style,
/// values percent-encoded). On error, names the offending item.
pub(super) fn resource_attributes(text: &str) -> Result<Vec<(String, String)>, Refusal> {
    super::sources::split_list(text)
        .map(|item| {
            let bad = |expected| Refusal::part(item, expected);
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| bad("expected comma-separated key=value pairs"))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(bad(
                    "expected comma-separated key=value pairs with non-empty keys",
                ));
            }
            let value = percent_decode_str(value.trim())
                .decode_utf8()
                .map_err(|_| bad("expected percent-encoding of UTF-8 text"))?;
            Ok((key.to_owned(), value.into_owned()))
        })
        .collect()
}

/// A value as it may appear in an error: URL credentials
/// (`redis://:password@host`) are masked, up to the last `@`, so a
/// password holding an unencoded `/`, `?` or `#` (which ends a URL's
/// authority early) is masked too. A value without a scheme is treated the
/// same way (`user:pw@host`).
pub(super) fn shown(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    match text[start..].rfind('@') {
        Some(at) => format!("{}***@{}", &text[..start], &text[start + at + 1..]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_port_only_addresses_listen_on_all_interfaces() {
        assert_eq!(addr(":9090"), Ok(SocketAddr::from(([0, 0, 0, 0], 9090))));
        assert_eq!(addr("[::1]:80"), Ok("[::1]:80".parse().unwrap()));
        assert!(addr("localhost:80").is_err());
        assert!(addr("0.0.0.0").is_err());
    }

    #[test]
    fn booleans_accept_words_and_digits_in_any_case() {
        assert_eq!(boolean("TRUE"), Ok(true));
        assert_eq!(boolean("1"), Ok(true));
        assert_eq!(boolean("False"), Ok(false));
        assert_eq!(boolean("0"), Ok(false));
        assert!(boolean("yes").is_err());
    }

    #[test]
    fn cors_origins_must_be_bare_origins() {
        assert!(cors_origin("*").is_ok());
        assert!(cors_origin("https://table.beerpub.dev").is_ok());
        assert!(cors_origin("http://localhost:3000").is_ok());
        assert!(cors_origin("https://table.beerpub.dev/").is_err());
        assert!(cors_origin("table.beerpub.dev").is_err());
    }

    #[test]
    fn resource_attribute_values_are_percent_decoded() {
        assert_eq!(
            resource_attributes("deployment.environment=prod, team=a%2Cb"),
            Ok(vec![
                ("deployment.environment".into(), "prod".into()),
                ("team".into(), "a,b".into()),
            ])
        );
        assert_eq!(resource_attributes(""), Ok(vec![]));
        assert_eq!(
            resource_attributes("a=1,oops").map_err(|refusal| refusal.part),
            Err(Some("oops".to_owned()))
        );
    }

    #[test]
    fn url_credentials_are_masked_in_shown_values() {
        assert_eq!(
            shown("redis://:hunter2@cache:6379/0"),
            "redis://***@cache:6379/0"
        );
        assert_eq!(shown("redis://user:pw@host"), "redis://***@host");
        assert_eq!(shown("wgmesh"), "wgmesh");
    }

    #[test]
    fn passwords_with_reserved_characters_are_masked_and_refused() {
        for (text, secret) in [
            ("redis://:pa/ss@cache:6379/0", "pa/ss"),
            ("redis://:pa?ss@cache:6379", "pa?ss"),
            ("redis://:pa#ss@cache:6379", "pa#ss"),
            ("redis://u:p@ss@cache:6379", "p@ss"),
            ("redis://:123/456@cache", "123/456"),
            ("u:secret@cache:6379", "secret"),
        ] {
            let masked = shown(text);
            assert!(!masked.contains(secret), "{text} shown as {masked}");
            assert!(masked.contains("***@cache"), "{masked}");
            // Parsed as anything but these credentials at this host, the
            // URL is refused rather than connected elsewhere.
            if let Ok(Some(url)) = redis(text) {
                assert_eq!(url.host_str(), Some("cache"), "{text}");
                assert!(url.password().is_some(), "{text}");
            }
        }
        // Encoded, the same passwords are fine.
        let url = redis("redis://:pa%2Fss%3F%23%40@cache:6379/0")
            .unwrap()
            .unwrap();
        assert_eq!(url.host_str(), Some("cache"));
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for (text, expected) in [
            ("http://127.0.0.1:9000", true),
            ("http://127.8.9.1", true),
            ("http://[::1]:80", true),
            ("http://localhost:8080", true),
            ("http://api.localhost", true),
            ("http://10.0.0.1", false),
            ("http://github.internal", false),
            ("http://localhost.evil.example", false),
        ] {
            assert_eq!(is_loopback(&Url::parse(text).unwrap()), expected, "{text}");
        }
    }

    #[test]
    fn percentages_run_from_zero_to_a_hundred() {
        assert_eq!(percent("0"), Ok(0));
        assert_eq!(percent(" 5 "), Ok(5));
        assert_eq!(percent("100"), Ok(100));
        assert!(percent("101").is_err());
        assert!(percent("-1").is_err());
        assert!(percent("5%").is_err());
    }

    #[test]
    fn header_safe_tokens_are_visible_ascii() {
        assert!(header_safe("ghp_0123456789abcdefABCDEF"));
        assert!(header_safe("github_pat_11A_x-y.z"));
        for bad in ["", "a b", "a\tb", "a\u{1}b", "tök", "a\r\nb"] {
            assert!(!header_safe(bad), "{bad:?}");
        }
    }

    #[test]
    fn workflow_names_cannot_escape_their_path_segment() {
        assert!(workflow("goose-build.yml").is_ok());
        assert!(workflow("12345").is_ok());
        assert!(workflow("../secrets").is_err());
        assert!(workflow("").is_err());
    }
}
