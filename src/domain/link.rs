//! Rewriting GitHub's `Link` header so pagination stays on chimney.
//!
//! GitHub's page links are absolute and use both `/repos/{owner}/{repo}/…`
//! and `/repositories/{id}/…` for the same repository
//! (<https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>).
//! Links into the repository being served become relative `/api/github/…`
//! URLs with their query kept; every other link is left as it was. A
//! `/repositories/{id}` link counts as the served repository only when
//! `id` is known to be its id: GitHub's answer alone does not prove it.
//! The same rule decides which redirects may be passed on
//! ([`local_location`]).

use super::request::RepoName;

/// The repository a response belongs to, and where chimney serves it.
#[derive(Debug, Clone)]
pub struct LinkTarget<'a> {
    /// The configured GitHub API base URL, e.g. `https://api.github.com`.
    pub api_base: &'a str,
    /// The repository being served.
    pub repo: &'a RepoName,
    /// Its numeric id, when known; `/repositories/{id}` links are only
    /// rewritten for this id.
    pub repo_id: Option<u64>,
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

/// The relative `/api/github/…` URL for a redirect's `Location`, when it
/// points at the served repository on the API origin; `None` for anything
/// else (another repository, another host such as a signed download URL,
/// a relative or malformed value), which must not reach clients.
pub fn local_location(value: &str, target: &LinkTarget<'_>) -> Option<String> {
    local_url(value.trim(), target)
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
    (target.repo_id == Some(id)).then_some(tail)
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

    fn target<'a>(repo: &'a RepoName, _request_path: &str) -> LinkTarget<'a> {
        LinkTarget {
            api_base: "https://api.github.com",
            repo,
            repo_id: None,
            local_prefix: "/api/github",
        }
    }

    #[test]
    fn repositories_id_page_links_become_local_only_for_the_served_repos_id() {
        let repo = repo();
        let header = r#"<https://api.github.com/repositories/515435940/issues?per_page=3&page=2>; rel="next", <https://api.github.com/repositories/515435940/issues?per_page=3&page=5>; rel="last""#;
        let mut t = target(&repo, "/issues");
        assert_eq!(
            rewrite_link_header(header, &t),
            header,
            "an unknown id is not the served repository, even for the same path"
        );
        t.repo_id = Some(515_435_940);
        assert_eq!(
            rewrite_link_header(header, &t),
            r#"</api/github/issues?per_page=3&page=2>; rel="next", </api/github/issues?per_page=3&page=5>; rel="last""#
        );
        t.repo_id = Some(1);
        assert_eq!(rewrite_link_header(header, &t), header);
    }

    #[test]
    fn redirects_are_local_only_into_the_served_repository() {
        let repo = repo();
        let mut t = target(&repo, "/issues/1");
        t.repo_id = Some(7);
        assert_eq!(
            local_location(
                "https://api.github.com/repos/octokit-fixture-org/hello-world/issues/2",
                &t
            ),
            Some("/api/github/issues/2".to_owned())
        );
        assert_eq!(
            local_location("https://api.github.com/repositories/7/issues/2?x=1", &t),
            Some("/api/github/issues/2?x=1".to_owned())
        );
        for elsewhere in [
            "https://api.github.com/repositories/8/issues/2",
            "https://api.github.com/repos/other/repo/issues/2",
            "https://codeload.github.com/octokit-fixture-org/hello-world/legacy.tar.gz/refs/heads/main",
            "https://objects.githubusercontent.com/x?X-Amz-Signature=s",
            "/repos/octokit-fixture-org/hello-world/issues/2",
            "https://api.github.com.evil.example/repos/octokit-fixture-org/hello-world",
            "",
        ] {
            assert_eq!(local_location(elsewhere, &t), None, "{elsewhere}");
        }
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
