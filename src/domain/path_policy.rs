//! Which GitHub paths chimney proxies at all (CONTRACT 3, path policy).
//!
//! The server's token can read far more than the dashboard needs (hooks,
//! keys, secrets, traffic, run logs, archives…), and the proxy is public,
//! so it is an allow-list: a path no pattern matches is refused before any
//! upstream call. A pattern is a path where `*` matches exactly one
//! (non-empty) segment and a trailing `/**` any number of further segments,
//! zero included; everything else matches literally.

use super::request::{GithubPath, canonical};

/// The patterns proxied when `proxy_paths` is not configured: what the
/// dashboard and the pipeline summary read, and the repository's public
/// metadata.
pub const DEFAULT_PROXY_PATHS: [&str; 33] = [
    "/",
    "/pulls",
    "/pulls/*",
    "/pulls/*/files",
    "/pulls/*/commits",
    "/pulls/*/reviews",
    "/issues",
    "/issues/*",
    "/issues/*/comments",
    "/issues/*/events",
    "/commits",
    "/commits/*",
    "/commits/*/check-runs",
    "/commits/*/status",
    "/branches",
    "/branches/*",
    "/tags",
    "/releases",
    "/releases/latest",
    "/releases/*",
    "/contributors",
    "/languages",
    "/labels",
    "/milestones",
    "/deployments",
    "/compare/*",
    "/readme",
    "/actions/runs",
    "/actions/runs/*",
    "/actions/runs/*/jobs",
    "/actions/workflows",
    "/actions/workflows/*",
    "/actions/workflows/*/runs",
];

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Patterns are paths below the repository and start with `/`.
    #[error("a pattern must start with '/'")]
    NotAbsolute,
    /// `**` anywhere but last would make matching ambiguous.
    #[error("'**' may only be the last segment")]
    MisplacedRest,
    /// `*` inside a segment (`pu*`) is not supported: it would invite
    /// patterns broader than intended.
    #[error("'*' must be a whole segment")]
    PartialWildcard,
    /// An empty, `.` or `..` segment can never match a valid path.
    #[error("a pattern must not have empty, '.' or '..' segments")]
    BadSegment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches this canonical segment exactly.
    Literal(String),
    /// `*`: any one non-empty segment.
    Any,
}

/// One pattern of the policy, e.g. `/pulls/*/files` or `/contents/**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<Segment>,
    /// Ends in `/**`: any number of further segments.
    rest: bool,
}

impl PathPattern {
    /// Parses a pattern; literal segments are put in the canonical form
    /// paths are compared in, so `/%70ulls` and `/pulls` are one pattern.
    ///
    /// # Errors
    /// A [`PatternError`] saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let text = text.trim();
        let body = text.strip_prefix('/').ok_or(PatternError::NotAbsolute)?;
        let mut segments = Vec::new();
        let mut rest = false;
        if !body.is_empty() {
            let parts: Vec<&str> = body.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                match *part {
                    "**" if i + 1 == parts.len() => rest = true,
                    "**" => return Err(PatternError::MisplacedRest),
                    "*" => segments.push(Segment::Any),
                    "" | "." | ".." => return Err(PatternError::BadSegment),
                    literal if literal.contains('*') => {
                        return Err(PatternError::PartialWildcard);
                    }
                    literal => segments.push(Segment::Literal(
                        canonical(literal).map_err(|_| PatternError::BadSegment)?,
                    )),
                }
            }
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
            rest,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn matches(&self, path: &[&str]) -> bool {
        let length_fits = if self.rest {
            path.len() >= self.segments.len()
        } else {
            path.len() == self.segments.len()
        };
        length_fits
            && self
                .segments
                .iter()
                .zip(path)
                .all(|(pattern, segment)| match pattern {
                    Segment::Literal(literal) => literal == segment,
                    Segment::Any => !segment.is_empty(),
                })
    }
}

/// The ordered list of patterns; a path is proxied when any matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPolicy {
    patterns: Vec<PathPattern>,
}

impl PathPolicy {
    /// A policy of exactly these patterns.
    pub fn new(patterns: Vec<PathPattern>) -> Self {
        Self { patterns }
    }

