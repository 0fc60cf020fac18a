//! Deterministic synthetic defect datasets in the MVTec AD layout.
//!
//! The accuracy tests and the demo need labelled anomaly data without
//! shipping real images, so this module paints them: procedural textures
//! (brushed metal, wood, fabric, stone) and simple parts (a washer, a PCB
//! pad), each with four defect types (scratch, stain, hole, foreign patch)
//! and exact ground-truth masks.
//!
//! Design points:
//! - **Deterministic.** Everything derives from `(seed, category, image
//!   index, purpose)` through a local SplitMix64 and libm-free math, so the
//!   same seed gives byte-identical PNGs on any machine and any future build.
//! - **Defect = good image + defect.** [`render_defect`] first renders the
//!   same good image as [`render_good`] for that index, then blends the
//!   defect inside its mask only. Pixels outside the mask are bit-identical
//!   to the good image, and the mask is exactly the set of painted pixels.
//! - **Realistic nuisance variation.** Good images differ by texture crop,
//!   small shifts, scale, brightness and lighting, so "anything unlike the
//!   training set is a defect" is not trivially true, while defects (0.5–5%
//!   of the area, strong contrast) stay clearly separable for a patch-feature
//!   kNN detector such as CFA.

mod canvas;
mod dataset;
mod defect;
pub mod frames;
mod kinds;
mod noise;
mod object;
pub mod photo;
mod scene;
mod texture;
pub mod video;

use std::path::PathBuf;

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

pub use dataset::{write_category, DEFECT_INDEX_BASE, DEFECT_INDEX_STRIDE, TEST_GOOD_INDEX_BASE};
pub use kinds::{Category, DefectKind};

use crate::util::rng::{tag, SplitMix64};
use scene::Pose;

/// Smallest and largest supported image side, in pixels. Below 32 px the
/// defects no longer fit their area band; above 4096 px generation gets slow.
pub const MIN_SIZE: u32 = 32;
pub const MAX_SIZE: u32 = 4096;

/// What to generate for one category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthSpec {
    pub category: Category,
    /// Side of the square images in pixels (e.g. 128 or 256).
    pub size: u32,
    /// Good images under `train/good/`.
    pub train_good: usize,
    /// Good images under `test/good/`.
    pub test_good: usize,
    /// Images (and masks) per defect type under `test/<defect>/`.
    pub test_defect_per_type: usize,
    pub seed: u64,
}

impl SynthSpec {
    /// A small default split (128 px, 32 train, 12 test good, 4 per defect
    /// type: 60 images) that trains and evaluates in seconds.
    pub fn new(category: Category, seed: u64) -> Self {
        Self { category, size: 128, train_good: 32, test_good: 12, test_defect_per_type: 4, seed }
    }
}

/// Per-defect-type statistics of a written category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefectSummary {
    pub kind: DefectKind,
    pub count: usize,
    /// Mean share of the image covered by the mask, in `[0, 1]`.
    pub mean_area_fraction: f64,
}

/// What [`write_category`] produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthSummary {
    pub category: Category,
    pub size: u32,
    /// `root/<category>`.
    pub category_dir: PathBuf,
    pub train_good: usize,
    pub test_good: usize,
    pub defects: Vec<DefectSummary>,
    /// Total PNG files written (images and masks).
    pub files_written: usize,
}

/// Errors from generating or writing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("image size {0} is outside the supported range {MIN_SIZE}..={MAX_SIZE}")]
    InvalidSize(u32),
    #[error("unknown category {0:?}; expected one of brushed_metal, wood, fabric, stone, washer, pcb_pad")]
    UnknownCategory(String),
    #[error("unknown defect type {0:?}; expected one of scratch, stain, hole, foreign")]
    UnknownDefect(String),
    #[error("encoding {path}: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The defect-free image number `index` of `category`.
///
/// Any `index` is valid; [`write_category`] uses `0..train_good` for
/// training and indices from [`TEST_GOOD_INDEX_BASE`] for test images so the
/// two never share a picture.
pub fn render_good(category: Category, size: u32, seed: u64, index: usize) -> RgbImage {
    good_canvas(category, size, seed, index).0.to_rgb()
}

/// Good image `index` with one `defect` painted on, and its mask (255 where
/// defective, 0 elsewhere).
///
/// Outside the mask the image equals [`render_good`] for the same arguments
/// byte for byte. The defect's own randomness is drawn from a separate
/// stream, so each `(index, defect)` pair gets its own shape.
pub fn render_defect(
    category: Category,
    defect: DefectKind,
    size: u32,
    seed: u64,
    index: usize,
) -> (RgbImage, GrayImage) {
    let (mut canvas, pose) = good_canvas(category, size, seed, index);
    let mut rng =
        SplitMix64::stream(&[seed, category.stream_id(), index as u64, defect.stream_id(), tag("defect")]);
    let coverage = defect::draw(&mut canvas, category, defect, &pose, &mut rng);
    (canvas.to_rgb(), coverage.to_mask())
}

/// Shared first step of both renderers: the pose and the good canvas.
fn good_canvas(category: Category, size: u32, seed: u64, index: usize) -> (canvas::Canvas, Pose) {
    let mut rng = SplitMix64::stream(&[seed, category.stream_id(), index as u64, tag("good")]);
    let pose = Pose::draw(&mut rng);
    (scene::render(category, size, &pose), pose)
}

#[cfg(test)]
mod tests;
