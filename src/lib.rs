//! inspectd: visual inspection on production lines.
//!
//! (architecture overview: filled in as stages land)

pub mod cfa;
pub mod model;
pub mod onnx;
pub mod util;
