//! inspectd: visual inspection on production lines.
//!
//! (architecture overview: filled in as stages land)

pub mod cfa;
pub mod cli;
pub mod config;
pub mod decision;
pub mod eval;
pub mod evidence;
pub mod heatmap;
pub mod input;
pub mod logging;
pub mod model;
pub mod onnx;
pub mod pipeline;
pub mod publish;
pub mod source;
pub mod synth;
pub mod train;
pub mod util;
