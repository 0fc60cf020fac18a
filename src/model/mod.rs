//! Models: the ONNX Runtime environment, model bundles and the sessions that run them.

pub mod runtime;
pub mod tensors;
