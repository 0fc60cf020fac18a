//! Choosing the epoch without test data.
//!
//! After every epoch the current descriptor scores a validation set made only from training
//! material: the held-out good images, and copies of them with the project's own synthetic
//! defects painted on (subtle ones: clear defects are found at every epoch and would not tell
//! epochs apart). The validation figure is the image AUROC plus the pixel AUROC on that set.
//! Where the model standardises each patch position (`position_norm`), the validation maps are
//! standardised too, with statistics of the training images' patch scores, which each
//! training step finds anyway, so the epoch is chosen on the scores the bundle will produce.
//! Training stops once the figure has not improved for `patience` epochs, then keeps the
//! parameters of the epoch whose figure, averaged with its neighbours', is best. The test
//! split of a dataset is never read.

use image::{GrayImage, RgbImage};
use ndarray::{Array2, ArrayView2};

use super::features::FeatureCache;
use super::fit::{StepProgress, Trainer};
use crate::cfa::anomaly_map::{anomaly_map, image_score, patch_scores};
use crate::cfa::blur::GaussianBlur;
use crate::cfa::position::PositionStats;
use crate::eval::metrics::{auroc, pixel_auroc};
use crate::model::scorer::ScoreError;
use crate::synth::photo::{paint_defect, Level};
use crate::synth::DefectKind;

/// Defective copies made of each held-out good image.
pub const DEFECTS_PER_IMAGE: usize = 2;
/// Every `PIXEL_STRIDE`-th pixel in each direction enters the pixel AUROC (it only breaks
/// ties, and the full maps would make validation cost as much as an epoch).
const PIXEL_STRIDE: usize = 2;
/// Validation images scored per kNN run.
const BATCH: usize = 8;

pub use crate::model::manifest::EpochRecord;

/// The index of the point to keep: the best figure after averaging each point with its
/// neighbours (epochs e-1, e, e+1, where they exist), so that one lucky epoch on a noisy
/// curve does not beat a plateau. Ties keep the earlier epoch.
pub fn choose(curve: &[EpochRecord]) -> usize {
    let smoothed = |i: usize| {
        if curve[i].figure() == f64::NEG_INFINITY {
            return f64::NEG_INFINITY;
        }
        let window = &curve[i.saturating_sub(1)..(i + 2).min(curve.len())];
        let finite: Vec<f64> = window.iter().map(EpochRecord::figure).filter(|f| f.is_finite()).collect();
        finite.iter().sum::<f64>() / finite.len() as f64
    };
    let mut best = 0;
    for i in 1..curve.len() {
        if smoothed(i) > smoothed(best) + 1e-12 {
            best = i;
        }
    }
    best
}

