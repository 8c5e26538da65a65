//! Org mode's rules: which of an organisation's repositories are served
//! (archived and excluded ones are not), and how discovery pages through
//! GitHub's list (the `Link` header's `rel="next"`, only back to the same
//! API, at most a bounded number of pages). The fetching lives in
//! `service::org`.
//!
//! Pagination: <https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>

use super::request::RepoName;

/// The most pages of 100 repositories discovery reads: 1,000 repositories,
/// bounding the work even if GitHub (or a proxy) returned a link loop.
pub const MAX_DISCOVERY_PAGES: usize = 10;

/// The first page of an organisation's public repositories.
pub fn org_repos_first_page(org: &str) -> String {
    format!("/orgs/{org}/repos?type=public&per_page=100")
}

/// A repository of the organisation as discovery saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRepo {
    /// `owner/name`.
    pub full_name: RepoName,
    /// The repository's description.
    pub description: Option<String>,
    /// Its main language.
    pub language: Option<String>,
    /// Open issues and pull requests, as GitHub counts them.
    pub open_issues_count: Option<u64>,
    /// When it last changed (RFC 3339).
    pub updated_at: Option<String>,
    /// Its page on github.com.
    pub html_url: String,
    /// Archived repositories are never served.
    pub archived: bool,
}

impl OrgRepo {
    /// The repository's name without the owner.
    pub fn name(&self) -> &str {
        self.full_name.name()
    }
}

/// The `GITHUB_REPOS_EXCLUDE` list: names (`tools`) or full names
/// (`acme/tools`), compared case-insensitively as GitHub compares them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoExclusions(Vec<String>);

impl RepoExclusions {
    /// Builds the list; blank entries are ignored and entries are trimmed.
    pub fn new<I, S>(entries: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self(
            entries
                .into_iter()
                .map(|e| e.as_ref().trim().to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
        )
    }

    /// True when `repo` is excluded by its name or its full name.
    pub fn excludes(&self, repo: &RepoName) -> bool {
        self.0.iter().any(|entry| {
            entry.eq_ignore_ascii_case(repo.as_str()) || entry.eq_ignore_ascii_case(repo.name())
        })
    }
}

/// The repositories to serve: archived and excluded ones dropped, the
/// first of any case-insensitive duplicates kept, order otherwise kept.
pub fn served_repos(repos: Vec<OrgRepo>, exclusions: &RepoExclusions) -> Vec<OrgRepo> {
    let mut seen: Vec<String> = Vec::with_capacity(repos.len());
    repos
        .into_iter()
        .filter(|repo| !repo.archived && !exclusions.excludes(&repo.full_name))
        .filter(|repo| {
            let lower = repo.full_name.as_str().to_ascii_lowercase();
            if seen.contains(&lower) {
                false
            } else {
                seen.push(lower);
                true
            }
        })
        .collect()
}

/// The URL of the `rel="next"` link in a `Link` header value, if any.
/// Relation types are compared case-insensitively and a `rel` may list
/// several (`rel="next last"`).
pub fn next_page_url(link_header: &str) -> Option<&str> {
    let mut rest = link_header;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let url = &rest[open + 1..close];
        let after = &rest[close + 1..];
        let params_end = after.find('<').unwrap_or(after.len());
        let params = &after[..params_end];
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_end_matches(',')
                    .trim_end()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(url);
        }
        rest = after;
    }
    None
}

