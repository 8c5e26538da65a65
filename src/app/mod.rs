//! The application: services that orchestrate the ports, the HTTP API,
//! configuration, and the wiring at start-up.

pub mod api;
pub mod cache_admin;
pub mod config;
pub mod deploys;
pub mod health;
pub mod org;
pub mod proxy;
pub mod startup;
pub mod stats;
pub mod summary;
pub mod telemetry;
pub mod tiered;
pub mod version;
