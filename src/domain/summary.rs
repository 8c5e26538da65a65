//! The pipeline summary's arithmetic: counting open issues, picking the last
//! merged pull request, the build workflow's success rate, and which parts
//! of the summary are missing. Plain data in, plain data out; the service in
//! `service::summary` fetches and parses GitHub's JSON and hands it over here.

use std::time::Duration;

/// How long a complete summary is served before it is rebuilt.
pub const SUMMARY_TTL: Duration = Duration::from_secs(60);

/// How long a partial summary is served. Short, so a blip at GitHub is
/// repaired within seconds, yet long enough that a dashboard polled by many
/// browsers during an outage asks GitHub at most once per part per window.
pub const PARTIAL_SUMMARY_TTL: Duration = Duration::from_secs(10);

/// How many completed workflow runs the summary reports and rates.
pub const RECENT_RUNS: usize = 10;

/// One part of the summary, each backed by one GitHub request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SummaryPart {
    /// `/issues?state=open&per_page=100`, pull requests filtered out.
    OpenIssues,
    /// `/pulls?state=open&per_page=100`.
    OpenPrs,
    /// `/pulls?state=closed&per_page=10&sort=updated&direction=desc`.
    LastMergedPr,
    /// `/actions/workflows/{workflow}/runs?per_page=10&status=completed`.
    RecentWorkflowRuns,
}

impl SummaryPart {
    /// Every part, in the order the summary lists them.
    pub const ALL: [Self; 4] = [
        Self::OpenIssues,
        Self::OpenPrs,
        Self::LastMergedPr,
        Self::RecentWorkflowRuns,
    ];

    /// The part's name as it appears in the summary's `missing` list: the
    /// name of the summary field it fills.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenIssues => "open_issues",
            Self::OpenPrs => "open_prs",
            Self::LastMergedPr => "last_merged_pr",
            Self::RecentWorkflowRuns => "recent_workflow_runs",
        }
    }
}

/// An entry of GitHub's issue list, reduced to what the count needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueItem {
    /// GitHub lists pull requests as issues too; they carry a
    /// `pull_request` field.
    pub is_pull_request: bool,
}

/// A closed pull request from GitHub's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedPull {
    /// The PR number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// Its page on github.com.
    pub html_url: String,
    /// The author's login, when GitHub names one.
    pub author: Option<String>,
    /// When it was merged (RFC 3339); `None` for a PR closed unmerged.
    pub merged_at: Option<String>,
    /// The merge commit, when GitHub names one.
    pub merge_commit_sha: Option<String>,
}

/// A pull request known to be merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedPull {
    /// The PR number.
    pub number: u64,
    /// Its title.
    pub title: String,
    /// Its page on github.com.
    pub html_url: String,
    /// The author's login, when known.
    pub author: Option<String>,
    /// When it was merged (RFC 3339).
    pub merged_at: String,
    /// The merge commit, when GitHub names one.
    pub sha: Option<String>,
}

/// What the summary needs to know of a completed workflow run; the run
/// itself is whatever the caller parsed from GitHub.
pub trait RunOutcome {
    /// `success`, `failure`, `cancelled`, … as GitHub reports it.
    fn conclusion(&self) -> Option<&str>;

    /// True when the run concluded successfully.
    fn succeeded(&self) -> bool {
        self.conclusion() == Some("success")
    }
}

/// What was fetched for each part; `None` where the fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryInputs<R> {
    /// The open issue list (pull requests included, as GitHub sends it).
    pub open_issues: Option<Vec<IssueItem>>,
    /// How many open pull requests were listed.
    pub open_prs: Option<u64>,
    /// Recently updated closed pull requests, newest first.
    pub closed_pulls: Option<Vec<ClosedPull>>,
    /// Recent completed runs of the build workflow, newest first.
    pub workflow_runs: Option<Vec<R>>,
}

// By hand: a derive would ask `R: Default`, which no run needs to be.
impl<R> Default for SummaryInputs<R> {
    fn default() -> Self {
        Self {
            open_issues: None,
            open_prs: None,
            closed_pulls: None,
            workflow_runs: None,
        }
    }
}

