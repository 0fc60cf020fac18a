//! What a backbone graph provides, read from the graph itself through ONNX Runtime, so a
//! bundle's manifest cannot disagree with the file it describes.

use super::runtime::{Runtime, RuntimeError};

/// Backbone identity and feature layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackboneDescription {
    /// From the graph's `backbone` metadata (written by tools/export_backbone.py), else "custom".
    pub name: String,
    /// Channels of f1, f2, f3.
    pub channels: [usize; 3],
}

/// A graph that is not a usable backbone.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{file} is not a backbone graph: {problem}; export one with tools/export_backbone.py")]
    Layout { file: String, problem: String },
}

/// Loads `bytes` and checks it has input `image [B,3,H,W]` and outputs `f1, f2, f3` with fixed
/// channel counts.
pub fn describe(runtime: &Runtime, file: &str, bytes: &[u8]) -> Result<BackboneDescription, BackboneError> {
    let (session, _) = runtime.session(file, bytes)?;
    let layout = |problem: String| BackboneError::Layout { file: file.to_string(), problem };
    let input = session.inputs().iter().find(|i| i.name() == "image");
    let input_rank = input.and_then(|i| i.dtype().tensor_shape()).map(|s| s.len());
    if input_rank != Some(4) {
        return Err(layout("it needs a 4-D float input named 'image'".into()));
    }
    let mut channels = [0usize; 3];
    for (slot, name) in channels.iter_mut().zip(["f1", "f2", "f3"]) {
        let output = session.outputs().iter().find(|o| o.name() == name);
        let shape = output
            .and_then(|o| o.dtype().tensor_shape())
            .ok_or_else(|| layout(format!("output '{name}' is missing")))?;
        match shape.get(1) {
            Some(&c) if shape.len() == 4 && c > 0 => *slot = c as usize,
            _ => {
                return Err(layout(format!(
                    "output '{name}' must be [B, C, h, w] with a fixed C, found {shape:?}"
                )))
            }
        }
    }
    let name =
        session.metadata().ok().and_then(|m| m.custom("backbone")).unwrap_or_else(|| "custom".to_string());
    Ok(BackboneDescription { name, channels })
}
