//! The CFA anomaly detector's math (cfa.md): pure functions, free of I/O.
//!
//! - [`preprocess`]: image → normalised planar tensor.
//! - [`descriptor`]: pooled multi-scale features + coordinates → 1×1 conv (CPU reference).
//! - [`distance`]: squared distances to the memory bank, K nearest.
//! - [`anomaly_map`]: softmin patch scores → upsampled, blurred map → image score.
//! - [`position`]: patch scores standardised per grid position.
//! - [`graph`]: the same descriptor + kNN as an ONNX graph, so it runs where the backbone runs.

pub mod anomaly_map;
pub mod blur;
pub mod descriptor;
pub mod distance;
pub mod graph;
pub mod knn;
pub mod knn_int8;
pub mod position;
pub mod preprocess;
pub mod resize;
pub mod topk;
