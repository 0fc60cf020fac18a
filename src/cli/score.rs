//! `inspectd score --model DIR IMAGE...`: one JSON line per image on stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use image::RgbImage;
use serde::Serialize;
use tracing::error;

use super::RuntimeArgs;
use crate::decision::regions::regions;
use crate::decision::DEFAULT_MIN_AREA;
use crate::flow::frame::Region;
use crate::heatmap;
use crate::input::images;
use crate::model::bundle::Bundle;
use crate::model::runtime::Runtime;
use crate::model::scorer::{FrameScored, Scorer, StageTimes};

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Model bundle directory (model.toml, backbone.onnx, descriptor.onnx, weights.safetensors).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Write a heatmap overlay PNG per image into this directory.
    #[arg(long, value_name = "DIR")]
    pub heatmap: Option<PathBuf>,
    /// Images scored per backbone run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch: u16,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Image files or folders of images (PNG, JPEG, BMP, TIFF).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
}

/// One output line.
#[derive(Debug, Serialize)]
struct ScoreLine<'a> {
    image: &'a Path,
    score: f32,
    score_norm: Option<f32>,
    threshold: Option<f32>,
    verdict: Option<&'static str>,
    model: ModelRef<'a>,
    /// Regions at or above the threshold, in the image's own pixels (calibrated models only).
    regions: Vec<Region>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heatmap: Option<PathBuf>,
    timings_ms: Timings,
}

#[derive(Debug, Serialize)]
struct ModelRef<'a> {
    id: &'a str,
    sha: &'a str,
}

/// Per-image share of each stage's time for its batch.
#[derive(Debug, Serialize)]
struct Timings {
    decode_preprocess: f64,
    backbone: f64,
    descriptor_knn: f64,
    post: f64,
    total: f64,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    let files = expand_inputs(&args.images)?;
    let bundle = Bundle::load(&args.model).context("cannot load the model bundle")?;
    let runtime = Runtime::init(args.runtime.settings())?;
    // Scored inline: this command has no async runtime and nothing else to overlap with.
    let mut scorer = Scorer::new(&runtime, &bundle)?;
    if let Some(dir) = &args.heatmap {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create heatmap directory {}", dir.display()))?;
    }
    let mut failures = 0;
    for chunk in files.chunks(args.batch as usize) {
        failures += score_chunk(&args, &bundle, &mut scorer, chunk)?;
    }
    if failures > 0 {
        error!(failed = failures, total = files.len(), "Some images could not be scored.");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Files as given, with folders replaced by the images inside them.
fn expand_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            files.extend(images::list_images(input)?);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// Scores one batch of files through the bundle's view; returns how many could not be read or
/// did not fit the view.
fn score_chunk(
    args: &ScoreArgs,
    bundle: &Bundle,
    scorer: &mut Scorer,
    files: &[PathBuf],
) -> anyhow::Result<usize> {
    let view = bundle.view(None);
    let started = Instant::now();
    let mut ok_files = Vec::new();
    let mut frames = Vec::new();
    for file in files {
        let checked = images::load_rgb(file).map_err(|e| e.to_string()).and_then(|img| {
            view.check(img.dimensions()).map(|_| img).map_err(|e| format!("{}: {e}", file.display()))
        });
        match checked {
            Ok(img) => {
                frames.push(img);
                ok_files.push(file);
            }
            Err(e) => error!("{e}"),
        }
    }
    let failed = files.len() - ok_files.len();
    if ok_files.is_empty() {
        return Ok(failed);
    }
    let prep = started.elapsed();
    let refs: Vec<&RgbImage> = frames.iter().collect();
    let (scored, times) = scorer.score_frames(&view, &refs)?;
    for ((file, img), result) in ok_files.iter().zip(&frames).zip(&scored) {
        let regions = regions_of(bundle, result);
        let heatmap = match &args.heatmap {
            Some(dir) => Some(write_heatmap(dir, file, img, result, &regions, bundle)?),
            None => None,
        };
        let line = score_line(bundle, file, result, regions, heatmap, timings(prep, times, ok_files.len()));
        println!("{}", serde_json::to_string(&line).expect("score line serialises"));
    }
    Ok(failed)
}

/// The regions a calibrated model reports for an NG image, in the image's pixels.
fn regions_of(bundle: &Bundle, r: &FrameScored) -> Vec<Region> {
    let Some(t) = bundle.manifest.threshold.as_ref().filter(|t| r.score >= t.image) else {
        return Vec::new();
    };
    regions(r.map.view(), t.image, DEFAULT_MIN_AREA).into_iter().map(|g| g.offset(r.roi.x, r.roi.y)).collect()
}

fn score_line<'a>(
    bundle: &'a Bundle,
    file: &'a Path,
    r: &FrameScored,
    regions: Vec<Region>,
    heatmap: Option<PathBuf>,
    t: Timings,
) -> ScoreLine<'a> {
    let threshold = bundle.manifest.threshold.as_ref();
    ScoreLine {
        image: file,
        score: r.score,
        score_norm: threshold.map(|t| t.normalise(r.score)),
        threshold: threshold.map(|t| t.image),
        verdict: threshold.map(|t| if r.score >= t.image { "NG" } else { "OK" }),
        model: ModelRef { id: &bundle.manifest.model.id, sha: bundle.short_sha() },
        regions,
        heatmap,
        timings_ms: t,
    }
}

fn timings(prep: std::time::Duration, t: StageTimes, count: usize) -> Timings {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3 / count as f64;
    Timings {
        decode_preprocess: ms(prep),
        backbone: ms(t.backbone),
        descriptor_knn: ms(t.descriptor_knn),
        post: ms(t.post),
        total: ms(prep + t.backbone + t.descriptor_knn + t.post),
    }
}

/// Writes `<stem>.heatmap.png` at the image's own size: the heatmap over the inspected ROI and
/// the regions boxed. The colour scale tops out at twice the threshold when the model is
/// calibrated, so colours mean the same across images; otherwise at the image's own maximum.
fn write_heatmap(
    dir: &Path,
    file: &Path,
    img: &RgbImage,
    r: &FrameScored,
    regions: &[Region],
    bundle: &Bundle,
) -> anyhow::Result<PathBuf> {
    let vmax = bundle.manifest.threshold.as_ref().map_or(r.score, |t| 2.0 * t.image);
    let overlay = heatmap::annotate(img, r.roi, r.map.view(), vmax, 0.45, regions, heatmap::NG_COLOUR);
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
    let out = dir.join(format!("{stem}.heatmap.png"));
    overlay.save(&out).with_context(|| format!("cannot write heatmap {}", out.display()))?;
    Ok(out)
}
