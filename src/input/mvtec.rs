//! MVTec AD folder layout: `train/good/*`, `test/<good|defect>/*`,
//! `ground_truth/<defect>/<stem>_mask.png`.

use std::path::{Path, PathBuf};

use super::images::{list_images, ImageError};

/// One test image with its label and mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestImage {
    pub path: PathBuf,
    /// `good` or the defect type (the folder name).
    pub kind: String,
    /// Ground-truth mask, absent for good images (and for defects without one: the whole image
    /// then counts as normal pixels would be wrong, so callers skip pixel metrics for it).
    pub mask: Option<PathBuf>,
}

impl TestImage {
    pub fn is_anomalous(&self) -> bool {
        self.kind != "good"
    }
}

/// Whether `dir` looks like an MVTec category (has `train/good`).
pub fn is_category(dir: &Path) -> bool {
    dir.join("train").join("good").is_dir()
}

/// The good training images of a category.
pub fn train_good(dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    list_images(&dir.join("train").join("good"))
}

/// Every test image of a category, sorted by kind then name; good first.
pub fn test_images(dir: &Path) -> Result<Vec<TestImage>, ImageError> {
    let test = dir.join("test");
    let entries = std::fs::read_dir(&test).map_err(|source| ImageError::Io { path: test.clone(), source })?;
    let mut kinds: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    kinds.sort_by_key(|k| (k != "good", k.clone()));
    let mut out = Vec::new();
    for kind in kinds {
        for path in list_images(&test.join(&kind))? {
            let mask = (kind != "good").then(|| mask_path(dir, &kind, &path)).flatten();
            out.push(TestImage { path, kind: kind.clone(), mask });
        }
    }
    if out.is_empty() {
        return Err(ImageError::Empty { path: test });
    }
    Ok(out)
}

fn mask_path(dir: &Path, kind: &str, image: &Path) -> Option<PathBuf> {
    let stem = image.file_stem()?.to_string_lossy();
    let mask = dir.join("ground_truth").join(kind).join(format!("{stem}_mask.png"));
    mask.is_file().then_some(mask)
}
