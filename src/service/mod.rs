//! Running as a service: the daemon's wiring and lifecycle.

pub mod board;
mod commands;
pub mod daemon;
mod endpoints;
pub mod health;
pub mod metrics;
pub mod notify;
pub mod reload;
pub mod status;
pub mod watchdog;
