//! Defects painted on real photographs, and the real-photo benchmark built from them.
//!
//! The procedural categories of this module's parent score 1.000 with almost any recipe, so
//! they cannot tell a good training recipe from a bad one. This file paints the same four
//! defect types on *photographs* (skimage's bundled textures and colour photos), at two
//! strengths:
//!
//! - [`Level::Clear`]: strong contrast, 0.5–5 % of the image, like the procedural set;
//! - [`Level::Subtle`]: low contrast, 1–2 px scratches, 3–7 px holes, small faint stains and
//!   half-transparent foreign patches — the defects that separate detectors.
//!
//! [`paint_defect`] works on any image of any size; training uses it to build a validation set
//! from held-out good images (model selection without test data). [`write_photo_category`]
//! writes a whole category in MVTec AD layout from one source photograph: good images are
//! random crops (textures) or jittered views (objects) with exposure changes and sensor noise.

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

use super::canvas::{Canvas, Coverage};
use super::dataset::{create_dir, write_gray, write_rgb};
use super::defect::{pick_tint, polyline_distance, scratch_path, two_tone, Ellipse};
use super::noise::{cos, fbm, mix, scale, sin};
use super::object::rounded_rect;
use super::{DefectKind, SynthError};
use crate::util::rng::{tag, SplitMix64};

const TAU: f32 = std::f32::consts::TAU;

/// How visible a defect is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Clear,
    Subtle,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Clear => "clear",
            Level::Subtle => "subtle",
        }
    }
}

/// Paints one defect of `kind` on a copy of `img` and returns it with its mask (255 where
/// changed). `donor`, when given, fills foreign patches with a piece of another photograph;
/// otherwise they get a procedural fill (plastic, a printed label, tape). Sizes are defined at
/// 256 px and scale with the image's shorter side, except that thin scratches stay 1–2 px.
/// The same `seed` gives the same defect.
pub fn paint_defect(
    img: &RgbImage,
    kind: DefectKind,
    level: Level,
    donor: Option<&RgbImage>,
    seed: u64,
) -> (RgbImage, GrayImage) {
    let mut rng = SplitMix64::stream(&[seed, kind.stream_id(), tag(level.name()), tag("photo-defect")]);
    let mut canvas = Canvas::from_rgb(img);
    let (w, h) = (canvas.width, canvas.height);
    let unit = w.min(h) as f32 / 256.0;
    let margin = 0.15;
    let at = (w as f32 * rng.range(margin, 1.0 - margin), h as f32 * rng.range(margin, 1.0 - margin));
    let shape = Shape { w, h, unit, at };
    let (coverage, paint) = match kind {
        DefectKind::Scratch => scratch(&shape, level, &mut rng),
        DefectKind::Hole => hole(&shape, level, &mut rng),
        DefectKind::Stain => stain(&shape, level, &surface(&canvas, at, 8.0 * unit), &mut rng),
        DefectKind::Foreign => foreign(&shape, level, donor, &mut rng),
    };
    coverage.blend_into(&mut canvas, &*paint);
    (canvas.to_rgb(), coverage.to_mask())
}

type Paint = Box<dyn Fn(f32, f32, [f32; 3]) -> [f32; 3]>;

/// Where a defect goes: image size, pixels per 256-px unit, and the anchor.
struct Shape {
    w: u32,
    h: u32,
    unit: f32,
    at: (f32, f32),
}

impl Shape {
    fn coverage(&self, edge: f32, sdf: impl Fn(f32, f32) -> f32) -> Coverage {
        Coverage::from_sdf_rect(self.w, self.h, edge, sdf)
    }
}

/// A 2–3 segment stroke: bright or dark, 3–5 px wide and opaque when clear; 1–2 px wide,
/// shorter and shifted in brightness by only 12–20 % when subtle.
fn scratch(s: &Shape, level: Level, rng: &mut SplitMix64) -> (Coverage, Paint) {
    let (half_width, length) = match level {
        Level::Clear => (s.unit * rng.range(1.5, 2.5), s.unit * 256.0 * rng.range(0.3, 0.5)),
        Level::Subtle => (rng.range(0.5, 1.0), s.unit * 256.0 * rng.range(0.15, 0.35)),
    };
    let pts = scratch_path(s.at, length, rng);
    let coverage = s.coverage(half_width * 0.8, |x, y| polyline_distance(&pts, x, y) - half_width);
    let bright = rng.coin();
    let paint: Paint = match level {
        Level::Clear if bright => Box::new(|_, _, base| mix(base, [0.96, 0.96, 0.98], 0.85)),
        Level::Clear => Box::new(|_, _, base| scale(base, 0.2)),
        Level::Subtle => {
            let shift = rng.range(0.12, 0.2) * if bright { 1.0 } else { -1.0 };
            Box::new(move |_, _, base| base.map(|c| c + shift))
        }
    };
    (coverage, paint)
}

