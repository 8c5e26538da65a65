//! The composition root: configuration, telemetry start-up, the version, and
//! the wiring that picks concrete adapters and hands them to the services and
//! the HTTP surface. The only code that names a concrete adapter.

pub mod config;
pub mod server;
pub mod startup;
pub mod telemetry;
pub mod version;
