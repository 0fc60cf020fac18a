//! The streaming pipeline: sources → bounded edges → batcher → scorer → decisions → outputs.

//! Frames, edges and the model identity they carry live in `crate::flow`, below every stage.

pub mod decide;
pub mod gather;
pub mod judge;
pub mod latest;
pub mod scoring;
pub mod thresholds;
