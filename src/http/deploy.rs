//! `POST /api/deploy/events` and `GET /api/deploy/status` (CONTRACT 5):
//! the wire types and their mapping to and from the domain. Validation
//! rules live in `domain::deploy`, storage in `service::deploys`.

use std::sync::Arc;
use std::time::SystemTime;

use poem_openapi::payload::Json;
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::admin_response::admin_response;
use super::auth::DeployToken;
use super::body::{FromJsonFields, JsonBody, JsonFields};
use super::problem::Problem;
use crate::domain::{AgedDeploy, DeployEvent, DeployEventDraft, DeployOutcome, DeployStatus};
use crate::ports::{LiveEventKind, Placement};
use crate::service::deploys::{DeployService, RecordDeployError, Recorded};
use crate::service::events::LiveEvents;

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "DeployOutcome", rename_all = "lowercase")]
pub enum DeployOutcomeName {
    /// The new slot passed its smoke test and took traffic.
    Success,
    /// The deploy was abandoned.
    Failure,
}

impl From<DeployOutcome> for DeployOutcomeName {
    fn from(outcome: DeployOutcome) -> Self {
        match outcome {
            DeployOutcome::Success => Self::Success,
            DeployOutcome::Failure => Self::Failure,
        }
    }
}

impl From<DeployOutcomeName> for DeployOutcome {
    fn from(outcome: DeployOutcomeName) -> Self {
        match outcome {
            DeployOutcomeName::Success => Self::Success,
            DeployOutcomeName::Failure => Self::Failure,
        }
    }
}

/// Where an accepted event is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename = "DeployStorage", rename_all = "lowercase")]
pub enum StoredName {
    /// In Dragonfly: the history every instance shares.
    Shared,
    /// In this instance's memory only: Dragonfly is not configured, or did
    /// not answer in time. The event is pushed there later, in arrival
    /// order, never twice.
    Local,
}

impl From<Placement> for StoredName {
    fn from(placement: Placement) -> Self {
        match placement {
            Placement::Shared => Self::Shared,
            Placement::Local => Self::Local,
        }
    }
}

/// A deploy event as CI reports it. Unknown fields are ignored.
#[derive(Debug, Clone, Object)]
#[oai(rename = "DeployEventRequest")]
pub struct DeployEventBody {
    /// The sender's name for this event, at most 128 characters (blank
    /// means none). An event posted again with the same `id` is answered
    /// 200 and stored once; without `id`, an event with the same `sha`,
    /// `slot`, `outcome` and `deployed_at` is the same event.
    pub id: Option<String>,
    /// Commit SHA, short or full: non-blank, at most 64 characters, no
    /// spaces.
    pub sha: String,
    /// Active blue/green slot after the deploy (`blue` or `green`).
    pub slot: Option<String>,
    /// How the deploy ended.
    pub outcome: DeployOutcomeName,
    /// How long the deploy took, in whole seconds.
    pub duration_s: Option<u64>,
    /// When the deploy finished: an RFC 3339 date-time such as
    /// `2026-02-21T10:13:00Z` (any offset). Defaults to the time chimney
    /// received the event.
    pub deployed_at: Option<String>,
    /// Alias of `deployed_at`, accepted for older senders; give one or the
    /// other.
    #[oai(deprecated)]
    pub timestamp: Option<String>,
    /// The pull request deployed; omit (or send 0) for a direct deploy.
    pub pr_number: Option<u64>,
    /// The pull request's title.
    pub pr_title: Option<String>,
    /// The origins provisioned or updated (at most 64).
    #[oai(default)]
    pub origin_ips: Vec<String>,
}

impl FromJsonFields for DeployEventBody {
    fn from_fields(fields: &JsonFields) -> Result<Self, String> {
        const TEXT: &str = "a string";
        const OUTCOME: &str = "\"success\" or \"failure\"";
        let id = fields.optional("id", TEXT)?;
        let sha = fields.required("sha", TEXT)?;
        let slot = fields.optional("slot", TEXT)?;
        let outcome: String = fields.required("outcome", OUTCOME)?;
        let outcome = DeployOutcome::parse(&outcome)
            .map_err(|e| e.to_string())?
            .into();
        let duration_s = fields.optional("duration_s", "a whole number of seconds (0 or more)")?;
        let deployed_at = fields.optional_with_alias(
            "deployed_at",
            "timestamp",
            "an RFC 3339 date-time string",
        )?;
        let pr_number = fields.optional("pr_number", "a whole number (0 or more)")?;
        let pr_title = fields.optional("pr_title", TEXT)?;
        let origin_ips = fields
            .optional("origin_ips", "a list of strings")?
            .unwrap_or_default();
        Ok(Self {
            id,
            sha,
            slot,
            outcome,
            duration_s,
            deployed_at,
            timestamp: None,
            pr_number,
            pr_title,
            origin_ips,
        })
    }
}

