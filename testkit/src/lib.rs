//! chimney's test doubles, shared by the black-box tests (`tests/`), the
//! examples, the benchmarks (`bench/`) and the ship checks (`scripts/`):
//!
//! - [`github`]: a fake GitHub REST API serving recorded responses;
//! - [`otlp`]: an OTLP/HTTP sink that keeps or counts what it receives;
//! - [`redis`]: a private `redis-server` process a test can kill.
//!
//! It does not depend on chimney (chimney depends on it, for its tests):
//! the doubles speak HTTP and RESP only, so they check chimney from the
//! outside.

pub mod github;
pub mod otlp;
pub mod redis;
