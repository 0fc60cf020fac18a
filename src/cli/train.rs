//! `inspectd train`: fit a bundle from good images, with a progress bar and a summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tracing::warn;

use super::RuntimeArgs;
use crate::model::manifest::RadiusMode;
use crate::model::runtime::Runtime;
use crate::train::calibrate::NormalCalibration;
use crate::train::fit::{BankInput, FitConfig};
use crate::train::optim::AdamWConfig;
use crate::train::run::{self, LiveCapture, TrainEvent, TrainSettings, ViewRequest};
use crate::train::select::Selection;
use crate::view::Rect;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Good images: image files, folders of images, MVTec-AD category folders (train/good), or
    /// video files (--video-frames spread over each).
    #[arg(required_unless_present = "camera", value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Bundle directory to write (replaced atomically if it exists).
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
    /// Model id published with every result (default: the output folder's name).
    #[arg(long)]
    pub id: Option<String>,
    /// Backbone graph (default: $INSPECTD_BACKBONE, the installed one, or .local/models/backbone.onnx).
    #[arg(long, value_name = "FILE")]
    pub backbone: Option<PathBuf>,
    /// Model input size as WIDTHxHEIGHT or one number for a square.
    #[arg(long, default_value = "256", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Inspect only this rectangle of each frame, in sensor pixels (X,Y,W,H). Stored in the
    /// bundle's view; a camera's `roi` may move it later.
    #[arg(long, value_name = "X,Y,W,H", value_parser = parse_roi)]
    pub roi: Option<Rect>,
    /// Cut the ROI into SIZE×SIZE tiles at native resolution (the model's input size), so small
    /// defects on large frames keep their pixels. Without it the ROI is resized whole.
    #[arg(long, value_name = "SIZE", conflicts_with = "size", value_parser = parse_tile)]
    pub tile: Option<u32>,
    /// Pixels neighbouring tiles share; their maps are blended there.
    #[arg(long, value_name = "PX", default_value_t = 32, requires = "tile")]
    pub tile_overlap: u32,
    /// With --tile: the memory bank's centres, one per patch position shared by all tiles
    /// (`shared`), or one per position of every tile (`per-tile`: tiles× the bank and the kNN
    /// work). README "Real camera frames" has the measurement.
    #[arg(long, value_enum, default_value = "shared", requires = "tile")]
    pub tile_bank: TileBank,
    /// Ignore mask at ROI resolution: white = inspect, black = ignore (serial numbers, fixtures).
    #[arg(long, value_name = "FILE.png")]
    pub mask: Option<PathBuf>,
    /// Resize the whole ROI into the input with its aspect ratio kept (padded). Implied by
    /// --roi or --mask without --tile; without any of these, images are stretched to --size.
    #[arg(long, conflicts_with = "tile")]
    pub letterbox: bool,
    /// Most epochs to train. With held-out images (--holdout > 0) the epoch is chosen on them.
    #[arg(long, default_value_t = FitConfig::default().epochs)]
    pub epochs: usize,
    /// Stop after this many epochs without a better validation AUROC (held-out good images
    /// plus synthetic defects painted on copies of them); the best epoch's weights are kept.
    #[arg(long, default_value_t = Selection::default().patience)]
    pub patience: usize,
    /// Train all --epochs epochs and keep the last, without validation.
    #[arg(long)]
    pub no_select: bool,
    /// Images the memory bank is averaged over: normalised like training (cfa.md §3) or
    /// un-normalised, as anomalib 2.x does.
    #[arg(long, value_enum, default_value = "normalised")]
    pub bank_input: BankInput,
    /// Images per optimiser step.
    #[arg(long, default_value_t = FitConfig::default().batch)]
    pub batch: usize,
    /// Seed for initialisation, shuffling and the hold-out split (same seed, same bundle).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Hypersphere radius: trained with the descriptor (the paper) or fixed (anomalib).
    #[arg(long, value_enum, default_value = "fixed")]
    pub radius_mode: RadiusModeArg,
    /// Initial (or fixed) radius.
    #[arg(long, default_value_t = 1e-5)]
    pub radius: f32,
    /// K nearest neighbours.
    #[arg(long, default_value_t = 3)]
    pub k: usize,
    /// J hard negatives.
    #[arg(long, default_value_t = 3)]
    pub j: usize,
    /// Memory bank compression (k-means to h·w/gamma_c centres when > 1).
    #[arg(long, default_value_t = 1)]
    pub gamma_c: usize,
    /// Descriptor channel compression (C' = C/gamma_d).
    #[arg(long, default_value_t = 1)]
    pub gamma_d: usize,
    /// Anomaly map blur sigma.
    #[arg(long, default_value_t = 4.0)]
    pub sigma: f32,
    /// Keep raw patch scores instead of standardising each grid position by its mean and
    /// spread on the training images (README "Algorithm notes").
    #[arg(long)]
    pub no_position_norm: bool,
    /// Fraction of good images held out to calibrate the threshold (never trained on).
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f32,
    /// Threshold quantile of the held-out good scores.
    #[arg(long, default_value_t = 0.99)]
    pub calibration_quantile: f64,
    /// Threshold margin above that quantile, in standard deviations of the held-out scores.
    #[arg(long, default_value_t = 1.0)]
    pub calibration_margin: f32,
    /// MVTec-layout category with labelled defects: use the F1-optimal threshold on it instead.
    #[arg(long, value_name = "DIR")]
    pub validation: Option<PathBuf>,
    /// Fail with fewer usable training images than this.
    #[arg(long, default_value_t = 2)]
    pub min_images: usize,
    /// Frames sampled from each video input, spread over its whole length.
    #[arg(long, default_value_t = 120)]
    pub video_frames: usize,
    /// Daemon config whose --camera to capture good frames from (live training).
    #[arg(long, value_name = "FILE", requires = "camera")]
    pub config: Option<PathBuf>,
    /// Camera id in --config to capture from.
    #[arg(long, requires = "config")]
    pub camera: Option<String>,
    /// Frames to capture from the camera.
    #[arg(long, default_value_t = 120)]
    pub frames: usize,
    /// Seconds between captured frames, so they span the line's variation over time.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TileBank {
    Shared,
    PerTile,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RadiusModeArg {
    Trainable,
    Fixed,
}

