//! Configuration: typed, validated once at load (design.md §4).

pub mod types;

pub use types::*;