/// The held-out good images and their defective copies: images, labels (true = defective)
/// and masks, in that order. Deterministic in `seed`.
pub fn validation_images(holdout: &[RgbImage], seed: u64) -> (Vec<RgbImage>, Vec<bool>, Vec<GrayImage>) {
    let mut images: Vec<RgbImage> = holdout.to_vec();
    let mut labels = vec![false; holdout.len()];
    let mut masks: Vec<GrayImage> = holdout.iter().map(|i| GrayImage::new(i.width(), i.height())).collect();
    let kinds = DefectKind::all();
    for (i, good) in holdout.iter().enumerate() {
        for d in 0..DEFECTS_PER_IMAGE {
            let kind = kinds[(i * DEFECTS_PER_IMAGE + d) % kinds.len()];
            let key = seed ^ ((i * DEFECTS_PER_IMAGE + d) as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
            let (img, mask) = paint_defect(good, kind, Level::Subtle, None, key);
            images.push(img);
            labels.push(true);
            masks.push(mask);
        }
    }
    (images, labels, masks)
}

/// The validation set with its backbone features cached.
pub struct Validation {
    cache: FeatureCache,
    labels: Vec<bool>,
    masks: Vec<Array2<bool>>,
    height: usize,
    width: usize,
    blur: GaussianBlur,
    position_norm: bool,
}

impl Validation {
    /// `cache` holds the features of `images` from [`validation_images`], in order.
    pub fn new(cache: FeatureCache, labels: Vec<bool>, masks: &[GrayImage], sigma: f32) -> Validation {
        let (width, height) = masks.first().map_or((0, 0), |m| (m.width() as usize, m.height() as usize));
        let masks = masks
            .iter()
            .map(|m| {
                Array2::from_shape_fn(
                    (height.div_ceil(PIXEL_STRIDE), width.div_ceil(PIXEL_STRIDE)),
                    |(y, x)| m.get_pixel((x * PIXEL_STRIDE) as u32, (y * PIXEL_STRIDE) as u32).0[0] > 127,
                )
            })
            .collect();
        Validation {
            cache,
            labels,
            masks,
            height,
            width,
            blur: GaussianBlur::new(sigma),
            position_norm: false,
        }
    }

    /// Standardises each patch position before scoring, as a bundle with `position_norm` does.
    pub fn with_position_norm(mut self, on: bool) -> Validation {
        self.position_norm = on;
        self
    }

    /// Scores the set with the trainer's current descriptor. When the set is standardised,
    /// the position statistics come from the training images' patch scores of the latest
    /// epoch's steps, or, before the first epoch, from scoring `train` (the training images'
    /// features).
    pub fn evaluate(
        &self,
        trainer: &mut Trainer,
        train: &FeatureCache,
        epoch: usize,
        loss: f32,
    ) -> Result<EpochRecord, ScoreError> {
        let positions = match (self.position_norm, trainer.epoch_patch_scores()) {
            (false, _) => None,
            (true, Some(maps)) => PositionStats::fit_refs(&maps),
            (true, None) => {
                let inputs: Vec<&Array2<f32>> = train.inputs.iter().collect();
                PositionStats::fit(&raw_patch_scores(trainer, &inputs, train.grid)?)
            }
        };
        let mut scores = Vec::with_capacity(self.labels.len());
        let mut maps = Vec::with_capacity(self.labels.len());
        let inputs: Vec<&Array2<f32>> = self.cache.inputs.iter().collect();
        for mut patch in raw_patch_scores(trainer, &inputs, self.cache.grid)? {
            if let Some(p) = positions.as_ref().filter(|p| p.grid() == patch.dim()) {
                p.apply(&mut patch);
            }
            let map = anomaly_map(patch.view(), self.height, self.width, &self.blur);
            scores.push(image_score(map.view()));
            maps.push(map.slice(ndarray::s![..;PIXEL_STRIDE, ..;PIXEL_STRIDE]).to_owned());
        }
        let map_views: Vec<ArrayView2<f32>> = maps.iter().map(|m| m.view()).collect();
        let mask_views: Vec<ArrayView2<bool>> = self.masks.iter().map(|m| m.view()).collect();
        Ok(EpochRecord {
            epoch,
            loss,
            image_auroc: auroc(&scores, &self.labels).unwrap_or(f64::NAN),
            pixel_auroc: pixel_auroc(&map_views, &mask_views).unwrap_or(f64::NAN),
        })
    }
}

/// Each cached input's patch scores `[h, w]` under the trainer's current descriptor.
fn raw_patch_scores(
    trainer: &mut Trainer,
    inputs: &[&Array2<f32>],
    (h, w): (usize, usize),
) -> Result<Vec<Array2<f32>>, ScoreError> {
    let mut out = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(BATCH) {
        let views: Vec<ArrayView2<f32>> = chunk.iter().map(|x| x.view()).collect();
        let rows = ndarray::concatenate(ndarray::Axis(0), &views).expect("same channel count");
        let topk = trainer.nearest_k(rows.view())?;
        for i in 0..chunk.len() {
            out.push(patch_scores(topk.slice(ndarray::s![i * h * w..(i + 1) * h * w, ..]), h, w));
        }
    }
    Ok(out)
}

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// Most epochs to train.
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation figure.
    pub patience: usize,
}

impl Default for Selection {
    fn default() -> Self {
        Selection { max_epochs: super::fit::FitConfig::default().epochs, patience: 5 }
    }
}

/// The outcome of a selected fit.
#[derive(Debug, Clone)]
pub struct Selected {
    pub curve: Vec<EpochRecord>,
    /// The epoch whose parameters were kept (0 = untrained descriptor).
    pub best_epoch: usize,
    /// Whether training stopped before `max_epochs`.
    pub stopped_early: bool,
}