/// A frame size `WIDTHxHEIGHT` from 32 to 4096 px a side.
pub fn parse_frame_size(s: &str) -> Result<(u32, u32), String> {
    match s.split_once(['x', 'X']) {
        Some(_) => parse_size(s),
        None => Err(format!("'{s}' is not a frame size (use WIDTHxHEIGHT, e.g. 1024x768)")),
    }
}

fn parse_tile(s: &str) -> Result<u32, String> {
    let (w, _) = parse_size(s)?;
    Ok(w)
}

/// `X,Y,W,H` in sensor pixels.
pub fn parse_roi(s: &str) -> Result<Rect, String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("'{s}' is not an roi (use X,Y,W,H in pixels, e.g. 100,50,1024,768)"))?;
    match v[..] {
        [x, y, width, height] if width > 0 && height > 0 => Ok(Rect { x, y, width, height }),
        _ => Err(format!("'{s}' is not an roi (use X,Y,W,H with W and H at least 1)")),
    }
}

pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let parse =
        |v: &str| v.trim().parse::<u32>().map_err(|_| format!("'{s}' is not a size (use 256 or 320x256)"));
    let (w, h) = match s.split_once(['x', 'X']) {
        Some((w, h)) => (parse(w)?, parse(h)?),
        None => (parse(s)?, parse(s)?),
    };
    if w < 32 || h < 32 || w > 4096 || h > 4096 {
        return Err(format!("size {w}x{h} is outside 32..4096"));
    }
    Ok((w, h))
}

impl TrainArgs {
    fn settings(&self) -> anyhow::Result<TrainSettings> {
        let id = self.id.clone().unwrap_or_else(|| {
            self.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
        });
        Ok(TrainSettings {
            inputs: self.inputs.clone(),
            out: self.out.clone(),
            backbone: self.backbone.clone().unwrap_or_else(run::default_backbone),
            model_id: id,
            width: self.tile.unwrap_or(self.size.0),
            height: self.tile.unwrap_or(self.size.1),
            fit: FitConfig {
                k: self.k,
                j: self.j,
                radius: self.radius,
                radius_mode: match self.radius_mode {
                    RadiusModeArg::Trainable => RadiusMode::Trainable,
                    RadiusModeArg::Fixed => RadiusMode::Fixed,
                },
                gamma_c: self.gamma_c,
                gamma_d: self.gamma_d,
                epochs: self.epochs,
                batch: self.batch,
                seed: self.seed,
                optim: AdamWConfig::default(),
                bank_input: self.bank_input,
                bank_groups: 1,
            },
            select: (!self.no_select)
                .then_some(Selection { max_epochs: self.epochs, patience: self.patience }),
            sigma: self.sigma,
            position_norm: !self.no_position_norm,
            holdout: self.holdout,
            calibration: NormalCalibration {
                quantile: self.calibration_quantile,
                margin_std: self.calibration_margin,
            },
            validation: self.validation.clone(),
            min_images: self.min_images,
            video_frames: self.video_frames,
            live: self.live()?,
            view: self.view()?,
        })
    }

