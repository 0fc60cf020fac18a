//! The whole of `inspectd train`: collect good images, split off a calibration set, cache
//! backbone features, fit, calibrate, write the bundle atomically.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;

use super::calibrate::{self, NormalCalibration};
use super::features::FeatureCache;
use super::fit::{BankInput, FitConfig, StepProgress, Trainer};
use super::frames::{check_memory, health_images, model_inputs, training_view, view_info};
use super::select::{self, EpochRecord, SelectEvent, Selected, Selection, Validation};
use crate::cfa::position::PositionStats;
use crate::cfa::preprocess;
use crate::input::images::{self, ImageError};
use crate::input::mvtec;
use crate::model::backbone::{self, BackboneError};
use crate::model::bundle::{self, Bundle, BundleError};
use crate::model::manifest::{CfaParams, InputInfo, Manifest, Provenance};
use crate::model::runtime::Runtime;
use crate::model::scorer::{ImageBatch, ScoreError, Scorer};
use crate::util::rng::SplitMix64;
use crate::view::{Rect, View};

/// Everything `inspectd train` needs, validated.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    /// Image files, folders of images, or MVTec categories (their `train/good`).
    pub inputs: Vec<PathBuf>,
    /// Bundle directory to write.
    pub out: PathBuf,
    pub backbone: PathBuf,
    pub model_id: String,
    pub width: u32,
    pub height: u32,
    pub fit: FitConfig,
    /// Choose the epoch on the validation set built from the held-out images (and stop
    /// early); `None` trains exactly `fit.epochs` epochs.
    pub select: Option<Selection>,
    pub sigma: f32,
    /// Standardise patch scores per grid position with statistics of the training images
    /// (`cfa::position`); thresholds are then calibrated on the standardised maps.
    pub position_norm: bool,
    /// Fraction of the good images held out (never trained on) to calibrate the threshold.
    pub holdout: f32,
    pub calibration: NormalCalibration,
    /// MVTec category with labelled defects for an F1-optimal threshold.
    pub validation: Option<PathBuf>,
    /// Training fails with fewer usable training images than this.
    pub min_images: usize,
    /// Frames taken from each video input, spread over its whole length.
    pub video_frames: usize,
    /// Good frames captured from a live camera before training.
    pub live: Option<LiveCapture>,
    /// The view to store: ROI, tiles or letterbox, ignore mask. `None` stretches every image
    /// to the input size and stores no view, as bundles before views did.
    pub view: Option<ViewRequest>,
}

/// What `train --roi/--tile/--mask/--letterbox` asks for. The frame size is the training
/// images' own (they must all have it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewRequest {
    pub roi: Option<Rect>,
    /// Tiles of the input size sharing this many pixels; `None` letterboxes the whole ROI.
    pub tile_overlap: Option<u32>,
    /// Ignore mask at ROI resolution (white = inspect, black = ignore).
    pub mask: Option<PathBuf>,
    /// With tiles: one memory-bank centre per position per tile instead of one per position
    /// shared by all tiles (README "Real camera frames").
    pub per_tile_bank: bool,
}

/// Frames from a configured camera, spread over time rather than consecutive.
#[derive(Debug, Clone)]
pub struct LiveCapture {
    pub camera: String,
    pub source: crate::config::types::SourceConfig,
    pub roi: Option<crate::config::types::Roi>,
    pub frames: usize,
    pub interval: std::time::Duration,
}

/// What happened, for progress display.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    Loaded {
        done: usize,
        total: usize,
    },
    Skipped {
        path: PathBuf,
        reason: String,
    },
    Features {
        done: usize,
        total: usize,
    },
    Step(StepProgress),
    /// Validation images (good and defective) whose features are being computed.
    Validation {
        done: usize,
        total: usize,
    },
    /// The validation figure after an epoch, and the best so far.
    Validated {
        record: EpochRecord,
        best: EpochRecord,
    },
    /// Scoring the training inputs for the per-position statistics.
    Positions {
        images: usize,
    },
    Calibrating {
        images: usize,
    },
}

