//! The streaming pipeline: sources → bounded edges → batcher → scorer → decisions → outputs.

pub mod edge;
pub mod frame;
pub mod scoring;
