//! Per-image nuisance parameters and dispatch to the category renderers.

use super::canvas::Canvas;
use super::kinds::Category;
use super::noise::{cos, sin};
use super::object::{self, rounded_rect, PAD_CORNER, PAD_HALF, WASHER_INNER, WASHER_OUTER};
use super::texture;
use crate::util::rng::SplitMix64;

const TAU: f32 = std::f32::consts::TAU;

/// Nuisance variation of one image. Every category draws the full set (so
/// streams line up the same way for all of them) and uses what applies.
///
/// The ranges are deliberately small: enough that test images are never
/// pixel copies of training images, small enough that a patch-feature kNN
/// model trained on a few dozen good images covers them.
#[derive(Debug, Clone)]
pub(crate) struct Pose {
    /// Texture-space offset (normalised image widths): which crop of the
    /// infinite material this image shows.
    pub ox: f32,
    pub oy: f32,
    /// Object centre (normalised), about 0.5 ± 2.5%.
    pub cx: f32,
    pub cy: f32,
    /// Object scale, 1 ± 2%.
    pub scale: f32,
    /// Global brightness gain, 1 ± 5%.
    pub gain: f32,
    /// Brushing direction tilt in radians, ± 0.03.
    pub tilt: f32,
    /// Lighting direction jitter in radians, ± 0.3.
    pub light: f32,
}

impl Pose {
    pub fn draw(rng: &mut SplitMix64) -> Self {
        Self {
            ox: rng.range(0.0, 64.0),
            oy: rng.range(0.0, 64.0),
            cx: 0.5 + rng.jitter(0.025),
            cy: 0.5 + rng.jitter(0.025),
            scale: 1.0 + rng.jitter(0.02),
            gain: 1.0 + rng.jitter(0.05),
            tilt: rng.jitter(0.03),
            light: rng.jitter(0.3),
        }
    }
}

/// Renders the defect-free image of `category` under `pose`.
pub(crate) fn render(category: Category, size: u32, pose: &Pose) -> Canvas {
    match category {
        Category::BrushedMetal => texture::brushed_metal(size, pose),
        Category::Wood => texture::wood(size, pose),
        Category::Fabric => texture::fabric(size, pose),
        Category::Stone => texture::stone(size, pose),
        Category::Washer => object::washer(size, pose),
        Category::PcbPad => object::pcb_pad(size, pose),
    }
}

/// Picks a defect centre in pixels. Textures take defects anywhere away from
/// the border; objects only on the part itself, where a real defect would be.
pub(crate) fn anchor(category: Category, size: u32, pose: &Pose, rng: &mut SplitMix64) -> (f32, f32) {
    let px = size as f32;
    let (nx, ny) = match category {
        Category::Washer => {
            let inner = WASHER_INNER * pose.scale + 0.05;
            let outer = WASHER_OUTER * pose.scale - 0.05;
            let (rho, angle) = (rng.range(inner, outer), rng.range(0.0, TAU));
            (pose.cx + rho * cos(angle), pose.cy + rho * sin(angle))
        }
        Category::PcbPad => {
            let (hx, hy) = (PAD_HALF.0 * pose.scale - 0.07, PAD_HALF.1 * pose.scale - 0.07);
            (pose.cx + rng.jitter(hx), pose.cy + rng.jitter(hy))
        }
        _ => (rng.range(0.2, 0.8), rng.range(0.2, 0.8)),
    };
    (nx * px, ny * px)
}

/// Whether pixel centre `(x, y)` lies on the inspected surface. Object
/// defects are clipped to the part, as a real scratch or stain cannot extend
/// into the washer's hole or onto the belt; textures are surface everywhere.
pub(crate) fn on_part(category: Category, size: u32, pose: &Pose, x: f32, y: f32) -> bool {
    let px = size as f32;
    let (dx, dy) = (x / px - pose.cx, y / px - pose.cy);
    match category {
        Category::Washer => {
            let rho = (dx * dx + dy * dy).sqrt();
            rho > WASHER_INNER * pose.scale && rho < WASHER_OUTER * pose.scale
        }
        Category::PcbPad => {
            let (hx, hy) = (PAD_HALF.0 * pose.scale, PAD_HALF.1 * pose.scale);
            rounded_rect(dx, dy, hx, hy, PAD_CORNER) < 0.0
        }
        _ => true,
    }
}
