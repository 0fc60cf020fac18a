//! `inspectd bench --model DIR --frame WxH`: whole camera frames through a view (tiles or
//! letterbox): ms per frame, frames per second, and what cutting, stitching and masking cost.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::model::bundle::Bundle;
use crate::model::runtime::Runtime;
use crate::model::scorer::{ImageBatch, Scorer, ScorerOptions};
use crate::util::rng::SplitMix64;
use crate::view::{Fit, View};

/// How the frame is brought to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchView {
    /// The bundle's stored view (tiles for a bundle without one).
    Stored,
    /// Model-size tiles at native resolution with `--tile-overlap`.
    Tiles,
    /// The whole frame resized into the input, aspect ratio kept.
    Letterbox,
}

/// One measured configuration.
#[derive(Debug, Serialize)]
pub struct FrameReport {
    pub model: String,
    pub frame: String,
    pub view: String,
    pub inputs_per_frame: usize,
    pub frames: usize,
    /// Cutting tiles (or letterboxing) and normalising.
    pub prepare_ms: f64,
    pub backbone_ms: f64,
    pub descriptor_knn_ms: f64,
    /// Per-input softmin maps, upsampling and blur.
    pub maps_ms: f64,
    /// Stitching the inputs' maps into one ROI map, the ignore mask and the frame's score.
    pub stitch_mask_ms: f64,
    pub total_ms: f64,
    pub frames_per_second: f64,
    /// `stitch_mask_ms / total_ms`.
    pub stitch_mask_fraction: f64,
}

/// The view to measure with on frames of `frame` size.
fn view_for(bundle: &Bundle, kind: BenchView, frame: (u32, u32), overlap: u32) -> View {
    let stored = bundle.view(None);
    let fit = match (kind, stored.fit) {
        (BenchView::Stored, Fit::Stretch) | (BenchView::Tiles, _) => Fit::Tiles { overlap },
        (BenchView::Stored, fit) => fit,
        (BenchView::Letterbox, _) => Fit::Letterbox,
    };
    // The stored ROI and mask belong to the training frames' size; another size drops them.
    let same = stored.frame == Some(frame);
    View {
        frame: Some(frame),
        roi: stored.roi.filter(|_| same),
        fit,
        input: stored.input,
        mask: stored.mask.filter(|_| same),
    }
}

/// A frame of sensor-like noise on a gradient, so nothing is constant.
fn sample_frame((w, h): (u32, u32)) -> image::RgbImage {
    let mut rng = SplitMix64::new(7);
    image::RgbImage::from_fn(w, h, |x, y| {
        let base = ((x + y) % 200) as f32 + 20.0;
        image::Rgb([0, 1, 2].map(|c| (base + c as f32 * 10.0 + rng.unit() * 20.0).min(255.0) as u8))
    })
}

/// Scores frames of `frame` size for `seconds` (after one warm-up frame).
pub fn measure(
    runtime: &Runtime,
    bundle: &Bundle,
    kind: BenchView,
    frame: (u32, u32),
    overlap: u32,
    seconds: f64,
) -> anyhow::Result<FrameReport> {
    let view = view_for(bundle, kind, frame, overlap);
    view.check(frame)?;
    let mut scorer = Scorer::with_options(runtime, bundle, ScorerOptions::default())?;
    let image = sample_frame(frame);
    let norm = bundle.manifest.input.normalisation();
    let (iw, ih) = view.input;
    let mut sums = [Duration::ZERO; 5];
    let mut frames = 0usize;
    let started = Instant::now();
    while frames <= 1 || started.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        let prepared = view.prepare(&image)?;
        let batch = ImageBatch::from_images(&prepared.inputs, iw, ih, &norm);
        let prepare = t.elapsed();
        let (scored, times) = scorer.score(&batch)?;
        let t = Instant::now();
        let maps: Vec<_> = scored.iter().map(|s| s.map.view()).collect();
        let map = view.assemble(prepared.roi, &maps);
        let _score = crate::cfa::anomaly_map::image_score(map.view());
        let stitch = t.elapsed();
        // The first frame warms up caches and allocations; it is not counted.
        if frames > 0 {
            for (sum, d) in
                sums.iter_mut().zip([prepare, times.backbone, times.descriptor_knn, times.post, stitch])
            {
                *sum += d;
            }
        }
        frames += 1;
    }
    let n = (frames - 1) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / n;
    let total: f64 = sums.iter().map(|d| ms(*d)).sum();
    Ok(FrameReport {
        model: bundle.manifest.model.id.clone(),
        frame: format!("{}x{}", frame.0, frame.1),
        view: match view.fit {
            Fit::Tiles { overlap } => format!("tiles {iw}x{ih}, overlap {overlap}"),
            Fit::Letterbox => format!("letterbox into {iw}x{ih}"),
            Fit::Stretch => format!("stretch to {iw}x{ih}"),
        },
        inputs_per_frame: view.inputs_per_frame(frame)?,
        frames: frames - 1,
        prepare_ms: ms(sums[0]),
        backbone_ms: ms(sums[1]),
        descriptor_knn_ms: ms(sums[2]),
        maps_ms: ms(sums[3]),
        stitch_mask_ms: ms(sums[4]),
        total_ms: total,
        frames_per_second: 1e3 / total,
        stitch_mask_fraction: ms(sums[4]) / total,
    })
}

pub fn print(r: &FrameReport) {
    println!(
        "model {}  frame {}  view: {} ({} inputs per frame)",
        r.model, r.frame, r.view, r.inputs_per_frame
    );
    println!("  prepare (cut + normalise)  {:>9.1} ms", r.prepare_ms);
    println!("  backbone                   {:>9.1} ms", r.backbone_ms);
    println!("  descriptor + kNN           {:>9.1} ms", r.descriptor_knn_ms);
    println!("  maps (softmin, up, blur)   {:>9.1} ms", r.maps_ms);
    println!(
        "  stitch + mask + score      {:>9.1} ms  ({:.1} % of the frame)",
        r.stitch_mask_ms,
        100.0 * r.stitch_mask_fraction
    );
    println!(
        "  total                      {:>9.1} ms  = {:.2} frames/s over {} frames",
        r.total_ms, r.frames_per_second, r.frames
    );
}