impl DeployEventBody {
    fn into_draft(self) -> DeployEventDraft {
        DeployEventDraft {
            id: self.id,
            sha: self.sha,
            slot: self.slot,
            outcome: DeployOutcome::from(self.outcome).as_str().to_owned(),
            duration_s: self.duration_s,
            deployed_at: self.deployed_at.or(self.timestamp),
            pr_number: self.pr_number,
            pr_title: self.pr_title,
            origin_ips: self.origin_ips,
        }
    }
}

/// A stored deploy event.
#[derive(Debug, Clone, Object)]
#[oai(rename = "DeployEvent")]
pub struct DeployEventView {
    /// The sender's name for the event, when it gave one.
    #[oai(skip_serializing_if_is_none)]
    pub id: Option<String>,
    /// Commit SHA.
    pub sha: String,
    /// Active slot after the deploy.
    #[oai(skip_serializing_if_is_none)]
    pub slot: Option<String>,
    /// How the deploy ended.
    pub outcome: DeployOutcomeName,
    /// How long the deploy took, in whole seconds.
    #[oai(skip_serializing_if_is_none)]
    pub duration_s: Option<u64>,
    /// When the deploy finished, RFC 3339 in UTC.
    pub deployed_at: String,
    /// The pull request deployed.
    #[oai(skip_serializing_if_is_none)]
    pub pr_number: Option<u64>,
    /// The pull request's title.
    #[oai(skip_serializing_if_is_none)]
    pub pr_title: Option<String>,
    /// The origins provisioned or updated.
    pub origin_ips: Vec<String>,
}

impl From<&DeployEvent> for DeployEventView {
    fn from(event: &DeployEvent) -> Self {
        Self {
            id: event.id().map(str::to_owned),
            sha: event.sha().to_owned(),
            slot: event.slot().map(str::to_owned),
            outcome: event.outcome().into(),
            duration_s: event.duration_s(),
            deployed_at: rfc3339(event.deployed_at()),
            pr_number: event.pr_number(),
            pr_title: event.pr_title().map(str::to_owned),
            origin_ips: event.origin_ips().to_vec(),
        }
    }
}

/// The answer to a posted event: the event, and where it is held.
#[derive(Debug, Clone, Object)]
#[oai(rename = "RecordedDeployEvent")]
pub struct RecordedDeployView {
    /// The event as accepted (for a repeat, as posted this time).
    #[oai(flatten)]
    pub event: DeployEventView,
    /// Where the event is held: `shared` (Dragonfly) or `local` (this
    /// instance's memory; pushed to Dragonfly once it answers).
    pub stored: StoredName,
}

impl From<&Recorded> for RecordedDeployView {
    fn from(recorded: &Recorded) -> Self {
        Self {
            event: DeployEventView::from(&recorded.event),
            stored: recorded.appended.placement.into(),
        }
    }
}

/// A stored deploy event with its age.
#[derive(Debug, Clone, Object)]
#[oai(rename = "AgedDeployEvent")]
pub struct AgedDeployView {
    /// The event.
    #[oai(flatten)]
    pub event: DeployEventView,
    /// Whole seconds from `deployed_at` to now (0 if `deployed_at` lies in
    /// the future).
    pub age_s: u64,
}

impl From<&AgedDeploy> for AgedDeployView {
    fn from(aged: &AgedDeploy) -> Self {
        Self {
            event: DeployEventView::from(&aged.event),
            age_s: aged.age_s,
        }
    }
}

/// The deploy picture.
#[derive(Debug, Clone, Object)]
#[oai(rename = "DeployStatus")]
pub struct DeployStatusView {
    /// The newest event by arrival (not by `deployed_at`).
    pub last_deploy: AgedDeployView,
    /// Up to 10 events, newest first by arrival.
    pub recent_deploys: Vec<AgedDeployView>,
    /// Events retained (the last 50).
    pub total_deploys: u64,
    /// Share of retained events that succeeded, percent to one decimal.
    pub success_rate_pct: f64,
}

impl From<&DeployStatus> for DeployStatusView {
    fn from(status: &DeployStatus) -> Self {
        Self {
            last_deploy: AgedDeployView::from(&status.last_deploy),
            recent_deploys: status.recent_deploys.iter().map(Into::into).collect(),
            total_deploys: status.total_deploys,
            success_rate_pct: status.success_rate_pct,
        }
    }
}

