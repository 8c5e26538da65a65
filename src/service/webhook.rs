//! `WebhookService`: what a GitHub webhook delivery does (CONTRACT 6, v2).
//! The HTTP side has checked the signature; here a repeated delivery is
//! recognised (across the fleet through the [`DeliveryLedger`], else in a
//! bounded local set), an event for a repository chimney does not serve is
//! ignored, and otherwise the event's keys (`domain::webhook_targets`) are
//! invalidated everywhere as `/api/cache/invalidate` does, announced on the
//! live events, and those clients asked for lately are fetched again in the
//! background so the next request is a fresh `HIT`.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;

use crate::domain::{
    CacheKey, InvalidationScope, PIPELINE_SUMMARY_KEY, RepoName, WebhookTarget, webhook_targets,
};
use crate::ports::DeliveryLedger;
use crate::service::cache_admin::{CacheAdminService, InvalidateError};
use crate::service::org::OrgDirectory;
use crate::service::proxy::ProxyService;
use crate::service::summary::SummaryService;

/// Deliveries remembered locally (memory-only, or while Dragonfly is away).
const LOCAL_DELIVERIES: usize = 10_000;

/// Refetches running at once after an invalidation.
const REFRESH_CONCURRENCY: usize = 4;

/// One delivery, as far as the receiver needs it.
#[derive(Debug, Clone, Copy)]
pub struct WebhookDelivery<'a> {
    /// `X-GitHub-Event`.
    pub event: &'a str,
    /// `X-GitHub-Delivery`, checked by the caller
    /// (`domain::is_valid_delivery_id`); `None` when absent.
    pub delivery: Option<&'a str>,
    /// The payload's `repository.full_name`, if any.
    pub repository: Option<&'a str>,
}

/// What a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// `ping`: GitHub checking the hook.
    Pong,
    /// This delivery was already handled (here or by another instance).
    Repeat,
    /// The event names no repository chimney serves: nothing evicted.
    NotServed {
        /// The event name.
        event: String,
    },
    /// The event's keys were invalidated (none for an unknown event).
    Invalidated {
        /// The event name.
        event: String,
        /// The key prefixes invalidated (`/` alone is the repository's own
        /// key, `__pipeline_summary__` the summary).
        prefixes: Vec<String>,
        /// Distinct keys removed from either tier.
        evicted: u64,
    },
}

/// The repositories chimney serves: the configured one, and in org mode
/// the discovered ones.
#[derive(Clone)]
pub struct ServedRepos {
    /// The configured repository (keys without a repo prefix).
    pub default: RepoName,
    /// The org's discovered repositories, in org mode.
    pub org: Option<OrgDirectory>,
}

/// The webhook receiver's logic. Cloning is cheap.
#[derive(Clone)]
pub struct WebhookService {
    admin: CacheAdminService,
    proxy: ProxyService,
    summary: SummaryService,
    served: ServedRepos,
    ledger: Option<Arc<dyn DeliveryLedger>>,
    local: Arc<Mutex<LocalDeliveries>>,
}

impl WebhookService {
    /// A receiver invalidating through `admin`, refetching through `proxy`
    /// and `summary`, for `served`; `ledger` is the fleet's record of
    /// deliveries (`None` in memory-only mode).
    pub fn new(
        admin: CacheAdminService,
        proxy: ProxyService,
        summary: SummaryService,
        served: ServedRepos,
        ledger: Option<Arc<dyn DeliveryLedger>>,
    ) -> Self {
        Self {
            admin,
            proxy,
            summary,
            served,
            ledger,
            local: Arc::default(),
        }
    }

    /// Handles one verified delivery.
    ///
    /// # Errors
    /// [`InvalidateError::SharedTierUnavailable`] when Dragonfly could not
    /// be cleared; the delivery is then forgotten, so a redelivery is
    /// handled.
    pub async fn receive(
        &self,
        delivery: WebhookDelivery<'_>,
    ) -> Result<WebhookOutcome, InvalidateError> {
        if delivery.event == "ping" {
            return Ok(WebhookOutcome::Pong);
        }
        if let Some(id) = delivery.delivery
            && !self.first_sighting(id).await
        {
            tracing::info!(
                event = delivery.event,
                delivery = id,
                "webhook delivery already handled; ignored"
            );
            return Ok(WebhookOutcome::Repeat);
        }
        let event = delivery.event.to_owned();
        let targets = webhook_targets(delivery.event);
        if targets.is_empty() {
            return Ok(WebhookOutcome::Invalidated {
                event,
                prefixes: Vec::new(),
                evicted: 0,
            });
        }
        let Some(base) = delivery.repository.and_then(|name| self.key_base(name)) else {
            tracing::info!(
                event = delivery.event,
                repository = delivery.repository,
                "webhook for a repository not served; ignored"
            );
            return Ok(WebhookOutcome::NotServed { event });
        };
        let scopes: Vec<InvalidationScope> = targets
            .iter()
            .filter_map(|target| scope_of(*target, base.as_deref()))
            .collect();
        let prefixes: Vec<String> = scopes
            .iter()
            .map(|scope| scope.literal_prefix().to_owned())
            .collect();
        let reason = format!("webhook {event}");
        let (evicted, keys) = match self.admin.invalidate_scopes(&scopes, &reason).await {
            Ok(done) => done,
            Err(error) => {
                if let Some(id) = delivery.delivery {
                    self.forget(id).await;
                }
                return Err(error);
            }
        };
        let labels: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        self.admin.announce(&labels, evicted, "webhook", false);
        let refresher = self.clone();
        tokio::spawn(async move { refresher.refetch(keys).await });
        Ok(WebhookOutcome::Invalidated {
            event,
            prefixes,
            evicted,
        })
    }

