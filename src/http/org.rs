//! `GET /api/github/org/repos`: the repositories chimney serves, in org mode
//! the discovered ones, otherwise the configured one. Discovery and routing
//! live in `service::org`.

use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::domain::OrgRepo;
use crate::service::org::OrgService;

/// The repositories served under `/api/github/...`.
#[derive(Debug, Clone, Object)]
pub struct OrgRepos {
    /// The organisation; in single-repo mode the configured repository's
    /// owner.
    pub org: String,
    /// `org` when `GITHUB_ORG` is set, else `single-repo`.
    pub mode: String,
    /// The repositories: in org mode those discovered so far (empty until
    /// the first discovery finishes), archived and excluded ones left out.
    pub repos: Vec<OrgRepoSummary>,
}

/// One repository.
#[derive(Debug, Clone, Object)]
pub struct OrgRepoSummary {
    /// `owner/name`; proxied at `/api/github/{owner}/{name}/...` in org mode.
    pub full_name: String,
    /// The name without the owner.
    pub name: String,
    /// GitHub's description.
    #[oai(nullable)]
    pub description: Option<String>,
    /// The main language.
    #[oai(nullable)]
    pub language: Option<String>,
    /// Open issues and pull requests, as GitHub counts them.
    #[oai(nullable)]
    pub open_issues_count: Option<u64>,
    /// When it last changed (RFC 3339).
    #[oai(nullable)]
    pub updated_at: Option<String>,
    /// Its page on github.com.
    pub html_url: String,
}

impl From<OrgRepo> for OrgRepoSummary {
    fn from(repo: OrgRepo) -> Self {
        Self {
            name: repo.name().to_owned(),
            full_name: repo.full_name.to_string(),
            description: repo.description,
            language: repo.language,
            open_issues_count: repo.open_issues_count,
            updated_at: repo.updated_at,
            html_url: repo.html_url,
        }
    }
}

/// The org listing operation.
pub struct OrgApi {
    service: OrgService,
}

impl OrgApi {
    /// The API over an org service.
    pub fn new(service: OrgService) -> Self {
        Self { service }
    }
}

/// Aggregated views for the dashboard.
#[OpenApi(tag = "super::Tag::Dashboard")]
impl OrgApi {
    /// Repositories served
    ///
    /// In org mode, the organisation's public repositories discovered in the
    /// background (refreshed every 15 minutes); in single-repo mode, the
    /// configured repository as GitHub describes it (its names only when
    /// GitHub cannot be asked).
    #[oai(path = "/api/github/org/repos", method = "get")]
    async fn org_repos(&self) -> Json<OrgRepos> {
        let listing = self.service.listing().await;
        Json(OrgRepos {
            org: listing.org,
            mode: listing.mode.as_str().to_owned(),
            repos: listing
                .repos
                .into_iter()
                .map(OrgRepoSummary::from)
                .collect(),
        })
    }
}
