//! Fitting CFA: the memory bank from the untrained descriptor, then the descriptor trained with
//! the CFA loss and AdamW (cfa.md §3–§4).
//!
//! Each step computes the descriptor on the CPU (a small matrix product), finds every patch's
//! K+J nearest centres with the same ONNX Runtime kNN graph inference uses (the big matrix
//! product, at the machine's matmul speed), and backpropagates through the selected
//! neighbours only.

use ndarray::{concatenate, s, Array1, Array2, ArrayView2, Axis};
use ort::session::Session;
use ort::value::TensorRef;

use super::features::FeatureCache;
use super::kmeans::kmeans;
use super::loss::{cfa_loss, LossGrad};
use super::optim::{AdamW, AdamWConfig};
use crate::cfa::anomaly_map::patch_scores;
use crate::cfa::descriptor::DescriptorWeights;
use crate::cfa::graph;
use crate::cfa::knn::{Knn, KnnPrecision};
use crate::model::manifest::RadiusMode;
use crate::model::runtime::{Provider, Runtime};
use crate::model::scorer::ScoreError;
use crate::util::rng::SplitMix64;

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    pub k: usize,
    pub j: usize,
    /// Initial radius (the final one too when fixed).
    pub radius: f32,
    pub radius_mode: RadiusMode,
    pub gamma_c: usize,
    pub gamma_d: usize,
    pub epochs: usize,
    /// Images per optimiser step.
    pub batch: usize,
    pub seed: u64,
    pub optim: AdamWConfig,
    /// Which images the memory bank is averaged over (cfa.md §3).
    pub bank_input: BankInput,
    /// 1: one centre per patch position, averaged over all training inputs. T > 1: one per
    /// position per tile, each averaged over the inputs `i` with `i % T` equal (tiles of each
    /// frame in order): T times the bank, for parts whose tiles look different.
    pub bank_groups: usize,
}

pub use crate::model::manifest::BankInput;

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            k: 3,
            j: 3,
            radius: 1e-5,
            // Fixed: at batch 32 a trainable radius ends where a fixed one is (the same models on
            // the real-photo benchmark), and with more steps it grows and loses accuracy.
            radius_mode: RadiusMode::Fixed,
            gamma_c: 1,
            gamma_d: 1,
            // The most epochs; the validation set chooses the one kept (train::select).
            epochs: 30,
            // anomalib's batch: 4 optimiser steps per epoch on 120 images, where batch 4 took
            // 30 and over-trained (README "Training recipe").
            batch: 32,
            seed: 0,
            optim: AdamWConfig::default(),
            bank_input: BankInput::Normalised,
            bank_groups: 1,
        }
    }
}

/// A fitted model.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub weights: DescriptorWeights,
    /// `[C', N]`.
    pub bank: Array2<f32>,
    pub radius: f32,
    /// Mean loss of each epoch.
    pub epoch_losses: Vec<f32>,
}

/// Progress of the fit, reported after every step.
#[derive(Debug, Clone, Copy)]
pub struct StepProgress {
    pub epoch: usize,
    pub step: usize,
    pub steps_per_epoch: usize,
    pub loss: f32,
}

/// `phi = X·Wᵀ + b` for one image: `[h·w, C']`.
pub fn descriptor_rows(x: ArrayView2<f32>, w: &DescriptorWeights) -> Array2<f32> {
    let mut phi = x.dot(&w.weight.t());
    phi += &w.bias;
    phi
}

/// The memory bank `[C', N]`: the mean descriptor output over the images of `cache` (per
/// group of `groups`, see [`FitConfig::bank_groups`]), compressed to `N / gamma_c` k-means
/// centres when gamma_c > 1.
pub fn memory_bank(
    cache: &FeatureCache,
    w: &DescriptorWeights,
    gamma_c: usize,
    seed: u64,
    groups: usize,
) -> Array2<f32> {
    let (groups, p) = (groups.clamp(1, cache.inputs.len().max(1)), cache.patches());
    let mut mean = Array2::<f32>::zeros((groups * p, w.out_channels()));
    let mut counts = vec![0usize; groups];
    for (i, x) in cache.inputs.iter().enumerate() {
        let g = i % groups;
        let mut rows = mean.slice_mut(ndarray::s![g * p..(g + 1) * p, ..]);
        rows += &descriptor_rows(x.view(), w);
        counts[g] += 1;
    }
    for (g, n) in counts.iter().enumerate() {
        mean.slice_mut(ndarray::s![g * p..(g + 1) * p, ..]).mapv_inplace(|v| v / (*n).max(1) as f32);
    }
    let n = mean.nrows();
    let centres = if gamma_c > 1 { kmeans(mean.view(), (n / gamma_c).max(1), seed) } else { mean };
    centres.reversed_axes().as_standard_layout().to_owned()
}

