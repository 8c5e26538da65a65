//! Every setting, declared once. The flags, the environment allow-list,
//! the config file's keys, `--help` and the start-up report are all made
//! from this table; tests hold the README's table and
//! `chimney.example.toml` to it.
//!
//! Adding a setting: its field in `Settings` (and its default in
//! `Settings::default()`), one entry here, a row in the README's
//! Configuration table and, when the file may hold it, a line in
//! `chimney.example.toml`. The tests name whatever was forgotten.

use super::spec::{DefaultText, Flag, Layered, Reach, SettingSpec};
use super::values;
use crate::domain::PathPolicy;

/// All settings, in the order `--help` lists them and values are checked.
pub(super) const SPECS: &[SettingSpec] = &[
    SettingSpec {
        key: "addr",
        help: "Listen address, IP:PORT (or :PORT for all interfaces)",
        default: DefaultText::Value("0.0.0.0:8080"),
        reach: Reach::Layered {
            env: "CHIMNEY_ADDR",
            flag: Some(Flag {
                long: "addr",
                value_name: "IP:PORT",
            }),
            apply: Layered::Text(|s, text| {
                s.addr = values::addr(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "docs",
        help: "Static dashboard directory served at /",
        default: DefaultText::Value("./docs"),
        reach: Reach::Layered {
            env: "CHIMNEY_DOCS",
            flag: Some(Flag {
                long: "docs",
                value_name: "DIR",
            }),
            apply: Layered::Text(|s, text| {
                s.docs = values::docs(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "repo",
        help: "GitHub repository proxied by /api/github/..., owner/name",
        default: DefaultText::Value("atvirokodosprendimai/wgmesh"),
        reach: Reach::Layered {
            env: "CHIMNEY_REPO",
            flag: Some(Flag {
                long: "repo",
                value_name: "OWNER/NAME",
            }),
            apply: Layered::Text(|s, text| {
                s.repo = values::repo(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "org",
        help: "GitHub organisation; setting it enables org mode",
        default: DefaultText::Unset,
        reach: Reach::Layered {
            env: "GITHUB_ORG",
            flag: Some(Flag {
                long: "org",
                value_name: "ORG",
            }),
            apply: Layered::Text(|s, text| {
                s.org = values::org(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "repos_exclude",
        help: "Repositories skipped in org mode, by name or owner/name (a list)",
        default: DefaultText::Unset,
        reach: Reach::Layered {
            env: "GITHUB_REPOS_EXCLUDE",
            flag: None,
            apply: Layered::List(|s, items| {
                s.repos_exclude = items
                    .iter()
                    .map(|item| item.trim())
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect();
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "redis",
        help: "Dragonfly/Redis URL; empty for in-memory only",
        default: DefaultText::Value("redis://127.0.0.1:6379"),
        reach: Reach::Layered {
            env: "CHIMNEY_REDIS",
            flag: Some(Flag {
                long: "redis",
                value_name: "URL",
            }),
            apply: Layered::Text(|s, text| {
                s.redis = values::redis(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "github_api_url",
        help: "GitHub API base URL",
        default: DefaultText::Value("https://api.github.com"),
        reach: Reach::Layered {
            env: "CHIMNEY_GITHUB_API_URL",
            flag: Some(Flag {
                long: "github-api-url",
                value_name: "URL",
            }),
            apply: Layered::Text(|s, text| {
                s.github_api_url = values::http_url(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "memory_capacity_bytes",
        help: "Byte budget of the in-memory cache tier, each entry weighed by the memory it takes: body, headers, key (64 MiB)",
        default: DefaultText::Value("67108864"),
        reach: Reach::Layered {
            env: "CHIMNEY_MEMORY_CAPACITY_BYTES",
            flag: None,
            apply: Layered::Text(|s, text| {
                s.memory_capacity_bytes = values::capacity_bytes(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "upstream_concurrency",
        help: "Maximum concurrent requests to GitHub",
        default: DefaultText::Value("32"),
        reach: Reach::Layered {
            env: "CHIMNEY_UPSTREAM_CONCURRENCY",
            flag: None,
            apply: Layered::Text(|s, text| {
                s.upstream_concurrency = values::concurrency(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "upstream_queue",
        help: "Fetches that may wait for an outbound GitHub slot; past it the stale entry or a 503 answers",
        default: DefaultText::Value("256"),
        reach: Reach::Layered {
            env: "CHIMNEY_UPSTREAM_QUEUE",
            flag: None,
            apply: Layered::Text(|s, text| {
                s.upstream_queue = values::queue_length(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "upstream_queue_timeout",
        help: "How long a fetch waits for an outbound GitHub slot before the stale entry or a 503 answers",
        default: DefaultText::Value("5s"),
        reach: Reach::Layered {
            env: "CHIMNEY_UPSTREAM_QUEUE_TIMEOUT",
            flag: None,
            apply: Layered::Text(|s, text| {
                s.upstream_queue_timeout = values::duration(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "stale_while_revalidate",
        help: "How long past its TTL an entry is served at once while one background fetch revalidates it (0s = off)",
        default: DefaultText::Value("60s"),
        reach: Reach::Layered {
            env: "CHIMNEY_STALE_WHILE_REVALIDATE",
            flag: None,
            apply: Layered::Text(|s, text| {
                s.stale_while_revalidate = values::duration(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "max_connections",
        help: "Open connections at most; more wait in the kernel's queue until one closes",
        default: DefaultText::Value("10000"),
        reach: Reach::Layered {
            env: "CHIMNEY_MAX_CONNECTIONS",
            flag: None,
            apply: Layered::Text(|s, text| {
                s.max_connections = values::concurrency(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "cors_origins",
        help: "Origins allowed on the admin endpoints: * or origins like https://table.beerpub.dev (a list)",
        default: DefaultText::Value("*"),
        reach: Reach::Layered {
            env: "CHIMNEY_CORS_ORIGINS",
            flag: None,
            apply: Layered::List(|s, items| {
                s.cors_origins = items
                    .iter()
                    .map(|item| {
                        let item = item.trim();
                        values::cors_origin(item)
                            .map_err(|expected| values::Refusal::part(item, expected))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "summary_workflow",
        help: "Build workflow behind /api/pipeline/summary",
        default: DefaultText::Value("goose-build.yml"),
        reach: Reach::Layered {
            env: "CHIMNEY_SUMMARY_WORKFLOW",
            flag: None,
            apply: Layered::Text(|s, text| {
                s.summary_workflow = values::workflow(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "proxy_paths",
        help: "Path patterns the GitHub proxy serves (* one segment, trailing /** any number); giving any replaces the default list",
        default: DefaultText::Described("the list in the README's Security section"),
        reach: Reach::Layered {
            env: "CHIMNEY_PROXY_PATHS",
            flag: None,
            apply: Layered::List(|s, items| {
                let items: Vec<&str> = items
                    .iter()
                    .map(|item| item.trim())
                    .filter(|item| !item.is_empty())
                    .collect();
                if !items.is_empty() {
                    s.proxy_paths = PathPolicy::parse(items).map_err(|(item, error)| {
                        values::Refusal::part(&item, values::pattern_expected(&error))
                    })?;
                }
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "negative_ttl",
        help: "How long GitHub's 404 and 410 answers are cached",
        default: DefaultText::Value("30s"),
        reach: Reach::Layered {
            env: "CHIMNEY_NEGATIVE_TTL",
            flag: None,
            apply: Layered::Text(|s, text| {
                s.negative_ttl = values::duration(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "rate_limit_reserve",
        help: "Percent of GitHub's rate limit kept for revalidating cached keys; below it, new keys answer 503",
        default: DefaultText::Value("5"),
        reach: Reach::Layered {
            env: "CHIMNEY_RATE_LIMIT_RESERVE",
            flag: None,
            apply: Layered::Text(|s, text| {
                s.rate_limit_reserve = values::percent(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "allow_insecure_github_url",
        help: "Allow sending GITHUB_TOKEN over plain http:// to a host other than loopback",
        default: DefaultText::Value("false"),
        reach: Reach::Layered {
            env: "CHIMNEY_ALLOW_INSECURE_GITHUB_URL",
            flag: None,
            apply: Layered::Text(|s, text| {
                s.allow_insecure_github_url = values::boolean(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "shutdown_grace",
        help: "Time between SIGTERM and closing the listener, while /readyz answers 503 and requests are still served",
        default: DefaultText::Value("0s"),
        reach: Reach::Layered {
            env: "CHIMNEY_SHUTDOWN_GRACE",
            flag: None,
            apply: Layered::Text(|s, text| {
                s.shutdown_grace = values::duration(text)?;
                Ok(())
            }),
        },
    },
    SettingSpec {
        key: "ttl",
        help: "Cache TTL rules, [[ttl]] tables of path, optional query and duration; first match wins",
        default: DefaultText::Described("the rules in chimney.example.toml"),
        reach: Reach::FileRules {
            apply: |s, rules| {
                if let Some(policy) = values::ttl_rules(rules)? {
                    s.ttl = policy;
                }
                Ok(())
            },
        },
    },
    SettingSpec {
        key: "github_token",
        help: "Token sent to GitHub; unset, GitHub allows 60 requests an hour instead of 5,000",
        default: DefaultText::Unset,
        reach: Reach::Secret {
            env: "GITHUB_TOKEN",
            apply: |s, token| s.github_token = Some(token),
        },
    },
    SettingSpec {
        key: "deploy_token",
        help: "Bearer token for POST /api/deploy/events; unset, the endpoint answers 503",
        default: DefaultText::Unset,
        reach: Reach::Secret {
            env: "DEPLOY_TOKEN",
            apply: |s, token| s.deploy_token = Some(token),
        },
    },
    SettingSpec {
        key: "invalidate_token",
        help: "Bearer token for cache control; unset, the endpoints answer 503",
        default: DefaultText::Unset,
        reach: Reach::Secret {
            env: "INVALIDATE_TOKEN",
            apply: |s, token| s.invalidate_token = Some(token),
        },
    },
    SettingSpec {
        key: "github_webhook_secret",
        help: "Secret GitHub signs webhook deliveries with (X-Hub-Signature-256); unset or blank, POST /api/github/webhook answers 503",
        default: DefaultText::Unset,
        reach: Reach::Secret {
            env: "GITHUB_WEBHOOK_SECRET",
            apply: |s, secret| s.github_webhook_secret = Some(secret),
        },
    },
    SettingSpec {
        key: "invalidate_all_allowed",
        help: "Whether `all: true` invalidation is permitted (true or false)",
        default: DefaultText::Value("false"),
        reach: Reach::EnvOnly {
            env: "INVALIDATE_ALL_ALLOWED",
            apply: |s, text| {
                s.invalidate_all_allowed = values::boolean(text)?;
                Ok(())
            },
        },
    },
    SettingSpec {
        key: "otel.endpoint",
        help: "OTLP/HTTP collector base URL; chimney posts to /v1/traces, /v1/metrics and /v1/logs below it",
        default: DefaultText::Value("http://localhost:4318"),
        reach: Reach::EnvOnly {
            env: "OTEL_EXPORTER_OTLP_ENDPOINT",
            apply: |s, text| {
                s.otel.endpoint = values::http_url(text)?;
                Ok(())
            },
        },
    },
    SettingSpec {
        key: "otel.service_name",
        help: "service.name of every exported signal",
        default: DefaultText::Value("chimney"),
        reach: Reach::EnvOnly {
            env: "OTEL_SERVICE_NAME",
            apply: |s, text| {
                text.clone_into(&mut s.otel.service_name);
                Ok(())
            },
        },
    },
    SettingSpec {
        key: "otel.resource_attributes",
        help: "Extra resource attributes, k=v,k=v (e.g. deployment.slot=blue)",
        default: DefaultText::Unset,
        reach: Reach::EnvOnly {
            env: "OTEL_RESOURCE_ATTRIBUTES",
            apply: |s, text| {
                s.otel.resource_attributes = values::resource_attributes(text)?;
                Ok(())
            },
        },
    },
    SettingSpec {
        key: "otel.disabled",
        help: "true turns all OTLP export off; stdout logs and /api/metrics stay",
        default: DefaultText::Value("false"),
        reach: Reach::EnvOnly {
            env: "OTEL_SDK_DISABLED",
            apply: |s, text| {
                s.otel.disabled = values::boolean(text)?;
                Ok(())
            },
        },
    },
    SettingSpec {
        key: "log_filter",
        help: "Filter of the stdout log lines (tracing EnvFilter syntax)",
        default: DefaultText::Described("info"),
        reach: Reach::Elsewhere { env: "RUST_LOG" },
    },
];
