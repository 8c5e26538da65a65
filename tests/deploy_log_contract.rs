//! The `DeployLog` conformance suite: what every deploy history must do,
//! written once as functions over `&dyn DeployLog` and run against each
//! backend, like `tests/cache_contract.rs` does for the cache tiers.
//!
//! The memory ring always runs. The Dragonfly list runs only when
//! `CHIMNEY_TEST_DRAGONFLY_URL` names a server (Debian's `redis-server`
//! stands in for Dragonfly); otherwise its tests print that they skip.
//! Each Dragonfly test writes its own key, so tests sharing the server never
//! see each other's events.

use std::time::{Duration, SystemTime};

use chimney::domain::{DEPLOY_HISTORY_LIMIT, DeployEvent, DeployEventDraft};
use chimney::ports::DeployLog;

/// An event for `sha` whose every optional field is set, so a round trip
/// that loses one fails.
fn event(sha: &str) -> DeployEvent {
    let draft = DeployEventDraft {
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
    );
}

mod dragonfly {
    use chimney::adapters::dragonfly::{DragonflyDeployLog, build_pool};

    use super::Duration;

    /// A log on its own key of the shared test server, or `None` after
    /// printing why the test skips.
    async fn log(test: &str) -> Option<DragonflyDeployLog> {
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
    );
}