    /// The prefix the keys of repository `full_name` carry: `Some(None)`
    /// for the configured repository, `Some(Some("/owner/name"))` for a
    /// discovered org repository, `None` when it is not served.
    fn key_base(&self, full_name: &str) -> Option<Option<String>> {
        if self.served.default.same_as(full_name) {
            return Some(None);
        }
        let requested = RepoName::parse(full_name).ok()?;
        let resolved = self.served.org.as_ref()?.resolve(&requested)?;
        Some(Some(format!("/{resolved}")))
    }

    /// Fetches again, through the proxy, the keys among `evicted` that
    /// clients asked for lately, and rebuilds the summary if it was evicted.
    async fn refetch(&self, evicted: Vec<CacheKey>) {
        let recent = self.proxy.recent_keys();
        let summary_evicted = evicted.iter().any(|k| k.as_str() == PIPELINE_SUMMARY_KEY);
        let asked: Vec<_> = evicted
            .iter()
            .filter_map(|key| recent.asked_lately(key).map(|(r, at)| (key.clone(), r, at)))
            .collect();
        let refetched = asked.len();
        futures::stream::iter(asked)
            .for_each_concurrent(REFRESH_CONCURRENCY, |(key, request, at)| async move {
                let _ = self.proxy.handle(&request).await;
                self.proxy.recent_keys().restore(&key, at);
            })
            .await;
        if summary_evicted {
            let _ = self.summary.summary().await;
        }
        tracing::info!(
            refetched,
            summary = summary_evicted,
            "refetched after a webhook"
        );
    }

    async fn first_sighting(&self, id: &str) -> bool {
        if let Some(ledger) = &self.ledger {
            match ledger.first_sighting(id).await {
                Ok(first) => return first,
                Err(error) => {
                    tracing::warn!(%error, "webhook delivery ledger unavailable; deduplicating on this instance only");
                }
            }
        }
        self.local_deliveries().insert(id)
    }

    async fn forget(&self, id: &str) {
        self.local_deliveries().remove(id);
        if let Some(ledger) = &self.ledger
            && let Err(error) = ledger.forget(id).await
        {
            tracing::warn!(%error, "could not forget a failed webhook delivery");
        }
    }

    fn local_deliveries(&self) -> std::sync::MutexGuard<'_, LocalDeliveries> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The invalidation scope of `target` for keys under `base`; `None` for
/// the summary of a repository that has none.
fn scope_of(target: WebhookTarget, base: Option<&str>) -> Option<InvalidationScope> {
    let base = base.unwrap_or("");
    match target {
        WebhookTarget::Prefix(prefix) => Some(InvalidationScope::Prefix(format!("{base}{prefix}"))),
        WebhookTarget::RepoRoot => Some(InvalidationScope::Exact(format!("{base}/"))),
        WebhookTarget::Summary if base.is_empty() => {
            Some(InvalidationScope::prefix(PIPELINE_SUMMARY_KEY))
        }
        WebhookTarget::Summary => None,
    }
}

/// A bounded set of delivery ids, oldest forgotten first.
#[derive(Default)]
struct LocalDeliveries {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl LocalDeliveries {
    /// True when `id` was not in the set.
    fn insert(&mut self, id: &str) -> bool {
        if !self.seen.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > LOCAL_DELIVERIES
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        true
    }

    fn remove(&mut self, id: &str) {
        if self.seen.remove(id) {
            self.order.retain(|seen| seen != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_set_is_bounded_and_forgets_the_oldest() {
        let mut set = LocalDeliveries::default();
        assert!(set.insert("a"));
        assert!(!set.insert("a"));
        for n in 0..LOCAL_DELIVERIES {
            set.insert(&n.to_string());
        }
        assert_eq!(set.seen.len(), LOCAL_DELIVERIES);
        assert!(set.insert("a"), "the oldest was forgotten");
    }

    #[test]
    fn org_repositories_get_their_key_prefix() {
        assert_eq!(
            scope_of(WebhookTarget::RepoRoot, Some("/o/r")),
            Some(InvalidationScope::Exact("/o/r/".to_owned()))
        );
        assert_eq!(
            scope_of(WebhookTarget::Prefix("/pulls"), None),
            Some(InvalidationScope::Prefix("/pulls".to_owned()))
        );
        assert_eq!(scope_of(WebhookTarget::Summary, Some("/o/r")), None);
    }
}
