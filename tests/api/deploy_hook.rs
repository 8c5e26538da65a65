//! The CI deploy hook, `scripts/post-deploy-event.sh`, run for real against
//! a running chimney: what it posts must show up in `/api/deploy/status`
//! verbatim, and it must fail loudly, without printing the token, when
//! chimney refuses the event.

use std::path::PathBuf;
use std::process::Output;

use crate::admin_client::{DEPLOY_TOKEN, spawn_admin_app};
use crate::helpers::{REQUEST_DEADLINE, TestApp};

/// A title that breaks naive JSON or shell quoting.
const HOSTILE_TITLE: &str = "fix: \"quotes\", $(touch /tmp/pwned) `id` 'single' \\ and\nnewline";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/post-deploy-event.sh")
}

/// Whether the tools the script needs are installed; says why not.
fn tools_present(tool: &str) -> bool {
    for needed in ["bash", "curl", tool] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {needed}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            println!("skipping: {needed} is not installed");
            return false;
        }
    }
    true
}

/// Runs the script with a clean environment plus `env`. Runs on Tokio's
/// process support so the server, on the same runtime, keeps answering.
async fn run_hook(app: &TestApp, env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new("bash");
    command
        .arg(script())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CHIMNEY_URL", &app.address)
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    tokio::time::timeout(REQUEST_DEADLINE * 2, command.output())
        .await
        .expect("the hook finished in time")
        .expect("the hook ran")
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn hook_reports_a_deploy_with(tool: &str) {
    if !tools_present(tool) {
        return;
    }
    let app = spawn_admin_app().await;

    let output = run_hook(
        &app,
        &[
            ("DEPLOY_TOKEN", DEPLOY_TOKEN),
            ("POST_DEPLOY_JSON_TOOL", tool),
            ("SHA", "3051037"),
            ("OUTCOME", "success"),
            ("SLOT", "green"),
            ("DURATION_S", "47"),
            ("PR_NUMBER", "321"),
            ("PR_TITLE", HOSTILE_TITLE),
            ("ORIGIN_IPS", "1.2.3.4, 5.6.7.8"),
        ],
    )
    .await;

    assert!(output.status.success(), "hook failed: {}", printed(&output));
    assert!(
        !printed(&output).contains(DEPLOY_TOKEN),
        "the hook printed the token"
    );
    let last = &app.deploy_status_json().await["last_deploy"];
    assert_eq!(last["sha"], "3051037");
    assert_eq!(last["outcome"], "success");
    assert_eq!(last["slot"], "green");
    assert_eq!(last["duration_s"], 47);
    assert_eq!(last["pr_number"], 321);
    assert_eq!(last["pr_title"], HOSTILE_TITLE);
    assert_eq!(
        last["origin_ips"],
        serde_json::json!(["1.2.3.4", "5.6.7.8"])
    );
    assert!(last["age_s"].as_u64().expect("age_s") < 60);
}

#[tokio::test]
async fn the_deploy_hook_reports_a_deploy_built_with_python() {
    hook_reports_a_deploy_with("python3").await;
}

#[tokio::test]
async fn the_deploy_hook_reports_a_deploy_built_with_jq() {
    hook_reports_a_deploy_with("jq").await;
}

#[tokio::test]
async fn the_deploy_hook_reports_a_failure_with_only_the_required_fields() {
    if !tools_present("python3") {
        return;
    }
    let app = spawn_admin_app().await;

    let output = run_hook(
        &app,
        &[
            ("DEPLOY_TOKEN", DEPLOY_TOKEN),
            ("GITHUB_SHA", "abcdef1"),
            ("OUTCOME", "failure"),
        ],
    )
    .await;

    assert!(output.status.success(), "hook failed: {}", printed(&output));
    let status = app.deploy_status_json().await;
    assert_eq!(status["last_deploy"]["sha"], "abcdef1");
    assert_eq!(status["last_deploy"]["outcome"], "failure");
    assert_eq!(status["success_rate_pct"], 0.0);
}

#[tokio::test]
async fn the_deploy_hook_fails_without_printing_the_token_when_refused() {
    if !tools_present("python3") {
        return;
    }
    let app = spawn_admin_app().await;
    let wrong = "wrong-token-that-must-not-be-printed";

    let output = run_hook(
        &app,
        &[
            ("DEPLOY_TOKEN", wrong),
            ("SHA", "abc"),
            ("OUTCOME", "success"),
        ],
    )
    .await;

    assert!(
        !output.status.success(),
        "a refused event must fail the hook"
    );
    assert!(!printed(&output).contains(wrong), "{}", printed(&output));
    assert_eq!(app.deploy_status().await.status, 204);
}

#[tokio::test]
async fn the_deploy_hook_refuses_bad_arguments_before_calling_chimney() {
    if !tools_present("python3") {
        return;
    }
    let app = spawn_admin_app().await;

    for env in [
        &[
            ("DEPLOY_TOKEN", DEPLOY_TOKEN),
            ("SHA", "abc"),
            ("OUTCOME", "ok"),
        ][..],
        &[("DEPLOY_TOKEN", DEPLOY_TOKEN), ("OUTCOME", "success")][..],
        &[("SHA", "abc"), ("OUTCOME", "success")][..],
        &[
            ("DEPLOY_TOKEN", DEPLOY_TOKEN),
            ("SHA", "abc"),
            ("OUTCOME", "success"),
            ("DURATION_S", "47s"),
        ][..],
    ] {
        let output = run_hook(&app, env).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{env:?}: {}",
            printed(&output)
        );
    }
    assert_eq!(app.deploy_status().await.status, 204);
}