/// Gradients of the loss with respect to the descriptor's weight and bias, given each patch's
/// K+J nearest centres (`index`, row-major `[P, K+J]`) and the loss gradient on their distances.
/// `bank_rows` is the bank as `[N, C']`; `xs` are the batch's inputs in the order of `phi`'s rows.
pub fn backprop(
    xs: &[ArrayView2<f32>],
    phi: &Array2<f32>,
    index: &[i64],
    lg: &LossGrad,
    bank_rows: ArrayView2<f32>,
) -> (Array2<f32>, Array1<f32>) {
    let width = index.len() / phi.nrows();
    let mut dphi = Array2::<f32>::zeros(phi.dim());
    for (p, mut d) in dphi.axis_iter_mut(Axis(0)).enumerate() {
        for s in 0..width {
            let g = lg.grad[p * width + s];
            if g != 0.0 {
                let c = bank_rows.row(index[p * width + s] as usize);
                // dD/dphi = 2 (phi - c)
                d.zip_mut_with(&(&phi.row(p) - &c), |acc, diff| *acc += 2.0 * g * diff);
            }
        }
    }
    let rows = xs.first().map_or(0, |x| x.nrows());
    let mut d_weight = Array2::<f32>::zeros((phi.ncols(), xs.first().map_or(0, |x| x.ncols())));
    for (i, x) in xs.iter().enumerate() {
        d_weight += &dphi.slice(s![i * rows..(i + 1) * rows, ..]).t().dot(x);
    }
    (d_weight, dphi.sum_axis(Axis(0)))
}

/// The training state: parameters, optimiser and the kNN session over the fixed bank.
pub struct Trainer {
    cfg: FitConfig,
    weights: DescriptorWeights,
    radius: f32,
    bank: Array2<f32>,
    bank_rows: Array2<f32>,
    knn: TrainingKnn,
    /// The scorer's K-nearest search (int8 candidates, exact re-rank, where the CPU has VNNI)
    /// for [`Trainer::nearest_k`], when training runs on the CPU.
    scoring: Option<Knn>,
    optimiser: AdamW,
    rng: SplitMix64,
    order: Vec<usize>,
    epochs_done: usize,
    /// Each training image's raw patch scores `[h, w]` from the latest epoch's steps (by
    /// image index), kept when [`Trainer::keep_patch_scores`] asked for them.
    patch_maps: Option<PatchMaps>,
}

/// The grid `(h, w)` and each training image's latest patch scores.
type PatchMaps = ((usize, usize), Vec<Option<Array2<f32>>>);

impl Trainer {
    /// Initialises the descriptor (seeded), builds the memory bank from `bank_cache` (the
    /// training images, normalised as `cfg.bank_input` says) and the kNN session.
    pub fn new(
        runtime: &Runtime,
        cache: &FeatureCache,
        bank_cache: &FeatureCache,
        cfg: FitConfig,
    ) -> Result<Trainer, ScoreError> {
        let c_in = cache.inputs[0].ncols() - 2;
        let weights = DescriptorWeights::init(c_in, (c_in / cfg.gamma_d.max(1)).max(1), cfg.seed);
        let bank = memory_bank(bank_cache, &weights, cfg.gamma_c, cfg.seed, cfg.bank_groups);
        let knn = TrainingKnn::new(runtime, &bank, cfg.k + cfg.j, cache.patches())?;
        let scoring = match knn {
            TrainingKnn::Kernel { .. } => Some(
                Knn::new(bank.view(), cfg.k)
                    .with_precision(bank.view(), KnnPrecision::Auto)
                    .expect("auto precision falls back to fp32"),
            ),
            TrainingKnn::Graph(_) => None,
        };
        let params = weights.weight.len() + weights.bias.len() + 1;
        Ok(Trainer {
            radius: cfg.radius,
            bank_rows: bank.t().as_standard_layout().to_owned(),
            bank,
            optimiser: AdamW::new(cfg.optim, params),
            weights,
            knn,
            scoring,
            rng: SplitMix64::new(cfg.seed ^ 0x5EED),
            order: (0..cache.inputs.len()).collect(),
            epochs_done: 0,
            patch_maps: None,
            cfg,
        })
    }

    /// Runs all `cfg.epochs` epochs; `progress` is called after every step.
    pub fn fit(
        mut self,
        cache: &FeatureCache,
        mut progress: impl FnMut(StepProgress),
    ) -> Result<Fitted, ScoreError> {
        let mut epoch_losses = Vec::with_capacity(self.cfg.epochs);
        for _ in 0..self.cfg.epochs {
            epoch_losses.push(self.epoch(cache, &mut progress)?);
        }
        Ok(self.into_fitted(epoch_losses))
    }

