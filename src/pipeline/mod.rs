//! The streaming pipeline: sources → bounded edges → batcher → scorer → decisions → outputs.

pub mod decide;
pub mod edge;
pub mod frame;
pub mod scoring;
