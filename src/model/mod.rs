//! Models: the ONNX Runtime environment, model bundles and the sessions that run them.

pub mod backbone;
pub mod bundle;
pub mod lanes;
pub mod manifest;
pub mod runtime;
pub mod scorer;
pub mod tensors;