    /// One epoch over `cache` in a freshly shuffled (seeded) order; returns its mean loss.
    pub fn epoch(
        &mut self,
        cache: &FeatureCache,
        progress: &mut dyn FnMut(StepProgress),
    ) -> Result<f32, ScoreError> {
        let batch_size = self.cfg.batch.max(1);
        let mut order = std::mem::take(&mut self.order);
        shuffle(&mut order, &mut self.rng);
        let steps_per_epoch = order.len().div_ceil(batch_size);
        let mut total = 0.0;
        for (step, batch) in order.chunks(batch_size).enumerate() {
            let loss = self.step(cache, batch)?;
            total += loss;
            progress(StepProgress { epoch: self.epochs_done, step, steps_per_epoch, loss });
        }
        self.order = order;
        self.epochs_done += 1;
        Ok(total / steps_per_epoch as f32)
    }

    /// Keeps every training image's patch scores (grid `h × w`) as each step finds its
    /// neighbours, at no extra search: [`Trainer::epoch_patch_scores`].
    pub fn keep_patch_scores(&mut self, grid: (usize, usize)) {
        self.patch_maps = Some((grid, vec![None; self.order.len()]));
    }

    /// The training images' raw patch scores from the latest epoch's steps (each from the
    /// descriptor before its step's update), once every image has had one.
    pub fn epoch_patch_scores(&self) -> Option<Vec<&Array2<f32>>> {
        let (_, maps) = self.patch_maps.as_ref()?;
        maps.iter().map(Option::as_ref).collect()
    }

    /// The current descriptor and radius.
    pub fn snapshot(&self) -> (DescriptorWeights, f32) {
        (self.weights.clone(), self.radius)
    }

    /// The fitted model with the current parameters.
    pub fn into_fitted(self, epoch_losses: Vec<f32>) -> Fitted {
        Fitted { weights: self.weights, bank: self.bank, radius: self.radius, epoch_losses }
    }

    /// The K nearest squared distances (ascending) of every row of the current descriptor's
    /// output for `x` (`[P, C + 2]`), as `[P, K]`.
    /// On the CPU this is the scorer's own search, so validation scores as the bundle will.
    pub fn nearest_k(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>, ScoreError> {
        let phi = descriptor_rows(x, &self.weights);
        if let (Some(knn), TrainingKnn::Kernel { threads, .. }) = (&self.scoring, &self.knn) {
            let patches = phi.nrows();
            let channels_first = phi.t().as_standard_layout().to_owned();
            let mut out = vec![0.0; patches * knn.k()];
            let slice = channels_first.as_slice().expect("standard layout");
            knn.nearest(slice, 1, patches, &mut out, *threads);
            return Array2::from_shape_vec((patches, knn.k()), out)
                .map_err(|e| ScoreError::Inference { stage: "validation kNN", reason: e.to_string() });
        }
        let (dist, _) = self.nearest(&phi)?;
        let width = self.cfg.k + self.cfg.j;
        let full = Array2::from_shape_vec((phi.nrows(), width), dist)
            .map_err(|e| ScoreError::Inference { stage: "validation kNN", reason: e.to_string() })?;
        Ok(full.slice(s![.., ..self.cfg.k]).to_owned())
    }

    /// One optimiser step on the images `batch`; returns the loss before the update.
    fn step(&mut self, cache: &FeatureCache, batch: &[usize]) -> Result<f32, ScoreError> {
        let xs: Vec<ArrayView2<f32>> = batch.iter().map(|&i| cache.inputs[i].view()).collect();
        let parts: Vec<Array2<f32>> = xs.iter().map(|x| descriptor_rows(*x, &self.weights)).collect();
        let views: Vec<ArrayView2<f32>> = parts.iter().map(|p| p.view()).collect();
        let phi = concatenate(Axis(0), &views).expect("same channel count");
        let (dist, index) = self.nearest(&phi)?;
        if let Some(((h, w), maps)) = self.patch_maps.as_mut() {
            let width = self.cfg.k + self.cfg.j;
            let rows = ArrayView2::from_shape((phi.nrows(), width), &dist).expect("K+J per row");
            let per_image = *h * *w;
            for (slot, &i) in batch.iter().enumerate() {
                let topk = rows.slice(s![slot * per_image..(slot + 1) * per_image, ..self.cfg.k]);
                maps[i] = Some(patch_scores(topk, *h, *w));
            }
        }
        let lg = cfa_loss(&dist, self.cfg.k, self.cfg.j, self.radius);
        let (d_weight, d_bias) = backprop(&xs, &phi, &index, &lg, self.bank_rows.view());
        self.apply(&d_weight, &d_bias, lg.grad_radius);
        Ok(lg.loss)
    }

    fn nearest(&mut self, phi: &Array2<f32>) -> Result<(Vec<f32>, Vec<i64>), ScoreError> {
        self.knn.nearest(phi)
    }

    /// AdamW over the flat parameter vector `[weight, bias, radius]`.
    fn apply(&mut self, d_weight: &Array2<f32>, d_bias: &Array1<f32>, d_radius: f32) {
        let trainable = self.cfg.radius_mode == RadiusMode::Trainable;
        let mut params: Vec<f32> =
            self.weights.weight.iter().chain(self.weights.bias.iter()).copied().collect();
        params.push(self.radius);
        let mut grad: Vec<f32> = d_weight.iter().chain(d_bias.iter()).copied().collect();
        grad.push(if trainable { d_radius } else { 0.0 });
        self.optimiser.step(&mut params, &grad);
        let (w, rest) = params.split_at(self.weights.weight.len());
        self.weights.weight.as_slice_mut().expect("standard layout").copy_from_slice(w);
        self.weights.bias.as_slice_mut().expect("standard layout").copy_from_slice(&rest[..rest.len() - 1]);
        if trainable {
            self.radius = rest[rest.len() - 1];
        }
    }
}

/// The K+J nearest centres of training's descriptor rows: the CPU kernel where the runtime's
/// provider is the CPU (as the scorer chooses), else the generated graph on the provider.
enum TrainingKnn {
    Kernel { knn: Knn, threads: usize },
    Graph(Session),
}

impl TrainingKnn {
    fn new(
        runtime: &Runtime,
        bank: &Array2<f32>,
        width: usize,
        patches: usize,
    ) -> Result<TrainingKnn, ScoreError> {
        let model = graph::knn_rows_model(bank.view(), width, patches, graph::DEFAULT_CHUNK_ROWS)
            .map_err(|e| ScoreError::Inference { stage: "training kNN graph", reason: e.to_string() })?;
        let (session, provider) = runtime.session("training kNN", &model.encode())?;
        if provider != Provider::Cpu {
            return Ok(TrainingKnn::Graph(session));
        }
        let threads = runtime.threads();
        Ok(TrainingKnn::Kernel { knn: Knn::new(bank.view(), width), threads })
    }

