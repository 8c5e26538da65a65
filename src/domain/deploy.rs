//! Deploy events and the status derived from them: what an event must hold
//! to be accepted, and how the last, the recent and the success rate are
//! worked out from the retained history. Pure: the clock is an argument and
//! storage is the `DeployLog` port's business, not this module's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How many events are retained, newest first (CONTRACT 5).
pub const DEPLOY_HISTORY_LIMIT: usize = 50;

/// How many events the status lists under `recent_deploys`.
pub const RECENT_DEPLOYS_SHOWN: usize = 10;

/// How many of the newest events' [`DeployKey`]s a log remembers to
/// recognise a repeat: far more than it retains, so a repeat is refused
/// even after its first copy has aged out of the history.
pub const DEPLOY_DEDUP_WINDOW: usize = 1000;

/// Longest accepted `id`.
const MAX_ID_CHARS: usize = 128;

/// Longest accepted `sha`: a SHA-256 object name in hex.
const MAX_SHA_CHARS: usize = 64;
/// Longest accepted `slot` name.
const MAX_SLOT_CHARS: usize = 64;
/// Longest accepted `pr_title`. GitHub caps titles at 256 characters; the
/// slack keeps a future GitHub change from losing deploy events.
const MAX_PR_TITLE_CHARS: usize = 1024;
/// Most entries accepted in `origin_ips`.
const MAX_ORIGIN_IPS: usize = 64;
/// Longest accepted `origin_ips` entry (room for a host name as well).
const MAX_ORIGIN_CHARS: usize = 255;
/// How much of a rejected value an error message repeats back.
const SHOWN_CHARS: usize = 40;
/// `deployed_at` must fall before 10000-01-01T00:00:00Z (seconds since the
/// epoch): four-digit years are all RFC 3339 can write back.
const END_OF_YEAR_9999: u64 = 253_402_300_800;

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeployOutcome {
    /// The new slot passed its smoke test and took traffic.
    Success,
    /// The deploy was abandoned.
    Failure,
}

impl DeployOutcome {
    /// Parses `success` or `failure`, exactly as spelled.
    ///
    /// # Errors
    /// [`DeployEventError::UnknownOutcome`] for anything else.
    pub fn parse(text: &str) -> Result<Self, DeployEventError> {
        match text {
            "success" => Ok(Self::Success),
            "failure" => Ok(Self::Failure),
            other => Err(DeployEventError::UnknownOutcome(shown(other))),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// An event as received, before validation. Field names follow the wire
/// format of CONTRACT 5.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployEventDraft {
    /// The sender's name for the event, so a repeat can be recognised.
    pub id: Option<String>,
    /// Commit SHA, short or full.
    pub sha: String,
    /// Active blue/green slot after the deploy.
    pub slot: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// Whole seconds the deploy took.
    pub duration_s: Option<u64>,
    /// When the deploy finished, RFC 3339; `None` means "now".
    pub deployed_at: Option<String>,
    /// The pull request deployed; `0` is read as "none", since CI
    /// templates commonly write `${{ … || 0 }}`.
    pub pr_number: Option<u64>,
    /// The pull request's title.
    pub pr_title: Option<String>,
    /// The origins provisioned or updated.
    pub origin_ips: Vec<String>,
}

/// A validated deploy event. Built only by [`DeployEvent::parse`], so every
/// instance satisfies the rules documented there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployEvent {
    id: Option<String>,
    sha: String,
    slot: Option<String>,
    outcome: DeployOutcome,
    duration_s: Option<u64>,
    deployed_at: SystemTime,
    pr_number: Option<u64>,
    pr_title: Option<String>,
    origin_ips: Vec<String>,
}

/// What makes two events the same event, so a log stores it once: the
/// sender's `id` when it gave one, else its `sha`, `slot`, `outcome` and
/// `deployed_at` together (CONTRACT 5). Two posts of an event without
/// `deployed_at` are stamped with different instants, so they are two
/// events: only the sender can say that a post is a repeat.
///
/// The text is unambiguous: an `id` key starts `id `, a field key `f `,
/// and a field key's parts are separated by spaces, which `sha` and `slot`
/// never hold (an absent slot is the empty part between two spaces).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeployKey(String);

impl DeployKey {
    /// The key as text, as logs store it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why an event was refused. Every message names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployEventError {
    /// `id` is too long.
    #[error("id must be at most {MAX_ID_CHARS} characters")]
    IdTooLong,
    /// `sha` is missing or blank.
    #[error("sha is required and must not be blank")]
    MissingSha,
    /// `sha` is too long or holds spaces or control characters.
    #[error("sha must be at most {MAX_SHA_CHARS} characters with no spaces or control characters")]
    InvalidSha,
    /// `outcome` is neither `success` nor `failure`.
    #[error("outcome must be \"success\" or \"failure\", not {0:?}")]
    UnknownOutcome(String),
    /// `deployed_at` is not an RFC 3339 date-time.
    #[error(
        "deployed_at must be an RFC 3339 date-time from 1970 to 9999 such as \"2026-02-21T10:13:00Z\", not {0:?}"
    )]
    InvalidDeployedAt(String),
    /// `slot` is too long or holds spaces or control characters.
    #[error(
        "slot must be at most {MAX_SLOT_CHARS} characters with no spaces or control characters"
    )]
    InvalidSlot,
    /// `pr_title` is too long.
    #[error("pr_title must be at most {MAX_PR_TITLE_CHARS} characters")]
    PrTitleTooLong,
    /// `origin_ips` has too many entries.
    #[error("origin_ips must hold at most {MAX_ORIGIN_IPS} entries")]
    TooManyOrigins,
    /// One `origin_ips` entry is blank, too long, or holds spaces or
    /// control characters.
    #[error(
        "origin_ips[{index}] must be 1 to {MAX_ORIGIN_CHARS} characters with no spaces or control characters"
    )]
    InvalidOrigin {
        /// Position of the entry.
        index: usize,
    },
}

