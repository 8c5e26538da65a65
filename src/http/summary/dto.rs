//! The documented shape of `GET /api/pipeline/summary`: poem-openapi
//! objects mirroring `service::summary::PipelineSummary`, which the services
//! may not derive for, plus the fields the original chimney's readers use
//! (derived here, never stored). A test below fails when a stored field is
//! served differently, so the document and the stored summary cannot drift.

use poem_openapi::Object;

use crate::service::summary::{self, WorkflowRun};

/// The pipeline summary as served and as stored in the cache.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct PipelineSummary {
    /// The wgmesh version chimney was built for.
    pub wgmesh_version: String,
    /// Open issues, pull requests not counted (first 100 listed); `null`
    /// when missing.
    #[oai(nullable)]
    pub open_issues: Option<u64>,
    /// Open pull requests (first 100 listed); `null` when missing.
    #[oai(nullable)]
    pub open_prs: Option<u64>,
    /// The most recently updated merged pull request among the last 10
    /// closed; `null` when none was merged or the part is missing.
    #[oai(nullable)]
    pub last_merged_pr: Option<LastMergedPr>,
    /// The build workflow's last 10 completed runs, newest first; `null`
    /// when missing.
    #[oai(nullable)]
    pub recent_workflow_runs: Option<Vec<RecentRun>>,
    /// Share of those runs that succeeded, percent with one decimal; `null`
    /// when there are no runs or they are missing.
    #[oai(nullable)]
    pub goose_success_rate_pct: Option<f64>,
    /// When this summary was built (RFC 3339, UTC).
    pub fetched_at: String,
    /// The parts GitHub could not supply this time (`open_issues`,
    /// `open_prs`, `last_merged_pr`, `recent_workflow_runs`); empty when the
    /// summary is complete.
    pub missing: Vec<String>,
}

/// A merged pull request.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct LastMergedPr {
    /// The PR number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// Its page on github.com.
    pub html_url: String,
    /// The author's login.
    #[oai(nullable)]
    pub user: Option<String>,
    /// When it was merged (RFC 3339).
    pub merged_at: String,
    /// The merge commit (GitHub's `merge_commit_sha`), as the original
    /// chimney reported it.
    #[oai(nullable)]
    pub sha: Option<String>,
}

/// A completed workflow run.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct RecentRun {
    /// GitHub's run id.
    pub id: u64,
    /// The workflow's name.
    #[oai(nullable)]
    pub name: Option<String>,
    /// The run's number within the workflow.
    #[oai(nullable)]
    pub run_number: Option<u64>,
    /// Always `completed` here.
    #[oai(nullable)]
    pub status: Option<String>,
    /// `success`, `failure`, `cancelled`, …
    #[oai(nullable)]
    pub conclusion: Option<String>,
    /// The branch built.
    #[oai(nullable)]
    pub head_branch: Option<String>,
    /// The commit built.
    #[oai(nullable)]
    pub head_sha: Option<String>,
    /// The run's page on github.com.
    #[oai(nullable)]
    pub html_url: Option<String>,
    /// When it was created (RFC 3339).
    #[oai(nullable)]
    pub created_at: Option<String>,
    /// When it last changed (RFC 3339).
    #[oai(nullable)]
    pub updated_at: Option<String>,
    /// The workflow's name (the same as `name`), as the original chimney
    /// reported it.
    #[oai(nullable)]
    pub workflow_name: Option<String>,
    /// When the run started (its `created_at`), as the original chimney
    /// reported it.
    #[oai(nullable)]
    pub run_at: Option<String>,
    /// The run's page (the same as `html_url`), as the original chimney
    /// reported it.
    #[oai(nullable)]
    pub url: Option<String>,
}

impl From<&summary::PipelineSummary> for PipelineSummary {
    fn from(stored: &summary::PipelineSummary) -> Self {
        Self {
            wgmesh_version: stored.wgmesh_version.clone(),
            open_issues: stored.open_issues,
            open_prs: stored.open_prs,
            last_merged_pr: stored.last_merged_pr.as_ref().map(LastMergedPr::from),
            recent_workflow_runs: stored
                .recent_workflow_runs
                .as_ref()
                .map(|runs| runs.iter().map(RecentRun::from).collect()),
            goose_success_rate_pct: stored.goose_success_rate_pct,
            fetched_at: stored.fetched_at.clone(),
            missing: stored.missing.clone(),
        }
    }
}

impl From<&summary::LastMergedPr> for LastMergedPr {
    fn from(pull: &summary::LastMergedPr) -> Self {
        Self {
            number: pull.number,
            title: pull.title.clone(),
            html_url: pull.html_url.clone(),
            user: pull.user.clone(),
            merged_at: pull.merged_at.clone(),
            sha: pull.sha.clone(),
        }
    }
}

impl From<&WorkflowRun> for RecentRun {
    fn from(run: &WorkflowRun) -> Self {
        Self {
            id: run.id,
            name: run.name.clone(),
            run_number: run.run_number,
            status: run.status.clone(),
            conclusion: run.conclusion.clone(),
            head_branch: run.head_branch.clone(),
            head_sha: run.head_sha.clone(),
            html_url: run.html_url.clone(),
            created_at: run.created_at.clone(),
            updated_at: run.updated_at.clone(),
            workflow_name: run.name.clone(),
            run_at: run.created_at.clone(),
            url: run.html_url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ToJSON as _;

    use super::*;

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn the_served_document_serialises_exactly_like_the_stored_summary() {
        let stored = summary::PipelineSummary {
            wgmesh_version: "v1.2.3".to_owned(),
            open_issues: Some(3),
            open_prs: None,
            last_merged_pr: Some(summary::LastMergedPr {
                number: 7,
                title: "Fix".to_owned(),
                html_url: "https://github.com/o/r/pull/7".to_owned(),
                user: some("octocat"),
                merged_at: "2024-05-01T10:00:00Z".to_owned(),
                sha: some("0123456789abcdef0123456789abcdef01234567"),
            }),
            recent_workflow_runs: Some(vec![WorkflowRun {
                id: 1,
                name: some("goose-build"),
                run_number: Some(12),
                status: some("completed"),
                conclusion: some("success"),
                head_branch: some("main"),
                head_sha: some("abc"),
                html_url: some("https://github.com/o/r/actions/runs/1"),
                created_at: some("2024-05-01T10:00:00Z"),
                updated_at: some("2024-05-01T10:05:00Z"),
            }]),
            goose_success_rate_pct: Some(100.0),
            fetched_at: "2024-05-01T10:06:00Z".to_owned(),
            missing: vec!["open_prs".to_owned()],
        };
        let mut served = PipelineSummary::from(&stored)
            .to_json()
            .expect("the served document is JSON");
        let run = &mut served["recent_workflow_runs"][0];
        assert_eq!(run["workflow_name"], "goose-build");
        assert_eq!(run["run_at"], "2024-05-01T10:00:00Z");
        assert_eq!(run["url"], "https://github.com/o/r/actions/runs/1");
        for derived in ["workflow_name", "run_at", "url"] {
            run.as_object_mut().expect("a run object").remove(derived);
        }
        let expected = serde_json::to_value(&stored).expect("the stored summary serialises");
        assert_eq!(served, expected);
    }
}