/// Progress of a selected fit.
#[derive(Debug, Clone, Copy)]
pub enum SelectEvent {
    Step(StepProgress),
    /// The figure after an epoch, and the best so far.
    Validated {
        record: EpochRecord,
        best: EpochRecord,
    },
}

/// Trains up to `sel.max_epochs` epochs, scoring `val` before training and after every epoch,
/// and leaves the best epoch's parameters in the returned model.
pub fn fit_selected(
    mut trainer: Trainer,
    cache: &FeatureCache,
    val: &Validation,
    sel: Selection,
    on: &mut dyn FnMut(SelectEvent),
) -> Result<(super::fit::Fitted, Selected), ScoreError> {
    let first = val.evaluate(&mut trainer, cache, 0, f32::NAN)?;
    if val.position_norm {
        trainer.keep_patch_scores(cache.grid);
    }
    // The descriptor is small (C' × (C + 2) floats), so every epoch's parameters are kept and
    // the choice can look at the whole curve.
    let mut snapshots = vec![trainer.snapshot()];
    let mut curve = vec![first];
    let mut best = first;
    on(SelectEvent::Validated { record: first, best });
    let mut losses = Vec::new();
    let mut since_best = 0;
    while losses.len() < sel.max_epochs && since_best < sel.patience.max(1) {
        let loss = trainer.epoch(cache, &mut |p| on(SelectEvent::Step(p)))?;
        losses.push(loss);
        let record = val.evaluate(&mut trainer, cache, losses.len(), loss)?;
        curve.push(record);
        snapshots.push(trainer.snapshot());
        if record.figure() > best.figure() {
            best = record;
            since_best = 0;
        } else {
            since_best += 1;
        }
        on(SelectEvent::Validated { record, best });
    }
    let stopped_early = losses.len() < sel.max_epochs;
    let chosen = choose(&curve);
    let mut fitted = trainer.into_fitted(losses);
    (fitted.weights, fitted.radius) = snapshots.swap_remove(chosen);
    Ok((fitted, Selected { best_epoch: curve[chosen].epoch, curve, stopped_early }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(epoch: usize, image: f64, pixel: f64) -> EpochRecord {
        EpochRecord { epoch, loss: 0.0, image_auroc: image, pixel_auroc: pixel }
    }

    #[test]
    fn the_choice_prefers_a_plateau_to_a_lucky_epoch() {
        let curve: Vec<EpochRecord> = [0.70, 0.72, 0.90, 0.71, 0.80, 0.84, 0.85, 0.84, 0.83]
            .iter()
            .enumerate()
            .map(|(e, &v)| rec(e, v, 0.95))
            .collect();
        assert_eq!(choose(&curve), 6, "epoch 2 is a spike between two low points");
        assert_eq!(choose(&curve[..3]), 2, "at the end of the curve a point has one neighbour");
        assert_eq!(choose(&[rec(0, 0.8, 0.9), rec(1, 0.8, 0.9)]), 0, "ties keep the earlier epoch");
        let nan = [rec(0, 0.6, 0.9), rec(1, f64::NAN, 0.9), rec(2, 0.7, 0.9)];
        assert_eq!(choose(&nan), 2, "an undefined AUROC never wins nor spoils its neighbours");
    }

    #[test]
    fn validation_images_pair_every_good_image_with_labelled_defects() {
        let good: Vec<RgbImage> = (0..3)
            .map(|i| RgbImage::from_fn(96, 80, |x, y| image::Rgb([(x * 3 + i) as u8, y as u8, 90])))
            .collect();
        let (images, labels, masks) = validation_images(&good, 5);
        assert_eq!(images.len(), 3 * (1 + DEFECTS_PER_IMAGE));
        assert_eq!(labels.iter().filter(|&&l| l).count(), 3 * DEFECTS_PER_IMAGE);
        for ((img, &label), mask) in images.iter().zip(&labels).zip(&masks) {
            assert_eq!((img.width(), img.height()), (96, 80));
            assert_eq!(mask.pixels().any(|p| p.0[0] > 0), label);
        }
        assert_eq!(validation_images(&good, 5).0, images, "deterministic in the seed");
    }
}
