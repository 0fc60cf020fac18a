//! inspectd: visual inspection on production lines.
//!
//! (architecture overview: filled in as stages land)

pub mod cfa;
pub mod cli;
pub mod heatmap;
pub mod input;
pub mod logging;
pub mod model;
pub mod onnx;
pub mod train;
pub mod util;