impl DeployEventError {
    /// The wire name of the field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Self::IdTooLong => "id",
            Self::MissingSha | Self::InvalidSha => "sha",
            Self::UnknownOutcome(_) => "outcome",
            Self::InvalidDeployedAt(_) => "deployed_at",
            Self::InvalidSlot => "slot",
            Self::PrTitleTooLong => "pr_title",
            Self::TooManyOrigins | Self::InvalidOrigin { .. } => "origin_ips",
        }
    }
}

impl DeployEvent {
    /// Validates a draft received at `now`.
    ///
    /// Rules: `id` is trimmed, blank means none, otherwise at most 128
    /// characters of any kind; `sha` is trimmed and must be non-blank, at most 64 characters,
    /// without spaces or control characters; `outcome` is `success` or
    /// `failure`; `deployed_at` is RFC 3339 (any offset; stored as an
    /// instant) and defaults to `now`; `slot` is trimmed, blank means none,
    /// otherwise at most 64 characters without spaces or control
    /// characters; `pr_number` 0 and a blank `pr_title` mean none; at most
    /// 64 `origin_ips`, each trimmed, 1 to 255 characters, without spaces or
    /// control characters. Checks run in wire order, so the first field at
    /// fault is the one reported.
    ///
    /// # Errors
    /// The first [`DeployEventError`] found.
    pub fn parse(draft: DeployEventDraft, now: SystemTime) -> Result<Self, DeployEventError> {
        let id = match draft.id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(id) if id.chars().count() <= MAX_ID_CHARS => Some(id.to_owned()),
            Some(_) => return Err(DeployEventError::IdTooLong),
        };
        let sha = draft.sha.trim();
        if sha.is_empty() {
            return Err(DeployEventError::MissingSha);
        }
        if !is_token(sha, MAX_SHA_CHARS) {
            return Err(DeployEventError::InvalidSha);
        }
        let slot = match draft.slot.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(slot) if is_token(slot, MAX_SLOT_CHARS) => Some(slot.to_owned()),
            Some(_) => return Err(DeployEventError::InvalidSlot),
        };
        let outcome = DeployOutcome::parse(&draft.outcome)?;
        let deployed_at = match draft.deployed_at.as_deref() {
            None => now,
            Some(text) => parse_rfc3339(text)
                .filter(|at| {
                    at.duration_since(UNIX_EPOCH)
                        .is_ok_and(|since| since.as_secs() < END_OF_YEAR_9999)
                })
                .ok_or_else(|| DeployEventError::InvalidDeployedAt(shown(text)))?,
        };
        let pr_title = match draft.pr_title {
            Some(title) if title.trim().is_empty() => None,
            Some(title) if title.chars().count() > MAX_PR_TITLE_CHARS => {
                return Err(DeployEventError::PrTitleTooLong);
            }
            title => title,
        };
        if draft.origin_ips.len() > MAX_ORIGIN_IPS {
            return Err(DeployEventError::TooManyOrigins);
        }
        let origin_ips = draft
            .origin_ips
            .iter()
            .enumerate()
            .map(|(index, origin)| {
                let origin = origin.trim();
                if is_token(origin, MAX_ORIGIN_CHARS) {
                    Ok(origin.to_owned())
                } else {
                    Err(DeployEventError::InvalidOrigin { index })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            id,
            sha: sha.to_owned(),
            slot,
            outcome,
            duration_s: draft.duration_s,
            deployed_at,
            pr_number: draft.pr_number.filter(|n| *n != 0),
            pr_title,
            origin_ips,
        })
    }

    /// The sender's name for the event, if it gave one.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// What makes this event the same as another (see [`DeployKey`]).
    pub fn key(&self) -> DeployKey {
        if let Some(id) = &self.id {
            return DeployKey(format!("id {id}"));
        }
        // `parse` admits no instant before the epoch.
        let since = self
            .deployed_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        DeployKey(format!(
            "f {} {} {} {}.{:09}",
            self.sha,
            self.slot.as_deref().unwrap_or(""),
            self.outcome.as_str(),
            since.as_secs(),
            since.subsec_nanos()
        ))
    }

    /// Commit SHA.
    pub fn sha(&self) -> &str {
        &self.sha
    }

    /// Active slot after the deploy, if given.
    pub fn slot(&self) -> Option<&str> {
        self.slot.as_deref()
    }

    /// How the deploy ended.
    pub fn outcome(&self) -> DeployOutcome {
        self.outcome
    }

    /// Whole seconds the deploy took, if given.
    pub fn duration_s(&self) -> Option<u64> {
        self.duration_s
    }

    /// When the deploy finished.
    pub fn deployed_at(&self) -> SystemTime {
        self.deployed_at
    }

    /// The pull request deployed, if any.
    pub fn pr_number(&self) -> Option<u64> {
        self.pr_number
    }

    /// The pull request's title, if any.
    pub fn pr_title(&self) -> Option<&str> {
        self.pr_title.as_deref()
    }

    /// The origins provisioned or updated.
    pub fn origin_ips(&self) -> &[String] {
        &self.origin_ips
    }

    /// Whole seconds from `deployed_at` to `now`; 0 when `deployed_at` lies
    /// in the future (a CI clock running ahead), never negative.
    pub fn age_s(&self, now: SystemTime) -> u64 {
        now.duration_since(self.deployed_at)
            .unwrap_or(Duration::ZERO)
            .as_secs()
    }
}