/// The outcome, for the summary.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub bundle: PathBuf,
    pub train_images: usize,
    pub holdout_images: usize,
    pub skipped: usize,
    /// Epochs trained.
    pub epochs: usize,
    pub final_loss: f32,
    pub radius: f32,
    /// The validation curve and the chosen epoch, when the epoch was selected.
    pub selected: Option<Selected>,
    pub threshold: Option<f32>,
    pub threshold_method: Option<String>,
    /// Patch scores are standardised per position (`cfa::position`).
    pub position_norm: bool,
    pub elapsed_s: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Images(#[from] ImageError),
    #[error("only {usable} usable training images ({skipped} unreadable, {holdout} held out for calibration); at least {needed} are needed: add good images or lower --holdout")]
    TooFew { usable: usize, skipped: usize, holdout: usize, needed: usize },
    #[error("cannot read backbone {path}: {source}; run scripts/setup or pass --backbone")]
    BackboneFile { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Backbone(#[from] BackboneError),
    #[error(transparent)]
    Score(#[from] ScoreError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("camera '{camera}' gave no training frames: {reason}")]
    Live { camera: String, reason: String },
    #[error("{path} is {got_w}x{got_h} but the first training image is {want_w}x{want_h}; a model with --roi, --tile, --mask or --letterbox is trained on frames of one size")]
    FrameSize { path: String, got_w: u32, got_h: u32, want_w: u32, want_h: u32 },
    #[error("the view does not fit the training images: {0}")]
    View(#[from] crate::view::ViewError),
    #[error("ignore mask {0}")]
    Mask(String),
    #[error("{inputs} training inputs ({frames} frames{tiles}) need about {need_gib:.1} GiB for their cached features, and {available_gib:.1} GiB of memory is available; train on fewer frames, a smaller --roi, or with less --tile-overlap")]
    TooLarge { inputs: usize, frames: usize, tiles: String, need_gib: f64, available_gib: f64 },
}

/// Runs training end to end and writes the bundle.
pub fn train(
    runtime: &Runtime,
    s: &TrainSettings,
    on: &mut dyn FnMut(TrainEvent),
) -> Result<TrainReport, TrainError> {
    let started = Instant::now();
    let paths = collect_inputs(&s.inputs)?;
    let size = if s.view.is_some() { crate::source::NATIVE_SIZE } else { (s.width, s.height) };
    let (mut frames, skipped) = load_images(&paths, size, s.video_frames, on);
    if let Some(live) = &s.live {
        frames.extend(capture_live(live, size, on)?);
    }
    let view = match &s.view {
        Some(request) => Some(training_view(request, &frames, &paths, s)?),
        None => None,
    };
    let (train_frames, holdout_frames) = split(frames, s.holdout, s.fit.seed);
    if train_frames.len() < s.min_images.max(1) {
        let (usable, holdout) = (train_frames.len(), holdout_frames.len());
        return Err(TrainError::TooFew { usable, skipped, holdout, needed: s.min_images.max(1) });
    }
    let train_set = model_inputs(view.as_ref(), train_frames.clone())?;
    let holdout_set = model_inputs(view.as_ref(), holdout_frames.clone())?;
    let backbone_onnx = std::fs::read(&s.backbone)
        .map_err(|source| TrainError::BackboneFile { path: s.backbone.clone(), source })?;
    let desc = backbone::describe(runtime, &s.backbone.display().to_string(), &backbone_onnx)?;
    check_memory(&train_set, &desc, s, train_frames.len())?;
    let (mut backbone_session, _) =
        runtime.session("backbone (training)", &backbone_onnx).map_err(ScoreError::from)?;
    let norm = preprocess::Normalisation::IMAGENET;
    let total = train_set.len();
    let cache = FeatureCache::extract(&mut backbone_session, &train_set, &norm, |done| {
        on(TrainEvent::Features { done, total })
    })?;
    let raw_cache = unnormalised_features(&mut backbone_session, &train_set, s.fit.bank_input)?;
    let mut fit = s.fit.clone();
    if let (Some(view), Some(true)) = (&view, s.view.as_ref().map(|v| v.per_tile_bank)) {
        fit.bank_groups = view.inputs_per_frame(view.frame.expect("a training view knows its frame"))?;
    }
    let trainer = Trainer::new(runtime, &cache, raw_cache.as_ref().unwrap_or(&cache), fit)?;
    drop(raw_cache);
    let (fitted, selected) = match s.select.filter(|_| holdout_set.len() >= 2) {
        Some(selection) => {
            let (images, labels, masks) = select::validation_images(&holdout_set, s.fit.seed);
            let total = images.len();
            let vcache = FeatureCache::extract(&mut backbone_session, &images, &norm, |done| {
                on(TrainEvent::Validation { done, total })
            })?;
            drop(images);
            let val = Validation::new(vcache, labels, &masks, s.sigma).with_position_norm(s.position_norm);
            let mut forward = |e| {
                on(match e {
                    SelectEvent::Step(p) => TrainEvent::Step(p),
                    SelectEvent::Validated { record, best } => TrainEvent::Validated { record, best },
                })
            };
            let (fitted, selected) = select::fit_selected(trainer, &cache, &val, selection, &mut forward)?;
            (fitted, Some(selected))
        }
        None => (trainer.fit(&cache, |p| on(TrainEvent::Step(p)))?, None),
    };
    drop(backbone_session);
    let mut bundle = assemble(s, &desc, &norm, &backbone_onnx, &fitted)?;
    if let Some((info, mask)) = view.as_ref().map(|v| view_info(v, &train_frames)) {
        bundle.set_view(info, mask);
    }
    if s.position_norm {
        on(TrainEvent::Positions { images: train_set.len() });
        bundle.set_position(position_stats(runtime, &bundle, &train_set)?);
    }
    on(TrainEvent::Calibrating { images: holdout_frames.len() });
    bundle.manifest.threshold = calibrate_bundle(runtime, &bundle, &holdout_frames, s)?;
    let focus_frames = if holdout_frames.is_empty() { &train_frames } else { &holdout_frames };
    bundle.manifest.focus = focus_stats(&health_images(&bundle, focus_frames));
    let final_loss = fitted.epoch_losses.last().copied().unwrap_or(f32::NAN);
    let epochs = fitted.epoch_losses.len();
    bundle.manifest.training = Some(Provenance {
        source: s.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        images: train_frames.len(),
        epochs,
        final_loss,
        seed: s.fit.seed,
        date: bundle.manifest.model.created_at.clone(),
        elapsed_s: started.elapsed().as_secs_f32(),
        batch: Some(s.fit.batch),
        bank_input: s.fit.bank_input,
        selected_epoch: selected.as_ref().map(|sel| sel.best_epoch),
        validation: selected.as_ref().map(|sel| sel.curve.clone()).unwrap_or_default(),
    });
    bundle::write(&bundle)?;
    let threshold = bundle.manifest.threshold.as_ref();
    Ok(TrainReport {
        bundle: s.out.clone(),
        train_images: train_frames.len(),
        holdout_images: holdout_frames.len(),
        skipped,
        epochs,
        final_loss,
        radius: fitted.radius,
        selected,
        threshold: threshold.map(|t| t.image),
        threshold_method: threshold.map(|t| t.method.clone()),
        position_norm: bundle.position.is_some(),
        elapsed_s: started.elapsed().as_secs_f32(),
    })
}

/// The focus measure of the calibration images, which the daemon's out-of-focus check
/// compares live frames with.
fn focus_stats(images: &[RgbImage]) -> Option<crate::model::manifest::FocusStats> {
    let mut focus: Vec<f32> = images.iter().map(crate::decision::health::focus_of).collect();
    if focus.is_empty() {
        return None;
    }
    focus.sort_by(f32::total_cmp);
    Some(crate::model::manifest::FocusStats {
        images: focus.len(),
        median: focus[focus.len() / 2],
        min: focus[0],
    })
}

/// The bundle, in memory, for fitted parameters.
fn assemble(
    s: &TrainSettings,
    desc: &backbone::BackboneDescription,
    norm: &preprocess::Normalisation,
    backbone_onnx: &[u8],
    fitted: &super::fit::Fitted,
) -> Result<Bundle, TrainError> {
    let manifest = Manifest::new(&s.model_id, desc, input_info(s, norm), cfa_params(s, fitted));
    let (weights, bank) = (fitted.weights.clone(), fitted.bank.clone());
    Ok(Bundle::assemble(&s.out, manifest, backbone_onnx.to_vec(), weights, bank, Some(fitted.radius))?)
}

/// The features the memory bank is averaged over when it is built from un-normalised images
/// (pixels in [0, 1], as anomalib does); `None` when it uses the training features themselves.
fn unnormalised_features(
    backbone: &mut ort::session::Session,
    images: &[RgbImage],
    bank_input: BankInput,
) -> Result<Option<FeatureCache>, ScoreError> {
    match bank_input {
        BankInput::Normalised => Ok(None),
        BankInput::Unnormalised => {
            let raw = preprocess::Normalisation { mean: [0.0; 3], std: [1.0; 3] };
            FeatureCache::extract(backbone, images, &raw, |_| {}).map(Some)
        }
    }
}

fn input_info(s: &TrainSettings, norm: &preprocess::Normalisation) -> InputInfo {
    InputInfo { width: s.width, height: s.height, mean: norm.mean, std: norm.std }
}

fn cfa_params(s: &TrainSettings, fitted: &super::fit::Fitted) -> CfaParams {
    CfaParams {
        k: s.fit.k,
        j: s.fit.j,
        radius: fitted.radius,
        radius_mode: s.fit.radius_mode,
        gamma_c: s.fit.gamma_c,
        gamma_d: s.fit.gamma_d,
        sigma: s.sigma,
        descriptor_channels: fitted.bank.nrows(),
        memory_size: fitted.bank.ncols(),
        position_norm: false,
    }
}

/// Image and video paths from files, folders and MVTec categories, in a stable order.
pub fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ImageError> {
    let mut paths = Vec::new();
    for input in inputs {
        if input.is_dir() && mvtec::is_category(input) {
            paths.extend(mvtec::train_good(input)?);
        } else if input.is_dir() {
            paths.extend(images::list_images(input)?);
        } else if input.is_file() {
            paths.push(input.clone());
        } else {
            let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory");
            return Err(ImageError::Io { path: input.clone(), source });
        }
    }
    Ok(paths)
}

/// Loads every image resized to `(w, h)` ([`crate::source::NATIVE_SIZE`] keeps its own size),
/// and samples `video_frames` frames spread over each video; unreadable files are reported and
/// skipped.
fn load_images(
    paths: &[PathBuf],
    (w, h): (u32, u32),
    video_frames: usize,
    on: &mut dyn FnMut(TrainEvent),
) -> (Vec<RgbImage>, usize) {
    let mut images = Vec::with_capacity(paths.len());
    let mut skipped = 0;
    for (i, path) in paths.iter().enumerate() {
        let loaded = if images::is_image(path) {
            let native = (w, h) == crate::source::NATIVE_SIZE;
            images::load_rgb(path)
                .map(|img| vec![if native { img } else { preprocess::resize(&img, w, h) }])
                .map_err(|e| e.to_string())
        } else {
            crate::source::sample_frames(path, w, h, video_frames)
                .map(|f| f.iter().map(|f| f.to_image()).collect())
                .map_err(|e| e.to_string())
        };
        match loaded {
            Ok(imgs) => images.extend(imgs),
            Err(reason) => {
                skipped += 1;
                on(TrainEvent::Skipped { path: path.clone(), reason });
            }
        }
        on(TrainEvent::Loaded { done: i + 1, total: paths.len() });
    }
    (images, skipped)
}

/// Captures `live.frames` frames from a camera, one every `live.interval`, so the training set
/// covers the line's variation over time rather than one moment.
fn capture_live(
    live: &LiveCapture,
    (w, h): (u32, u32),
    on: &mut dyn FnMut(TrainEvent),
) -> Result<Vec<RgbImage>, TrainError> {
    use crate::flow::edge::{edge, Overflow};
    use crate::source::{SourceSettings, SourceStatus, DEFAULT_STALL_TIMEOUT};
    let settings = SourceSettings {
        camera: live.camera.as_str().into(),
        source: live.source.clone(),
        // At the source's own size the view crops (its ROI came from the camera's roi).
        roi: if (w, h) == crate::source::NATIVE_SIZE { None } else { live.roi },
        width: w,
        height: h,
        stall_timeout: DEFAULT_STALL_TIMEOUT,
        trigger: None,
    };
    let (tx, rx) = edge(1, Overflow::DropOldest);
    let (status_tx, status_rx) = tokio::sync::watch::channel(SourceStatus::starting());
    let cancel = tokio_util::sync::CancellationToken::new();
    let thread = crate::source::spawn(settings, tx, status_tx, cancel.clone(), Default::default())
        .map_err(|e| TrainError::Live { camera: live.camera.clone(), reason: e.to_string() })?;
    let mut frames = Vec::with_capacity(live.frames);
    let mut next = std::time::Instant::now();
    while frames.len() < live.frames {
        std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
        // Empty the edge so the frame kept is the newest, then wait for the next one.
        while let Ok(Some(_)) = rx.try_recv() {}
        match rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(Some(frame)) => frames.push(frame.to_image()),
            _ => {
                cancel.cancel();
                let _ = thread.join();
                let why = status_rx.borrow().message.clone().unwrap_or_else(|| "no frame for 10 s".into());
                return Err(TrainError::Live { camera: live.camera.clone(), reason: why });
            }
        }
        on(TrainEvent::Loaded { done: frames.len(), total: live.frames });
        next += live.interval;
    }
    cancel.cancel();
    let _ = thread.join();
    Ok(frames)
}

/// A seeded split: `holdout` of the images (at least one when there are four or more and
/// holdout > 0) for calibration, the rest for training. The two sets never overlap.
fn split(mut images: Vec<RgbImage>, holdout: f32, seed: u64) -> (Vec<RgbImage>, Vec<RgbImage>) {
    let mut rng = SplitMix64::new(seed ^ 0xCA1B);
    for i in (1..images.len()).rev() {
        images.swap(i, rng.below(i + 1));
    }
    let mut n = (images.len() as f32 * holdout.clamp(0.0, 0.9)).round() as usize;
    if holdout > 0.0 && n == 0 && images.len() >= 4 {
        n = 1;
    }
    let held = images.split_off(images.len() - n);
    (images, held)
}

/// Scores the held-out good images (and the validation set, when given) with the new model.
fn calibrate_bundle(
    runtime: &Runtime,
    bundle: &Bundle,
    holdout: &[RgbImage],
    s: &TrainSettings,
) -> Result<Option<crate::model::manifest::Threshold>, TrainError> {
    let mut scorer = Scorer::new(runtime, bundle)?;
    let view = bundle.view(None);
    if let Some(dir) = &s.validation {
        let tests = mvtec::test_images(dir)?;
        let mut images = Vec::new();
        for t in &tests {
            images.push(images::load_rgb(&t.path)?);
        }
        let scores = score_all(&mut scorer, &view, &images)?;
        let labels: Vec<bool> = tests.iter().map(|t| t.is_anomalous()).collect();
        if let Some(t) = calibrate::from_labelled(&scores, &labels) {
            return Ok(Some(t));
        }
    }
    let scores = score_all(&mut scorer, &view, holdout)?;
    Ok(calibrate::from_normal(&scores, s.calibration))
}

/// Per-position statistics of the raw patch scores of the images the bank was built from
/// (model inputs: tiles, where the view tiles), with the new model.
fn position_stats(
    runtime: &Runtime,
    bundle: &Bundle,
    inputs: &[RgbImage],
) -> Result<Option<PositionStats>, TrainError> {
    let mut scorer = Scorer::new(runtime, bundle)?;
    let m = &bundle.manifest.input;
    let norm = m.normalisation();
    let mut maps = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(8) {
        let batch = ImageBatch::from_images(chunk, m.width, m.height, &norm);
        maps.extend(scorer.raw_patch_scores(&batch)?);
    }
    Ok(PositionStats::fit(&maps))
}

/// Whole-frame scores through the bundle's view, as the daemon will compute them.
fn score_all(scorer: &mut Scorer, view: &View, frames: &[RgbImage]) -> Result<Vec<f32>, TrainError> {
    let mut scores = Vec::with_capacity(frames.len());
    for chunk in frames.chunks(8) {
        let chunk: Vec<&RgbImage> = chunk.iter().collect();
        scores.extend(scorer.score_frames(view, &chunk)?.0.iter().map(|r| r.score));
    }
    Ok(scores)
}

/// The default backbone: `$INSPECTD_BACKBONE`, then the installed one, then a source checkout's.
pub fn default_backbone() -> PathBuf {
    if let Some(p) = std::env::var_os("INSPECTD_BACKBONE").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let installed = Path::new("/usr/local/share/inspectd/backbone.onnx");
    if installed.is_file() {
        return installed.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".local/models/backbone.onnx")
}
