//! The evidence store: frames and heatmap overlays of NG frames on disk, within caps.
//!
//! Each file is written under a hidden temporary name, synced and renamed into place, so a
//! crash or power loss leaves either the whole image or nothing (and a stray `.tmp` that
//! the next [`EvidenceStore::open`] removes), never a truncated picture an alarm points to.
//!
//! After every save the oldest evidence, across all cameras, is deleted until both the
//! file and the byte caps hold. The evidence just saved is never deleted, even when it
//! alone exceeds a cap: an alarm message may already name it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use image::RgbImage;
use ndarray::ArrayView2;
use tracing::warn;

use super::error::EvidenceError;
use super::format::EvidenceFormat;
use super::inventory::{Inventory, StoredFile, Usage};
use super::naming::{is_temp_name, temp_path, EvidenceLayout, EvidencePaths, ItemKey};
use crate::config::types::EvidenceConfig;
use crate::flow::frame::Region;
use crate::heatmap;
use crate::view::Rect;

/// What the heatmap file shows over a frame.
#[derive(Debug, Clone, Copy)]
pub struct Heat<'a> {
    /// Where `map` lies in the frame, in the frame's pixels.
    pub roi: Rect,
    /// Anomaly map at the ROI's resolution.
    pub map: ArrayView2<'a, f32>,
    /// Map value drawn at the top of the colour scale.
    pub vmax: f32,
    /// Boxed in red, in the frame's pixels.
    pub regions: &'a [Region],
}

/// How strongly the heatmap covers the frame: the part must stay recognisable under it.
const HEATMAP_ALPHA: f32 = 0.45;

/// Evidence files of all cameras under one directory. Blocking (file I/O and image
/// encoding): use it from a dedicated thread, never from the async runtime.
#[derive(Debug)]
pub struct EvidenceStore {
    layout: EvidenceLayout,
    max_files: usize,
    max_bytes: u64,
    inventory: Inventory,
}

impl EvidenceStore {
    /// Opens (creating it if needed) the store at `dir`, counting the evidence already
    /// there so the caps hold across restarts, and removing temporary files a crash left.
    pub fn open(
        dir: impl Into<PathBuf>,
        max_files: usize,
        max_bytes: u64,
        format: EvidenceFormat,
    ) -> Result<Self, EvidenceError> {
        let layout = EvidenceLayout::new(dir, format);
        create_dir(layout.dir())?;
        let inventory = scan(layout.dir())?;
        Ok(EvidenceStore { layout, max_files, max_bytes, inventory })
    }

    /// Opens the store the `[evidence]` section describes; the directory defaults to
    /// `{state_dir}/evidence`.
    pub fn from_config(config: &EvidenceConfig, state_dir: &Path) -> Result<Self, EvidenceError> {
        let dir = config.resolved_dir(state_dir);
        Self::open(dir, config.max_files, config.max_bytes, EvidenceFormat::parse(&config.format)?)
    }

    /// Names files without touching the disk; cloneable, for the stage that builds alarm
    /// messages.
    pub fn layout(&self) -> &EvidenceLayout {
        &self.layout
    }

    /// Files and bytes of evidence currently stored.
    pub fn usage(&self) -> Usage {
        self.inventory.usage()
    }

    /// Writes frame `seq` of `camera`, captured at `at`, at its own resolution, and the same
    /// frame with the heatmap over its ROI and the regions boxed, then ages out old evidence.
    /// Saving the same frame again overwrites its files.
    pub fn save(
        &mut self,
        camera: &str,
        seq: u64,
        at: SystemTime,
        frame: &RgbImage,
        heat: Heat,
    ) -> Result<EvidencePaths, EvidenceError> {
        check_size(camera, seq, frame, heat)?;
        let paths = self.layout.paths(camera, seq, at)?;
        create_dir(&self.layout.camera_dir(camera)?)?;
        let key = ItemKey::new(camera, seq, at);
        self.write_image(&key, &paths.frame, frame)?;
        let annotated = heatmap::annotate(
            frame,
            heat.roi,
            heat.map,
            heat.vmax,
            HEATMAP_ALPHA,
            heat.regions,
            heatmap::NG_COLOUR,
        );
        self.write_image(&key, &paths.heatmap, &annotated)?;
        self.prune(&key);
        Ok(paths)
    }

