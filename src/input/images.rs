//! Image files: decoding with errors that name the file, and listing folders of images.

use std::path::{Path, PathBuf};

use image::RgbImage;

/// File extensions treated as images when listing a folder.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// An image that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read image {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot decode image {path}: {reason} (supported: PNG, JPEG, BMP, TIFF)")]
    Decode { path: PathBuf, reason: String },
    #[error("no images (PNG/JPEG) found in {path}")]
    Empty { path: PathBuf },
}

/// Decodes `path` to 8-bit RGB (grey and 16-bit images are converted).
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io { path: path.to_path_buf(), source })?;
    let decoded = image::load_from_memory(&bytes)
        .map_err(|e| ImageError::Decode { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok(decoded.to_rgb8())
}

/// Whether `path` has an image extension.
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The images directly inside `dir`, sorted by name so runs are reproducible.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let entries =
        std::fs::read_dir(dir).map_err(|source| ImageError::Io { path: dir.to_path_buf(), source })?;
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && is_image(p)).collect();
    files.sort();
    if files.is_empty() {
        return Err(ImageError::Empty { path: dir.to_path_buf() });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("inspectd-images-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("broken.png");
        std::fs::write(&bad, b"not a png").unwrap();
        let err = load_rgb(&bad).unwrap_err().to_string();
        assert!(err.contains("broken.png") && err.contains("cannot decode"), "{err}");
        let err = load_rgb(&dir.join("missing.png")).unwrap_err().to_string();
        assert!(err.contains("missing.png"), "{err}");
        std::fs::remove_file(&bad).unwrap();
        assert!(list_images(&dir).unwrap_err().to_string().contains("no images"));
        RgbImage::new(2, 2).save(dir.join("b.png")).unwrap();
        RgbImage::new(2, 2).save(dir.join("a.PNG")).unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        let names: Vec<_> =
            list_images(&dir).unwrap().iter().map(|p| p.file_name().unwrap().to_owned()).collect();
        assert_eq!(names, vec!["a.PNG", "b.png"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