    /// The view to store, when any view option (or a live camera's roi) asks for one.
    fn view(&self) -> anyhow::Result<Option<ViewRequest>> {
        let camera_roi = self.live()?.and_then(|l| l.roi);
        let wanted = self.roi.is_some() || self.tile.is_some() || self.mask.is_some() || self.letterbox;
        if !wanted {
            return Ok(None);
        }
        Ok(Some(ViewRequest {
            roi: self.roi.or(camera_roi.map(|r| Rect { x: r.x, y: r.y, width: r.width, height: r.height })),
            tile_overlap: self.tile.map(|_| self.tile_overlap),
            mask: self.mask.clone(),
            per_tile_bank: self.tile_bank == TileBank::PerTile,
        }))
    }

    fn live(&self) -> anyhow::Result<Option<LiveCapture>> {
        let (Some(file), Some(id)) = (&self.config, &self.camera) else { return Ok(None) };
        let config = crate::settings::Settings::load(file)?.config;
        let cam = config
            .cameras
            .get(id)
            .ok_or_else(|| anyhow::anyhow!("no camera '{id}' in {}", file.display()))?;
        anyhow::ensure!(
            self.interval >= 0.0 && self.frames >= 1,
            "--frames must be at least 1 and --interval not negative"
        );
        Ok(Some(LiveCapture {
            camera: id.clone(),
            source: cam.source.clone(),
            roi: cam.roi,
            frames: self.frames,
            interval: Duration::from_secs_f64(self.interval),
        }))
    }
}

/// Fewer held-out images than this make a threshold worth a warning.
const FEW_HELD_OUT: usize = 10;

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.k >= 1 && args.batch >= 1 && args.epochs >= 1,
        "--k, --batch and --epochs must be at least 1"
    );
    anyhow::ensure!((0.0..0.9).contains(&args.holdout), "--holdout must be in [0, 0.9)");
    let settings = args.settings()?;
    let runtime = Runtime::init(args.runtime.settings())?;
    let bar = ProgressBar::new(0).with_style(style("{msg:>12} [{bar:30}] {pos}/{len}"));
    bar.enable_steady_tick(Duration::from_millis(200));
    let epochs = settings.fit.epochs;
    let mut on = |e: TrainEvent| progress(&bar, epochs, e);
    let report = run::train(&runtime, &settings, &mut on).context("training failed")?;
    bar.finish_and_clear();
    eprintln!("trained {} in {:.1} s", report.bundle.display(), report.elapsed_s);
    eprintln!(
        "  images: {} trained, {} held out, {} skipped",
        report.train_images, report.holdout_images, report.skipped
    );
    eprintln!(
        "  epochs: {}, final loss {:.4}, radius {:.4}",
        report.epochs, report.final_loss, report.radius
    );
    match &report.selected {
        Some(sel) => {
            let best = sel.curve.iter().find(|r| r.epoch == sel.best_epoch).copied();
            let figure = best.map_or(String::new(), |b| {
                format!(": validation image AUROC {:.4}, pixel AUROC {:.4}", b.image_auroc, b.pixel_auroc)
            });
            let why = if sel.stopped_early { ", stopped early" } else { "" };
            eprintln!("  kept epoch {}{figure}{why}", sel.best_epoch);
            let curve: Vec<String> =
                sel.curve.iter().map(|r| format!("{}:{:.3}", r.epoch, r.image_auroc)).collect();
            eprintln!("  validation curve (epoch:image AUROC): {}", curve.join(" "));
        }
        None if args.no_select => eprintln!("  kept the last epoch (--no-select)"),
        None => eprintln!("  kept the last epoch (fewer than 2 held-out images: no validation set)"),
    }
    match report.position_norm {
        true => eprintln!(
            "  scores: standardised per patch position on the {} training images",
            report.train_images
        ),
        false if args.no_position_norm => eprintln!("  scores: raw patch scores (--no-position-norm)"),
        false => {
            eprintln!("  scores: raw patch scores (per-position statistics need 2 or more training images)")
        }
    }
    match (report.threshold, &report.threshold_method) {
        (Some(t), Some(m)) => {
            eprintln!("  threshold: {t:.4} ({m})");
            if args.validation.is_none() && report.holdout_images < FEW_HELD_OUT {
                eprintln!(
                    "  warning: a threshold from {} held-out images is a rough one and may call good parts NG; \
                     train on more good images, raise --holdout, or calibrate with --validation",
                    report.holdout_images
                );
            }
        }
        _ => eprintln!("  threshold: none (no held-out images: use --holdout > 0 or --validation)"),
    }
    Ok(ExitCode::SUCCESS)
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("valid template").progress_chars("=> ")
}

