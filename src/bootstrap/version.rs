//! Versions injected at build time: set `CHIMNEY_VERSION` and
//! `WGMESH_VERSION` in the environment of `cargo build` (the Dockerfile
//! passes them as build arguments).

/// chimney's version: `CHIMNEY_VERSION` at build time, else the crate version.
pub const CHIMNEY_VERSION: &str = match option_env!("CHIMNEY_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// The wgmesh version shown on the dashboard: `WGMESH_VERSION` at build
/// time, else `dev`.
pub const WGMESH_VERSION: &str = match option_env!("WGMESH_VERSION") {
    Some(v) => v,
    None => "dev",
};
