//! Black-box tests of chimney over HTTP: one test binary, each test with
//! its own server and its own fake GitHub (see `helpers`).

mod admin_body;
mod admin_client;
mod bounded_waiting;
mod cache_admin;
mod coalescing;
mod connections;
mod deploy_hook;
mod deploy_repeats;
mod deploys;
mod failures;
mod fleet;
mod health;
mod helpers;
mod hostile;
mod lifecycle;
mod memory_tier;
mod openapi_spec;
mod org;
mod otlp_pipeline;
mod path_policy;
mod problems;
mod proxy;
mod public_cors;
mod raw_http;
mod redirects;
mod redis_proxy;
mod request_log;
mod shared_tier;
mod stale_while_revalidate;
mod startup_checks;
mod summary;
mod telemetry;
mod token_economy;
mod untrusted_dragonfly;