fn progress(bar: &ProgressBar, epochs: usize, event: TrainEvent) {
    match event {
        TrainEvent::Loaded { done, total } => set(bar, "loading", done, total),
        TrainEvent::Skipped { path, reason } => {
            bar.suspend(|| warn!(file = %path.display(), "Skipping image: {reason}"))
        }
        TrainEvent::Features { done, total } => set(bar, "features", done, total),
        TrainEvent::Step(p) => {
            let total = epochs * p.steps_per_epoch;
            if bar.length() != Some(total as u64) {
                bar.set_style(style("training [{bar:30}] {pos}/{len} steps  {msg}  ETA {eta}"));
                bar.set_length(total as u64);
                bar.reset_eta();
            }
            bar.set_position((p.epoch * p.steps_per_epoch + p.step + 1) as u64);
            bar.set_message(format!("epoch {}/{epochs} (at most) loss {:.4}", p.epoch + 1, p.loss));
        }
        TrainEvent::Validation { done, total } => set(bar, "validation", done, total),
        TrainEvent::Validated { record, best } => {
            let line = format!(
                "epoch {:>2}: loss {:.4}  validation image AUROC {:.4}  pixel AUROC {:.4}  (best {:.4} @ epoch {})",
                record.epoch, record.loss, record.image_auroc, record.pixel_auroc, best.image_auroc, best.epoch
            );
            print_line(bar, line);
        }
        TrainEvent::Positions { images } => {
            bar.set_style(style("{msg}"));
            bar.set_message(format!("per-position statistics of {images} training images"));
        }
        TrainEvent::Calibrating { images } => {
            bar.set_style(style("{msg}"));
            bar.set_message(format!("calibrating on {images} held-out images"));
        }
    }
}

/// A line above the progress bar, or on stderr when there is no terminal to draw the bar on.
fn print_line(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn set(bar: &ProgressBar, what: &'static str, done: usize, total: usize) {
    bar.set_length(total as u64);
    bar.set_position(done as u64);
    bar.set_message(what);
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainArgs,
    }

    /// The integration tests train through the library with `FitConfig::default()`; the CLI's
    /// defaults must be that same recipe, or the tests would measure a recipe nobody runs.
    #[test]
    fn command_line_defaults_are_the_library_defaults() {
        let settings = Cli::parse_from(["train", "good/", "--out", "model"]).args.settings().unwrap();
        assert_eq!(settings.fit, FitConfig::default());
        assert_eq!(settings.select, Some(Selection::default()));
        assert_eq!(settings.view, None, "no view option stores no view");
    }

    #[test]
    fn tile_sets_the_input_size_and_the_view_options_are_parsed() {
        let args =
            ["train", "good/", "--out", "m", "--tile", "128", "--tile-overlap", "16", "--roi", "8,4,512,384"];
        let settings = Cli::parse_from(args).args.settings().unwrap();
        assert_eq!((settings.width, settings.height), (128, 128));
        let view = settings.view.unwrap();
        assert_eq!(view.tile_overlap, Some(16));
        assert_eq!(view.roi, Some(Rect { x: 8, y: 4, width: 512, height: 384 }));
        assert!(Cli::try_parse_from(["train", "g/", "--out", "m", "--tile", "128", "--size", "64"]).is_err());
        assert!(Cli::try_parse_from(["train", "g/", "--out", "m", "--roi", "1,2,3"]).is_err());
    }
}
