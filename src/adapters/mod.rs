//! Implementations of the ports on concrete technology. Adapters depend on
//! `domain` and `ports` only, never on `app` or on each other.

pub mod dragonfly;
pub mod github;
pub mod memory;
pub mod otlp;