/// The path and query of `url` below `api_base`, when `url` points back at
/// the same API (compared case-insensitively, at a path boundary);
/// `None` for a link anywhere else, which discovery never follows.
pub fn below_api_base(url: &str, api_base: &str) -> Option<String> {
    let base = api_base.trim_end_matches('/');
    let head = url.get(..base.len())?;
    if !head.eq_ignore_ascii_case(base) {
        return None;
    }
    let tail = &url[base.len()..];
    if !tail.starts_with('/') || tail.starts_with("//") {
        return None;
    }
    let bad = tail
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '#');
    (!bad).then(|| tail.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(full_name: &str, archived: bool) -> OrgRepo {
        OrgRepo {
            full_name: RepoName::parse(full_name).unwrap(),
            description: None,
            language: None,
            open_issues_count: Some(0),
            updated_at: None,
            html_url: format!("https://github.com/{full_name}"),
            archived,
        }
    }

    fn names(repos: &[OrgRepo]) -> Vec<&str> {
        repos.iter().map(|r| r.full_name.as_str()).collect()
    }

    #[test]
    fn exclusions_match_names_or_full_names_in_any_case() {
        let ex = RepoExclusions::new([" Tools ", "acme/Legacy", "", "other/site"]);
        let r = |s| RepoName::parse(s).unwrap();
        assert!(ex.excludes(&r("acme/tools")));
        assert!(ex.excludes(&r("ACME/TOOLS")));
        assert!(ex.excludes(&r("acme/legacy")));
        assert!(!ex.excludes(&r("acme/site")));
        assert!(!ex.excludes(&r("acme/tools-2")));
        assert!(!ex.excludes(&r("acme/acme")));
        assert!(!RepoExclusions::default().excludes(&r("acme/tools")));
    }

    #[test]
    fn archived_excluded_and_duplicate_repos_are_not_served() {
        let ex = RepoExclusions::new(["secret"]);
        let served = served_repos(
            vec![
                repo("acme/api", false),
                repo("acme/old", true),
                repo("acme/secret", false),
                repo("acme/web", false),
                repo("ACME/API", false),
            ],
            &ex,
        );
        assert_eq!(names(&served), ["acme/api", "acme/web"]);
        assert_eq!(served[1].name(), "web");
    }

    #[test]
    fn the_next_link_is_found_among_others() {
        let header = r#"<https://api.github.com/organizations/1/repos?type=public&per_page=100&page=1>; rel="prev", <https://api.github.com/organizations/1/repos?type=public&per_page=100&page=3>; rel="next", <https://api.github.com/organizations/1/repos?page=5>; rel="last""#;
        assert_eq!(
            next_page_url(header),
            Some("https://api.github.com/organizations/1/repos?type=public&per_page=100&page=3")
        );
        assert_eq!(
            next_page_url("<https://x/a?page=2>; REL=\"last next\""),
            Some("https://x/a?page=2")
        );
        assert_eq!(next_page_url("<https://x/a?page=5>; rel=\"last\""), None);
        assert_eq!(next_page_url("<https://x/a?page=5>; title=\"next\""), None);
        assert_eq!(next_page_url(""), None);
        assert_eq!(next_page_url("<broken; rel=\"next\""), None);
    }

    #[test]
    fn only_links_back_to_the_same_api_are_followed() {
        let base = "http://127.0.0.1:9000/";
        assert_eq!(
            below_api_base("http://127.0.0.1:9000/orgs/acme/repos?page=2", base).as_deref(),
            Some("/orgs/acme/repos?page=2")
        );
        assert_eq!(
            below_api_base(
                "HTTPS://API.GITHUB.COM/organizations/1/repos?page=2",
                "https://api.github.com"
            )
            .as_deref(),
            Some("/organizations/1/repos?page=2")
        );
        for foreign in [
            "https://evil.example/orgs/acme/repos?page=2",
            "http://127.0.0.1:90001/orgs/acme/repos",
            "http://127.0.0.1:9000.evil/x",
            "http://127.0.0.1:9000//evil.example/x",
            "http://127.0.0.1:9000/a\r\nb",
            "http:",
        ] {
            assert_eq!(below_api_base(foreign, base), None, "{foreign}");
        }
    }

    #[test]
    fn the_first_page_asks_for_public_repos_a_hundred_at_a_time() {
        assert_eq!(
            org_repos_first_page("acme"),
            "/orgs/acme/repos?type=public&per_page=100"
        );
    }
}
