//! What flows between the daemon's stages, below all of them: frames and the verdict on them,
//! the bounded edges that carry frames, and the identity of the model that scored them. It
//! depends on no stage, so sources, scoring, decisions and publishing can all use it.

pub mod edge;
pub mod frame;
pub mod trigger;

use crate::model::manifest::Threshold;

/// Identity and calibration of a loaded model, shared by every frame it scores.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelIdentity {
    /// Name in the config's `[models]`.
    pub name: String,
    /// The bundle's model id.
    pub id: String,
    /// First hex digits of the weights' sha256.
    pub sha: String,
    pub threshold: Option<Threshold>,
}
