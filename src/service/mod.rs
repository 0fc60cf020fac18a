//! Running as a service: the daemon's wiring and lifecycle.

pub mod api;
pub mod board;
mod commands;
pub mod daemon;
mod endpoints;
pub mod health;
pub mod metrics;
mod models;
pub mod notify;
pub mod reload;
mod sparkplug;
pub mod status;
pub mod watchdog;