    fn write_image(&mut self, key: &ItemKey, path: &Path, image: &RgbImage) -> Result<(), EvidenceError> {
        let bytes = self
            .layout
            .format()
            .encode(image)
            .map_err(|source| EvidenceError::Encode { path: path.to_path_buf(), source })?;
        write_atomic(path, &bytes)
            .map_err(|source| EvidenceError::Write { path: path.to_path_buf(), source })?;
        let file = StoredFile { path: path.to_path_buf(), bytes: bytes.len() as u64 };
        self.inventory.insert(key.clone(), file);
        Ok(())
    }

    /// Deletes the oldest evidence until within both caps, keeping `keep`. A file that
    /// cannot be deleted is logged and forgotten, so one stuck file cannot stop retention
    /// from freeing space elsewhere.
    fn prune(&mut self, keep: &ItemKey) {
        while self.inventory.over(self.max_files, self.max_bytes) {
            let Some(files) = self.inventory.take_oldest_except(keep) else {
                return;
            };
            for file in files {
                match fs::remove_file(&file.path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        warn!(path = %file.path.display(), error = %e, "Cannot delete old evidence.");
                    }
                    _ => {}
                }
            }
        }
    }
}

/// `overlay` requires the map to match the frame; a mismatch is a wiring bug, reported
/// rather than panicking on the evidence thread.
/// The map must cover its ROI exactly, and the ROI lie inside the frame.
fn check_size(camera: &str, seq: u64, frame: &RgbImage, heat: Heat) -> Result<(), EvidenceError> {
    let (map_h, map_w) = heat.map.dim();
    let r = heat.roi;
    let inside = r.x + r.width <= frame.width() && r.y + r.height <= frame.height();
    if inside && (r.width as usize, r.height as usize) == (map_w, map_h) {
        return Ok(());
    }
    Err(EvidenceError::Size {
        camera: camera.to_string(),
        seq,
        map_w,
        map_h,
        roi: r,
        image_w: frame.width(),
        image_h: frame.height(),
    })
}

fn create_dir(path: &Path) -> Result<(), EvidenceError> {
    fs::create_dir_all(path).map_err(|source| EvidenceError::CreateDir { path: path.to_path_buf(), source })
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_path(path);
    let written = fs::File::create(&temp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let result = written.and_then(|()| fs::rename(&temp, path));
    if result.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Lists the evidence under `dir` (one folder per camera).
fn scan(dir: &Path) -> Result<Inventory, EvidenceError> {
    let mut inventory = Inventory::default();
    for camera_dir in read_dir(dir)? {
        let Some(camera) = camera_dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if camera_dir.is_dir() {
            scan_camera(&camera_dir, &camera, &mut inventory)?;
        }
    }
    Ok(inventory)
}

fn scan_camera(dir: &Path, camera: &str, inventory: &mut Inventory) -> Result<(), EvidenceError> {
    for path in read_dir(dir)? {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if is_temp_name(name) {
            // Left by a crash mid-write; if it cannot be removed it is merely not counted.
            let _ = fs::remove_file(&path);
            continue;
        }
        let Some(key) = ItemKey::parse(camera, name) else {
            continue;
        };
        let meta =
            fs::metadata(&path).map_err(|source| EvidenceError::Scan { path: path.clone(), source })?;
        if meta.is_file() {
            inventory.insert(key, StoredFile { path, bytes: meta.len() });
        }
    }
    Ok(())
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, EvidenceError> {
    let scan_error = |source| EvidenceError::Scan { path: dir.to_path_buf(), source };
    fs::read_dir(dir).map_err(scan_error)?.map(|entry| entry.map(|e| e.path()).map_err(scan_error)).collect()
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