/// An event with its age at the time the status was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgedDeploy {
    /// The event.
    pub event: DeployEvent,
    /// Whole seconds since `deployed_at` (see [`DeployEvent::age_s`]).
    pub age_s: u64,
}

/// The deploy picture served by the status endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployStatus {
    /// The newest event by arrival.
    pub last_deploy: AgedDeploy,
    /// Up to [`RECENT_DEPLOYS_SHOWN`] events, newest first by arrival.
    pub recent_deploys: Vec<AgedDeploy>,
    /// Events retained (at most [`DEPLOY_HISTORY_LIMIT`]).
    pub total_deploys: u64,
    /// Share of retained events that succeeded, in percent, rounded to one
    /// decimal place.
    pub success_rate_pct: f64,
}

impl DeployStatus {
    /// The status over `history`, newest first by arrival (as a `DeployLog`
    /// returns it), at `now`; `None` when there is no event. Events past
    /// [`DEPLOY_HISTORY_LIMIT`] are not retained and so not counted.
    ///
    /// Order is arrival, never `deployed_at`: a late report of an older
    /// deploy is still the last thing that happened as far as CI told us.
    pub fn from_newest_first(history: &[DeployEvent], now: SystemTime) -> Option<Self> {
        let retained = &history[..history.len().min(DEPLOY_HISTORY_LIMIT)];
        let newest = retained.first()?;
        let aged = |event: &DeployEvent| AgedDeploy {
            event: event.clone(),
            age_s: event.age_s(now),
        };
        let successes = retained
            .iter()
            .filter(|e| e.outcome == DeployOutcome::Success)
            .count();
        let total = retained.len();
        // Tenths of a percent, rounded half away from zero, then scaled back.
        let success_rate_pct = (successes as f64 * 1000.0 / total as f64).round() / 10.0;
        Some(Self {
            last_deploy: aged(newest),
            recent_deploys: retained
                .iter()
                .take(RECENT_DEPLOYS_SHOWN)
                .map(aged)
                .collect(),
            total_deploys: total as u64,
            success_rate_pct,
        })
    }
}

