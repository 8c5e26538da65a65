//! chimney: the origin server behind the project dashboard, a caching proxy
//! in front of the GitHub REST API.
//!
//! # Layout
//!
//! * `domain`: the vocabulary and the rules (paths, cache keys, TTLs, the
//!   proxy decision table, ETags, Link rewriting). Pure: no I/O, no async.
//! * `ports`: the traits the application needs from the outside world
//!   (`CacheStore`, `UpstreamGithub`), each with its own error type.
//! * `adapters`: implementations of the ports on concrete technology
//!   (quick_cache in memory, GitHub over reqwest).
//! * `app`: the services that orchestrate ports, the HTTP API, the
//!   configuration and the wiring at start-up.

pub mod adapters;
pub mod bootstrap;
pub mod domain;
pub mod http;
pub mod ports;
pub mod service;
