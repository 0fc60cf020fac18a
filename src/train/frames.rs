//! Training frames through a view: the view a new bundle gets from `train --roi/--tile/
//! --mask/--letterbox` and the training frames, the model inputs they are cut into, and the
//! check that their cached features fit in memory before any work starts.

use std::path::PathBuf;

use image::RgbImage;

use super::run::{TrainError, TrainSettings, ViewRequest};
use crate::cfa::preprocess;
use crate::model::backbone;
use crate::model::bundle::Bundle;
use crate::model::manifest::{FitKind, ViewInfo};
use crate::view::{Fit, View};

/// Refuses, before any work, a training set whose cached backbone features (`[h·w, C + 2]`
/// floats per input, kept for every epoch) would not fit in the memory available: 120 frames
/// of 5 MP in 256 px tiles are about 12 000 inputs and 34 GiB.
pub(super) fn check_memory(
    inputs: &[RgbImage],
    desc: &backbone::BackboneDescription,
    s: &TrainSettings,
    frames: usize,
) -> Result<(), TrainError> {
    let need = feature_cache_gib(inputs.len(), (s.width, s.height), desc.channels.iter().sum());
    let Some(available) = available_memory_gib() else { return Ok(()) };
    if need <= 0.8 * available {
        return Ok(());
    }
    let tiles = if inputs.len() > frames {
        format!(" in {} tiles each", inputs.len() / frames.max(1))
    } else {
        String::new()
    };
    Err(TrainError::TooLarge {
        inputs: inputs.len(),
        frames,
        tiles,
        need_gib: need,
        available_gib: available,
    })
}

/// GiB of cached features for `inputs` images of `size` with `channels` backbone channels.
fn feature_cache_gib(inputs: usize, size: (u32, u32), channels: usize) -> f64 {
    let patches = (size.0.div_ceil(4) * size.1.div_ceil(4)) as f64;
    inputs as f64 * patches * (channels + 2) as f64 * 4.0 / (1u64 << 30) as f64
}

/// Memory this process may still use, in GiB: `MemAvailable`, or less under a cgroup limit
/// (a systemd unit's `MemoryMax`); `None` where neither can be read.
fn available_memory_gib() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().next()?.parse().ok()?;
    let read =
        |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).ok()?.trim().parse::<f64>().ok();
    let cgroup =
        read("memory.max").zip(read("memory.current")).map(|(max, used)| (max - used).max(0.0) / 1024.0);
    Some(cgroup.map_or(kib, |c| c.min(kib)) / (1u64 << 20) as f64)
}

/// The view a new bundle gets: the training frames' size (all must share it), the ROI,
/// tiles or letterbox, and the mask, checked against one another.
pub(super) fn training_view(
    request: &ViewRequest,
    frames: &[RgbImage],
    paths: &[PathBuf],
    s: &TrainSettings,
) -> Result<View, TrainError> {
    let Some(first) = frames.first() else {
        return Err(TrainError::TooFew {
            usable: 0,
            skipped: paths.len(),
            holdout: 0,
            needed: s.min_images.max(1),
        });
    };
    let (want_w, want_h) = first.dimensions();
    if let Some((i, f)) = frames.iter().enumerate().find(|(_, f)| f.dimensions() != (want_w, want_h)) {
        let (got_w, got_h) = f.dimensions();
        let path = paths.get(i).map(|p| p.display().to_string()).unwrap_or_else(|| format!("frame {i}"));
        return Err(TrainError::FrameSize { path, got_w, got_h, want_w, want_h });
    }
    let mask = match &request.mask {
        Some(path) => Some(std::sync::Arc::new(crate::view::load_mask(path).map_err(TrainError::Mask)?)),
        None => None,
    };
    let fit = match request.tile_overlap {
        Some(overlap) => Fit::Tiles { overlap },
        None => Fit::Letterbox,
    };
    let view =
        View { frame: Some((want_w, want_h)), roi: request.roi, fit, input: (s.width, s.height), mask };
    view.check((want_w, want_h))?;
    Ok(view)
}

/// The manifest's `[view]` for a training view, and its mask.
pub(super) fn view_info(view: &View, frames: &[RgbImage]) -> (ViewInfo, Option<image::GrayImage>) {
    let frame =
        view.frame.or(frames.first().map(|f| f.dimensions())).expect("training views know their frame");
    let (fit, overlap) = match view.fit {
        Fit::Tiles { overlap } => (FitKind::Tiles, overlap),
        Fit::Letterbox | Fit::Stretch => (FitKind::Letterbox, 0),
    };
    let info = ViewInfo { frame: [frame.0, frame.1], roi: view.roi, fit, overlap, mask: None };
    (info, view.mask.as_deref().cloned())
}

/// Frames as the model sees them: every tile of every frame, or one letterboxed image each.
/// Without a view the frames are already at the input size.
pub(super) fn model_inputs(view: Option<&View>, frames: Vec<RgbImage>) -> Result<Vec<RgbImage>, TrainError> {
    let Some(view) = view else { return Ok(frames) };
    let mut inputs = Vec::new();
    for frame in &frames {
        inputs.extend(view.prepare(frame)?.inputs);
    }
    Ok(inputs)
}

/// The images the daemon's focus check measures, for frames of this bundle: the ROI at
/// sensor resolution with a view, the stretched model input without one.
pub(super) fn health_images(bundle: &Bundle, frames: &[RgbImage]) -> Vec<RgbImage> {
    let view = bundle.view(None);
    frames
        .iter()
        .filter_map(|f| match view.fit {
            Fit::Stretch => Some(preprocess::resize(f, view.input.0, view.input.1)),
            _ => {
                let roi = view.roi_in(f.dimensions()).ok()?;
                Some(image::imageops::crop_imm(f, roi.x, roi.y, roi.width, roi.height).to_image())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feature_cache_of_a_5_mp_tiled_training_set_is_tens_of_gib() {
        // 120 frames of 2448×2048 in 256 px tiles overlapping 32 px: 99 tiles each. Lite0 has
        // 24 + 40 + 112 feature channels.
        let gib = feature_cache_gib(120 * 99, (256, 256), 176);
        assert!((30.0..36.0).contains(&gib), "{gib}");
        assert!(feature_cache_gib(120, (256, 256), 176) < 0.4);
    }
}