/// A dark elliptical hole: 10–16 % of the image wide with a bright burr rim when clear; a
/// 3–7 px dent, darkened to about half, when subtle.
fn hole(s: &Shape, level: Level, rng: &mut SplitMix64) -> (Coverage, Paint) {
    let a = match level {
        Level::Clear => s.unit * 256.0 * rng.range(0.05, 0.08),
        Level::Subtle => (s.unit * rng.range(1.5, 3.5)).max(1.0),
    };
    let angle = rng.range(0.0, TAU);
    let e =
        Ellipse { cx: s.at.0, cy: s.at.1, a, b: a * rng.range(0.7, 1.0), cos: cos(angle), sin: sin(angle) };
    let coverage = s.coverage(1.0_f32.min(0.5 * a), move |x, y| (e.rho(x, y) - 1.0) * e.b);
    let paint: Paint = match level {
        Level::Clear => {
            let inner = rng.range(0.62, 0.75);
            Box::new(move |x, y, base| {
                let r = e.rho(x, y);
                if r < inner {
                    let g = 0.03 + 0.07 * (r / inner) * (r / inner);
                    [g, g, g * 1.1]
                } else {
                    mix(base, [1.0, 1.0, 1.0], 0.45)
                }
            })
        }
        Level::Subtle => {
            let k = rng.range(0.45, 0.6);
            Box::new(move |_, _, base| scale(base, k))
        }
    };
    (coverage, paint)
}

/// Pixels in a square window around `at`, so a stain's tint is not one the surface already has.
fn surface(canvas: &Canvas, at: (f32, f32), radius: f32) -> Vec<[f32; 3]> {
    let r = radius.max(2.0) as i64;
    let (cx, cy) = (at.0 as i64, at.1 as i64);
    let mut out = Vec::new();
    for y in cy - r..cy + r {
        for x in cx - r..cx + r {
            out.push(canvas.at(x, y));
        }
    }
    out
}

/// An irregular, blotchy tinted blob: 6–10 % of the image across and 80 % opaque when clear;
/// 2.5–4.5 % across and 30–40 % opaque when subtle.
fn stain(s: &Shape, level: Level, surface: &[[f32; 3]], rng: &mut SplitMix64) -> (Coverage, Paint) {
    let px = s.unit * 256.0;
    let (radius, opacity) = match level {
        Level::Clear => (px * rng.range(0.06, 0.1), 0.8),
        Level::Subtle => (px * rng.range(0.025, 0.045), rng.range(0.3, 0.4)),
    };
    let (salt, ox, oy) = (rng.next_u64(), rng.range(0.0, 50.0), rng.range(0.0, 50.0));
    let tint = pick_tint(surface, rng);
    let at = s.at;
    let coverage = s.coverage(0.35 * radius, |x, y| {
        let r = ((x - at.0) * (x - at.0) + (y - at.1) * (y - at.1)).sqrt();
        let warp = fbm(x / px * 7.0 + ox, y / px * 7.0 + oy, 3, salt);
        (r / radius - 1.0 + 0.6 * (warp - 0.5)) * radius
    });
    let paint: Paint = Box::new(move |x, y, base| {
        let blotch = fbm(x / px * 20.0 + oy, y / px * 20.0 + ox, 2, salt ^ 1);
        mix(base, scale(tint, 0.85 + 0.3 * blotch), opacity)
    });
    (coverage, paint)
}

/// A rotated rounded rectangle of something that does not belong (a piece of `donor`, or a
/// procedural fill): 11–19 % of the image across and opaque when clear; 7–12 % across and
/// 40–55 % opaque when subtle.
fn foreign(s: &Shape, level: Level, donor: Option<&RgbImage>, rng: &mut SplitMix64) -> (Coverage, Paint) {
    let px = s.unit * 256.0;
    let (half, opacity) = match level {
        Level::Clear => (px * rng.range(0.055, 0.095), 1.0),
        Level::Subtle => (px * rng.range(0.035, 0.06), rng.range(0.4, 0.55)),
    };
    let aspect = rng.range(0.75, 1.3).sqrt();
    let (hx, hy) = (half * aspect, half / aspect);
    let angle = rng.range(0.0, TAU);
    let (c, sn) = (cos(angle), sin(angle));
    let at = s.at;
    let frame = move |x: f32, y: f32| {
        let (dx, dy) = (x - at.0, y - at.1);
        (dx * c + dy * sn, dy * c - dx * sn)
    };
    let coverage = s.coverage(1.5, |x, y| {
        let (u, v) = frame(x, y);
        rounded_rect(u, v, hx, hy, 0.2 * hx.min(hy))
    });
    let fill = fill(donor, px, rng, frame);
    let paint: Paint = Box::new(move |x, y, base| mix(base, fill(x, y), opacity));
    (coverage, paint)
}

