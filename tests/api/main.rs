//! Black-box tests of chimney over HTTP: one test binary, each test with
//! its own server and its own fake GitHub (see `helpers`).

mod admin_body;
mod admin_client;
mod cache_admin;
mod coalescing;
mod connections;
mod deploy_hook;
mod deploy_repeats;
mod deploys;
mod failures;
mod health;
mod helpers;
mod hostile;
mod lifecycle;
mod live_client;
mod live_events;
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
mod startup_checks;
mod summary;
mod telemetry;
mod token_economy;
mod untrusted_dragonfly;
mod webhook;
