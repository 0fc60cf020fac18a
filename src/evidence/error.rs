//! What can go wrong storing evidence. Every variant names the camera or the path involved.

use std::io;
use std::path::PathBuf;

/// Evidence could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("evidence.format: {value:?} is not an evidence format (use \"png\" or \"jpeg\")")]
    Format { value: String },
    #[error(
        "camera id {camera:?} cannot name an evidence directory \
         (it must be non-empty, not start with '.', and contain no '/', '\\' or NUL)"
    )]
    Camera { camera: String },
    #[error(
        "camera {camera} frame {seq}: anomaly map is {map_w}x{map_h} but its roi is {roi} in a {image_w}x{image_h} frame"
    )]
    Size {
        camera: String,
        seq: u64,
        map_w: usize,
        map_h: usize,
        roi: crate::view::Rect,
        image_w: u32,
        image_h: u32,
    },
    #[error("cannot create evidence directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot list evidence in {path}: {source}")]
    Scan { path: PathBuf, source: io::Error },
    #[error("cannot encode evidence image {path}: {source}")]
    Encode { path: PathBuf, source: image::ImageError },
    #[error("cannot write evidence file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl EvidenceError {
    /// Whether trying again later can succeed (a full or briefly unavailable disk), as
    /// opposed to a setting or a caller bug that fails the same way every time.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            EvidenceError::CreateDir { .. } | EvidenceError::Scan { .. } | EvidenceError::Write { .. }
        )
    }
}
