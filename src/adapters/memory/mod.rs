//! In-process adapters: the memory cache tier and the deploy history ring.

mod cache;
mod deploy_log;
mod footprint;

pub use cache::MemoryCache;
pub use deploy_log::MemoryDeployLog;
