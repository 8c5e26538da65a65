//! Loading settings end to end: precedence, each setting from each source,
//! and the one-line refusals.

use std::fs;

use secrecy::ExposeSecret;

use super::*;
use crate::domain::TtlRule;

/// Loads with `args` (program name implied), `env`, and `file` as the
/// default `./chimney.toml` when given, in a fresh directory.
pub(super) fn load(
    args: &[&str],
    env: &[(&str, &str)],
    file: Option<&str>,
) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let default_path = dir.path().join("chimney.toml");
    if let Some(text) = file {
        fs::write(&default_path, text).expect("write config file");
    }
    let args = std::iter::once("chimney").chain(args.iter().copied());
    let env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::load_with(args, &env, &default_path)
}

fn error(args: &[&str], env: &[(&str, &str)], file: Option<&str>) -> String {
    let message = load(args, env, file)
        .expect_err("configuration should be refused")
        .to_string();
    assert!(!message.contains('\n'), "not one line: {message}");
    message
}

#[test]
fn nothing_configured_gives_the_contract_defaults() {
    let s = load(&[], &[], None).unwrap();
    assert_eq!(s.addr, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(s.docs, PathBuf::from("./docs"));
    assert_eq!(s.repo.to_string(), "atvirokodosprendimai/wgmesh");
    assert_eq!(s.org, None);
    assert!(s.repos_exclude.is_empty());
    assert_eq!(s.redis.unwrap().as_str(), "redis://127.0.0.1:6379");
    assert_eq!(s.github_api_url.as_str(), "https://api.github.com/");
    assert!(s.github_token.is_none() && s.deploy_token.is_none() && s.invalidate_token.is_none());
    assert!(!s.invalidate_all_allowed);
    assert_eq!(s.memory_capacity_bytes, 64 * 1024 * 1024);
    assert_eq!(s.upstream_concurrency, 32);
    assert_eq!(s.cors_origins, ["*"]);
    assert_eq!(s.summary_workflow, "goose-build.yml");
    assert_eq!(s.ttl, TtlPolicy::default());
    assert_eq!(s.otel, OtelSettings::default());
    assert_eq!(s.upstream_timeout, Duration::from_secs(10));
    assert_eq!(s.redis_timeout, Duration::from_millis(200));
}

#[test]
fn the_file_overrides_defaults_the_environment_overrides_the_file_and_flags_override_both() {
    let file = Some("addr = \"127.0.0.1:1001\"\nrepo = \"file/repo\"\ndocs = \"/srv/file\"\n");
    let env = [
        ("CHIMNEY_ADDR", "127.0.0.1:1002"),
        ("CHIMNEY_REPO", "env/repo"),
    ];
    let flags = ["--addr", "127.0.0.1:1003", "--repo", "flag/repo"];

    let s = load(&[], &[], file).unwrap();
    assert_eq!(s.addr.port(), 1001);
    assert_eq!(s.repo.to_string(), "file/repo");

    let s = load(&[], &env, file).unwrap();
    assert_eq!(s.addr.port(), 1002);
    assert_eq!(s.repo.to_string(), "env/repo");
    assert_eq!(s.docs, PathBuf::from("/srv/file"));

    let s = load(&flags, &env, file).unwrap();
    assert_eq!(s.addr.port(), 1003);
    assert_eq!(s.repo.to_string(), "flag/repo");
    assert_eq!(s.docs, PathBuf::from("/srv/file"));
}

#[test]
fn every_flag_sets_its_setting() {
    let s = load(
        &[
            "--docs=/srv/docs",
            "--org",
            "atvirokodosprendimai",
            "--redis",
            "rediss://cache:6380/1",
            "--github-api-url",
            "http://127.0.0.1:9999/api",
        ],
        &[],
        None,
    )
    .unwrap();
    assert_eq!(s.docs, PathBuf::from("/srv/docs"));
    assert_eq!(s.org.as_deref(), Some("atvirokodosprendimai"));
    assert_eq!(s.redis.unwrap().as_str(), "rediss://cache:6380/1");
    assert_eq!(s.github_api_url.as_str(), "http://127.0.0.1:9999/api");
}

#[test]
fn an_explicit_config_file_replaces_the_default_one() {
    let dir = tempfile::tempdir().unwrap();
    let explicit = dir.path().join("other.toml");
    fs::write(&explicit, "repo = \"explicit/repo\"\n").unwrap();
    let s = load(
        &["--config", explicit.to_str().unwrap()],
        &[],
        Some("repo = \"default/repo\"\n"),
    )
    .unwrap();
    assert_eq!(s.repo.to_string(), "explicit/repo");
}

#[test]
fn a_missing_explicit_config_file_is_an_error() {
    let message = error(&["--config", "/nonexistent/chimney.toml"], &[], None);
    assert_eq!(
        message,
        "config file /nonexistent/chimney.toml (--config) does not exist"
    );
}

#[test]
fn empty_redis_means_in_memory_only_from_env_or_flag() {
    let file = Some("redis = \"redis://file:6379\"\n");
    assert_eq!(
        load(&[], &[("CHIMNEY_REDIS", "")], file).unwrap().redis,
        None
    );
    assert_eq!(load(&["--redis", ""], &[], file).unwrap().redis, None);
    assert_eq!(load(&[], &[], Some("redis = \"\"\n")).unwrap().redis, None);
    let s = load(
        &["--redis", "redis://flag:6379"],
        &[("CHIMNEY_REDIS", "")],
        file,
    )
    .unwrap();
    assert_eq!(s.redis.unwrap().as_str(), "redis://flag:6379");
}

#[test]
fn github_token_is_trimmed_and_blank_means_unauthenticated() {
    let s = load(&[], &[("GITHUB_TOKEN", "  ghp_abc\n")], None).unwrap();
    assert_eq!(s.github_token.unwrap().expose_secret(), "ghp_abc");
    assert!(
        load(&[], &[("GITHUB_TOKEN", " \n")], None)
            .unwrap()
            .github_token
            .is_none()
    );
    assert!(
        load(&[], &[("GITHUB_TOKEN", "")], None)
            .unwrap()
            .github_token
            .is_none()
    );
}

#[test]
fn admin_tokens_come_from_the_environment_and_blank_means_none() {
    let s = load(
        &[],
        &[
            ("DEPLOY_TOKEN", "deploy-1"),
            ("INVALIDATE_TOKEN", "inval-1\n"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(s.deploy_token.unwrap().expose_secret(), "deploy-1");
    assert_eq!(s.invalidate_token.unwrap().expose_secret(), "inval-1");
    let s = load(
        &[],
        &[("DEPLOY_TOKEN", ""), ("INVALIDATE_TOKEN", "  ")],
        None,
    )
    .unwrap();
    assert!(s.deploy_token.is_none() && s.invalidate_token.is_none());
}

#[test]
fn invalidate_all_allowed_accepts_true_false_one_and_zero() {
    let allowed = |v| {
        load(&[], &[("INVALIDATE_ALL_ALLOWED", v)], None)
            .unwrap()
            .invalidate_all_allowed
    };
    assert!(allowed("true"));
    assert!(allowed("1"));
    assert!(!allowed("false"));
    assert!(!allowed("0"));
    assert!(!allowed(""));
}

#[test]
fn otel_settings_come_from_the_standard_variables() {
    let s = load(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SERVICE_NAME", "chimney-blue"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,slot=blue",
            ),
            ("OTEL_SDK_DISABLED", "true"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(s.otel.endpoint.as_str(), "http://collector:4318/");
    assert_eq!(s.otel.service_name, "chimney-blue");
    assert_eq!(
        s.otel.resource_attributes,
        [
            ("deployment.environment".to_owned(), "prod".to_owned()),
            ("slot".to_owned(), "blue".to_owned())
        ]
    );
    assert!(s.otel.disabled);
    let blank = load(
        &[],
        &[
            ("OTEL_SERVICE_NAME", ""),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        ],
        None,
    )
    .unwrap();
    assert_eq!(blank.otel, OtelSettings::default());
}

#[test]
fn unrelated_environment_variables_are_ignored() {
    let s = load(
        &[],
        &[
            ("CHIMNEY_TEST_DRAGONFLY_URL", "redis://127.0.0.1:7777"),
            ("CHIMNEY_SOMETHING_ELSE", "whatever"),
            ("PATH", "/usr/bin"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(s.redis.unwrap().as_str(), "redis://127.0.0.1:6379");
}

#[test]
fn a_token_key_in_the_file_is_refused_naming_the_key() {
    let message = error(&[], &[], Some("deploy_token = \"x\"\n"));
    assert!(message.contains("config file"), "{message}");
    assert!(message.contains("`deploy_token`"), "{message}");
    assert!(message.contains("DEPLOY_TOKEN"), "{message}");
}

#[test]
fn an_unknown_key_in_the_file_is_refused_naming_the_key() {
    let message = error(&[], &[], Some("repo = \"a/b\"\ncolour = \"blue\"\n"));
    assert!(message.contains("unknown key `colour`"), "{message}");
    let message = error(
        &[],
        &[],
        Some("[[ttl]]\npath = \"/x\"\nduration = \"1s\"\nttl = \"2s\"\n"),
    );
    assert!(message.contains("unknown key `ttl`"), "{message}");
    let message = error(&[], &[], Some("invalidate_all_allowed = true\n"));
    assert!(
        message.contains("unknown key `invalidate_all_allowed`"),
        "{message}"
    );
}

#[test]
fn a_malformed_file_is_one_line_naming_the_file() {
    let message = error(&[], &[], Some("repo = \n"));
    assert!(message.starts_with("config file "), "{message}");
    assert!(message.contains("line 1"), "{message}");
}

#[test]
fn a_repo_without_exactly_one_slash_is_refused_with_one_clear_line() {
    assert_eq!(
        error(&[], &[("CHIMNEY_REPO", "wgmesh")], None),
        "invalid value for repo (CHIMNEY_REPO): \"wgmesh\" (expected owner/name with exactly one '/' and only letters, digits, '-', '_' or '.')"
    );
    assert!(
        error(&["--repo", "a/b/c"], &[], None)
            .starts_with("invalid value for repo (--repo): \"a/b/c\"")
    );
    let from_file = error(&[], &[], Some("repo = \"wgmesh\"\n"));
    assert!(
        from_file.starts_with("invalid value for repo (config file "),
        "{from_file}"
    );
}

#[test]
fn each_invalid_value_is_refused_naming_its_key_and_value() {
    let cases = [
        ("CHIMNEY_ADDR", "localhost", "addr"),
        ("CHIMNEY_ADDR", "0.0.0.0:99999", "addr"),
        ("CHIMNEY_DOCS", "", "docs"),
        ("GITHUB_ORG", "evil/../org", "org"),
        ("CHIMNEY_GITHUB_API_URL", "not a url", "github_api_url"),
        (
            "CHIMNEY_GITHUB_API_URL",
            "ftp://api.github.com",
            "github_api_url",
        ),
        ("CHIMNEY_REDIS", "http://127.0.0.1:6379", "redis"),
        ("CHIMNEY_REDIS", "127.0.0.1:6379", "redis"),
        (
            "CHIMNEY_MEMORY_CAPACITY_BYTES",
            "0",
            "memory_capacity_bytes",
        ),
        (
            "CHIMNEY_MEMORY_CAPACITY_BYTES",
            "64MiB",
            "memory_capacity_bytes",
        ),
        ("CHIMNEY_UPSTREAM_CONCURRENCY", "0", "upstream_concurrency"),
        ("CHIMNEY_UPSTREAM_CONCURRENCY", "-1", "upstream_concurrency"),
        (
            "CHIMNEY_CORS_ORIGINS",
            "https://table.beerpub.dev/",
            "cors_origins",
        ),
        ("CHIMNEY_SUMMARY_WORKFLOW", "a/b.yml", "summary_workflow"),
        (
            "INVALIDATE_ALL_ALLOWED",
            "yes please",
            "invalidate_all_allowed",
        ),
        ("OTEL_SDK_DISABLED", "perhaps", "otel.disabled"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "collector:4318",
            "otel.endpoint",
        ),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "a=1,broken",
            "otel.resource_attributes",
        ),
        ("OTEL_RESOURCE_ATTRIBUTES", "=1", "otel.resource_attributes"),
    ];
    for (name, value, key) in cases {
        let message = error(&[], &[(name, value)], None);
        let offending = value.rsplit(',').next().unwrap_or(value);
        assert!(
            message.starts_with(&format!(
                "invalid value for {key} ({name}): {offending:?} (expected"
            )),
            "{name}={value}: {message}"
        );
    }
}

#[test]
fn zero_values_in_the_file_are_refused_naming_the_file() {
    let message = error(&[], &[], Some("memory_capacity_bytes = 0\n"));
    assert!(
        message.starts_with("invalid value for memory_capacity_bytes (config file "),
        "{message}"
    );
    let message = error(&[], &[], Some("upstream_concurrency = 0\n"));
    assert!(
        message.starts_with("invalid value for upstream_concurrency (config file "),
        "{message}"
    );
}

#[test]
fn a_bad_ttl_duration_is_refused_naming_the_rule() {
    let file = "[[ttl]]\npath = \"/pulls\"\nduration = \"5m\"\n\n[[ttl]]\npath = \"/issues\"\nduration = \"soon\"\n";
    let message = error(&[], &[], Some(file));
    assert!(
        message.starts_with("invalid value for ttl[1].duration (config file "),
        "{message}"
    );
    assert!(message.contains("\"soon\""), "{message}");
}

#[test]
fn ttl_rules_are_kept_in_file_order() {
    let file = r#"
        [[ttl]]
        path = "/pulls"
        query = "state=closed"
        duration = "10m"

        [[ttl]]
        path = "/pulls"
        duration = "45s"

        [[ttl]]
        path = "/releases"
        duration = "1h"
    "#;
    let s = load(&[], &[], Some(file)).unwrap();
    let rule = |path: &str, query: Option<&str>, secs| TtlRule {
        path: path.to_owned(),
        query: query.map(str::to_owned),
        ttl: Duration::from_secs(secs),
    };
    assert_eq!(
        s.ttl.rules(),
        [
            rule("/pulls", Some("state=closed"), 600),
            rule("/pulls", None, 45),
            rule("/releases", None, 3600),
        ]
    );
}

#[test]
fn an_empty_ttl_list_keeps_the_default_policy() {
    assert_eq!(
        load(&[], &[], Some("ttl = []\n")).unwrap().ttl,
        TtlPolicy::default()
    );
}

#[test]
fn lists_come_from_the_file_or_a_comma_list_in_the_environment() {
    let file = Some(
        "repos_exclude = [\"a\", \"owner/b\"]\ncors_origins = [\"https://table.beerpub.dev\"]\n",
    );
    let s = load(&[], &[], file).unwrap();
    assert_eq!(s.repos_exclude, ["a", "owner/b"]);
    assert_eq!(s.cors_origins, ["https://table.beerpub.dev"]);

    let env = [
        ("GITHUB_REPOS_EXCLUDE", " c, d ,"),
        (
            "CHIMNEY_CORS_ORIGINS",
            "https://a.dev,http://localhost:3000",
        ),
    ];
    let s = load(&[], &env, file).unwrap();
    assert_eq!(s.repos_exclude, ["c", "d"]);
    assert_eq!(s.cors_origins, ["https://a.dev", "http://localhost:3000"]);
}

#[test]
fn a_list_key_given_a_string_in_the_file_is_refused() {
    let message = error(&[], &[], Some("cors_origins = \"*\"\n"));
    assert!(message.starts_with("config file "), "{message}");
    assert!(message.contains("cors_origins"), "{message}");
}

#[test]
fn numbers_may_be_written_as_toml_integers_or_strings() {
    let s = load(
        &[],
        &[],
        Some("memory_capacity_bytes = 1024\nupstream_concurrency = \"4\"\n"),
    )
    .unwrap();
    assert_eq!(s.memory_capacity_bytes, 1024);
    assert_eq!(s.upstream_concurrency, 4);
}

#[test]
fn empty_org_means_single_repo_mode() {
    assert_eq!(load(&[], &[("GITHUB_ORG", "")], None).unwrap().org, None);
    assert_eq!(
        load(&["--org", "acme"], &[("GITHUB_ORG", "other")], None)
            .unwrap()
            .org
            .as_deref(),
        Some("acme")
    );
}

#[test]
fn a_token_value_never_appears_in_an_error() {
    const SECRET: &str = "tok-9f8e7d6c";
    let tokens = [
        ("GITHUB_TOKEN", SECRET),
        ("DEPLOY_TOKEN", SECRET),
        ("INVALIDATE_TOKEN", SECRET),
    ];
    let broken_env = [
        ("CHIMNEY_REPO", "wgmesh"),
        ("CHIMNEY_ADDR", "nowhere"),
        ("CHIMNEY_REDIS", "http://x"),
        ("INVALIDATE_ALL_ALLOWED", "maybe"),
        ("OTEL_RESOURCE_ATTRIBUTES", "broken"),
    ];
    for broken in broken_env {
        let mut env = tokens.to_vec();
        env.push(broken);
        assert!(!error(&[], &env, None).contains(SECRET));
    }
    for file in [
        format!("github_token = \"{SECRET}\"\n"),
        format!("invalidate_token = \"{SECRET}\"\n"),
        format!("[secrets]\ntoken = \"{SECRET}\"\n"),
        format!("github_token = \"{SECRET}\n"),
    ] {
        let message = error(&[], &tokens, Some(&file));
        assert!(!message.contains(SECRET), "{message}");
    }
    let message = error(
        &[],
        &[("CHIMNEY_REDIS", &format!("http://:{SECRET}@cache:6379"))],
        None,
    );
    assert!(!message.contains(SECRET), "{message}");
    assert!(message.contains("http://***@cache:6379"), "{message}");
}

#[test]
fn command_line_mistakes_are_one_line() {
    let message = error(&["--adr", "x"], &[], None);
    assert!(
        message.starts_with("invalid command line: unexpected argument '--adr'"),
        "{message}"
    );
}

#[test]
fn help_is_reported_as_a_request_not_a_failure() {
    match load(&["--help"], &[], None) {
        Err(ConfigError::Args(e)) => assert!(!e.use_stderr()),
        other => panic!("expected a help request, got {other:?}"),
    }
}

#[test]
fn the_example_config_file_loads_and_matches_the_defaults() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("chimney.example.toml");
    let s = load(&["--config", example.to_str().unwrap()], &[], None).unwrap();
    let d = Settings::default();
    assert_eq!(s.addr, d.addr);
    assert_eq!(s.docs, d.docs);
    assert_eq!(s.repo, d.repo);
    assert_eq!(s.org, d.org);
    assert_eq!(s.repos_exclude, d.repos_exclude);
    assert_eq!(s.redis, d.redis);
    assert_eq!(s.github_api_url, d.github_api_url);
    assert_eq!(s.memory_capacity_bytes, d.memory_capacity_bytes);
    assert_eq!(s.upstream_concurrency, d.upstream_concurrency);
    assert_eq!(s.cors_origins, d.cors_origins);
    assert_eq!(s.summary_workflow, d.summary_workflow);
    assert_eq!(s.ttl, d.ttl);
}

#[test]
fn the_commented_ttl_example_is_valid_and_is_the_default_policy() {
    let example = include_str!("../../../chimney.example.toml");
    let ttl_section = &example[example.find("# [[ttl]]").unwrap()..];
    let uncommented: String = ttl_section
        .lines()
        .map(|line| line.trim_start_matches('#').trim_start())
        .collect::<Vec<_>>()
        .join("\n");
    let s = load(&[], &[], Some(&uncommented)).unwrap();
    assert_eq!(s.ttl, TtlPolicy::default());
}

#[test]
fn each_set_setting_records_the_source_it_came_from() {
    let s = load(
        &["--addr", "127.0.0.1:1", "--repo", "flag/repo"],
        &[
            ("CHIMNEY_REPO", "env/repo"),
            ("CHIMNEY_CORS_ORIGINS", "https://a.dev"),
            ("OTEL_SERVICE_NAME", "chimney-blue"),
        ],
        Some("docs = \"/srv\"\nrepo = \"file/repo\"\n[[ttl]]\npath = \"/x\"\nduration = \"1s\"\n"),
    )
    .unwrap();
    let p = &s.provenance;
    assert_eq!(p.origin("addr"), &Origin::Flag("addr"));
    assert_eq!(p.origin("repo"), &Origin::Flag("repo"));
    assert_eq!(
        p.origin("cors_origins"),
        &Origin::Env("CHIMNEY_CORS_ORIGINS")
    );
    assert_eq!(
        p.origin("otel.service_name"),
        &Origin::Env("OTEL_SERVICE_NAME")
    );
    assert!(matches!(p.origin("docs"), Origin::File(path) if path.ends_with("chimney.toml")));
    assert!(matches!(p.origin("ttl"), Origin::File(_)));
    assert_eq!(p.origin("redis"), &Origin::Default);
    let keys: Vec<&str> = p.non_default().map(|(key, _)| key).collect();
    assert_eq!(
        keys,
        [
            "addr",
            "docs",
            "repo",
            "cors_origins",
            "ttl",
            "otel.service_name"
        ],
        "declaration order, set settings only"
    );
}

#[test]
fn nothing_set_means_every_setting_is_at_its_default() {
    let s = load(&[], &[("PATH", "/usr/bin")], None).unwrap();
    assert_eq!(s.provenance, Provenance::default());
    assert_eq!(s.provenance.to_string(), "none");
}

#[test]
fn the_report_lists_where_settings_came_from_in_one_line() {
    let s = load(
        &["--redis", ""],
        &[("CHIMNEY_ADDR", ":9090"), ("RUST_LOG", "debug")],
        None,
    )
    .unwrap();
    assert_eq!(
        s.startup_report().provenance.to_string(),
        "addr from CHIMNEY_ADDR, redis from --redis, log_filter from RUST_LOG"
    );
}

#[test]
fn a_token_is_reported_as_set_from_its_variable_and_never_shown() {
    const SECRET: &str = "ghp_provenance_secret_42";
    let s = load(
        &[],
        &[
            ("GITHUB_TOKEN", SECRET),
            ("DEPLOY_TOKEN", SECRET),
            ("INVALIDATE_TOKEN", SECRET),
        ],
        None,
    )
    .unwrap();
    let report = s.startup_report();
    assert!(!report.github_token_unset);
    let shown = report.provenance.to_string();
    assert_eq!(
        shown,
        "github_token from GITHUB_TOKEN, deploy_token from DEPLOY_TOKEN, invalidate_token from INVALIDATE_TOKEN"
    );
    assert!(!format!("{report:?}").contains(SECRET));
    assert!(!format!("{s:?}").contains(SECRET));
}

#[test]
fn a_blank_token_is_unset_and_the_report_says_so() {
    let s = load(&[], &[("GITHUB_TOKEN", " \n")], None).unwrap();
    let report = s.startup_report();
    assert!(report.github_token_unset);
    assert_eq!(report.provenance.origin("github_token"), &Origin::Default);
    assert!(
        load(&[], &[], None)
            .unwrap()
            .startup_report()
            .github_token_unset
    );
}

#[test]
fn the_report_names_the_mode_with_its_repo_or_org() {
    let single = load(&["--repo", "o/n"], &[], None).unwrap();
    let report = single.startup_report();
    assert_eq!(report.mode.name(), "single-repo");
    assert_eq!(
        report.mode.repo().map(ToString::to_string).as_deref(),
        Some("o/n")
    );
    assert_eq!(report.mode.org(), None);

    let org = load(&[], &[("GITHUB_ORG", "acme")], None).unwrap();
    let report = org.startup_report();
    assert_eq!(report.mode, Mode::Org("acme"));
    assert_eq!(report.mode.name(), "org");
    assert_eq!(report.mode.repo(), None);
}

#[test]
fn a_variable_another_component_reads_is_reported_but_never_judged() {
    let s = load(&[], &[("RUST_LOG", "nonsense=[[[")], None).unwrap();
    assert_eq!(s.provenance.origin("log_filter"), &Origin::Env("RUST_LOG"));
    let blank = load(&[], &[("RUST_LOG", "")], None).unwrap();
    assert_eq!(blank.provenance.origin("log_filter"), &Origin::Default);
}

#[test]
fn the_upstream_queue_and_stale_window_come_from_env_and_file() {
    let d = load(&[], &[], None).unwrap();
    assert_eq!(d.upstream_queue, 256);
    assert_eq!(d.upstream_queue_timeout, Duration::from_secs(5));
    assert_eq!(d.stale_while_revalidate, Duration::from_secs(60));

    let s = load(
        &[],
        &[
            ("CHIMNEY_UPSTREAM_QUEUE", "0"),
            ("CHIMNEY_STALE_WHILE_REVALIDATE", "0s"),
        ],
        Some("upstream_queue = 8\nupstream_queue_timeout = \"250ms\"\n"),
    )
    .unwrap();
    assert_eq!(s.upstream_queue, 0, "the environment wins over the file");
    assert_eq!(s.upstream_queue_timeout, Duration::from_millis(250));
    assert_eq!(s.stale_while_revalidate, Duration::ZERO);

    for (var, value, key) in [
        ("CHIMNEY_UPSTREAM_QUEUE", "-1", "upstream_queue"),
        ("CHIMNEY_UPSTREAM_QUEUE", "lots", "upstream_queue"),
        (
            "CHIMNEY_UPSTREAM_QUEUE_TIMEOUT",
            "5",
            "upstream_queue_timeout",
        ),
        (
            "CHIMNEY_STALE_WHILE_REVALIDATE",
            "soon",
            "stale_while_revalidate",
        ),
    ] {
        let message = error(&[], &[(var, value)], None);
        assert!(
            message.starts_with(&format!("invalid value for {key} ({var})")),
            "{message}"
        );
    }
}
