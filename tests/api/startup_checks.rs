//! Start-up refuses what would leak or misuse a secret (CONTRACT 1 and 3,
//! v2): a `GITHUB_TOKEN` that is not a valid header value, a token bound
//! for a plain `http://` GitHub URL on another host (unless explicitly
//! allowed), and a Redis URL whose password would be printed. The real
//! binary is run, and everything it prints is searched for the secret.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chimney::bootstrap::config::Settings;
use chimney::bootstrap::startup::Application;
use secrecy::SecretString;

const SECRET: &str = "s3cr3t-value";

/// The binary with a clean environment: loopback, memory only, no export.
fn chimney(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chimney"));
    command
        .env_clear()
        .env("CHIMNEY_ADDR", "127.0.0.1:0")
        .env("CHIMNEY_REDIS", "")
        .env("OTEL_SDK_DISABLED", "true")
        .env("RUST_LOG", "debug")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Runs to completion (at most 20 s); exit code and everything printed.
fn run(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = chimney(env).spawn().expect("start chimney");
    let until = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < until, "chimney did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = child.wait().expect("exit status").code();
    (code, output(&mut child))
}

/// Lets it run for `duration`, stops it, and returns everything printed.
fn run_for(env: &[(&str, &str)], duration: Duration) -> (bool, String) {
    let mut child = chimney(env).spawn().expect("start chimney");
    std::thread::sleep(duration);
    let was_running = child.try_wait().expect("wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    (was_running, output(&mut child))
}

fn output(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

#[test]
fn a_github_token_that_is_not_a_header_value_stops_start_up_without_echo() {
    for token in [
        format!("ghp_{SECRET}\u{1}"),
        format!("ghp_{SECRET} x"),
        format!("ghp_{SECRET}\u{e9}"),
    ] {
        let (code, printed) = run(&[("GITHUB_TOKEN", &token)]);

        assert_eq!(code, Some(2), "{printed}");
        assert!(printed.contains("GITHUB_TOKEN"), "{printed}");
        assert!(!printed.contains(SECRET), "{printed}");
        assert!(!printed.contains("panicked"), "{printed}");
    }
}

#[tokio::test]
async fn a_github_token_that_is_not_a_header_value_fails_the_build_not_a_panic() {
    let settings = Settings {
        addr: "127.0.0.1:0".parse().unwrap(),
        redis: None,
        github_token: Some(SecretString::from(format!("ghp_{SECRET}\r\nX-Evil: 1"))),
        ..Settings::default()
    };

    let Err(error) = Application::build(settings, None).await else {
        panic!("an unusable token was accepted");
    };

    let message = format!("{error:#}");
    assert!(message.contains("GITHUB_TOKEN"), "{message}");
    assert!(!message.contains(SECRET), "{message}");
}

#[test]
fn a_token_for_a_plain_http_github_url_stops_start_up_unless_allowed() {
    let env = [
        ("GITHUB_TOKEN", "ghp_s3cr3t-value"),
        ("CHIMNEY_GITHUB_API_URL", "http://github.internal:8080"),
    ];

    let (code, printed) = run(&env);

    assert_eq!(code, Some(2), "{printed}");
    assert!(printed.contains("github_api_url"), "{printed}");
    assert!(
        printed.contains("CHIMNEY_ALLOW_INSECURE_GITHUB_URL"),
        "{printed}"
    );
    assert!(!printed.contains(SECRET), "{printed}");

    let mut allowed = env.to_vec();
    allowed.push(("CHIMNEY_ALLOW_INSECURE_GITHUB_URL", "true"));
    let (running, printed) = run_for(&allowed, Duration::from_secs(2));

    assert!(running, "the explicit allow starts chimney: {printed}");
    assert!(printed.contains("chimney listening"), "{printed}");
    assert!(!printed.contains(SECRET), "{printed}");
}

#[test]
fn a_token_for_a_loopback_http_github_url_needs_no_allow() {
    let (running, printed) = run_for(
        &[
            ("GITHUB_TOKEN", "ghp_s3cr3t-value"),
            ("CHIMNEY_GITHUB_API_URL", "http://127.0.0.1:9"),
        ],
        Duration::from_secs(2),
    );

    assert!(running, "{printed}");
    assert!(!printed.contains(SECRET), "{printed}");
}

#[tokio::test]
async fn a_settings_value_sending_the_token_in_clear_fails_the_build() {
    let settings = Settings {
        addr: "127.0.0.1:0".parse().unwrap(),
        redis: None,
        github_api_url: url::Url::parse("http://github.internal:8080").unwrap(),
        github_token: Some(SecretString::from(format!("ghp_{SECRET}"))),
        ..Settings::default()
    };

    let Err(error) = Application::build(settings, None).await else {
        panic!("the token would have been sent in clear");
    };

    let message = format!("{error:#}");
    assert!(message.contains("plain http"), "{message}");
    assert!(!message.contains(SECRET), "{message}");
}

#[test]
fn a_redis_password_with_reserved_characters_is_never_printed() {
    for url in [
        format!("redis://:{SECRET}/x@cache.internal:6379/0"),
        format!("redis://:{SECRET}?x@cache.internal:6379"),
        format!("redis://:{SECRET}#x@cache.internal:6379"),
        format!("redis://user:{SECRET}/x@cache.internal:6379"),
    ] {
        let (code, printed) = run(&[("CHIMNEY_REDIS", &url)]);

        assert_eq!(code, Some(2), "{url}: {printed}");
        assert!(printed.contains("redis"), "{printed}");
        assert!(!printed.contains(SECRET), "{url}: {printed}");
    }
}

#[test]
fn a_redis_password_is_never_logged_while_dragonfly_is_unreachable() {
    // Percent-encoded, so valid; nothing listens on port 1, so chimney
    // logs connection failures for as long as it runs.
    let url = format!("redis://user:{SECRET}%2Fx%3Fy%23z@127.0.0.1:1/3");
    let (running, printed) = run_for(&[("CHIMNEY_REDIS", &url)], Duration::from_secs(3));

    assert!(running, "{printed}");
    assert!(printed.contains("chimney listening"), "{printed}");
    assert!(!printed.contains(SECRET), "{printed}");
}
