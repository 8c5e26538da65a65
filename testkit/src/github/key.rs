//! `RequestKey`: how the fake names a resource, a fault's target and a
//! request, so that they can be compared: the path with the repository-id
//! alias resolved, and the query as a sorted list of decoded pairs, so that
//! query order does not matter. A key whose path has wildcard segments is a
//! pattern, for tools that answer every repository alike.

/// A path segment matching any one segment.
const ANY_SEGMENT: &str = "*";
/// A last path segment matching one or more segments.
const ANY_REST: &str = "**";

/// The upstream path prefix GitHub also uses for the paginate-issues
/// repository (`/repositories/{id}/…`), and the name it stands for.
const REPO_ID_ALIASES: [(&str, &str); 1] = [(
    "/repositories/515435940",
    "/repos/octokit-fixture-org/tmp-scenario-paginate-issues-20220719043836917-izyoe",
)];

/// A request path with aliases resolved, and its query as a sorted list of
/// decoded pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RequestKey {
    path: String,
    query: Vec<(String, String)>,
}

impl RequestKey {
    pub(super) fn parse(path_and_query: &str) -> Self {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut path = path.to_owned();
        for (alias, name) in REPO_ID_ALIASES {
            if let Some(rest) = path.strip_prefix(alias)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                path = format!("{name}{rest}");
            }
        }
        let mut query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        query.sort();
        Self { path, query }
    }

    /// Whether the path has wildcard segments (`*`, a final `**`).
    pub(super) fn is_pattern(&self) -> bool {
        self.path
            .split('/')
            .any(|segment| segment == ANY_SEGMENT || segment == ANY_REST)
    }

    /// Whether a fault, delay or pattern resource registered under `self`
    /// covers `request`: its path matches (wildcards included), and a
    /// target without a query covers every query of its path.
    pub(super) fn covers(&self, request: &Self) -> bool {
        path_matches(&self.path, &request.path)
            && (self.query.is_empty() || self.query == request.query)
    }
}

/// Segment by segment: `*` matches any one segment, a last `**` one or
/// more; any other segment only itself (so a path without wildcards
/// matches only the same path).
fn path_matches(pattern: &str, path: &str) -> bool {
    let mut pattern = pattern.split('/');
    let mut path = path.split('/');
    loop {
        match (pattern.next(), path.next()) {
            (None, None) => return true,
            (Some(ANY_REST), Some(_)) => return pattern.next().is_none(),
            (Some(wanted), Some(segment)) if wanted == ANY_SEGMENT || wanted == segment => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_query_order_and_resolve_the_repository_id_alias() {
        let a = RequestKey::parse("/repositories/515435940/issues?per_page=3&page=2");
        let b = RequestKey::parse(
            "/repos/octokit-fixture-org/tmp-scenario-paginate-issues-20220719043836917-izyoe/issues?page=2&per_page=3",
        );
        assert_eq!(a, b);
    }

    #[test]
    fn a_key_without_a_query_covers_every_query_of_its_path_only() {
        let target = RequestKey::parse("/repos/o/r/pulls");
        assert!(target.covers(&RequestKey::parse("/repos/o/r/pulls?state=open")));
        assert!(!target.covers(&RequestKey::parse("/repos/o/r/pulls/1")));
        let with_query = RequestKey::parse("/repos/o/r/pulls?state=open");
        assert!(!with_query.covers(&RequestKey::parse("/repos/o/r/pulls?state=closed")));
        assert!(!target.is_pattern());
    }

    #[test]
    fn wildcards_match_one_segment_or_the_rest() {
        let pulls = RequestKey::parse("/repos/*/*/pulls");
        assert!(pulls.is_pattern());
        assert!(pulls.covers(&RequestKey::parse("/repos/a/b/pulls?state=open")));
        assert!(!pulls.covers(&RequestKey::parse("/repos/a/pulls")));
        assert!(!pulls.covers(&RequestKey::parse("/repos/a/b/pulls/1")));

        let anything = RequestKey::parse("/repos/*/*/**");
        assert!(anything.covers(&RequestKey::parse("/repos/a/b/issues/1/comments")));
        assert!(anything.covers(&RequestKey::parse("/repos/a/b/pulls")));
        assert!(!anything.covers(&RequestKey::parse("/repos/a/b")));
        assert!(!anything.covers(&RequestKey::parse("/orgs/a/repos")));
    }
}
