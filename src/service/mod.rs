//! Running as a service: the daemon's wiring and lifecycle.

pub mod daemon;
pub mod reload;
pub mod status;
