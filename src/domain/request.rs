//! What a proxied request names: the repository, the GitHub path below it,
//! the forwarded query, and the cache key they make together.
//!
//! Hostile input is rejected here, at the edge, before anything is fetched.

use std::collections::BTreeMap;
use std::fmt;

use percent_encoding::percent_decode_str;

/// Query parameters forwarded to GitHub; everything else is dropped so that
/// cache-busting junk cannot multiply cache entries or upstream calls.
const FORWARDED_QUERY_KEYS: [&str; 14] = [
    "state",
    "per_page",
    "page",
    "sort",
    "direction",
    "since",
    "until",
    "status",
    "sha",
    "ref",
    "path",
    "labels",
    "branch",
    "event",
];

/// The longest GitHub path accepted, in bytes, as sent and once canonical;
/// a longer one is answered `414` (CONTRACT 3, canonical form).
pub const MAX_PATH_BYTES: usize = 2048;

/// Why a requested GitHub path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `..` or `.` segment in any encoding: a traversal attempt (a URL
    /// library would resolve it before GitHub saw it).
    #[error("path must not contain a '..' or '.' segment")]
    DotDot,
    /// An empty segment (`//`), which would change the upstream URL's shape.
    #[error("path must not contain '//'")]
    EmptySegment,
    /// A URL scheme (`http:`, `https://…`), which could redirect the fetch.
    #[error("path must not contain a URL scheme")]
    Scheme,
    /// A control character, CR or LF: header or log injection.
    #[error("path must not contain control characters")]
    ControlCharacter,
    /// Percent-encoding that is malformed or does not decode to UTF-8.
    #[error("path is not valid percent-encoded UTF-8")]
    BadEncoding,
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
}

/// A validated path below `/repos/{owner}/{repo}`, e.g. `/pulls`.
///
/// It is kept in canonical form (RFC 3986 §6.2.2): percent-encoded
/// unreserved characters are decoded, every other escape has upper-case hex
/// digits, and characters a URI may not hold raw are encoded. So `/pulls`,
/// `/%70ulls` and `/p%75lls` are one path, one cache key and one upstream
/// request. It always starts with `/`, and is free of traversal, empty
/// segments, schemes and control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GithubPath(String);

impl GithubPath {
    /// Validates and canonicalises the still-encoded path that followed
    /// `/api/github`.
    ///
    /// An empty input means the repository itself and becomes `/`.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        let path = if raw.is_empty() { "/" } else { raw };
        let path = if path.starts_with('/') {
            canonical(path)?
        } else {
            canonical(&format!("/{path}"))?
        };
        if path.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        // Checked at every depth of encoding, so `%252e%252e` is seen for
        // the `..` it becomes if anything downstream decodes twice (or ten
        // times). It ends: a round that changes the text shortens it by at
        // least two bytes, and the path is at most MAX_PATH_BYTES long.
        let mut layer = path.clone();
        loop {
            check_decoded_layer(&layer)?;
            let decoded = percent_decode_str(&layer)
                .decode_utf8()
                .map_err(|_| PathError::BadEncoding)?
                .into_owned();
            if decoded == layer {
                break;
            }
            layer = decoded;
        }
        Ok(Self(path))
    }

    /// The repository itself: `/`.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// The path as forwarded, with its leading `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the repository itself (`/`).
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The segments a path policy matches against: an encoded slash
    /// (`%2F`) separates segments too, since GitHub may decode it before
    /// routing. The root has none.
    pub fn policy_segments(&self) -> Vec<&str> {
        let body = &self.0[1..];
        if body.is_empty() {
            return Vec::new();
        }
        body.split('/')
            .flat_map(|segment| segment.split("%2F"))
            .collect()
    }

    /// The upstream path for this resource of `repo`: `/repos/{repo}{path}`,
    /// or `/repos/{repo}` for the repository itself.
    pub fn upstream_path(&self, repo: &RepoName) -> String {
        if self.0 == "/" {
            format!("/repos/{repo}")
        } else {
            format!("/repos/{repo}{}", self.0)
        }
    }

    /// Splits a leading `/{owner}/{repo}` off the path, for org mode.
    /// Returns the repository named and the rest of the path.
    pub fn split_repo_prefix(&self) -> Option<(RepoName, Self)> {
        let mut parts = self.0[1..].splitn(3, '/');
        let owner = parts.next()?;
        let name = parts.next()?;
        let rest = parts
            .next()
            .map_or_else(|| "/".to_owned(), |r| format!("/{r}"));
        let repo = RepoName::parse(&format!("{owner}/{name}")).ok()?;
        Some((repo, Self(rest)))
    }
}

