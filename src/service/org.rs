//! Org mode: discovering an organisation's public repositories in the
//! background, the directory the proxy consults to route
//! `/api/github/{owner}/{repo}/...`, and the listing behind
//! `GET /api/github/org/repos` (in both modes).
//!
//! Discovery asks GitHub through the `UpstreamGithub` port directly (the
//! org list is not a cached resource) and never delays start-up: until the
//! first discovery succeeds the directory is empty and every path is a path
//! of the configured repository. Which repositories qualify, and how pages
//! are followed, is decided in `domain::org`.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::domain::{
    GithubPath, MAX_DISCOVERY_PAGES, NormalisedQuery, OrgRepo, RepoExclusions, RepoName,
    below_api_base, next_page_url, org_repos_first_page, served_repos,
};
use crate::ports::{UpstreamError, UpstreamGithub, UpstreamRequest};
use crate::service::proxy::{ProxyReply, ProxyRequest, ProxyService, ProxyTarget};

/// How often the organisation's repositories are listed again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(15 * 60);

/// First retry delay after a failed discovery; doubles up to
/// [`REFRESH_EVERY`], so a GitHub outage at start-up is repaired quickly
/// without hammering GitHub.
const RETRY_FIRST: Duration = Duration::from_secs(30);

/// The discovered repositories, shared by the proxy endpoint, the listing
/// and the discovery task. Cloning is cheap and shares the set.
#[derive(Clone, Default)]
pub struct OrgDirectory {
    // A std lock around an `Arc`: readers clone the `Arc` and release the
    // lock at once, the writer swaps in a whole new set every 15 minutes,
    // and nothing ever awaits while holding it.
    current: Arc<RwLock<Arc<Discovered>>>,
}

#[derive(Default)]
struct Discovered {
    repos: Vec<OrgRepo>,
    /// Lower-cased `owner/name` → the name as GitHub spells it.
    by_name: HashMap<String, RepoName>,
    refreshed_at: Option<SystemTime>,
}

