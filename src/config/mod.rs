//! Configuration: typed, validated once at load (design.md §4).
//!
//! [`load`] reads the TOML file, overlays `INSPECTD__SECTION__KEY` environment variables,
//! and reports every problem at once, each with its key and the file.

pub mod load;
pub mod types;
pub mod validate;

pub use load::{from_toml as from_toml_for_test, load, ConfigError, Problem};
pub use types::*;
