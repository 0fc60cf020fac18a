//! A model bundle on disk (design.md §2): `model.toml`, `backbone.onnx`, `descriptor.onnx`,
//! `weights.safetensors`.
//!
//! Loading verifies every hash, shape and version before anything runs, and each failure names
//! the file and what is wrong with it. Writing goes to a temporary sibling directory that is
//! renamed into place, so an interrupted write never leaves half a bundle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, ArrayD, Ix1, Ix2};
use sha2::{Digest, Sha256};

use std::sync::Arc;

use image::GrayImage;

use super::manifest::{
    FileRef, FitKind, Manifest, ManifestProblem, ViewInfo, FORMAT_VERSION, FORMAT_VERSION_PLAIN,
};
use super::tensors::{self, TensorFile, TensorFileError};
use crate::cfa::descriptor::DescriptorWeights;
use crate::cfa::graph::{self, GraphShape};
use crate::cfa::position::PositionStats;
use crate::view::{Fit, Rect, View};

/// The manifest's file name inside a bundle.
pub const MANIFEST_FILE: &str = "model.toml";

/// Errors loading or writing a bundle. Every variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid manifest: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: ManifestProblem },
    #[error("{path} does not match its manifest hash (expected sha256 {expected}, found {actual}); the file was changed or corrupted: re-copy the bundle or retrain")]
    Hash { path: PathBuf, expected: String, actual: String },
    #[error(transparent)]
    Tensors(#[from] TensorFileError),
    #[error("{path}: {reason}")]
    Graph { path: PathBuf, reason: String },
}

/// A verified bundle in memory.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Contents of the backbone graph, hash-checked.
    pub backbone_onnx: Vec<u8>,
    /// Contents of the descriptor + kNN graph, hash-checked.
    pub descriptor_onnx: Vec<u8>,
    pub weights: DescriptorWeights,
    /// Memory bank `[C', N]`.
    pub bank: Array2<f32>,
    /// Trained radius, when the bundle stores one.
    pub radius: Option<f32>,
    /// The view's ignore mask (0 or 255), hash-checked, when the view has one.
    pub mask: Option<GrayImage>,
    /// Per-position patch-score statistics, when `[cfa] position_norm` is set.
    pub position: Option<PositionStats>,
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn read(path: &Path) -> Result<Vec<u8>, BundleError> {
    std::fs::read(path).map_err(|source| BundleError::Io { path: path.to_path_buf(), source })
}

fn read_verified(dir: &Path, file: &str, expected: &str) -> Result<Vec<u8>, BundleError> {
    let path = dir.join(file);
    let bytes = read(&path)?;
    let actual = sha256_hex(&bytes);
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(BundleError::Hash { path, expected: expected.to_string(), actual });
    }
    Ok(bytes)
}

impl Bundle {
    /// Loads and verifies the bundle in `dir`.
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let manifest = load_manifest(dir)?;
        let backbone_onnx = read_verified(dir, &manifest.backbone.file, &manifest.backbone.sha256)?;
        let descriptor_onnx = read_verified(dir, &manifest.descriptor.file, &manifest.descriptor.sha256)?;
        let weights_bytes = read_verified(dir, &manifest.weights.file, &manifest.weights.sha256)?;
        let weights_file = TensorFile::from_bytes(&dir.join(&manifest.weights.file), weights_bytes)?;
        let (weights, bank, radius) = load_weights(&weights_file, &manifest)?;
        let position = load_position(dir, &weights_file, &manifest)?;
        let mask = load_mask(dir, &manifest)?;
        Ok(Bundle {
            dir: dir.to_path_buf(),
            manifest,
            backbone_onnx,
            descriptor_onnx,
            weights,
            bank,
            radius,
            mask,
            position,
        })
    }

    /// The view frames go through, with a camera's ROI in place of the stored one.
    pub fn view(&self, roi: Option<Rect>) -> View {
        let input = (self.manifest.input.width, self.manifest.input.height);
        let Some(v) = &self.manifest.view else {
            return View { roi, ..View::stretch(input) };
        };
        let fit = match v.fit {
            FitKind::Tiles => Fit::Tiles { overlap: v.overlap },
            FitKind::Letterbox => Fit::Letterbox,
        };
        // A letterbox over the whole frame fits any frame; an ROI, a mask or tiles are laid
        // out in the training frames' pixels.
        let fixed = fit != Fit::Letterbox || v.roi.is_some() || v.mask.is_some();
        View {
            frame: fixed.then_some((v.frame[0], v.frame[1])),
            roi: roi.or(v.roi),
            fit,
            input,
            mask: self.mask.clone().map(Arc::new),
        }
    }

    /// Stores a view (and its ignore mask) in the manifest, hashing the mask as it is written.
    pub fn set_view(&mut self, mut view: ViewInfo, mask: Option<GrayImage>) {
        view.mask = mask
            .as_ref()
            .map(|m| FileRef { file: MASK_FILE.to_string(), sha256: sha256_hex(&encode_mask(m)) });
        self.manifest.view = Some(view);
        self.mask = mask;
    }

    /// The shapes the descriptor graph was generated for.
    pub fn graph_shape(&self) -> GraphShape {
        GraphShape {
            channels: self.manifest.backbone.channels,
            grid: self.manifest.input.patch_grid(),
            k: self.manifest.cfa.k,
        }
    }

    /// A short id for results: the model id and the first 12 hex digits of the weights hash.
    pub fn short_sha(&self) -> &str {
        &self.manifest.weights.sha256[..12.min(self.manifest.weights.sha256.len())]
    }
}

