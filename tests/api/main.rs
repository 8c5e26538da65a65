//! Black-box tests of chimney over HTTP: one test binary, each test with
//! its own server and its own fake GitHub (see `helpers`).

mod coalescing;
mod failures;
mod fake_github;
mod health;
mod helpers;
mod hostile;
mod lifecycle;
mod org;
mod proxy;
mod shared_tier;
mod summary;
