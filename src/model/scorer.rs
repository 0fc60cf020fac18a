//! Runs a bundle: backbone session → descriptor/kNN → anomaly map on the CPU.
//!
//! Two kNN paths, chosen by where the backbone runs:
//! - on the CPU provider, a descriptor-only graph (generated from the bundle's verified weights)
//!   and the fused Rust kernel [`crate::cfa::knn`], which never materialises a distance matrix;
//! - on a GPU provider (CUDA, TensorRT), the bundle's own descriptor + kNN graph, so the
//!   descriptor's output never leaves the device before the kNN.
//!
//! A [`Scorer`] owns its ONNX Runtime sessions and is used from one thread at a time: the
//! daemon's scoring stage (`pipeline::scoring`) hosts it on its own thread; the command-line
//! tools call it inline.

use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView2, Axis, Ix3};
use ort::session::Session;
use ort::value::TensorRef;

use super::bundle::Bundle;
use super::lanes::{LaneError, Lanes, MAX_LANES};
use super::runtime::{Provider, Runtime, RuntimeError};
use crate::cfa::anomaly_map;
use crate::cfa::blur::GaussianBlur;
use crate::cfa::graph::{self, GraphShape};
use crate::cfa::knn::{Knn, KnnPrecision};
use crate::cfa::position::PositionStats;
use crate::cfa::preprocess::{self, Normalisation};
use crate::view::{Prepared, Rect, View, ViewError};

/// Normalised images at the model's input size, planar `[count, 3, height, width]`.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    pub data: Vec<f32>,
    pub count: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageBatch {
    /// Resizes and normalises `images` into one batch at `width × height`.
    pub fn from_images<I: std::borrow::Borrow<image::RgbImage>>(
        images: &[I],
        width: u32,
        height: u32,
        norm: &Normalisation,
    ) -> Self {
        let plane = 3 * (width * height) as usize;
        let mut data = vec![0.0; images.len() * plane];
        for (img, out) in images.iter().zip(data.chunks_exact_mut(plane)) {
            let img = img.borrow();
            if img.dimensions() == (width, height) {
                preprocess::normalise_into(img, norm, out);
            } else {
                preprocess::normalise_into(&preprocess::resize(img, width, height), norm, out);
            }
        }
        ImageBatch { data, count: images.len(), height: height as usize, width: width as usize }
    }

    /// An all-zero batch (the mean image), used for warm-up.
    pub fn zeros(count: usize, height: usize, width: usize) -> Self {
        ImageBatch { data: vec![0.0; count * 3 * height * width], count, height, width }
    }
}

/// One image's result.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Raw image score: the anomaly map's maximum.
    pub score: f32,
    /// Per-pixel anomaly map at the model's input size.
    pub map: Array2<f32>,
}

/// Wall time per stage for one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    pub backbone: Duration,
    /// Descriptor and kNN, which run as one graph.
    pub descriptor_knn: Duration,
    /// Softmin patch scores, upsampling, blur and the image score.
    pub post: Duration,
}

/// Errors while scoring.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{stage} failed: {reason}")]
    Inference { stage: &'static str, reason: String },
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("batch of {got_h}x{got_w} images does not match the model input {want_h}x{want_w}")]
    Size { got_h: usize, got_w: usize, want_h: usize, want_w: usize },
}

fn inference(stage: &'static str) -> impl Fn(ort::Error) -> ScoreError {
    move |e| ScoreError::Inference { stage, reason: e.to_string() }
}

/// A loaded, warmed-up model.
pub struct Scorer {
    backbone: Session,
    /// The descriptor alone (`phi`) with `knn`, or the bundle's descriptor + kNN graph (`topk`).
    descriptor: Session,
    /// The CPU kNN kernel and its thread count; `None` where the graph does the kNN.
    knn: Option<(Knn, usize)>,
    /// With the CPU kernel and more than one thread: one-thread sessions that run a batch's
    /// images side by side (`model::lanes`).
    lanes: Option<Lanes>,
    /// With [`ScorerOptions::knn_audit`]: the int8 search checked against the exact one.
    audit: Option<KnnAudit>,
    provider: Provider,
    height: usize,
    width: usize,
    grid: (usize, usize),
    blur: GaussianBlur,
    norm: Normalisation,
    /// The bundle's per-position statistics, applied to every patch-score map.
    position: Option<PositionStats>,
}

