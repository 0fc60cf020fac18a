//! Running as a service: the daemon's wiring and lifecycle.

pub mod api;
mod apply_reload;
pub mod board;
mod cameras;
mod commands;
pub mod daemon;
mod endpoints;
pub mod health;
mod live;
pub mod metrics;
mod models;
pub mod notify;
pub mod reload;
mod review;
mod sparkplug;
pub mod status;
mod ui;
pub mod watchdog;

pub(crate) use cameras::check_camera_view;
