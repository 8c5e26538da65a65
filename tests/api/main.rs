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
mod fake_github;
mod fake_otlp;
mod health;
mod helpers;
mod hostile;
mod lifecycle;
mod memory_tier;
mod openapi_spec;
mod org;
mod problems;
mod proxy;
mod raw_http;
mod redis_proxy;
mod request_log;
mod shared_tier;
mod summary;
mod telemetry;