    /// Parses every item.
    ///
    /// # Errors
    /// The first item refused, with why.
    pub fn parse<I, S>(items: I) -> Result<Self, (String, PatternError)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        items
            .into_iter()
            .map(|item| {
                let item = item.as_ref();
                PathPattern::parse(item).map_err(|e| (item.to_owned(), e))
            })
            .collect::<Result<_, _>>()
            .map(Self::new)
    }

    /// Whether `path` (below the repository) may be proxied.
    pub fn allows(&self, path: &GithubPath) -> bool {
        let segments = path.policy_segments();
        self.patterns.iter().any(|p| p.matches(&segments))
    }

    /// The patterns, in order.
    pub fn patterns(&self) -> &[PathPattern] {
        &self.patterns
    }
}

impl Default for PathPolicy {
    /// [`DEFAULT_PROXY_PATHS`].
    fn default() -> Self {
        Self::parse(DEFAULT_PROXY_PATHS).expect("the default patterns are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> GithubPath {
        GithubPath::parse(p).unwrap()
    }

    fn policy(items: &[&str]) -> PathPolicy {
        PathPolicy::parse(items).unwrap()
    }

    #[test]
    fn the_default_policy_serves_the_dashboards_paths() {
        let p = PathPolicy::default();
        for allowed in [
            "/",
            "/pulls",
            "/pulls/12",
            "/pulls/12/files",
            "/issues/3/comments",
            "/commits/abc/check-runs",
            "/compare/main...feature",
            "/releases/latest",
            "/actions/workflows/goose-build.yml/runs",
            "/actions/runs/99/jobs",
            "/%70ulls",
        ] {
            assert!(p.allows(&path(allowed)), "{allowed}");
        }
    }

    #[test]
    fn the_default_policy_refuses_what_the_token_must_not_reach() {
        let p = PathPolicy::default();
        for refused in [
            "/hooks",
            "/keys",
            "/actions/secrets",
            "/actions/variables",
            "/code-scanning/alerts",
            "/traffic/views",
            "/collaborators",
            "/invitations",
            "/actions/runs/1/logs",
            "/tarball/main",
            "/zipball",
            "/contents/README.md",
            "/pulls/1/merge",
            "/issues/",
            "/branches/main/protection",
            "/branches/main%2Fprotection",
            "/pulls/1/files/extra",
            "/Pulls",
        ] {
            assert!(!p.allows(&path(refused)), "{refused}");
        }
    }

    #[test]
    fn a_star_matches_exactly_one_non_empty_segment() {
        let p = policy(&["/pulls/*"]);
        assert!(p.allows(&path("/pulls/1")));
        assert!(!p.allows(&path("/pulls")));
        assert!(!p.allows(&path("/pulls/")));
        assert!(!p.allows(&path("/pulls/1/files")));
    }

    #[test]
    fn a_trailing_double_star_matches_zero_or_more_segments() {
        let p = policy(&["/contents/**"]);
        assert!(p.allows(&path("/contents")));
        assert!(p.allows(&path("/contents/")));
        assert!(p.allows(&path("/contents/docs/a.md")));
        assert!(!p.allows(&path("/content")));
        assert!(policy(&["/**"]).allows(&path("/")));
        assert!(policy(&["/**"]).allows(&path("/hooks")));
    }

    #[test]
    fn the_root_pattern_is_the_repository_itself() {
        let p = policy(&["/"]);
        assert!(p.allows(&GithubPath::root()));
        assert!(!p.allows(&path("/pulls")));
    }

    #[test]
    fn an_empty_policy_allows_nothing() {
        assert!(!PathPolicy::new(Vec::new()).allows(&GithubPath::root()));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        assert_eq!(PathPattern::parse("pulls"), Err(PatternError::NotAbsolute));
        assert_eq!(
            PathPattern::parse("/**/x"),
            Err(PatternError::MisplacedRest)
        );
        assert_eq!(
            PathPattern::parse("/pu*"),
            Err(PatternError::PartialWildcard)
        );
        assert_eq!(PathPattern::parse("/a//b"), Err(PatternError::BadSegment));
        assert_eq!(PathPattern::parse("/a/../b"), Err(PatternError::BadSegment));
        assert_eq!(
            PathPolicy::parse(["/pulls", "oops"]),
            Err(("oops".to_owned(), PatternError::NotAbsolute))
        );
    }

    #[test]
    fn literal_segments_compare_in_canonical_form() {
        let p = policy(&["/contents/%52EADME.md"]);
        assert!(p.allows(&path("/contents/README.md")));
        assert_eq!(p.patterns()[0].as_str(), "/contents/%52EADME.md");
    }
}