/// What a foreign patch is made of, in the patch's own rotated frame.
fn fill(
    donor: Option<&RgbImage>,
    px: f32,
    rng: &mut SplitMix64,
    frame: impl Fn(f32, f32) -> (f32, f32) + 'static,
) -> Box<dyn Fn(f32, f32) -> [f32; 3]> {
    let salt = rng.next_u64();
    if let Some(donor) = donor {
        let donor = Canvas::from_rgb(donor);
        let (ox, oy) = (rng.range(0.2, 0.8) * donor.width as f32, rng.range(0.2, 0.8) * donor.height as f32);
        return Box::new(move |x, y| {
            let (u, v) = frame(x, y);
            donor.at((ox + u) as i64, (oy + v) as i64)
        });
    }
    match rng.below(3) {
        0 => Box::new(move |x, y| {
            let (u, v) = frame(x, y);
            mix([0.92, 0.42, 0.10], [0.62, 0.14, 0.05], fbm(u / px * 25.0, v / px * 25.0, 3, salt))
        }),
        1 => Box::new(move |x, y| {
            let (u, v) = frame(x, y);
            two_tone(u / (px / 40.0), v / (px / 40.0), [0.92, 0.92, 0.90], [0.08, 0.08, 0.10])
        }),
        _ => Box::new(move |x, y| {
            let (u, v) = frame(x, y);
            two_tone((u + v) / (px / 20.0), 0.0, [0.10, 0.10, 0.08], [0.95, 0.80, 0.10])
        }),
    }
}

/// How good images are cut from a source photograph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum View {
    /// Random crops anywhere in the photo, 0.9–1.1× the output size (a texture).
    Texture,
    /// A square around a fixed centre, jittered by ±3 % in position and scale (an object
    /// that arrives roughly aligned). Coordinates are fractions of the photo's size.
    Object { cx: f32, cy: f32, side: f32 },
}

/// One benchmark category: a photo from skimage's bundled data and how to view it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhotoSource {
    pub name: &'static str,
    pub file: &'static str,
    pub view: View,
}

/// The real-photo benchmark's categories, all from skimage's bundled images.
pub const PHOTOS: [PhotoSource; 5] = [
    PhotoSource { name: "brick", file: "brick.png", view: View::Texture },
    PhotoSource { name: "grass", file: "grass.png", view: View::Texture },
    PhotoSource { name: "gravel", file: "gravel.png", view: View::Texture },
    PhotoSource { name: "coffee", file: "coffee.png", view: View::Object { cx: 0.5, cy: 0.5, side: 0.95 } },
    PhotoSource {
        name: "astronaut",
        file: "astronaut.png",
        view: View::Object { cx: 0.5, cy: 0.5, side: 0.9 },
    },
];

/// Looks a category up by name.
pub fn photo_source(name: &str) -> Option<PhotoSource> {
    PHOTOS.iter().copied().find(|p| p.name == name)
}

/// What to write for one photo category.
#[derive(Debug, Clone)]
pub struct PhotoSpec {
    pub source: PhotoSource,
    /// The source photograph (grayscale ones already expanded to RGB).
    pub photo: RgbImage,
    /// Another photograph that foreign patches are cut from.
    pub donor: RgbImage,
    pub level: Level,
    pub size: u32,
    pub train_good: usize,
    pub test_good: usize,
    pub test_defect_per_type: usize,
    pub seed: u64,
}

