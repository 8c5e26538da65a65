//! What a proxied request names: the repository, the GitHub path below it,
//! the forwarded query, and the cache key they make together.
//!
//! Hostile input is rejected here, at the edge, before anything is fetched.

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

/// How many rounds of percent-decoding are inspected: enough to see through
/// double encoding (`%252e`) without looping on adversarial input.
const DECODE_ROUNDS: usize = 3;

/// Why a requested GitHub path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `..` in any encoding: a traversal attempt.
    #[error("path must not contain '..'")]
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
    /// Percent-encoding that does not decode to UTF-8.
    #[error("path is not valid percent-encoded UTF-8")]
    BadEncoding,
}

/// A validated path below `/repos/{owner}/{repo}`, e.g. `/pulls`.
///
/// It keeps the client's percent-encoding, always starts with `/`, and is
/// free of traversal, empty segments, schemes and control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GithubPath(String);

impl GithubPath {
    /// Validates the still-encoded path that followed `/api/github`.
    ///
    /// An empty input means the repository itself and becomes `/`.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let path = if raw.is_empty() { "/" } else { raw };
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let mut layer = path.clone();
        for _ in 0..DECODE_ROUNDS {
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
        check_decoded_layer(&layer)?;
        Ok(Self(path))
    }

    /// The path as forwarded, with its leading `/`.
    pub fn as_str(&self) -> &str {
        &self.0
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

fn check_decoded_layer(layer: &str) -> Result<(), PathError> {
    if layer.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    if layer.contains("..") {
        return Err(PathError::DotDot);
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

/// The forwarded query: allowed keys only, pairs sorted by key then value,
/// form-encoded. Empty when nothing is forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct NormalisedQuery(String);

impl NormalisedQuery {
    /// Normalises a raw query string (without the `?`).
    pub fn parse(raw: &str) -> Self {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
            .filter(|(k, _)| FORWARDED_QUERY_KEYS.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.sort();
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
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
            "/a..b",
        ] {
            assert_eq!(GithubPath::parse(p), Err(PathError::DotDot), "{p}");
        }
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
    fn query_keeps_allowed_keys_sorted_by_key_then_value() {
        let q = NormalisedQuery::parse(
            "state=open&utm=x&per_page=100&labels=b&labels=a&access_token=s",
        );
        assert_eq!(q.as_str(), "labels=a&labels=b&per_page=100&state=open");
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
