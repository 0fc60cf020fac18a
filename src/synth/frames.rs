//! Camera-sized frames with small defects: what tiling is for.
//!
//! An industrial camera delivers 1–12 MP, and the defects that matter are often a few pixels
//! across. Resized whole to a 256 px model, a 5 px hole on a 1024 px frame becomes about one
//! pixel; cut into native-resolution tiles, it keeps its five. These frames are procedural
//! textures of any size (not only square) with one defect of 3–15 px each: a dark pit, a bright
//! speck or a short scratch, all with clear contrast, so what decides whether they are found is
//! resolution, not subtlety.

use std::path::{Path, PathBuf};

use image::{GrayImage, Luma, RgbImage};

use super::dataset::{create_dir, write_gray, write_rgb};
use super::{render_good, Category, SynthError, DEFECT_INDEX_BASE, MAX_SIZE, MIN_SIZE, TEST_GOOD_INDEX_BASE};
use crate::util::rng::{tag, SplitMix64};

/// What to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSetSpec {
    /// The texture or part; a part (washer, pcb_pad) is rendered at the frame's longer side and
    /// cut to the frame, so it fills the frame unevenly: a structured scene, unlike a texture.
    pub category: Category,
    pub width: u32,
    pub height: u32,
    pub train_good: usize,
    pub test_good: usize,
    pub test_defect: usize,
    pub seed: u64,
}

/// Smallest and largest defect, in pixels across.
pub const DEFECT_PX: (f32, f32) = (3.0, 15.0);

/// Good frame `index`: a `width × height` piece of the texture rendered at the longer side.
pub fn frame_good(spec: &FrameSetSpec, index: usize) -> RgbImage {
    let side = spec.width.max(spec.height);
    let full = render_good(spec.category, side, spec.seed, index);
    image::imageops::crop_imm(&full, 0, 0, spec.width, spec.height).to_image()
}

/// Good frame `index` with one small defect, and its mask.
pub fn frame_defect(spec: &FrameSetSpec, index: usize) -> (RgbImage, GrayImage) {
    let mut img = frame_good(spec, index);
    let mut rng = SplitMix64::stream(&[spec.seed, index as u64, tag("small-defect")]);
    let size = rng.range(DEFECT_PX.0, DEFECT_PX.1);
    let margin = 16.0 + size;
    let cx = rng.range(margin, spec.width as f32 - margin);
    let cy = rng.range(margin, spec.height as f32 - margin);
    let kind = rng.below(3);
    let angle = rng.range(0.0, std::f32::consts::PI);
    let inside = |x: f32, y: f32| match kind {
        // A short scratch: `size` long, 2 px wide.
        2 => {
            let (dx, dy) = (x - cx, y - cy);
            let along = dx * angle.cos() + dy * angle.sin();
            let across = -dx * angle.sin() + dy * angle.cos();
            along.abs() <= size / 2.0 && across.abs() <= 1.0
        }
        // A pit or a speck: a disc `size` across.
        _ => (x - cx).hypot(y - cy) <= size / 2.0,
    };
    let mut mask = GrayImage::new(spec.width, spec.height);
    let reach = size as i64 + 2;
    for y in (cy as i64 - reach).max(0)..(cy as i64 + reach).min(spec.height as i64) {
        for x in (cx as i64 - reach).max(0)..(cx as i64 + reach).min(spec.width as i64) {
            if !inside(x as f32 + 0.5, y as f32 + 0.5) {
                continue;
            }
            let p = img.get_pixel_mut(x as u32, y as u32);
            for c in p.0.iter_mut() {
                *c = if kind == 1 { 255 - (255 - *c) / 5 } else { *c / 5 };
            }
            mask.put_pixel(x as u32, y as u32, Luma([255]));
        }
    }
    (img, mask)
}

/// Writes the set in MVTec AD layout under `root/<category>_<W>x<H>/` (defect type `small`)
/// and returns that folder.
pub fn write_frame_set(spec: &FrameSetSpec, root: &Path) -> Result<PathBuf, SynthError> {
    for side in [spec.width, spec.height] {
        if !(MIN_SIZE..=MAX_SIZE).contains(&side) {
            return Err(SynthError::InvalidSize(side));
        }
    }
    let dir = root.join(format!("{}_{}x{}", spec.category.name(), spec.width, spec.height));
    let train = create_dir(&dir.join("train/good"))?;
    for i in 0..spec.train_good {
        write_rgb(&train.join(format!("{i:03}.png")), &frame_good(spec, i))?;
    }
    let good = create_dir(&dir.join("test/good"))?;
    for i in 0..spec.test_good {
        write_rgb(&good.join(format!("{i:03}.png")), &frame_good(spec, TEST_GOOD_INDEX_BASE + i))?;
    }
    let bad = create_dir(&dir.join("test/small"))?;
    let masks = create_dir(&dir.join("ground_truth/small"))?;
    for i in 0..spec.test_defect {
        let (img, mask) = frame_defect(spec, DEFECT_INDEX_BASE + i);
        write_rgb(&bad.join(format!("{i:03}.png")), &img)?;
        write_gray(&masks.join(format!("{i:03}_mask.png")), &mask)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FrameSetSpec {
        FrameSetSpec {
            category: Category::Stone,
            width: 200,
            height: 120,
            train_good: 1,
            test_good: 1,
            test_defect: 1,
            seed: 4,
        }
    }

    #[test]
    fn defects_are_small_change_only_their_mask_and_repeat() {
        let spec = spec();
        for i in 0..12 {
            let (img, mask) = frame_defect(&spec, i);
            assert_eq!(img.dimensions(), (200, 120));
            assert_eq!(frame_defect(&spec, i).0, img, "deterministic");
            let good = frame_good(&spec, i);
            let marked: Vec<(u32, u32)> =
                mask.enumerate_pixels().filter(|(_, _, p)| p.0[0] > 0).map(|(x, y, _)| (x, y)).collect();
            assert!(!marked.is_empty(), "defect {i} painted nothing");
            let (xs, ys) = (marked.iter().map(|p| p.0), marked.iter().map(|p| p.1));
            let span = (xs.clone().max().unwrap() - xs.min().unwrap())
                .max(ys.clone().max().unwrap() - ys.min().unwrap())
                + 1;
            assert!((2..=16).contains(&span), "defect {i} spans {span} px");
            for ((m, a), b) in mask.pixels().zip(img.pixels()).zip(good.pixels()) {
                if m.0[0] == 0 {
                    assert_eq!(a, b, "defect {i} changed a pixel outside its mask");
                }
            }
        }
    }
}
