//! Writing a category to disk in the MVTec AD directory layout:
//!
//! ```text
//! root/<category>/train/good/000.png
//! root/<category>/test/good/000.png
//! root/<category>/test/<defect>/000.png
//! root/<category>/ground_truth/<defect>/000_mask.png
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, GrayImage, ImageEncoder, RgbImage};

use super::{
    render_defect, render_good, DefectKind, DefectSummary, SynthError, SynthSpec, SynthSummary, MAX_SIZE,
    MIN_SIZE,
};

/// Image index of the first test good image. Test and defect images live in
/// their own index ranges so that changing `train_good` never changes the
/// test set (and vice versa), and no test image duplicates a training image.
pub const TEST_GOOD_INDEX_BASE: usize = 1 << 20;
/// Image index of the first defect image of the first defect type.
pub const DEFECT_INDEX_BASE: usize = 2 << 20;
/// Index distance between consecutive defect types' ranges.
pub const DEFECT_INDEX_STRIDE: usize = 1 << 20;

/// Generates `spec` under `root/<category>/` and returns what was written.
///
/// Files are written straight into their final directories, each via a
/// temporary name and a rename, so an interrupted run never leaves a
/// truncated PNG under a real name. Existing files with the same names are
/// replaced; other files are left alone, so write into a fresh `root` when an
/// exact split matters.
pub fn write_category(spec: &SynthSpec, root: &Path) -> Result<SynthSummary, SynthError> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&spec.size) {
        return Err(SynthError::InvalidSize(spec.size));
    }
    let started = std::time::Instant::now();
    let category_dir = root.join(spec.category.name());
    let train = category_dir.join("train").join("good");
    let mut files = write_good(spec, &train, 0, spec.train_good)?;
    let test = category_dir.join("test").join("good");
    files += write_good(spec, &test, TEST_GOOD_INDEX_BASE, spec.test_good)?;
    let mut defects = Vec::new();
    for (t, &kind) in DefectKind::all().iter().enumerate() {
        let summary = write_defects(spec, &category_dir, t, kind)?;
        files += 2 * summary.count;
        defects.push(summary);
    }
    tracing::debug!(category = %spec.category, files, elapsed = ?started.elapsed(), "synthetic category written");
    Ok(SynthSummary {
        category: spec.category,
        size: spec.size,
        category_dir,
        train_good: spec.train_good,
        test_good: spec.test_good,
        defects,
        files_written: files,
    })
}

/// Writes `count` good images with indices from `base` into `dir`.
fn write_good(spec: &SynthSpec, dir: &Path, base: usize, count: usize) -> Result<usize, SynthError> {
    create_dir(dir)?;
    for i in 0..count {
        let img = render_good(spec.category, spec.size, spec.seed, base + i);
        write_rgb(&dir.join(format!("{i:03}.png")), &img)?;
    }
    Ok(count)
}

/// Writes the images and masks of defect type number `t`.
fn write_defects(
    spec: &SynthSpec,
    category_dir: &Path,
    t: usize,
    kind: DefectKind,
) -> Result<DefectSummary, SynthError> {
    let image_dir = create_dir(&category_dir.join("test").join(kind.name()))?;
    let mask_dir = create_dir(&category_dir.join("ground_truth").join(kind.name()))?;
    let mut area_sum = 0.0;
    for k in 0..spec.test_defect_per_type {
        let index = DEFECT_INDEX_BASE + t * DEFECT_INDEX_STRIDE + k;
        let (img, mask) = render_defect(spec.category, kind, spec.size, spec.seed, index);
        area_sum += mask.pixels().filter(|p| p.0[0] > 0).count() as f64 / mask.len() as f64;
        write_rgb(&image_dir.join(format!("{k:03}.png")), &img)?;
        write_gray(&mask_dir.join(format!("{k:03}_mask.png")), &mask)?;
    }
    let count = spec.test_defect_per_type;
    Ok(DefectSummary {
        kind,
        count,
        mean_area_fraction: if count == 0 { 0.0 } else { area_sum / count as f64 },
    })
}

pub(crate) fn create_dir(dir: &Path) -> Result<PathBuf, SynthError> {
    fs::create_dir_all(dir).map_err(|source| SynthError::Io { path: dir.to_path_buf(), source })?;
    Ok(dir.to_path_buf())
}

pub(crate) fn write_rgb(path: &Path, img: &RgbImage) -> Result<(), SynthError> {
    write_png(path, img.as_raw(), img.width(), img.height(), ExtendedColorType::Rgb8)
}

pub(crate) fn write_gray(path: &Path, img: &GrayImage) -> Result<(), SynthError> {
    write_png(path, img.as_raw(), img.width(), img.height(), ExtendedColorType::L8)
}

/// Encodes in memory, writes `<name>.tmp`, then renames over `path`.
fn write_png(path: &Path, raw: &[u8], w: u32, h: u32, color: ExtendedColorType) -> Result<(), SynthError> {
    let mut bytes = Vec::new();
    PngEncoder::new(&mut bytes)
        .write_image(raw, w, h, color)
        .map_err(|source| SynthError::Encode { path: path.to_path_buf(), source })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, &bytes).map_err(|source| SynthError::Io { path: tmp.clone(), source })?;
    fs::rename(&tmp, path).map_err(|source| SynthError::Io { path: path.to_path_buf(), source })
}
