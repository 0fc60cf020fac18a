//! `model.toml`: what a bundle contains and how it was made (design.md §2).
//!
//! The manifest is versioned: a bundle written by a newer inspectd with a format this binary
//! does not know is refused rather than misread.

use serde::{Deserialize, Serialize};

use crate::cfa::preprocess::Normalisation;
use crate::view::Rect;

/// The manifest format this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;

/// The format a bundle without position statistics is written in, so inspectd versions from
/// before them still read it. Version 2 adds `[cfa] position_norm`, which an older inspectd must
/// refuse rather than ignore: its thresholds are in standardised units.
pub const FORMAT_VERSION_PLAIN: u32 = 1;

/// The whole `model.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bumped on any incompatible change to the bundle layout.
    pub format_version: u32,
    pub model: ModelInfo,
    pub backbone: BackboneInfo,
    pub input: InputInfo,
    pub cfa: CfaParams,
    pub descriptor: FileRef,
    pub weights: FileRef,
    /// Present once the model has been calibrated; without it there is no verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<Provenance>,
    /// Focus measure of the calibration images, for the daemon's out-of-focus check; absent
    /// in bundles from before it (the check is then skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focus: Option<FocusStats>,
    /// How frames reach the model: ROI, tiles or letterbox, ignore mask. Absent in bundles
    /// from before it: frames are then stretched whole to the input size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<ViewInfo>,
}

/// `[view]`: what train, eval, score, replay and the daemon all do to a frame before the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewInfo {
    /// Sensor frame size `[width, height]` the model was trained on; other sizes are refused.
    pub frame: [u32; 2],
    /// The inspected rectangle, in sensor pixels; absent = the whole frame. A camera's config
    /// may move it (`cameras.X.roi`), but a tiled view keeps its tile size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roi: Option<Rect>,
    pub fit: FitKind,
    /// Pixels neighbouring tiles share (tiles only).
    #[serde(default)]
    pub overlap: u32,
    /// Ignore mask at ROI resolution (white = inspect, black = ignore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<FileRef>,
}

/// How the ROI is brought to the input size (see [`crate::view::Fit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FitKind {
    Tiles,
    Letterbox,
}

/// The variance of the Laplacian of the calibration images' luma, at model size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FocusStats {
    pub images: usize,
    pub median: f32,
    pub min: f32,
}

/// Identity of the model, as published in every result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// Human-chosen name, e.g. the part number.
    pub id: String,
    /// RFC 3339 time the bundle was written.
    pub created_at: String,
    pub inspectd_version: String,
}

/// The frozen backbone graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneInfo {
    /// `efficientnet_lite0`, `resnet18` or `wide_resnet50_2`.
    pub name: String,
    pub file: String,
    pub sha256: String,
    /// Channels of f1, f2, f3 (strides 4, 8, 16).
    pub channels: [usize; 3],
}

/// A file of the bundle and its expected hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub file: String,
    pub sha256: String,
}

/// Image size and normalisation the model expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputInfo {
    pub width: u32,
    pub height: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl InputInfo {
    pub fn normalisation(&self) -> Normalisation {
        Normalisation { mean: self.mean, std: self.std }
    }

    /// Patch grid (stride 4): the descriptor's spatial size.
    pub fn patch_grid(&self) -> (usize, usize) {
        (self.height.div_ceil(4) as usize, self.width.div_ceil(4) as usize)
    }
}

/// Whether the hypersphere radius was trained with the descriptor (the paper) or fixed (anomalib).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RadiusMode {
    Trainable,
    Fixed,
}

/// CFA hyper-parameters (cfa.md §2–§5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CfaParams {
    /// K: nearest neighbours for attraction and for the patch score.
    pub k: usize,
    /// J: hard negatives (ranks K+1..K+J) for repulsion.
    pub j: usize,
    /// Hypersphere radius r (after training, when trainable).
    pub radius: f32,
    pub radius_mode: RadiusMode,
    /// Memory bank compression: N = h·w / gamma_c.
    pub gamma_c: usize,
    /// Descriptor channel compression: C' = C / gamma_d.
    pub gamma_d: usize,
    /// Gaussian blur sigma of the anomaly map.
    pub sigma: f32,
    /// C', the descriptor's output channels.
    pub descriptor_channels: usize,
    /// N, memory bank entries.
    pub memory_size: usize,
    /// Patch scores are standardised per grid position (`cfa::position`) with the
    /// `position.mean` and `position.std` tensors in the weights file. Absent (false) in
    /// bundles from before it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub position_norm: bool,
}

/// How raw scores become verdicts and normalised scores (cfa.md §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Raw image score at or above which an image is NG.
    pub image: f32,
    /// `normal-quantile` (held-out good images only) or `f1-validation` (labelled set).
    pub method: String,
    /// Raw-score statistics of the calibration images.
    pub stats: ScoreStats,
}

impl Threshold {
    /// Min-max normalisation that maps the threshold to 0.5, clipped to [0, 1] (anomalib's
    /// convention, so users can compare).
    pub fn normalise(&self, raw: f32) -> f32 {
        let span = (self.stats.max - self.stats.min).max(f32::EPSILON);
        ((raw - self.image) / span + 0.5).clamp(0.0, 1.0)
    }
}

