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

/// The commit chimney was built from: `CHIMNEY_COMMIT` at build time, else
/// the build metadata of [`CHIMNEY_VERSION`] (`0.1.0+<sha>`, as the image
/// build sets it), else `unknown`.
pub fn chimney_commit() -> &'static str {
    match option_env!("CHIMNEY_COMMIT") {
        Some(commit) if !commit.is_empty() => commit,
        _ => CHIMNEY_VERSION
            .split_once('+')
            .map_or("unknown", |(_, commit)| commit),
    }
}