impl OrgDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The discovered repository `requested` names (case-insensitively), as
    /// GitHub spells it; `None` when it was not discovered.
    pub fn resolve(&self, requested: &RepoName) -> Option<RepoName> {
        let current = self.snapshot();
        if current.by_name.is_empty() {
            return None;
        }
        current
            .by_name
            .get(&requested.as_str().to_ascii_lowercase())
            .cloned()
    }

    /// The discovered repositories, in GitHub's order.
    pub fn repos(&self) -> Vec<OrgRepo> {
        self.snapshot().repos.clone()
    }

    /// When the set was last replaced by a successful discovery.
    pub fn refreshed_at(&self) -> Option<SystemTime> {
        self.snapshot().refreshed_at
    }

    /// Replaces the whole set.
    pub fn replace(&self, repos: Vec<OrgRepo>, at: SystemTime) {
        let by_name = repos
            .iter()
            .map(|r| {
                (
                    r.full_name.as_str().to_ascii_lowercase(),
                    r.full_name.clone(),
                )
            })
            .collect();
        let next = Arc::new(Discovered {
            repos,
            by_name,
            refreshed_at: Some(at),
        });
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
    }

    fn snapshot(&self) -> Arc<Discovered> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Why a discovery failed; the previous set stays in use.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// GitHub could not be asked.
    #[error("listing the organisation's repositories failed")]
    Upstream(#[from] UpstreamError),
    /// GitHub answered with something other than 200.
    #[error("GitHub answered {status} to {path}")]
    Status {
        /// The status.
        status: u16,
        /// The page requested.
        path: String,
    },
    /// The page was not a repository list.
    #[error("GitHub's repository list did not parse")]
    Parse(#[source] serde_json::Error),
}

/// What discovery needs to know.
#[derive(Debug, Clone)]
pub struct OrgDiscoveryConfig {
    /// The organisation.
    pub org: String,
    /// Repositories never served.
    pub exclusions: RepoExclusions,
    /// The GitHub API base URL; `Link`s are only followed back to it.
    pub api_base: String,
    /// How often to list the repositories again.
    pub refresh_every: Duration,
}

/// Lists the organisation's repositories and keeps the directory current.
#[derive(Clone)]
pub struct OrgDiscovery {
    upstream: Arc<dyn UpstreamGithub>,
    config: Arc<OrgDiscoveryConfig>,
    directory: OrgDirectory,
}

impl OrgDiscovery {
    /// Discovery for `config.org`, filling `directory`.
    pub fn new(
        upstream: Arc<dyn UpstreamGithub>,
        config: OrgDiscoveryConfig,
        directory: OrgDirectory,
    ) -> Self {
        Self {
            upstream,
            config: Arc::new(config),
            directory,
        }
    }

    /// Lists every served repository: follows `rel="next"` links back to
    /// the same API for at most [`MAX_DISCOVERY_PAGES`] pages, and drops
    /// archived and excluded repositories.
    ///
    /// # Errors
    /// Fails when any page cannot be fetched or parsed, so a half-read list
    /// never replaces a complete one.
    pub async fn discover(&self) -> Result<Vec<OrgRepo>, DiscoveryError> {
        let mut found = Vec::new();
        let mut next = Some(org_repos_first_page(&self.config.org));
        let mut pages = 0;
        while let Some(path) = next.take() {
            if pages == MAX_DISCOVERY_PAGES {
                tracing::warn!(
                    org = %self.config.org,
                    pages,
                    "organisation has more repositories than discovery reads; the rest are not served"
                );
                break;
            }
            pages += 1;
            let response = self
                .upstream
                .get(UpstreamRequest {
                    path_and_query: path.clone(),
                    if_none_match: None,
                })
                .await?;
            if response.status != 200 {
                return Err(DiscoveryError::Status {
                    status: response.status,
                    path,
                });
            }
            let page: Vec<RepoJson> =
                serde_json::from_slice(&response.body).map_err(DiscoveryError::Parse)?;
            found.extend(page.into_iter().filter_map(RepoJson::into_repo));
            next = response.headers.get("link").and_then(|link| {
                let url = next_page_url(link)?;
                let below = below_api_base(url, &self.config.api_base);
                if below.is_none() {
                    tracing::warn!(
                        url,
                        "not following a next-page link away from the GitHub API"
                    );
                }
                below
            });
        }
        Ok(served_repos(found, &self.config.exclusions))
    }

    /// Discovers now, then every `refresh_every`, for as long as it runs.
    /// A failure keeps the previous set and retries sooner.
    pub async fn run(self) {
        let mut retry = RETRY_FIRST;
        loop {
            let wait = match self.discover().await {
                Ok(repos) => {
                    tracing::info!(org = %self.config.org, repos = repos.len(), "organisation repositories discovered");
                    self.directory.replace(repos, SystemTime::now());
                    retry = RETRY_FIRST;
                    self.config.refresh_every
                }
                Err(error) => {
                    let cause = std::error::Error::source(&error).map(ToString::to_string);
                    tracing::warn!(org = %self.config.org, %error, cause, retry_in_s = retry.as_secs(), "organisation discovery failed; keeping the previous set");
                    let wait = retry.min(self.config.refresh_every);
                    retry = (retry * 2).min(self.config.refresh_every);
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Stops the discovery task when dropped (the server stopped).
pub struct DiscoveryTask(Option<tokio::task::JoinHandle<()>>);

impl DiscoveryTask {
    /// Starts `discovery` in the background; `None` runs nothing.
    pub fn spawn(discovery: Option<OrgDiscovery>) -> Self {
        Self(discovery.map(|d| tokio::spawn(d.run())))
    }
}

impl Drop for DiscoveryTask {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Which mode the listing reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgMode {
    /// `org` is set: discovered repositories are served.
    Org,
    /// Only the configured repository is served.
    SingleRepo,
}

impl OrgMode {
    /// `org` or `single-repo`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Org => "org",
            Self::SingleRepo => "single-repo",
        }
    }
}

/// What `GET /api/github/org/repos` answers.
#[derive(Debug, Clone)]
pub struct OrgListing {
    /// The organisation, or in single-repo mode the configured repository's
    /// owner.
    pub org: String,
    /// The mode.
    pub mode: OrgMode,
    /// The repositories served.
    pub repos: Vec<OrgRepo>,
}

/// Builds the listing.
#[derive(Clone)]
pub struct OrgService {
    org: Option<String>,
    directory: OrgDirectory,
    proxy: ProxyService,
    default_target: ProxyTarget,
}

impl OrgService {
    /// In org mode (`org` set) lists `directory`; otherwise the configured
    /// repository, read through `proxy` (and so through the cache).
    pub fn new(
        org: Option<String>,
        directory: OrgDirectory,
        proxy: ProxyService,
        default_target: ProxyTarget,
    ) -> Self {
        Self {
            org,
            directory,
            proxy,
            default_target,
        }
    }

    /// The current listing.
    pub async fn listing(&self) -> OrgListing {
        match &self.org {
            Some(org) => OrgListing {
                org: org.clone(),
                mode: OrgMode::Org,
                repos: self.directory.repos(),
            },
            None => OrgListing {
                org: self.default_target.repo.owner().to_owned(),
                mode: OrgMode::SingleRepo,
                repos: vec![self.configured_repo().await],
            },
        }
    }

    /// `GET /repos/{repo}` through the cache; just the names when GitHub
    /// cannot say more.
    async fn configured_repo(&self) -> OrgRepo {
        let repo = &self.default_target.repo;
        let bare = OrgRepo {
            full_name: repo.clone(),
            description: None,
            language: None,
            open_issues_count: None,
            updated_at: None,
            html_url: format!("https://github.com/{repo}"),
            archived: false,
        };
        let Ok(path) = GithubPath::parse("/") else {
            return bare;
        };
        let request = ProxyRequest {
            target: self.default_target.clone(),
            path,
            query: NormalisedQuery::default(),
            if_none_match: None,
        };
        let ProxyReply::Cached { entry, .. } = self.proxy.handle(&request).await else {
            tracing::warn!(%repo, "GitHub did not describe the configured repository; listing its name only");
            return bare;
        };
        match serde_json::from_slice::<RepoJson>(&entry.body) {
            Ok(json) => json.into_repo().unwrap_or(bare),
            Err(error) => {
                tracing::warn!(%repo, %error, "the configured repository's description did not parse");
                bare
            }
        }
    }
}

/// A repository as GitHub lists it (`GET /orgs/{org}/repos`, `GET /repos/{repo}`).
#[derive(Deserialize)]
struct RepoJson {
    full_name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    open_issues_count: Option<u64>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    archived: bool,
}

impl RepoJson {
    /// `None` for a name chimney could not route (never sent by GitHub).
    fn into_repo(self) -> Option<OrgRepo> {
        let full_name = match RepoName::parse(&self.full_name) {
            Ok(name) => name,
            Err(_) => {
                tracing::warn!(full_name = %self.full_name, "skipping a repository with an unusable name");
                return None;
            }
        };
        Some(OrgRepo {
            html_url: self
                .html_url
                .unwrap_or_else(|| format!("https://github.com/{full_name}")),
            full_name,
            description: self.description,
            language: self.language,
            open_issues_count: self.open_issues_count,
            updated_at: self.updated_at,
            archived: self.archived,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use bytes::Bytes;

    use crate::domain::HeaderList;
    use crate::ports::UpstreamResponse;

    /// A page's headers and body.
    type Page = (Vec<(&'static str, String)>, String);

    /// Serves canned pages by path and records what was asked.
    struct Pages {
        pages: Mutex<HashMap<String, Page>>,
        asked: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl UpstreamGithub for Pages {
        async fn get(&self, request: UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
            self.asked
                .lock()
                .unwrap()
                .push(request.path_and_query.clone());
            let page = self
                .pages
                .lock()
                .unwrap()
                .get(&request.path_and_query)
                .cloned();
            let Some((headers, body)) = page else {
                return Ok(UpstreamResponse {
                    status: 404,
                    headers: HeaderList::new(),
                    body: Bytes::from_static(b"{}"),
                });
            };
            let mut list = HeaderList::new();
            for (name, value) in headers {
                list.append(name, value.clone());
            }
            Ok(UpstreamResponse {
                status: 200,
                headers: list,
                body: Bytes::from(body.clone()),
            })
        }
    }

    fn repo_json(full_name: &str, archived: bool) -> serde_json::Value {
        serde_json::json!({
            "full_name": full_name,
            "name": full_name.split('/').nth(1),
            "archived": archived,
            "html_url": format!("https://github.com/{full_name}"),
            "open_issues_count": 1,
        })
    }

    fn discovery(pages: Pages, exclusions: &[&str]) -> (OrgDiscovery, Arc<Pages>) {
        let pages = Arc::new(pages);
        let upstream: Arc<dyn UpstreamGithub> = pages.clone();
        let discovery = OrgDiscovery::new(
            upstream,
            OrgDiscoveryConfig {
                org: "acme".to_owned(),
                exclusions: RepoExclusions::new(exclusions.iter().copied()),
                api_base: "http://gh.test".to_owned(),
                refresh_every: REFRESH_EVERY,
            },
            OrgDirectory::new(),
        );
        (discovery, pages)
    }

    #[tokio::test]
    async fn discovery_follows_next_links_and_filters() {
        let first = "/orgs/acme/repos?type=public&per_page=100";
        let second = "/organizations/7/repos?type=public&per_page=100&page=2";
        let link = format!("<http://gh.test{second}>; rel=\"next\"");
        let mut map = HashMap::new();
        map.insert(
            first.to_owned(),
            (
                vec![("Link", link)],
                serde_json::json!([repo_json("acme/a", false), repo_json("acme/old", true)])
                    .to_string(),
            ),
        );
        map.insert(
            second.to_owned(),
            (
                vec![],
                serde_json::json!([repo_json("acme/b", false), repo_json("acme/skip", false)])
                    .to_string(),
            ),
        );
        let (discovery, pages) = discovery(
            Pages {
                pages: Mutex::new(map),
                asked: Mutex::new(Vec::new()),
            },
            &["SKIP"],
        );
        let repos = discovery.discover().await.unwrap();
        let names: Vec<_> = repos.iter().map(|r| r.full_name.as_str()).collect();
        assert_eq!(names, ["acme/a", "acme/b"]);
        assert_eq!(*pages.asked.lock().unwrap(), [first, second]);
    }

    #[tokio::test]
    async fn a_link_loop_is_cut_off_after_the_page_limit() {
        let first = "/orgs/acme/repos?type=public&per_page=100";
        let link = format!("<http://gh.test{first}>; rel=\"next\"");
        let mut map = HashMap::new();
        map.insert(
            first.to_owned(),
            (
                vec![("Link", link)],
                serde_json::json!([repo_json("acme/a", false)]).to_string(),
            ),
        );
        let (discovery, pages) = discovery(
            Pages {
                pages: Mutex::new(map),
                asked: Mutex::new(Vec::new()),
            },
            &[],
        );
        let repos = discovery.discover().await.unwrap();
        assert_eq!(repos.len(), 1);
        assert_eq!(pages.asked.lock().unwrap().len(), MAX_DISCOVERY_PAGES);
    }

    #[tokio::test]
    async fn a_failed_page_fails_the_whole_discovery() {
        let first = "/orgs/acme/repos?type=public&per_page=100";
        let link = "<http://gh.test/organizations/7/repos?page=2>; rel=\"next\"".to_owned();
        let mut map = HashMap::new();
        map.insert(
            first.to_owned(),
            (
                vec![("Link", link)],
                serde_json::json!([repo_json("acme/a", false)]).to_string(),
            ),
        );
        let (discovery, _) = discovery(
            Pages {
                pages: Mutex::new(map),
                asked: Mutex::new(Vec::new()),
            },
            &[],
        );
        assert!(matches!(
            discovery.discover().await,
            Err(DiscoveryError::Status { status: 404, .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_set_is_refreshed_and_survives_a_failed_refresh() {
        let first = "/orgs/acme/repos?type=public&per_page=100";
        let page = |names: &[&str]| -> Page {
            let repos: Vec<_> = names.iter().map(|n| repo_json(n, false)).collect();
            (vec![], serde_json::Value::from(repos).to_string())
        };
        let mut map = HashMap::new();
        map.insert(first.to_owned(), page(&["acme/a"]));
        let (discovery, pages) = discovery(
            Pages {
                pages: Mutex::new(map),
                asked: Mutex::new(Vec::new()),
            },
            &[],
        );
        let directory = discovery.directory.clone();
        let names = || -> Vec<String> {
            directory
                .repos()
                .iter()
                .map(|r| r.full_name.to_string())
                .collect()
        };
        let task = DiscoveryTask::spawn(Some(discovery));
        let settle = || async {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        };

        settle().await;
        assert_eq!(names(), ["acme/a"]);

        pages
            .pages
            .lock()
            .unwrap()
            .insert(first.to_owned(), page(&["acme/a", "acme/b"]));
        tokio::time::advance(REFRESH_EVERY - Duration::from_secs(1)).await;
        settle().await;
        assert_eq!(names(), ["acme/a"], "not refreshed before 15 minutes");
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        assert_eq!(names(), ["acme/a", "acme/b"]);

        pages.pages.lock().unwrap().clear();
        tokio::time::advance(REFRESH_EVERY).await;
        settle().await;
        assert_eq!(
            names(),
            ["acme/a", "acme/b"],
            "a failed refresh keeps the set"
        );
        let asked = pages.asked.lock().unwrap().len();
        tokio::time::advance(RETRY_FIRST).await;
        settle().await;
        assert_eq!(
            pages.asked.lock().unwrap().len(),
            asked + 1,
            "a failure is retried sooner than the next refresh"
        );
        drop(task);
    }

    #[test]
    fn the_directory_resolves_names_case_insensitively_to_githubs_spelling() {
        let directory = OrgDirectory::new();
        let name = |s| RepoName::parse(s).unwrap();
        assert_eq!(directory.resolve(&name("Acme/Tools")), None);
        let repo = RepoJson {
            full_name: "Acme/Tools".to_owned(),
            description: None,
            language: None,
            open_issues_count: None,
            updated_at: None,
            html_url: None,
            archived: false,
        }
        .into_repo()
        .unwrap();
        directory.replace(vec![repo], SystemTime::now());
        assert_eq!(
            directory.resolve(&name("acme/tools")),
            Some(name("Acme/Tools"))
        );
        assert_eq!(directory.resolve(&name("acme/other")), None);
        assert!(directory.refreshed_at().is_some());
        assert_eq!(
            directory.repos()[0].html_url,
            "https://github.com/Acme/Tools"
        );
    }
}