/// Good image number `index`: a crop of the photo, resized to `size`, with an exposure change
/// of ±6 % and sensor noise (σ ≈ 1.5 grey levels).
pub fn photo_good(spec: &PhotoSpec, index: usize) -> RgbImage {
    let mut rng = SplitMix64::stream(&[spec.seed, tag(spec.source.name), index as u64, tag("photo-good")]);
    let (pw, ph) = (spec.photo.width() as f32, spec.photo.height() as f32);
    let (x, y, side) = match spec.source.view {
        View::Texture => {
            let side = (spec.size as f32 * rng.range(0.9, 1.1)).min(pw.min(ph));
            (rng.range(0.0, pw - side), rng.range(0.0, ph - side), side)
        }
        View::Object { cx, cy, side } => {
            let side = side * pw.min(ph) * rng.range(0.97, 1.03);
            let jitter = 0.03 * side;
            let x = (cx * pw - side / 2.0 + rng.jitter(jitter)).clamp(0.0, (pw - side).max(0.0));
            let y = (cy * ph - side / 2.0 + rng.jitter(jitter)).clamp(0.0, (ph - side).max(0.0));
            (x, y, side.min(pw.min(ph)))
        }
    };
    let crop = imageops::crop_imm(&spec.photo, x as u32, y as u32, side as u32, side as u32).to_image();
    let mut out = imageops::resize(&crop, spec.size, spec.size, FilterType::Triangle);
    let gain = rng.range(0.94, 1.06);
    for p in out.pixels_mut() {
        for c in p.0.iter_mut() {
            // Sum of four uniforms: close enough to Gaussian sensor noise.
            let noise = (rng.unit() + rng.unit() + rng.unit() + rng.unit() - 2.0) * 2.6;
            *c = (*c as f32 * gain + noise).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// What [`write_photo_category`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct PhotoSummary {
    pub category_dir: PathBuf,
    pub files_written: usize,
}

/// Writes one category in MVTec AD layout under `root/<name>/`: `train/good`, `test/good`,
/// `test/<defect>` and `ground_truth/<defect>/<n>_mask.png`. Training, test-good and defect
/// images use disjoint index ranges, so no test image repeats a training crop.
pub fn write_photo_category(spec: &PhotoSpec, root: &Path) -> Result<PhotoSummary, SynthError> {
    if !(super::MIN_SIZE..=super::MAX_SIZE).contains(&spec.size) {
        return Err(SynthError::InvalidSize(spec.size));
    }
    let dir = root.join(spec.source.name);
    let mut files = 0;
    let train = create_dir(&dir.join("train").join("good"))?;
    for i in 0..spec.train_good {
        write_rgb(&train.join(format!("{i:03}.png")), &photo_good(spec, i))?;
        files += 1;
    }
    let test = create_dir(&dir.join("test").join("good"))?;
    for i in 0..spec.test_good {
        write_rgb(&test.join(format!("{i:03}.png")), &photo_good(spec, super::TEST_GOOD_INDEX_BASE + i))?;
        files += 1;
    }
    for (t, &kind) in DefectKind::all().iter().enumerate() {
        let images = create_dir(&dir.join("test").join(kind.name()))?;
        let masks = create_dir(&dir.join("ground_truth").join(kind.name()))?;
        for k in 0..spec.test_defect_per_type {
            let index = super::DEFECT_INDEX_BASE + t * super::DEFECT_INDEX_STRIDE + k;
            let good = photo_good(spec, index);
            let seed = spec.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ tag(spec.source.name);
            let (img, mask) = paint_defect(&good, kind, spec.level, Some(&spec.donor), seed);
            write_rgb(&images.join(format!("{k:03}.png")), &img)?;
            write_gray(&masks.join(format!("{k:03}_mask.png")), &mask)?;
            files += 2;
        }
    }
    Ok(PhotoSummary { category_dir: dir, files_written: files })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo() -> RgbImage {
        RgbImage::from_fn(300, 200, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]))
    }

    #[test]
    fn defects_change_exactly_their_mask_and_are_reproducible() {
        let img = photo();
        for level in [Level::Clear, Level::Subtle] {
            for &kind in DefectKind::all() {
                let (out, mask) = paint_defect(&img, kind, level, None, 7);
                assert_eq!((out.width(), out.height()), (300, 200));
                assert_eq!(paint_defect(&img, kind, level, None, 7).0, out, "{kind:?} {level:?}");
                let masked = mask.pixels().filter(|p| p.0[0] > 0).count();
                assert!(masked > 0, "{kind:?} {level:?} painted nothing");
                for (m, (a, b)) in mask.pixels().zip(out.pixels().zip(img.pixels())) {
                    if m.0[0] == 0 {
                        assert_eq!(a, b, "{kind:?} {level:?} changed a pixel outside its mask");
                    }
                }
            }
        }
    }

    #[test]
    fn subtle_defects_are_smaller_than_clear_ones() {
        let img = photo();
        for &kind in DefectKind::all() {
            let area = |level| {
                (0..8)
                    .map(|s| {
                        paint_defect(&img, kind, level, None, s).1.pixels().filter(|p| p.0[0] > 0).count()
                    })
                    .sum::<usize>()
            };
            assert!(area(Level::Subtle) * 2 < area(Level::Clear), "{kind:?}");
        }
        // A subtle hole is 3–7 px across.
        let (_, mask) = paint_defect(&img, DefectKind::Hole, Level::Subtle, None, 3);
        let n = mask.pixels().filter(|p| p.0[0] > 0).count();
        assert!((4..=40).contains(&n), "subtle hole covers {n} px");
    }
}