/// The aggregated summary. A field is `None` when its part is missing, and
/// [`Summary::missing`] says which parts those are.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary<R> {
    /// Open issues that are not pull requests.
    pub open_issues: Option<u64>,
    /// Open pull requests.
    pub open_prs: Option<u64>,
    /// The most recently updated merged PR; `None` when the part is missing
    /// or none of the recent closed PRs was merged.
    pub last_merged_pr: Option<MergedPull>,
    /// Up to [`RECENT_RUNS`] completed runs, newest first.
    pub recent_workflow_runs: Option<Vec<R>>,
    /// Share of those runs that succeeded, in percent, one decimal; `None`
    /// when the runs are missing or there are none.
    pub success_rate_pct: Option<f64>,
    /// The parts that could not be fetched, in [`SummaryPart::ALL`] order.
    pub missing: Vec<SummaryPart>,
}

impl<R: RunOutcome> Summary<R> {
    /// Aggregates what was fetched.
    pub fn from_inputs(inputs: SummaryInputs<R>) -> Self {
        let mut missing = Vec::new();
        if inputs.open_issues.is_none() {
            missing.push(SummaryPart::OpenIssues);
        }
        if inputs.open_prs.is_none() {
            missing.push(SummaryPart::OpenPrs);
        }
        if inputs.closed_pulls.is_none() {
            missing.push(SummaryPart::LastMergedPr);
        }
        if inputs.workflow_runs.is_none() {
            missing.push(SummaryPart::RecentWorkflowRuns);
        }
        let recent_workflow_runs = inputs.workflow_runs.map(|mut runs| {
            runs.truncate(RECENT_RUNS);
            runs
        });
        Self {
            open_issues: inputs.open_issues.as_deref().map(count_open_issues),
            open_prs: inputs.open_prs,
            last_merged_pr: inputs.closed_pulls.as_deref().and_then(last_merged),
            success_rate_pct: recent_workflow_runs.as_deref().and_then(success_rate_pct),
            recent_workflow_runs,
            missing,
        }
    }

    /// True when some part is missing.
    pub fn is_partial(&self) -> bool {
        !self.missing.is_empty()
    }

    /// How long this summary may be served: [`SUMMARY_TTL`] when complete,
    /// [`PARTIAL_SUMMARY_TTL`] when partial.
    pub fn ttl(&self) -> Duration {
        ttl_for(self.is_partial())
    }
}

/// The TTL of a summary that is (or is not) partial.
pub fn ttl_for(partial: bool) -> Duration {
    if partial {
        PARTIAL_SUMMARY_TTL
    } else {
        SUMMARY_TTL
    }
}

/// Whether a summary built `age` ago may still be served: a complete one
/// for [`SUMMARY_TTL`], a partial one only for [`PARTIAL_SUMMARY_TTL`].
pub fn is_fresh(age: Duration, partial: bool) -> bool {
    age < ttl_for(partial)
}

/// Open issues that are not pull requests.
pub fn count_open_issues(items: &[IssueItem]) -> u64 {
    items.iter().filter(|i| !i.is_pull_request).count() as u64
}

/// The first pull request of the list that was merged (the list is sorted
/// by last update, newest first).
pub fn last_merged(pulls: &[ClosedPull]) -> Option<MergedPull> {
    pulls.iter().find_map(|pull| {
        let merged_at = pull
            .merged_at
            .as_deref()
            .filter(|at| !at.trim().is_empty())?;
        Some(MergedPull {
            number: pull.number,
            title: pull.title.clone(),
            html_url: pull.html_url.clone(),
            author: pull.author.clone(),
            merged_at: merged_at.to_owned(),
            sha: pull.merge_commit_sha.clone(),
        })
    })
}

