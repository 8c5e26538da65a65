//! What a GitHub webhook event makes stale (CONTRACT 6, v2): the table from
//! an `X-GitHub-Event` name to the cache keys it covers, and the check of a
//! delivery id. Pure data; the receiver (`service::webhook`) applies it.

/// What one event covers, for the repository it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookTarget {
    /// Every key of the repository starting with this path.
    Prefix(&'static str),
    /// The repository itself: the key `/` alone.
    RepoRoot,
    /// The pipeline summary (only the configured repository has one).
    Summary,
}

impl WebhookTarget {
    /// How the target is reported in the answer and on `/api/events`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Prefix(prefix) => prefix,
            Self::RepoRoot => "/",
            Self::Summary => "__pipeline_summary__",
        }
    }
}

use WebhookTarget::{Prefix, RepoRoot, Summary};

/// The keys `event` makes stale; empty for an event chimney does not know
/// (accepted and ignored).
pub fn webhook_targets(event: &str) -> &'static [WebhookTarget] {
    match event {
        "push" => &[
            Prefix("/commits"),
            Prefix("/branches"),
            Prefix("/compare"),
            Prefix("/readme"),
            RepoRoot,
        ],
        "pull_request" | "pull_request_review" => &[Prefix("/pulls"), Prefix("/issues"), Summary],
        "issues" | "issue_comment" => &[Prefix("/issues"), Summary],
        "workflow_run" | "workflow_job" | "check_run" | "check_suite" => {
            &[Prefix("/actions"), Prefix("/commits"), Summary]
        }
        "release" => &[Prefix("/releases"), Prefix("/tags")],
        "create" | "delete" => &[Prefix("/branches"), Prefix("/tags")],
        "repository" | "label" | "milestone" => {
            &[RepoRoot, Prefix("/labels"), Prefix("/milestones")]
        }
        _ => &[],
    }
}

/// Longest `X-GitHub-Delivery` accepted (GitHub sends a 36-character GUID).
pub const MAX_DELIVERY_ID_CHARS: usize = 128;

/// Whether `id` can be a delivery id: 1 to 128 characters of letters,
/// digits, `-` and `_`, so it is safe inside a key name.
pub fn is_valid_delivery_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DELIVERY_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_family_has_its_prefixes() {
        let labels = |event| {
            webhook_targets(event)
                .iter()
                .map(|t| t.label())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            labels("push"),
            ["/commits", "/branches", "/compare", "/readme", "/"]
        );
        assert_eq!(
            labels("pull_request_review"),
            ["/pulls", "/issues", "__pipeline_summary__"]
        );
        assert_eq!(labels("issue_comment"), ["/issues", "__pipeline_summary__"]);
        assert_eq!(
            labels("check_suite"),
            ["/actions", "/commits", "__pipeline_summary__"]
        );
        assert_eq!(labels("release"), ["/releases", "/tags"]);
        assert_eq!(labels("delete"), ["/branches", "/tags"]);
        assert_eq!(labels("milestone"), ["/", "/labels", "/milestones"]);
        assert!(labels("star").is_empty());
        assert!(labels("").is_empty());
    }

    #[test]
    fn delivery_ids_are_checked() {
        assert!(is_valid_delivery_id("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
        assert!(!is_valid_delivery_id(""));
        assert!(!is_valid_delivery_id("a:b"));
        assert!(!is_valid_delivery_id("a b"));
        assert!(!is_valid_delivery_id(&"a".repeat(129)));
    }
}