/// The ignore mask's file name inside a bundle.
pub const MASK_FILE: &str = "mask.png";

/// PNG bytes of a mask; the same mask always gives the same bytes, so its hash is stable.
fn encode_mask(mask: &GrayImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    mask.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("a PNG of an in-memory image encodes");
    bytes
}

/// The view's mask, hash-checked and decoded.
fn load_mask(dir: &Path, manifest: &Manifest) -> Result<Option<GrayImage>, BundleError> {
    let Some(file) = manifest.view.as_ref().and_then(|v| v.mask.as_ref()) else { return Ok(None) };
    let bytes = read_verified(dir, &file.file, &file.sha256)?;
    let path = dir.join(&file.file);
    let mask = image::load_from_memory(&bytes)
        .map_err(|e| BundleError::Graph { path, reason: format!("not a readable mask image: {e}") })?;
    Ok(Some(crate::view::binarise(mask.to_luma8())))
}

/// Reads and validates `model.toml`.
pub fn load_manifest(dir: &Path) -> Result<Manifest, BundleError> {
    let path = dir.join(MANIFEST_FILE);
    if !dir.is_dir() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "model bundle directory not found");
        return Err(BundleError::Io { path: dir.to_path_buf(), source });
    }
    let text =
        std::fs::read_to_string(&path).map_err(|source| BundleError::Io { path: path.clone(), source })?;
    // Check the version before the full parse, so a future format with new fields says "upgrade",
    // not "unknown field".
    if let Ok(v) = text.parse::<toml::Table>() {
        if let Some(version) = v.get("format_version").and_then(|v| v.as_integer()) {
            if version > super::manifest::FORMAT_VERSION as i64 {
                let problem = ManifestProblem {
                    field: "format_version",
                    problem: format!(
                        "bundle format {version} is newer than this inspectd understands ({}); upgrade inspectd",
                        super::manifest::FORMAT_VERSION
                    ),
                };
                return Err(BundleError::Invalid { path, problem });
            }
        }
    }
    let manifest: Manifest = toml::from_str(&text)
        .map_err(|e| BundleError::Manifest { path: path.clone(), reason: e.to_string() })?;
    manifest.validate().map_err(|problem| BundleError::Invalid { path, problem })?;
    Ok(manifest)
}

/// The position statistics `[cfa] position_norm` promises, checked; `None` without it.
fn load_position(dir: &Path, file: &TensorFile, m: &Manifest) -> Result<Option<PositionStats>, BundleError> {
    if !m.cfa.position_norm {
        return Ok(None);
    }
    let (h, w) = m.input.patch_grid();
    let get = |name| -> Result<Array2<f32>, BundleError> {
        Ok(file.get_shaped(name, &[h, w])?.into_dimensionality::<Ix2>().expect("checked"))
    };
    let (mean, std) = (get("position.mean")?, get("position.std")?);
    PositionStats::check(mean.view(), std.view()).map_err(|reason| BundleError::Invalid {
        path: dir.join(&m.weights.file),
        problem: ManifestProblem {
            field: "position",
            problem: format!("{reason}; the file is damaged: re-copy the bundle or retrain"),
        },
    })?;
    Ok(Some(PositionStats { mean, std }))
}

fn load_weights(
    file: &TensorFile,
    m: &Manifest,
) -> Result<(DescriptorWeights, Array2<f32>, Option<f32>), BundleError> {
    let (c_out, c_in) = (m.cfa.descriptor_channels, m.feature_channels() + 2);
    let weight =
        file.get_shaped("descriptor.weight", &[c_out, c_in])?.into_dimensionality::<Ix2>().expect("checked");
    let bias = file.get_shaped("descriptor.bias", &[c_out])?.into_dimensionality::<Ix1>().expect("checked");
    let bank = file
        .get_shaped("memory_bank", &[c_out, m.cfa.memory_size])?
        .into_dimensionality::<Ix2>()
        .expect("checked");
    let radius = match file.names().iter().any(|n| n == "radius") {
        true => Some(file.get_shaped("radius", &[1])?[[0]]),
        false => None,
    };
    Ok((DescriptorWeights { weight, bias }, bank, radius))
}