/// Successful runs as a percentage of all, rounded to one decimal; `None`
/// for no runs, where a rate would be meaningless.
pub fn success_rate_pct<R: RunOutcome>(runs: &[R]) -> Option<f64> {
    if runs.is_empty() {
        return None;
    }
    let successes = runs.iter().filter(|r| r.succeeded()).count() as f64;
    let pct = successes * 100.0 / runs.len() as f64;
    Some((pct * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run as the tests need it: an id to tell runs apart, a conclusion.
    #[derive(Debug, Clone, PartialEq)]
    struct Run {
        id: u64,
        conclusion: String,
    }

    impl RunOutcome for Run {
        fn conclusion(&self) -> Option<&str> {
            Some(&self.conclusion)
        }
    }

    fn run(id: u64, conclusion: &str) -> Run {
        Run {
            id,
            conclusion: conclusion.to_owned(),
        }
    }

    fn closed(number: u64, merged_at: Option<&str>) -> ClosedPull {
        ClosedPull {
            number,
            title: format!("PR {number}"),
            html_url: format!("https://github.com/o/r/pull/{number}"),
            author: Some("octocat".to_owned()),
            merged_at: merged_at.map(str::to_owned),
            merge_commit_sha: merged_at.map(|_| format!("{number:040x}")),
        }
    }

    fn issue(is_pull_request: bool) -> IssueItem {
        IssueItem { is_pull_request }
    }

    #[test]
    fn pull_requests_are_not_counted_as_open_issues() {
        let items = [issue(false), issue(true), issue(false), issue(true)];
        assert_eq!(count_open_issues(&items), 2);
        assert_eq!(count_open_issues(&[]), 0);
    }

    #[test]
    fn the_last_merged_pr_is_the_first_with_a_merge_time() {
        let pulls = [
            closed(9, None),
            closed(8, Some("")),
            closed(7, Some("2024-05-01T10:00:00Z")),
            closed(6, Some("2024-05-02T10:00:00Z")),
        ];
        let merged = last_merged(&pulls).unwrap();
        assert_eq!(merged.number, 7);
        assert_eq!(merged.merged_at, "2024-05-01T10:00:00Z");
        assert_eq!(merged.author.as_deref(), Some("octocat"));
        assert_eq!(merged.sha, Some(format!("{:040x}", 7)));
        assert_eq!(last_merged(&[closed(1, None)]), None);
    }

    #[test]
    fn success_rate_counts_only_successes_and_rounds_to_one_decimal() {
        let runs = [run(1, "success"), run(2, "failure"), run(3, "success")];
        assert_eq!(success_rate_pct(&runs), Some(66.7));
        let all = [run(1, "success"), run(2, "success")];
        assert_eq!(success_rate_pct(&all), Some(100.0));
        let none = [run(1, "cancelled"), run(2, "failure")];
        assert_eq!(success_rate_pct(&none), Some(0.0));
        assert_eq!(success_rate_pct::<Run>(&[]), None);
    }

    #[test]
    fn a_complete_summary_has_nothing_missing_and_the_long_ttl() {
        let summary = Summary::<Run>::from_inputs(SummaryInputs {
            open_issues: Some(vec![issue(false), issue(true)]),
            open_prs: Some(1),
            closed_pulls: Some(vec![closed(4, Some("2024-01-01T00:00:00Z"))]),
            workflow_runs: Some(vec![run(1, "success"), run(2, "failure")]),
        });
        assert_eq!(summary.open_issues, Some(1));
        assert_eq!(summary.open_prs, Some(1));
        assert_eq!(summary.last_merged_pr.as_ref().map(|p| p.number), Some(4));
        assert_eq!(summary.success_rate_pct, Some(50.0));
        assert!(summary.missing.is_empty());
        assert_eq!(summary.ttl(), SUMMARY_TTL);
    }

    #[test]
    fn failed_parts_are_named_and_shorten_the_ttl() {
        let summary = Summary::<Run>::from_inputs(SummaryInputs {
            open_issues: Some(vec![issue(false)]),
            open_prs: None,
            closed_pulls: Some(vec![]),
            workflow_runs: None,
        });
        assert_eq!(
            summary.missing,
            [SummaryPart::OpenPrs, SummaryPart::RecentWorkflowRuns]
        );
        assert_eq!(summary.open_issues, Some(1));
        assert_eq!(summary.open_prs, None);
        assert_eq!(summary.last_merged_pr, None);
        assert_eq!(summary.success_rate_pct, None);
        assert!(summary.is_partial());
        assert_eq!(summary.ttl(), PARTIAL_SUMMARY_TTL);
        let names: Vec<_> = summary.missing.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["open_prs", "recent_workflow_runs"]);
    }

    #[test]
    fn a_partial_summary_goes_stale_long_before_a_complete_one() {
        let eleven = Duration::from_secs(11);
        assert!(is_fresh(eleven, false));
        assert!(!is_fresh(eleven, true));
        assert!(is_fresh(Duration::from_secs(9), true));
        assert!(!is_fresh(SUMMARY_TTL, false));
        assert!(PARTIAL_SUMMARY_TTL < SUMMARY_TTL);
    }

    #[test]
    fn at_most_ten_runs_are_reported_and_rated() {
        let mut runs: Vec<_> = (0..10).map(|i| run(i, "success")).collect();
        runs.extend((10..15).map(|i| run(i, "failure")));
        let summary = Summary::<Run>::from_inputs(SummaryInputs {
            workflow_runs: Some(runs),
            ..SummaryInputs::default()
        });
        let kept = summary.recent_workflow_runs.unwrap_or_default();
        assert_eq!(
            kept.iter().map(|r| r.id).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(summary.success_rate_pct, Some(100.0));
        assert_eq!(summary.missing.len(), 3);
    }
}
