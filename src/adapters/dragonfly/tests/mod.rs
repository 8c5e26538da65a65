//! Tests of the Dragonfly adapter against a real Redis server (the
//! Dragonfly stand-in). The backend-independent conformance suite lives in
//! `tests/cache_contract.rs`; these cover what only this adapter has: TTLs,
//! corrupt values, timeouts, paging, pub/sub across restarts, and the
//! fetch lock of fleet single flight.
//!
//! Tests that need a server skip, saying so, unless
//! `CHIMNEY_TEST_DRAGONFLY_URL` is set. Tests that must own the server
//! (restart it, count everything in it) start their own `redis-server` on a
//! free loopback port; `CHIMNEY_TEST_REDIS_SERVER` overrides the binary.

mod cache;
mod flight;
mod server;
mod subscriber;