/// One frame's result through its view.
#[derive(Debug, Clone)]
pub struct FrameScored {
    /// Raw score: the maximum of the assembled, masked map.
    pub score: f32,
    /// Anomaly map at ROI resolution, ignore mask applied.
    pub map: Array2<f32>,
    /// The inspected rectangle of the frame, in sensor pixels.
    pub roi: Rect,
}

/// How a [`Scorer`] runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScorerOptions {
    /// Force the kNN path; `None` chooses by provider.
    pub knn: Option<KnnPath>,
    /// Experimental: search only centres within this many grid cells of each patch's position
    /// (CPU kernel; needs a bank with one centre per position). Approximate: measure it.
    pub knn_window: Option<usize>,
    /// How the CPU kernel computes distances (int8 candidates + exact re-rank, or fp32).
    pub knn_precision: KnnPrecision,
    /// Also run the exact fp32 search on every batch and count the patches whose K nearest
    /// distances the int8 search reproduced ([`Scorer::knn_audit`]). Doubles the kNN work.
    pub knn_audit: bool,
}

/// How often the int8 search found the exact K nearest centres.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct KnnAudit {
    pub patches: u64,
    /// Patches none of whose K distances exceeds the exact search's by more than fp32
    /// rounding (the re-rank sums `Σ(x − c)²` and is the more precise of the two, so it may
    /// come out lower; a missed centre shows as an excess).
    pub exact: u64,
    /// The largest amount by which a reported distance exceeded the exact one.
    pub max_excess: f32,
}

impl KnnAudit {
    fn add(&mut self, got: &[f32], want: &[f32], k: usize) {
        for (g, w) in got.chunks_exact(k).zip(want.chunks_exact(k)) {
            self.patches += 1;
            let close = g.iter().zip(w).all(|(g, w)| g - w <= 1e-3 + 1e-4 * w.abs());
            self.exact += u64::from(close);
            for (g, w) in g.iter().zip(w) {
                self.max_excess = self.max_excess.max(g - w);
            }
        }
    }

    /// The share of patches with the exact K nearest.
    pub fn fraction(&self) -> f64 {
        self.exact as f64 / self.patches.max(1) as f64
    }
}

/// Where the memory-bank kNN runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnnPath {
    /// The fused CPU kernel after a descriptor-only graph.
    Kernel,
    /// The bundle's descriptor + kNN graph, on the backbone's provider.
    Graph,
}

impl Scorer {
    /// Creates both sessions and runs one warm-up batch, so the first real frame is not slow.
    /// The kNN runs in the CPU kernel when the backbone runs on the CPU provider, else in the
    /// bundle's graph on the same provider as the descriptor.
    pub fn new(runtime: &Runtime, bundle: &Bundle) -> Result<Scorer, ScoreError> {
        Scorer::with_knn(runtime, bundle, None)
    }

    /// [`Scorer::new`] with the kNN path forced (benchmarks and tests); `None` chooses.
    pub fn with_knn(runtime: &Runtime, bundle: &Bundle, path: Option<KnnPath>) -> Result<Scorer, ScoreError> {
        Scorer::with_options(runtime, bundle, ScorerOptions { knn: path, ..ScorerOptions::default() })
    }

