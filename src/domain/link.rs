//! Rewriting GitHub's `Link` header so pagination stays on chimney.
//!
//! GitHub's page links are absolute and use both `/repos/{owner}/{repo}/…`
//! and `/repositories/{id}/…` for the same repository
//! (<https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>).
//! Links into the repository being served become relative `/api/github/…`
//! URLs with their query kept; every other link is left as it was.

use super::request::RepoName;

/// The repository a response belongs to, and where chimney serves it.
#[derive(Debug, Clone)]
pub struct LinkTarget<'a> {
    /// The configured GitHub API base URL, e.g. `https://api.github.com`.
    pub api_base: &'a str,
    /// The repository being served.
    pub repo: &'a RepoName,
    /// Its numeric id, when known.
    pub repo_id: Option<u64>,
    /// The GitHub path of the request being answered (e.g. `/issues`): a
    /// `/repositories/{id}` link to this same path is a page of this
    /// resource even when the id is not known.
    pub request_path: &'a str,
    /// Where chimney serves the repository, e.g. `/api/github`.
    pub local_prefix: &'a str,
}

/// Rewrites every URL in a `Link` header value that points into the served
/// repository; the rest of the header is kept byte for byte.
pub fn rewrite_link_header(value: &str, target: &LinkTarget<'_>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|c| open + c) else {
            break;
        };
        out.push_str(&rest[..=open]);
        let url = &rest[open + 1..close];
        match local_url(url, target) {
            Some(local) => out.push_str(&local),
            None => out.push_str(url),
        }
        out.push('>');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

fn local_url(url: &str, target: &LinkTarget<'_>) -> Option<String> {
    let base = target.api_base.trim_end_matches('/');
    let after_base = strip_prefix_ignore_case(url, base)?;
    if !(after_base.starts_with('/') || after_base.is_empty()) {
        return None;
    }
    let (path, query) = match after_base.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (after_base, None),
    };
    let tail = repo_tail(path, target)?;
    let mut local = format!(
        "{}{}",
        target.local_prefix,
        if tail.is_empty() { "/" } else { tail }
    );
    if let Some(q) = query {
        local.push('?');
        local.push_str(q);
    }
    Some(local)
}

/// The part of `path` below the served repository, if it points there.
fn repo_tail<'p>(path: &'p str, target: &LinkTarget<'_>) -> Option<&'p str> {
    if let Some(rest) = path.strip_prefix("/repos/") {
        let name_len = target.repo.as_str().len();
        let candidate = rest.get(..name_len)?;
        let tail = &rest[name_len..];
        let at_boundary = tail.is_empty() || tail.starts_with('/');
        return (target.repo.same_as(candidate) && at_boundary).then_some(tail);
    }
    let rest = path.strip_prefix("/repositories/")?;
    let id_len = rest.find('/').unwrap_or(rest.len());
    let id: u64 = rest[..id_len].parse().ok()?;
    let tail = &rest[id_len..];
    let same_repo = target.repo_id == Some(id) || (!tail.is_empty() && tail == target.request_path);
    same_repo.then_some(tail)
}

fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoName {
        RepoName::parse("octokit-fixture-org/hello-world").unwrap()
    }

    fn target<'a>(repo: &'a RepoName, request_path: &'a str) -> LinkTarget<'a> {
        LinkTarget {
            api_base: "https://api.github.com",
            repo,
            repo_id: None,
            request_path,
            local_prefix: "/api/github",
        }
    }

    #[test]
    fn repositories_id_page_links_for_the_same_path_become_local() {
        let repo = repo();
        let header = r#"<https://api.github.com/repositories/515435940/issues?per_page=3&page=2>; rel="next", <https://api.github.com/repositories/515435940/issues?per_page=3&page=5>; rel="last""#;
        assert_eq!(
            rewrite_link_header(header, &target(&repo, "/issues")),
            r#"</api/github/issues?per_page=3&page=2>; rel="next", </api/github/issues?per_page=3&page=5>; rel="last""#
        );
    }

    #[test]
    fn repos_links_to_the_served_repo_become_local_in_any_case() {
        let repo = repo();
        let header = r#"<https://api.github.com/repos/Octokit-Fixture-Org/hello-world/pulls?page=2>; rel="next""#;
        assert_eq!(
            rewrite_link_header(header, &target(&repo, "/pulls")),
            r#"</api/github/pulls?page=2>; rel="next""#
        );
    }

    #[test]
    fn a_known_repo_id_rewrites_any_path_below_it() {
        let repo = repo();
        let mut t = target(&repo, "/issues");
        t.repo_id = Some(7);
        let header = "<https://api.github.com/repositories/7/pulls?page=2>; rel=\"next\"";
        assert_eq!(
            rewrite_link_header(header, &t),
            "</api/github/pulls?page=2>; rel=\"next\""
        );
    }

    #[test]
    fn links_elsewhere_stay_absolute() {
        let repo = repo();
        for header in [
            "<https://api.github.com/repos/other/repo/issues?page=2>; rel=\"next\"",
            "<https://api.github.com/repos/octokit-fixture-org/hello-world-2/issues>; rel=\"next\"",
            "<https://api.github.com/repositories/99/pulls?page=2>; rel=\"next\"",
            "<https://evil.example/repos/octokit-fixture-org/hello-world/issues>; rel=\"next\"",
            "<https://api.github.com.evil.example/repos/octokit-fixture-org/hello-world/issues>; rel=\"next\"",
            "<https://api.github.com/orgs/octokit/repos?page=2>; rel=\"next\"",
        ] {
            assert_eq!(
                rewrite_link_header(header, &target(&repo, "/issues")),
                header
            );
        }
    }

    #[test]
    fn a_custom_api_base_and_prefix_are_respected() {
        let repo = repo();
        let t = LinkTarget {
            api_base: "http://127.0.0.1:9999/api/v3/",
            repo: &repo,
            repo_id: None,
            request_path: "/issues",
            local_prefix: "/api/github/octokit-fixture-org/hello-world",
        };
        let header = "<http://127.0.0.1:9999/api/v3/repos/octokit-fixture-org/hello-world/issues?page=3>; rel=\"last\"";
        assert_eq!(
            rewrite_link_header(header, &t),
            "</api/github/octokit-fixture-org/hello-world/issues?page=3>; rel=\"last\""
        );
    }

    #[test]
    fn malformed_headers_are_left_alone() {
        let repo = repo();
        assert_eq!(
            rewrite_link_header("<broken; rel=next", &target(&repo, "/issues")),
            "<broken; rel=next"
        );
        assert_eq!(rewrite_link_header("", &target(&repo, "/issues")), "");
    }
}
