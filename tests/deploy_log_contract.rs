//! The `DeployLog` conformance suite: what every deploy history must do,
//! written once as functions over `&dyn DeployLog` and run against each
//! backend, like `tests/cache_contract.rs` does for the cache tiers.
//!
//! The memory ring always runs. The Dragonfly list runs only when
//! `CHIMNEY_TEST_DRAGONFLY_URL` names a server (Debian's `redis-server`
//! stands in for Dragonfly); otherwise its tests print that they skip.
//! Each Dragonfly test writes its own key, so tests sharing the server never
//! see each other's events. The `ResilientDeployLog` the application uses
//! (the service over both) runs the suite too, alone and over Dragonfly.

use std::time::{Duration, SystemTime};

use chimney::domain::{DEPLOY_HISTORY_LIMIT, DeployEvent, DeployEventDraft};
use chimney::ports::DeployLog;

/// An event for `sha` whose every optional field is set, so a round trip
/// that loses one fails.
fn event(sha: &str) -> DeployEvent {
    let draft = DeployEventDraft {
        id: None,
        sha: sha.to_owned(),
        slot: Some("green".to_owned()),
        outcome: "success".to_owned(),
        duration_s: Some(42),
        deployed_at: Some("2026-05-01T10:00:00Z".to_owned()),
        pr_number: Some(17),
        pr_title: Some("Ship it".to_owned()),
        origin_ips: vec!["203.0.113.7".to_owned(), "2001:db8::1".to_owned()],
    };
    DeployEvent::parse(draft, SystemTime::now()).expect("a valid event")
}

/// `event(sha)` with `id` and, when given, another `deployed_at`.
fn variant(sha: &str, id: Option<&str>, deployed_at: Option<&str>) -> DeployEvent {
    let base = event(sha);
    let draft = DeployEventDraft {
        id: id.map(str::to_owned),
        sha: sha.to_owned(),
        slot: base.slot().map(str::to_owned),
        outcome: base.outcome().as_str().to_owned(),
        duration_s: base.duration_s(),
        deployed_at: Some(deployed_at.unwrap_or("2026-05-01T10:00:00Z").to_owned()),
        pr_number: base.pr_number(),
        pr_title: base.pr_title().map(str::to_owned),
        origin_ips: base.origin_ips().to_vec(),
    };
    DeployEvent::parse(draft, SystemTime::now()).expect("a valid event")
}

fn shas(events: &[DeployEvent]) -> Vec<&str> {
    events.iter().map(DeployEvent::sha).collect()
}

async fn an_empty_log_has_no_events(log: &dyn DeployLog) {
    assert!(log.recent(10).await.expect("recent").is_empty());
}

async fn events_come_back_whole(log: &dyn DeployLog) {
    let appended = event("abc1234");
    log.append(appended.clone()).await.expect("append");
    assert_eq!(log.recent(10).await.expect("recent"), [appended]);
}

async fn events_come_back_newest_first_by_arrival(log: &dyn DeployLog) {
    for sha in ["aaa1111", "bbb2222", "ccc3333"] {
        log.append(event(sha)).await.expect("append");
    }
    assert_eq!(
        shas(&log.recent(10).await.expect("recent")),
        ["ccc3333", "bbb2222", "aaa1111"]
    );
}

async fn recent_returns_at_most_the_limit(log: &dyn DeployLog) {
    for i in 0..5 {
        log.append(event(&format!("{i:07}"))).await.expect("append");
    }
    assert_eq!(
        shas(&log.recent(2).await.expect("recent")),
        ["0000004", "0000003"]
    );
}

async fn only_the_newest_events_are_retained(log: &dyn DeployLog) {
    let total = DEPLOY_HISTORY_LIMIT + 5;
    for i in 0..total {
        log.append(event(&format!("{i:07}"))).await.expect("append");
    }
    let kept = log.recent(total).await.expect("recent");
    assert_eq!(kept.len(), DEPLOY_HISTORY_LIMIT);
    assert_eq!(kept[0].sha(), format!("{:07}", total - 1));
    assert_eq!(kept[DEPLOY_HISTORY_LIMIT - 1].sha(), format!("{:07}", 5));
}

async fn a_repeat_is_stored_once(log: &dyn DeployLog) {
    let first = log.append(event("aaa1111")).await.expect("append");
    log.append(event("bbb2222")).await.expect("append");
    let again = log.append(event("aaa1111")).await.expect("append");
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(
        shas(&log.recent(10).await.expect("recent")),
        ["bbb2222", "aaa1111"]
    );
}

async fn the_same_id_is_the_same_event_whatever_else_differs(log: &dyn DeployLog) {
    let first = variant("aaa1111", Some("ci-run-7"), None);
    let retry = variant("bbb2222", Some("ci-run-7"), Some("2026-05-01T10:05:00Z"));
    assert!(!log.append(first.clone()).await.expect("append").duplicate);
    assert!(log.append(retry).await.expect("append").duplicate);
    assert_eq!(log.recent(10).await.expect("recent"), [first]);
}