    /// [`Scorer::new`] with [`ScorerOptions`].
    pub fn with_options(
        runtime: &Runtime,
        bundle: &Bundle,
        options: ScorerOptions,
    ) -> Result<Scorer, ScoreError> {
        let backbone_name = bundle.dir.join(&bundle.manifest.backbone.file).display().to_string();
        let descriptor_name = bundle.dir.join(&bundle.manifest.descriptor.file).display().to_string();
        let (backbone, provider) = runtime.session(&backbone_name, &bundle.backbone_onnx)?;
        let path =
            options.knn.unwrap_or(if provider == Provider::Cpu { KnnPath::Kernel } else { KnnPath::Graph });
        if options.knn_window.is_some() && path == KnnPath::Graph {
            // Never ignored in silence: a GPU machine would otherwise run the exact graph.
            return Err(ScoreError::Inference {
                stage: "windowed kNN",
                reason: format!(
                    "knn_window runs in the CPU kNN kernel only, and this model's kNN runs in the graph \
                     on {provider}; remove knn_window or use the cpu provider"
                ),
            });
        }
        let mut lanes = None;
        let (descriptor, knn) = if path == KnnPath::Kernel {
            let shape = GraphShape {
                channels: bundle.manifest.backbone.channels,
                grid: bundle.manifest.input.patch_grid(),
                k: bundle.manifest.cfa.k,
            };
            let model = graph::descriptor_model(shape, &bundle.weights)
                .map_err(|e| ScoreError::Inference { stage: "descriptor graph", reason: e.to_string() })?;
            let descriptor_name = format!("{descriptor_name} (descriptor)");
            let descriptor_onnx = model.encode();
            let (session, _) = runtime.session(&descriptor_name, &descriptor_onnx)?;
            let threads = runtime.threads();
            lanes = match threads.min(MAX_LANES) {
                n if n >= 2 => Some(Lanes::new(
                    runtime,
                    n,
                    (&backbone_name, &bundle.backbone_onnx),
                    (&descriptor_name, &descriptor_onnx),
                )?),
                _ => None,
            };
            let knn = Knn::new(bundle.bank.view(), shape.k);
            let knn = match options.knn_window {
                Some(r) => knn.windowed(shape.grid, r).ok_or_else(|| ScoreError::Inference {
                    stage: "windowed kNN",
                    reason: format!(
                        "the bank has {} centres, not one per patch position ({}×{}): trained with \
                         gamma_c > 1, it has no positions to search near",
                        bundle.bank.ncols(),
                        shape.grid.0,
                        shape.grid.1
                    ),
                })?,
                None => knn,
            };
            let knn = knn
                .with_precision(bundle.bank.view(), options.knn_precision)
                .map_err(|reason| ScoreError::Inference { stage: "int8 kNN", reason })?;
            (session, Some((knn, threads)))
        } else {
            (runtime.session(&descriptor_name, &bundle.descriptor_onnx)?.0, None)
        };
        let input = &bundle.manifest.input;
        let mut scorer = Scorer {
            backbone,
            descriptor,
            audit: None,
            knn,
            lanes,
            provider,
            height: input.height as usize,
            width: input.width as usize,
            grid: input.patch_grid(),
            blur: GaussianBlur::new(bundle.manifest.cfa.sigma),
            norm: input.normalisation(),
            position: bundle.position.clone(),
        };
        scorer.score(&ImageBatch::zeros(1, scorer.height, scorer.width))?;
        if let Some(n) = scorer.lanes.as_ref().map(Lanes::len) {
            scorer.score(&ImageBatch::zeros(n, scorer.height, scorer.width))?;
        }
        let int8 = scorer.knn.as_ref().is_some_and(|(k, _)| k.int8_candidates().is_some());
        scorer.audit = (options.knn_audit && int8).then(KnnAudit::default);
        Ok(scorer)
    }

    /// The execution provider the backbone runs on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// How many images of a batch run side by side (`model::lanes`); 0 where they run one
    /// after another.
    pub fn lanes(&self) -> usize {
        self.lanes.as_ref().map_or(0, Lanes::len)
    }

    /// The int8 search's candidates per patch, when the CPU kernel runs it.
    pub fn int8_candidates(&self) -> Option<usize> {
        self.knn.as_ref().and_then(|(k, _)| k.int8_candidates())
    }

    /// The audit so far, when [`ScorerOptions::knn_audit`] asked for one and int8 runs.
    pub fn knn_audit(&self) -> Option<KnnAudit> {
        self.audit
    }

    pub fn knn_path(&self) -> KnnPath {
        if self.knn.is_some() {
            KnnPath::Kernel
        } else {
            KnnPath::Graph
        }
    }