/// The canonical form of a still-encoded path (see [`GithubPath`]).
///
/// # Errors
/// [`PathError::BadEncoding`] for a `%` not followed by two hex digits.
pub(super) fn canonical(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let value = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| Some(hex_value(hex[0])? << 4 | hex_value(hex[1])?))
                .ok_or(PathError::BadEncoding)?;
            if is_unreserved(value) {
                out.push(char::from(value));
            } else {
                push_escaped(&mut out, value);
            }
            i += 3;
        } else {
            if is_unreserved(byte) || is_kept_raw(byte) {
                out.push(char::from(byte));
            } else {
                push_escaped(&mut out, byte);
            }
            i += 1;
        }
    }
    Ok(out)
}

/// RFC 3986 §2.3: the characters whose encoding never changes a URI.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Reserved characters a path may hold raw (`/`, sub-delims, `:`, `@`).
/// Raw and encoded reserved characters are not equivalent (RFC 3986 §2.2),
/// so these are kept as sent.
fn is_kept_raw(byte: u8) -> bool {
    matches!(
        byte,
        b'/' | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@'
    )
}

fn push_escaped(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn check_decoded_layer(layer: &str) -> Result<(), PathError> {
    if layer.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    // Segment by segment: dots inside a segment (`main...feature`) are not
    // traversal, a segment that is only dots is. The first item is the
    // empty string before the leading `/`; a trailing `/` is allowed.
    let segments: Vec<&str> = layer.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => return Err(PathError::DotDot),
            "" if i + 1 < segments.len() => return Err(PathError::EmptySegment),
            _ => {}
        }
    }
    if layer.contains("//") {
        return Err(PathError::EmptySegment);
    }
    if has_scheme(layer) {
        return Err(PathError::Scheme);
    }
    Ok(())
}