async fn without_an_id_sha_slot_outcome_and_deployed_at_decide(log: &dyn DeployLog) {
    assert!(
        !log.append(event("aaa1111"))
            .await
            .expect("append")
            .duplicate
    );
    // The same four fields (the same instant at another offset), another
    // title and duration: the same event.
    let retitled = {
        let base = event("aaa1111");
        let draft = DeployEventDraft {
            id: None,
            sha: base.sha().to_owned(),
            slot: base.slot().map(str::to_owned),
            outcome: base.outcome().as_str().to_owned(),
            duration_s: Some(1),
            deployed_at: Some("2026-05-01T12:00:00+02:00".to_owned()),
            pr_number: None,
            pr_title: Some("another title".to_owned()),
            origin_ips: Vec::new(),
        };
        DeployEvent::parse(draft, SystemTime::now()).expect("a valid event")
    };
    assert!(log.append(retitled).await.expect("append").duplicate);
    // Another deployed_at: another event. An id makes it another one too.
    let later = variant("aaa1111", None, Some("2026-05-01T10:00:01Z"));
    assert!(!log.append(later).await.expect("append").duplicate);
    let named = variant("aaa1111", Some("named"), None);
    assert!(!log.append(named).await.expect("append").duplicate);
    assert_eq!(log.recent(10).await.expect("recent").len(), 3);
}

async fn a_batch_goes_in_in_order_skipping_repeats(log: &dyn DeployLog) {
    log.append(event("aaa1111")).await.expect("append");
    let appended = log
        .append_all(vec![
            event("bbb2222"),
            event("aaa1111"),
            event("ccc3333"),
            event("bbb2222"),
        ])
        .await
        .expect("append_all");
    let repeats: Vec<bool> = appended.iter().map(|a| a.duplicate).collect();
    assert_eq!(repeats, [false, true, false, true]);
    assert_eq!(
        shas(&log.recent(10).await.expect("recent")),
        ["ccc3333", "bbb2222", "aaa1111"]
    );
}

// ----- backends -----
//
// Each backend module lists every contract function once.

mod memory {
    use chimney::adapters::memory::MemoryDeployLog;

    macro_rules! on_memory {
        ($($contract:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $contract() {
                super::$contract(&MemoryDeployLog::new()).await;
            }
        )*};
    }

    on_memory!(
        an_empty_log_has_no_events,
        events_come_back_whole,
        events_come_back_newest_first_by_arrival,
        recent_returns_at_most_the_limit,
        only_the_newest_events_are_retained,
        a_repeat_is_stored_once,
        the_same_id_is_the_same_event_whatever_else_differs,
        without_an_id_sha_slot_outcome_and_deployed_at_decide,
        a_batch_goes_in_in_order_skipping_repeats,
    );
}

mod dragonfly {
    use chimney::adapters::dragonfly::{DragonflyDeployLog, build_pool};

    use super::Duration;

    /// A log on its own key of the shared test server, or `None` after
    /// printing why the test skips.
    pub(super) async fn log(test: &str) -> Option<DragonflyDeployLog> {
        let Ok(url) = std::env::var("CHIMNEY_TEST_DRAGONFLY_URL") else {
            println!("skipping: CHIMNEY_TEST_DRAGONFLY_URL not set");
            return None;
        };
        let url = url::Url::parse(&url).expect("CHIMNEY_TEST_DRAGONFLY_URL is a URL");
        let timeout = Duration::from_millis(500);
        let pool = build_pool(&url, timeout).expect("pool builds");
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let key = format!(
            "deploy-log-contract:{test}:{}:{started}",
            std::process::id()
        );
        Some(DragonflyDeployLog::with_key(pool, key, timeout))
    }

    macro_rules! on_dragonfly {
        ($($contract:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $contract() {
                if let Some(log) = log(stringify!($contract)).await {
                    super::$contract(&log).await;
                }
            }
        )*};
    }

    on_dragonfly!(
        an_empty_log_has_no_events,
        events_come_back_whole,
        events_come_back_newest_first_by_arrival,
        recent_returns_at_most_the_limit,
        only_the_newest_events_are_retained,
        a_repeat_is_stored_once,
        the_same_id_is_the_same_event_whatever_else_differs,
        without_an_id_sha_slot_outcome_and_deployed_at_decide,
        a_batch_goes_in_in_order_skipping_repeats,
    );
}

/// The service's log, as the application wires it: the memory ring alone,
/// and the memory ring in front of Dragonfly.
mod resilient {
    use std::sync::Arc;

    use chimney::adapters::memory::MemoryDeployLog;
    use chimney::service::deploys::ResilientDeployLog;

    macro_rules! on_resilient {
        ($($contract:ident),* $(,)?) => {$(
            mod $contract {
                use super::*;

                #[tokio::test]
                async fn alone() {
                    let log = ResilientDeployLog::local_only(Arc::new(MemoryDeployLog::new()));
                    super::super::$contract(&log).await;
                }

                #[tokio::test]
                async fn over_dragonfly() {
                    let test = concat!("resilient-", stringify!($contract));
                    if let Some(shared) = super::super::dragonfly::log(test).await {
                        let log = ResilientDeployLog::shared(
                            Arc::new(shared),
                            Arc::new(MemoryDeployLog::new()),
                        );
                        super::super::$contract(&log).await;
                    }
                }
            }
        )*};
    }

    on_resilient!(
        an_empty_log_has_no_events,
        events_come_back_whole,
        events_come_back_newest_first_by_arrival,
        recent_returns_at_most_the_limit,
        only_the_newest_events_are_retained,
        a_repeat_is_stored_once,
        the_same_id_is_the_same_event_whatever_else_differs,
        without_an_id_sha_slot_outcome_and_deployed_at_decide,
        a_batch_goes_in_in_order_skipping_repeats,
    );
}
