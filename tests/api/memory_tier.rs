//! The memory tier keeps bodies up to the 10 MiB cap (issue "Bounded
//! under load and faults", item 6): quick_cache's default sharding would
//! split the 64 MiB budget into shards too small to admit them, more so the
//! more cores the host has. The 64-core case itself is tested on the
//! adapter (`adapters::memory::cache`), with a simulated core count.

use reqwest::Method;
use serde_json::json;

use crate::admin_client::{INVALIDATE_TOKEN, spawn_admin_app};

/// Just under chimney's 10 MiB body cap.
const NEAR_CAP: usize = 10 * 1024 * 1024 - 64 * 1024;

#[tokio::test]
async fn a_body_near_the_cap_is_kept_in_the_memory_tier() {
    let app = spawn_admin_app().await;
    let rel = "/contents/big.json";
    let body = format!("\"{}\"", "x".repeat(NEAR_CAP - 2));
    app.github.set_resource(
        &app.upstream(rel),
        200,
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("etag", "\"big-1\""),
        ],
        body.clone(),
    );

    let first = app.get_github(rel).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body.len(), body.len());
    // Evicting the key reports, per tier, whether it was there: the memory
    // tier must have kept it (in Dragonfly mode too, where a second GET
    // would be a hit from Dragonfly and prove nothing).
    let evicted = app
        .send(
            Method::POST,
            "/api/cache/invalidate",
            &[
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {INVALIDATE_TOKEN}")),
            ],
            json!({"path": rel, "reason": "test"}).to_string(),
        )
        .await;
    assert_eq!(evicted.status, 200, "{}", evicted.text());
    assert_eq!(evicted.json()["memory"], 1, "{}", evicted.text());
}