/// Non-blank, at most `max` characters, no whitespace or control
/// characters: shapes that are safe to show and log verbatim.
fn is_token(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.chars().count() <= max
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The start of a rejected value, for an error message: enough to
/// recognise it without echoing a 64 KiB body back.
fn shown(text: &str) -> String {
    let mut shown: String = text.chars().take(SHOWN_CHARS).collect();
    if text.chars().count() > SHOWN_CHARS {
        shown.push('…');
    }
    shown
}

/// Parses an RFC 3339 date-time (`2026-02-21T10:13:00Z`,
/// `2026-02-21T12:13:00.5+02:00`, lower-case `t`/`z` as RFC 3339 allows),
/// with the `time` crate's parser.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn draft(sha: &str, outcome: &str) -> DeployEventDraft {
        DeployEventDraft {
            sha: sha.to_owned(),
            outcome: outcome.to_owned(),
            ..DeployEventDraft::default()
        }
    }

    fn event(sha: &str, outcome: &str, deployed_at: u64) -> DeployEvent {
        DeployEvent::parse(draft(sha, outcome), at(deployed_at)).expect("valid event")
    }

    #[test]
    fn a_full_event_is_accepted_as_given() {
        let parsed = DeployEvent::parse(
            DeployEventDraft {
                id: None,
                sha: "3051037".to_owned(),
                slot: Some("blue".to_owned()),
                outcome: "success".to_owned(),
                duration_s: Some(47),
                deployed_at: Some("2026-02-21T10:13:00Z".to_owned()),
                pr_number: Some(321),
                pr_title: Some("blue/green deploy rewrite".to_owned()),
                origin_ips: vec!["1.2.3.4".to_owned(), "2001:db8::1".to_owned()],
            },
            at(0),
        )
        .expect("valid event");
        assert_eq!(parsed.sha(), "3051037");
        assert_eq!(parsed.slot(), Some("blue"));
        assert_eq!(parsed.outcome(), DeployOutcome::Success);
        assert_eq!(parsed.duration_s(), Some(47));
        assert_eq!(parsed.deployed_at(), at(1_771_668_780));
        assert_eq!(parsed.pr_number(), Some(321));
        assert_eq!(parsed.pr_title(), Some("blue/green deploy rewrite"));
        assert_eq!(parsed.origin_ips(), ["1.2.3.4", "2001:db8::1"]);
    }

    #[test]
    fn an_id_is_trimmed_blank_means_none_and_it_is_at_most_128_characters() {
        let mut d = draft("abc", "success");
        d.id = Some("  run-42/attempt-1 ".to_owned());
        assert_eq!(
            DeployEvent::parse(d.clone(), at(0)).expect("valid").id(),
            Some("run-42/attempt-1")
        );
        d.id = Some("   ".to_owned());
        assert_eq!(
            DeployEvent::parse(d.clone(), at(0)).expect("valid").id(),
            None
        );
        d.id = Some("é".repeat(128));
        assert!(DeployEvent::parse(d.clone(), at(0)).is_ok());
        d.id = Some("x".repeat(129));
        let err = DeployEvent::parse(d, at(0)).expect_err("too long");
        assert_eq!(err, DeployEventError::IdTooLong);
        assert_eq!(err.field(), "id");
    }

    #[test]
    fn the_same_id_is_the_same_event_whatever_else_differs() {
        let mut first = draft("abc", "success");
        first.id = Some("deploy-7".to_owned());
        let mut second = draft("def", "failure");
        second.id = Some("deploy-7".to_owned());
        let a = DeployEvent::parse(first, at(1)).expect("valid");
        let b = DeployEvent::parse(second, at(2)).expect("valid");
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn without_an_id_sha_slot_outcome_and_deployed_at_make_the_event() {
        let base = {
            let mut d = draft("abc", "success");
            d.slot = Some("blue".to_owned());
            d.deployed_at = Some("2026-02-21T10:13:00Z".to_owned());
            d
        };
        let key = |d: &DeployEventDraft| DeployEvent::parse(d.clone(), at(0)).expect("valid").key();
        // Fields outside the four do not count.
        let mut same = base.clone();
        same.duration_s = Some(5);
        same.pr_title = Some("another title".to_owned());
        same.deployed_at = Some("2026-02-21T12:13:00+02:00".to_owned());
        assert_eq!(key(&base), key(&same));
        // Each of the four does.
        let mut other_sha = base.clone();
        other_sha.sha = "abd".to_owned();
        let mut other_slot = base.clone();
        other_slot.slot = Some("green".to_owned());
        let mut no_slot = base.clone();
        no_slot.slot = None;
        let mut other_outcome = base.clone();
        other_outcome.outcome = "failure".to_owned();
        let mut other_time = base.clone();
        other_time.deployed_at = Some("2026-02-21T10:13:00.000000001Z".to_owned());
        for other in [other_sha, other_slot, no_slot, other_outcome, other_time] {
            assert_ne!(key(&base), key(&other), "{other:?}");
        }
        // An id never collides with a field key, nor fields with each other
        // by shifting text between them.
        let mut tricky = draft("x", "success");
        tricky.id = Some(key(&base).as_str().to_owned());
        assert_ne!(key(&tricky), key(&base));
        let mut shifted = base.clone();
        shifted.sha = "abc blue".to_owned();
        assert!(
            DeployEvent::parse(shifted, at(0)).is_err(),
            "a sha never holds a space"
        );
    }

    #[test]
    fn deployed_at_defaults_to_now() {
        let parsed = DeployEvent::parse(draft("abc", "failure"), at(99)).expect("valid");
        assert_eq!(parsed.deployed_at(), at(99));
    }

    #[test]
    fn a_blank_or_missing_sha_is_refused() {
        for sha in ["", "   "] {
            let err = DeployEvent::parse(draft(sha, "success"), at(0)).expect_err("blank sha");
            assert_eq!(err, DeployEventError::MissingSha);
            assert_eq!(err.field(), "sha");
        }
    }

    #[test]
    fn a_sha_with_spaces_or_too_long_is_refused() {
        for sha in ["ab cd", "a\u{7}b", &"f".repeat(65)] {
            let err = DeployEvent::parse(draft(sha, "success"), at(0)).expect_err("bad sha");
            assert_eq!(err, DeployEventError::InvalidSha, "{sha:?}");
        }
        let full = "f".repeat(64);
        assert!(DeployEvent::parse(draft(&full, "success"), at(0)).is_ok());
    }

    #[test]
    fn surrounding_whitespace_is_trimmed_from_the_sha() {
        let parsed = DeployEvent::parse(draft(" abc\n", "success"), at(0)).expect("valid");
        assert_eq!(parsed.sha(), "abc");
    }

    #[test]
    fn only_success_and_failure_are_outcomes() {
        for outcome in ["", "Success", "ok", "succeeded", "failed"] {
            let err = DeployEvent::parse(draft("abc", outcome), at(0)).expect_err("bad outcome");
            assert_eq!(err.field(), "outcome");
            assert!(err.to_string().starts_with("outcome must be"), "{err}");
        }
        assert_eq!(
            DeployOutcome::parse("failure").expect("valid"),
            DeployOutcome::Failure
        );
    }

    #[test]
    fn a_long_rejected_value_is_not_echoed_in_full() {
        let outcome = "x".repeat(10_000);
        let err = DeployEvent::parse(draft("abc", &outcome), at(0)).expect_err("bad outcome");
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn pr_number_zero_and_blank_title_mean_none() {
        let mut d = draft("abc", "success");
        d.pr_number = Some(0);
        d.pr_title = Some("  ".to_owned());
        d.slot = Some(String::new());
        let parsed = DeployEvent::parse(d, at(0)).expect("valid");
        assert_eq!(parsed.pr_number(), None);
        assert_eq!(parsed.pr_title(), None);
        assert_eq!(parsed.slot(), None);
    }

    #[test]
    fn slot_titles_and_origins_are_bounded() {
        let mut d = draft("abc", "success");
        d.slot = Some("blue green".to_owned());
        assert_eq!(
            DeployEvent::parse(d, at(0)),
            Err(DeployEventError::InvalidSlot)
        );

        let mut d = draft("abc", "success");
        d.pr_title = Some("t".repeat(1025));
        assert_eq!(
            DeployEvent::parse(d, at(0)),
            Err(DeployEventError::PrTitleTooLong)
        );

        let mut d = draft("abc", "success");
        d.origin_ips = vec!["1.2.3.4".to_owned(); 65];
        assert_eq!(
            DeployEvent::parse(d, at(0)),
            Err(DeployEventError::TooManyOrigins)
        );

        let mut d = draft("abc", "success");
        d.origin_ips = vec!["1.2.3.4".to_owned(), String::new()];
        let err = DeployEvent::parse(d, at(0)).expect_err("blank origin");
        assert_eq!(err, DeployEventError::InvalidOrigin { index: 1 });
        assert_eq!(err.to_string().split(' ').next(), Some("origin_ips[1]"));
    }

    #[test]
    fn a_pr_title_may_hold_any_text() {
        let mut d = draft("abc", "success");
        d.pr_title = Some("fix: \"quotes\", $(subshells) & 'ticks'\nsecond line".to_owned());
        let parsed = DeployEvent::parse(d.clone(), at(0)).expect("valid");
        assert_eq!(parsed.pr_title(), d.pr_title.as_deref());
    }

    #[test]
    fn rfc3339_accepts_offsets_fractions_and_lower_case() {
        let base = at(1_771_668_780);
        assert_eq!(parse_rfc3339("2026-02-21T10:13:00Z"), Some(base));
        assert_eq!(parse_rfc3339("2026-02-21t10:13:00z"), Some(base));
        assert_eq!(parse_rfc3339("2026-02-21 10:13:00Z"), Some(base));
        assert_eq!(parse_rfc3339("2026-02-21T12:13:00+02:00"), Some(base));
        assert_eq!(parse_rfc3339("2026-02-21T05:43:00-04:30"), Some(base));
        assert_eq!(parse_rfc3339("2026-02-21T10:13:00+00:00"), Some(base));
        assert_eq!(
            parse_rfc3339("2026-02-21T10:13:00.25Z"),
            Some(base + Duration::from_millis(250))
        );
        assert_eq!(
            parse_rfc3339("2026-02-21T10:13:00.123456789123Z"),
            Some(base + Duration::from_nanos(123_456_789))
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59Z"),
            UNIX_EPOCH.checked_sub(Duration::from_secs(1))
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(at(1_709_164_800))
        );
        // A leap second is read as the last instant of its day.
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z"),
            Some(at(1_483_228_800) - Duration::from_nanos(1))
        );
    }

    #[test]
    fn rfc3339_refuses_what_is_not_a_date_time() {
        for text in [
            "",
            "yesterday",
            "2026-02-21",
            "2026-02-21T10:13:00",
            "2026-02-21T10:13Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-02-21T24:00:00Z",
            "2026-02-21T10:60:00Z",
            "2026-02-21T10:13:00.Z",
            "2026-02-21T10:13:00+2:00",
            "2026-02-21T10:13:00+24:00",
            "2026-02-21T10:13:00Z trailing",
            "2026/02/21T10:13:00Z",
            "２０２６-02-21T10:13:00Z",
            "1771668780",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text:?}");
        }
    }

    #[test]
    fn an_invalid_deployed_at_names_the_field() {
        let mut d = draft("abc", "success");
        d.deployed_at = Some("21/02/2026".to_owned());
        let err = DeployEvent::parse(d, at(0)).expect_err("bad date");
        assert_eq!(err.field(), "deployed_at");
        assert!(err.to_string().contains("21/02/2026"), "{err}");
    }

    #[test]
    fn deployed_at_must_fall_between_1970_and_9999() {
        for text in [
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "9999-12-31T23:59:59-00:01",
        ] {
            let mut d = draft("abc", "success");
            d.deployed_at = Some(text.to_owned());
            let err = DeployEvent::parse(d, at(0)).expect_err(text);
            assert_eq!(err.field(), "deployed_at", "{text}");
        }
        for text in ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z"] {
            let mut d = draft("abc", "success");
            d.deployed_at = Some(text.to_owned());
            assert!(DeployEvent::parse(d, at(0)).is_ok(), "{text}");
        }
    }

    #[test]
    fn age_counts_whole_seconds_and_never_goes_negative() {
        let e = event("abc", "success", 1_000);
        assert_eq!(e.age_s(at(1_000)), 0);
        assert_eq!(e.age_s(at(4_720)), 3_720);
        assert_eq!(e.age_s(at(4_720) + Duration::from_millis(999)), 3_720);
        assert_eq!(e.age_s(at(10)), 0);
    }

    #[test]
    fn no_history_means_no_status() {
        assert_eq!(DeployStatus::from_newest_first(&[], at(0)), None);
    }

    #[test]
    fn the_last_deploy_is_the_newest_by_arrival_not_by_deployed_at() {
        // Arrived last, but reports an older deploy.
        let late = event("late", "failure", 100);
        let earlier = event("earlier", "success", 500);
        let status =
            DeployStatus::from_newest_first(&[late.clone(), earlier], at(1_000)).expect("status");
        assert_eq!(status.last_deploy.event, late);
        assert_eq!(status.last_deploy.age_s, 900);
        assert_eq!(status.recent_deploys[0].event.sha(), "late");
        assert_eq!(status.recent_deploys[1].age_s, 500);
    }

    #[test]
    fn recent_lists_ten_and_totals_count_everything_retained() {
        let history: Vec<DeployEvent> = (0..12)
            .map(|i| event(&format!("sha{i}"), "success", i))
            .collect();
        let status = DeployStatus::from_newest_first(&history, at(100)).expect("status");
        assert_eq!(status.recent_deploys.len(), RECENT_DEPLOYS_SHOWN);
        assert_eq!(status.recent_deploys[9].event.sha(), "sha9");
        assert_eq!(status.total_deploys, 12);
    }

    #[test]
    fn events_past_the_retention_limit_are_not_counted() {
        let mut history: Vec<DeployEvent> = (0..DEPLOY_HISTORY_LIMIT)
            .map(|i| event(&format!("ok{i}"), "success", 0))
            .collect();
        history.push(event("old-failure", "failure", 0));
        let status = DeployStatus::from_newest_first(&history, at(0)).expect("status");
        assert_eq!(status.total_deploys, 50);
        assert_eq!(status.success_rate_pct, 100.0);
    }

    #[test]
    fn the_success_rate_is_a_percentage_to_one_decimal() {
        let mut history: Vec<DeployEvent> = (0..11).map(|_| event("a", "success", 0)).collect();
        history.push(event("b", "failure", 0));
        let status = DeployStatus::from_newest_first(&history, at(0)).expect("status");
        assert_eq!(status.success_rate_pct, 91.7);

        let one_of_three = [
            event("a", "success", 0),
            event("b", "failure", 0),
            event("c", "failure", 0),
        ];
        let status = DeployStatus::from_newest_first(&one_of_three, at(0)).expect("status");
        assert_eq!(status.success_rate_pct, 33.3);

        let none = [event("a", "failure", 0)];
        let status = DeployStatus::from_newest_first(&none, at(0)).expect("status");
        assert_eq!(status.success_rate_pct, 0.0);
    }
}