impl Bundle {
    /// Assembles a new bundle in memory: generates the descriptor + kNN graph from the weights
    /// and fills in every hash. Nothing is written until [`write`].
    pub fn assemble(
        dir: &Path,
        mut manifest: Manifest,
        backbone_onnx: Vec<u8>,
        weights: DescriptorWeights,
        bank: Array2<f32>,
        radius: Option<f32>,
    ) -> Result<Bundle, BundleError> {
        let shape = GraphShape {
            channels: manifest.backbone.channels,
            grid: manifest.input.patch_grid(),
            k: manifest.cfa.k,
        };
        let descriptor_onnx =
            graph::descriptor_knn_model(shape, &weights, bank.view(), graph::DEFAULT_CHUNK_ROWS)
                .map_err(|e| BundleError::Graph {
                    path: dir.join(&manifest.descriptor.file),
                    reason: e.to_string(),
                })?
                .encode();
        manifest.backbone.sha256 = sha256_hex(&backbone_onnx);
        manifest.descriptor.sha256 = sha256_hex(&descriptor_onnx);
        manifest.weights.sha256 =
            sha256_hex(&tensors::to_bytes(&weight_tensors(&weights, &bank, radius, None)));
        manifest
            .validate()
            .map_err(|problem| BundleError::Invalid { path: dir.join(MANIFEST_FILE), problem })?;
        Ok(Bundle {
            dir: dir.to_path_buf(),
            manifest,
            backbone_onnx,
            descriptor_onnx,
            weights,
            bank,
            radius,
            mask: None,
            position: None,
        })
    }

    /// Stores per-position statistics (or removes them): sets `[cfa] position_norm`, the format
    /// version an older inspectd refuses, and the weights file's hash.
    pub fn set_position(&mut self, position: Option<PositionStats>) {
        let m = &mut self.manifest;
        m.cfa.position_norm = position.is_some();
        m.format_version = if position.is_some() { FORMAT_VERSION } else { FORMAT_VERSION_PLAIN };
        self.position = position;
        let tensors = weight_tensors(&self.weights, &self.bank, self.radius, self.position.as_ref());
        self.manifest.weights.sha256 = sha256_hex(&tensors::to_bytes(&tensors));
    }
}

/// Writes `bundle` to `bundle.dir` atomically (temporary sibling, then rename), replacing an
/// existing bundle there. The manifest is written as it is now (thresholds included).
pub fn write(bundle: &Bundle) -> Result<(), BundleError> {
    let weights = tensors::to_bytes(&weight_tensors(
        &bundle.weights,
        &bundle.bank,
        bundle.radius,
        bundle.position.as_ref(),
    ));
    let m = &bundle.manifest;
    let text = toml::to_string_pretty(m).expect("manifest serialises");
    let mask = bundle.mask.as_ref().map(encode_mask);
    let mut files: Vec<(&str, &[u8])> = vec![
        (&m.backbone.file, &bundle.backbone_onnx),
        (&m.descriptor.file, &bundle.descriptor_onnx),
        (&m.weights.file, &weights),
        (MANIFEST_FILE, text.as_bytes()),
    ];
    if let Some(bytes) = &mask {
        files.push((MASK_FILE, bytes));
    }
    write_atomically(&bundle.dir, &files)
}

fn weight_tensors(
    weights: &DescriptorWeights,
    bank: &Array2<f32>,
    radius: Option<f32>,
    position: Option<&PositionStats>,
) -> BTreeMap<String, ArrayD<f32>> {
    let mut map = BTreeMap::new();
    map.insert("descriptor.weight".to_string(), weights.weight.clone().into_dyn());
    map.insert("descriptor.bias".to_string(), weights.bias.clone().into_dyn());
    map.insert("memory_bank".to_string(), bank.clone().into_dyn());
    if let Some(r) = radius {
        map.insert("radius".to_string(), Array1::from_elem(1, r).into_dyn());
    }
    if let Some(p) = position {
        map.insert("position.mean".to_string(), p.mean.clone().into_dyn());
        map.insert("position.std".to_string(), p.std.clone().into_dyn());
    }
    map
}

/// Writes `files` into a fresh temporary directory next to `dir`, syncs them, and renames it
/// over `dir` (moving an old bundle aside first and removing it after).
fn write_atomically(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), BundleError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Io { path, source }
    };
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bundle".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    for (file, bytes) in files {
        let path = tmp.join(file);
        let mut f = std::fs::File::create(&path).map_err(io(&path))?;
        std::io::Write::write_all(&mut f, bytes).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
    }
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