/// Summary of calibration scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreStats {
    pub count: usize,
    pub min: f32,
    pub max: f32,
    pub mean: f32,
    pub std: f32,
    pub p50: f32,
    pub p95: f32,
    pub p99: f32,
}

/// How the model was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    pub source: String,
    pub images: usize,
    pub epochs: usize,
    pub final_loss: f32,
    pub seed: u64,
    pub date: String,
    pub elapsed_s: f32,
    /// Images per optimiser step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// What the memory bank was averaged over.
    #[serde(default)]
    pub bank_input: BankInput,
    /// The epoch whose parameters the bundle holds (0 = the untrained descriptor), when the
    /// epoch was chosen on the validation set; `None` when all epochs ran without selection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_epoch: Option<usize>,
    /// Validation figure after every epoch (held-out good images plus synthetic defects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<EpochRecord>,
}

/// A manifest that parses but makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ManifestProblem {
    pub field: &'static str,
    pub problem: String,
}

impl Manifest {
    /// Checks everything that can be checked without the other files.
    pub fn validate(&self) -> Result<(), ManifestProblem> {
        let problem = |field, problem: String| Err(ManifestProblem { field, problem });
        if self.format_version > FORMAT_VERSION {
            return problem(
                "format_version",
                format!(
                    "bundle format {} is newer than this inspectd understands ({FORMAT_VERSION}); upgrade inspectd",
                    self.format_version
                ),
            );
        }
        if self.format_version == 0 {
            return problem("format_version", "must be at least 1".into());
        }
        if self.input.width < 32 || self.input.height < 32 {
            return problem(
                "input",
                format!("{}x{} is too small (minimum 32x32)", self.input.width, self.input.height),
            );
        }
        if self.input.std.iter().any(|s| *s <= 0.0) {
            return problem("input.std", "every entry must be positive".into());
        }
        let c = &self.cfa;
        if c.k == 0 || c.memory_size < c.k {
            return problem("cfa.k", format!("K = {} needs 1 <= K <= memory_size ({})", c.k, c.memory_size));
        }
        if c.sigma <= 0.0 || c.descriptor_channels == 0 {
            return problem("cfa", "sigma and descriptor_channels must be positive".into());
        }
        if c.position_norm && self.format_version < 2 {
            return problem(
                "cfa.position_norm",
                format!(
                    "needs format_version 2 or later (this says {}); retrain the model",
                    self.format_version
                ),
            );
        }
        if let Some(v) = &self.view {
            let (w, h) = (self.input.width, self.input.height);
            if v.fit == FitKind::Tiles && v.overlap >= w.min(h) {
                return problem(
                    "view.overlap",
                    format!("{} must be smaller than the tile ({w}x{h})", v.overlap),
                );
            }
            if v.frame[0] == 0 || v.frame[1] == 0 {
                return problem("view.frame", "width and height must be at least 1".into());
            }
        }
        Ok(())
    }

    /// Feature channels C of the backbone (f1 + f2 + f3).
    pub fn feature_channels(&self) -> usize {
        self.backbone.channels.iter().sum()
    }
}

impl Manifest {
    /// A manifest for a new bundle with the standard file names; hashes are filled in when the
    /// bundle is assembled.
    pub fn new(
        id: &str,
        backbone: &super::backbone::BackboneDescription,
        input: InputInfo,
        cfa: CfaParams,
    ) -> Manifest {
        let file = |name: &str| FileRef { file: name.to_string(), sha256: String::new() };
        Manifest {
            format_version: FORMAT_VERSION_PLAIN,
            model: ModelInfo {
                id: id.to_string(),
                created_at: crate::util::time::now_rfc3339(),
                inspectd_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            backbone: BackboneInfo {
                name: backbone.name.clone(),
                file: "backbone.onnx".to_string(),
                sha256: String::new(),
                channels: backbone.channels,
            },
            input,
            cfa,
            descriptor: file("descriptor.onnx"),
            weights: file("weights.safetensors"),
            threshold: None,
            training: None,
            focus: None,
            view: None,
        }
    }
}

/// The images the memory bank is built from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum BankInput {
    /// Normalised exactly as in training and inference (cfa.md §3).
    #[default]
    Normalised,
    /// Pixels in [0, 1] without ImageNet normalisation, as anomalib 2.x does by accident.
    Unnormalised,
}

/// One point of the validation curve. Epoch 0 is the untrained descriptor.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean training loss of the epoch (NaN for epoch 0, which has not trained).
    pub loss: f32,
    pub image_auroc: f64,
    pub pixel_auroc: f64,
}

impl EpochRecord {
    /// The validation figure: image AUROC plus pixel AUROC. The image AUROC ranks only a few
    /// dozen images and jumps by whole steps; the pixel AUROC ranks hundreds of thousands of
    /// pixels and steadies it. An undefined AUROC counts as the worst.
    pub fn figure(&self) -> f64 {
        let v = self.image_auroc + self.pixel_auroc;
        if v.is_nan() {
            f64::NEG_INFINITY
        } else {
            v
        }
    }
}