admin_response! {
    /// Answers of `POST /api/deploy/events`.
    pub enum RecordDeployResponse handled by "record_fault" as record_fault {
        /// The event as stored, and where; also the answer to a repeat
        /// (same `id`, or same `sha`, `slot`, `outcome` and `deployed_at`),
        /// which is not stored again.
        #[oai(status = 200)]
        Ok(Json<RecordedDeployView>),
    }
    bad_request:
        /// The body is not a valid deploy event: malformed JSON, a missing
        /// field, a wrong type, an unknown `outcome`; `detail` names the field.
        /// Also a body that does not arrive in whole within 10 s.
    unauthorized:
        /// The bearer token is missing or is not `DEPLOY_TOKEN`; answered
        /// from the headers, before any of the body is read.
    forbidden:
        /// A browser request from an origin not in `CHIMNEY_CORS_ORIGINS`.
    too_large:
        /// The body is over 64 KiB.
    extra: {
        /// The event could not be stored; the cause is logged.
        #[oai(status = 500, content_type = "application/problem+json")]
        Internal(Json<Problem>),
    }
    disabled:
        /// `DEPLOY_TOKEN` is not set on this instance: ingestion is disabled.
}

/// Answers of `GET /api/deploy/status`.
#[derive(ApiResponse)]
pub enum DeployStatusResponse {
    /// The deploy picture.
    #[oai(status = 200)]
    Ok(Json<DeployStatusView>),
    /// No deploy event has been received (or retained) yet; empty body.
    #[oai(status = 204)]
    NoEvents,
    /// The history could not be read; the cause is logged.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
}

/// Deploy event operations.
pub struct DeployApi {
    service: Arc<DeployService>,
    events: LiveEvents,
}

impl DeployApi {
    /// The API over a deploy service.
    pub fn new(service: Arc<DeployService>) -> Self {
        Self {
            service,
            events: LiveEvents::local_only(),
        }
    }

    /// Announces every newly stored event on `events` (`deploy`, data the
    /// event as `GET /api/deploy/status` lists it, without `age_s`).
    #[must_use]
    pub fn with_events(mut self, events: LiveEvents) -> Self {
        self.events = events;
        self
    }
}

/// Deploy events pushed by CI, and the status derived from them.
#[OpenApi(tag = "super::Tag::Deploys")]
impl DeployApi {
    /// Record a deploy event
    ///
    /// Called by the CI deploy pipeline when a deploy finishes, with
    /// `Authorization: Bearer $DEPLOY_TOKEN`. The last 50 events are kept,
    /// shared by every instance when Dragonfly is configured. The token is
    /// checked before the body is read; bodies over 64 KiB, or not in
    /// whole within 10 s, are refused before they are parsed. Idempotent:
    /// an event posted again (same `id`, or without one the same `sha`,
    /// `slot`, `outcome` and `deployed_at`) is answered 200 and stored
    /// once; `stored` says whether the event is in Dragonfly (`shared`) or
    /// waits in this instance's memory (`local`).
    #[oai(path = "/api/deploy/events", method = "post")]
    async fn record(
        &self,
        #[allow(unused_variables)] auth: DeployToken,
        body: JsonBody<DeployEventBody>,
    ) -> RecordDeployResponse {
        match self.service.record(body.0.into_draft()).await {
            Ok(recorded) => {
                let view = RecordedDeployView::from(&recorded);
                if !recorded.appended.duplicate {
                    self.events
                        .publish(LiveEventKind::Deploy, view.event.to_json_string());
                }
                RecordDeployResponse::Ok(Json(view))
            }
            Err(RecordDeployError::Invalid(error)) => {
                RecordDeployResponse::BadRequest(Json(Problem::bad_request(error.to_string())))
            }
            Err(error @ RecordDeployError::Unavailable(_)) => {
                tracing::error!(error = %error, cause = ?std::error::Error::source(&error), "deploy event not stored");
                RecordDeployResponse::Internal(Json(Problem::internal()))
            }
        }
    }

    /// Deploy status
    ///
    /// The newest deploy by arrival with its age, the ten most recent, and
    /// the success rate over the retained history. No authentication: the
    /// information is public. 204 with an empty body before the first
    /// event.
    #[oai(path = "/api/deploy/status", method = "get")]
    async fn status(&self) -> DeployStatusResponse {
        match self.service.status().await {
            Ok(Some(status)) => DeployStatusResponse::Ok(Json(DeployStatusView::from(&status))),
            Ok(None) => DeployStatusResponse::NoEvents,
            Err(error) => {
                tracing::error!(error = %error, "deploy history unreadable");
                DeployStatusResponse::Internal(Json(Problem::internal()))
            }
        }
    }
}

/// RFC 3339 in UTC, with fractional seconds only when there are any. The
/// domain only admits instants from 1970 to 9999, the range this formats.
fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339(at).to_string()
}