    /// Input size `(height, width)`.
    pub fn input_size(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// Backbone and descriptor/kNN: the K nearest squared distances `[B, h·w, K]`.
    ///
    /// With the CPU kernel, each image runs through the backbone and descriptor on its own:
    /// a batch of 8 at 256 px took twice as long per image in ONNX Runtime on the CPU (its
    /// activations outgrow the L2 cache), and the kNN kernel gains nothing from batching.
    /// Several images run side by side on one-thread lanes where there are lanes
    /// (`model::lanes`), then one kNN over all of them. Graph providers (GPUs) get the whole
    /// batch in one run.
    pub fn nearest(&mut self, batch: &ImageBatch) -> Result<(ndarray::Array3<f32>, StageTimes), ScoreError> {
        if (batch.height, batch.width) != (self.height, self.width) {
            return Err(ScoreError::Size {
                got_h: batch.height,
                got_w: batch.width,
                want_h: self.height,
                want_w: self.width,
            });
        }
        if batch.count >= 2 && self.lanes.is_some() {
            return self.nearest_lanes(batch);
        }
        let per_run = if self.knn.is_some() { 1 } else { batch.count.max(1) };
        let image_len = 3 * batch.height * batch.width;
        let mut times = StageTimes::default();
        let mut parts = Vec::with_capacity(batch.count.div_ceil(per_run));
        for data in batch.data.chunks(per_run * image_len) {
            parts.push(self.nearest_run(data, data.len() / image_len, &mut times)?);
        }
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        let topk = match views.len() {
            1 => parts.pop().expect("one part"),
            _ => ndarray::concatenate(Axis(0), &views)
                .map_err(|e| ScoreError::Inference { stage: "kNN output", reason: e.to_string() })?,
        };
        Ok((topk, times))
    }

    /// A batch's descriptors on the lanes, side by side, then one kNN over all of them. The
    /// lanes' wall time is split between backbone and descriptor as their summed times are.
    fn nearest_lanes(
        &mut self,
        batch: &ImageBatch,
    ) -> Result<(ndarray::Array3<f32>, StageTimes), ScoreError> {
        let (Some(lanes), Some((knn, _))) = (&mut self.lanes, &self.knn) else {
            unreachable!("lanes exist only with the CPU kernel");
        };
        let (h, w) = self.grid;
        let mut phi = vec![0.0f32; batch.count * knn.channels() * h * w];
        let started = Instant::now();
        let lane_times = lanes
            .descriptors(&batch.data, batch.count, (self.height, self.width), &mut phi)
            .map_err(|LaneError { stage, reason }| ScoreError::Inference { stage, reason })?;
        let (backbone, descriptor) = lane_times.split(started.elapsed());
        let started = Instant::now();
        let topk =
            kernel_nearest(self.knn.as_ref().expect("lanes"), self.grid, &mut self.audit, &phi, batch.count);
        let times =
            StageTimes { backbone, descriptor_knn: descriptor + started.elapsed(), ..StageTimes::default() };
        Ok((topk, times))
    }

    /// One run of the backbone and descriptor/kNN over `count` normalised images.
    fn nearest_run(
        &mut self,
        data: &[f32],
        count: usize,
        times: &mut StageTimes,
    ) -> Result<ndarray::Array3<f32>, ScoreError> {
        if self.provider == Provider::Cpu {
            crate::util::workers::keep_adopted_off_caller();
        }
        let started = Instant::now();
        let shape = [count, 3, self.height, self.width];
        let image = TensorRef::from_array_view((shape, data)).map_err(inference("backbone input"))?;
        let features = self.backbone.run(ort::inputs!["image" => image]).map_err(inference("backbone"))?;
        times.backbone += started.elapsed();
        let started = Instant::now();
        let inputs = ort::inputs!["f1" => &features["f1"], "f2" => &features["f2"], "f3" => &features["f3"]];
        let out = self.descriptor.run(inputs).map_err(inference("descriptor"))?;
        let topk = match &self.knn {
            Some(kernel) => {
                let (_, phi) =
                    out["phi"].try_extract_tensor::<f32>().map_err(inference("descriptor output"))?;
                kernel_nearest(kernel, self.grid, &mut self.audit, phi, count)
            }
            None => {
                let topk = out["topk"].try_extract_array::<f32>().map_err(inference("descriptor output"))?;
                topk.into_dimensionality::<Ix3>()
                    .map_err(|e| ScoreError::Inference { stage: "descriptor output", reason: e.to_string() })?
                    .to_owned()
            }
        };
        times.descriptor_knn += started.elapsed();
        Ok(topk)
    }

    /// Scores a batch: per-image anomaly maps and scores, with stage timings.
    pub fn score(&mut self, batch: &ImageBatch) -> Result<(Vec<Scored>, StageTimes), ScoreError> {
        let (topk, mut times) = self.nearest(batch)?;
        let started = Instant::now();
        let scored = topk.axis_iter(Axis(0)).map(|nearest| self.post(nearest)).collect();
        times.post = started.elapsed();
        Ok((scored, times))
    }

    /// Scores whole frames through `view`. Each frame is cut into its inputs (one, or all its
    /// tiles); a tiled frame's tiles are one batch, untiled frames share one batch. The maps
    /// are assembled at ROI resolution, masked, and scored there.
    pub fn score_frames(
        &mut self,
        view: &View,
        frames: &[&image::RgbImage],
    ) -> Result<(Vec<FrameScored>, StageTimes), ScoreError> {
        let mut prepared = Vec::with_capacity(frames.len());
        for frame in frames {
            prepared.push(view.prepare(frame)?);
        }
        let mut out = Vec::with_capacity(frames.len());
        let mut times = StageTimes::default();
        let tiled = prepared.iter().any(|p| p.inputs.len() > 1);
        let groups: Vec<&[Prepared]> = if tiled { prepared.chunks(1).collect() } else { vec![&prepared] };
        for group in groups.into_iter().filter(|g| !g.is_empty()) {
            let inputs: Vec<&image::RgbImage> = group.iter().flat_map(|p| &p.inputs).collect();
            let batch = ImageBatch::from_images(&inputs, self.width as u32, self.height as u32, &self.norm);
            let (scored, t) = self.score(&batch)?;
            times.backbone += t.backbone;
            times.descriptor_knn += t.descriptor_knn;
            let started = Instant::now();
            let mut maps = scored.iter();
            for p in group {
                let own: Vec<ArrayView2<f32>> =
                    maps.by_ref().take(p.inputs.len()).map(|s| s.map.view()).collect();
                let map = view.assemble(p.roi, &own);
                let score = anomaly_map::image_score(map.view());
                out.push(FrameScored { score, map, roi: p.roi });
            }
            times.post += t.post + started.elapsed();
        }
        Ok((out, times))
    }

    /// Each image's raw patch scores `[h, w]`, before the bundle's position statistics: what
    /// training fits them on.
    pub fn raw_patch_scores(&mut self, batch: &ImageBatch) -> Result<Vec<Array2<f32>>, ScoreError> {
        let (topk, _) = self.nearest(batch)?;
        let (h, w) = self.grid;
        Ok(topk.axis_iter(Axis(0)).map(|nearest| anomaly_map::patch_scores(nearest, h, w)).collect())
    }

    /// Anomaly map and score from one image's nearest distances.
    pub fn post(&self, nearest: ArrayView2<f32>) -> Scored {
        let (h, w) = self.grid;
        let mut patch = anomaly_map::patch_scores(nearest, h, w);
        if let Some(position) = &self.position {
            position.apply(&mut patch);
        }
        let map = anomaly_map::anomaly_map(patch.view(), self.height, self.width, &self.blur);
        Scored { score: anomaly_map::image_score(map.view()), map }
    }
}

/// The CPU kernel's K nearest (`[count, patches, K]`) for `count` images' descriptors, checked
/// against the exact search when an audit runs.
fn kernel_nearest(
    (knn, threads): &(Knn, usize),
    (h, w): (usize, usize),
    audit: &mut Option<KnnAudit>,
    phi: &[f32],
    count: usize,
) -> ndarray::Array3<f32> {
    let mut topk = ndarray::Array3::zeros((count, h * w, knn.k()));
    let slice = topk.as_slice_mut().expect("a new array is contiguous");
    knn.nearest(phi, count, h * w, slice, *threads);
    if let Some(audit) = audit {
        let mut exact = vec![0.0f32; slice.len()];
        knn.nearest_fp32(phi, count, h * w, &mut exact, *threads);
        audit.add(slice, &exact, knn.k());
    }
    topk
}

#[cfg(test)]
mod tests {
    use super::KnnAudit;

    #[test]
    fn the_audit_counts_a_missed_centre_but_not_a_more_precise_distance() {
        let mut audit = KnnAudit::default();
        let exact = [1.0, 2.0, 3.0, 10.0, 11.0, 12.0];
        // Patch 1: the same centres, the re-rank's sum 0.002 lower. Patch 2: the third
        // centre missed, a farther one at 12.5 reported instead.
        audit.add(&[0.998, 2.0, 3.0, 10.0, 11.0, 12.5], &exact, 3);
        assert_eq!((audit.patches, audit.exact), (2, 1));
        assert!((audit.max_excess - 0.5).abs() < 1e-6);
        assert!((audit.fraction() - 0.5).abs() < 1e-12);
    }
}
