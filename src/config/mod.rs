//! Configuration as written (design.md §4).
//!
//! [`parse`] reads the TOML file, overlays `INSPECTD__SECTION__KEY` environment variables,
//! and reports every structural problem at once, each with its key and the file;
//! `crate::settings::Settings` then checks the values and converts them, once.

pub mod load;
pub mod sources;
pub mod types;

pub use load::{parse, parse_toml, ConfigError, Parsed, Problem};
pub use types::*;