/// In GitHub Actions the hook names the event after the run attempt and
/// outcome, so posting it again (curl's retry, a re-run notify step, even
/// seconds later) stores it once.
async fn hook_posts_a_run_once_with(tool: &str) {
    if !tools_present(tool) {
        return;
    }
    let app = spawn_admin_app().await;
    for deployed_at in ["2026-12-04T10:00:00Z", "2026-12-04T10:00:07Z"] {
        let output = run_hook(
            &app,
            &[
                ("DEPLOY_TOKEN", DEPLOY_TOKEN),
                ("POST_DEPLOY_JSON_TOOL", tool),
                ("GITHUB_SHA", "3051037"),
                ("GITHUB_RUN_ID", "987654321"),
                ("GITHUB_RUN_ATTEMPT", "2"),
                ("OUTCOME", "success"),
                ("DEPLOYED_AT", deployed_at),
            ],
        )
        .await;
        assert!(output.status.success(), "hook failed: {}", printed(&output));
    }

    let status = app.deploy_status_json().await;
    assert_eq!(status["total_deploys"], 1, "{status}");
    assert_eq!(status["last_deploy"]["id"], "987654321.2.success");
}

#[tokio::test]
async fn the_deploy_hook_posts_a_run_once_built_with_python() {
    hook_posts_a_run_once_with("python3").await;
}

#[tokio::test]
async fn the_deploy_hook_posts_a_run_once_built_with_jq() {
    hook_posts_a_run_once_with("jq").await;
}

#[tokio::test]
async fn the_deploy_hook_refuses_an_id_over_128_characters() {
    if !tools_present("python3") {
        return;
    }
    let app = spawn_admin_app().await;
    let long_id = "x".repeat(129);

    let output = run_hook(
        &app,
        &[
            ("DEPLOY_TOKEN", DEPLOY_TOKEN),
            ("SHA", "abc"),
            ("OUTCOME", "success"),
            ("EVENT_ID", &long_id),
        ],
    )
    .await;

    assert_eq!(output.status.code(), Some(2), "{}", printed(&output));
    assert_eq!(app.deploy_status().await.status, 204);
}