/// True when any segment starts like `scheme:` (RFC 3986 §3.1).
fn has_scheme(path: &str) -> bool {
    path.split('/').any(|segment| {
        let Some((scheme, _)) = segment.split_once(':') else {
            return false;
        };
        let mut chars = scheme.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

impl fmt::Display for GithubPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The forwarded query: allowed keys only, each with its last value (as
/// GitHub reads a repeated key), sorted by key, form-encoded. Empty when
/// nothing is forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct NormalisedQuery(String);

impl NormalisedQuery {
    /// Normalises a raw query string (without the `?`).
    pub fn parse(raw: &str) -> Self {
        let last: BTreeMap<String, String> = form_urlencoded::parse(raw.as_bytes())
            .filter(|(k, _)| FORWARDED_QUERY_KEYS.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(last)
            .finish();
        Self(encoded)
    }

    /// The encoded query without a leading `?`; empty when nothing remains.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when no parameter is forwarded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The key a response is cached under: `{path}` or `{path}?{query}`, or an
/// internal name such as `__pipeline_summary__`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key of a proxied request.
    pub fn for_request(path: &GithubPath, query: &NormalisedQuery) -> Self {
        if query.is_empty() {
            Self(path.0.clone())
        } else {
            Self(format!("{}?{}", path.0, query.0))
        }
    }

    /// The key of a request for another repository (org mode): the path is
    /// prefixed by `/{owner}/{repo}` so repositories never share entries.
    pub fn for_repo_request(repo: &RepoName, path: &GithubPath, query: &NormalisedQuery) -> Self {
        let inner = Self::for_request(path, query);
        Self(format!("/{repo}{}", inner.0))
    }

    /// A key for chimney's own derived data, e.g. `__pipeline_summary__`.
    pub fn named(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// Rebuilds a key read back from a store.
    pub fn from_stored(key: String) -> Self {
        Self(key)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path part of the key, without the query.
    pub fn path(&self) -> &str {
        self.0.split_once('?').map_or(self.0.as_str(), |(p, _)| p)
    }

    /// The query part of the key, empty when there is none.
    pub fn query(&self) -> &str {
        self.0.split_once('?').map_or("", |(_, q)| q)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a repository name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("repository must be 'owner/name' with one '/' and only letters, digits, '-', '_' or '.'")]
pub struct RepoNameError;

/// A GitHub repository as `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// Parses `owner/name`: exactly one `/`, both parts non-empty and made of
    /// the characters GitHub allows.
    pub fn parse(s: &str) -> Result<Self, RepoNameError> {
        let (owner, name) = s.split_once('/').ok_or(RepoNameError)?;
        let valid = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if valid(owner) && valid(name) {
            Ok(Self(s.to_owned()))
        } else {
            Err(RepoNameError)
        }
    }

    /// `owner/name`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The owner part.
    pub fn owner(&self) -> &str {
        self.0.split_once('/').map_or("", |(o, _)| o)
    }

    /// The name part.
    pub fn name(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, n)| n)
    }

    /// Case-insensitive equality, as GitHub compares repository names.
    pub fn same_as(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_are_kept_as_sent() {
        for p in [
            "/pulls",
            "/contents/README.md",
            "/contents/",
            "/actions/runs",
            "/git/refs/",
        ] {
            assert_eq!(GithubPath::parse(p).unwrap().as_str(), p);
        }
        assert_eq!(GithubPath::parse("pulls").unwrap().as_str(), "/pulls");
        assert_eq!(GithubPath::parse("").unwrap().as_str(), "/");
        assert_eq!(
            GithubPath::parse("/contents/a%20b.md").unwrap().as_str(),
            "/contents/a%20b.md"
        );
    }

    #[test]
    fn traversal_is_rejected_in_every_encoding() {
        for p in [
            "/../orgs",
            "/a/..",
            "/%2e%2e/x",
            "/%2E%2e/x",
            "/.%2e/x",
            "/%252e%252e/x",
            "/%25252525252e%25252525252e/x",
            "/a/.",
            "/./x",
            "/%2e/x",
            "/a/..%2fusers",
            "/a%2f..%2fusers",
        ] {
            assert_eq!(GithubPath::parse(p), Err(PathError::DotDot), "{p}");
        }
    }

    #[test]
    fn dots_inside_a_segment_are_not_traversal() {
        for p in [
            "/compare/main...feature",
            "/a..b",
            "/releases/v1.0..",
            "/x/.hidden",
        ] {
            assert_eq!(GithubPath::parse(p).unwrap().as_str(), p);
        }
    }

    #[test]
    fn encoded_unreserved_characters_are_decoded_to_one_canonical_path() {
        for p in [
            "/pulls",
            "/%70ulls",
            "/p%75lls",
            "/%70%75%6C%6C%73",
            "/%70%75%6c%6c%73",
        ] {
            assert_eq!(GithubPath::parse(p).unwrap().as_str(), "/pulls", "{p}");
        }
        assert_eq!(
            GithubPath::parse("/compare/main%2e%2e%2efeature")
                .unwrap()
                .as_str(),
            "/compare/main...feature"
        );
    }

    #[test]
    fn reserved_escapes_stay_encoded_with_upper_case_hex() {
        assert_eq!(
            GithubPath::parse("/branches/a%2fb").unwrap().as_str(),
            "/branches/a%2Fb"
        );
        assert_eq!(
            GithubPath::parse("/contents/a%20b.md").unwrap().as_str(),
            "/contents/a%20b.md"
        );
        assert_eq!(
            GithubPath::parse("/contents/a b").unwrap().as_str(),
            "/contents/a%20b"
        );
        assert_eq!(
            GithubPath::parse("/commits/1:b").unwrap().as_str(),
            "/commits/1:b"
        );
        assert_eq!(
            GithubPath::parse("/commits/1%3ab").unwrap().as_str(),
            "/commits/1%3Ab"
        );
    }

    #[test]
    fn malformed_escapes_are_bad_encoding() {
        for p in ["/a%", "/a%2", "/a%zz", "/a%ff"] {
            assert_eq!(GithubPath::parse(p), Err(PathError::BadEncoding), "{p}");
        }
    }

    #[test]
    fn paths_longer_than_the_limit_are_too_long() {
        let at_limit = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
        assert!(GithubPath::parse(&at_limit).is_ok());
        let over = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(GithubPath::parse(&over), Err(PathError::TooLong));
        // Short as sent, too long once raw characters are encoded.
        let grows = format!("/{}", " ".repeat(MAX_PATH_BYTES / 2));
        assert_eq!(GithubPath::parse(&grows), Err(PathError::TooLong));
    }

    #[test]
    fn policy_segments_split_on_encoded_slashes() {
        let path = GithubPath::parse("/branches/a%2Fprotection").unwrap();
        assert_eq!(path.policy_segments(), ["branches", "a", "protection"]);
        assert!(GithubPath::root().policy_segments().is_empty());
        assert_eq!(
            GithubPath::parse("/git/refs/").unwrap().policy_segments(),
            ["git", "refs", ""]
        );
    }

    #[test]
    fn empty_segments_are_rejected_even_when_encoded() {
        assert_eq!(GithubPath::parse("//evil"), Err(PathError::EmptySegment));
        assert_eq!(GithubPath::parse("/a//b"), Err(PathError::EmptySegment));
        assert_eq!(GithubPath::parse("/a/%2fb"), Err(PathError::EmptySegment));
    }

    #[test]
    fn schemes_are_rejected() {
        assert_eq!(
            GithubPath::parse("/https:%2f%2fevil.com"),
            Err(PathError::Scheme)
        );
        assert_eq!(
            GithubPath::parse("/http:evil.com/x"),
            Err(PathError::Scheme)
        );
        assert_eq!(
            GithubPath::parse("/javascript:alert(1)"),
            Err(PathError::Scheme)
        );
        assert!(GithubPath::parse("/commits/abc/status").is_ok());
    }

    #[test]
    fn control_characters_and_crlf_are_rejected() {
        for p in ["/a%0d%0aSet-Cookie:x", "/a%0a", "/a%00", "/a\tb", "/a%7f"] {
            assert_eq!(
                GithubPath::parse(p),
                Err(PathError::ControlCharacter),
                "{p}"
            );
        }
    }

    #[test]
    fn invalid_utf8_encoding_is_rejected() {
        assert_eq!(GithubPath::parse("/a%ff"), Err(PathError::BadEncoding));
        assert_eq!(GithubPath::parse("/a%c3"), Err(PathError::BadEncoding));
    }

    #[test]
    fn upstream_path_sits_below_the_repository() {
        let repo = RepoName::parse("octo/hello").unwrap();
        assert_eq!(
            GithubPath::parse("/pulls").unwrap().upstream_path(&repo),
            "/repos/octo/hello/pulls"
        );
        assert_eq!(
            GithubPath::parse("").unwrap().upstream_path(&repo),
            "/repos/octo/hello"
        );
    }

    #[test]
    fn repo_prefix_is_split_for_org_mode() {
        let path = GithubPath::parse("/octo/tools/pulls").unwrap();
        let (repo, rest) = path.split_repo_prefix().unwrap();
        assert_eq!(repo.as_str(), "octo/tools");
        assert_eq!(rest.as_str(), "/pulls");
        assert!(
            GithubPath::parse("/pulls")
                .unwrap()
                .split_repo_prefix()
                .is_none()
        );
    }

    #[test]
    fn query_keeps_allowed_keys_sorted_by_key_with_their_last_value() {
        let q = NormalisedQuery::parse(
            "state=open&utm=x&per_page=100&labels=b&labels=a&access_token=s",
        );
        assert_eq!(q.as_str(), "labels=a&per_page=100&state=open");
        assert_eq!(
            NormalisedQuery::parse("page=2&page=3&state=open&page=1"),
            NormalisedQuery::parse("state=open&page=1")
        );
        assert!(NormalisedQuery::parse("foo=bar").is_empty());
        assert!(NormalisedQuery::parse("").is_empty());
    }

    #[test]
    fn query_values_are_re_encoded() {
        let q = NormalisedQuery::parse("labels=bug%20fix&sha=a%26b");
        assert_eq!(q.as_str(), "labels=bug+fix&sha=a%26b");
    }

    #[test]
    fn cache_key_is_path_then_normalised_query() {
        let path = GithubPath::parse("/pulls").unwrap();
        let key = CacheKey::for_request(&path, &NormalisedQuery::parse("state=open&per_page=10"));
        assert_eq!(key.as_str(), "/pulls?per_page=10&state=open");
        assert_eq!(key.path(), "/pulls");
        assert_eq!(key.query(), "per_page=10&state=open");
        let bare = CacheKey::for_request(&path, &NormalisedQuery::parse("junk=1"));
        assert_eq!(bare.as_str(), "/pulls");
        assert_eq!(bare.query(), "");
    }

    #[test]
    fn same_request_in_different_order_shares_a_key() {
        let path = GithubPath::parse("/issues").unwrap();
        let a = CacheKey::for_request(&path, &NormalisedQuery::parse("state=open&page=2"));
        let b = CacheKey::for_request(&path, &NormalisedQuery::parse("page=2&x=1&state=open"));
        assert_eq!(a, b);
    }

    #[test]
    fn repo_names_need_exactly_one_slash() {
        assert!(RepoName::parse("atvirokodosprendimai/wgmesh").is_ok());
        for bad in ["wgmesh", "a/b/c", "/b", "a/", "a b/c", "../x", "a/.."] {
            assert!(RepoName::parse(bad).is_err(), "{bad}");
        }
        let repo = RepoName::parse("Octo/Hello").unwrap();
        assert_eq!((repo.owner(), repo.name()), ("Octo", "Hello"));
        assert!(repo.same_as("octo/hello"));
    }
}
