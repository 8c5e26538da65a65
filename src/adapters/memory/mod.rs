//! In-process adapters: the memory cache tier.

mod cache;

pub use cache::MemoryCache;