    fn nearest(&mut self, phi: &Array2<f32>) -> Result<(Vec<f32>, Vec<i64>), ScoreError> {
        match self {
            TrainingKnn::Kernel { knn, threads } => {
                let n = phi.nrows();
                let rows = phi.as_standard_layout();
                let (mut dist, mut index) = (vec![0.0; n * knn.k()], vec![0; n * knn.k()]);
                knn.nearest_rows(
                    rows.as_slice().expect("standard layout"),
                    n,
                    &mut dist,
                    &mut index,
                    *threads,
                );
                Ok((dist, index))
            }
            TrainingKnn::Graph(session) => {
                let fail =
                    |e: ort::Error| ScoreError::Inference { stage: "training kNN", reason: e.to_string() };
                let rows = TensorRef::from_array_view(phi.view()).map_err(fail)?;
                let out = session.run(ort::inputs!["rows" => rows]).map_err(fail)?;
                let dist = out["dist"].try_extract_tensor::<f32>().map_err(fail)?.1.to_vec();
                let index = out["index"].try_extract_tensor::<i64>().map_err(fail)?.1.to_vec();
                Ok((dist, index))
            }
        }
    }
}

/// Fisher–Yates with our own RNG, so `--seed` fixes the order on every platform.
fn shuffle(order: &mut [usize], rng: &mut SplitMix64) {
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_per_tile_bank_averages_each_tile_position_over_its_own_tiles() {
        // Four inputs of two patches (two frames of two tiles), constant per input; an identity
        // descriptor without bias passes the values through.
        let inputs = (0..4).map(|i| Array2::from_elem((2, 3), i as f32)).collect();
        let cache = FeatureCache { inputs, grid: (1, 2) };
        let weights = DescriptorWeights { weight: Array2::eye(3), bias: ndarray::Array1::zeros(3) };
        let shared = memory_bank(&cache, &weights, 1, 0, 1);
        assert_eq!(shared.dim(), (3, 2));
        assert!(shared.iter().all(|&v| v == 1.5), "{shared}");
        let per_tile = memory_bank(&cache, &weights, 1, 0, 2);
        assert_eq!(per_tile.dim(), (3, 4), "two tiles × two positions");
        // Tile 0 is inputs 0 and 2, tile 1 inputs 1 and 3.
        assert_eq!(per_tile.row(0).to_vec(), vec![1.0, 1.0, 2.0, 2.0]);
    }
}
