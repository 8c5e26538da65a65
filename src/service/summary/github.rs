//! GitHub's JSON on the summary path: the issue, pull request and workflow
//! run lists, reduced to what the summary needs.

use serde::{Deserialize, Serialize};

use crate::domain::{ClosedPull, IssueItem, RunOutcome};

/// An entry of `GET /repos/{repo}/issues`: only whether it is a PR matters.
#[derive(Deserialize)]
pub(super) struct IssueJson {
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

impl IssueJson {
    pub(super) fn into_item(self) -> IssueItem {
        IssueItem {
            is_pull_request: self.pull_request.is_some(),
        }
    }
}

/// An entry of `GET /repos/{repo}/pulls`.
#[derive(Deserialize)]
pub(super) struct PullJson {
    number: u64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    user: Option<UserJson>,
    #[serde(default)]
    merged_at: Option<String>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
}

#[derive(Deserialize)]
struct UserJson {
    login: String,
}

impl PullJson {
    pub(super) fn into_closed(self) -> ClosedPull {
        ClosedPull {
            number: self.number,
            title: self.title.unwrap_or_default(),
            html_url: self.html_url.unwrap_or_default(),
            author: self.user.map(|u| u.login),
            merged_at: self.merged_at,
            merge_commit_sha: self.merge_commit_sha,
        }
    }
}

/// `GET /repos/{repo}/actions/workflows/{workflow}/runs`.
#[derive(Deserialize)]
pub(super) struct RunsJson {
    pub(super) workflow_runs: Vec<WorkflowRun>,
}

/// A run of the build workflow as GitHub lists it, reduced to the fields
/// the summary reports. It is also the run's shape in the stored summary;
/// `http::summary` documents it for clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRun {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub run_number: Option<u64>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub head_branch: Option<String>,
    #[serde(default)]
    pub head_sha: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

impl RunOutcome for WorkflowRun {
    fn conclusion(&self) -> Option<&str> {
        self.conclusion.as_deref()
    }
}
