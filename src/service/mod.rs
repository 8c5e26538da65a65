//! The services: each orchestrates the ports to do one job of the contract
//! (the proxy, the tiered cache, cache administration, deploys, the summary,
//! org mode, health). They name only the domain and the ports, never a
//! framework or a concrete adapter.

pub mod cache_admin;
pub mod deploys;
pub mod events;
pub mod health;
pub mod org;
pub mod proxy;
pub mod stats;
pub mod summary;
pub mod tiered;
pub mod webhook;
