//! The application: services that orchestrate the ports, the HTTP API,
//! configuration, and the wiring at start-up.

pub mod config;
